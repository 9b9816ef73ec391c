package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// Istio's pattern forms: exact, prefix "v*", suffix "*v", and "*".
func TestAuthorizationPatternForms(t *testing.T) {
	for _, tc := range []struct {
		pattern, value string
		want           bool
	}{
		{"/items", "/items", true},
		{"/items", "/items/", false},
		{"/items", "/Items", false},
		{"/items/*", "/items/", true},
		{"/items/*", "/items/1/2", true},
		{"/items/*", "/items", false},
		{"*/health", "/health", true},
		{"*/health", "/a/b/health", true},
		{"*/health", "/healthz", false},
		{"*", "", true},
		{"*", "/anything", true},
		{"spiffe://cluster.local/ns/ops/*", "spiffe://cluster.local/ns/ops/sa/x", true},
		{"spiffe://cluster.local/ns/ops/*", "spiffe://cluster.local/ns/opsx/sa/x", false},
		// Refused by validation; built by hand it matches only itself.
		{"/a/*/b", "/a/*/b", true},
		{"/a/*/b", "/a/x/b", false},
	} {
		p := compilePattern(tc.pattern)
		if got := p.match(tc.value); got != tc.want {
			t.Errorf("%q matching %q = %v, want %v", tc.pattern, tc.value, got, tc.want)
		}
	}
}

// A principal is in the namespaces named by a segment after /ns/ of its
// spiffe:// path that a "/" follows, any of them, as Istio's principal
// regex .*/ns/<namespace>/.* reads them.
func TestAuthorizationPrincipalNamespaces(t *testing.T) {
	names := []string{"shop", "a", "b", "x", "ns"}
	for id, want := range map[string][]string{
		"spiffe://cluster.local/ns/shop/sa/orders": {"shop"},
		"spiffe://cluster.local/ns/shop":           nil,
		"spiffe://td/x/ns/a/sa/b":                  {"a"},
		"spiffe://td/ns/a/ns/b/sa/x":               {"a", "b"},
		"spiffe://td/ns/ns/x/sa/y":                 {"x", "ns"},
		"spiffe://cluster.local/ns//sa/x":          nil,
		"spiffe://cluster.local/sa/x":              nil,
		"spiffe://ns/shop/sa/x":                    nil,
		"https://example.com/ns/shop/sa/x":         nil,
		"":                                         nil,
	} {
		var got []string
		for _, n := range names {
			if inNamespace([]pattern{compilePattern(n)}, id) {
				got = append(got, n)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%q is in %v, want %v", id, got, want)
		}
	}
}

// authzRequest is a request to path with method from remote, over a
// connection whose client certificate has the URI SAN id ("" for
// none), verified when verified.
func authzRequest(t *testing.T, method, path, remote, id string, verified bool, hdr ...string) *http.Request {
	t.Helper()
	r := httptest.NewRequest(method, "http://svc"+path, nil)
	r.RemoteAddr = remote
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	if id != "-" {
		c := &x509.Certificate{}
		if id != "" {
			u, err := url.Parse(id)
			if err != nil {
				t.Fatal(err)
			}
			c.URIs = []*url.URL{u}
		}
		r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{c}}
		if verified {
			r.TLS.VerifiedChains = [][]*x509.Certificate{{c}}
		}
	}
	return r
}

