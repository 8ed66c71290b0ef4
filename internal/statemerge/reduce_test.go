package statemerge

import (
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
)

// The reducers are Reducers.
var _ = []Reducer{Append, Sum, Max}

// reduceArgs are the arguments of a Reducer.
type reduceArgs struct {
	parent   any
	parentOK bool
	branches []any
}

type reduceTest struct {
	name    string
	give    reduceArgs
	want    any
	wantErr string // a substring of the error; "" for none
}

func runReduceTests(t *testing.T, fn string, reduce Reducer, tests []reduceTest) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := tt.give
			got, err := reduce(g.parent, g.parentOK, g.branches)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("%s(%v, %v, %v) = %v, %v; want error containing %q", fn, g.parent, g.parentOK, g.branches, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("%s(%v, %v, %v) = %v (%T), %v; want %v (%T), nil", fn, g.parent, g.parentOK, g.branches, got, got, err, tt.want, tt.want)
			}
		})
	}
}

func TestAppend(t *testing.T) {
	runReduceTests(t, "Append", Append, []reduceTest{
		{
			name: "nothing",
			give: reduceArgs{nil, false, nil},
			want: nil,
		},
		{
			name: "absent parent",
			give: reduceArgs{nil, false, []any{[]any{"a"}, []any{"b", "c"}}},
			want: []any{"a", "b", "c"},
		},
		{
			name: "branches extend the parent",
			give: reduceArgs{[]any{"x"}, true, []any{[]any{"x", "a"}, []any{"x", "b", "c"}}},
			want: []any{"x", "a", "b", "c"},
		},
		{
			name: "unchanged branch adds nothing",
			give: reduceArgs{[]any{"x", "y"}, true, []any{[]any{"x", "y"}, []any{"x", "y", "z"}}},
			want: []any{"x", "y", "z"},
		},
		{
			name: "branch not starting with the parent adds all",
			give: reduceArgs{[]any{"x", "y"}, true, []any{[]any{"y", "x", "z"}}},
			want: []any{"x", "y", "y", "x", "z"},
		},
		{
			name: "branch shorter than the parent adds all",
			give: reduceArgs{[]any{"x", "y"}, true, []any{[]any{"x"}}},
			want: []any{"x", "y", "x"},
		},
		{
			name: "elements compared deeply",
			give: reduceArgs{[]any{map[string]any{"k": 1.0}}, true, []any{[]any{map[string]any{"k": 1.0}, 2.0}}},
			want: []any{map[string]any{"k": 1.0}, 2.0},
		},
		{
			name: "nil branch adds nothing",
			give: reduceArgs{[]any{"x"}, true, []any{nil, []any{"x", "a"}, []any(nil)}},
			want: []any{"x", "a"},
		},
		{
			name: "null parent",
			give: reduceArgs{nil, true, []any{[]any{"a"}}},
			want: []any{"a"},
		},
		{
			name: "empty parent stays a list",
			give: reduceArgs{[]any{}, true, []any{[]any{}}},
			want: []any{},
		},
		{
			name:    "parent not a list",
			give:    reduceArgs{"x", true, []any{[]any{"a"}}},
			wantErr: "parent is string, not []any",
		},
		{
			name:    "branch not a list",
			give:    reduceArgs{nil, false, []any{[]any{"a"}, map[string]any{"k": 1.0}}},
			wantErr: "branches[1] is map[string]interface {}, not []any",
		},
		{
			name:    "typed list",
			give:    reduceArgs{nil, false, []any{[]string{"a"}}},
			wantErr: "branches[0] is []string, not []any",
		},
	})
}

func TestAppendDoesNotAliasParent(t *testing.T) {
	parent := make([]any, 1, 4)
	parent[0] = "x"
	got, err := Append(parent, true, []any{[]any{"x", "a"}})
	if err != nil {
		t.Fatalf("Append(%v, true, ...) error: %v", parent, err)
	}
	got.([]any)[0] = "changed"
	if parent[:2][0] != "x" || parent[:2][1] != nil {
		t.Errorf("Append(%v, true, ...) shares the parent's backing array", parent)
	}
}

type count int

