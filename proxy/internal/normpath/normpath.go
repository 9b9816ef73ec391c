package normpath

import (
	"net/url"
	"strings"
)

// Normalize returns the normalized form of the path of a URL whose Path
// is path and RawPath is rawPath (as net/url sets them), and whether it
// differs. The returned rawPath is "" when the normalized path's
// escaping is Path's default one, as net/url would set it.
func Normalize(path, rawPath string, mergeSlashes bool) (string, string, bool) {
	if rawPath == "" || (&url.URL{Path: path, RawPath: rawPath}).EscapedPath() != rawPath {
		// (A RawPath that is not an escaping of Path is ignored, as
		// URL.EscapedPath ignores it.) Path's escaping is the default one, so none of its '/' and '.'
		// came from an escape ("%2F" or "%2E" would have set RawPath):
		// its segments are the request's.
		if path == "" || path[0] != '/' || !needsClean(path, mergeSlashes) {
			return path, rawPath, false
		}
		return clean(path, mergeSlashes), "", true
	}
	if rawPath[0] != '/' {
		return path, rawPath, false
	}
	esc := clean(decodeUnreserved(rawPath), mergeSlashes)
	if esc == rawPath {
		return path, rawPath, false
	}
	dec, err := url.PathUnescape(esc)
	if err != nil {
		// net/url sets RawPath only to a valid escaping, and decoding
		// escapes and removing segments keeps it valid.
		return path, rawPath, false
	}
	if (&url.URL{Path: dec}).EscapedPath() == esc {
		esc = ""
	}
	return dec, esc, dec != path || esc != rawPath
}

// needsClean reports whether p has a dot segment ("." or ".."), or a run
// of slashes when they are merged.
func needsClean(p string, mergeSlashes bool) bool {
	for i := 0; i < len(p); i++ {
		if p[i] != '/' || i+1 == len(p) {
			continue
		}
		rest := p[i+1:]
		if mergeSlashes && rest[0] == '/' {
			return true
		}
		if rest[0] != '.' {
			continue
		}
		if len(rest) == 1 || rest[1] == '/' {
			return true // "."
		}
		if rest[1] == '.' && (len(rest) == 2 || rest[2] == '/') {
			return true // ".."
		}
	}
	return false
}

// clean removes p's dot segments (RFC 3986 §5.2.4) and, when
// mergeSlashes, its empty segments but a last one. p begins with '/'.
func clean(p string, mergeSlashes bool) string {
	segs := strings.Split(p[1:], "/")
	out := segs[:0]
	for i, s := range segs {
		last := i == len(segs)-1
		switch {
		case s == ".":
			if last {
				out = append(out, "") // "/a/." is "/a/"
			}
		case s == "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "") // "/a/b/.." is "/a/"
			}
		case s == "" && mergeSlashes && !last:
		default:
			out = append(out, s)
		}
	}
	return "/" + strings.Join(out, "/")
}

// decodeUnreserved decodes the escapes of unreserved characters in s
// (ALPHA, DIGIT, '-', '.', '_', '~') and upper-cases the hex digits of
// the others. A '%' not followed by two hex digits is left as it is.
func decodeUnreserved(s string) string {
	i := strings.IndexByte(s, '%')
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	b.WriteString(s[:i])
	for ; i < len(s); i++ {
		c := s[i]
		if c != '%' || i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			b.WriteByte(c)
			continue
		}
		v := unhex(s[i+1])<<4 | unhex(s[i+2])
		if unreserved(v) {
			b.WriteByte(v)
		} else {
			b.WriteByte('%')
			b.WriteByte(upper(s[i+1]))
			b.WriteByte(upper(s[i+2]))
		}
		i += 2
	}
	return b.String()
}

func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

func upper(c byte) byte {
	if 'a' <= c && c <= 'f' {
		return c - 'a' + 'A'
	}
	return c
}
