package wire

import (
	"strings"

	"golang.org/x/net/http/httpguts"
)

// ValidAuthority reports whether s may be a request's authority: a Host
// field's value, an HTTP/2 :authority or the authority of a request
// target, without userinfo. That is uri-host [":" port] (RFC 9110 §7.2):
// a bracketed IP literal or a name without a colon (RFC 3986 §3.2.2),
// and a port of digits only, maybe none (§3.2.3). Whatever else the
// field holds must be bytes a Host field may (httpguts.ValidHostHeader).
// A second colon outside brackets is refused: "a.example:80:80" is read
// as host a.example by servers that cut at the first colon and as
// something else by the proxy's router.
func ValidAuthority(s string) bool {
	if !httpguts.ValidHostHeader(s) {
		return false
	}
	port := ""
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return false
		}
		rest := s[end+1:]
		if rest != "" {
			if rest[0] != ':' {
				return false
			}
			port = rest[1:]
		}
	} else if i := strings.IndexByte(s, ':'); i >= 0 {
		port = s[i+1:]
	}
	for i := 0; i < len(port); i++ {
		if port[i] < '0' || port[i] > '9' {
			return false
		}
	}
	return true
}
