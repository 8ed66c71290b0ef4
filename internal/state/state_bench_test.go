package state_test

import (
	"fmt"
	"testing"

	"github.com/caudal-go/caudal/internal/state"
	"github.com/caudal-go/caudal/internal/statemerge"
)

// isolations are the two ways to give a child its own state: an overlay
// ([state.Store.Fork] and [state.Store.Written]), and the deep copy and
// full diff it replaces, which the engine keeps as its baseline.
var isolations = []struct {
	name    string
	fork    func(parent *state.Store) *state.Store
	written func(parent, child *state.Store) []statemerge.Write
}{
	{
		name:    "overlay",
		fork:    (*state.Store).Fork,
		written: func(_, child *state.Store) []statemerge.Write { return child.Written() },
	},
	{
		name: "deepcopy",
		fork: func(parent *state.Store) *state.Store { return state.New(parent.Copy()) },
		written: func(parent, child *state.Store) []statemerge.Write {
			return statemerge.Diff(parent.Copy(), child.Copy())
		},
	},
}

// BenchmarkFork measures forking a store that does not change between
// forks.
func BenchmarkFork(b *testing.B) {
	for _, iso := range isolations {
		for _, n := range []int{10, 1000} {
			b.Run(fmt.Sprintf("impl=%s/keys=%d", iso.name, n), func(b *testing.B) {
				s := state.New(numbered(n))
				b.ReportAllocs()
				for b.Loop() {
					iso.fork(s)
				}
			})
		}
	}
}

// BenchmarkLoopIteration measures one iteration of a loop over a store:
// fork, read and change one value, and merge the child's writes back.
func BenchmarkLoopIteration(b *testing.B) {
	for _, iso := range isolations {
		for _, n := range []int{10, 1000} {
			b.Run(fmt.Sprintf("impl=%s/keys=%d", iso.name, n), func(b *testing.B) {
				s := state.New(numbered(n))
				b.ReportAllocs()
				i := 0.0
				for b.Loop() {
					child := iso.fork(s)
					v, _ := child.Get("k1")
					v.(map[string]any)["n"] = i
					child.Set("i", i)
					if err := s.Apply(iso.written(s, child)); err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
		}
	}
}

// BenchmarkSavepoint measures an attempt's savepoint and rollback: with
// no writes, two writes, or a value read and changed in place, on stores of
// 16 and 1024 keys. The cost is that of what the attempt reads and writes,
// not of the store's size. With others=1, another owner (a concurrent
// execution's attempt) keeps a savepoint active throughout, having written
// one key and got another: the attempt's writes look up its saved keys.
func BenchmarkSavepoint(b *testing.B) {
	attempts := []struct {
		name string
		do   func(s as)
	}{
		{"writes=0", func(as) {}},
		{"writes=2", func(s as) { s.Set("k1", 1.0); s.Set("new", 2.0) }},
		{"getchange=1", func(s as) {
			v, _ := s.Get("k1")
			v.(map[string]any)["n"] = -1.0
		}},
	}
	for _, kind := range []struct {
		name string
		new  func(m map[string]any) *state.Store
	}{
		{"flat", state.New},
		{"overlay", func(m map[string]any) *state.Store { return state.New(m).Fork() }},
	} {
		for _, a := range attempts {
			for _, n := range []int{16, 1024} {
				for _, others := range []int{0, 1} {
					name := fmt.Sprintf("store=%s/%s/keys=%d", kind.name, a.name, n)
					if others > 0 {
						name += fmt.Sprintf("/others=%d", others)
					}
					b.Run(name, func(b *testing.B) {
						s := own(kind.new(numbered(n)))
						if others > 0 {
							o := as{s.Store, "other"}
							o.Savepoint()
							o.Set("k2", 2.0)
							o.Get("k3")
						}
						b.ReportAllocs()
						for b.Loop() {
							mark := s.Savepoint()
							a.do(s)
							s.Rollback(mark)
						}
					})
				}
			}
		}
	}
}
