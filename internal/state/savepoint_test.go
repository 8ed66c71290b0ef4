package state_test

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caudal-go/caudal/internal/deepcopy"
	"github.com/caudal-go/caudal/internal/state"
	"github.com/caudal-go/caudal/internal/statemerge"
)

// attempts are what an attempt may do to a store within a savepoint. Each
// was a way for a failed attempt's changes to reach the next attempt
// before stores had savepoints (the engine forked a store per attempt);
// the property tests (TestSavepointsMatchReference) mix them at random.
var attempts = []struct {
	name string
	do   func(t *testing.T, s *state.Store)
}{
	{"set new key", func(_ *testing.T, s *state.Store) { s.Set("c", 3.0) }},
	{"set existing key", func(_ *testing.T, s *state.Store) { s.Set("m", "gone") }},
	{"delete", func(_ *testing.T, s *state.Store) { s.Delete("m") }},
	{"delete absent", func(_ *testing.T, s *state.Store) { s.Delete("nope") }},
	{"delete then set", func(_ *testing.T, s *state.Store) { s.Delete("a"); s.Set("a", 5.0) }},
	{"apply nested", func(t *testing.T, s *state.Store) {
		mustApply(t, s, []statemerge.Write{
			{Path: []string{"m", "y", "w"}, Value: 4.0},
			{Path: []string{"m", "x"}, Deleted: true},
			{Path: []string{"n", "o"}, Value: "p"},
		})
	}},
	{"merge", func(t *testing.T, s *state.Store) {
		mustMerge(t, s, map[string]any{"m": map[string]any{"y": map[string]any{"z": false}}, "q": 1.0})
	}},
	{"replace", func(_ *testing.T, s *state.Store) { s.Replace(map[string]any{"q": 1.0}) }},
	{"replace then set and change", func(_ *testing.T, s *state.Store) {
		s.Replace(map[string]any{"q": map[string]any{}})
		s.Set("a", 1.0)
		v, _ := s.Get("q")
		v.(map[string]any)["r"] = 1.0
	}},
	{"get and change in place", func(_ *testing.T, s *state.Store) {
		v, _ := s.Get("m")
		v.(map[string]any)["x"] = 9.0
		v.(map[string]any)["y"].(map[string]any)["z"] = false
	}},
	{"get a slice and change in place", func(_ *testing.T, s *state.Store) {
		v, _ := s.Get("s")
		v.([]any)[1].(map[string]any)["k"] = "w"
	}},
	{"entries and change in place", func(_ *testing.T, s *state.Store) {
		_, vals := s.Entries()
		vals[2].(map[string]any)["x"] = 9.0 // m
	}},
	{"set, then get and change", func(_ *testing.T, s *state.Store) {
		s.Set("m", map[string]any{"new": 1.0})
		v, _ := s.Get("m")
		v.(map[string]any)["new"] = 2.0
	}},
	{"get and change, then set", func(_ *testing.T, s *state.Store) {
		v, _ := s.Get("m")
		v.(map[string]any)["x"] = 9.0
		s.Set("m", 1.0)
	}},
	{"nested write, then get and change", func(t *testing.T, s *state.Store) {
		mustApply(t, s, []statemerge.Write{{Path: []string{"m", "x"}, Value: 2.0}})
		v, _ := s.Get("m")
		v.(map[string]any)["x"] = 3.0
	}},
	{"fork, then set and delete", func(_ *testing.T, s *state.Store) {
		s.Set("c", 1.0)
		s.Fork().Set("c", 2.0)
		s.Delete("a")
		s.Set("c", 4.0)
	}},
	{"get and change, fork, change more", func(_ *testing.T, s *state.Store) {
		v, _ := s.Get("m")
		v.(map[string]any)["x"] = 9.0
		s.Fork()
		s.Delete("m")
		v, _ = s.Get("s") // copied from the layer the fork froze
		v.([]any)[0] = "changed"
	}},
}

func mustApply(t *testing.T, s *state.Store, ws []statemerge.Write) {
	t.Helper()
	if err := s.Apply(ws); err != nil {
		t.Fatalf("Apply(%v): %v", ws, err)
	}
}

