package runner_test

import (
	"testing"

	"github.com/caudal-go/caudal/runner"
)

func TestDecodeRecordRefusesWhatARunWouldTrust(t *testing.T) {
	tests := []struct {
		name string
		give string
		ok   bool
	}{
		{"a good record", `{"path":"p/a","status":"succeeded","usage":{"prompt_tokens":3,"completion_tokens":1,"cost_usd":0.5}}`, true},
		{"not JSON", `{"path": 5`, false},
		{"no path", `{"status":"succeeded"}`, false},
		{"unknown status", `{"path":"p/a","status":"exploded"}`, false},
		{"negative tokens", `{"path":"p/a","status":"succeeded","usage":{"prompt_tokens":-100}}`, false},
		{"negative cost", `{"path":"p/a","status":"decided","usage":{"cost_usd":-2}}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, err := runner.DecodeRecord([]byte(tt.give))
			if (err == nil) != tt.ok {
				t.Fatalf("DecodeRecord(%s) = %+v, %v; want ok %v", tt.give, rec, err, tt.ok)
			}
		})
	}
}

func TestStatusValid(t *testing.T) {
	for _, st := range []runner.Status{runner.StatusRunning, runner.StatusPaused, runner.StatusCompleted, runner.StatusFailed, runner.StatusCancelled} {
		if !st.Valid() {
			t.Errorf("%q.Valid() = false", st)
		}
	}
	if runner.Status("exploded").Valid() {
		t.Error(`"exploded".Valid() = true`)
	}
}
