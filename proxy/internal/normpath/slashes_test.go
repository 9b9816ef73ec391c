package normpath

import (
	"net/url"
	"strings"
	"testing"
)

func TestHasEscapedSlash(t *testing.T) {
	for target, want := range map[string]bool{
		"/":                    false,
		"/api/v1/users":        false,
		"/a%20b/c":             false,
		"/%61dmin":             false,
		"/a%2Fb":               true,
		"/a%2fb":               true,
		"/a%5Cb":               true,
		"/a%5cb":               true,
		"/public%2F..%2Fadmin": true,
		"/api/..%2fadmin":      true,
		"/a%252Fb":             false, // an escaped '%' followed by "2F"
		"/a\\b":                true,  // a raw '\' goes upstream as %5C
		"/a\"b%2Fc":            true,  // a RawPath net/url does not use
		"/a/b?x=%2F":           false, // the query is not the path
		"/caf%c3%a9/x%2e":      false,
	} {
		u, err := url.ParseRequestURI(target)
		if err != nil {
			t.Fatalf("%s: %v", target, err)
		}
		if got := HasEscapedSlash(u.Path, u.RawPath); got != want {
			t.Errorf("HasEscapedSlash(%q) = %v, want %v", target, got, want)
		}
	}
}

func TestUnescapeSlashes(t *testing.T) {
	for _, tc := range []struct {
		target  string
		escped  string // EscapedPath() after UnescapeSlashes
		changed bool
		norm    string // EscapedPath() after UnescapeSlashes and Normalize
	}{
		{"/public%2F..%2Fadmin", "/public/../admin", true, "/admin"},
		{"/api/..%2fadmin", "/api/../admin", true, "/admin"},
		{"/a%2Fb", "/a/b", true, "/a/b"},
		{"/a%2F%2Fb", "/a//b", true, "/a//b"},
		{"/a%2Fb%20c", "/a/b%20c", true, "/a/b%20c"},
		{"/a%2Fb%3Fc", "/a/b%3Fc", true, "/a/b%3Fc"},
		// A '\' cannot be sent bare (RFC 3986 has no place for it in a
		// path): it stays %5C on the wire, and is no separator.
		{"/a%5Cb", "/a%5Cb", false, "/a%5Cb"},
		{"/a%5c..%5cb", "/a%5c..%5cb", false, "/a%5C..%5Cb"},
		{"/a%5C..%2Fb", "/a%5C../b", true, "/a%5C../b"}, // "a\.." is no dot segment
		{"/plain", "/plain", false, "/plain"},
		{"/a%252Fb", "/a%252Fb", false, "/a%252Fb"},
	} {
		u, err := url.ParseRequestURI(tc.target)
		if err != nil {
			t.Fatalf("%s: %v", tc.target, err)
		}
		p, raw, changed := UnescapeSlashes(u.Path, u.RawPath)
		got := url.URL{Path: p, RawPath: raw}
		if got.EscapedPath() != tc.escped || changed != tc.changed {
			t.Errorf("UnescapeSlashes(%q) = %q (path %q, raw %q), changed %v; want %q, %v",
				tc.target, got.EscapedPath(), p, raw, changed, tc.escped, tc.changed)
		}
		if raw != "" && got.EscapedPath() != raw {
			t.Errorf("UnescapeSlashes(%q): RawPath %q is not an escaping of %q", tc.target, raw, p)
		}
		np, nraw, _ := Normalize(p, raw, false)
		if e := (&url.URL{Path: np, RawPath: nraw}).EscapedPath(); e != tc.norm {
			t.Errorf("UnescapeSlashes(%q) then Normalize = %q, want %q", tc.target, e, tc.norm)
		}
	}
}

func TestEscapedSlashCheckAllocatesNothing(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		if HasEscapedSlash("/api/v1/users/42/orders", "") {
			t.Fatal("found an escaped slash in a plain path")
		}
		if HasEscapedSlash("/api/v1/a b", "/api/v1/a%20b") {
			t.Fatal("found an escaped slash in /api/v1/a%20b")
		}
	})
	if allocs != 0 {
		t.Fatalf("the check cost %v allocations", allocs)
	}
}

func FuzzUnescapeSlashes(f *testing.F) {
	for _, s := range []string{"/a%2Fb", "/a%2f..%2fb", "/a%5Cb", "/a\\b%2F", "/%2F%2f%5c", "/a%252F"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return
		}
		p, raw, changed := UnescapeSlashes(u.Path, u.RawPath)
		if p != u.Path {
			t.Fatalf("%q: the decoded path changed from %q to %q", target, u.Path, p)
		}
		esc := (&url.URL{Path: p, RawPath: raw}).EscapedPath()
		if strings.Contains(strings.ToUpper(esc), "%2F") {
			t.Fatalf("%q: %q keeps an escaped slash", target, esc)
		}
		if had := strings.Contains(strings.ToUpper(u.RawPath), "%2F"); changed != had {
			t.Fatalf("%q: changed %v, but RawPath %q has an escaped slash: %v", target, changed, u.RawPath, had)
		}
		if !changed && esc != u.EscapedPath() {
			t.Fatalf("%q: unchanged, but escaped path %q from %q", target, esc, u.EscapedPath())
		}
	})
}

func BenchmarkHasEscapedSlash(b *testing.B) {
	for _, p := range []struct{ name, path, raw string }{
		{"clean", "/api/v1/users/42/orders", ""},
		{"escaped-space", "/api/v1/a b", "/api/v1/a%20b"},
		{"escaped-slash", "/api/v1/a/b", "/api/v1/a%2fb"},
	} {
		b.Run(p.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				HasEscapedSlash(p.path, p.raw)
			}
		})
	}
}
