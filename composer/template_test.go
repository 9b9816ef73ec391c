package composer

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

// renderPath renders a call's path template with the given value for {v}.
func renderFor(t *testing.T, path string, query map[string]string, value string) (*Request, error) {
	t.Helper()
	p, err := compile(Spec{Calls: []Call{{Name: "a", Cluster: "c", Path: path, Query: query}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	in := httptest.NewRequest(http.MethodGet, "/", nil)
	in.SetPathValue("v", value)
	rn := &run{c: &Composition{plan: p}, in: in, query: url.Values{}}
	return rn.render(p.calls[0], nil, nil)
}

func TestPathValuesStayInsideOneSegment(t *testing.T) {
	attacks := []struct{ value, want string }{
		{"../admin", "/users/..%2Fadmin/profile"},
		{"../../etc/passwd", "/users/..%2F..%2Fetc%2Fpasswd/profile"},
		{"%2F", "/users/%252F/profile"},
		{"..%2F", "/users/..%252F/profile"},
		{"..%2f..%2fadmin", "/users/..%252f..%252fadmin/profile"},
		{"a/b", "/users/a%2Fb/profile"},
		{"x?admin=1", "/users/x%3Fadmin=1/profile"},
		{"x#frag", "/users/x%23frag/profile"},
		{"x;y", "/users/x%3By/profile"},
		{`a\b`, "/users/a%5Cb/profile"},
		{"ｆｕｌｌ／ｗｉｄｔｈ", "/users/%EF%BD%86%EF%BD%95%EF%BD%8C%EF%BD%8C%EF%BC%8F%EF%BD%97%EF%BD%89%EF%BD%84%EF%BD%94%EF%BD%88/profile"},
		{"．．", "/users/%EF%BC%8E%EF%BC%8E/profile"},
		{"\u2215etc", "/users/%E2%88%95etc/profile"}, // division slash
		{"a b", "/users/a%20b/profile"},
		{"...", "/users/.../profile"},
		{"\x00nul", "/users/%00nul/profile"},
	}
	for _, a := range attacks {
		req, err := renderFor(t, "/users/{v}/profile", nil, a.value)
		if err != nil {
			t.Errorf("%q: %v", a.value, err)
			continue
		}
		if req.Path != a.want {
			t.Errorf("%q rendered %q, want %q", a.value, req.Path, a.want)
		}
		if req.Cluster != "c" {
			t.Errorf("%q changed the cluster to %q", a.value, req.Cluster)
		}
		// Whatever the value, the rendered path has the template's three segments
		// once the wire form is decoded segment by segment.
		segs := strings.Split(req.Path, "/")
		if len(segs) != 4 || segs[1] != "users" || segs[3] != "profile" {
			t.Errorf("%q: segments %q", a.value, segs)
		}
		if dec, err := url.PathUnescape(segs[2]); err != nil || dec != a.value {
			t.Errorf("%q: segment decodes to %q (%v)", a.value, dec, err)
		}
	}
}

func TestDotAndEmptySegmentsAreRefused(t *testing.T) {
	for _, v := range []string{"", ".", ".."} {
		if req, err := renderFor(t, "/users/{v}/profile", nil, v); err == nil {
			t.Errorf("%q rendered %q, want an error", v, req.Path)
		}
	}
	// A literal next to the value cannot form a dot segment either.
	if req, err := renderFor(t, "/users/.{v}", nil, "."); err == nil {
		t.Errorf(`".{v}" with "." rendered %q, want an error`, req.Path)
	}
}

func TestQueryValuesAreQueryEscaped(t *testing.T) {
	req, err := renderFor(t, "/search", map[string]string{"q": "{v}", "lang": "en"}, "a&admin=1#x y/..%2F")
	if err != nil {
		t.Fatal(err)
	}
	q, err := url.ParseQuery(req.RawQuery)
	if err != nil {
		t.Fatal(err)
	}
	if q.Get("q") != "a&admin=1#x y/..%2F" || q.Get("admin") != "" || len(q) != 2 {
		t.Errorf("raw query %q parsed to %v", req.RawQuery, q)
	}
	if req.Path != "/search" {
		t.Errorf("path %q", req.Path)
	}
}

func TestHeaderValuesRefuseLineBreaks(t *testing.T) {
	p, err := compile(Spec{Calls: []Call{{Name: "a", Cluster: "c", Path: "/x", Headers: map[string]string{"X-T": "{header.X-In}"}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	in := httptest.NewRequest(http.MethodGet, "/", nil)
	in.Header["X-In"] = []string{"ok\r\nX-Evil: 1"}
	rn := &run{c: &Composition{plan: p}, in: in, query: url.Values{}}
	if _, err := rn.render(p.calls[0], nil, nil); err == nil {
		t.Fatal("a header value with CR LF was rendered")
	}
}

// A rendered header value is one an HTTP/2 upstream accepts: a value with
// a control character fails the call, and whitespace at its edges, which
// HTTP/1.1 drops and which makes an HTTP/2 message malformed (RFC 9113
// §8.2.1), is trimmed.
func TestHeaderValuesAreValidFieldValues(t *testing.T) {
	p, err := compile(Spec{Calls: []Call{{Name: "a", Cluster: "c", Path: "/x", Headers: map[string]string{"X-T": "{query.v}"}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ in, want string }{
		{" v ", "v"}, {"\tv w\t", "v w"}, {"v\x01", ""}, {"v\x7f", ""}, {"  ", ""},
	} {
		in := httptest.NewRequest(http.MethodGet, "/", nil)
		rn := &run{c: &Composition{plan: p}, in: in, query: url.Values{"v": {c.in}}}
		req, err := rn.render(p.calls[0], nil, nil)
		switch {
		case c.want == "" && strings.Trim(c.in, " \t") != "":
			if err == nil {
				t.Errorf("%q: rendered %q, want an error", c.in, req.Header.Get("X-T"))
			}
		case err != nil:
			t.Errorf("%q: %v", c.in, err)
		case req.Header.Get("X-T") != c.want:
			t.Errorf("%q: rendered %q, want %q", c.in, req.Header.Get("X-T"), c.want)
		}
	}
}

func TestTemplateLiteralBraces(t *testing.T) {
	tm, err := parseTemplate("{{x}} {id} }}")
	if err != nil {
		t.Fatal(err)
	}
	got, err := tm.render(escText, func(r *ref) (any, bool) { return "7", true }, ",")
	if err != nil || got != "{x} 7 }" {
		t.Errorf("got %q, %v", got, err)
	}
}

// FuzzTemplateParser: parsing never panics; a parsed template renders without
// panicking; a template without references renders to its unescaped literal.
func FuzzTemplateParser(f *testing.F) {
	for _, s := range []string{"/orders/{id}", "{order.customerId}", "{{lit}}", "{each.a.b}", "{query.x.y}", "{header.X}", "{", "}", "{}", "{a[]}", "{a.b[].c}", "/x/{a}{b}", "{path.x}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tm, err := parseTemplate(s)
		if err != nil {
			return
		}
		for _, r := range tm.refs() {
			if r.kind == refCall && !validName(r.name) {
				t.Fatalf("accepted call name %q", r.name)
			}
			if r.path.multi() {
				t.Fatalf("accepted a multi-valued reference %q", r.raw)
			}
		}
		out, err := tm.render(escPath, func(*ref) (any, bool) { return "v/..", true }, ",")
		if err == nil && len(tm.refs()) > 0 && strings.Contains(out, "v/..") {
			t.Fatalf("value not escaped in %q", out)
		}
		if len(tm.refs()) == 0 {
			want := strings.NewReplacer("{{", "{", "}}", "}").Replace(s)
			if out != want {
				t.Fatalf("literal %q rendered %q, want %q", s, out, want)
			}
		}
	})
}

// FuzzFieldPath: parsing never panics, accepted paths round-trip through
// String, and evaluation on a document never panics.
func FuzzFieldPath(f *testing.F) {
	for _, s := range []string{"a", "a.b", "items[].sku", "[].id", "a[].b[].c", "", ".", "a..b", "a[]]", "a[", "[]", "é.ü"} {
		f.Add(s)
	}
	doc := map[string]any{"a": map[string]any{"b": []any{map[string]any{"c": "x"}}}, "items": []any{map[string]any{"sku": "A"}}}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parseFieldPath(s)
		if err != nil {
			return
		}
		if !utf8.ValidString(s) {
			t.Fatalf("accepted invalid UTF-8 %q", s)
		}
		if p.String() != s {
			t.Fatalf("round trip %q -> %q", s, p.String())
		}
		_ = p.get(doc)
		if !p.multi() {
			_, _ = p.getOne(doc)
		}
		if p[len(p)-1].key != "" {
			p.parents(doc, func(map[string]any, string) {})
		}
		n := &selectNode{}
		n.add(p)
		_ = n.project(doc)
	})
}
