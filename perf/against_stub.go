// TEMPORARY stub, replaced by the lead: LoadReport and CheckAgainst land in
// package perf with issue 9; this file only lets cmd/caudal build meanwhile.

package perf

import (
	"encoding/json"
	"fmt"
	"os"
)

// LoadReport reads the JSON report stored at path.
//
// TEMPORARY stub, replaced by the lead.
func LoadReport(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("perf: decoding report: %w", err)
	}
	return &r, nil
}

// CheckAgainst compares cur with the reference run ref.
//
// TEMPORARY stub, replaced by the lead: it finds no failure.
func CheckAgainst(cur, ref *Report) []GateFailure { return nil }
