package backoff

import "time"

// Exponential returns the un-jittered delay before retry n (n >= 1):
// initial·2^(n-1), capped at max.
func Exponential(initial, max time.Duration, n int) time.Duration {
	if initial <= 0 || n < 1 {
		return 0
	}
	d := initial
	for i := 1; i < n; i++ {
		if d >= max/2 {
			return max
		}
		d *= 2
	}
	return min(d, max)
}

// Jitter maps an exponential delay d to [d/2, d] using u, a uniform draw in
// [0, 1).
func Jitter(d time.Duration, u float64) time.Duration {
	half := d / 2
	return half + time.Duration(float64(d-half)*u)
}
