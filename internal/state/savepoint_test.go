package state_test

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
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
	do   func(t *testing.T, s as)
}{
	{"set new key", func(_ *testing.T, s as) { s.Set("c", 3.0) }},
	{"set existing key", func(_ *testing.T, s as) { s.Set("m", "gone") }},
	{"delete", func(_ *testing.T, s as) { s.Delete("m") }},
	{"delete absent", func(_ *testing.T, s as) { s.Delete("nope") }},
	{"delete then set", func(_ *testing.T, s as) { s.Delete("a"); s.Set("a", 5.0) }},
	{"apply nested", func(t *testing.T, s as) {
		mustApply(t, s, []statemerge.Write{
			{Path: []string{"m", "y", "w"}, Value: 4.0},
			{Path: []string{"m", "x"}, Deleted: true},
			{Path: []string{"n", "o"}, Value: "p"},
		})
	}},
	{"merge", func(t *testing.T, s as) {
		mustMerge(t, s, map[string]any{"m": map[string]any{"y": map[string]any{"z": false}}, "q": 1.0})
	}},
	{"replace", func(_ *testing.T, s as) { s.Replace(map[string]any{"q": 1.0}) }},
	{"replace then set and change", func(_ *testing.T, s as) {
		s.Replace(map[string]any{"q": map[string]any{}})
		s.Set("a", 1.0)
		v, _ := s.Get("q")
		v.(map[string]any)["r"] = 1.0
	}},
	{"get and change in place", func(_ *testing.T, s as) {
		v, _ := s.Get("m")
		v.(map[string]any)["x"] = 9.0
		v.(map[string]any)["y"].(map[string]any)["z"] = false
	}},
	{"get a slice and change in place", func(_ *testing.T, s as) {
		v, _ := s.Get("s")
		v.([]any)[1].(map[string]any)["k"] = "w"
	}},
	{"entries and change in place", func(_ *testing.T, s as) {
		_, vals := s.Entries()
		vals[2].(map[string]any)["x"] = 9.0 // m
	}},
	{"set, then get and change", func(_ *testing.T, s as) {
		s.Set("m", map[string]any{"new": 1.0})
		v, _ := s.Get("m")
		v.(map[string]any)["new"] = 2.0
	}},
	{"get and change, then set", func(_ *testing.T, s as) {
		v, _ := s.Get("m")
		v.(map[string]any)["x"] = 9.0
		s.Set("m", 1.0)
	}},
	{"nested write, then get and change", func(t *testing.T, s as) {
		mustApply(t, s, []statemerge.Write{{Path: []string{"m", "x"}, Value: 2.0}})
		v, _ := s.Get("m")
		v.(map[string]any)["x"] = 3.0
	}},
	{"fork, then set and delete", func(_ *testing.T, s as) {
		s.Set("c", 1.0)
		s.Fork().Set("c", 2.0)
		s.Delete("a")
		s.Set("c", 4.0)
	}},
	{"get and change, fork, change more", func(_ *testing.T, s as) {
		v, _ := s.Get("m")
		v.(map[string]any)["x"] = 9.0
		s.Fork()
		s.Delete("m")
		v, _ = s.Get("s") // copied from the layer the fork froze
		v.([]any)[0] = "changed"
	}},
}

// as is a store as one owner sees it: its calls are tagged with the owner,
// those a Store has with no tag only (Fork, Copy, View, …) are the
// store's.
type as struct {
	*state.Store
	o any
}

// attempt is the owner of the single-owner tests.
const attempt = "attempt"

// own returns s as the owner attempt sees it.
func own(s *state.Store) as { return as{s, attempt} }

func (a as) Get(k string) (any, bool)          { return a.GetAs(a.o, k) }
func (a as) Set(k string, v any)               { a.SetAs(a.o, k, v) }
func (a as) Delete(k string)                   { a.DeleteAs(a.o, k) }
func (a as) Entries() ([]string, []any)        { return a.EntriesAs(a.o) }
func (a as) Replace(m map[string]any)          { a.ReplaceAs(a.o, m) }
func (a as) Apply(ws []statemerge.Write) error { return a.ApplyAs(a.o, ws) }
func (a as) Merge(m map[string]any) error      { return a.MergeAs(a.o, m) }
func (a as) Savepoint() int                    { return a.Store.Savepoint(a.o) }
func (a as) Rollback(mark int)                 { a.Store.Rollback(a.o, mark) }
func (a as) Release(mark int)                  { a.Store.Release(a.o, mark) }

