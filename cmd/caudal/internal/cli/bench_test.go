package cli

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caudal-go/caudal/perf"
)

// quickRun are the flags of the shortest real run: the seed suite, the
// baseline alone, 50 ms per scenario.
var quickRun = []string{"bench", "--suite", "seed", "--quick", "--time", "50ms", "--variant", "baseline"}

func TestHelp(t *testing.T) {
	tests := []struct {
		name string
		give []string
	}{
		{"-h", []string{"-h"}},
		{"--help", []string{"--help"}},
		{"help", []string{"help"}},
		{"bench -h", []string{"bench", "-h"}},
		{"bench --help", []string{"bench", "--help"}},
		{"bench -h among flags", []string{"bench", "--suite", "designed", "-h"}},
		{"bench history -h", []string{"bench", "history", "-h"}},
		{"bench history --help", []string{"bench", "history", "--help"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := Run(canceled(), tt.give, nil, &stdout, &stderr)
			if err != nil || ExitCode(err) != 0 {
				t.Fatalf("Run(%q) = %v (exit %d); want nil, exit 0", tt.give, err, ExitCode(err))
			}
			for _, want := range []string{"caudal bench [flags]", "--against FILE", "Exit status:"} {
				if !strings.Contains(stdout.String(), want) {
					t.Errorf("Run(%q) printed %q; want it to contain %q", tt.give, stdout.String(), want)
				}
			}
			if stderr.Len() > 0 {
				t.Errorf("Run(%q) wrote %q on stderr; want nothing", tt.give, stderr.String())
			}
		})
	}
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		name string
		give error
		want int
	}{
		{"success", nil, 0},
		{"usage", usagef("bench: --suite %q: want seed", "x"), exitUsage},
		{"wrapped usage", errors.Join(errors.New("x"), usagef("y")), exitUsage},
		{"failed gate", &failedError{gates: 1}, exitFailure},
		{"regression", &failedError{regressions: 1, against: "ref.json"}, exitFailure},
		{"run error", errors.New("bench: seed suite: workload failed"), exitFailure},
		{"interrupted", interrupted(canceled(), perf.SuiteSeed), exitFailure},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ExitCode(tt.give); got != tt.want {
				t.Errorf("ExitCode(%v) = %d; want %d", tt.give, got, tt.want)
			}
		})
	}
}

// canceled returns a context cancelled already: a command line that gets
// past its checks is interrupted at once, so a usage error must come first.
func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// TestBadPaths checks that bad output paths are usage errors naming the
// flag and path, found before the run (ctx is cancelled: a run would
// exit 1, not 2) and with nothing created.
func TestBadPaths(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file.txt")
	sub := filepath.Join(dir, "sub")
	writeFile(t, file, "old")
	// With --suite all, x.md is written as x-seed.md, x-designed.md, ...
	suffixed := filepath.Join(sub, "x-designed.md")
	if err := os.MkdirAll(suffixed, 0o755); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing", "r.json")
	tests := []struct {
		name string
		give []string
		want string
	}{
		{"json in a missing directory", []string{"--json", missing}, "--json " + missing + ": directory " + filepath.Dir(missing) + " does not exist"},
		{"md is a directory", []string{"--md", sub}, "--md " + sub + ": is a directory"},
		{"html under a file", []string{"--html", filepath.Join(file, "r.html")}, "--html " + filepath.Join(file, "r.html") + ": " + file + " is not a directory"},
		{"a suite's md is a directory", []string{"--suite", "all", "--md", filepath.Join(sub, "x.md")}, "--md " + suffixed + ": is a directory"},
		{"same file twice", []string{"--md", filepath.Join(dir, "r"), "--html", filepath.Join(dir, "r")}, "--md and --html both write " + filepath.Join(dir, "r")},
		{"history is a file", []string{"--history", file}, "--history " + file + ": is not a directory"},
		{"history under a file", []string{"--history", filepath.Join(file, "h")}, "--history " + filepath.Join(file, "h") + ": " + file + " is not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"bench", "--history", filepath.Join(dir, "h")}, tt.give...)
			wantUsageErrorBeforeRun(t, args, tt.want)
		})
	}
	if got := dirNames(t, dir); !slices.Equal(got, []string{"file.txt", "sub"}) {
		t.Errorf("files after the bad command lines: %q; want only the fixtures", got)
	}
	if got := dirNames(t, sub); !slices.Equal(got, []string{"x-designed.md"}) {
		t.Errorf("files in %s: %q; want only the fixture", sub, got)
	}
}

