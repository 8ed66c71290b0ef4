package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/runner"
)

// typicalRecord is the record of an agent step as a run checkpoints it: an
// output of a few hundred bytes, two state writes, usage.
func typicalRecord() caudal.Record {
	return caudal.Record{
		Path: "report/research[2]/summarize", Status: caudal.StatusSucceeded,
		Output: map[string]any{
			"summary": "The tide tables for the estuary show two high waters a day, with a range of 4.2 m at springs and 1.9 m at neaps; the ebb runs longer than the flood.",
			"sources": []any{"admiralty-2024", "port-authority", "survey-1998"},
		},
		Writes:   []caudal.Write{{Path: []string{"summary"}, Value: "two high waters a day"}, {Path: []string{"meta", "sources"}, Value: 3.0}},
		Usage:    caudal.Usage{PromptTokens: 1830, CompletionTokens: 412, CostUSD: 0.0061},
		Attempts: 1, Latency: 840 * time.Millisecond,
	}
}

// BenchmarkCheckpoint measures one Append of a typical record: what a run
// pays per completed step to make it durable.
func BenchmarkCheckpoint(b *testing.B) {
	b.Run("store=postgres", func(b *testing.B) {
		ctx := context.Background()
		s, _ := openStore(b)
		defer func() { _ = s.Close() }()
		now := time.Now()
		if err := s.Create(ctx, &runner.Run{ID: "bench", Pipeline: "report", Status: runner.StatusRunning, CreatedAt: now, UpdatedAt: now, Owner: "me", LeaseUntil: now.Add(time.Hour)}); err != nil {
			b.Fatal(err)
		}
		rec := typicalRecord()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Append(ctx, "bench", "me", rec); err != nil {
				b.Fatal(err)
			}
		}
	})
}
