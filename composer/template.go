package composer

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// Templates are text with references in braces:
//
//	{id}                 path parameter "id" of the incoming request (r.PathValue)
//	{query.page}         first value of query parameter "page" of the incoming request
//	{header.X-Tenant}    header of the incoming request
//	{order.customerId}   field path inside the JSON result of the call named "order"
//	{each}, {each.sku}   the current element of a for_each fan-out (or the batch)
//	{body}, {body.qty}   the incoming request's JSON body, or a field of it
//
// "{{" and "}}" stand for literal braces. Field paths in references address one
// value (no "[]"); the value must be a string, number or boolean.
type template struct {
	raw   string
	parts []tmplPart
}

type tmplPart struct {
	lit string
	ref *ref // nil for a literal
}

type refKind uint8

const (
	refPathParam refKind = iota
	refQuery
	refHeader
	refCall
	refEach
	refBody
)

type ref struct {
	raw  string // as written, with braces
	kind refKind
	name string    // path parameter, query parameter, header or call name
	path fieldPath // within the call result or the fan-out element; nil for the whole value
}

// fromRequest reports whether the referenced value comes from the incoming request.
func (r *ref) fromRequest() bool {
	return r.kind == refPathParam || r.kind == refQuery || r.kind == refHeader || r.kind == refBody
}

// reserved names cannot be call names: they are reference prefixes.
var reserved = map[string]bool{"query": true, "header": true, "path": true, "each": true, "body": true}

const maxTemplateLen = 8 << 10

func parseTemplate(s string) (template, error) {
	if len(s) > maxTemplateLen {
		return template{}, fmt.Errorf("template longer than %d bytes", maxTemplateLen)
	}
	t := template{raw: s}
	var lit strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '{' && i+1 < len(s) && s[i+1] == '{':
			lit.WriteByte('{')
			i += 2
		case c == '}' && i+1 < len(s) && s[i+1] == '}':
			lit.WriteByte('}')
			i += 2
		case c == '}':
			return template{}, fmt.Errorf("unmatched '}' at offset %d (write '}}' for a literal brace)", i)
		case c == '{':
			end := strings.IndexByte(s[i+1:], '}')
			if end < 0 {
				return template{}, fmt.Errorf("unclosed '{' at offset %d (write '{{' for a literal brace)", i)
			}
			r, err := parseRef(s[i : i+end+2])
			if err != nil {
				return template{}, err
			}
			if lit.Len() > 0 {
				t.parts = append(t.parts, tmplPart{lit: lit.String()})
				lit.Reset()
			}
			t.parts = append(t.parts, tmplPart{ref: r})
			i += end + 2
		default:
			lit.WriteByte(c)
			i++
		}
	}
	if lit.Len() > 0 {
		t.parts = append(t.parts, tmplPart{lit: lit.String()})
	}
	return t, nil
}

// parseRef parses "{...}" including its braces.
func parseRef(raw string) (*ref, error) {
	body := raw[1 : len(raw)-1]
	if body == "" {
		return nil, errors.New("empty reference {}")
	}
	if strings.ContainsRune(body, '{') {
		return nil, fmt.Errorf("bad reference %q: nested '{'", raw)
	}
	r := &ref{raw: raw}
	head, rest, dotted := strings.Cut(body, ".")
	switch {
	case !dotted && head == "each":
		r.kind = refEach
		return r, nil
	case !dotted && head == "body":
		r.kind = refBody
		return r, nil
	case !dotted:
		r.kind, r.name = refPathParam, head
		if !validName(head) {
			return nil, fmt.Errorf("bad reference %q: %q is not a valid path parameter name", raw, head)
		}
		return r, nil
	case head == "query" || head == "header":
		r.kind, r.name = refQuery, rest
		if head == "header" {
			r.kind = refHeader
		}
		if rest == "" || strings.ContainsAny(rest, " \t\r\n") {
			return nil, fmt.Errorf("bad reference %q: missing or invalid %s name", raw, head)
		}
		return r, nil
	case head == "path":
		return nil, fmt.Errorf("bad reference %q: write a path parameter as {name}", raw)
	}
	p, err := parseFieldPath(rest)
	if err != nil {
		return nil, fmt.Errorf("bad reference %q: %w", raw, err)
	}
	if p.multi() {
		return nil, fmt.Errorf("bad reference %q: a reference addresses one value; '[]' belongs in for_each", raw)
	}
	r.path = p
	switch head {
	case "each":
		r.kind = refEach
		return r, nil
	case "body":
		r.kind = refBody
		return r, nil
	}
	if !validName(head) {
		return nil, fmt.Errorf("bad reference %q: %q is not a valid call name", raw, head)
	}
	r.kind, r.name = refCall, head
	return r, nil
}

