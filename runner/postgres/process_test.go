package postgres_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/runner"
	"github.com/caudal-go/caudal/runner/postgres"
)

// The child processes of these tests are this test binary, re-executed
// with childEnv naming what to do (see TestMain) and these variables
// saying on what.
const (
	childEnv  = "CAUDAL_PG_CHILD"
	schemaEnv = "CAUDAL_PG_CHILD_SCHEMA"
	runEnv    = "CAUDAL_PG_CHILD_RUN"
	ownerEnv  = "CAUDAL_PG_CHILD_OWNER"
)

// child runs a child process's part and returns its exit code. It reports
// on stdout, one word a line.
func child(mode string) (code int) {
	defer func() {
		if v := recover(); v != nil {
			fmt.Printf("panic: %v\n", v)
			code = 3
		}
	}()
	ctx := context.Background()
	s, err := postgres.Open(ctx, testDSN(), postgres.WithSchema(os.Getenv(schemaEnv)), postgres.WithMaxConns(2))
	if err != nil {
		fmt.Printf("error: %v\n", err)
		return 2
	}
	defer func() { _ = s.Close() }()
	id, owner := os.Getenv(runEnv), os.Getenv(ownerEnv)
	switch mode {
	case "claim":
		return childClaim(ctx, s, id, owner, os.Stdin)
	case "hold":
		return childHold(ctx, s, id, owner, os.Stdin)
	}
	fmt.Printf("error: unknown mode %q\n", mode)
	return 2
}

// childClaim says "ready" once connected, waits for "go" on stdin, claims
// the run and says whether it won.
func childClaim(ctx context.Context, s *postgres.Store, id, owner string, in io.Reader) int {
	if _, err := s.Get(ctx, id); err != nil { // connected and warm before the start
		fmt.Printf("error: %v\n", err)
		return 2
	}
	fmt.Println("ready")
	lines := bufio.NewScanner(in)
	if !lines.Scan() || lines.Text() != "go" {
		fmt.Println("error: want go")
		return 2
	}
	_, err := s.Claim(ctx, id, owner, time.Minute, runner.StatusRunning)
	switch {
	case err == nil:
		fmt.Println("won")
	case errors.Is(err, runner.ErrRunLocked):
		fmt.Println("locked")
	default:
		fmt.Printf("error: %v\n", err)
		return 1
	}
	return 0
}

// holdTTL is the lease the holding child renews every holdTTL/4.
const holdTTL = 300 * time.Millisecond

// childHold claims the run and heartbeats until told "stop" on stdin; then,
// told "append", tries to write to the run's journal.
func childHold(ctx context.Context, s *postgres.Store, id, owner string, in io.Reader) int {
	if _, err := s.Claim(ctx, id, owner, holdTTL, runner.StatusRunning); err != nil {
		fmt.Printf("error: %v\n", err)
		return 1
	}
	fmt.Println("claimed")
	lines := bufio.NewScanner(in)
	stop := make(chan struct{})
	hbErr := make(chan error, 1)
	go func() { // owned: waited for on hbErr below
		defer func() {
			if v := recover(); v != nil {
				hbErr <- fmt.Errorf("heartbeat panicked: %v", v)
			}
		}()
		t := time.NewTicker(holdTTL / 4)
		defer t.Stop()
		for {
			select {
			case <-stop:
				hbErr <- nil
				return
			case <-t.C:
				if err := s.Heartbeat(ctx, id, owner, holdTTL); err != nil {
					hbErr <- err
					return
				}
			}
		}
	}()
	if !lines.Scan() || lines.Text() != "stop" {
		close(stop)
		if err := <-hbErr; err != nil {
			fmt.Printf("error: heartbeat: %v\n", err)
		}
		fmt.Println("error: want stop")
		return 1
	}
	close(stop)
	if err := <-hbErr; err != nil {
		fmt.Printf("error: heartbeat: %v\n", err)
		return 1
	}
	fmt.Println("stopped")
	if !lines.Scan() || lines.Text() != "append" {
		fmt.Println("error: want append")
		return 1
	}
	_, err := s.Append(ctx, id, owner, caudal.Record{Path: "late", Status: caudal.StatusSucceeded})
	switch {
	case errors.Is(err, runner.ErrLeaseLost):
		fmt.Println("lease-lost")
	case err == nil:
		fmt.Println("appended")
	default:
		fmt.Printf("error: %v\n", err)
	}
	return 0
}

// startChild starts this test binary as a child process in mode.
func startChild(t *testing.T, mode string, env ...string) (*exec.Cmd, io.WriteCloser, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append([]string{childEnv + "=" + mode, dsnEnv + "=" + testDSN()}, env...)...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start child %s: %v", mode, err)
	}
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd, stdin, bufio.NewScanner(stdout)
}

