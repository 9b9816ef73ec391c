package normpath

import (
	"net/url"
	"strings"
	"testing"
)

func TestNormalize(t *testing.T) {
	for _, tc := range []struct {
		target       string // request target as sent
		merge        bool
		path, escped string // want: URL.Path and EscapedPath()
	}{
		{target: "/", path: "/", escped: "/"},
		{target: "/a/b", path: "/a/b", escped: "/a/b"},
		{target: "/public/../admin", path: "/admin", escped: "/admin"},
		{target: "/a/./b/../c", path: "/a/c", escped: "/a/c"},
		{target: "/a/b/..", path: "/a/", escped: "/a/"},
		{target: "/a/.", path: "/a/", escped: "/a/"},
		{target: "/..", path: "/", escped: "/"},
		{target: "/../../etc/passwd", path: "/etc/passwd", escped: "/etc/passwd"},
		{target: "/a/..b/c", path: "/a/..b/c", escped: "/a/..b/c"},
		{target: "/a/.b/...", path: "/a/.b/...", escped: "/a/.b/..."},
		{target: "/%61dmin", path: "/admin", escped: "/admin"},
		{target: "/public/%2e%2e/admin", path: "/admin", escped: "/admin"},
		{target: "/public/%2E./admin", path: "/admin", escped: "/admin"},
		{target: "/%7euser", path: "/~user", escped: "/~user"},
		{target: "/a%2fb", path: "/a/b", escped: "/a%2Fb"},
		{target: "/a%2F..%2Fb", path: "/a/../b", escped: "/a%2F..%2Fb"},
		{target: "/caf%c3%a9", path: "/café", escped: "/caf%C3%A9"},
		{target: "/a%20b/../c", path: "/c", escped: "/c"},
		{target: "/a//b", path: "/a//b", escped: "/a//b"},
		{target: "/a//b", merge: true, path: "/a/b", escped: "/a/b"},
		{target: "//a///b//", merge: true, path: "/a/b/", escped: "/a/b/"},
		{target: "/a//../b", path: "/a/b", escped: "/a/b"},
		{target: "/a//../b", merge: true, path: "/b", escped: "/b"},
		{target: "/a%2f%2fb", merge: true, path: "/a//b", escped: "/a%2F%2Fb"},
		{target: "*", path: "*", escped: "*"},
	} {
		u, err := url.ParseRequestURI(tc.target)
		if err != nil {
			t.Fatalf("%s: %v", tc.target, err)
		}
		p, raw, changed := Normalize(u.Path, u.RawPath, tc.merge)
		got := url.URL{Path: p, RawPath: raw}
		if p != tc.path || got.EscapedPath() != tc.escped {
			t.Errorf("Normalize(%q, merge=%v) = path %q, escaped %q; want %q, %q",
				tc.target, tc.merge, p, got.EscapedPath(), tc.path, tc.escped)
		}
		if want := p != u.Path || raw != u.RawPath; changed != want {
			t.Errorf("Normalize(%q) changed = %v, want %v", tc.target, changed, want)
		}
	}
}

// removeDotSegments is RFC 3986 §5.2.4's algorithm as the RFC writes it,
// the model clean is checked against.
func removeDotSegments(in string) string {
	var out strings.Builder
	for in != "" {
		switch {
		case strings.HasPrefix(in, "../"):
			in = in[3:]
		case strings.HasPrefix(in, "./"):
			in = in[2:]
		case strings.HasPrefix(in, "/./"):
			in = in[2:]
		case in == "/.":
			in = "/"
		case strings.HasPrefix(in, "/../"), in == "/..":
			in = "/" + in[min(len(in), 4):]
			s := out.String()
			if i := strings.LastIndexByte(s, '/'); i >= 0 {
				s = s[:i]
			} else {
				s = ""
			}
			out.Reset()
			out.WriteString(s)
		case in == "." || in == "..":
			in = ""
		default:
			j := strings.IndexByte(in[1:], '/')
			if j < 0 {
				j = len(in)
			} else {
				j++
			}
			out.WriteString(in[:j])
			in = in[j:]
		}
	}
	return out.String()
}

func TestCleanMatchesRFCAlgorithm(t *testing.T) {
	parts := []string{"a", "b", ".", "..", "", "...", ".a", "a."}
	// Every path of up to five segments drawn from parts.
	var walk func(p string, depth int)
	n := 0
	walk = func(p string, depth int) {
		if p != "" {
			n++
			if got, want := clean(p, false), removeDotSegments(p); got != want {
				t.Fatalf("clean(%q) = %q, RFC 3986 gives %q", p, got, want)
			}
			if got, want := needsClean(p, false), removeDotSegments(p) != p; got != want {
				t.Fatalf("needsClean(%q) = %v, but the RFC's removal changes it: %v", p, got, want)
			}
		}
		if depth == 5 {
			return
		}
		for _, s := range parts {
			walk(p+"/"+s, depth+1)
		}
	}
	walk("", 0)
	if n < 1000 {
		t.Fatalf("checked only %d paths", n)
	}
}

func TestNoWorkAllocatesNothing(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		Normalize("/api/v1/users/42/orders", "", true)
	})
	if allocs != 0 {
		t.Fatalf("a clean path cost %v allocations", allocs)
	}
}

func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"/", "/a/../b", "/%2e%2E/x", "/a%2F..%2Fb", "//a//b/", "/caf%c3%a9/./", "*", "/a?b"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, target string, merge bool) {
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return
		}
		p, raw, changed := Normalize(u.Path, u.RawPath, merge)
		if !changed && (p != u.Path || raw != u.RawPath) {
			t.Fatalf("%q: unchanged, but got %q %q from %q %q", target, p, raw, u.Path, u.RawPath)
		}
		n := url.URL{Path: p, RawPath: raw}
		esc := n.EscapedPath()
		if changed && raw != "" && esc != raw {
			t.Fatalf("%q: RawPath %q is not a valid escaping of %q", target, raw, p)
		}
		if dec, err := url.PathUnescape(esc); err != nil || dec != p {
			t.Fatalf("%q: escaped path %q decodes to %q (%v), Path is %q", target, esc, dec, err, p)
		}
		// Normalized once is normalized.
		p2, raw2, changed2 := Normalize(p, raw, merge)
		if changed2 {
			t.Fatalf("%q: normalized %q %q changed again to %q %q", target, p, raw, p2, raw2)
		}
		if len(esc) > 0 && esc[0] == '/' {
			for _, seg := range strings.Split(esc[1:], "/") {
				if seg == "." || seg == ".." {
					t.Fatalf("%q: %q keeps a dot segment", target, esc)
				}
			}
			if merge && strings.Contains(esc, "//") {
				t.Fatalf("%q: %q keeps a run of slashes", target, esc)
			}
		}
	})
}

func BenchmarkNormalize(b *testing.B) {
	for _, p := range []struct{ name, path, raw string }{
		{"clean", "/api/v1/users/42/orders", ""},
		{"dots", "/api/v1/../v2/./users", ""},
		{"escaped", "/api/v1/a/b", "/api/v1/a%2fb"},
	} {
		b.Run(p.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Normalize(p.path, p.raw, false)
			}
		})
	}
}
