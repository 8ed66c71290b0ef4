package perf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// WriteJSON writes r as indented JSON followed by a newline. It refuses a
// report whose SchemaVersion is not [SchemaVersion], which [ReadJSON]
// would reject.
func WriteJSON(w io.Writer, r *Report) error {
	if r == nil {
		return errNilReport
	}
	if r.SchemaVersion != SchemaVersion {
		return fmt.Errorf("perf: report schema_version %d, want %d", r.SchemaVersion, SchemaVersion)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("perf: encoding report: %w", err)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// ReadJSON reads a report written by [WriteJSON], of schema version 1 or
// 2. A version 1 report has no batch means, raw samples, intervals or
// statuses: those fields stay zero. Any other version is rejected.
func ReadJSON(rd io.Reader) (*Report, error) {
	var r Report
	if err := json.NewDecoder(rd).Decode(&r); err != nil {
		return nil, fmt.Errorf("perf: decoding report: %w", err)
	}
	if r.SchemaVersion != SchemaVersion && r.SchemaVersion != 1 {
		return nil, fmt.Errorf("perf: report schema_version %d is not supported: this version of perf reads schema_version 1 and %d", r.SchemaVersion, SchemaVersion)
	}
	if err := r.checkFigures(); err != nil {
		return nil, fmt.Errorf("perf: report: %w", err)
	}
	return &r, nil
}

// checkFigures rejects a report whose results could not come from a
// measurement — a stored file may be truncated, edited or corrupted, and
// CheckAgainst gates on it: a result without a scenario or variant, a
// negative count or figure, or a group mean that is not positive.
func (r *Report) checkFigures() error {
	for i, res := range r.Results {
		where := fmt.Sprintf("result %d (%s on %s)", i, res.Variant, res.Scenario)
		switch {
		case res.Scenario == "" || res.Variant == "":
			return fmt.Errorf("result %d: no scenario or variant", i)
		case res.Samples < 0 || res.Iterations < 0 || res.BatchSize < 0:
			return fmt.Errorf("%s: a negative count", where)
		case res.Stats.MeanNS < 0 || res.Stats.AllocsPerOp < 0 || res.Stats.BytesPerOp < 0:
			return fmt.Errorf("%s: a negative figure", where)
		}
		for _, m := range res.BatchMeans {
			if !(m > 0) {
				return fmt.Errorf("%s: group mean %v is not positive", where, m)
			}
		}
		for _, v := range slices.Concat(res.AllocsPasses, res.BytesPasses) {
			if v < 0 {
				return fmt.Errorf("%s: memory pass figure %v is negative", where, v)
			}
		}
	}
	return nil
}

// historyFileName returns the name SaveHistory gives a report started at t.
func historyFileName(t time.Time) string {
	return strings.ReplaceAll(t.UTC().Format(time.RFC3339), ":", "-") + ".json"
}

// SaveHistory writes r as JSON ([WriteJSON]) to dir/<started_at>.json,
// creating dir if needed, and returns the file's path. The name is
// r.StartedAt in UTC formatted RFC 3339 with every ':' replaced by '-', so
// that it is valid on every file system: "2025-07-31T09-30-00Z.json". It refuses a report
// with no StartedAt, and never overwrites a file: a run saved twice, or two
// runs started within the same second, are an error.
func SaveHistory(dir string, r *Report) (path string, err error) {
	if r == nil {
		return "", errNilReport
	}
	if r.StartedAt.IsZero() {
		return "", errors.New("perf: report has no started_at: cannot name its history file")
	}
	var buf bytes.Buffer
	if err := WriteJSON(&buf, r); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("perf: creating history directory: %w", err)
	}
	path = filepath.Join(dir, historyFileName(r.StartedAt))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return "", fmt.Errorf("perf: saving history: %w", err)
	}
	_, werr := f.Write(buf.Bytes())
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		_ = os.Remove(path)
		return "", fmt.Errorf("perf: saving history %s: %w", path, err)
	}
	return path, nil
}

// LoadHistory reads every *.json file in dir as a report and returns them
// sorted by StartedAt, oldest first (files with equal StartedAt keep their
// names' order). A file that is not a valid report is an error naming it;
// a missing dir is an error satisfying errors.Is(err, fs.ErrNotExist).
func LoadHistory(dir string) ([]*Report, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("perf: loading history: %w", err)
	}
	var reports []*Report
	for _, e := range entries { // ReadDir sorts by name
		if e.IsDir() || filepath.Ext(e.Name()) != ".json" {
			continue
		}
		path := filepath.Join(dir, e.Name())
		r, err := readReportFile(path)
		if err != nil {
			return nil, err
		}
		reports = append(reports, r)
	}
	slices.SortStableFunc(reports, func(a, b *Report) int { return a.StartedAt.Compare(b.StartedAt) })
	return reports, nil
}

// readReportFile reads the report in the file at path.
func readReportFile(path string) (*Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("perf: loading history: %w", err)
	}
	defer func() { _ = f.Close() }()
	r, err := ReadJSON(f)
	if err != nil {
		return nil, fmt.Errorf("perf: loading history file %s: %w", path, err)
	}
	return r, nil
}

// WriteHistoryTable writes the study's "Historical Performance Comparison"
// for reports: for each run, oldest first, a heading with its start time,
// suite and git commit and, per variant, the baseline and variant figures
// and the change on each scenario's target metric; then a compact summary
// of every change. The reports need not be sorted.
func WriteHistoryTable(w io.Writer, reports []*Report) error {
	runs := slices.Clone(reports)
	for _, r := range runs {
		if r == nil {
			return errNilReport
		}
	}
	slices.SortStableFunc(runs, func(a, b *Report) int { return a.StartedAt.Compare(b.StartedAt) })
	doc := []any{docHeading{2, "Historical Performance Comparison"}}
	if len(runs) == 0 {
		doc = append(doc, docPara{"No run recorded yet."})
	}
	summary := docTable{header: []string{"Run", "Suite", "Scenario", "Variant", "Change"}}
	for _, r := range runs {
		x := newReportIndex(r)
		commit := r.GitCommit
		if commit == "" {
			commit = "unknown"
		}
		doc = append(doc, docHeading{3, fmt.Sprintf("%s — %s suite, commit %s", formatTime(r.StartedAt), r.Suite, commit)})
		if len(x.others) == 0 {
			doc = append(doc, docPara{"Only the baseline was measured."})
		}
		for _, v := range x.others {
			t := docTable{header: []string{"Metric", "Baseline", v, "Change"}}
			for _, s := range x.scenarios {
				b, o := x.result(s.ID, VariantBaseline), x.result(s.ID, v)
				if b == nil && o == nil {
					continue
				}
				c := x.target(s, v)
				t.rows = append(t.rows, []string{s.Name, targetFigure(s, b), targetFigure(s, o), changeCell(c)})
				if c != nil {
					summary.rows = append(summary.rows, []string{formatTime(r.StartedAt), r.Suite, s.Name, v, changeCell(c)})
				}
			}
			doc = append(doc, t)
		}
	}
	if len(summary.rows) > 0 {
		doc = append(doc,
			docHeading{3, "Summary"},
			summary,
			docPara{"Change: improvement over the baseline on the scenario's target metric (positive = better); (n.s.): not significant at α = 0.05."})
	}
	var buf bytes.Buffer
	renderMarkdown(&buf, doc)
	_, err := w.Write(buf.Bytes())
	return err
}
