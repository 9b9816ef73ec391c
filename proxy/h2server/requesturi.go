package h2server

import "net/url"

// parseRequestURI sets *u to what url.ParseRequestURI(path) returns, or
// returns its error. An origin-form path of plain characters (none that
// net/url would unescape or escape, so that it sets no RawPath) is split
// at its first '?' here, without the allocation of a URL; others go
// through net/url. The caller has checked that path is not empty.
func parseRequestURI(path string, u *url.URL) error {
	if parsePlainPath(path, u) {
		return nil
	}
	v, err := url.ParseRequestURI(path)
	if err != nil {
		return err
	}
	*u = *v
	return nil
}

// parsePlainPath is parseRequestURI's fast path; it reports false,
// leaving *u alone, for what net/url must parse.
func parsePlainPath(path string, u *url.URL) bool {
	if len(path) == 0 || path[0] != '/' {
		return false
	}
	q := len(path)
	for i := 0; i < len(path); i++ {
		c := path[i]
		if c == '?' {
			q = i
			break
		}
		if !plainPathByte[c] {
			return false
		}
	}
	for i := q + 1; i < len(path); i++ {
		if c := path[i]; c < ' ' || c == 0x7f {
			// net/url rejects control characters anywhere.
			return false
		}
	}
	*u = url.URL{Path: path[:q]}
	switch {
	case q == len(path):
	case q == len(path)-1:
		// A lone '?' at the end: an empty query that was asked for.
		u.ForceQuery = true
	default:
		u.RawQuery = path[q+1:]
	}
	return true
}

// plainPathByte holds the bytes that net/url keeps as they are in a
// path, both ways: not '%' (which it unescapes), not a control or
// non-ASCII byte, and none that URL.EscapedPath would escape (a path
// with such a byte gets a RawPath). It is taken from net/url itself.
var plainPathByte = func() (t [256]bool) {
	for c := 0x21; c < 0x7f; c++ {
		p := "/" + string(rune(c))
		if c != '%' && c != '?' && (&url.URL{Path: p}).EscapedPath() == p {
			t[c] = true
		}
	}
	return t
}()