// validName: a letter, then letters, digits, '_' or '-'.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// escaping contexts for rendered values.
type escaping uint8

const (
	escPath   escaping = iota // one path segment
	escQuery                  // a query value
	escHeader                 // a header value
	escText                   // a JSON string in a body (encoded later)
)

// renderErr is a failure to substitute a value; it fails the call with
// ReasonInvalidValue.
type renderErr struct {
	ref         *ref
	msg         string
	fromRequest bool
}

func (e *renderErr) Error() string { return fmt.Sprintf("reference %s: %s", e.ref.raw, e.msg) }

// resolver looks up the value of a reference for one request (and fan-out element).
type resolver func(r *ref) (any, bool)

func (t template) render(esc escaping, resolve resolver, batchSep string) (string, error) {
	var b strings.Builder
	for _, p := range t.parts {
		if p.ref == nil {
			b.WriteString(p.lit)
			continue
		}
		v, ok := resolve(p.ref)
		if !ok {
			return "", &renderErr{ref: p.ref, msg: "no value", fromRequest: p.ref.fromRequest()}
		}
		if batch, isBatch := v.(batchValues); isBatch {
			for i, e := range batch {
				if i > 0 {
					b.WriteString(batchSep)
				}
				s, err := escapeValue(p.ref, e, esc)
				if err != nil {
					return "", err
				}
				b.WriteString(s)
			}
			continue
		}
		s, err := escapeValue(p.ref, v, esc)
		if err != nil {
			return "", err
		}
		b.WriteString(s)
	}
	return b.String(), nil
}

// batchValues is the value of {each} in a batched fan-out: rendered as the
// elements, each escaped, joined by the batch separator.
type batchValues []any

func escapeValue(r *ref, v any, esc escaping) (string, error) {
	s, ok := scalarText(v)
	if !ok {
		return "", &renderErr{ref: r, msg: "value is not a string, number or boolean", fromRequest: r.fromRequest()}
	}
	switch esc {
	case escPath:
		// One segment, whatever the value holds: url.PathEscape encodes '/', '?',
		// '%', ';' and non-ASCII; an empty, "." or ".." segment would change which
		// resource the path names (RFC 3986 section 5.2.4 removes dot segments).
		if s == "" || s == "." || s == ".." {
			return "", &renderErr{ref: r, msg: fmt.Sprintf("%q cannot be a path segment", s), fromRequest: r.fromRequest()}
		}
		return url.PathEscape(s), nil
	case escQuery:
		return url.QueryEscape(s), nil
	case escHeader:
		// CR, LF and NUL would split or cut the field; any other control
		// character but HTAB makes it one an HTTP/2 upstream refuses
		// (RFC 9110 §5.5).
		if !httpguts.ValidHeaderFieldValue(s) {
			return "", &renderErr{ref: r, msg: "value contains a control character", fromRequest: r.fromRequest()}
		}
	}
	return s, nil
}

// refs lists the template's references.
func (t template) refs() []*ref {
	var out []*ref
	for _, p := range t.parts {
		if p.ref != nil {
			out = append(out, p.ref)
		}
	}
	return out
}

// single returns the reference when the template is exactly one reference.
func (t template) single() *ref {
	if len(t.parts) == 1 {
		return t.parts[0].ref
	}
	return nil
}
