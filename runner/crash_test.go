package runner_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/caudal-go/caudal/runner"
)

var crashKills = flag.Int("crash.kills", 20, "SIGKILLs per store in TestCrashSQLite and TestCrashPostgres")

// crashMaxKillsPerRun is how many times one run is killed at most; then
// its next child is left to complete it, and another run starts.
const crashMaxKillsPerRun = 8

// TestCrashSQLite runs the crash test (see crashTest) on a SQLite file.
func TestCrashSQLite(t *testing.T) {
	crashTest(t, &crashSetup{kind: "sqlite", where: filepath.Join(t.TempDir(), "caudal.db")})
}

// TestCrashPostgres runs the crash test (see crashTest) on PostgreSQL, in
// a schema of its own, dropped afterwards.
func TestCrashPostgres(t *testing.T) {
	dsn := pgDSN(t)
	crashTest(t, &crashSetup{kind: "postgres", where: dsn, schema: pgSchema(t, dsn)})
}

// crashSetup is a crash test's store and ledger.
type crashSetup struct {
	kind, where, schema string
	ledger              string       // the ledger file's path
	store               runner.Store // the parent's view of the children's store
}

// crashTest runs crashPipeline in child processes (TestCrashChild) and
// kills them with SIGKILL at random points: a run is started by a child,
// killed mid-run, recovered by the next child (once the dead one's lease
// expired), killed again, …, until a child completes it; then the next run,
// until -crash.kills kills landed mid-run. Every agent writes its side
// effect to a ledger file shared by the children. For every run the test
// proves, from the ledger and the store, that no step instance ran again
// after its record was stored (the only re-runs are of instances in flight
// at a kill, at most once per kill), that no side effect is missing, and
// that the output, final state, usage and journal equal those of a run no
// kill interrupted.
func crashTest(t *testing.T, c *crashSetup) {
	if testing.Short() {
		t.Skip("crash tests start child processes; skipped in -short mode")
	}
	began := time.Now()
	ctx := t.Context()
	c.ledger = filepath.Join(t.TempDir(), "ledger")
	var err error
	if c.store, err = openCrashStore(ctx, c.kind, c.where, c.schema, ""); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.store.Close() }()

	// The reference: a run no kill interrupts.
	if c.generation(t, "ref", 0, -1) {
		t.Fatal("the reference run was killed")
	}
	ref := c.outcome(t, "ref")
	refLines := c.ledgerLines(t)["ref"]
	refKeys := make(map[string]bool)
	for _, l := range refLines {
		if refKeys[l.key] {
			t.Fatalf("the reference run made side effect %s twice", l.key)
		}
		refKeys[l.key] = true
	}
	if len(refKeys) < 15 {
		t.Fatalf("the reference run made %d side effects; want at least 15", len(refKeys))
	}
	length := ref.run.UpdatedAt.Sub(ref.run.CreatedAt)

	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	t.Logf("%s: reference run %v, %d side effects, %d records; kill delays uniform in [0, %v) after a child holds the run (seed %d)",
		c.kind, length.Round(time.Millisecond), len(refKeys), len(ref.journal), length.Round(time.Millisecond), seed)

	var (
		kills, runs, gens, lines, reruns, late int
		bad                                    crashViolations
	)
	for kills < *crashKills {
		if time.Since(began) > 5*time.Minute {
			t.Fatalf("%d kills in %v; giving up", kills, time.Since(began))
		}
		id := "crash-" + strconv.Itoa(runs)
		var stored []map[string]bool // after generation g: the paths with a record
		for gen, perRun := 0, 0; ; gen++ {
			if gen > 3*crashMaxKillsPerRun {
				t.Fatalf("run %s: %d generations and not completed", id, gen)
			}
			delay := time.Duration(-1)
			if perRun < crashMaxKillsPerRun && kills < *crashKills {
				delay = time.Duration(rng.Int64N(int64(length)))
			}
			killed := c.generation(t, id, gen, delay)
			gens++
			run, err := c.store.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			stored = append(stored, c.journalPaths(t, id))
			if run.Status == runner.StatusCompleted {
				if killed {
					late++ // the kill landed after the run completed: not a kill mid-run
				}
				break
			}
			if run.Status != runner.StatusRunning || !killed {
				t.Fatalf("run %s after generation %d: %s (killed: %v); want running after a kill", id, gen, run.Status, killed)
			}
			kills++
			perRun++
		}
		n, r, v := c.check(t, id, stored, ref, refKeys)
		lines += n
		reruns += r
		bad.add(v)
		runs++
	}
	t.Logf("%s: %d SIGKILLs mid-run (and %d that landed after the run completed) over %d runs, %d child processes, %v",
		c.kind, kills, late, runs, gens, time.Since(began).Round(time.Millisecond))
	t.Logf("%s: ledger check: %d side effects for %d step instances (%d per run), %d of them re-runs of an instance in flight at a kill; "+
		"%d completed instances run again, %d side effects missing, %d runs ending unlike the uninterrupted run (output, final state, usage, journal), %d other faults",
		c.kind, lines, runs*len(refKeys), len(refKeys), reruns, bad.twice, bad.lost, bad.differ, bad.other)
}

