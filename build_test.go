package caudal_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/caudal-go/caudal"
)

func TestBuildErrors(t *testing.T) {
	var nilFunc caudal.AgentFunc
	fallbackCycle := func() caudal.Step {
		a := caudal.AgentStep("a", echoAgent{})
		b := caudal.AgentStep("b", echoAgent{}, caudal.WithFallback(a))
		return caudal.AgentStep("a", echoAgent{}, caudal.WithFallback(b))
	}
	longChain := func() caudal.Step {
		s := caudal.AgentStep("s0", echoAgent{})
		for i := 1; i <= 10; i++ {
			s = caudal.AgentStep("s"+string(rune('0'+i%10))+strings.Repeat("x", i), echoAgent{}, caudal.WithFallback(s))
		}
		return s
	}
	tests := []struct {
		name     string
		give     caudal.Step
		wantErrs []string
		wantIs   error
	}{
		{"missing agent", caudal.AgentStep("a", nil), []string{`step "a": missing agent`}, nil},
		{"nil AgentFunc", caudal.AgentStep("a", nilFunc), []string{`step "a": missing agent`}, nil},
		{"no name", caudal.AgentStep("", echoAgent{}), []string{"step has no name"}, nil},
		{"slash in name", caudal.AgentStep("a/b", echoAgent{}), []string{"which instance paths reserve"}, nil},
		{"iteration mark in name", caudal.AgentStep("a#1", echoAgent{}), []string{`step name "a#1" contains`}, nil},
		{"item mark in name", caudal.AgentStep("a[1]", echoAgent{}), []string{`step name "a[1]" contains`}, nil},
		{"item mark in branch name", caudal.Parallel("p", caudal.Branch("b[0]", caudal.AgentStep("a", echoAgent{}))), []string{`branch name "b[0]" contains`}, nil},
		{"negative retries", caudal.AgentStep("a", echoAgent{}, caudal.WithRetries(-1)), []string{"WithRetries: retries must be >= 0"}, nil},
		{"zero timeout", caudal.AgentStep("a", echoAgent{}, caudal.WithTimeout(0)), []string{"WithTimeout: timeout must be > 0"}, nil},
		{"bad backoff", caudal.AgentStep("a", echoAgent{}, caudal.WithBackoff(time.Second, time.Millisecond)), []string{"WithBackoff"}, nil},
		{"negative estimate", caudal.AgentStep("a", echoAgent{}, caudal.WithUsageEstimate(caudal.Usage{CostUSD: -1})), []string{"WithUsageEstimate"}, nil},
		{"nil validator", caudal.AgentStep("a", echoAgent{}, caudal.WithValidators(nil)), []string{"validator 0 is nil"}, nil},
		{"nil option", caudal.AgentStep("a", echoAgent{}, nil), []string{"nil StepOption"}, nil},
		{"zero fallback", caudal.AgentStep("a", echoAgent{}, caudal.WithFallback(caudal.Step{})), []string{"fallback is the zero Step"}, nil},
		{"fallback cycle", fallbackCycle(), []string{"a -> b -> a"}, caudal.ErrInfiniteFallback},
		{"chain over ten", longChain(), []string{"chain longer than 10"}, caudal.ErrInfiniteFallback},
		{"inapplicable option", caudal.Cached(caudal.AgentStep("a", echoAgent{}), newCache(t, 1), caudal.WithCacheTTL(time.Second)), nil, nil},
		{
			"agent option on a cache step", caudal.Cached(caudal.AgentStep("a", echoAgent{}), newCache(t, 1), caudal.WithRetries(1)),
			[]string{"option WithRetries does not apply to cache steps"},
			nil,
		},
		{
			"cache option on an agent step", caudal.AgentStep("a", echoAgent{}, caudal.WithCacheTTL(time.Second)),
			[]string{"option WithCacheTTL does not apply to agent steps"},
			nil,
		},
		{"nil cache", caudal.Cached(caudal.AgentStep("a", echoAgent{}), nil), []string{"nil Cache"}, nil},
		{
			"problems in a fallback carry its path", caudal.AgentStep("a", nil, caudal.WithFallback(caudal.AgentStep("b", nil))),
			[]string{`step "a": missing agent`, `step "a/b": missing agent`},
			nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			built, err := caudal.Build(tt.give)
			if tt.wantErrs == nil {
				if err != nil || !built.Built() {
					t.Fatalf("Build = %v; want a built step", err)
				}
				return
			}
			if err == nil || built.Built() {
				t.Fatalf("Build = nil error; want %q", tt.wantErrs)
			}
			for _, want := range tt.wantErrs {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Build error = %q; want it to contain %q", err, want)
				}
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("Build error = %v; want it to match %v", err, tt.wantIs)
			}
		})
	}
}

func TestBuildZeroStep(t *testing.T) {
	if _, err := caudal.Build(caudal.Step{}); err == nil {
		t.Error("Build(Step{}) = nil error; want one")
	}
}

func TestExecuteUnbuilt(t *testing.T) {
	res, err := mustNew(t).Execute(t.Context(), caudal.AgentStep("raw", echoAgent{}), "x")
	if !errors.Is(err, caudal.ErrNotBuilt) || res.Path != "raw" || res.Success {
		t.Errorf("Execute(unbuilt) = %+v, %v; want ErrNotBuilt naming raw", res, err)
	}
}

func TestFuncPanicsOnNilFunc(t *testing.T) {
	defer func() {
		if v := recover(); v == nil || !strings.HasPrefix(v.(string), "caudal: ") {
			t.Errorf("recover() = %v; want a caudal: panic", v)
		}
	}()
	caudal.Func[int, int]("nil", nil)
}

func TestOptionsScope(t *testing.T) {
	tests := []struct {
		name    string
		give    caudal.Option
		wantNew bool // accepted by New
		wantRun bool // accepted by Execute
	}{
		{"WithSink", caudal.WithSink(caudal.SlogSink(nil)), true, false},
		{"WithLimits", caudal.WithLimits(caudal.Limits{MaxTokens: 1 << 20}), true, true},
		{"WithRunID", caudal.WithRunID("r"), false, true},
		{"WithStream", caudal.WithStream(func(string, any) error { return nil }), false, true},
		{"WithState", caudal.WithState(caudal.NewState(nil)), false, true},
		{"nil sink", caudal.WithSink(nil), false, false},
		{"nil stream", caudal.WithStream(nil), false, false},
		{"nil state", caudal.WithState(nil), false, false},
		{"nil option", nil, false, false},
	}
	step := mustBuild(t, caudal.AgentStep("s", echoAgent{}))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := caudal.New(tt.give)
			if (err == nil) != tt.wantNew {
				t.Errorf("New(%s) error = %v; want accepted %v", tt.name, err, tt.wantNew)
			}
			_, err = mustNew(t).Execute(t.Context(), step, nil, tt.give)
			if (err == nil) != tt.wantRun {
				t.Errorf("Execute(%s) error = %v; want accepted %v", tt.name, err, tt.wantRun)
			}
		})
	}
}

func TestClose(t *testing.T) {
	ex := mustNew(t)
	step := mustBuild(t, caudal.AgentStep("s", echoAgent{}))
	if err := ex.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ex.Close(); err != nil {
		t.Errorf("second Close = %v; want nil (idempotent)", err)
	}
	if _, err := ex.Execute(t.Context(), step, nil); !errors.Is(err, caudal.ErrClosed) {
		t.Errorf("Execute after Close = %v; want ErrClosed", err)
	}
}
