package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAdvise(t *testing.T) {
	log := filepath.Join("..", "..", "..", "..", "perf", "advise", "testdata", "quickstart.jsonl")
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.jsonl")
	if err := os.WriteFile(bad, []byte("{\"msg\":\"caudal.step_started\",\"path\":\"a\"}\n{oops\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		give     []string
		wantOut  string
		wantErr  string
		wantExit int
	}{
		{"text", []string{"advise", log}, "circuit-breaker\n  - failed attempts repeat a server error or a timeout until the retries are exhausted", "", 0},
		{"go", []string{"advise", "--format", "go", log}, "var Config = optimize.Config{", "", 0},
		{"json", []string{"advise", "--format=json", log}, `"component": "circuit-breaker"`, "", 0},
		{"no file", []string{"advise"}, "", "advise: no file", exitUsage},
		{"bad format", []string{"advise", "--format", "yaml", log}, "", `--format "yaml"`, exitUsage},
		{"malformed line", []string{"advise", bad}, "", "bad.jsonl:2: not a JSON log record", exitFailure},
		{"missing file", []string{"advise", filepath.Join(dir, "none.jsonl")}, "", "no such file", exitFailure},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout bytes.Buffer
			err := Run(context.Background(), tt.give, nil, &stdout, &bytes.Buffer{})
			if ExitCode(err) != tt.wantExit || (tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Run(%q) = %v (exit %d); want exit %d, error %q", tt.give, err, ExitCode(err), tt.wantExit, tt.wantErr)
			}
			if !strings.Contains(stdout.String(), tt.wantOut) {
				t.Errorf("Run(%q) printed:\n%s\nwant %q in it", tt.give, stdout.String(), tt.wantOut)
			}
		})
	}
}
