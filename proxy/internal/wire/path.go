package wire

import "net/url"

// ParsePlainPath sets *u to what url.ParseRequestURI(path) returns when
// path is an origin-form target of plain characters (none that net/url
// would unescape or escape, so that it sets no RawPath), split at its
// first '?' without the allocations of net/url; it reports false,
// leaving *u alone, for anything else. The HTTP/1.1 server uses it for a
// request target, the HTTP/2 server for :path.
func ParsePlainPath(path string, u *url.URL) bool {
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
