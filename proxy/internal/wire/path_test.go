package wire

import (
	"net/url"
	"reflect"
	"testing"
)

// FuzzParsePlainPath holds the target fast path to url.ParseRequestURI.
func FuzzParsePlainPath(f *testing.F) {
	for _, s := range []string{"/", "/a?b", "/a?", "/a%20b?c", "/a#b", "*", "/é?é", "/a?b?c", "/a b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		checkPlainPath(t, path)
	})
}

func checkPlainPath(t *testing.T, path string) {
	t.Helper()
	var got url.URL
	if !ParsePlainPath(path, &got) {
		return
	}
	want, err := url.ParseRequestURI(path)
	if err != nil {
		t.Fatalf("%q: taken by the fast path, refused by url.ParseRequestURI: %v", path, err)
	}
	if !reflect.DeepEqual(got, *want) {
		t.Fatalf("%q: %#v, url.ParseRequestURI gives %#v", path, got, *want)
	}
}

func TestParsePlainPathAsNetURL(t *testing.T) {
	fast := []string{
		"/", "/index.html", "/a/b/c", "//a//b", "/a?b=c", "/a?", "/?", "/a??", "/a?b?",
		"/a?b=%zz", "/a?b=é", "/a?b#c", "/a?b c", "/a:b@c", "/a;b=c,d", "/a+b$c&d=e", "/-._~",
	}
	for _, p := range fast {
		var u url.URL
		if !ParsePlainPath(p, &u) {
			t.Errorf("%q: not taken by the fast path", p)
		}
		checkPlainPath(t, p)
	}
	for c := 0; c < 256; c++ {
		checkPlainPath(t, "/a"+string([]byte{byte(c)}))
		checkPlainPath(t, "/a?"+string([]byte{byte(c)}))
	}
}
