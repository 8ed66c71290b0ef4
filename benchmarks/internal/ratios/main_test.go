package main

import (
	"os"
	"strings"
	"testing"
)

func TestRender(t *testing.T) {
	f, err := os.Open("testdata/sample.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := parse(f)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := render(&out, m); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{
		// 1.277µs / 3.161µs, 272 B / 1128 B, 4 / 29 allocs.
		"| `Policies` | failsafe | 1.28 µs | 3.16 µs | 0.40× | 0.24× | 0.14× |",
		"| `Policies` | failsafe-no-cb |",
		"| `Chain/steps=3` | eino |",
		"| `Chain/steps=10` | eino |",
		"| `Parallel/branches=5` | eino |",
		"- `Breaker/lib=gobreaker`: 287.8 ns, 0 B/op, 0 allocs/op",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "geomean") {
		t.Errorf("output has the geomean row:\n%s", got)
	}
}

func TestRatio(t *testing.T) {
	for _, tc := range []struct {
		c, q float64
		want string
	}{
		{1, 2, "0.50×"},
		{1, 414, "0.0024×"},
		{3, 2, "1.50×"},
		{0, 0, "1 (both 0)"},
		{5, 0, "— (peer 0)"},
	} {
		c := map[string]float64{unitAllocs: tc.c}
		q := map[string]float64{unitAllocs: tc.q}
		if got := ratio(c, q, unitAllocs); got != tc.want {
			t.Errorf("ratio(%v, %v) = %q, want %q", tc.c, tc.q, got, tc.want)
		}
	}
	if got := ratio(map[string]float64{}, map[string]float64{}, unitTime); got != "—" {
		t.Errorf("ratio of missing medians = %q, want —", got)
	}
}

func TestParseEmpty(t *testing.T) {
	if _, err := parse(strings.NewReader("goos: linux\n")); err == nil {
		t.Error("parse of an input without rows: no error")
	}
}
