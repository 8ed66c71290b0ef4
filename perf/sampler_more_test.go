package perf

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSampleRebuildsWorkloads(t *testing.T) {
	// Every RebuildRounds rounds a subject with a Rebuild gets a fresh
	// instance; the replaced one is closed, the last one left to the
	// caller; the tail and memory passes run on the last.
	var built, closed int
	instance := func() *Workload {
		w := counter()
		w.Close = func() { closed++ }
		built++
		return w
	}
	first := instance()
	subjects := []Subject{
		{Variant: "rebuilt", Workload: first, Rebuild: func() (*Workload, error) { return instance(), nil }},
		{Variant: "kept", Workload: counter()},
	}
	res, err := Sample(context.Background(), subjects, 1, testConfig, nil)
	if err != nil {
		t.Fatal(err)
	}
	rounds, per := res[0].Samples, res[0].RoundsPerGroup
	if want := 1 + rounds/per; built != want || closed != want-1 {
		t.Errorf("%d rounds of %d per group: built %d instances, closed %d; want %d built, %d closed", rounds, per, built, closed, want, want-1)
	}
	if subjects[0].Workload == first {
		t.Error("subjects[0].Workload is still the first instance; want the last one")
	}
}

func TestSampleRebuildError(t *testing.T) {
	boom := errors.New("boom")
	subjects := []Subject{{Variant: "broken", Workload: counter(), Rebuild: func() (*Workload, error) { return nil, boom }}}
	if _, err := Sample(context.Background(), subjects, 1, testConfig, nil); !errors.Is(err, boom) || !strings.Contains(err.Error(), "broken") {
		t.Errorf("Sample = %v; want the rebuild's error naming the variant", err)
	}
}

func TestSampleTails(t *testing.T) {
	// The tail pass times iterations one by one: p99 only from 100 of
	// them, p99.9 only from 1,000.
	cfg := testConfig
	for _, tt := range []struct {
		name            string
		budget          time.Duration
		want99, want999 bool
	}{
		{"short", time.Nanosecond, false, false},    // one timing per subject
		{"long", 30 * time.Millisecond, true, true}, // a counter: 10,000 timings
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg.TailBudget = tt.budget
			res, err := Sample(context.Background(), []Subject{{Variant: "a", Workload: counter()}}, 1, cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			st := res[0].Stats
			if (st.P99NS != nil) != tt.want99 || (st.P999NS != nil) != tt.want999 || len(res[0].Tail) == 0 {
				t.Errorf("%d tail timings: p99 %v, p99.9 %v, %d buckets; want p99 %v, p99.9 %v", st.TailSamples, st.P99NS, st.P999NS, len(res[0].Tail), tt.want99, tt.want999)
			}
			var n int64
			for _, b := range res[0].Tail {
				n += b.Count
			}
			if n != int64(st.TailSamples) {
				t.Errorf("histogram holds %d timings; want %d", n, st.TailSamples)
			}
		})
	}
}

func TestLoadParsing(t *testing.T) {
	if got := parseLoadavg("0.52 0.58 0.59 1/467 12345\n"); got != 0.52 {
		t.Errorf("parseLoadavg = %v; want 0.52", got)
	}
	if got := parseLoadavg(""); got != -1 {
		t.Errorf("parseLoadavg(\"\") = %v; want -1", got)
	}
	const psi = "some avg10=12.50 avg60=3.00 avg300=1.00 total=12345\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
	if got := parsePressure(psi); got != 12.5 {
		t.Errorf("parsePressure = %v; want 12.5", got)
	}
	if got := parsePressure("full avg10=1.00\n"); got != -1 {
		t.Errorf("parsePressure without a some line = %v; want -1", got)
	}
	if w := loadWarning(Load{Load1Start: 0.2, Load1End: 0.3, CPUPressureStart: 1, CPUPressureEnd: 2}, 2); w != "" {
		t.Errorf("a quiet machine warns: %q", w)
	}
	if w := loadWarning(Load{Load1Start: 1.6, Load1End: 0.3, CPUPressureStart: -1, CPUPressureEnd: 25}, 2); !strings.Contains(w, "load average 1.60") || !strings.Contains(w, "CPU pressure 25.0%") {
		t.Errorf("a busy machine's warning = %q; want both readings", w)
	}
}

// againstReport is a one-scenario report whose baseline has group means
// around meanNS and the allocation passes given.
func againstReport(meanNS float64, allocs ...float64) *Report {
	return &Report{
		SchemaVersion: SchemaVersion, Suite: SuiteSeed, Machine: Machine{CPUModel: "cpu", CPUs: 2},
		Results: []Result{{
			Scenario: ScenarioExecution, Variant: VariantBaseline, BatchMeans: spread(meanNS, 20),
			Stats:        Stats{AllocsPerOp: median(sortedCopy(allocs)), BytesPerOp: 100},
			AllocsPasses: allocs, BytesPasses: []float64{100, 100, 100},
		}},
	}
}

