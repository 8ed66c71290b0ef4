package statemerge

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"slices"
)

// Reducer combines the parent's value at a key (nil if absent; ok false)
// with the values the successful branches left at that key, in declaration
// order, into the merged value.
//
// The reducers of this package are safe for concurrent use, provided
// nothing mutates their arguments meanwhile, and never modify them.
type Reducer func(parent any, parentOK bool, branches []any) (any, error)

// Append concatenates: the parent's list, then for each branch the elements
// it added beyond the parent's list (a branch list that does not start with
// the parent's elements, compared with reflect.DeepEqual, contributes all
// its elements).
//
// Values must be []any or nil/absent, which count as an empty list;
// otherwise Append returns an error naming the Go types. The result is a new
// []any (the elements are not copied), or nil when the parent is nil and no
// branch adds anything. Append is safe for concurrent use.
func Append(parent any, parentOK bool, branches []any) (any, error) {
	base, err := list("parent", parent)
	if err != nil {
		return nil, err
	}
	var out []any
	if base != nil {
		out = slices.Clone(base)
	}
	for i, b := range branches {
		l, err := list(fmt.Sprintf("branches[%d]", i), b)
		if err != nil {
			return nil, err
		}
		if startsWith(l, base) {
			l = l[len(base):]
		}
		out = append(out, l...)
	}
	if out == nil {
		return nil, nil // not a nil []any in a non-nil interface
	}
	return out, nil
}

// startsWith reports whether l starts with the elements of prefix.
func startsWith(l, prefix []any) bool {
	return len(l) >= len(prefix) && slices.EqualFunc(l[:len(prefix)], prefix, func(a, b any) bool { return reflect.DeepEqual(a, b) })
}

// list returns v, named what in errors, as a list.
func list(what string, v any) ([]any, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil
	case []any:
		return v, nil
	default:
		return nil, fmt.Errorf("statemerge: Append: %s is %T, not []any", what, v)
	}
}

// Sum adds the parent's number and each branch's delta (branch − parent),
// so that a parent of 10 with branches 12 and 15 gives 17.
//
// Numbers may be of any Go int, uint or float kind, named types included,
// or json.Number (an integer when it parses as an int64, else a float). The
// result is int64 when every number is an integer, else float64; integer
// sums are exact, and one that does not fit in int64 is an error, as is a
// uint above math.MaxInt64. Non-numbers are an error naming the Go type.
// nil counts as absent: an absent parent counts as 0, and a nil branch value
// contributes nothing. When every value is nil the result is nil. Sum is
// safe for concurrent use.
func Sum(parent any, parentOK bool, branches []any) (any, error) {
	p, bs, err := operands("Sum", parent, branches)
	if err != nil || (p == nil && len(bs) == 0) {
		return nil, err
	}
	if p == nil {
		p = &number{isInt: true}
	}
	if allInts(p, bs) {
		total := big.NewInt(p.i)
		var delta big.Int
		for _, b := range bs {
			delta.Sub(big.NewInt(b.i), big.NewInt(p.i))
			total.Add(total, &delta)
		}
		if !total.IsInt64() {
			return nil, fmt.Errorf("statemerge: Sum: result %v overflows int64", total)
		}
		return total.Int64(), nil
	}
	total := p.float()
	for _, b := range bs {
		total += b.float() - p.float()
	}
	return total, nil
}

// Max returns the largest of the parent's and branches' numbers, following
// the number rules of [Sum]: an int64 when every number is an integer, else
// a float64 (NaN when any number is NaN). nil values are skipped; when every
// value is nil the result is nil. Max is safe for concurrent use.
func Max(parent any, parentOK bool, branches []any) (any, error) {
	p, bs, err := operands("Max", parent, branches)
	if err != nil || (p == nil && len(bs) == 0) {
		return nil, err
	}
	if p != nil {
		bs = append([]*number{p}, bs...)
	}
	if allInts(nil, bs) {
		best := bs[0].i
		for _, b := range bs[1:] {
			best = max(best, b.i)
		}
		return best, nil
	}
	best := bs[0].float()
	for _, b := range bs[1:] {
		best = max(best, b.float())
	}
	return best, nil
}

// number is a numeric value: an integer in i when isInt, else a float in f.
type number struct {
	isInt bool
	i     int64
	f     float64
}

func (n *number) float() float64 {
	if n.isInt {
		return float64(n.i)
	}
	return n.f
}

// allInts reports whether p (if not nil) and every one of bs are integers.
func allInts(p *number, bs []*number) bool {
	if p != nil && !p.isInt {
		return false
	}
	for _, b := range bs {
		if !b.isInt {
			return false
		}
	}
	return true
}

// operands converts the arguments of reducer fn to numbers: the parent's
// (nil when it is nil) and the non-nil branch values'.
func operands(fn string, parent any, branches []any) (*number, []*number, error) {
	var p *number
	if parent != nil {
		n, err := toNumber(parent)
		if err != nil {
			return nil, nil, fmt.Errorf("statemerge: %s: parent %w", fn, err)
		}
		p = &n
	}
	bs := make([]*number, 0, len(branches))
	for i, b := range branches {
		if b == nil {
			continue
		}
		n, err := toNumber(b)
		if err != nil {
			return nil, nil, fmt.Errorf("statemerge: %s: branches[%d] %w", fn, i, err)
		}
		bs = append(bs, &n)
	}
	return p, bs, nil
}

// toNumber converts v to a number. Its errors complete a sentence whose
// subject is v.
func toNumber(v any) (number, error) {
	if n, ok := v.(json.Number); ok {
		if i, err := n.Int64(); err == nil {
			return number{isInt: true, i: i}, nil
		}
		f, err := n.Float64()
		if err != nil {
			return number{}, fmt.Errorf("is json.Number %q, not a valid number", string(n))
		}
		return number{f: f}, nil
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return number{isInt: true, i: rv.Int()}, nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		u := rv.Uint()
		if u > math.MaxInt64 {
			return number{}, fmt.Errorf("is %T %d, which overflows int64", v, u)
		}
		return number{isInt: true, i: int64(u)}, nil
	case reflect.Float32, reflect.Float64:
		return number{f: rv.Float()}, nil
	default:
		return number{}, fmt.Errorf("is %T, not a number", v)
	}
}
