package wire

import (
	"net/textproto"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// TrimOWS drops the optional whitespace (spaces and tabs) around a field
// value (RFC 9110 §5.5).
func TrimOWS(v string) string {
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	return v
}

// IsToken reports whether s is an RFC 9110 token (§5.6.2): a method, a
// field name, a protocol name.
func IsToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !httpguts.IsTokenRune(rune(s[i])) {
			return false
		}
	}
	return true
}

// NextLine splits s at its first LF, dropping it and a CR before it (RFC
// 9112 §2.2 lets a recipient take a bare LF as a line end). A last line
// without LF is returned as it is.
func NextLine(s string) (line, rest string) {
	i := strings.IndexByte(s, '\n')
	if i < 0 {
		return s, ""
	}
	line, rest = s[:i], s[i+1:]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	return line, rest
}

// ScanFieldName makes one pass over a field line's name: colon is the
// index of the colon that ends it (-1: none); token reports whether
// every byte before it is a token byte, and spacesOnly, when it is not,
// whether the bytes that are not are all spaces (whitespace before the
// colon, which RFC 9112 §5.1 refuses, is told apart from other garbage);
// canonical whether the name is in canonical form already, so that
// Canonicalize is called only when needed.
func ScanFieldName(line string) (colon int, token, spacesOnly, canonical bool) {
	colon, token, spacesOnly, canonical = -1, true, true, true
	upper := true
	for j := 0; j < len(line); j++ {
		c := line[j]
		if c == ':' {
			colon = j
			break
		}
		if !httpguts.IsTokenRune(rune(c)) {
			token = false
			if c != ' ' {
				spacesOnly = false
			}
		}
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			canonical = false
		}
		upper = c == '-'
	}
	return colon, token, spacesOnly, canonical
}

// CanonicalKey is textproto.CanonicalMIMEHeaderKey for a field name that
// is a valid token, without allocating when k is canonical already or a
// common field name.
func CanonicalKey(k string) string {
	upper := true
	for i := 0; i < len(k); i++ {
		c := k[i]
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			return Canonicalize(k)
		}
		upper = c == '-'
	}
	return k
}

// Canonicalize is CanonicalKey for a token known not to be canonical:
// it allocates only for a name that is not a common one.
func Canonicalize(k string) string {
	var buf [64]byte
	if len(k) > len(buf) {
		return textproto.CanonicalMIMEHeaderKey(k)
	}
	b := buf[:len(k)]
	upper := true
	for i := 0; i < len(k); i++ {
		c := k[i]
		if upper && 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		} else if !upper && 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b[i] = c
		upper = c == '-'
	}
	return commonKey(b)
}

// commonKey returns the canonical name b holds, interned when it is the
// name of a frequent request or response field (for peers that send
// them in lower case, as HTTP/2-minded ones do). A switch on string(b)
// neither allocates nor hashes: it is a few times faster than a map
// lookup.
func commonKey(b []byte) string {
	switch string(b) {
	case "Accept":
		return "Accept"
	case "Accept-Encoding":
		return "Accept-Encoding"
	case "Accept-Language":
		return "Accept-Language"
	case "Accept-Ranges":
		return "Accept-Ranges"
	case "Access-Control-Allow-Origin":
		return "Access-Control-Allow-Origin"
	case "Age":
		return "Age"
	case "Authorization":
		return "Authorization"
	case "Cache-Control":
		return "Cache-Control"
	case "Connection":
		return "Connection"
	case "Content-Disposition":
		return "Content-Disposition"
	case "Content-Encoding":
		return "Content-Encoding"
	case "Content-Language":
		return "Content-Language"
	case "Content-Length":
		return "Content-Length"
	case "Content-Range":
		return "Content-Range"
	case "Content-Type":
		return "Content-Type"
	case "Cookie":
		return "Cookie"
	case "Date":
		return "Date"
	case "Etag":
		return "Etag"
	case "Expect":
		return "Expect"
	case "Expires":
		return "Expires"
	case "Grpc-Message":
		return "Grpc-Message"
	case "Grpc-Status":
		return "Grpc-Status"
	case "Host":
		return "Host"
	case "If-Modified-Since":
		return "If-Modified-Since"
	case "If-None-Match":
		return "If-None-Match"
	case "Keep-Alive":
		return "Keep-Alive"
	case "Last-Modified":
		return "Last-Modified"
	case "Link":
		return "Link"
	case "Location":
		return "Location"
	case "Origin":
		return "Origin"
	case "Referer":
		return "Referer"
	case "Server":
		return "Server"
	case "Set-Cookie":
		return "Set-Cookie"
	case "Strict-Transport-Security":
		return "Strict-Transport-Security"
	case "Te":
		return "Te"
	case "Traceparent":
		return "Traceparent"
	case "Tracestate":
		return "Tracestate"
	case "Trailer":
		return "Trailer"
	case "Transfer-Encoding":
		return "Transfer-Encoding"
	case "Upgrade":
		return "Upgrade"
	case "User-Agent":
		return "User-Agent"
	case "Vary":
		return "Vary"
	case "Via":
		return "Via"
	case "Www-Authenticate":
		return "Www-Authenticate"
	case "X-Content-Type-Options":
		return "X-Content-Type-Options"
	case "X-Forwarded-For":
		return "X-Forwarded-For"
	case "X-Forwarded-Proto":
		return "X-Forwarded-Proto"
	case "X-Request-Id":
		return "X-Request-Id"
	}
	return string(b)
}
