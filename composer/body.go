package composer

import (
	"encoding/json"
	"fmt"
	"sort"
)

// bodyTmpl is a JSON body template: a JSON value whose strings may hold references.
// A string that is exactly one reference becomes the referenced JSON value; any
// other string is rendered as text.
type bodyTmpl struct {
	lit   any       // a literal scalar (number, bool, nil) when no other field is set
	str   *template // a string template
	ref   *ref      // a string that is exactly one reference
	obj   []bodyField
	arr   []*bodyTmpl
	isObj bool
	isArr bool
}

type bodyField struct {
	key string
	val *bodyTmpl
}

const maxBodyDepth = 32

// bodyError is a problem of a body template at path, the key path below
// the body written as config paths are (".items[2].note"), so that
// validation names the body's own key.
type bodyError struct {
	path string
	err  error
}

func (e *bodyError) Error() string { return e.err.Error() }
func (e *bodyError) Unwrap() error { return e.err }

// inBody puts seg in front of err's path within the body.
func inBody(seg string, err error) error {
	if be, ok := err.(*bodyError); ok {
		be.path = seg + be.path
		return be
	}
	return &bodyError{path: seg, err: err}
}

func compileBody(v any, depth int) (*bodyTmpl, error) {
	if depth > maxBodyDepth {
		return nil, fmt.Errorf("nested deeper than %d", maxBodyDepth)
	}
	switch x := v.(type) {
	case string:
		t, err := parseTemplate(x)
		if err != nil {
			return nil, err
		}
		if r := t.single(); r != nil {
			return &bodyTmpl{ref: r}, nil
		}
		return &bodyTmpl{str: &t}, nil
	case map[string]any:
		b := &bodyTmpl{isObj: true}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			f, err := compileBody(x[k], depth+1)
			if err != nil {
				return nil, inBody("."+k, err)
			}
			b.obj = append(b.obj, bodyField{key: k, val: f})
		}
		return b, nil
	case []any:
		b := &bodyTmpl{isArr: true}
		for i, e := range x {
			f, err := compileBody(e, depth+1)
			if err != nil {
				return nil, inBody(fmt.Sprintf("[%d]", i), err)
			}
			b.arr = append(b.arr, f)
		}
		return b, nil
	case nil, bool, int, int64, uint64, float64, json.Number:
		return &bodyTmpl{lit: x}, nil
	case map[any]any:
		return nil, fmt.Errorf("object keys must be strings")
	}
	return nil, fmt.Errorf("unsupported value of type %T", v)
}

func (b *bodyTmpl) refs(fn func(*ref)) {
	switch {
	case b.ref != nil:
		fn(b.ref)
	case b.str != nil:
		for _, r := range b.str.refs() {
			fn(r)
		}
	case b.isObj:
		for _, f := range b.obj {
			f.val.refs(fn)
		}
	case b.isArr:
		for _, e := range b.arr {
			e.refs(fn)
		}
	}
}

func (b *bodyTmpl) render(resolve resolver, batchSep string) (any, error) {
	switch {
	case b.ref != nil:
		v, ok := resolve(b.ref)
		if !ok {
			return nil, &renderErr{ref: b.ref, msg: "no value", fromRequest: b.ref.fromRequest()}
		}
		if bv, isBatch := v.(batchValues); isBatch {
			return []any(bv), nil
		}
		return v, nil
	case b.str != nil:
		return b.str.render(escText, resolve, batchSep)
	case b.isObj:
		m := make(map[string]any, len(b.obj))
		for _, f := range b.obj {
			v, err := f.val.render(resolve, batchSep)
			if err != nil {
				return nil, err
			}
			m[f.key] = v
		}
		return m, nil
	case b.isArr:
		a := make([]any, 0, len(b.arr))
		for _, e := range b.arr {
			v, err := e.render(resolve, batchSep)
			if err != nil {
				return nil, err
			}
			a = append(a, v)
		}
		return a, nil
	}
	return b.lit, nil
}

// walkBodyStrings calls fn with every string in a body value.
func walkBodyStrings(v any, fn func(string)) {
	switch x := v.(type) {
	case string:
		fn(x)
	case map[string]any:
		for _, e := range x {
			walkBodyStrings(e, fn)
		}
	case []any:
		for _, e := range x {
			walkBodyStrings(e, fn)
		}
	}
}
