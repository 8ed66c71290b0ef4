package main

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// The units benchstat reports for go test -benchmem, in table order.
const (
	unitTime   = "sec/op"
	unitBytes  = "B/op"
	unitAllocs = "allocs/op"
)

const caudalLib = "caudal"

var (
	procsSuffix = regexp.MustCompile(`-\d+$`)
	libKey      = regexp.MustCompile(`(^|/)lib=([^/]+)`)
)

// medians maps a benchmark name (without the -GOMAXPROCS suffix) to its
// median per unit; order keeps the names in input order.
type medians struct {
	order  []string
	values map[string]map[string]float64
}

func main() {
	m, err := parse(os.Stdin)
	if err == nil {
		err = render(os.Stdout, m)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ratios:", err)
		os.Exit(1)
	}
}

// parse reads benchstat's CSV: for each unit, a header row ",<unit>,CI"
// followed by "<name>,<median>,<ci>" rows; blank lines separate the tables.
func parse(r io.Reader) (*medians, error) {
	m := &medians{values: map[string]map[string]float64{}}
	cr := csv.NewReader(bufio.NewReader(r))
	cr.FieldsPerRecord = -1
	unit := ""
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if len(rec) < 2 {
			continue
		}
		name, value := rec[0], rec[1]
		switch {
		case name == "" && (value == unitTime || value == unitBytes || value == unitAllocs):
			unit = value
			continue
		case name == "" || name == "geomean" || unit == "" || value == "":
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", name, unit, err)
		}
		name = procsSuffix.ReplaceAllString(name, "")
		if _, ok := m.values[name]; !ok {
			m.values[name] = map[string]float64{}
			m.order = append(m.order, name)
		}
		m.values[name][unit] = v
	}
	if len(m.order) == 0 {
		return nil, errors.New("no benchmark rows in the input")
	}
	return m, nil
}

// split returns name's lib= value and name with the lib key replaced by
// a placeholder, so that two libraries' rows of one dimension compare equal.
func split(name string) (lib, key string) {
	sub := libKey.FindStringSubmatch(name)
	if sub == nil {
		return "", name
	}
	return sub[2], libKey.ReplaceAllString(name, "${1}lib=*")
}

type pair struct {
	caudal, peer string
	peerLib      string
}

func pairs(m *medians) (ps []pair, unpaired []string) {
	caudalByKey := map[string]string{}
	for _, name := range m.order {
		if lib, key := split(name); lib == caudalLib {
			caudalByKey[key] = name
		}
	}
	for _, name := range m.order {
		lib, key := split(name)
		if lib == caudalLib {
			continue
		}
		c, ok := caudalByKey[key]
		if !ok {
			unpaired = append(unpaired, name)
			continue
		}
		ps = append(ps, pair{caudal: c, peer: name, peerLib: lib})
	}
	// Keep the caudal rows' order, then the peers' order within one row.
	slices.SortStableFunc(ps, func(a, b pair) int {
		return slices.Index(m.order, a.caudal) - slices.Index(m.order, b.caudal)
	})
	return ps, unpaired
}

func render(w io.Writer, m *medians) error {
	ps, unpaired := pairs(m)
	var b strings.Builder
	b.WriteString("| Benchmark | Peer | caudal sec/op | peer sec/op | sec/op caudal/peer | B/op caudal/peer | allocs/op caudal/peer |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|\n")
	for _, p := range ps {
		c, q := m.values[p.caudal], m.values[p.peer]
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s | %s | %s |\n",
			dimension(p.caudal), p.peerLib,
			fmtValue(c, unitTime), fmtValue(q, unitTime),
			ratio(c, q, unitTime), ratio(c, q, unitBytes), ratio(c, q, unitAllocs))
	}
	if len(ps) == 0 {
		b.WriteString("| (no comparable pair) | | | | | | |\n")
	}
	if len(unpaired) > 0 {
		b.WriteString("\nNo caudal counterpart (peer only):\n\n")
		for _, name := range unpaired {
			v := m.values[name]
			fmt.Fprintf(&b, "- `%s`: %s, %s B/op, %s allocs/op\n", strings.TrimPrefix(name, "Benchmark"),
				fmtValue(v, unitTime), fmtValue(v, unitBytes), fmtValue(v, unitAllocs))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// dimension is name without its Benchmark prefix and lib= key:
// BenchmarkChain/lib=caudal/steps=3 is Chain/steps=3.
func dimension(name string) string {
	_, key := split(name)
	key = strings.Replace(key, "/lib=*", "", 1)
	return strings.TrimPrefix(key, "Benchmark")
}

// ratio formats c/q for unit, or "—" when a median is missing or q is 0.
func ratio(c, q map[string]float64, unit string) string {
	cv, okc := c[unit]
	qv, okq := q[unit]
	switch {
	case !okc || !okq:
		return "—"
	case qv == 0 && cv == 0:
		return "1 (both 0)"
	case qv == 0:
		return "— (peer 0)"
	}
	if r := cv / qv; r < 0.1 {
		return fmt.Sprintf("%.2g×", r) // two significant digits: 0.0024×
	}
	return fmt.Sprintf("%.2f×", cv/qv)
}

// fmtValue formats a median: times in ns or µs, counts as integers.
func fmtValue(v map[string]float64, unit string) string {
	x, ok := v[unit]
	if !ok {
		return "—"
	}
	if unit != unitTime {
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	switch ns := x * 1e9; {
	case ns < 1000:
		return fmt.Sprintf("%.1f ns", ns)
	case ns < 1e6:
		return fmt.Sprintf("%.2f µs", ns/1e3)
	default:
		return fmt.Sprintf("%.2f ms", ns/1e6)
	}
}
