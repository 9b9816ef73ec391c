package breaker

import "strings"

// FieldError is one problem found by a Validate method. Path is the key path
// relative to the struct that was validated, in the YAML spelling
// ("failure_rate.threshold"); Msg says what is wrong.
type FieldError struct {
	Path string
	Msg  string
}

func (e FieldError) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

// FieldErrors is the error every Validate method returns when it finds
// problems: all of them, in field order. A config loader reports them under
// its own prefix with WithPrefix.
type FieldErrors []FieldError

func (es FieldErrors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// WithPrefix returns a copy of es whose paths start with prefix and a dot,
// e.g. WithPrefix("clusters.payments.circuit_breaker").
func (es FieldErrors) WithPrefix(prefix string) FieldErrors {
	if prefix == "" {
		return append(FieldErrors(nil), es...)
	}
	out := make(FieldErrors, len(es))
	for i, e := range es {
		out[i] = FieldError{Path: joinPath(prefix, e.Path), Msg: e.Msg}
	}
	return out
}

// errorList collects FieldErrors while a Validate method walks its struct.
type errorList struct {
	errs FieldErrors
}

func (l *errorList) add(path, msg string) {
	l.errs = append(l.errs, FieldError{Path: path, Msg: msg})
}

// nest adds the errors of a nested struct's Validate under path.
func (l *errorList) nest(path string, err error) {
	if err == nil {
		return
	}
	if fe, ok := err.(FieldErrors); ok {
		l.errs = append(l.errs, fe.WithPrefix(path)...)
		return
	}
	l.add(path, err.Error())
}

func (l *errorList) err() error {
	if len(l.errs) == 0 {
		return nil
	}
	return l.errs
}

func joinPath(prefix, path string) string {
	switch {
	case prefix == "":
		return path
	case path == "":
		return prefix
	default:
		return prefix + "." + path
	}
}
