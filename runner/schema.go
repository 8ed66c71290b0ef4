package runner

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"unicode/utf8"
)

// schema is a compiled JSON Schema of the subset the runner validates:
// type, properties, required, enum, minimum, maximum, minLength,
// maxLength, items; annotations (title, description, default, examples,
// $schema, $id, $comment) are allowed and ignored; any other keyword is
// refused, so that a rule the runner would not enforce is never silently
// dropped.
type schema struct {
	types      []string
	properties map[string]*schema
	required   []string
	enum       []any
	hasEnum    bool
	min, max   *float64
	minLen     *int
	maxLen     *int
	items      *schema
}

var (
	schemaTypes = []string{"object", "array", "string", "number", "integer", "boolean", "null"}
	annotations = []string{"title", "description", "default", "examples", "$schema", "$id", "$comment"}
)

// schemaJSON returns the JSON document of a [caudal.WithSchema] value:
// []byte, json.RawMessage and string are taken as JSON text, anything else
// is encoded. nil is no schema.
func schemaJSON(v any) ([]byte, error) {
	var b []byte
	switch v := v.(type) {
	case nil:
		return nil, nil
	case []byte:
		b = v
	case json.RawMessage:
		b = v
	case string:
		b = []byte(v)
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidSchema, err)
		}
	}
	if !json.Valid(b) {
		return nil, fmt.Errorf("%w: not a JSON document", ErrInvalidSchema)
	}
	return b, nil
}

// parseSchema compiles a schema document; errors match [ErrInvalidSchema].
func parseSchema(b []byte) (*schema, error) {
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidSchema, err)
	}
	s, err := compile(doc, "$")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidSchema, err)
	}
	return s, nil
}

func compile(doc any, at string) (*schema, error) {
	m, ok := doc.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: a schema is a JSON object, not %s", at, jsonType(doc))
	}
	s := &schema{}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if err := s.keyword(k, m[k], at); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// keyword compiles keyword k with value v into s.
func (s *schema) keyword(k string, v any, at string) error {
	var err error
	switch k {
	case "type":
		s.types, err = typeList(v)
	case "properties":
		err = s.compileProperties(v, at)
	case "required":
		s.required, err = stringList(v)
	case "enum":
		l, ok := v.([]any)
		if !ok {
			err = fmt.Errorf("is %s, not an array", jsonType(v))
		}
		s.enum, s.hasEnum = l, true
	case "minimum":
		s.min, err = number(v)
	case "maximum":
		s.max, err = number(v)
	case "minLength":
		s.minLen, err = count(v)
	case "maxLength":
		s.maxLen, err = count(v)
	case "items":
		s.items, err = compile(v, at+"[*]")
	default:
		if !slices.Contains(annotations, k) {
			err = fmt.Errorf("is not in the supported subset (type, properties, required, enum, minimum, maximum, minLength, maxLength, items)")
		}
	}
	if err != nil {
		return fmt.Errorf("%s: keyword %q: %w", at, k, err)
	}
	return nil
}

func (s *schema) compileProperties(v any, at string) error {
	props, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("is %s, not an object", jsonType(v))
	}
	s.properties = make(map[string]*schema, len(props))
	for name, p := range props {
		ps, err := compile(p, at+"."+name)
		if err != nil {
			return err
		}
		s.properties[name] = ps
	}
	return nil
}

func typeList(v any) ([]string, error) {
	names, err := stringList(v)
	if t, ok := v.(string); ok {
		names, err = []string{t}, nil
	}
	if err != nil {
		return nil, err
	}
	for _, t := range names {
		if !slices.Contains(schemaTypes, t) {
			return nil, fmt.Errorf("unknown type %q", t)
		}
	}
	return names, nil
}

func stringList(v any) ([]string, error) {
	l, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("is %s, not an array of strings", jsonType(v))
	}
	out := make([]string, len(l))
	for i, e := range l {
		if out[i], ok = e.(string); !ok {
			return nil, fmt.Errorf("element %d is %s, not a string", i, jsonType(e))
		}
	}
	return out, nil
}

func number(v any) (*float64, error) {
	f, ok := v.(float64)
	if !ok {
		return nil, fmt.Errorf("is %s, not a number", jsonType(v))
	}
	return &f, nil
}

func count(v any) (*int, error) {
	f, ok := v.(float64)
	if !ok || f < 0 || f != math.Trunc(f) || f > math.MaxInt32 {
		return nil, fmt.Errorf("is %v, not a non-negative integer", v)
	}
	n := int(f)
	return &n, nil
}

// validate appends to problems what of v, found at at, s refuses. v is a
// JSON form (what encoding/json decodes into an any).
func (s *schema) validate(v any, at string, problems []string) []string {
	if len(s.types) > 0 && !slices.ContainsFunc(s.types, func(t string) bool { return isType(v, t) }) {
		return append(problems, fmt.Sprintf("%s: is %s, want %s", at, jsonType(v), orList(s.types)))
	}
	if s.hasEnum && !slices.ContainsFunc(s.enum, func(e any) bool { return reflect.DeepEqual(e, v) }) {
		problems = append(problems, fmt.Sprintf("%s: %s is not one of the allowed values", at, brief(v)))
	}
	switch v := v.(type) {
	case float64:
		if s.min != nil && v < *s.min {
			problems = append(problems, fmt.Sprintf("%s: %v is below the minimum %v", at, v, *s.min))
		}
		if s.max != nil && v > *s.max {
			problems = append(problems, fmt.Sprintf("%s: %v is above the maximum %v", at, v, *s.max))
		}
	case string:
		n := utf8.RuneCountInString(v)
		if s.minLen != nil && n < *s.minLen {
			problems = append(problems, fmt.Sprintf("%s: %d characters, fewer than %d", at, n, *s.minLen))
		}
		if s.maxLen != nil && n > *s.maxLen {
			problems = append(problems, fmt.Sprintf("%s: %d characters, more than %d", at, n, *s.maxLen))
		}
	case map[string]any:
		for _, name := range s.required {
			if _, ok := v[name]; !ok {
				problems = append(problems, fmt.Sprintf("%s: required property %q is missing", at, name))
			}
		}
		for _, name := range slices.Sorted(maps.Keys(s.properties)) {
			if pv, ok := v[name]; ok {
				problems = s.properties[name].validate(pv, at+"."+name, problems)
			}
		}
	case []any:
		if s.items != nil {
			for i, e := range v {
				problems = s.items.validate(e, at+"["+strconv.Itoa(i)+"]", problems)
			}
		}
	}
	return problems
}

func isType(v any, t string) bool {
	switch t {
	case "integer":
		f, ok := v.(float64)
		return ok && f == math.Trunc(f)
	case "number":
		_, ok := v.(float64)
		return ok
	default:
		return jsonType(v) == t
	}
}

// jsonType names the JSON type of a JSON form.
func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	default:
		return fmt.Sprintf("%T", v)
	}
}

func orList(l []string) string {
	if len(l) == 1 {
		return l[0]
	}
	return fmt.Sprintf("one of %v", l)
}

// brief renders v for an error message, cut short.
func brief(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 40 {
		return string(b[:40]) + "…"
	}
	return string(b)
}
