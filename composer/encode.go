package composer

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"unicode/utf8"
)

var errCapExceeded = errors.New("size cap exceeded")

// encodeCapped writes v as JSON (objects with sorted keys, HTML not escaped) and
// fails with errCapExceeded as soon as the output would pass max bytes. Unlike
// json.Encoder, which marshals the whole value before writing, it stops early:
// a join that multiplies data cannot make the process buffer more than the cap.
func encodeCapped(v any, max int64) ([]byte, error) {
	e := &cappedEncoder{max: max}
	if err := e.value(v, 0); err != nil {
		return nil, err
	}
	e.buf.WriteByte('\n')
	return e.buf.Bytes(), nil
}

type cappedEncoder struct {
	buf bytes.Buffer
	max int64
}

const maxEncodeDepth = 10000

func (e *cappedEncoder) check() error {
	if int64(e.buf.Len()) > e.max {
		return errCapExceeded
	}
	return nil
}

func (e *cappedEncoder) value(v any, depth int) error {
	if depth > maxEncodeDepth {
		return errors.New("value nested too deeply")
	}
	switch x := v.(type) {
	case nil:
		e.buf.WriteString("null")
	case bool:
		e.buf.WriteString(strconv.FormatBool(x))
	case json.Number:
		e.buf.WriteString(x.String())
	case string:
		writeJSONString(&e.buf, x)
	case map[string]any:
		e.buf.WriteByte('{')
		for i, k := range sortedAnyKeys(x) {
			if i > 0 {
				e.buf.WriteByte(',')
			}
			writeJSONString(&e.buf, k)
			e.buf.WriteByte(':')
			if err := e.value(x[k], depth+1); err != nil {
				return err
			}
		}
		e.buf.WriteByte('}')
	case []any:
		e.buf.WriteByte('[')
		for i, el := range x {
			if i > 0 {
				e.buf.WriteByte(',')
			}
			if err := e.value(el, depth+1); err != nil {
				return err
			}
		}
		e.buf.WriteByte(']')
	default: // values built by this package: reports, float64
		b, err := json.Marshal(x)
		if err != nil {
			return err
		}
		e.buf.Write(b)
	}
	return e.check()
}

const hexDigits = "0123456789abcdef"

// writeJSONString quotes s per RFC 8259: '"', '\\' and control characters are
// escaped, invalid UTF-8 becomes U+FFFD; like encoding/json, U+2028 and U+2029
// are escaped so the output is also safe inside JavaScript.
func writeJSONString(b *bytes.Buffer, s string) {
	b.WriteByte('"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b.WriteString(s[start:i])
			switch c {
			case '"', '\\':
				b.WriteByte('\\')
				b.WriteByte(c)
			case '\n':
				b.WriteString(`\n`)
			case '\r':
				b.WriteString(`\r`)
			case '\t':
				b.WriteString(`\t`)
			case '\b':
				b.WriteString(`\b`)
			case '\f':
				b.WriteString(`\f`)
			default:
				b.WriteString(`\u00`)
				b.WriteByte(hexDigits[c>>4])
				b.WriteByte(hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteString(s[start:i])
			b.WriteString(`\ufffd`)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b.WriteString(s[start:i])
			b.WriteString(`\u202`)
			b.WriteByte(hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b.WriteString(s[start:])
	b.WriteByte('"')
}