// TestSavepointRollback checks that Rollback restores a store of every
// kind to its contents at the savepoint, whatever the attempt did, and
// that values handed out during the attempt are no longer the store's.
func TestSavepointRollback(t *testing.T) {
	for _, kind := range kinds {
		for _, tt := range attempts {
			t.Run(kind.name+"/"+tt.name, func(t *testing.T) {
				s := kind.new(sample())
				mark := s.Savepoint()
				held := holdAll(s)
				tt.do(t, s)
				s.Rollback(mark)
				checkContents(t, s, sample())
				for _, v := range held {
					mutateEverything(v)
				}
				checkContents(t, s, sample())
				if got := s.Savepoint(); got != 0 {
					t.Errorf("Savepoint() after the rollback = %d; want 0 (none active)", got)
				}
			})
		}
	}
}

// holdAll gets every mutable value of s, as an attempt that keeps them
// would.
func holdAll(s *state.Store) []any {
	var held []any
	for _, k := range []string{"m", "s"} {
		v, _ := s.Get(k)
		held = append(held, v)
	}
	return held
}

// TestSavepointRelease checks that Release keeps an attempt's changes: the
// store ends as the same attempt leaves it without a savepoint.
func TestSavepointRelease(t *testing.T) {
	for _, kind := range kinds {
		for _, tt := range attempts {
			t.Run(kind.name+"/"+tt.name, func(t *testing.T) {
				want := kind.new(sample())
				tt.do(t, want)
				s := kind.new(sample())
				mark := s.Savepoint()
				tt.do(t, s)
				s.Release(mark)
				checkContents(t, s, want.Copy())
			})
		}
	}
}

// TestSavepointNested checks nested savepoints: an inner Release hands its
// changes to the outer savepoint, whose Rollback undoes them; an inner
// Rollback restores the contents at the inner mark only; a Rollback or
// Release of the outer savepoint ends the inner one too.
func TestSavepointNested(t *testing.T) {
	change := func(s *state.Store, x float64) {
		v, _ := s.Get("m")
		v.(map[string]any)["x"] = x
		s.Set("a", x)
		s.Delete("b")
		s.Set(fmt.Sprint("new", x), x)
	}
	tests := []struct {
		name string
		give func(s *state.Store) map[string]any // returns the contents wanted
	}{
		{"inner released, outer rolled back", func(s *state.Store) map[string]any {
			outer := s.Savepoint()
			change(s, 1)
			inner := s.Savepoint()
			change(s, 2)
			s.Release(inner)
			change(s, 3)
			s.Rollback(outer)
			return sample()
		}},
		{"inner rolled back, outer released", func(s *state.Store) map[string]any {
			outer := s.Savepoint()
			change(s, 1)
			mid := s.Copy()
			inner := s.Savepoint()
			change(s, 2)
			s.Rollback(inner)
			s.Release(outer)
			return mid
		}},
		{"inner started with nothing saved by the outer", func(s *state.Store) map[string]any {
			outer := s.Savepoint()
			inner := s.Savepoint()
			change(s, 2)
			s.Release(inner)
			s.Rollback(outer)
			return sample()
		}},
		{"three levels, middle released", func(s *state.Store) map[string]any {
			s0 := s.Savepoint()
			change(s, 1)
			s1 := s.Savepoint()
			change(s, 2)
			s2 := s.Savepoint()
			change(s, 3)
			s.Release(s2)
			change(s, 4)
			s.Release(s1)
			s3 := s.Savepoint()
			change(s, 5)
			s.Rollback(s3)
			s.Rollback(s0)
			return sample()
		}},
		{"outer rolled back with inner active", func(s *state.Store) map[string]any {
			outer := s.Savepoint()
			change(s, 1)
			s.Savepoint()
			change(s, 2)
			s.Rollback(outer)
			return sample()
		}},
		{"outer released with inner active", func(s *state.Store) map[string]any {
			outer := s.Savepoint()
			change(s, 1)
			s.Savepoint()
			change(s, 2)
			s.Release(outer)
			return s.Copy()
		}},
	}
	for _, kind := range kinds {
		for _, tt := range tests {
			t.Run(kind.name+"/"+tt.name, func(t *testing.T) {
				s := kind.new(sample())
				want := tt.give(s)
				checkContents(t, s, want)
				if got := s.Savepoint(); got != 0 {
					t.Errorf("Savepoint() at the end = %d; want 0 (none active)", got)
				}
			})
		}
	}
}

