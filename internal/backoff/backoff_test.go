package backoff

import (
	"testing"
	"time"
)

func TestExponential(t *testing.T) {
	const ms = time.Millisecond
	tests := []struct {
		name         string
		initial, max time.Duration
		give         int
		want         time.Duration
	}{
		{"first retry", 100 * ms, 10 * time.Second, 1, 100 * ms},
		{"second doubles", 100 * ms, 10 * time.Second, 2, 200 * ms},
		{"fifth", 100 * ms, 10 * time.Second, 5, 1600 * ms},
		{"capped", 100 * ms, 500 * ms, 4, 500 * ms},
		{"far past cap does not overflow", 100 * ms, 10 * time.Second, 200, 10 * time.Second},
		{"zero initial", 0, 0, 3, 0},
		{"n below one", 100 * ms, time.Second, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Exponential(tt.initial, tt.max, tt.give); got != tt.want {
				t.Errorf("Exponential(%v, %v, %d) = %v; want %v", tt.initial, tt.max, tt.give, got, tt.want)
			}
		})
	}
}

func TestJitter(t *testing.T) {
	tests := []struct {
		name string
		give float64
		want time.Duration
	}{
		{"lowest draw is half", 0, 50 * time.Millisecond},
		{"middle draw", 0.5, 75 * time.Millisecond},
		{"top draw stays below d", 0.999999, 99999950 * time.Nanosecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Jitter(100*time.Millisecond, tt.give); got != tt.want {
				t.Errorf("Jitter(100ms, %v) = %v; want %v", tt.give, got, tt.want)
			}
		})
	}
}

func TestJitteredDelayWithinBounds(t *testing.T) {
	for n := 1; n <= 8; n++ {
		want := Exponential(10*time.Millisecond, time.Second, n)
		for _, u := range []float64{0, 0.25, 0.5, 0.999999} {
			got := Jitter(want, u)
			if got < want/2 || got > want {
				t.Fatalf("Jitter(Exponential(10ms, 1s, %d), %v) = %v; want in [%v, %v]", n, u, got, want/2, want)
			}
		}
	}
}