func TestSum(t *testing.T) {
	runReduceTests(t, "Sum", Sum, []reduceTest{
		{
			name: "adds deltas",
			give: reduceArgs{10, true, []any{12, 15}},
			want: int64(17),
		},
		{
			name: "negative delta",
			give: reduceArgs{10, true, []any{5, 12}},
			want: int64(7),
		},
		{
			name: "absent parent counts as zero",
			give: reduceArgs{nil, false, []any{3, 4}},
			want: int64(7),
		},
		{
			name: "no branches",
			give: reduceArgs{5, true, nil},
			want: int64(5),
		},
		{
			name: "nothing",
			give: reduceArgs{nil, false, []any{nil}},
			want: nil,
		},
		{
			name: "nil branch contributes nothing",
			give: reduceArgs{10, true, []any{nil, 12}},
			want: int64(12),
		},
		{
			name: "float64 from JSON",
			give: reduceArgs{10.0, true, []any{12.0, 15.0}},
			want: 17.0,
		},
		{
			name: "int parent, float branch",
			give: reduceArgs{10, true, []any{12.5, 15}},
			want: 17.5,
		},
		{
			name: "float parent, int branches",
			give: reduceArgs{1.5, true, []any{int8(2), uint16(3)}},
			want: 3.5,
		},
		{
			name: "float32",
			give: reduceArgs{nil, false, []any{float32(0.5), float32(0.25)}},
			want: 0.75,
		},
		{
			name: "int kinds mixed",
			give: reduceArgs{int32(1), true, []any{int64(2), uint8(3), uint(4), count(5)}},
			want: int64(11),
		},
		{
			name: "json.Number",
			give: reduceArgs{json.Number("10"), true, []any{json.Number("12"), json.Number("15")}},
			want: int64(17),
		},
		{
			name: "json.Number float",
			give: reduceArgs{json.Number("10"), true, []any{json.Number("12.5")}},
			want: 12.5,
		},
		{
			name: "large deltas stay exact",
			give: reduceArgs{int64(math.MinInt64), true, []any{int64(math.MaxInt64)}},
			want: int64(math.MaxInt64),
		},
		{
			name:    "int64 overflow",
			give:    reduceArgs{0, true, []any{int64(math.MaxInt64), 1}},
			wantErr: "overflows int64",
		},
		{
			name:    "uint64 overflow",
			give:    reduceArgs{0, true, []any{uint64(math.MaxUint64)}},
			wantErr: "branches[0] is uint64 18446744073709551615, which overflows int64",
		},
		{
			name:    "string branch",
			give:    reduceArgs{0, true, []any{1, "2"}},
			wantErr: "branches[1] is string, not a number",
		},
		{
			name:    "bool parent",
			give:    reduceArgs{true, true, []any{1}},
			wantErr: "parent is bool, not a number",
		},
		{
			name:    "invalid json.Number",
			give:    reduceArgs{nil, false, []any{json.Number("abc")}},
			wantErr: `branches[0] is json.Number "abc", not a valid number`,
		},
	})
}

func TestMax(t *testing.T) {
	runReduceTests(t, "Max", Max, []reduceTest{
		{
			name: "branch largest",
			give: reduceArgs{3, true, []any{5, 4}},
			want: int64(5),
		},
		{
			name: "parent largest",
			give: reduceArgs{10, true, []any{1, 2}},
			want: int64(10),
		},
		{
			name: "absent parent",
			give: reduceArgs{nil, false, []any{-5, -2}},
			want: int64(-2),
		},
		{
			name: "no branches",
			give: reduceArgs{7, true, nil},
			want: int64(7),
		},
		{
			name: "nothing",
			give: reduceArgs{nil, false, nil},
			want: nil,
		},
		{
			name: "nil branch skipped",
			give: reduceArgs{-3, true, []any{nil, -4}},
			want: int64(-3),
		},
		{
			name: "int and float",
			give: reduceArgs{3, true, []any{2.5}},
			want: 3.0,
		},
		{
			name: "float wins",
			give: reduceArgs{3, true, []any{3.5, uint8(2)}},
			want: 3.5,
		},
		{
			name: "int kinds and json.Number",
			give: reduceArgs{count(4), true, []any{json.Number("9"), uint32(8)}},
			want: int64(9),
		},
		{
			name:    "map branch",
			give:    reduceArgs{1, true, []any{map[string]any{}}},
			wantErr: "branches[0] is map[string]interface {}, not a number",
		},
		{
			name:    "string parent",
			give:    reduceArgs{"1", true, []any{1}},
			wantErr: "statemerge: Max: parent is string, not a number",
		},
	})
}

func TestMaxNaN(t *testing.T) {
	got, err := Max(1.0, true, []any{math.NaN(), 2.0})
	if f, ok := got.(float64); err != nil || !ok || !math.IsNaN(f) {
		t.Errorf("Max(1, true, [NaN 2]) = %v, %v; want NaN, nil", got, err)
	}
}
