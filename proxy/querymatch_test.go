package proxy

import (
	"net/http"
	"testing"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// Query parameter matchers take the first parameter of their name, and
// compare names and values decoded, so that another spelling of a value
// ("%61dmin", "a+b") reaches the route meant for it.
func TestQueryParameterMatchers(t *testing.T) {
	direct := func(body string) *config.DirectResponse { return &config.DirectResponse{Status: 200, Body: body} }
	cfg := &config.Config{Routes: []config.Route{
		{Name: "admin", Match: config.RouteMatch{QueryParameters: []config.QueryParameterMatch{{Name: "role", Exact: "admin"}}}, DirectResponse: direct("admin")},
		{Name: "both", Match: config.RouteMatch{QueryParameters: []config.QueryParameterMatch{
			{Name: "v", Prefix: "2."}, {Name: "debug", Present: new(true)}}}, DirectResponse: direct("both")},
		{Name: "space", Match: config.RouteMatch{QueryParameters: []config.QueryParameterMatch{{Name: "q", Regex: "a b|c\nd"}}}, DirectResponse: direct("space")},
		{Name: "name", Match: config.RouteMatch{QueryParameters: []config.QueryParameterMatch{{Name: "a b", Present: new(true)}}}, DirectResponse: direct("name")},
		{Name: "rest", DirectResponse: direct("rest")},
	}}
	h := startProxy(t, cfg)
	for _, c := range []struct{ query, want string }{
		{"?role=admin", "admin"},
		{"?x=1&role=admin&y", "admin"},
		{"?role=%61dmin", "admin"},        // decoded
		{"?role=admin2", "rest"},          // exact is whole
		{"?role=user&role=admin", "rest"}, // the first one counts
		{"?role=%zz&role=admin", "admin"}, // a malformed one is skipped
		{"?Role=admin", "rest"},           // names are case-sensitive
		{"?v=2.1&debug", "both"},          // present without "="
		{"?v=2.1&debug=", "both"},         // present with an empty value
		{"?v=2.1", "rest"},                // all must match
		{"?debug&v=1.0", "rest"},          // prefix
		{"?q=a+b", "space"},               // "+" is a space
		{"?q=a%20b", "space"},             // so is "%20"
		{"?q=c%0Ad", "space"},             // "." and literals see a decoded newline
		{"?q=ab", "rest"},                 // regex is whole
		{"?a+b", "name"},                  // names decoded too
		{"?a%20b=1", "name"},
		{"", "rest"},
		{"?role=admin;x=1", "rest"}, // only "&" separates
	} {
		resp, err := h.h1.Get(h.url("/p" + c.query))
		if err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, resp); got != c.want {
			t.Errorf("%q went to route %q, want %q", c.query, got, c.want)
		}
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%q: status %d", c.query, resp.StatusCode)
		}
	}
}

func TestDecodedHasPrefix(t *testing.T) {
	for _, c := range []struct {
		raw, want string
		whole     bool
		match, ok bool
	}{
		{"abc", "abc", true, true, true},
		{"abc", "ab", true, false, true},
		{"abc", "ab", false, true, true},
		{"ab", "abc", false, false, true},
		{"%41b", "Ab", true, true, true},
		{"%4", "", false, false, false},
		{"x%4g", "x", false, false, false},
		{"a+", "a ", true, true, true},
		{"", "", true, true, true},
	} {
		m, ok := decodedHasPrefix(c.raw, c.want, c.whole)
		if m != c.match || ok != c.ok {
			t.Errorf("decodedHasPrefix(%q, %q, %v) = %v, %v; want %v, %v", c.raw, c.want, c.whole, m, ok, c.match, c.ok)
		}
	}
}

// invert turns a query parameter matcher's result around, an absent
// parameter's included; present: false matches a query without the
// parameter (one whose every occurrence has a malformed escape counts
// as absent, as it never matches a value).
func TestQueryParameterMatchersInvertAndAbsent(t *testing.T) {
	direct := func(body string) *config.DirectResponse { return &config.DirectResponse{Status: 200, Body: body} }
	q := func(m config.QueryParameterMatch) config.RouteMatch {
		return config.RouteMatch{Path: config.PathMatch{Prefix: "/" + m.Name}, QueryParameters: []config.QueryParameterMatch{m}}
	}
	cfg := &config.Config{Routes: []config.Route{
		{Name: "not-admin", Match: q(config.QueryParameterMatch{Name: "role", Exact: "admin", Invert: true}), DirectResponse: direct("not-admin")},
		{Name: "no-token", Match: q(config.QueryParameterMatch{Name: "token", Present: new(false)}), DirectResponse: direct("no-token")},
		{Name: "not-v2", Match: q(config.QueryParameterMatch{Name: "v", Prefix: "2.", Invert: true}), DirectResponse: direct("not-v2")},
		{Name: "not-digits", Match: q(config.QueryParameterMatch{Name: "n", Regex: "[0-9]+", Invert: true}), DirectResponse: direct("not-digits")},
		{Name: "rest", DirectResponse: direct("rest")},
	}}
	h := startProxy(t, cfg)
	for _, c := range []struct{ target, want string }{
		{"/role?role=admin", "rest"},
		{"/role?role=%61dmin", "rest"}, // decoded before it is inverted
		{"/role?role=user", "not-admin"},
		{"/role?role=user&role=admin", "not-admin"}, // the first one counts
		{"/role", "not-admin"},                      // absent: not admin
		{"/role?role", "not-admin"},
		{"/token", "no-token"},
		{"/token?x=1", "no-token"},
		{"/token?token", "rest"}, // present without a value
		{"/token?token=", "rest"},
		{"/token?token=abc", "rest"},
		{"/token?Token=abc", "no-token"}, // names are case-sensitive
		{"/token?to%6Ben=abc", "rest"},   // names are decoded
		{"/token?token=%zz", "no-token"}, // a malformed one is skipped
		{"/v?v=2.1", "rest"},
		{"/v?v=1.9", "not-v2"},
		{"/v", "not-v2"},
		{"/n?n=42", "rest"},
		{"/n?n=4%32", "rest"},
		{"/n?n=4x", "not-digits"},
	} {
		resp, err := h.h1.Get(h.url(c.target))
		if err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, resp); got != c.want {
			t.Errorf("%q went to route %q, want %q", c.target, got, c.want)
		}
	}
}

// A route with query matchers finds its parameter without allocating,
// inverted or not.
func TestQueryParameterMatchDoesNotAllocate(t *testing.T) {
	m := routeMatch{queries: []queryMatcher{{name: "role", kind: headerExact, value: "admin"}, {name: "v", kind: headerPrefix, value: "2"},
		{name: "role", kind: headerExact, value: "user", invert: true}, {name: "token", kind: headerPresent, invert: true}}}
	r, _ := http.NewRequest("GET", "http://x/p?a=1&v=2.5&role=%61dmin", nil)
	if n := testing.AllocsPerRun(100, func() {
		if !m.match("x", "80", "/p", r) {
			t.Fatal("no match")
		}
	}); n != 0 {
		t.Fatalf("%v allocations per match, want 0", n)
	}
}
