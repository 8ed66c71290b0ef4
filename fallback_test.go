package caudal_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/caudal-go/caudal"
)

// costly answers with a fixed usage, failing when err is set.
func costly(output any, u caudal.Usage, err error) caudal.Agent {
	return caudal.AgentFunc(func(context.Context, any) (caudal.Reply, error) {
		return caudal.Reply{Output: output, Usage: u}, err
	})
}

func TestFallback(t *testing.T) {
	errPrimary := errors.New("primary down")
	errBackup := errors.New("backup down")
	primaryUse := caudal.Usage{PromptTokens: 10, CompletionTokens: 5, CostUSD: 0.01}
	backupUse := caudal.Usage{PromptTokens: 7, CompletionTokens: 3, CostUSD: 0.002}
	tests := []struct {
		name        string
		giveBackup  error
		wantSuccess bool
		wantOutput  any
		wantErrs    []error
	}{
		{"fallback succeeds", nil, true, "backup answer", nil},
		{"both fail", errBackup, false, nil, []error{errPrimary, errBackup, caudal.ErrRetriesExhausted}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var backupOut any
			if tt.giveBackup == nil {
				backupOut = "backup answer"
			}
			step := caudal.AgentStep("primary", costly(nil, primaryUse, errPrimary),
				caudal.WithRetries(1), caudal.WithBackoff(0, 0),
				caudal.WithFallback(caudal.AgentStep("backup", costly(backupOut, backupUse, tt.giveBackup))))
			res, err := execute(t, mustNew(t), step, "in")
			if res.Success != tt.wantSuccess || res.Output != tt.wantOutput {
				t.Errorf("result = %+v; want success %v, output %v", res, tt.wantSuccess, tt.wantOutput)
			}
			for _, want := range tt.wantErrs {
				if !errors.Is(err, want) {
					t.Errorf("err = %v; want it to match %v", err, want)
				}
			}
			if tt.wantErrs == nil && err != nil {
				t.Errorf("err = %v; want nil", err)
			}
			// Money spent is money spent: two primary attempts and the backup.
			wantUse := primaryUse.Add(primaryUse).Add(backupUse)
			if res.Usage != wantUse {
				t.Errorf("Usage = %+v; want %+v", res.Usage, wantUse)
			}
			if res.Metadata[caudal.MetaFallbackTriggered] != true || res.Metadata[caudal.MetaOriginalError] != "primary down" {
				t.Errorf("Metadata = %v; want fallback_triggered and original_error", res.Metadata)
			}
			if len(res.Children) != 1 || res.Children[0].Path != "primary/backup" || res.Attempts != 2 {
				t.Errorf("children %+v, attempts %d; want the backup's result at primary/backup, 2 attempts", res.Children, res.Attempts)
			}
		})
	}
}

func TestFallbackFeedbackNamesBoth(t *testing.T) {
	step := caudal.AgentStep("a", costly(nil, caudal.Usage{}, errors.New("first")),
		caudal.WithFallback(caudal.AgentStep("b", costly(nil, caudal.Usage{}, errors.New("second")))))
	res, _ := execute(t, mustNew(t), step, nil)
	if !strings.Contains(res.Feedback, "Original error: first") || !strings.Contains(res.Feedback, "Fallback error:") {
		t.Errorf("Feedback = %q; want both errors", res.Feedback)
	}
}

func TestFallbackChain(t *testing.T) {
	errDown := errors.New("down")
	c := caudal.AgentStep("c", echoAgent{})
	b := caudal.AgentStep("b", costly(nil, caudal.Usage{}, errDown), caudal.WithFallback(c))
	a := caudal.AgentStep("a", costly(nil, caudal.Usage{}, errDown), caudal.WithFallback(b))
	res, err := execute(t, mustNew(t), a, "x")
	if err != nil || res.Output != "x" || res.Children[0].Children[0].Path != "a/b/c" {
		t.Errorf("Execute = %+v, %v; want c's output via a/b/c", res, err)
	}
}

func TestFallbackNotForControlFlow(t *testing.T) {
	backup := &failN{}
	step := caudal.AgentStep("a", costly(nil, caudal.Usage{CompletionTokens: 100}, nil),
		caudal.WithFallback(caudal.AgentStep("b", backup)))
	_, err := execute(t, mustNew(t), step, nil, caudal.WithLimits(caudal.Limits{MaxTokens: 10}))
	if !errors.Is(err, caudal.ErrUsageLimitExceeded) || backup.calls != 0 {
		t.Errorf("err = %v, backup calls %d; want a breach and no fallback", err, backup.calls)
	}
}
