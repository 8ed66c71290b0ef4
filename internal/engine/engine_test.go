package engine_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/caudal-go/caudal/internal/engine"
)

type order struct {
	Zeta  string `json:"zeta"`
	Alpha int    `json:"alpha"`
}

// viaJSON returns v as encoding/json gives it back.
func viaJSON(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestCanonicalKeyerSurvivesJSON(t *testing.T) {
	tests := []struct {
		name  string
		give  any
		state map[string]any
	}{
		{"string", "hello", nil},
		{"struct, fields out of key order", order{Zeta: "z", Alpha: 1}, nil},
		{"ints", []int{1, 2, 3}, nil},
		{"nested struct in a map", map[string]any{"o": order{Zeta: "z"}}, nil},
		{"struct in the state", "q", map[string]any{"user": order{Zeta: "ann", Alpha: 2}}},
	}
	var k engine.CanonicalKeyer
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, err := k.Key("fp", tt.give, tt.state)
			if err != nil {
				t.Fatal(err)
			}
			var state map[string]any
			if tt.state != nil {
				state, _ = viaJSON(t, tt.state).(map[string]any)
			}
			got, err := k.Key("fp", viaJSON(t, tt.give), state)
			if err != nil || got != want {
				t.Errorf("Key(JSON round trip) = %s, %v; want %s, the key of the value itself", got, err, want)
			}
		})
	}
}

func TestCanonicalKeyerTellsApart(t *testing.T) {
	var k engine.CanonicalKeyer
	keys := map[string]string{}
	for _, c := range []struct {
		fp   string
		give any
	}{{"a", "x"}, {"b", "x"}, {"a", "y"}, {"a", order{Zeta: "x"}}, {"a", map[string]any{"zeta": "x"}}} {
		key, err := k.Key(c.fp, c.give, nil)
		if err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprint(c.fp, "/", c.give)
		if prev, dup := keys[key]; dup {
			t.Errorf("Key(%s) = Key(%s); want different keys", name, prev)
		}
		keys[key] = name
	}
	if _, err := k.Key("a", map[string]any{"f": func() {}}, nil); err == nil {
		t.Error("Key of a func = nil error; want one")
	}
}

type permanentErr struct{ error }

func (permanentErr) Permanent() bool { return true }

type retryAfterErr struct{ error }

func (retryAfterErr) RetryAfter() time.Duration { return 3 * time.Second }

func TestRules(t *testing.T) {
	open := errors.New("circuit open")
	engine.ErrCircuitOpen = open
	t.Cleanup(func() { engine.ErrCircuitOpen = nil })
	var c engine.Rules
	if v := c.Classify(engine.Site{}, errors.New("flaky")); !v.Retry || v.Class != "transient" {
		t.Errorf("Classify(flaky) = %+v; want Retry, class transient", v)
	}
	if v := c.Classify(engine.Site{}, fmt.Errorf("call: %w", permanentErr{errors.New("bad request")})); v.Retry || v.Class != "permanent" {
		t.Errorf("Classify(permanent) = %+v; want no retry, class permanent", v)
	}
	if v := c.Classify(engine.Site{}, fmt.Errorf("call: %w", retryAfterErr{errors.New("429")})); !v.Retry || v.Delay != 3*time.Second || v.Class != "rate_limited" {
		t.Errorf("Classify(retry after) = %+v; want Retry after 3s, class rate_limited", v)
	}
	if v := c.Classify(engine.Site{}, fmt.Errorf("call: %w", open)); v.Retry || v.Class != "circuit_open" {
		t.Errorf("Classify(circuit open) = %+v; want no retry, class circuit_open", v)
	}
}
