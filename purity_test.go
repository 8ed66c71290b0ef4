package caudal_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// interpreterDirs hold the interpreter: everything an execution runs. Of
// their files, only runtime.go — the process runtime — may touch the clock,
// timers, goroutines and randomness.
var interpreterDirs = []string{".", "internal/engine", "internal/state", "internal/statemerge", "internal/deepcopy", "internal/backoff"}

// TestInterpreterUsesOnlyTheRuntime fails when the interpreter starts a
// goroutine, reads the clock, sets a timer or draws a random number other
// than through the Runtime, so that a deterministic runtime drives it
// entirely.
func TestInterpreterUsesOnlyTheRuntime(t *testing.T) {
	var problems []string
	for _, dir := range interpreterDirs {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") || f == "runtime.go" {
				continue
			}
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			p, err := impurities(f, src)
			if err != nil {
				t.Fatal(err)
			}
			problems = append(problems, p...)
		}
	}
	if len(problems) > 0 {
		t.Errorf("the interpreter bypasses the Runtime:\n%s", strings.Join(problems, "\n"))
	}
}

// TestImpuritiesFindsEachKind proves the check above can fail.
func TestImpuritiesFindsEachKind(t *testing.T) {
	const src = `package x

import (
	"context"
	tm "time"
	"math/rand/v2"
	"sync"
)

func f(ctx context.Context) {
	go f(ctx)
	_ = tm.Now()
	tm.Sleep(1)
	<-tm.After(1)
	_ = tm.NewTimer(1)
	_ = tm.Since(tm.Time{})
	context.WithTimeoutCause(ctx, 1, nil)
	var wg sync.WaitGroup
	_ = wg
	_ = rand.Float64()
	_ = tm.Duration(1) // a type, not a call: allowed
}
`
	got, err := impurities("x.go", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"math/rand/v2", "go statement", "time.Now", "time.Sleep", "time.After", "time.NewTimer", "time.Since", "context.WithTimeoutCause", "sync.WaitGroup"}
	if len(got) != len(want) {
		t.Fatalf("impurities = %d:\n%s\nwant %d", len(got), strings.Join(got, "\n"), len(want))
	}
	for i, w := range want {
		if !strings.Contains(got[i], w) {
			t.Errorf("impurity %d = %q; want it to name %s", i, got[i], w)
		}
	}
}

// forbidden lists, by import path, the names the interpreter must reach
// through the Runtime.
var forbidden = map[string][]string{
	"time":    {"Now", "Since", "Until", "Sleep", "After", "AfterFunc", "NewTimer", "NewTicker", "Tick"},
	"context": {"WithTimeout", "WithTimeoutCause", "WithDeadline", "WithDeadlineCause"},
	"sync":    {"WaitGroup"},
}

// impurities lists, in source order, where file src starts a goroutine,
// imports a random source, or uses a forbidden name.
func impurities(name string, src []byte) ([]string, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, name, src, 0)
	if err != nil {
		return nil, err
	}
	var out []string
	local := map[string]string{} // local package name → import path
	for _, imp := range f.Imports {
		path, _ := strconv.Unquote(imp.Path.Value)
		if path == "math/rand" || path == "math/rand/v2" || strings.HasSuffix(path, "/errgroup") {
			out = append(out, fmt.Sprintf("%s: imports %s", fset.Position(imp.Pos()), path))
		}
		base := path[strings.LastIndex(path, "/")+1:]
		if imp.Name != nil {
			base = imp.Name.Name
		}
		local[base] = path
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.GoStmt:
			out = append(out, fmt.Sprintf("%s: go statement", fset.Position(n.Pos())))
		case *ast.SelectorExpr:
			id, ok := n.X.(*ast.Ident)
			if !ok {
				return true
			}
			if path, ok := local[id.Name]; ok && slices.Contains(forbidden[path], n.Sel.Name) {
				out = append(out, fmt.Sprintf("%s: %s.%s", fset.Position(n.Pos()), path, n.Sel.Name))
			}
		}
		return true
	})
	return out, nil
}