// TestSavepointBadMark checks that ending a savepoint that is not active
// panics, and leaves the store usable.
func TestSavepointBadMark(t *testing.T) {
	for _, end := range []struct {
		name string
		fn   func(s *state.Store, mark int)
	}{{"Rollback", (*state.Store).Rollback}, {"Release", (*state.Store).Release}} {
		for _, mark := range []int{-1, 0, 1} {
			t.Run(fmt.Sprint(end.name, mark), func(t *testing.T) {
				s := state.New(sample())
				if mark == 0 {
					s.Release(s.Savepoint()) // 0 is no longer active
				}
				if r := catch(func() { end.fn(s, mark) }); r == nil {
					t.Errorf("%s(%d) with no such savepoint did not panic", end.name, mark)
				}
				checkUsable(t, s)
			})
		}
	}
}

// TestSavepointLog checks that a logging store logs a rollback's restoring
// writes, so that the log replays to the contents after the rollback, and
// logs none for keys an attempt only read.
func TestSavepointLog(t *testing.T) {
	for _, kind := range kinds[4:] { // the logging ones
		for _, tt := range attempts {
			t.Run(kind.name+"/"+tt.name, func(t *testing.T) {
				s := kind.new(sample())
				start := s.Copy()
				mark := s.LogLen()
				sp := s.Savepoint()
				tt.do(t, s)
				if tt.name != "replace" { // a logged replace is a write of every key
					s.Set("touched", 1.0)
				}
				s.Rollback(sp)
				checkReplay(t, s, start, s.LogSince(mark))
			})
		}
		t.Run(kind.name+"/reads only", func(t *testing.T) {
			s := kind.new(sample())
			mark := s.LogLen()
			sp := s.Savepoint()
			holdAll(s)
			s.Entries()
			s.Rollback(sp)
			if got := s.LogSince(mark); len(got) != 0 {
				t.Errorf("LogSince(mark) after a rolled back attempt that only read = %v; want none", got)
			}
		})
	}
}

// TestSavepointWritten checks what Written reports after a rollback: the
// writes before the savepoint, nothing for keys the attempt touched first.
func TestSavepointWritten(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind.name, func(t *testing.T) {
			parent := kind.new(sample())
			s := parent.Fork()
			s.Set("before", 1.0)
			v, _ := s.Get("s")
			v.([]any)[0] = "before"
			mark := s.Savepoint()
			s.Set("before", 2.0)
			s.Set("during", 1.0)
			v, _ = s.Get("m")
			v.(map[string]any)["x"] = "during"
			s.Delete("a")
			s.Rollback(mark)
			want := []statemerge.Write{
				{Path: []string{"before"}, Value: 1.0},
				{Path: []string{"s"}, Value: []any{"before", map[string]any{"k": "v"}}},
			}
			if got := s.Written(); !reflect.DeepEqual(got, want) {
				t.Errorf("Written() = %v; want %v", got, want)
			}
		})
	}
}

// TestSavepointWrittenAfterFork checks Written after a rollback over a
// fork the attempt made: the fork froze a layer over the value the
// attempt got, so the rollback puts a copy of it back in the store's own
// layer. It caught that copy being put back untouched: Get then handed it
// out without touching it, and Written missed the change made to it.
func TestSavepointWrittenAfterFork(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind.name, func(t *testing.T) {
			s := kind.new(sample()).Fork()
			mark := s.Savepoint()
			s.Get("m")
			s.Fork()
			s.Rollback(mark)
			v, _ := s.Get("m")
			v.(map[string]any)["x"] = 2.0
			want := []statemerge.Write{{Path: []string{"m", "x"}, Value: 2.0}}
			if got := s.Written(); !reflect.DeepEqual(got, want) {
				t.Errorf("Written() = %v; want %v", got, want)
			}
		})
	}
}

