package config

import (
	"fmt"
	"github.com/outrigger-mesh/outrigger/breaker"
	"github.com/outrigger-mesh/outrigger/composer"
	"sort"
	"strconv"
	"strings"
)

// FieldError is one problem in a config: where it is and what is wrong.
type FieldError struct {
	// Source is the file name (or what the caller passed to Parse). Empty
	// for a config that was not read from a file.
	Source string
	// Line is the 1-based line of the key in Source; 0 when unknown.
	Line int
	// Path is the key path, e.g. "clusters.payments.endpoints[1]". Empty for
	// a problem with the document as a whole (a YAML syntax error).
	Path string
	// Msg says what is wrong, in lower case, without the path.
	Msg string
}

// Error renders "FILE:LINE: PATH: MESSAGE", leaving out the parts that are
// unknown: "outrigger.yaml:12: clusters.payments.endpoints[1]: "10.0.0.5" has
// no port".
func (e *FieldError) Error() string {
	var b strings.Builder
	switch {
	case e.Source != "" && e.Line > 0:
		b.WriteString(e.Source + ":" + strconv.Itoa(e.Line) + ": ")
	case e.Source != "":
		b.WriteString(e.Source + ": ")
	case e.Line > 0:
		b.WriteString("line " + strconv.Itoa(e.Line) + ": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in a config. Parse, Load and Validate return
// it (as error) when there is at least one problem; use errors.As to get it.
type Errors []*FieldError

// Error renders one FieldError per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap exposes each FieldError to errors.Is and errors.As.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// sortByLine orders problems as they appear in the file; problems without a
// line keep their relative order, after the others.
func (es Errors) sortByLine() {
	sort.SliceStable(es, func(i, j int) bool {
		li, lj := es[i].Line, es[j].Line
		if li == 0 || lj == 0 {
			return li != 0 && lj == 0
		}
		return li < lj
	})
}

// Key paths. A map key that is not a plain word is quoted so that the path
// stays unambiguous: clusters["payments.v2"].endpoints[0].

func keyPath(parent, key string) string {
	if !plainKey(key) {
		return parent + "[" + strconv.Quote(key) + "]"
	}
	if parent == "" {
		return key
	}
	return parent + "." + key
}

func indexPath(parent string, i int) string {
	return parent + "[" + strconv.Itoa(i) + "]"
}

func plainKey(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-', r == '|':
		default:
			return false
		}
	}
	return true
}

// problems collects FieldErrors during validation.
type problems struct {
	errs Errors
}

func (p *problems) add(path, msg string) {
	p.errs = append(p.errs, &FieldError{Path: path, Msg: msg})
}

func (p *problems) addf(path, format string, args ...any) {
	p.add(path, fmt.Sprintf(format, args...))
}

// nested adds the problems that another package's Validate reported for the
// section at prefix. Those errors name paths relative to the section, either
// as a Path field or as a "path: message" text; joined errors
// (errors.Join, or a slice type with Unwrap) are taken apart.
func (p *problems) nested(prefix string, err error) {
	if err == nil {
		return
	}
	switch e := err.(type) {
	case interface{ Unwrap() []error }:
		for _, inner := range e.Unwrap() {
			p.nested(prefix, inner)
		}
		return
	case breaker.FieldErrors:
		for _, fe := range e {
			p.add(joinKeyPath(prefix, fe.Path), fe.Msg)
		}
		return
	case breaker.FieldError:
		p.add(joinKeyPath(prefix, e.Path), e.Msg)
		return
	case *breaker.FieldError:
		p.add(joinKeyPath(prefix, e.Path), e.Msg)
		return
	case *composer.SpecError:
		p.add(joinKeyPath(prefix, e.Path), e.Msg)
		return
	}
	msg := err.Error()
	if path, rest, ok := strings.Cut(msg, ": "); ok && path != "" && !strings.ContainsAny(path, " \t\n") {
		p.add(joinKeyPath(prefix, path), rest)
		return
	}
	p.add(prefix, msg)
}

// joinKeyPath appends a relative key path ("a.b", "[2].c") to prefix.
func joinKeyPath(prefix, rel string) string {
	switch {
	case rel == "":
		return prefix
	case prefix == "":
		return rel
	case strings.HasPrefix(rel, "["):
		return prefix + rel
	}
	return prefix + "." + rel
}

func (p *problems) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	return p.errs
}