// Each condition of a rule, alone and together, as Istio evaluates it:
// every field given must match, and any entry of a list. A request
// without a verified principal matches no principals or namespaces
// entry, not even "*", and every not_principals entry.
func TestAuthorizationRuleMatches(t *testing.T) {
	const orders = "spiffe://cluster.local/ns/shop/sa/orders"
	type req struct {
		method, path, remote, id string
		verified                 bool
		hdr                      []string
	}
	get := func(id string) req { return req{"GET", "/items", "10.1.2.3:5000", id, true, nil} }
	unverified := get(orders)
	unverified.verified = false
	plain := get("-")
	for _, tc := range []struct {
		name string
		rule config.AuthorizationRule
		req  req
		want bool
	}{
		{"no condition", config.AuthorizationRule{}, plain, true},
		{"exact principal", config.AuthorizationRule{From: config.AuthorizationSource{Principals: []string{orders}}}, get(orders), true},
		{"another principal", config.AuthorizationRule{From: config.AuthorizationSource{Principals: []string{orders}}}, get("spiffe://cluster.local/ns/shop/sa/cart"), false},
		{"any principal, verified", config.AuthorizationRule{From: config.AuthorizationSource{Principals: []string{"*"}}}, get(orders), true},
		{"any principal, plaintext", config.AuthorizationRule{From: config.AuthorizationSource{Principals: []string{"*"}}}, plain, false},
		{"any principal, certificate without a URI SAN", config.AuthorizationRule{From: config.AuthorizationSource{Principals: []string{"*"}}}, get(""), false},
		{"any principal, certificate not verified", config.AuthorizationRule{From: config.AuthorizationSource{Principals: []string{"*"}}}, unverified, false},
		{"principal suffix", config.AuthorizationRule{From: config.AuthorizationSource{Principals: []string{"*/sa/orders"}}}, get(orders), true},
		{"not_principals any, plaintext", config.AuthorizationRule{From: config.AuthorizationSource{NotPrincipals: []string{"*"}}}, plain, true},
		{"not_principals any, verified", config.AuthorizationRule{From: config.AuthorizationSource{NotPrincipals: []string{"*"}}}, get(orders), false},
		{"not_principals another", config.AuthorizationRule{From: config.AuthorizationSource{NotPrincipals: []string{"*/sa/cart"}}}, get(orders), true},
		{"principals and not_principals", config.AuthorizationRule{From: config.AuthorizationSource{
			Principals: []string{"spiffe://cluster.local/ns/shop/*"}, NotPrincipals: []string{orders}}}, get(orders), false},
		{"namespace", config.AuthorizationRule{From: config.AuthorizationSource{Namespaces: []string{"ops", "shop"}}}, get(orders), true},
		{"namespace prefix", config.AuthorizationRule{From: config.AuthorizationSource{Namespaces: []string{"sh*"}}}, get(orders), true},
		{"another namespace", config.AuthorizationRule{From: config.AuthorizationSource{Namespaces: []string{"ops"}}}, get(orders), false},
		{"any namespace, plaintext", config.AuthorizationRule{From: config.AuthorizationSource{Namespaces: []string{"*"}}}, plain, false},
		{"any namespace, principal without one", config.AuthorizationRule{From: config.AuthorizationSource{Namespaces: []string{"*"}}}, get("spiffe://cluster.local/sa/x"), false},
		{"ip block", config.AuthorizationRule{From: config.AuthorizationSource{IPBlocks: []string{"192.168.0.0/16", "10.0.0.0/8"}}}, plain, true},
		{"single ip", config.AuthorizationRule{From: config.AuthorizationSource{IPBlocks: []string{"10.1.2.3"}}}, plain, true},
		{"another ip", config.AuthorizationRule{From: config.AuthorizationSource{IPBlocks: []string{"10.1.2.4"}}}, plain, false},
		{"ipv4-mapped client", config.AuthorizationRule{From: config.AuthorizationSource{IPBlocks: []string{"10.0.0.0/8"}}},
			req{"GET", "/", "[::ffff:10.1.2.3]:80", "-", false, nil}, true},
		{"ipv6 block", config.AuthorizationRule{From: config.AuthorizationSource{IPBlocks: []string{"fd00::/8"}}},
			req{"GET", "/", "[fd00::1]:80", "-", false, nil}, true},
		// A link-local client's address has its interface's zone, which
		// names no other address: it is in the blocks its address is in.
		{"zoned client", config.AuthorizationRule{From: config.AuthorizationSource{IPBlocks: []string{"fe80::/10"}}},
			req{"GET", "/", "[fe80::1%eth0]:80", "-", false, nil}, true},
		{"zoned client, single ip", config.AuthorizationRule{From: config.AuthorizationSource{IPBlocks: []string{"fe80::1"}}},
			req{"GET", "/", "[fe80::1%eth0]:80", "-", false, nil}, true},
		{"method", config.AuthorizationRule{To: config.AuthorizationOperation{Methods: []string{"HEAD", "GET"}}}, plain, true},
		{"another method", config.AuthorizationRule{To: config.AuthorizationOperation{Methods: []string{"POST"}}}, plain, false},
		// A method sent in another case is the one it spells to an
		// upstream that reads methods without case: a deny rule for
		// DELETE is not passed by with "delete".
		{"method in lower case", config.AuthorizationRule{To: config.AuthorizationOperation{Methods: []string{"DELETE"}}},
			req{"delete", "/items", "10.1.2.3:5000", "-", false, nil}, true},
		{"path prefix", config.AuthorizationRule{To: config.AuthorizationOperation{Paths: []string{"/it*"}}}, plain, true},
		{"not_paths", config.AuthorizationRule{To: config.AuthorizationOperation{Paths: []string{"*"}, NotPaths: []string{"/items"}}}, plain, false},
		{"header", config.AuthorizationRule{When: config.AuthorizationCondition{Headers: []config.HeaderMatch{{Name: "x-tenant", Exact: "a"}}}},
			req{"GET", "/", "10.1.2.3:1", "-", false, []string{"X-Tenant", "a"}}, true},
		{"header inverted", config.AuthorizationRule{When: config.AuthorizationCondition{Headers: []config.HeaderMatch{{Name: "x-tenant", Exact: "a", Invert: true}}}},
			req{"GET", "/", "10.1.2.3:1", "-", false, []string{"X-Tenant", "a"}}, false},
		{"every condition", config.AuthorizationRule{
			From: config.AuthorizationSource{Principals: []string{orders}, Namespaces: []string{"shop"}, IPBlocks: []string{"10.0.0.0/8"}},
			To:   config.AuthorizationOperation{Methods: []string{"GET"}, Paths: []string{"/items"}},
		}, get(orders), true},
		{"every condition but one", config.AuthorizationRule{
			From: config.AuthorizationSource{Principals: []string{orders}, Namespaces: []string{"shop"}, IPBlocks: []string{"11.0.0.0/8"}},
			To:   config.AuthorizationOperation{Methods: []string{"GET"}, Paths: []string{"/items"}},
		}, get(orders), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ar, err := compileAuthzRule(&tc.rule)
			if err != nil {
				t.Fatal(err)
			}
			q := tc.req
			r := authzRequest(t, q.method, q.path, q.remote, q.id, q.verified, q.hdr...)
			c := peer{r: r, path: r.URL.Path}
			if got := ar.match(&c); got != tc.want {
				t.Fatalf("match = %v, want %v", got, tc.want)
			}
		})
	}
}