// TestSavepointCostsNothingWhenInactive checks that a store with no active
// savepoint (none yet, or one ended) allocates nothing on a Get or a Set,
// as before savepoints existed.
func TestSavepointCostsNothingWhenInactive(t *testing.T) {
	for _, ended := range []bool{false, true} {
		t.Run(fmt.Sprint("ended=", ended), func(t *testing.T) {
			s := state.New(numbered(100))
			if ended {
				s.Release(s.Savepoint())
				mark := s.Savepoint()
				s.Set("k1", 1.0)
				s.Rollback(mark)
			}
			allocs := testing.AllocsPerRun(100, func() {
				v, _ := s.Get("k2")
				v.(map[string]any)["n"] = 1.0
				s.Set("k3", v)
				s.Set("k3", 3.0)
			})
			if allocs != 0 {
				t.Errorf("Get and Set with no savepoint active: %v allocations; want 0", allocs)
			}
		})
	}
}

// TestSavepointAllocsIndependentOfSize checks that a savepoint costs what
// the attempt reads and writes, not the size of the store.
func TestSavepointAllocsIndependentOfSize(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool, which keeps a savepoint's buffers, drops items at random under the race detector")
	}
	tests := []struct {
		name string
		give func(s *state.Store)
	}{
		{"nothing", func(*state.Store) {}},
		{"two writes", func(s *state.Store) { s.Set("k1", 1.0); s.Delete("k2") }},
		{"get and change", func(s *state.Store) {
			v, _ := s.Get("k1")
			v.(map[string]any)["n"] = -1.0
		}},
	}
	for _, kind := range kinds {
		for _, tt := range tests {
			t.Run(kind.name+"/"+tt.name, func(t *testing.T) {
				allocs := func(n int) float64 {
					s := kind.new(numbered(n))
					return testing.AllocsPerRun(100, func() {
						mark := s.Savepoint()
						tt.give(s)
						s.Rollback(mark)
					})
				}
				small, large := allocs(10), allocs(1000)
				if small != large {
					t.Errorf("allocations per savepoint: %v with 10 keys, %v with 1,000; want the same", small, large)
				}
			})
		}
	}
}

// TestSavepointConcurrent runs attempts rolled back on a store that other
// goroutines read and fork meanwhile (run with -race): Savepoint, Rollback
// and what they record hold the store's lock.
func TestSavepointConcurrent(t *testing.T) {
	s := state.New(numbered(50))
	s.Set("stable", map[string]any{"v": 1.0})
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				if v, _ := s.Get("stable"); !reflect.DeepEqual(v, map[string]any{"v": 1.0}) {
					t.Errorf("Get(stable) = %v during attempts; want it unchanged", v)
					return
				}
				// Only reads of what the attempts leave alone: a value
				// changed in place must not be read meanwhile.
				c := s.Fork()
				c.Set("x", 1.0)
				_ = c.Written()
				s.View(func(m map[string]any) { _ = m["stable"] })
				_ = s.Values([]string{"stable"})
				_ = s.Len()
			}
		})
	}
	for i := range 300 {
		mark := s.Savepoint()
		v, _ := s.Get(fmt.Sprint("k", i%50))
		v.(map[string]any)["n"] = -1.0
		s.Set("attempt", float64(i))
		mustMerge(t, s, map[string]any{"k0": map[string]any{"m": 1.0}})
		s.Rollback(mark)
	}
	close(done)
	wg.Wait()
	want := numbered(50)
	want["stable"] = map[string]any{"v": 1.0}
	checkContents(t, s, want)
}

