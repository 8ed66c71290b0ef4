package caudal_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caudal-go/caudal"
)

func TestStepResultJSONRoundTrip(t *testing.T) {
	step := caudal.AgentStep("primary", costly(nil, caudal.Usage{PromptTokens: 3, CostUSD: 0.25}, errors.New("down")),
		caudal.WithFallback(caudal.AgentStep("backup", costly(map[string]any{"text": "hi", "n": 2.0}, caudal.Usage{CompletionTokens: 4}, nil))))
	res, err := execute(t, mustNew(t), step, "in", caudal.WithRunID("run-7"))
	if err != nil {
		t.Fatal(err)
	}
	res.Latency = 1500 * time.Microsecond
	res.Children[0].Latency = time.Millisecond

	b, err := json.Marshal(res)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	var back caudal.StepResult
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	if !reflect.DeepEqual(back, res) {
		t.Errorf("round trip:\n got %+v\nwant %+v\njson %s", back, res, b)
	}
	if back.RunID != "run-7" || back.Children[0].RunID != "run-7" {
		t.Errorf("run IDs = %q, %q; want run-7 on every result", back.RunID, back.Children[0].RunID)
	}
}

func TestStateJSON(t *testing.T) {
	st := caudal.NewState(map[string]any{"topic": "batteries", "n": 3.0, "tags": []any{"a"}})
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	back := caudal.NewState(nil)
	if err := json.Unmarshal(b, back); err != nil {
		t.Fatal(err)
	}
	if got, ok := caudal.Get[string](back, "topic"); !ok || got != "batteries" {
		t.Errorf("Get(topic) = %q, %v; want batteries", got, ok)
	}
	if _, ok := caudal.Get[int](back, "topic"); ok {
		t.Error("Get[int](topic) reported ok for a string")
	}

	st.Set("callback", func() {})
	if _, err := json.Marshal(st); err == nil || !strings.Contains(err.Error(), `"callback"`) {
		t.Errorf("Marshal with a func value = %v; want an error naming the key", err)
	}
}