// A pattern the configuration accepts compiles to a matcher that agrees
// with the regular expression it stands for; any other string compiles
// too, to one that matches only itself. Neither panics. (The model is
// a regular expression, for valid UTF-8.)
func FuzzAuthorizationPattern(f *testing.F) {
	for _, s := range []string{"*", "/items", "/items/*", "*/health", "spiffe://td/ns/*", "**", "*a*", "", "a*b"} {
		f.Add(s, "/items/1")
	}
	f.Fuzz(func(t *testing.T, pat, v string) {
		p := compilePattern(pat)
		got := p.match(v)
		if config.PatternProblem(pat) != "" {
			if got != (v == pat) {
				t.Fatalf("refused pattern %q matching %q = %v", pat, v, got)
			}
			return
		}
		if !utf8.ValidString(pat) || !utf8.ValidString(v) {
			return // beyond the model: regexp takes UTF-8 alone
		}
		expr := "^" + regexp.QuoteMeta(strings.Trim(pat, "*")) + "$"
		if strings.HasPrefix(pat, "*") {
			expr = "^(?s:.*)" + expr[1:]
		}
		if strings.HasSuffix(pat, "*") {
			expr = expr[:len(expr)-1] + "(?s:.*)$"
		}
		if want := regexp.MustCompile(expr).MatchString(v); got != want {
			t.Fatalf("%q matching %q = %v, the regexp %s says %v", pat, v, got, expr, want)
		}
	})
}

// Checking a request against rules that read no principal allocates
// nothing: the client's facts live on the stack.
func TestAuthorizationCheckDoesNotAllocate(t *testing.T) {
	var rules []authzRule
	for _, rc := range []config.AuthorizationRule{
		{Name: "admin", To: config.AuthorizationOperation{Paths: []string{"/admin*"}}},
		{Name: "net", From: config.AuthorizationSource{IPBlocks: []string{"10.0.0.0/8"}}, To: config.AuthorizationOperation{Methods: []string{"GET"}}},
	} {
		ar, err := compileAuthzRule(&rc)
		if err != nil {
			t.Fatal(err)
		}
		rules = append(rules, ar)
	}
	p := New(Options{})
	az := &authzPolicy{deny: rules[:1], allow: rules[1:], allowed: p.m.authzAllowed[Inbound]}
	az.deny[0].denied = p.m.authzDeniedSeries("inbound", "admin")
	az.noAllow = p.m.authzDeniedSeries("inbound", "")
	r := authzRequest(t, "GET", "/items", "10.1.2.3:5000", "-", false)
	if n := testing.AllocsPerRun(100, func() {
		if _, ok := az.check(r); !ok {
			t.Fatal("refused")
		}
	}); n != 0 {
		t.Fatalf("%v allocations per check, want 0", n)
	}
}
