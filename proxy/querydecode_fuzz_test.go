package proxy

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/net/http/httpguts"
)

// decodedHasPrefix decodes a query name or value as url.QueryUnescape
// does, without allocating: the two agree on which inputs are malformed
// and on what the others decode to.
func FuzzDecodedHasPrefix(f *testing.F) {
	for _, s := range [][2]string{{"a%2Bb+c", "a+b c"}, {"%61dmin", "admin"}, {"%4", ""}, {"%zz", "x"}, {"", ""}, {"ab", "abc"}} {
		f.Add(s[0], s[1], true)
		f.Add(s[0], s[1], false)
	}
	f.Fuzz(func(t *testing.T, raw, want string, whole bool) {
		match, ok := decodedHasPrefix(raw, want, whole)
		d, err := url.QueryUnescape(raw)
		if ok != (err == nil) {
			t.Fatalf("decodedHasPrefix(%q) ok %v, QueryUnescape error %v", raw, ok, err)
		}
		if !ok {
			return
		}
		wantMatch := strings.HasPrefix(d, want)
		if whole {
			wantMatch = d == want
		}
		if match != wantMatch {
			t.Fatalf("decodedHasPrefix(%q, %q, %v) = %v; decoded %q", raw, want, whole, match, d)
		}
	})
}

// cookieValue finds a cookie's value in any Cookie field without
// failing, and what it returns is a piece of the field; a cookie of the
// name (a token) put in front of the field is the one found.
func FuzzCookieValue(f *testing.F) {
	for _, s := range []string{"a=1; s=2", `s="q"`, "s=", "s", ";;s=x;", "t=1;s=2;s=3"} {
		f.Add(s, "s")
	}
	f.Fuzz(func(t *testing.T, line, name string) {
		h := http.Header{"Cookie": {line}}
		v, ok := cookieValue(h, name)
		if ok && !strings.Contains(line, v) {
			t.Fatalf("cookieValue(%q, %q) = %q, not a piece of the field", line, name, v)
		}
		if !httpguts.ValidHeaderFieldName(name) {
			return // a cookie name is a token, as validation requires
		}
		h["Cookie"] = []string{name + "=first; " + line}
		if v, ok := cookieValue(h, name); !ok || v != "first" {
			t.Fatalf("cookieValue(%q, %q) = %q, %v; want the first cookie's value", h["Cookie"][0], name, v, ok)
		}
	})
}
