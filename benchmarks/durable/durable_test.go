package durable_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/runner"
	"github.com/caudal-go/caudal/runner/sqlite"
	"github.com/cschleiden/go-workflows/backend"
	gwsqlite "github.com/cschleiden/go-workflows/backend/sqlite"
	"github.com/cschleiden/go-workflows/client"
	"github.com/cschleiden/go-workflows/core"
	"github.com/cschleiden/go-workflows/worker"
	"github.com/cschleiden/go-workflows/workflow"
	"github.com/google/uuid"
)

// steps is how many steps the pipelines run before the pause (and in all,
// in the run benchmarks).
const steps = 10

// syncs are the SQLite synchronous settings compared.
var syncs = []string{"normal", "full"}

// ---- Caudal ----------------------------------------------------------------

// caudalSteps is a sequence of ten agent steps, each passing its input on
// and writing the state (as runner's BenchmarkRun).
func caudalSteps() caudal.Step {
	s := make([]caudal.Step, steps)
	for i := range s {
		name := fmt.Sprint("s", i)
		s[i] = caudal.AgentStep(name, caudal.AgentFunc(func(ctx context.Context, in any) (caudal.Reply, error) {
			caudal.StateFrom(ctx).Set(name, "done")
			return caudal.Reply{Output: in}, nil
		}))
	}
	return caudal.Seq("ten", s...)
}

// caudalRunner returns a runner on a SQLite store in a temporary file,
// with the pipelines "run" (ten steps) and "resume" (ten steps, a pause,
// one step) registered.
func caudalRunner(b *testing.B, sync string) *runner.Runner {
	b.Helper()
	var opts []sqlite.Option
	if sync == "full" {
		opts = append(opts, sqlite.WithSynchronousFull())
	}
	s, err := sqlite.Open(filepath.Join(b.TempDir(), "caudal.db"), opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	ex, err := caudal.New()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = ex.Close() })
	r, err := runner.New(ex, s)
	if err != nil {
		b.Fatal(err)
	}
	after := caudal.AgentStep("after", caudal.AgentFunc(func(_ context.Context, in any) (caudal.Reply, error) {
		return caudal.Reply{Output: in}, nil
	}))
	for name, p := range map[string]caudal.Step{
		"run":    caudalSteps(),
		"resume": caudal.Seq("p", caudalSteps(), caudal.HumanInput("ask", "ok?"), after),
	} {
		if err := r.Register(name, p); err != nil {
			b.Fatal(err)
		}
	}
	return r
}

func caudalRun(ctx context.Context, r *runner.Runner) error {
	run, err := r.Start(ctx, "run", "in")
	if err != nil {
		return err
	}
	if run.Status != runner.StatusCompleted || string(run.Output) != `"in"` {
		return fmt.Errorf("run %s: %s with %s; want completed with \"in\"", run.ID, run.Status, run.Output)
	}
	return nil
}

func caudalResume(ctx context.Context, r *runner.Runner) error {
	run, err := r.Start(ctx, "resume", "in")
	if err != nil {
		return err
	}
	if run.Status != runner.StatusPaused {
		return fmt.Errorf("run %s: %s; want paused", run.ID, run.Status)
	}
	if run, err = r.Resume(ctx, run.ID, runner.Answer{Value: "yes"}); err != nil {
		return err
	}
	if run.Status != runner.StatusCompleted || string(run.Output) != `"yes"` {
		return fmt.Errorf("run %s: %s with %s; want completed with \"yes\"", run.ID, run.Status, run.Output)
	}
	return nil
}

// ---- go-workflows ----------------------------------------------------------

// Step is the go-workflows activity of one step: it passes its input on.
func Step(_ context.Context, in string) (string, error) { return in, nil }

// tenthRan hears from the last activity before the pause that it ran.
var tenthRan = make(chan struct{}, 1)

// Tenth is the tenth activity of the pausing workflow: a Step that says it
// ran.
func Tenth(_ context.Context, in string) (string, error) {
	select {
	case tenthRan <- struct{}{}:
	default:
	}
	return in, nil
}

// RunWorkflow runs ten activities one after the other.
func RunWorkflow(ctx workflow.Context, in string) (string, error) {
	for range steps {
		var err error
		if in, err = workflow.ExecuteActivity[string](ctx, workflow.DefaultActivityOptions, Step, in).Get(ctx); err != nil {
			return "", err
		}
	}
	return in, nil
}

// ResumeWorkflow runs ten activities, waits for the answer on the signal
// channel "answer", and runs one more activity on it.
func ResumeWorkflow(ctx workflow.Context, in string) (string, error) {
	for i := range steps {
		a := workflow.Activity(Step)
		if i == steps-1 {
			a = Tenth
		}
		var err error
		if in, err = workflow.ExecuteActivity[string](ctx, workflow.DefaultActivityOptions, a, in).Get(ctx); err != nil {
			return "", err
		}
	}
	answer, ok := workflow.NewSignalChannel[string](ctx, "answer").Receive(ctx)
	if !ok {
		return "", errors.New("the answer channel closed")
	}
	return workflow.ExecuteActivity[string](ctx, workflow.DefaultActivityOptions, Step, answer).Get(ctx)
}