func readLine(t *testing.T, sc *bufio.Scanner, what string) string {
	t.Helper()
	if !sc.Scan() {
		t.Fatalf("%s: the child said nothing (%v)", what, sc.Err())
	}
	return strings.TrimSpace(sc.Text())
}

// TestTwoProcessesClaim has two processes claim the same run at the same
// moment, several times: exactly one wins each time, the other gets
// ErrRunLocked.
func TestTwoProcessesClaim(t *testing.T) {
	s, schema := openStore(t)
	defer func() { _ = s.Close() }()
	ctx := context.Background()
	for round := range 3 {
		id := fmt.Sprintf("race-%d", round)
		now := time.Now()
		if err := s.Create(ctx, &runner.Run{ID: id, Pipeline: "p", Status: runner.StatusRunning, CreatedAt: now, UpdatedAt: now}); err != nil {
			t.Fatal(err)
		}
		var (
			outs []*bufio.Scanner
			ins  []io.WriteCloser
			cmds []*exec.Cmd
		)
		for i := range 2 {
			cmd, in, out := startChild(t, "claim", schemaEnv+"="+schema, runEnv+"="+id, ownerEnv+"="+fmt.Sprintf("process-%d", i))
			outs, ins, cmds = append(outs, out), append(ins, in), append(cmds, cmd)
		}
		for i, out := range outs {
			if got := readLine(t, out, fmt.Sprintf("round %d, child %d", round, i)); got != "ready" {
				t.Fatalf("round %d: child %d said %q; want ready", round, i, got)
			}
		}
		// Both are connected and blocked on stdin: release them together.
		for _, in := range ins {
			if _, err := io.WriteString(in, "go\n"); err != nil {
				t.Fatal(err)
			}
		}
		counts := map[string]int{}
		for i, out := range outs {
			counts[readLine(t, out, fmt.Sprintf("round %d, child %d", round, i))]++
			if err := cmds[i].Wait(); err != nil {
				t.Errorf("round %d: child %d: %v", round, i, err)
			}
		}
		if counts["won"] != 1 || counts["locked"] != 1 {
			t.Errorf("round %d: the two processes said %v; want won once and locked once", round, counts)
		}
		run, err := s.Get(ctx, id)
		if err != nil || !strings.HasPrefix(run.Owner, "process-") {
			t.Errorf("round %d: Get = %+v, %v; want a run owned by a process", round, run, err)
		}
	}
}

// TestHeartbeatStops has a process hold a run's lease by heartbeating:
// nobody else can claim the run while it does, another takes the run over
// once it stops, and what it then writes is refused with ErrLeaseLost.
func TestHeartbeatStops(t *testing.T) {
	s, schema := openStore(t)
	defer func() { _ = s.Close() }()
	ctx := context.Background()
	now := time.Now()
	if err := s.Create(ctx, &runner.Run{ID: "held", Pipeline: "p", Status: runner.StatusRunning, CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	_, in, out := startChild(t, "hold", schemaEnv+"="+schema, runEnv+"=held", ownerEnv+"=holder")
	if got := readLine(t, out, "hold"); got != "claimed" {
		t.Fatalf("the holder said %q; want claimed", got)
	}
	// For three TTLs the holder's heartbeats keep the lease.
	for end := time.Now().Add(3 * holdTTL); time.Now().Before(end); time.Sleep(holdTTL / 6) {
		if _, err := s.Claim(ctx, "held", "taker", time.Minute, runner.StatusRunning); !errors.Is(err, runner.ErrRunLocked) {
			t.Fatalf("Claim while the holder heartbeats = %v; want ErrRunLocked", err)
		}
	}
	if _, err := io.WriteString(in, "stop\n"); err != nil {
		t.Fatal(err)
	}
	if got := readLine(t, out, "stop"); got != "stopped" {
		t.Fatalf("the holder said %q; want stopped", got)
	}
	stopped := time.Now()
	deadline := stopped.Add(10 * holdTTL)
	for {
		_, err := s.Claim(ctx, "held", "taker", time.Minute, runner.StatusRunning)
		if err == nil {
			break
		}
		if !errors.Is(err, runner.ErrRunLocked) || time.Now().After(deadline) {
			t.Fatalf("Claim after the holder stopped = %v (%v after it stopped); want success within %v", err, time.Since(stopped), 10*holdTTL)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("taken over %v after the last heartbeat stopped (TTL %v)", time.Since(stopped).Round(time.Millisecond), holdTTL)
	if _, err := io.WriteString(in, "append\n"); err != nil {
		t.Fatal(err)
	}
	if got := readLine(t, out, "append"); got != "lease-lost" {
		t.Errorf("the former holder's Append: %q; want lease-lost", got)
	}
	if entries, err := s.Journal(ctx, "held"); err != nil || len(entries) != 0 {
		t.Errorf("Journal = %d entries, %v; want none", len(entries), err)
	}
}
