package perf_test

import (
	"fmt"

	"github.com/caudal-go/caudal/perf"
)

// ExampleComparePaired compares a variant about 10 % slower with the
// baseline, pair by pair.
func ExampleComparePaired() {
	base := []float64{100, 104, 98, 101, 99, 103, 97, 102, 100, 105}
	slower := []float64{110, 114, 108, 111, 109, 113, 107, 112, 110, 116}
	p := perf.ComparePaired(base, slower)
	pct, lo, hi := p.Improvement()
	fmt.Printf("%+.1f%% [%+.1f%%, %+.1f%%] significant: %v\n", pct, lo, hi, p.Significant())
	// Output: -10.0% [-10.3%, -9.7%] significant: true
}