// gw is a go-workflows worker and client on a SQLite backend.
type gw struct {
	c *client.Client
}

// newGW starts a worker on a SQLite backend in a temporary file, stopped
// when b ends. sync "normal" opens the file with synchronous(NORMAL); the
// backend leaves SQLite's default otherwise (FULL).
func newGW(b *testing.B, sync string) *gw {
	b.Helper()
	path := filepath.Join(b.TempDir(), "gw.db")
	if sync == "normal" {
		path += "?_pragma=synchronous(NORMAL)"
	}
	be := gwsqlite.NewSqliteBackend(path, gwsqlite.WithBackendOptions(backend.WithLogger(slog.New(slog.DiscardHandler))))
	opts := worker.DefaultOptions
	opts.WorkflowPollingInterval = time.Millisecond
	opts.ActivityPollingInterval = time.Millisecond
	opts.SingleWorkerMode = true
	w := worker.New(be, &opts)
	for _, wf := range []workflow.Workflow{RunWorkflow, ResumeWorkflow} {
		if err := w.RegisterWorkflow(wf); err != nil {
			b.Fatal(err)
		}
	}
	for _, a := range []workflow.Activity{Step, Tenth} {
		if err := w.RegisterActivity(a); err != nil {
			b.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := w.Start(ctx); err != nil {
		cancel()
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cancel()
		if err := w.WaitForCompletion(); err != nil {
			b.Errorf("go-workflows worker: %v", err)
		}
		_ = be.Close()
	})
	return &gw{c: client.New(be)}
}

// wait polls the instance's state until it finished.
func (g *gw) wait(ctx context.Context, inst *workflow.Instance) error {
	deadline := time.Now().Add(time.Minute)
	for {
		s, err := g.c.GetWorkflowInstanceState(ctx, inst)
		if err != nil {
			return err
		}
		if s == core.WorkflowInstanceStateFinished {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("instance %s: not finished within a minute", inst.InstanceID)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

func (g *gw) run(ctx context.Context) (*workflow.Instance, error) {
	inst, err := g.c.CreateWorkflowInstance(ctx, client.WorkflowInstanceOptions{InstanceID: uuid.NewString()}, RunWorkflow, "in")
	if err != nil {
		return nil, err
	}
	return inst, g.wait(ctx, inst)
}

func (g *gw) resume(ctx context.Context) (*workflow.Instance, error) {
	select { // a stale word from a previous run
	case <-tenthRan:
	default:
	}
	inst, err := g.c.CreateWorkflowInstance(ctx, client.WorkflowInstanceOptions{InstanceID: uuid.NewString()}, ResumeWorkflow, "in")
	if err != nil {
		return nil, err
	}
	select {
	case <-tenthRan:
	case <-time.After(time.Minute):
		return nil, fmt.Errorf("instance %s: the tenth activity did not run within a minute", inst.InstanceID)
	}
	if err := g.c.SignalWorkflow(ctx, inst.InstanceID, "answer", "yes"); err != nil {
		return nil, err
	}
	return inst, g.wait(ctx, inst)
}

// check runs op once and checks its result.
func (g *gw) check(b *testing.B, op func(context.Context) (*workflow.Instance, error), want string) {
	b.Helper()
	ctx := context.Background()
	inst, err := op(ctx)
	if err != nil {
		b.Fatal(err)
	}
	got, err := client.GetWorkflowResult[string](ctx, g.c, inst, time.Minute)
	if err != nil || got != want {
		b.Fatalf("go-workflows result = %q, %v; want %q", got, err, want)
	}
}

// ---- the benchmarks ----------------------------------------------------------

// BenchmarkDurableRun measures a ten-step run end to end, durably on
// SQLite (see the package doc).
func BenchmarkDurableRun(b *testing.B) {
	for _, sync := range syncs {
		b.Run(fmt.Sprintf("steps=%d/lib=caudal/sync=%s", steps, sync), func(b *testing.B) {
			r := caudalRunner(b, sync)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if err := caudalRun(ctx, r); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/steps, "ns/step")
		})
	}
	for _, sync := range syncs {
		b.Run(fmt.Sprintf("steps=%d/lib=go-workflows/sync=%s", steps, sync), func(b *testing.B) {
			g := newGW(b, sync)
			g.check(b, g.run, "in")
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := g.run(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/steps, "ns/step")
		})
	}
}

// BenchmarkDurableResume measures ten steps, a pause persisted, and the
// resume with an answer to the end (see the package doc).
func BenchmarkDurableResume(b *testing.B) {
	for _, sync := range syncs {
		b.Run(fmt.Sprintf("lib=caudal/sync=%s", sync), func(b *testing.B) {
			r := caudalRunner(b, sync)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if err := caudalResume(ctx, r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	for _, sync := range syncs {
		b.Run(fmt.Sprintf("lib=go-workflows/sync=%s", sync), func(b *testing.B) {
			g := newGW(b, sync)
			g.check(b, g.resume, "yes")
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := g.resume(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