// generation runs child gen on run id (gen 0 starts it, later ones
// recover it) and, when delay is not negative, kills it with SIGKILL delay
// after it holds the run, unless it ended before. It says whether it
// killed the child; a child that ended otherwise than completing the run
// fails the test.
func (c *crashSetup) generation(t *testing.T, id string, gen int, delay time.Duration) (killed bool) {
	t.Helper()
	mode := "recover"
	if gen == 0 {
		mode = "start"
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1", "-test.timeout=2m")
	cmd.Env = append(os.Environ(),
		crashModeEnv+"="+mode, crashStoreEnv+"="+c.kind, crashWhereEnv+"="+c.where, crashSchemaEnv+"="+c.schema,
		crashRunEnv+"="+id, crashGenEnv+"="+strconv.Itoa(gen), crashLedgerEnv+"="+c.ledger)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("run %s, generation %d: %v", id, gen, err)
	}
	done := make(chan error, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		defer func() {
			if v := recover(); v != nil {
				done <- fmt.Errorf("waiting for the child panicked: %v", v)
			}
		}()
		done <- cmd.Wait()
	})
	var err error
	exited := c.awaitHold(t, id, crashOwner(strconv.Itoa(gen)), done, &err)
	if !exited && delay >= 0 {
		timer := time.NewTimer(delay)
		select {
		case err = <-done:
		case <-timer.C:
			_ = cmd.Process.Kill() // SIGKILL
			if werr := <-done; werr == nil {
				t.Logf("run %s, generation %d: the child ended as it was killed", id, gen)
			}
			c.settle(t, crashAppName(id, strconv.Itoa(gen)))
			return true
		}
		timer.Stop()
	} else if !exited {
		err = <-done
	}
	if err != nil {
		t.Fatalf("run %s, generation %d (%s): %v\n%s", id, gen, mode, err, out.Bytes())
	}
	return false
}

