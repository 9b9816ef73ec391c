package composer

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// A field path addresses values inside a JSON document:
//
//	customer.address.city   object keys, separated by '.'
//	items[].sku             '[]' after a key: every element of the array there
//	[].id                   a leading '[]': every element of a top-level array
//
// A key is one or more characters other than '.', '[', ']', '{', '}', and
// whitespace or control characters. A path with '[]' may address many values.
type fieldPath []pathSeg

type pathSeg struct {
	key  string // empty only for a leading "[]"
	each bool   // "[]" follows the key
}

func (p fieldPath) String() string {
	var b strings.Builder
	for i, s := range p {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(s.key)
		if s.each {
			b.WriteString("[]")
		}
	}
	return b.String()
}

// multi reports whether the path may address more than one value.
func (p fieldPath) multi() bool {
	for _, s := range p {
		if s.each {
			return true
		}
	}
	return false
}

const maxPathSegments = 64

func parseFieldPath(s string) (fieldPath, error) {
	if s == "" {
		return nil, errors.New("empty field path")
	}
	parts := strings.Split(s, ".")
	if len(parts) > maxPathSegments {
		return nil, fmt.Errorf("field path %q has more than %d segments", s, maxPathSegments)
	}
	p := make(fieldPath, 0, len(parts))
	for i, part := range parts {
		seg := pathSeg{key: part}
		if strings.HasSuffix(part, "[]") {
			seg.key, seg.each = strings.TrimSuffix(part, "[]"), true
		}
		if seg.key == "" && !(i == 0 && seg.each) {
			return nil, fmt.Errorf("field path %q: empty key", s)
		}
		if err := checkKey(seg.key); err != nil {
			return nil, fmt.Errorf("field path %q: %w", s, err)
		}
		p = append(p, seg)
	}
	return p, nil
}

// checkKey accepts a plain key: no path syntax, no whitespace or control characters.
func checkKey(k string) error {
	for _, r := range k {
		switch {
		case r == '.' || r == '[' || r == ']' || r == '{' || r == '}':
			return fmt.Errorf("key %q: %q is not allowed in a key", k, r)
		case r <= ' ' || r == 0x7f || r == 0xfffd:
			return fmt.Errorf("key %q: whitespace and control characters are not allowed", k)
		}
	}
	return nil
}

// get returns every value the path addresses in v, in document order. Missing
// keys and type mismatches address nothing.
func (p fieldPath) get(v any) []any {
	var out []any
	p.walk(v, func(x any) { out = append(out, x) })
	return out
}

// getOne returns the single value a path without '[]' addresses.
func (p fieldPath) getOne(v any) (any, bool) {
	for _, s := range p {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[s.key]; !ok {
			return nil, false
		}
	}
	return v, true
}

func (p fieldPath) walk(v any, fn func(any)) {
	if len(p) == 0 {
		fn(v)
		return
	}
	s := p[0]
	if s.key != "" {
		m, ok := v.(map[string]any)
		if !ok {
			return
		}
		if v, ok = m[s.key]; !ok {
			return
		}
	}
	if !s.each {
		p[1:].walk(v, fn)
		return
	}
	arr, ok := v.([]any)
	if !ok {
		return
	}
	for _, e := range arr {
		p[1:].walk(e, fn)
	}
}

// parents calls fn with every object that holds the last key of the path, and
// that key; it is how rename and drop reach fields inside arrays.
func (p fieldPath) parents(v any, fn func(m map[string]any, key string)) {
	last := p[len(p)-1]
	fieldPath(p[:len(p)-1]).walk(v, func(x any) {
		if m, ok := x.(map[string]any); ok {
			fn(m, last.key)
		}
	})
}

// scalarText renders a JSON scalar as text: strings as they are, numbers as
// their JSON text, booleans as true/false. Null, objects and arrays are not scalars.
func scalarText(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return x.String(), true
	case bool:
		if x {
			return "true", true
		}
		return "false", true
	case float64: // values built by code rather than decoded with UseNumber
		return strconv.FormatFloat(x, 'g', -1, 64), true
	}
	return "", false
}
