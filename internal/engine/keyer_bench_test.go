package engine_test

import (
	"testing"

	"github.com/caudal-go/caudal/internal/engine"
)

// benchOrder is a struct input whose JSON form is faithful.
type benchOrder struct {
	ID    string   `json:"id"`
	Qty   int      `json:"qty"`
	Price float64  `json:"price"`
	Tags  []string `json:"tags,omitempty"`
}

// BenchmarkCanonicalKey measures [engine.CanonicalKeyer.Key] on the inputs
// a cached step sees most: a string, a small decoded-JSON map, a struct,
// a string with two state values, and a struct with an unexported field
// (keyed as a Go value).
func BenchmarkCanonicalKey(b *testing.B) {
	tests := []struct {
		name  string
		give  any
		state map[string]any
	}{
		{"give=string", "summarize the quarterly report", nil},
		{"give=map", map[string]any{"user": "ann", "n": 3, "list": []any{"a", 2.5, true}}, nil},
		{"give=struct", benchOrder{ID: "o-17", Qty: 2, Price: 9.5, Tags: []string{"rush"}}, nil},
		{"give=string+state", "q", map[string]any{"user": "ann", "lang": "en"}},
		{"give=unexported", hidden{Name: "ann", note: "vip"}, nil},
	}
	var k engine.CanonicalKeyer
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := k.Key("fp", tt.give, tt.state); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
