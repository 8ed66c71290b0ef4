package advise

import (
	"fmt"
	"go/format"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/caudal-go/caudal/optimize"
)

// GoSource returns cfg as a Go source file of package pkg declaring it as
// the variable Config: a composite literal of its non-zero fields only,
// gofmt'ed. Errors: a field of a kind it cannot print (ErrorRule's
// matchers are code; they are never part of advice).
func GoSource(pkg string, cfg optimize.Config) (string, error) {
	var b strings.Builder
	usesTime := false
	lit, err := literal(reflect.ValueOf(cfg), &usesTime)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(&b, "package %s\n\nimport (\n", pkg)
	if usesTime {
		b.WriteString("\t\"time\"\n\n")
	}
	b.WriteString("\t\"github.com/caudal-go/caudal/optimize\"\n)\n\n")
	b.WriteString("// Config is the optimization config caudal advise recommends: pass it to\n// caudal.New as optimize.Use(Config).\n")
	b.WriteString("var Config = " + lit + "\n")
	out, err := format.Source([]byte(b.String()))
	if err != nil {
		return "", fmt.Errorf("advise: formatting the Go source: %w", err)
	}
	return string(out), nil
}

var durationType = reflect.TypeFor[time.Duration]()

// literal prints v as a Go expression.
func literal(v reflect.Value, usesTime *bool) (string, error) {
	t := v.Type()
	switch {
	case t == durationType:
		*usesTime = true
		return durationLiteral(time.Duration(v.Int())), nil
	case t.Kind() == reflect.Struct:
		var fields []string
		for i := range t.NumField() {
			f := v.Field(i)
			if !t.Field(i).IsExported() || f.IsZero() {
				continue
			}
			s, err := literal(f, usesTime)
			if err != nil {
				return "", fmt.Errorf("%s.%w", t.Field(i).Name, err)
			}
			fields = append(fields, t.Field(i).Name+": "+s)
		}
		name := t.Name()
		if t.PkgPath() == reflect.TypeFor[optimize.Config]().PkgPath() {
			name = "optimize." + name
		}
		if len(fields) == 0 {
			return name + "{}", nil
		}
		if len(fields) == 1 && t.Name() != "Config" {
			return name + "{" + fields[0] + "}", nil
		}
		return name + "{\n" + strings.Join(fields, ",\n") + ",\n}", nil
	case t.Kind() == reflect.Slice && t.Elem() == durationType:
		var elems []string
		for i := range v.Len() {
			s, err := literal(v.Index(i), usesTime)
			if err != nil {
				return "", err
			}
			elems = append(elems, s)
		}
		return "[]time.Duration{" + strings.Join(elems, ", ") + "}", nil
	}
	switch t.Kind() {
	case reflect.Bool:
		return strconv.FormatBool(v.Bool()), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10), nil
	case reflect.Float32, reflect.Float64:
		s := strconv.FormatFloat(v.Float(), 'g', -1, 64)
		if !strings.ContainsAny(s, ".e") {
			s += ".0"
		}
		return s, nil
	case reflect.String:
		return strconv.Quote(v.String()), nil
	}
	return "", fmt.Errorf("%s: a %s cannot be printed as Go", t.Name(), t.Kind())
}

// durationLiteral prints d in the largest unit that divides it.
func durationLiteral(d time.Duration) string {
	for _, u := range []struct {
		d    time.Duration
		name string
	}{{time.Hour, "Hour"}, {time.Minute, "Minute"}, {time.Second, "Second"}, {time.Millisecond, "Millisecond"}, {time.Microsecond, "Microsecond"}} {
		if d%u.d == 0 {
			if d == u.d {
				return "time." + u.name
			}
			return fmt.Sprintf("%d * time.%s", d/u.d, u.name)
		}
	}
	return fmt.Sprintf("%d * time.Nanosecond", d)
}