// TestMergeCycle checks that Merge of a value that contains itself is an
// error naming where the cycle closes, and changes nothing. It caught
// Merge recursing without end (a fatal stack overflow) when the store
// already held the same cyclic value.
func TestMergeCycle(t *testing.T) {
	self := func() map[string]any { m := map[string]any{"x": 1.0}; m["self"] = m; return m }
	tests := []struct {
		name  string
		give  func() map[string]any
		where string
	}{
		{"itself at the top", func() map[string]any { m := map[string]any{"a": 1.0}; m["me"] = m; return m }, "me"},
		{"nested map containing itself", func() map[string]any { return map[string]any{"m": self()} }, "m.self"},
		{"through a slice", func() map[string]any {
			m := map[string]any{}
			m["list"] = []any{"a", map[string]any{"up": m}}
			return map[string]any{"b": 1.0, "m": m}
		}, "m.list[1].up"},
		{"slice containing itself", func() map[string]any {
			l := []any{1.0, nil}
			l[1] = l
			return map[string]any{"l": l}
		}, "l[1]"},
		{"ring 100 long", func() map[string]any {
			first := map[string]any{}
			m := first
			for range 99 {
				next := map[string]any{}
				m["n"] = next
				m = next
			}
			m["odd key"] = first
			return map[string]any{"r": first}
		}, "r" + strings.Repeat(".n", 99) + `."odd key"`},
	}
	for _, kind := range kinds {
		for _, tt := range tests {
			t.Run(kind.name+"/"+tt.name, func(t *testing.T) {
				s := kind.new(sample())
				s.Set("m", self()) // where Merge used to recurse forever
				want := s.Copy()
				logLen := logLen(s)
				err := s.Merge(tt.give())
				if !errors.Is(err, state.ErrCycle) || !strings.Contains(err.Error(), " "+tt.where+" ") {
					t.Errorf("Merge(cyclic) = %v; want an error wrapping ErrCycle naming %s", err, tt.where)
				}
				if got := s.Copy(); !reflect.DeepEqual(got, want) {
					t.Errorf("after Merge(cyclic), contents = %v; want them unchanged", got)
				}
				if got := logLen(); got != 0 {
					t.Errorf("after Merge(cyclic), %d writes logged; want none", got)
				}
			})
		}
	}
}

// logLen returns a func that returns how many writes s logged since, 0
// for a store that does not log.
func logLen(s *state.Store) func() int {
	if !s.Logging() {
		return func() int { return 0 }
	}
	mark := s.LogLen()
	return func() int { return len(s.LogSince(mark)) }
}

// TestMergeShared checks that a value reached twice but not inside itself
// is no cycle, and that the check is linear in its size however much is
// shared: a chain of 60 maps that each hold the next twice has 2⁶⁰ paths,
// which a walk that forgot what it had seen would take forever over. It
// also merges an acyclic value into a cyclic one held already.
func TestMergeShared(t *testing.T) {
	var m map[string]any = map[string]any{"leaf": 1.0}
	for range 60 {
		m = map[string]any{"l": m, "r": m, "list": []any{m, m}}
	}
	s := state.New(sample())
	cyc := map[string]any{"x": 1.0}
	cyc["self"] = cyc
	s.Set("cyc", cyc)
	done := make(chan error, 1)
	go func() {
		if err := s.Merge(map[string]any{"dag": m}); err != nil {
			done <- err
			return
		}
		done <- s.Merge(map[string]any{"cyc": map[string]any{"x": 2.0, "self": map[string]any{"y": 1.0}}})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Merge(acyclic) = %v; want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Merge of a shared value did not return within 10s")
	}
	if v, _ := s.Get("dag"); !sameMap(v, m) {
		t.Errorf("Get(dag) is not the merged map")
	}
	if got := cyc["self"].(map[string]any)["y"]; got != 1.0 || cyc["x"] != 2.0 {
		t.Errorf("after merging into the cyclic value: x = %v, self.y = %v; want 2, 1", cyc["x"], got)
	}
}