// settle waits until the killed child's PostgreSQL backends are gone. A
// statement the child sent just before it died may still be executing on
// the server, and commit; until its backend notices that the client is
// gone — after the statement — the store may change yet. (SQLite has no
// such lag: a write is done in the process, or not at all.)
func (c *crashSetup) settle(t *testing.T, app string) {
	t.Helper()
	if c.kind != "postgres" {
		return
	}
	conn, err := pgx.Connect(t.Context(), c.where)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(t.Context())) }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(2 * time.Millisecond) {
		var n int
		if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`, app).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d backends of the killed child %s still there after 10s", n, app)
		}
	}
}

// awaitHold waits until owner holds run id, or the child ended (true,
// with its error in *err).
func (c *crashSetup) awaitHold(t *testing.T, id, owner string, done <-chan error, err *error) (exited bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case *err = <-done:
			return true
		default:
		}
		if run, gerr := c.store.Get(t.Context(), id); gerr == nil && run.Owner == owner && run.Status == runner.StatusRunning {
			return false
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s: %s did not take it within 30s", id, owner)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// crashOutcome is a completed run as stored, and its journal.
type crashOutcome struct {
	run     *runner.Run
	journal []runner.Entry
}

func (c *crashSetup) outcome(t *testing.T, id string) crashOutcome {
	t.Helper()
	run, err := c.store.Get(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if run.Status != runner.StatusCompleted {
		t.Fatalf("run %s is %s (%s); want completed", id, run.Status, run.Error)
	}
	journal, err := c.store.Journal(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return crashOutcome{run: run, journal: journal}
}

// journalPaths returns the instance paths with a record in run id's
// journal.
func (c *crashSetup) journalPaths(t *testing.T, id string) map[string]bool {
	t.Helper()
	journal, err := c.store.Journal(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	paths := make(map[string]bool, len(journal))
	for _, e := range journal {
		paths[e.Record.Path] = true
	}
	return paths
}

// ledgerLine is one side effect: the generation whose child made it, and
// what it was (the agent's output).
type ledgerLine struct {
	gen int
	key string
}

// ledgerLines reads the ledger, by run.
func (c *crashSetup) ledgerLines(t *testing.T) map[string][]ledgerLine {
	t.Helper()
	b, err := os.ReadFile(c.ledger)
	if err != nil {
		t.Fatal(err)
	}
	lines := make(map[string][]ledgerLine)
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 {
			t.Fatalf("ledger line %q: want <run> <generation> <side effect>", sc.Text())
		}
		gen, err := strconv.Atoi(f[1])
		if err != nil {
			t.Fatalf("ledger line %q: generation: %v", sc.Text(), err)
		}
		lines[f[0]] = append(lines[f[0]], ledgerLine{gen: gen, key: f[2]})
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		t.Fatalf("the ledger ends in a partial line: %q", b[bytes.LastIndexByte(b, '\n')+1:])
	}
	return lines
}

// check proves run id's ledger lines and stored outcome right (see
// crashTest), stored[g] being the paths with a record once child g
// stopped, and returns how many side effects the run made, and how many of
// them were re-runs.
func (c *crashSetup) check(t *testing.T, id string, stored []map[string]bool, ref crashOutcome, refKeys map[string]bool) (lines, reruns int, v crashViolations) {
	t.Helper()
	got := c.outcome(t, id)
	// A side effect is traced to its instance through the journal: an
	// agent writes its output to the state under its name, so its record
	// holds a write of the side effect's key under its path's last element.
	pathOf := make(map[string]string)
	records := make(map[string]int)
	for _, e := range got.journal {
		records[e.Record.Path]++
		name := e.Record.Path[strings.LastIndexByte(e.Record.Path, '/')+1:]
		for _, w := range e.Record.Writes {
			if key, ok := w.Value.(string); ok && len(w.Path) == 1 && w.Path[0] == name {
				pathOf[key] = e.Record.Path
			}
		}
	}
	for path, n := range records {
		if n != 1 {
			v.other++
			t.Errorf("run %s: %d records of instance %s; want 1", id, n, path)
		}
	}
	byKey := make(map[string]map[int]int)
	runLines := c.ledgerLines(t)[id]
	for _, l := range runLines {
		path, ok := pathOf[l.key]
		if !ok {
			v.other++
			t.Errorf("run %s: side effect %s (generation %d) has no instance in the journal", id, l.key, l.gen)
			continue
		}
		if byKey[l.key] == nil {
			byKey[l.key] = make(map[int]int)
		}
		if byKey[l.key][l.gen]++; byKey[l.key][l.gen] == 2 {
			v.twice++
			t.Errorf("run %s: instance %s ran twice in generation %d", id, path, l.gen)
		}
		if l.gen > 0 && stored[l.gen-1][path] {
			v.twice++
			t.Errorf("run %s: instance %s ran in generation %d, though its record was stored before: a completed instance ran again", id, path, l.gen)
		}
	}
	for key := range refKeys {
		if byKey[key] == nil {
			v.lost++
			t.Errorf("run %s: side effect %s (instance %s in the reference run) is missing", id, key, pathOf[key])
		}
	}
	for key := range byKey {
		if !refKeys[key] {
			v.other++
			t.Errorf("run %s: side effect %s (instance %s) is not the reference run's", id, key, pathOf[key])
		}
	}
	if !compareOutcomes(t, id, got, ref) {
		v.differ++
	}
	return len(runLines), len(runLines) - len(byKey), v
}

// crashViolations counts what the ledger check found wrong.
type crashViolations struct {
	twice  int // a completed instance ran again, or an instance twice in one process
	lost   int // a side effect missing
	differ int // runs whose outcome differs from the uninterrupted run's
	other  int // side effects without an instance, or the reference's; duplicate records
}

func (v *crashViolations) add(w crashViolations) {
	v.twice, v.lost, v.differ, v.other = v.twice+w.twice, v.lost+w.lost, v.differ+w.differ, v.other+w.other
}

// compareOutcomes checks that run id ended as the reference run did, and
// says whether it did.
func compareOutcomes(t *testing.T, id string, got, ref crashOutcome) bool {
	t.Helper()
	ok := true
	errorf := func(format string, args ...any) {
		t.Helper()
		ok = false
		t.Errorf(format, args...)
	}
	if g, w := jsonValue(t, got.run.Output), jsonValue(t, ref.run.Output); !reflect.DeepEqual(g, w) {
		errorf("run %s: output %s; want %s", id, got.run.Output, ref.run.Output)
	}
	if g, w := jsonValue(t, got.run.FinalState), jsonValue(t, ref.run.FinalState); !reflect.DeepEqual(g, w) {
		errorf("run %s: final state %s; want %s", id, got.run.FinalState, ref.run.FinalState)
	}
	gu, wu := got.run.Usage, ref.run.Usage
	if gu.PromptTokens != wu.PromptTokens || gu.CompletionTokens != wu.CompletionTokens || math.Abs(gu.CostUSD-wu.CostUSD) > 1e-9 {
		errorf("run %s: usage %+v; want %+v", id, gu, wu)
	}
	paths := func(o crashOutcome) []string {
		var p []string
		for _, e := range o.journal {
			p = append(p, e.Record.Path)
		}
		slices.Sort(p)
		return p
	}
	if g, w := paths(got), paths(ref); !slices.Equal(g, w) {
		errorf("run %s: journal of instances %v; want %v", id, g, w)
	}
	return ok
}

func jsonValue(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("stored JSON %q: %v", b, err)
	}
	return v
}
