package normpath

import (
	"net/url"
	"strings"
)

// HasEscapedSlash reports whether the path of a URL whose Path is path
// and RawPath is rawPath (as net/url sets them) came with an escaped
// slash or backslash: "%2F", "%2f", "%5C" or "%5c", the sequences
// Envoy's path_with_escaped_slashes_action looks for. A '\' sent bare
// counts too: net/url sends it on as "%5C" (RFC 3986 has no place for it
// in a path), so the upstream reads it as one.
//
// It reads path once, and rawPath when set, and allocates nothing. A
// path with no '%' and no '\' has an empty rawPath (net/url sets RawPath
// only when the request's escaping differs from Path's default one), so
// for it the check is one IndexByte.
func HasEscapedSlash(path, rawPath string) bool {
	if strings.IndexByte(path, '\\') >= 0 {
		// From "%5C" (net/url then sets no RawPath: it is Path's
		// default escaping) or a bare '\'.
		return true
	}
	// Without RawPath, Path's escaping is the default one, which never
	// escapes '/': no '/' in Path came from "%2F".
	return rawPath != "" && indexEscape(rawPath, true) >= 0
}

// UnescapeSlashes returns the path of a URL whose Path is path and
// RawPath is rawPath with each escaped slash ("%2F", "%2f") made a
// segment separator, as Envoy's UNESCAPE_AND_FORWARD does, and whether
// there was one. Path, decoded, is the same: only its escaping changes.
// The returned rawPath is "" when the result's escaping is Path's
// default one, as net/url would set it.
//
// Envoy also turns "%5C" into '\'. Here Path holds '\' already, and it
// is sent on as "%5C" whatever rawPath says, because net/url escapes
// every '\' it writes (RFC 3986 has no place for a bare one in a path);
// so escaped backslashes stay as they came, and, as in Normalize, '\'
// separates no segments.
func UnescapeSlashes(path, rawPath string) (string, string, bool) {
	i := indexEscape(rawPath, false)
	if i < 0 {
		return path, rawPath, false
	}
	var b strings.Builder
	b.Grow(len(rawPath))
	for {
		b.WriteString(rawPath[:i])
		b.WriteByte('/')
		rawPath = rawPath[i+3:]
		if i = indexEscape(rawPath, false); i < 0 {
			break
		}
	}
	b.WriteString(rawPath)
	raw := b.String()
	if (&url.URL{Path: path}).EscapedPath() == raw {
		raw = ""
	}
	return path, raw, true
}

// indexEscape returns the index of the first "%2F" or "%2f" in s, or,
// with backslash, of the first of those, "%5C" or "%5c"; else -1.
func indexEscape(s string, backslash bool) int {
	for i := 0; ; i++ {
		j := strings.IndexByte(s[i:], '%')
		if j < 0 {
			return -1
		}
		i += j
		if i+2 >= len(s) {
			return -1
		}
		switch s[i+1] {
		case '2':
			if c := s[i+2]; c == 'F' || c == 'f' {
				return i
			}
		case '5':
			if c := s[i+2]; backslash && (c == 'C' || c == 'c') {
				return i
			}
		}
	}
}