func sameMap(a any, b map[string]any) bool {
	am, ok := a.(map[string]any)
	return ok && reflect.ValueOf(am).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// bomb is a state value whose Clone panics, as a user's may.
type bomb struct{ N int }

func (bomb) Clone() any { panic("bomb") }

var _ deepcopy.Cloner = bomb{}

// TestNoLockHeldAfterPanic runs every store method that may run user code
// (a value's Clone, View's callback) with code that panics, recovers the
// panic, and checks the store is still usable: no lock is left held. The
// methods released their locks with defer already; it guards that, and
// the new savepoint paths. It caught Replace, on a logging store, leaving
// part of its writes logged when a Clone panicked (the store stayed as it
// was).
func TestNoLockHeldAfterPanic(t *testing.T) {
	tests := []struct {
		name string
		kind string // the kind of store
		give func(s *state.Store)
	}{
		{"Get copying from a frozen layer", "overlay", func(s *state.Store) { s.Get("p") }},
		{"Entries copying from a frozen layer", "overlay", func(s *state.Store) { s.Entries() }},
		{"Get noting for the log", "logging flat", func(s *state.Store) { s.Get("p") }},
		{"Set logging a copy", "logging flat", func(s *state.Store) { s.Set("q", bomb{}) }},
		{"Apply logging a copy", "logging overlay", func(s *state.Store) {
			_ = s.Apply([]statemerge.Write{{Path: []string{"q", "r"}, Value: bomb{}}})
		}},
		{"Merge logging a copy", "logging flat", func(s *state.Store) { _ = s.Merge(map[string]any{"q": bomb{}}) }},
		{"Replace logging copies", "logging flat", func(s *state.Store) {
			s.Replace(map[string]any{"a": 1.0, "q": bomb{}})
		}},
		{"Copy", "flat", func(s *state.Store) { s.Copy() }},
		{"View", "overlay", func(s *state.Store) { s.View(func(map[string]any) { panic("view") }) }},
		{"Get saving a copy", "flat", func(s *state.Store) { s.Savepoint(); s.Get("p") }},
		{"Apply saving a copy", "flat", func(s *state.Store) {
			s.Savepoint()
			_ = s.Apply([]statemerge.Write{{Path: []string{"p", "x"}, Value: 1.0}})
		}},
		{"Rollback copying from a frozen layer", "overlay", func(s *state.Store) {
			mark := s.Savepoint()
			s.Delete("p") // saves the frozen value as it is
			s.Fork()      // freezes a layer over it: putting it back needs a copy
			s.Rollback(mark)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newKind(tt.kind)(with(sample(), "p", bomb{}))
			before := contentsWithout(s, "p")
			logged := logLen(s)
			if r := catch(func() { tt.give(s) }); r == nil {
				t.Fatalf("%s did not panic", tt.name)
			}
			if got := contentsWithout(s, "p"); tt.name == "Replace logging copies" && !reflect.DeepEqual(got, before) {
				t.Errorf("after the panic, contents = %v; want them unchanged", got)
			}
			if tt.name == "Replace logging copies" {
				if n := logged(); n != 0 {
					t.Errorf("after the panic, %d writes logged; want none", n)
				}
			}
			checkUsable(t, s)
		})
	}
}

func newKind(name string) func(map[string]any) *state.Store {
	for _, k := range kinds {
		if k.name == name {
			return k.new
		}
	}
	panic("no kind " + name)
}

// contentsWithout returns s's contents but key, read without copying.
func contentsWithout(s *state.Store, key string) map[string]any {
	var out map[string]any
	s.View(func(m map[string]any) { out = maps.Clone(m) })
	delete(out, key)
	return out
}

// catch returns what fn panics with.
func catch(fn func()) (r any) {
	defer func() { r = recover() }()
	fn()
	return nil
}

// checkUsable checks, on another goroutine so that a lock left held fails
// the test rather than hangs it, that s can be read and written.
func checkUsable(t *testing.T, s *state.Store) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		s.Set("x", 1.0)
		if v, ok := s.Get("x"); v != 1.0 || !ok {
			done <- fmt.Errorf("Get(x) = %v, %t; want 1, true", v, ok)
			return
		}
		s.View(func(m map[string]any) { _ = m["x"] })
		s.Delete("p")
		s.Delete("q")
		_ = s.Copy()
		s.Release(s.Savepoint())
		if s.Logging() {
			s.LogSince(s.LogLen())
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("the store is still locked 5s after the panic (Locked: %t)", state.Locked(s))
	}
}