func TestCheckAgainst(t *testing.T) {
	ref := againstReport(1000, 10, 10, 10)
	tests := []struct {
		name string
		cur  *Report
		want string // a failure containing this, or "" for none
	}{
		{"same", againstReport(1000, 10, 10, 10), ""},
		{"within the 10% budget", againstReport(1060, 10, 10, 10), ""},
		{"slower", againstReport(1300, 10, 10, 10), "slower than the reference run"},
		{"allocates more", againstReport(1000, 12, 12, 12), "allocates more than in the reference run"},
		{"another machine: time not compared", func() *Report {
			r := againstReport(1300, 10, 10, 10)
			r.Machine.CPUModel = "other"
			return r
		}(), ""},
		{"another suite", func() *Report { r := againstReport(1000, 10, 10, 10); r.Suite = SuiteDesigned; return r }(), "of the seed suite"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fails := CheckAgainst(tt.cur, ref)
			switch {
			case tt.want == "" && len(fails) > 0:
				t.Errorf("CheckAgainst = %v; want no failure", fails)
			case tt.want != "" && (len(fails) != 1 || !strings.Contains(fails[0].String(), tt.want)):
				t.Errorf("CheckAgainst = %v; want one failure containing %q", fails, tt.want)
			}
		})
	}
	other := againstReport(1000, 10, 10, 10)
	other.Results[0].Scenario = ScenarioCache
	if fails := CheckAgainst(againstReport(1000, 10, 10, 10), other); len(fails) != 1 || !strings.Contains(fails[0].String(), "nothing was compared") {
		t.Errorf("against a reference with no scenario in common = %v; want it to fail", fails)
	}
	old := againstReport(1000, 10, 10, 10)
	old.SchemaVersion, old.Results[0].BatchMeans = 1, nil
	if fails := CheckAgainst(againstReport(5000, 10, 10, 10), old); len(fails) != 0 {
		t.Errorf("against a schema 1 report (no batch means) = %v; want time not compared", fails)
	}
}

func TestCommonBatch(t *testing.T) {
	// Subjects of similar cost share the largest batch size; one that the
	// larger size would stretch past the span keeps its own.
	batch := []int{64, 32, 1}
	cost := []time.Duration{200, 400, 200_000}
	commonBatch(batch, cost, time.Millisecond)
	if want := []int{64, 64, 1}; !slices.Equal(batch, want) {
		t.Errorf("commonBatch = %v; want %v", batch, want)
	}
}

func TestSampleVariesTheOrderOfRounds(t *testing.T) {
	// A subject pays for what the one before it left: each follows others
	// at random, each pair of rounds is an order and its reverse, and the
	// subject timed first after a rebuild (one round per group here)
	// varies too.
	var (
		trace          []string
		sampling, open bool
		progress       = func(_ float64, phase string) { sampling = phase == "sampling" }
		subjects       []Subject
	)
	for k, name := range []string{"a", "b", "c", "d"} {
		w := &tracedWorkload{t: t, name: name, trace: &trace, sampling: &sampling, open: &open}
		subjects = append(subjects, Subject{Variant: name, Workload: w.workload(), Rebuild: func() (*Workload, error) {
			if k == 0 {
				trace = append(trace, "|") // the rebuilds begin
			}
			return w.workload(), nil
		}})
	}
	cfg := testConfig
	cfg.Groups = 1 << 20 // every group one round
	res, err := Sample(context.Background(), subjects, 1, cfg, progress)
	if err != nil {
		t.Fatal(err)
	}
	if res[0].RoundsPerGroup != 1 {
		t.Fatalf("RoundsPerGroup = %d, want 1", res[0].RoundsPerGroup)
	}
	// The trace: round 0, then per group "|", a warm-up round and a timed round.
	var rounds []string
	for g, s := range strings.Split(strings.Join(trace, ""), "|") {
		if g > 0 {
			s = s[min(len(s), 4):] // after the warm-up round
		}
		if s != "" {
			rounds = append(rounds, s)
		}
	}
	if len(rounds) != res[0].Samples || len(rounds) < 8 {
		t.Fatalf("%d timed rounds for %d samples, want as many, at least 8", len(rounds), res[0].Samples)
	}
	firsts := map[byte]bool{}
	before := map[byte]map[byte]bool{}
	for r, round := range rounds {
		if got := strings.Join(slices.Sorted(slices.Values(strings.Split(round, ""))), ""); got != "abcd" {
			t.Fatalf("round %d = %q; want every subject once", r, round)
		}
		if r%2 == 1 {
			back := []byte(rounds[r-1])
			slices.Reverse(back)
			if round != string(back) {
				t.Errorf("round %d = %q after %q; want it reversed", r, round, rounds[r-1])
			}
		}
		firsts[round[0]] = true
		for j := 1; j < len(round); j++ {
			if before[round[j]] == nil {
				before[round[j]] = map[byte]bool{}
			}
			before[round[j]][round[j-1]] = true
		}
	}
	if len(firsts) < 3 {
		t.Errorf("subjects timed first after a rebuild: %d of 4; want them to vary", len(firsts))
	}
	for _, name := range []byte("abcd") {
		if len(before[name]) < 2 {
			t.Errorf("%c followed only %d other subjects in %d rounds; want varied neighbours", name, len(before[name]), len(rounds))
		}
	}
}