func mustApply(t *testing.T, s interface {
	Apply([]statemerge.Write) error
}, ws []statemerge.Write,
) {
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
				s := own(kind.new(sample()))
				mark := s.Savepoint()
				held := holdAll(s)
				tt.do(t, s)
				s.Rollback(mark)
				checkContents(t, s.Store, sample())
				for _, v := range held {
					mutateEverything(v)
				}
				checkContents(t, s.Store, sample())
				if got := s.Savepoint(); got != 0 {
					t.Errorf("Savepoint() after the rollback = %d; want 0 (none active)", got)
				}
			})
		}
	}
}

// holdAll gets every mutable value of s, as an attempt that keeps them
// would.
func holdAll(s as) []any {
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
				want := own(kind.new(sample()))
				tt.do(t, want)
				s := own(kind.new(sample()))
				mark := s.Savepoint()
				tt.do(t, s)
				s.Release(mark)
				checkContents(t, s.Store, want.Copy())
			})
		}
	}
}

// TestSavepointNested checks nested savepoints: an inner Release hands its
// changes to the outer savepoint, whose Rollback undoes them; an inner
// Rollback restores the contents at the inner mark only; a Rollback or
// Release of the outer savepoint ends the inner one too.
func TestSavepointNested(t *testing.T) {
	change := func(s as, x float64) {
		v, _ := s.Get("m")
		v.(map[string]any)["x"] = x
		s.Set("a", x)
		s.Delete("b")
		s.Set(fmt.Sprint("new", x), x)
	}
	tests := []struct {
		name string
		give func(s as) map[string]any // returns the contents wanted
	}{
		{"inner released, outer rolled back", func(s as) map[string]any {
			outer := s.Savepoint()
			change(s, 1)
			inner := s.Savepoint()
			change(s, 2)
			s.Release(inner)
			change(s, 3)
			s.Rollback(outer)
			return sample()
		}},
		{"inner rolled back, outer released", func(s as) map[string]any {
			outer := s.Savepoint()
			change(s, 1)
			mid := s.Copy()
			inner := s.Savepoint()
			change(s, 2)
			s.Rollback(inner)
			s.Release(outer)
			return mid
		}},
		{"inner started with nothing saved by the outer", func(s as) map[string]any {
			outer := s.Savepoint()
			inner := s.Savepoint()
			change(s, 2)
			s.Release(inner)
			s.Rollback(outer)
			return sample()
		}},
		{"three levels, middle released", func(s as) map[string]any {
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
		{"outer rolled back with inner active", func(s as) map[string]any {
			outer := s.Savepoint()
			change(s, 1)
			s.Savepoint()
			change(s, 2)
			s.Rollback(outer)
			return sample()
		}},
		{"outer released with inner active", func(s as) map[string]any {
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
				s := own(kind.new(sample()))
				want := tt.give(s)
				checkContents(t, s.Store, want)
				if got := s.Savepoint(); got != 0 {
					t.Errorf("Savepoint() at the end = %d; want 0 (none active)", got)
				}
			})
		}
	}
}

// TestSavepointBadMark checks that ending a savepoint that is not active
// for its owner panics, and leaves the store usable: another owner's
// active savepoint of the same mark is none of its own.
func TestSavepointBadMark(t *testing.T) {
	tests := []struct {
		name  string
		owner any
		mark  int
		give  func(s *state.Store) // what runs first
	}{
		{"negative", attempt, -1, func(*state.Store) {}},
		{"none ever", attempt, 0, func(*state.Store) {}},
		{"ended", attempt, 0, func(s *state.Store) { s.Release(attempt, s.Savepoint(attempt)) }},
		{"not yet", attempt, 1, func(s *state.Store) { s.Savepoint(attempt) }},
		{"another owner's", attempt, 0, func(s *state.Store) { s.Savepoint("other") }},
		{"another owner's, equal as a string", attempt, 0, func(s *state.Store) { s.Savepoint(attemptToken("attempt")) }},
		{"owner nil", nil, 0, func(s *state.Store) { s.Savepoint(attempt) }},
	}
	for _, end := range []struct {
		name string
		fn   func(s *state.Store, owner any, mark int)
	}{{"Rollback", (*state.Store).Rollback}, {"Release", (*state.Store).Release}} {
		for _, tt := range tests {
			t.Run(end.name+"/"+tt.name, func(t *testing.T) {
				s := state.New(sample())
				tt.give(s)
				if r := catch(func() { end.fn(s, tt.owner, tt.mark) }); r == nil {
					t.Errorf("%s(%v, %d) with no such savepoint did not panic", end.name, tt.owner, tt.mark)
				}
				checkUsable(t, s)
			})
		}
	}
}

// attemptToken is a string type of its own: a value of it is another
// owner than the string of the same text.
type attemptToken string

// TestSavepointBadOwner checks that a savepoint needs an owner that is not
// nil and compares: other owners' calls compare it with theirs.
func TestSavepointBadOwner(t *testing.T) {
	for _, owner := range []any{nil, []int{1}, map[string]int{}, func() {}} {
		t.Run(fmt.Sprintf("%T", owner), func(t *testing.T) {
			s := state.New(sample())
			if r := catch(func() { s.Savepoint(owner) }); r == nil {
				t.Errorf("Savepoint(%T) did not panic", owner)
			}
			checkUsable(t, s)
		})
	}
}

// TestSavepointLog checks that a logging store logs a rollback's restoring
// writes, so that the log replays to the contents after the rollback, and
// logs none for keys an attempt only read.
func TestSavepointLog(t *testing.T) {
	for _, kind := range kinds[4:] { // the logging ones
		for _, tt := range attempts {
			t.Run(kind.name+"/"+tt.name, func(t *testing.T) {
				s := own(kind.new(sample()))
				start := s.Copy()
				mark := s.LogLen()
				sp := s.Savepoint()
				tt.do(t, s)
				if tt.name != "replace" { // a logged replace is a write of every key
					s.Set("touched", 1.0)
				}
				s.Rollback(sp)
				checkReplay(t, s.Store, start, s.LogSince(mark))
			})
		}
		t.Run(kind.name+"/reads only", func(t *testing.T) {
			s := own(kind.new(sample()))
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

// TestSavepointLogRestoredWatched checks that a value handed out, which a
// rollback makes the store's again, is watched for the log again: its
// later change in place is logged. TestOwnedSavepointsLogReplays caught
// both ways it was not (seeds 6000163 and 6001150): a Replace stopped
// watching the values it replaced (a flush), and the rollback of the
// Replace, or of a Set that had replaced the value before it, put them
// back unwatched. One owner meets the first, with a value got before its
// savepoint and changed after its end.
func TestSavepointLogRestoredWatched(t *testing.T) {
	tests := []struct {
		name string
		give func(s as) any // returns the value to change after the rollback
	}{
		{"got before, owner replaces", func(s as) any {
			v, _ := s.Store.Get("m")
			mark := s.Savepoint()
			s.Replace(map[string]any{"q": 1.0})
			s.Rollback(mark)
			return v
		}},
		{"got by the owner before, owner replaces", func(s as) any {
			v, _ := s.Get("m")
			mark := s.Savepoint()
			s.Replace(map[string]any{"q": 1.0})
			s.Rollback(mark)
			return v
		}},
		{"got untagged during, owner replaces", func(s as) any {
			mark := s.Savepoint()
			v, _ := s.Store.Get("m")
			s.Replace(map[string]any{"q": 1.0})
			s.Rollback(mark)
			return v
		}},
		{"got by another owner during, owner replaces", func(s as) any {
			mark := s.Savepoint()
			v, _ := s.GetAs("other", "m")
			s.Replace(map[string]any{"q": 1.0})
			s.Rollback(mark)
			return v
		}},
		{"got untagged during, owner sets, another replaces", func(s as) any {
			mark := s.Savepoint()
			v, _ := s.Store.Get("m")
			s.Set("m", 1.0)
			s.Store.Replace(map[string]any{"m": []any{"b"}})
			s.Rollback(mark)
			return v
		}},
		{"got untagged during, owner sets, another replaces with it", func(s as) any {
			mark := s.Savepoint()
			v, _ := s.Store.Get("m")
			s.Set("m", 1.0)
			s.Store.Replace(map[string]any{"m": sample()["m"]}) // equal: the rollback logs no write
			s.Rollback(mark)
			return v
		}},
	}
	for _, kind := range kinds[4:] { // the logging ones
		for _, tt := range tests {
			t.Run(kind.name+"/"+tt.name, func(t *testing.T) {
				s := own(kind.new(sample()))
				start := s.Copy()
				logMark := s.LogLen()
				v := tt.give(s)
				v.(map[string]any)["x"] = "after" // the store's again, or no longer: either way logged right
				checkReplay(t, s.Store, start, s.LogSince(logMark))
			})
		}
	}
}

// TestSavepointWritten checks what Written reports after a rollback: the
// writes before the savepoint, nothing for keys the attempt touched first.
func TestSavepointWritten(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind.name, func(t *testing.T) {
			s := own(kind.new(sample()).Fork())
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
			s := own(kind.new(sample()).Fork())
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
// as before savepoints existed; nor does an owner with none while another
// owner's savepoint is active, whose saved keys its writes look up.
func TestSavepointCostsNothingWhenInactive(t *testing.T) {
	for _, tt := range []struct {
		name string
		give func(s as)
	}{
		{"none yet", func(as) {}},
		{"ended", func(s as) {
			s.Release(s.Savepoint())
			mark := s.Savepoint()
			s.Set("k1", 1.0)
			s.Rollback(mark)
		}},
		{"another owner's active", func(s as) {
			s.Savepoint()
			s.Set("k3", 1.0)
			s.Get("k2")
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := own(state.New(numbered(100)))
			tt.give(s)
			for _, o := range []any{nil, "other"} {
				allocs := testing.AllocsPerRun(100, func() {
					v, _ := s.GetAs(o, "k2")
					v.(map[string]any)["n"] = 1.0
					s.SetAs(o, "k3", v)
					s.SetAs(o, "k3", 3.0)
				})
				if allocs != 0 {
					t.Errorf("GetAs(%v) and SetAs(%v) with no savepoint of theirs active: %v allocations; want 0", o, o, allocs)
				}
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
		give func(s as)
	}{
		{"nothing", func(as) {}},
		{"two writes", func(s as) { s.Set("k1", 1.0); s.Delete("k2") }},
		{"get and change", func(s as) {
			v, _ := s.Get("k1")
			v.(map[string]any)["n"] = -1.0
		}},
	}
	for _, kind := range kinds {
		for _, tt := range tests {
			t.Run(kind.name+"/"+tt.name, func(t *testing.T) {
				allocs := func(n int) float64 {
					s := own(kind.new(numbered(n)))
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
	s := own(state.New(numbered(50)))
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
	checkContents(t, s.Store, want)
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
	m := map[string]any{"leaf": 1.0}
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
		give func(s as)
	}{
		{"Get copying from a frozen layer", "overlay", func(s as) { s.Get("p") }},
		{"Entries copying from a frozen layer", "overlay", func(s as) { s.Entries() }},
		{"Get noting for the log", "logging flat", func(s as) { s.Get("p") }},
		{"Set logging a copy", "logging flat", func(s as) { s.Set("q", bomb{}) }},
		{"Apply logging a copy", "logging overlay", func(s as) {
			_ = s.Apply([]statemerge.Write{{Path: []string{"q", "r"}, Value: bomb{}}})
		}},
		{"Merge logging a copy", "logging flat", func(s as) { _ = s.Merge(map[string]any{"q": bomb{}}) }},
		{"Replace logging copies", "logging flat", func(s as) {
			s.Replace(map[string]any{"a": 1.0, "q": bomb{}})
		}},
		{"Copy", "flat", func(s as) { s.Copy() }},
		{"View", "overlay", func(s as) { s.View(func(map[string]any) { panic("view") }) }},
		{"Get saving a copy", "flat", func(s as) { s.Savepoint(); s.Get("p") }},
		{"Apply saving a copy", "flat", func(s as) {
			s.Savepoint()
			_ = s.Apply([]statemerge.Write{{Path: []string{"p", "x"}, Value: 1.0}})
		}},
		{"Rollback copying from a frozen layer", "overlay", func(s as) {
			mark := s.Savepoint()
			s.Delete("p") // saves the frozen value as it is
			s.Fork()      // freezes a layer over it: putting it back needs a copy
			s.Rollback(mark)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := own(newKind(tt.kind)(with(sample(), "p", bomb{})))
			before := contentsWithout(s.Store, "p")
			logged := logLen(s.Store)
			if r := catch(func() { tt.give(s) }); r == nil {
				t.Fatalf("%s did not panic", tt.name)
			}
			if got := contentsWithout(s.Store, "p"); tt.name == "Replace logging copies" && !reflect.DeepEqual(got, before) {
				t.Errorf("after the panic, contents = %v; want them unchanged", got)
			}
			if tt.name == "Replace logging copies" {
				if n := logged(); n != 0 {
					t.Errorf("after the panic, %d writes logged; want none", n)
				}
			}
			checkUsable(t, s.Store)
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
		s.Release("check", s.Savepoint("check"))
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

// TestSavepointOwnersInterleaved runs two owners' attempts on one store at
// once, each writing keys of its own in every way a store is written, and
// the untagged calls write too: rolling back one owner's attempt undoes
// its writes only, in either order of ending. A single undo log shared by
// every caller, as the store had, fails it: the first rollback undoes the
// other owner's writes too (the data loss of issue 8), and the second
// panics, its mark no longer active.
func TestSavepointOwnersInterleaved(t *testing.T) {
	// write changes keys whose names start with p, in every way.
	write := func(t *testing.T, s as, p string, x float64) {
		s.Set(p+"set", x)
		s.Delete(p + "a")
		mustApply(t, s, []statemerge.Write{{Path: []string{p + "m", "x"}, Value: x}})
		mustMerge(t, s, map[string]any{p + "m": map[string]any{"y": map[string]any{"w": x}}})
		v, _ := s.Get(p + "s")
		v.([]any)[0] = x
	}
	// start returns contents with keys for owners A and B and nobody.
	start := func() map[string]any {
		m := map[string]any{}
		for _, p := range []string{"A.", "B.", "-."} {
			for k, v := range sample() {
				m[p+k] = v
			}
		}
		return m
	}
	// wrote returns start with the writes of the owner prefixed p, done.
	wrote := func(t *testing.T, m map[string]any, p string, x float64) map[string]any {
		s := state.New(m)
		write(t, as{s, nil}, p, x)
		return s.Copy()
	}
	tests := []struct {
		name    string
		aKeeps  bool
		bKeeps  bool
		aEndsAt int // A ends first (0) or last (1)
	}{
		{"A rolled back first, B released", false, true, 0},
		{"B released first, A rolled back", false, true, 1},
		{"A released first, B rolled back", true, false, 0},
		{"B rolled back first, A released", true, false, 1},
		{"both rolled back, A first", false, false, 0},
		{"both rolled back, B first", false, false, 1},
	}
	for _, kind := range kinds {
		for _, tt := range tests {
			t.Run(kind.name+"/"+tt.name, func(t *testing.T) {
				s := kind.new(start())
				a, b, none := as{s, "A"}, as{s, "B"}, as{s, nil}
				ma := a.Savepoint()
				write(t, a, "A.", 1)
				mb := b.Savepoint()
				write(t, b, "B.", 2)
				write(t, none, "-.", 3)
				write(t, a, "A.", 4) // after B's savepoint
				write(t, b, "B.", 5)
				end := func(o as, mark int, keep bool) {
					if keep {
						o.Release(mark)
					} else {
						o.Rollback(mark)
					}
				}
				if tt.aEndsAt == 0 {
					end(a, ma, tt.aKeeps)
					end(b, mb, tt.bKeeps)
				} else {
					end(b, mb, tt.bKeeps)
					end(a, ma, tt.aKeeps)
				}
				want := wrote(t, start(), "-.", 3)
				if tt.aKeeps {
					want = wrote(t, wrote(t, want, "A.", 1), "A.", 4)
				}
				if tt.bKeeps {
					want = wrote(t, wrote(t, want, "B.", 2), "B.", 5)
				}
				checkContents(t, s, want)
				if got := a.Savepoint(); got != 0 {
					t.Errorf("A's Savepoint() at the end = %d; want 0 (none active)", got)
				}
			})
		}
	}
}

// TestSavepointOwnersEndInAnyOrder ends two owners' nested savepoints in
// every order that keeps each owner's own LIFO (and one that does not, by
// ending an outer savepoint first): none panics, and each rollback undoes
// its owner's writes since its mark only. A single undo log panics on
// the first order where B ends while A's inner savepoint is active.
func TestSavepointOwnersEndInAnyOrder(t *testing.T) {
	type step struct {
		owner string
		mark  int
	}
	// orders lists every interleaving of a and b.
	var orders func(a, b []step) [][]step
	orders = func(a, b []step) [][]step {
		if len(a) == 0 || len(b) == 0 {
			return [][]step{append(slices.Clone(a), b...)}
		}
		var out [][]step
		for _, o := range orders(a[1:], b) {
			out = append(out, append([]step{a[0]}, o...))
		}
		for _, o := range orders(a, b[1:]) {
			out = append(out, append([]step{b[0]}, o...))
		}
		return out
	}
	all := orders([]step{{"A", 1}, {"A", 0}}, []step{{"B", 1}, {"B", 0}})
	all = append(all, []step{{"B", 0}, {"A", 0}}) // outer first: ends the inner too
	for _, order := range all {
		for _, rollback := range []bool{false, true} {
			t.Run(fmt.Sprint(order, " rollback=", rollback), func(t *testing.T) {
				s := state.New(sample())
				marks := map[string][]int{}
				for i, o := range []string{"A", "B", "A", "B"} { // A0, B0, A1, B1
					marks[o] = append(marks[o], s.Savepoint(o))
					s.SetAs(o, fmt.Sprint(o, i), float64(i))
				}
				want := s.Copy()
				for _, st := range order {
					if rollback {
						if r := catch(func() { s.Rollback(st.owner, marks[st.owner][st.mark]) }); r != nil {
							t.Fatalf("Rollback(%s, %d) panicked: %v", st.owner, st.mark, r)
						}
						for i := 2 * st.mark; i < 4; i++ {
							if o := []string{"A", "B", "A", "B"}[i]; o == st.owner {
								delete(want, fmt.Sprint(o, i))
							}
						}
					} else if r := catch(func() { s.Release(st.owner, marks[st.owner][st.mark]) }); r != nil {
						t.Fatalf("Release(%s, %d) panicked: %v", st.owner, st.mark, r)
					}
					checkContents(t, s, want)
				}
				for _, o := range []string{"A", "B"} {
					if got := s.Savepoint(o); got != 0 {
						t.Errorf("Savepoint(%s) at the end = %d; want 0 (none active)", o, got)
					}
				}
			})
		}
	}
}

// TestSavepointOwnersInPlace checks that owner A's rollback undoes the
// in-place changes A made to values it got, and leaves those owner B made
// to values B got, to other keys, until B's own rollback. A log that
// saved every value handed out, to anyone, fails it: A's rollback undoes
// B's change to s.
func TestSavepointOwnersInPlace(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind.name, func(t *testing.T) {
			s := kind.new(sample())
			a, b := as{s, "A"}, as{s, "B"}
			ma, mb := a.Savepoint(), b.Savepoint()
			va, _ := a.Get("m")
			va.(map[string]any)["x"] = "A"
			_, vals := b.Entries() // B gets every key, m included, but changes s only
			vals[3].([]any)[0] = "B"
			va.(map[string]any)["y"].(map[string]any)["z"] = "A"
			a.Rollback(ma)
			checkContents(t, s, with(sample(), "s", []any{"B", map[string]any{"k": "v"}}))
			va.(map[string]any)["x"] = "A again" // no longer the store's
			vb, _ := b.Get("s")
			vb.([]any)[1] = "B again"
			checkContents(t, s, with(sample(), "s", []any{"B", "B again"}))
			b.Rollback(mb)
			checkContents(t, s, sample())
		})
	}
}

// TestSavepointOwnersSameKey checks what a rollback of owner A does to a
// key another owner, B (or an untagged call), wrote too, as Rollback
// documents it: a key A wrote goes back to its value before A's first
// change (B's write is lost: a rollback counts as a write); a key A only
// got keeps B's later write. Without the stale entries, the rollbacks of
// "A gets, B sets" and "A gets, B merges into it" restore the value A got
// over B's write; without a rollback counting as a write, "A sets, B gets,
// A rolled back, B rolled back" puts A's rolled-back write back.
func TestSavepointOwnersSameKey(t *testing.T) {
	m := func(x any) map[string]any { return map[string]any{"x": x} }
	tests := []struct {
		name string
		give func(t *testing.T, a, b as) // rolls back A, and ends B if it starts one
		want map[string]any              // the contents of k at the end
	}{
		{"A sets, B sets, A rolled back", func(_ *testing.T, a, b as) {
			mark := a.Savepoint()
			a.Set("k", m("A"))
			b.Set("k", m("B"))
			a.Rollback(mark)
		}, m(0.0)},
		{"A gets, B sets, A rolled back", func(_ *testing.T, a, b as) {
			mark := a.Savepoint()
			v, _ := a.Get("k")
			v.(map[string]any)["x"] = "A" // gone with the value B replaces
			b.Set("k", m("B"))
			a.Rollback(mark)
		}, m("B")},
		{"A gets, B merges into it, A rolled back", func(t *testing.T, a, b as) {
			mark := a.Savepoint()
			a.Get("k")
			mustMerge(t, b, map[string]any{"k": map[string]any{"y": "B"}})
			a.Rollback(mark)
		}, map[string]any{"x": 0.0, "y": "B"}},
		{"A gets, B sets, A gets and changes, A rolled back", func(_ *testing.T, a, b as) {
			mark := a.Savepoint()
			a.Get("k")
			b.Set("k", m("B"))
			v, _ := a.Get("k")
			v.(map[string]any)["x"] = "A"
			a.Rollback(mark)
		}, m("B")},
		{"A gets, B sets, A sets, A rolled back", func(_ *testing.T, a, b as) {
			mark := a.Savepoint()
			a.Get("k")
			b.Set("k", m("B"))
			a.Set("k", m("A"))
			a.Rollback(mark)
		}, m("B")},
		{"A gets and changes, A sets, B sets, A rolled back", func(_ *testing.T, a, b as) {
			mark := a.Savepoint()
			v, _ := a.Get("k")
			v.(map[string]any)["x"] = "A"
			a.Set("k", m("A2"))
			b.Set("k", m("B"))
			a.Rollback(mark)
		}, m(0.0)},
		{"A gets (outer), A sets (inner, released), B sets, A rolled back", func(_ *testing.T, a, b as) {
			mark := a.Savepoint()
			v, _ := a.Get("k")
			v.(map[string]any)["x"] = "A"
			a.Release(a.Savepoint())
			inner := a.Savepoint()
			a.Set("k", m("A2"))
			a.Release(inner)
			b.Set("k", m("B"))
			a.Rollback(mark)
		}, m(0.0)},
		{"A gets (outer), A gets (inner), B sets, A rolled back", func(_ *testing.T, a, b as) {
			mark := a.Savepoint()
			a.Get("k")
			a.Savepoint()
			v, _ := a.Get("k")
			v.(map[string]any)["x"] = "A"
			b.Set("k", m("B"))
			a.Rollback(mark)
		}, m("B")},
		{"A gets, untagged set, A rolled back", func(_ *testing.T, a, _ as) {
			mark := a.Savepoint()
			a.Get("k")
			a.Store.Set("k", m("nobody"))
			a.Rollback(mark)
		}, m("nobody")},
		{"A replaces, B sets, A rolled back", func(_ *testing.T, a, b as) {
			mark := a.Savepoint()
			a.Replace(map[string]any{"k": m("A")})
			b.Set("k", m("B"))
			a.Rollback(mark)
		}, m(0.0)},
		{"A gets, A replaces, B sets, A rolled back", func(_ *testing.T, a, b as) {
			mark := a.Savepoint()
			v, _ := a.Get("k")
			a.Replace(map[string]any{"k": m("A")})
			v.(map[string]any)["x"] = "A" // gone with the replaced contents
			b.Set("k", m("B"))
			a.Rollback(mark)
		}, m(0.0)},
		{"B replaces after A gets, A rolled back", func(_ *testing.T, a, b as) {
			mark := a.Savepoint()
			a.Get("k")
			b.Replace(with(sample(), "k", m("B")))
			a.Rollback(mark)
		}, m("B")},
		{"A sets, B gets, A rolled back, B rolled back", func(_ *testing.T, a, b as) {
			ma, mb := a.Savepoint(), b.Savepoint()
			a.Set("k", m("A"))
			b.Get("k")
			a.Rollback(ma) // a write of k: B's claim on A's value ends
			b.Rollback(mb)
		}, m(0.0)},
		{"B gets, A gets and changes, B sets, B rolled back, A rolled back", func(_ *testing.T, a, b as) {
			mb := b.Savepoint()
			b.Get("k")
			ma := a.Savepoint()
			v, _ := a.Get("k")
			v.(map[string]any)["x"] = "A" // in the value B got too: lost with B's rollback
			b.Set("k", m("B"))
			b.Rollback(mb)
			a.Rollback(ma)
		}, m(0.0)},
	}
	for _, kind := range kinds {
		for _, tt := range tests {
			t.Run(kind.name+"/"+tt.name, func(t *testing.T) {
				s := kind.new(with(sample(), "k", m(0.0)))
				tt.give(t, as{s, "A"}, as{s, "B"})
				checkContents(t, s, with(sample(), "k", tt.want))
			})
		}
	}
}

// TestSavepointOwnersConcurrent runs attempts of several owners on one
// store at once (run with -race), as concurrent executions sharing a state
// do: each writes keys of its own, reads a shared one, and is rolled back
// on odd rounds, released on even ones. Every owner's released writes must
// stay and its rolled-back ones go, whatever the others did meanwhile. A
// single undo log for every owner fails it: the rollbacks undo other
// owners' writes, or panic.
func TestSavepointOwnersConcurrent(t *testing.T) {
	const owners, rounds = 6, 200
	s := state.New(numbered(20))
	var wg sync.WaitGroup
	for o := range owners {
		wg.Go(func() {
			a := as{s, o}
			for i := range rounds {
				mark := a.Savepoint()
				a.Set(fmt.Sprint("o", o, "-", i), float64(i))
				if v, ok := a.Get(fmt.Sprint("o", o, "-last")); ok {
					v.(map[string]any)["n"] = -1.0 // undone on odd rounds
				}
				if _, ok := a.Get("k1"); !ok {
					t.Errorf("owner %d: Get(k1) found nothing", o)
				}
				inner := a.Savepoint()
				a.Delete(fmt.Sprint("o", o, "-", i-1))
				a.Release(inner)
				if i%2 == 1 {
					a.Rollback(mark)
					continue
				}
				a.Set(fmt.Sprint("o", o, "-last"), map[string]any{"n": float64(i)})
				a.Release(mark)
			}
		})
	}
	wg.Wait()
	want := numbered(20)
	for o := range owners {
		for i := 0; i < rounds; i += 2 { // an odd round's key, rolled back, was never set
			want[fmt.Sprint("o", o, "-", i)] = float64(i)
		}
		want[fmt.Sprint("o", o, "-last")] = map[string]any{"n": float64(rounds - 2)}
	}
	checkContents(t, s, want)
}
