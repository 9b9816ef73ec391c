package h2server

import (
	"net/url"
	"reflect"
	"testing"

	"github.com/outrigger-mesh/outrigger/proxy/internal/wire"
)

// checkRequestURI holds parseRequestURI to url.ParseRequestURI: the same
// URL, or an error where it has one.
func checkRequestURI(t *testing.T, path string) {
	t.Helper()
	want, wantErr := url.ParseRequestURI(path)
	var got url.URL
	err := parseRequestURI(path, &got)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("%q: error %v, url.ParseRequestURI's %v", path, err, wantErr)
	}
	if err == nil && !reflect.DeepEqual(got, *want) {
		t.Fatalf("%q: %#v, url.ParseRequestURI gives %#v", path, got, *want)
	}
}

func TestParseRequestURIAsNetURL(t *testing.T) {
	fast := []string{
		"/", "/index.html", "/a/b/c", "//a//b", "/a?b=c", "/a?", "/?", "/a??", "/a?b?",
		"/a?b=%zz", "/a?b=é", "/a?b#c", "/a?b c", "/a:b@c", "/a;b=c,d", "/a+b$c&d=e",
		"/-._~", "/grpc.testing.TestService/UnaryCall",
	}
	slow := []string{
		"/a%20b", "/a%2fb", "/a%zz", "/a%", "/a b", "/a#b", "/é", "/a\x00", "/a?b\x7f",
		"/a?b\tc", "/a\"b", "/a<b>", "/a[b]", "/a{b}", "/a|b", "/a\\b", "/a^b", "/a`b",
		"/a!b", "/a'b", "/a(b)", "/a*b", "*", "a/b", "http://x/a", "",
	}
	for _, p := range fast {
		var u url.URL
		if !wire.ParsePlainPath(p, &u) {
			t.Errorf("%q: not taken by the fast path", p)
		}
		checkRequestURI(t, p)
	}
	for _, p := range slow {
		checkRequestURI(t, p)
	}
	for c := 0; c < 256; c++ {
		checkRequestURI(t, "/a"+string(rune(c)))
		checkRequestURI(t, "/a"+string([]byte{byte(c)}))
		checkRequestURI(t, "/a?"+string([]byte{byte(c)}))
	}
}

func TestParseRequestURIDoesNotAllocate(t *testing.T) {
	var u url.URL
	if n := testing.AllocsPerRun(100, func() { parseRequestURI("/a/b?c=d", &u) }); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}

func FuzzParseRequestURI(f *testing.F) {
	for _, s := range []string{"/", "/a?b", "/a?", "/a%20b?c", "/a#b", "*", "/é?é", "/a?b?c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		checkRequestURI(t, path)
	})
}