func TestUnwritableDirectory(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root writes in read-only directories")
	}
	dir := filepath.Join(t.TempDir(), "ro")
	if err := os.Mkdir(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	for _, flag := range []string{"--json", "--history"} {
		path := filepath.Join(dir, "out")
		args := []string{"bench", "--history", t.TempDir(), flag, path}
		err := Run(canceled(), args, nil, &bytes.Buffer{}, &bytes.Buffer{})
		want := flag + " " + path + ": directory " + dir + " is not writable"
		if ExitCode(err) != exitUsage || !strings.Contains(err.Error(), want) {
			t.Errorf("Run(%q) = %v (exit %d); want %q, exit 2", args, err, ExitCode(err), want)
		}
	}
}

// writeReference writes a minimal stored report of suite and returns its
// path.
func writeReference(t *testing.T, suite string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), suite+".json")
	var buf bytes.Buffer
	rep := &perf.Report{SchemaVersion: perf.SchemaVersion, Suite: suite, StartedAt: time.Date(2025, 7, 31, 9, 30, 0, 0, time.UTC)}
	if err := perf.WriteJSON(&buf, rep); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, buf.String())
	return path
}

func TestAgainstUsageErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.json")
	garbage := filepath.Join(t.TempDir(), "garbage.json")
	writeFile(t, garbage, "not json")
	designed := writeReference(t, perf.SuiteDesigned)
	unknown := writeReference(t, "nope")
	tests := []struct {
		name string
		give []string
		want string
	}{
		{"missing", []string{"--against", missing}, "--against " + missing},
		{"not a report", []string{"--against", garbage}, "--against " + garbage},
		{"another suite", []string{"--against", designed}, "--against " + designed + ": a report of the designed suite; this run measures the seed suite"},
		{"unknown suite with all", []string{"--suite", "all", "--against", unknown}, "--against " + unknown + `: a report of suite "nope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"bench", "--history", ""}, tt.give...)
			wantUsageErrorBeforeRun(t, args, tt.want)
		})
	}

	// With --suite all, the reference applies to the suite it recorded.
	f := &benchFlags{suite: "all", against: designed}
	if ref, err := f.loadReference(); err != nil || ref.Suite != perf.SuiteDesigned {
		t.Errorf("--suite all --against %s: loadReference() = %v, %v; want the designed report", designed, ref, err)
	}
}

// hookWriter calls hook before its first write and records what is
// written; the progress writes make it a hook into a running suite.
type hookWriter struct {
	once sync.Once
	hook func()
	mu   sync.Mutex // protects buf
	buf  bytes.Buffer
}

func (w *hookWriter) Write(p []byte) (int, error) {
	w.once.Do(w.hook)
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *hookWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// TestInterrupt cancels the run's ctx, before it starts and while it
// measures: Run must return a run error saying so, leave the report files
// that existed untouched, and create no file and no history entry.
func TestInterrupt(t *testing.T) {
	tests := []struct {
		name    string
		atStart bool
	}{
		{"before the run", true},
		{"during the run", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "r.json"), "old")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.atStart {
				cancel()
			}
			stderr := &hookWriter{hook: cancel}
			args := append(slices.Clone(quickRun),
				"--json", filepath.Join(dir, "r.json"), "--md", filepath.Join(dir, "r.md"), "--history", filepath.Join(dir, "h"))
			err := Run(ctx, args, nil, &bytes.Buffer{}, stderr)
			if ExitCode(err) != exitFailure || !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "interrupted") {
				t.Fatalf("Run = %v (exit %d); want an interruption, exit 1", err, ExitCode(err))
			}
			if got := readFile(t, filepath.Join(dir, "r.json")); got != "old" {
				t.Errorf("r.json = %q after the interruption; want it untouched", got)
			}
			if got := dirNames(t, dir); !slices.Equal(got, []string{"r.json"}) {
				t.Errorf("files after the interruption: %q; want only r.json", got)
			}
		})
	}
}

// TestReportsAndAgainst runs the shortest suite twice: once storing a
// reference (every file replaced whole, nothing else left), once checking
// against it, where a regression must fail the run without --check.
func TestReportsAndAgainst(t *testing.T) {
	dir := t.TempDir()
	ref := filepath.Join(dir, "ref.json")
	writeFile(t, filepath.Join(dir, "r.md"), "old")
	var stdout, stderr bytes.Buffer
	args := append(slices.Clone(quickRun),
		"--json", ref, "--md", filepath.Join(dir, "r.md"), "--html", filepath.Join(dir, "r.html"), "--history", filepath.Join(dir, "h"))
	if err := Run(context.Background(), args, nil, &stdout, &stderr); err != nil {
		t.Fatalf("Run(%q) = %v; want nil\nstderr:\n%s", args, err, stderr.String())
	}
	if got := dirNames(t, dir); !slices.Equal(got, []string{"h", "r.html", "r.md", "ref.json"}) {
		t.Errorf("files after the run: %q; want h, r.html, r.md, ref.json", got)
	}
	if got := readFile(t, filepath.Join(dir, "r.md")); got != stdout.String() {
		t.Errorf("r.md is not the report printed on stdout:\n%s", got)
	}
	if got := dirNames(t, filepath.Join(dir, "h")); len(got) != 1 {
		t.Errorf("history entries: %q; want 1", got)
	}

	var gotCur, gotRef *perf.Report
	checkAgainst = func(cur, ref *perf.Report) []perf.GateFailure {
		gotCur, gotRef = cur, ref
		return []perf.GateFailure{{Scenario: "execution", Variant: perf.VariantBaseline, Reason: "slower than the reference"}}
	}
	defer func() { checkAgainst = perf.CheckAgainst }()
	stderr.Reset()
	args = append(slices.Clone(quickRun), "--history", "", "--against", ref)
	err := Run(context.Background(), args, nil, &bytes.Buffer{}, &stderr)
	if ExitCode(err) != exitFailure || !strings.Contains(err.Error(), "1 regression(s) against "+ref) {
		t.Fatalf("Run(%q) = %v (exit %d); want a regression, exit 1", args, err, ExitCode(err))
	}
	if want := "regression against " + ref + ": baseline on execution: slower than the reference"; !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
	}
	if gotCur == nil || gotRef == nil || gotCur == gotRef || gotCur.Suite != perf.SuiteSeed || gotRef.Suite != perf.SuiteSeed {
		t.Errorf("CheckAgainst(%v, %v); want this run and the stored seed report", gotCur, gotRef)
	}
}

// TestWriteError removes the output directory while the suite runs:
// writing the report fails, which is a run error (exit 1), not a usage one.
func TestWriteError(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	stderr := &hookWriter{hook: func() { _ = os.RemoveAll(dir) }}
	args := append(slices.Clone(quickRun), "--history", "", "--json", filepath.Join(dir, "r.json"))
	err := Run(context.Background(), args, nil, &bytes.Buffer{}, stderr)
	if ExitCode(err) != exitFailure || !strings.Contains(err.Error(), "--json: writing "+filepath.Join(dir, "r.json")) {
		t.Errorf("Run(%q) = %v (exit %d); want a write error naming the file, exit 1", args, err, ExitCode(err))
	}
}

func TestStage(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "r.json")
	writeFile(t, path, "old")
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}

	_, err := stage(path, func(w io.Writer) error {
		_, _ = io.WriteString(w, "half")
		return errors.New("disk full")
	})
	if err == nil || !strings.Contains(err.Error(), "writing "+path+": disk full") {
		t.Errorf("stage with a failing write = %v; want the error naming the file", err)
	}
	if got := readFile(t, path); got != "old" {
		t.Errorf("after a failed write the file holds %q; want it untouched", got)
	}

	s, err := stage(path, func(w io.Writer) error { _, err := io.WriteString(w, "new"); return err })
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, path); got != "old" {
		t.Errorf("before commit the file holds %q; want it untouched", got)
	}
	if err := s.commit(); err != nil {
		t.Fatal(err)
	}
	s.discard() // a no-op once committed
	if got := readFile(t, path); got != "new" {
		t.Errorf("after commit the file holds %q; want %q", got, "new")
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("after commit: %v, %v; want the mode the file had, 0600", st.Mode(), err)
	}

	s, err = stage(path, func(w io.Writer) error { _, err := io.WriteString(w, "discarded"); return err })
	if err != nil {
		t.Fatal(err)
	}
	s.discard()
	if got := readFile(t, path); got != "new" {
		t.Errorf("after discard the file holds %q; want %q", got, "new")
	}
	if got := dirNames(t, dir); !slices.Equal(got, []string{"r.json"}) {
		t.Errorf("files left: %q; want only r.json", got)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// dirNames returns the sorted names in dir.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// wantUsageErrorBeforeRun runs the command with args on a cancelled
// context and checks it is refused as a usage error containing want
// before anything ran: a run would exit 1 and write progress on stderr.
func wantUsageErrorBeforeRun(t *testing.T, args []string, want string) {
	t.Helper()
	var stderr bytes.Buffer
	err := Run(canceled(), args, nil, &bytes.Buffer{}, &stderr)
	if ExitCode(err) != exitUsage || !strings.Contains(err.Error(), want) {
		t.Errorf("Run(%q) = %v (exit %d); want %q, exit 2", args, err, ExitCode(err), want)
	}
	if stderr.Len() > 0 {
		t.Errorf("Run(%q) wrote %q on stderr; want nothing (no run)", args, stderr.String())
	}
}
