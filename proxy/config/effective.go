package config

import (
	"bytes"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"
)

// EffectiveJSON renders v (usually a *Config, as returned by Load or
// WithDefaults) as indented JSON for people: struct fields under their json
// names, in declaration order; map keys sorted; every time.Duration as a
// string such as "1.5s". It works on any struct, so config types of other
// packages that use time.Duration render the same way; values that implement
// json.Marshaler or encoding.TextMarshaler render as those say.
func EffectiveJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	if err := render(&buf, reflect.ValueOf(v), 0); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, buf.Bytes(), "", "  "); err != nil {
		return nil, fmt.Errorf("render config: %w", err)
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// Hash is a short, stable fingerprint of the effective config: equal configs
// have equal hashes. It is what /config reports next to the generation, and
// what a reload compares to tell a real change from a rewrite.
func (c *Config) Hash() string {
	b, err := EffectiveJSON(c)
	if err != nil {
		// Config holds only types render handles; an error here is a bug
		// in a newly added field type. A hash that never matches a real one
		// keeps reloads working.
		return "unrenderable"
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

var (
	durationType       = reflect.TypeOf(time.Duration(0))
	jsonMarshalerType  = reflect.TypeOf((*json.Marshaler)(nil)).Elem()
	textMarshalerType  = reflect.TypeOf((*encoding.TextMarshaler)(nil)).Elem()
	maxRenderDepth     = 64
	errRenderTooDeeply = fmt.Errorf("render config: nested more than %d levels", maxRenderDepth)
)

func render(buf *bytes.Buffer, v reflect.Value, depth int) error {
	if depth > maxRenderDepth {
		return errRenderTooDeeply
	}
	if !v.IsValid() {
		buf.WriteString("null")
		return nil
	}
	t := v.Type()
	if t == durationType {
		return writeJSON(buf, time.Duration(v.Int()).String())
	}
	if (t.Implements(jsonMarshalerType) || t.Implements(textMarshalerType)) && !(v.Kind() == reflect.Pointer && v.IsNil()) {
		return writeJSON(buf, v.Interface())
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			buf.WriteString("null")
			return nil
		}
		return render(buf, v.Elem(), depth+1)
	case reflect.Struct:
		buf.WriteByte('{')
		first := true
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" && opts == "" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			fv := v.Field(i)
			if strings.Contains(","+opts+",", ",omitempty,") && fv.IsZero() {
				continue
			}
			if !first {
				buf.WriteByte(',')
			}
			first = false
			if err := writeJSON(buf, name); err != nil {
				return err
			}
			buf.WriteByte(':')
			if err := render(buf, fv, depth+1); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
		return nil
	case reflect.Map:
		if v.IsNil() {
			buf.WriteString("null")
			return nil
		}
		type kv struct {
			k string
			v reflect.Value
		}
		var items []kv
		iter := v.MapRange()
		for iter.Next() {
			items = append(items, kv{fmt.Sprint(iter.Key().Interface()), iter.Value()})
		}
		sort.Slice(items, func(i, j int) bool { return items[i].k < items[j].k })
		buf.WriteByte('{')
		for i, it := range items {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := writeJSON(buf, it.k); err != nil {
				return err
			}
			buf.WriteByte(':')
			if err := render(buf, it.v, depth+1); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
		return nil
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.IsNil() {
			buf.WriteString("null")
			return nil
		}
		if t.Elem().Kind() == reflect.Uint8 {
			return writeJSON(buf, v.Interface())
		}
		buf.WriteByte('[')
		for i := 0; i < v.Len(); i++ {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := render(buf, v.Index(i), depth+1); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
		return nil
	default:
		return writeJSON(buf, v.Interface())
	}
}

func writeJSON(buf *bytes.Buffer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("render config: %w", err)
	}
	buf.Write(b)
	return nil
}
