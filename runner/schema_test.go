package runner_test

import (
	"errors"
	"testing"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/runner"
)

// TestAnswerSchema resumes a run paused at a step with each schema, with
// each answer: a valid one completes it, an invalid one is an
// *AnswerError.
func TestAnswerSchema(t *testing.T) {
	tests := []struct {
		name   string
		schema any
		give   any
		want   error // nil: accepted
	}{
		{name: "type string", schema: `{"type": "string"}`, give: "yes"},
		{name: "type string, number", schema: `{"type": "string"}`, give: 3, want: runner.ErrInvalidAnswer},
		{name: "type list", schema: `{"type": ["string", "null"]}`, give: nil},
		{name: "integer", schema: `{"type": "integer"}`, give: 4},
		{name: "integer, fraction", schema: `{"type": "integer"}`, give: 4.5, want: runner.ErrInvalidAnswer},
		{name: "number takes integers", schema: `{"type": "number"}`, give: 4},
		{name: "boolean", schema: `{"type": "boolean"}`, give: "true", want: runner.ErrInvalidAnswer},
		{name: "null", schema: `{"type": "null"}`, give: nil},
		{name: "array items", schema: `{"type": "array", "items": {"type": "string", "enum": ["a", "b"]}}`, give: []string{"a", "b"}},
		{name: "array items, bad", schema: `{"type": "array", "items": {"enum": ["a", "b"]}}`, give: []string{"a", "c"}, want: runner.ErrInvalidAnswer},
		{name: "enum of numbers", schema: `{"enum": [1, 2.5, "x"]}`, give: 2.5},
		{name: "enum miss", schema: `{"enum": [1, 2.5]}`, give: 3, want: runner.ErrInvalidAnswer},
		{name: "minimum", schema: `{"minimum": 0}`, give: -1, want: runner.ErrInvalidAnswer},
		{name: "maximum", schema: `{"maximum": 10}`, give: 10},
		{name: "minLength counts characters", schema: `{"minLength": 3}`, give: "héé"},
		{name: "maxLength", schema: `{"maxLength": 2}`, give: "abc", want: runner.ErrInvalidAnswer},
		{name: "required", schema: `{"type": "object", "required": ["a"]}`, give: map[string]any{"b": 1}, want: runner.ErrInvalidAnswer},
		{name: "properties", schema: `{"properties": {"a": {"type": "string"}}}`, give: map[string]any{"a": "x", "b": 1}},
		{name: "nested property", schema: `{"properties": {"a": {"properties": {"b": {"maximum": 1}}}}}`, give: map[string]any{"a": map[string]any{"b": 2}}, want: runner.ErrInvalidAnswer},
		{name: "annotations", schema: `{"title": "t", "description": "d", "$schema": "x", "default": 1, "type": "number"}`, give: 1},
		{name: "raw bytes", schema: []byte(`{"type": "string"}`), give: "s"},
		{name: "a struct answer, as JSON", schema: `{"required": ["N"]}`, give: struct{ N int }{1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := memStore(t)
			r := newRunner(t, s, map[string]caudal.Step{"p": caudal.Seq("p", caudal.HumanInput("ask", "?", caudal.WithSchema(tt.schema)))})
			run, err := r.Start(t.Context(), "p", "in")
			if err != nil || run.Status != runner.StatusPaused {
				t.Fatalf("Start = %+v, %v; want paused", run, err)
			}
			_, err = r.Resume(t.Context(), run.ID, runner.Answer{Value: tt.give})
			if !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
				t.Errorf("Resume(%v) = %v; want %v", tt.give, err, tt.want)
			}
		})
	}
}

// TestInvalidSchema: a schema outside the subset fails the run at its
// pause, naming the problem.
func TestInvalidSchema(t *testing.T) {
	tests := []struct {
		name   string
		schema any
	}{
		{name: "unsupported keyword", schema: `{"pattern": "^a"}`},
		{name: "not an object", schema: `[1]`},
		{name: "not JSON", schema: `{"type": `},
		{name: "unknown type", schema: `{"type": "decimal"}`},
		{name: "negative length", schema: `{"minLength": -1}`},
		{name: "bad nested", schema: `{"properties": {"a": {"oneOf": []}}}`},
		{name: "bad items", schema: `{"items": 3}`},
		{name: "required not strings", schema: `{"required": [1]}`},
		{name: "enum not an array", schema: `{"enum": 1}`},
		{name: "minimum not a number", schema: `{"minimum": "1"}`},
		{name: "unencodable", schema: func() {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := memStore(t)
			r := newRunner(t, s, map[string]caudal.Step{"p": caudal.Seq("p", caudal.HumanInput("ask", "?", caudal.WithSchema(tt.schema)))})
			run, err := r.Start(t.Context(), "p", "in")
			if !errors.Is(err, runner.ErrInvalidSchema) || run == nil || run.Status != runner.StatusFailed {
				t.Errorf("Start = %+v, %v; want failed with ErrInvalidSchema", run, err)
			}
		})
	}
}
