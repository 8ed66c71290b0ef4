package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caudal-go/caudal/perf"
)

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		give []string
		want string
	}{
		{"no command", nil, "no command"},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"unknown flag", []string{"bench", "--nope"}, "flag provided but not defined: -nope"},
		{"unknown suite", []string{"bench", "--suite", "fast"}, `--suite "fast"`},
		{"unknown variant", []string{"bench", "--variant", "turbo"}, `unknown variant "turbo"`},
		{"negative time", []string{"bench", "--time", "-1s"}, "must be positive"},
		{"stray argument", []string{"bench", "seed"}, "unexpected arguments"},
		{"history flag", []string{"bench", "history", "--nope"}, "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Run(context.Background(), tt.give, nil, &bytes.Buffer{}, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tt.want) || ExitCode(err) != exitUsage {
				t.Errorf("Run(%q) = %v (exit %d); want %q, exit 2", tt.give, err, ExitCode(err), tt.want)
			}
		})
	}
}

// TestCheckFailsOnNegativeControl runs the quick seed suite with the naive
// variant: the suite must see it lose and --check must exit 1.
func TestCheckFailsOnNegativeControl(t *testing.T) {
	if testing.Short() {
		t.Skip("measures the seed suite")
	}
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	args := []string{
		"bench", "--suite", "seed", "--quick", "--time", "150ms", "--variant", "naive", "--check",
		"--history", filepath.Join(dir, "history"),
		"--json", filepath.Join(dir, "r.json"), "--md", filepath.Join(dir, "r.md"), "--html", filepath.Join(dir, "r.html"),
	}
	err := Run(context.Background(), args, nil, &stdout, &stderr)
	if ExitCode(err) != exitFailure {
		t.Fatalf("Run = %v (exit %d); want a failed gate, exit 1\nstderr:\n%s", err, ExitCode(err), stderr.String())
	}
	if !strings.Contains(stderr.String(), "naive on execution: slower than the baseline beyond the 3% budget") {
		t.Errorf("stderr lacks the naive variant's failed gate:\n%s", stderr.String())
	}
	for _, want := range []string{"Execution Performance", "Memory Efficiency", "Concurrent Performance", "Cache Performance", "Context Handling"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("report lacks the study's row %q", want)
		}
	}
	f, err := os.Open(filepath.Join(dir, "r.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	rep, err := perf.ReadJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.NegativeControl) != 3 || rep.NegativeControl[2].MeanNSPerExec <= rep.NegativeControl[0].MeanNSPerExec {
		t.Errorf("negative control = %+v; want 3 points, growing with the history", rep.NegativeControl)
	}
	for _, name := range []string{"r.md", "r.html"} {
		if st, err := os.Stat(filepath.Join(dir, name)); err != nil || st.Size() == 0 {
			t.Errorf("%s not written: %v", name, err)
		}
	}

	var hist bytes.Buffer
	if err := Run(context.Background(), []string{"bench", "history", "--history", filepath.Join(dir, "history")}, nil, &hist, &stderr); err != nil {
		t.Fatalf("bench history: %v", err)
	}
	if !strings.Contains(hist.String(), "Execution Performance") {
		t.Errorf("history table lacks the study's rows:\n%s", hist.String())
	}
}

func TestHistoryEmpty(t *testing.T) {
	err := Run(context.Background(), []string{"bench", "history", "--history", t.TempDir()}, nil, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "no runs stored") {
		t.Errorf("bench history on an empty dir = %v; want an error", err)
	}
}
