package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

func TestRouteMatchTable(t *testing.T) {
	routes := []config.Route{
		{Name: "exact-host", Match: config.RouteMatch{Authority: []string{"api.example.com"}, Path: config.PathMatch{Exact: "/v1/ping"}}, DirectResponse: &config.DirectResponse{Status: 200}},
		{Name: "wild-host", Match: config.RouteMatch{Authority: []string{"*.example.com"}, Path: config.PathMatch{Prefix: "/v1/"}}, DirectResponse: &config.DirectResponse{Status: 200}},
		{Name: "host-port", Match: config.RouteMatch{Authority: []string{"ported.test:8080"}}, DirectResponse: &config.DirectResponse{Status: 200}},
		{Name: "regex", Match: config.RouteMatch{Path: config.PathMatch{Regex: "/users/[0-9]+"}}, DirectResponse: &config.DirectResponse{Status: 200}},
		{Name: "methods", Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/write"}, Methods: []string{"POST", "PUT"}}, DirectResponse: &config.DirectResponse{Status: 200}},
		{Name: "hdr-exact", Match: config.RouteMatch{Headers: []config.HeaderMatch{{Name: "x-canary", Exact: "1"}}}, DirectResponse: &config.DirectResponse{Status: 200}},
		{Name: "hdr-prefix", Match: config.RouteMatch{Headers: []config.HeaderMatch{{Name: "user-agent", Prefix: "grpc-go"}}}, DirectResponse: &config.DirectResponse{Status: 200}},
		{Name: "hdr-regex", Match: config.RouteMatch{Headers: []config.HeaderMatch{{Name: "x-tenant", Regex: "t-[a-z]+"}}}, DirectResponse: &config.DirectResponse{Status: 200}},
		{Name: "hdr-present-inverted", Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/auth"}, Headers: []config.HeaderMatch{{Name: "authorization", Present: true, Invert: true}}}, DirectResponse: &config.DirectResponse{Status: 401}},
		{Name: "hdr-empty", Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/empty"}, Headers: []config.HeaderMatch{{Name: "x-empty", Regex: "^$"}}}, DirectResponse: &config.DirectResponse{Status: 200}},
		{Name: "pseudo-method", Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/pseudo"}, Headers: []config.HeaderMatch{{Name: ":method", Exact: "DELETE"}}}, DirectResponse: &config.DirectResponse{Status: 200}},
		{Name: "catch-all-inbound", Listener: config.Inbound, DirectResponse: &config.DirectResponse{Status: 200}},
	}
	p := New(Options{})
	if err := p.Apply(&config.Config{Routes: routes}); err != nil {
		t.Fatal(err)
	}
	s := p.snap.Load()
	cases := []struct {
		method, host, path string
		hdr                []string
		want               string // "" = no route
	}{
		{"GET", "api.example.com", "/v1/ping", nil, "exact-host"},
		{"GET", "API.Example.com:443", "/v1/ping", nil, "exact-host"}, // case- and port-insensitive
		{"GET", "api.example.com", "/v1/ping/x", nil, "wild-host"},    // exact path fails, wildcard host + prefix wins
		{"GET", "a.b.example.com", "/v1/x", nil, "wild-host"},
		{"GET", "example.com", "/v1/x", nil, ""}, // wildcard does not match the apex
		{"GET", "ported.test:8080", "/", nil, "host-port"},
		{"GET", "ported.test:9090", "/", nil, ""}, // port in pattern must match
		{"GET", "ported.test", "/", nil, ""},
		{"GET", "x", "/users/42", nil, "regex"},
		{"GET", "x", "/users/42/posts", nil, ""}, // regex is anchored
		{"POST", "x", "/write/a", nil, "methods"},
		{"GET", "x", "/write/a", nil, ""},
		{"GET", "x", "/", []string{"X-Canary", "1"}, "hdr-exact"},
		{"GET", "x", "/", []string{"X-Canary", "2"}, ""},
		{"GET", "x", "/", []string{"User-Agent", "grpc-go/1.85"}, "hdr-prefix"},
		{"GET", "x", "/", []string{"X-Tenant", "t-acme"}, "hdr-regex"},
		{"GET", "x", "/", []string{"X-Tenant", "t-acme9"}, ""},
		{"GET", "x", "/auth/me", nil, "hdr-present-inverted"},
		{"GET", "x", "/auth/me", []string{"Authorization", "Bearer x"}, ""},
		{"GET", "x", "/empty", []string{"X-Empty", ""}, "hdr-empty"},
		{"GET", "x", "/empty", []string{"X-Empty", "a"}, ""},
		{"GET", "x", "/empty", nil, ""},
		{"DELETE", "x", "/pseudo", nil, "pseudo-method"},
		{"GET", "x", "/pseudo", nil, ""},
		{"GET", "[::1]:8080", "/users/1", nil, "regex"},
	}
	for _, c := range cases {
		r := httptest.NewRequest(c.method, "http://"+c.host+c.path, nil)
		r.Host = c.host
		for i := 0; i+1 < len(c.hdr); i += 2 {
			r.Header.Set(c.hdr[i], c.hdr[i+1])
		}
		got := ""
		if rt := s.tables[Outbound].find(r); rt != nil {
			got = rt.name
		}
		if got != c.want {
			t.Errorf("%s %s%s %v: got route %q, want %q", c.method, c.host, c.path, c.hdr, got, c.want)
		}
	}
	r := httptest.NewRequest("GET", "http://x/anything", nil)
	if rt := s.tables[Inbound].find(r); rt == nil || rt.name != "catch-all-inbound" {
		t.Errorf("inbound table: got %v", rt)
	}
}

func TestRouteFirstMatchWins(t *testing.T) {
	routes := []config.Route{
		{Name: "first", Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/a"}}, DirectResponse: &config.DirectResponse{Status: 201}},
		{Name: "second", Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/a/b"}}, DirectResponse: &config.DirectResponse{Status: 202}},
	}
	h := startProxy(t, &config.Config{Routes: routes})
	resp := mustGet(t, h.h1, h.url("/a/b/c"))
	readAll(t, resp)
	if resp.StatusCode != 201 {
		t.Fatalf("status %d, want the first route's 201", resp.StatusCode)
	}
}

func TestSplitHostPort(t *testing.T) {
	for in, want := range map[string][2]string{
		"a.b":         {"a.b", ""},
		"a.b:80":      {"a.b", "80"},
		"[::1]:443":   {"::1", "443"},
		"[::1]":       {"::1", ""},
		"::1":         {"::1", ""},
		"":            {"", ""},
		"[fe80::1%x]": {"fe80::1%x", ""},
	} {
		h, p := splitHostPort(in)
		if h != want[0] || p != want[1] {
			t.Errorf("splitHostPort(%q) = %q,%q want %q,%q", in, h, p, want[0], want[1])
		}
	}
}

func TestWeightedClustersFollowInjectedRand(t *testing.T) {
	a := upstream(t, false, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("a")) })
	b := upstream(t, false, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("b")) })
	cfg := &config.Config{
		Clusters: map[string]config.Cluster{"a": {Endpoints: eps(addr(a))}, "b": {Endpoints: eps(addr(b))}},
		Routes: []config.Route{{Name: "split", WeightedClusters: []config.WeightedCluster{
			{Cluster: "a", Weight: 90}, {Cluster: "b", Weight: 10}, {Cluster: "a", Weight: 0},
		}}},
	}
	draws := []int64{0, 89, 90, 99, 42}
	i := 0
	h := startProxy(t, cfg, func(o *Options) {
		o.Int63n = func(n int64) int64 {
			if n != 100 {
				t.Errorf("drawn over %d, want the weight total 100", n)
			}
			v := draws[i%len(draws)]
			i++
			return v
		}
	})
	var got string
	for range draws {
		got += readAll(t, mustGet(t, h.h1, h.url("/")))
	}
	if got != "aabba" {
		t.Fatalf("clusters chosen %q, want aabba", got)
	}
}

func TestPrefixRewriteAndHeaderMutation(t *testing.T) {
	seen := make(chan *http.Request, 1)
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		seen <- r
		w.Header().Set("Server", "app")
		w.Header().Set("X-Debug", "1")
	})
	cfg := simpleConfig(config.Cluster{Endpoints: eps(addr(up))}, func(r *config.Route) {
		r.Match.Path.Prefix = "/api/"
		r.PrefixRewrite = "/"
		r.RequestHeaders = config.HeaderMutation{
			Add:    config.HeaderValues{{Name: "x-env", Value: "prod"}, {Name: "x-tag", Value: "b", Append: true}},
			Remove: []string{"cookie"},
		}
		r.ResponseHeaders = config.HeaderMutation{Add: config.HeaderValues{{Name: "x-served-by", Value: "outrigger"}}, Remove: []string{"x-debug"}}
	})
	h := startProxy(t, cfg)
	resp := mustGet(t, h.h1, h.url("/api/items/7?x=1"), "Cookie", "s=1", "X-Env", "dev", "X-Tag", "a")
	readAll(t, resp)
	r := <-seen
	if r.URL.RequestURI() != "/items/7?x=1" {
		t.Errorf("rewritten path %q", r.URL.RequestURI())
	}
	if r.Header.Get("Cookie") != "" || r.Header.Get("X-Env") != "prod" || len(r.Header.Values("X-Tag")) != 2 {
		t.Errorf("request headers %v", r.Header)
	}
	if resp.Header.Get("X-Debug") != "" || resp.Header.Get("X-Served-By") != "outrigger" || resp.Header.Get("Server") != "app" {
		t.Errorf("response headers %v", resp.Header)
	}
}

func TestDirectResponse(t *testing.T) {
	cfg := &config.Config{Routes: []config.Route{{
		Name:           "health",
		DirectResponse: &config.DirectResponse{Status: 418, Body: "teapot", Headers: config.HeaderValues{{Name: "x-a", Value: "1"}}},
	}}}
	h := startProxy(t, cfg)
	resp := mustGet(t, h.h1, h.url("/"))
	if b := readAll(t, resp); b != "teapot" || resp.StatusCode != 418 || resp.Header.Get("X-A") != "1" {
		t.Fatalf("%d %q %v", resp.StatusCode, b, resp.Header)
	}
}

func TestWeightSlots(t *testing.T) {
	if s := weightSlots([]uint32{0, 1, 1}); s != nil {
		t.Fatalf("equal weights: %v", s)
	}
	s := weightSlots([]uint32{5, 1, 1})
	if len(s) != 7 {
		t.Fatalf("slots %v", s)
	}
	counts := map[int]int{}
	for _, i := range s {
		counts[i]++
	}
	if counts[0] != 5 || counts[1] != 1 || counts[2] != 1 {
		t.Fatalf("counts %v", counts)
	}
	// Smooth: nginx's sequence for 5:1:1 is a a b a c a a — never more
	// than two in a row within a period.
	run := 0
	for _, i := range s {
		if i == 0 {
			run++
			if run > 2 {
				t.Fatalf("burst in %v", s)
			}
		} else {
			run = 0
		}
	}
	if s := weightSlots([]uint32{10000, 1, 3}); len(s) > maxSlots+3 {
		t.Fatalf("%d slots", len(s))
	}
	if s := weightSlots([]uint32{200, 100}); len(s) != 3 {
		t.Fatalf("gcd not applied: %v", s)
	}
}

func TestWeightedEndpointsRoundRobin(t *testing.T) {
	var hits [2]atomic.Int64
	a := upstream(t, false, func(w http.ResponseWriter, r *http.Request) { hits[0].Add(1) })
	b := upstream(t, false, func(w http.ResponseWriter, r *http.Request) { hits[1].Add(1) })
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: []config.Endpoint{{Address: addr(a), Weight: 3}, {Address: addr(b), Weight: 1}}}))
	for i := 0; i < 40; i++ {
		readAll(t, mustGet(t, h.h1, h.url("/")))
	}
	if hits[0].Load() != 30 || hits[1].Load() != 10 {
		t.Fatalf("hits %d/%d, want 30/10", hits[0].Load(), hits[1].Load())
	}
}

// A prefix rewrite keeps the escapes of the rest of the path: the
// upstream gets "%2F" inside a segment and, with path normalization off,
// "%2e%2e" as sent, as it does without a rewrite. The rewritten path was
// sent from its decoded form, so "a%2Fb" reached the upstream as two
// segments and "%2e%2e" as a literal "..": another path than the one the
// route matched.
func TestPrefixRewriteKeepsEscapes(t *testing.T) {
	uris := make(chan string, 8)
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) { uris <- r.RequestURI })
	cfg := &config.Config{
		Listeners: config.Listeners{PathNormalization: config.PathNormalizationNone},
		Clusters:  map[string]config.Cluster{"svc": {Endpoints: eps(addr(up))}},
		Routes: []config.Route{
			{Name: "rw", Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/api/"}}, Cluster: "svc", PrefixRewrite: "/v1/"},
			{Name: "rw-esc", Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/a b/"}}, Cluster: "svc", PrefixRewrite: "/c d/"},
			{Name: "plain", Cluster: "svc"},
		},
	}
	h := startProxy(t, cfg)
	for _, tc := range []struct{ target, want string }{
		{"/files/a%2Fb?x=1", "/files/a%2Fb?x=1"},
		{"/api/files/a%2Fb?x=1", "/v1/files/a%2Fb?x=1"},
		{"/api/%2e%2e/admin", "/v1/%2e%2e/admin"},
		{"/api/plain?q", "/v1/plain?q"},
		{"/plain?", "/plain?"},
		{"/a%20b/x%2Fy", "/c%20d/x%2Fy"},
		{"/%61pi/a%2Fb", "/v1/a%2Fb"},
	} {
		sendRaw(t, h.out, "GET "+tc.target+" HTTP/1.1\r\nHost: svc\r\n\r\n").Body.Close()
		if got := <-uris; got != tc.want {
			t.Errorf("%s reached the upstream as %q, want %q", tc.target, got, tc.want)
		}
	}
}

// A header matcher on host matches the request's authority, over
// HTTP/1.1 (Host) and HTTP/2 (:authority) alike. The servers keep Host
// out of the header map, so such a matcher never saw it: an exact one
// never matched and an inverted present one matched every request.
func TestHostHeaderMatcherMatchesAuthority(t *testing.T) {
	cfg := &config.Config{Routes: []config.Route{
		{Name: "by-host", Match: config.RouteMatch{Headers: []config.HeaderMatch{{Name: "host", Exact: "a.example"}}}, DirectResponse: &config.DirectResponse{Status: 201}},
		{Name: "no-host", Match: config.RouteMatch{Headers: []config.HeaderMatch{{Name: "Host", Present: true, Invert: true}}}, DirectResponse: &config.DirectResponse{Status: 202}},
		{Name: "rest", DirectResponse: &config.DirectResponse{Status: 204}},
	}}
	h := startProxy(t, cfg)
	for name, c := range map[string]*http.Client{"http1": h.h1, "h2c": h.h2c} {
		for host, want := range map[string]int{"a.example": 201, "b.example": 204} {
			req, _ := http.NewRequest("GET", h.url("/"), nil)
			req.Host = host
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("%s, Host %s: %d, want %d", name, host, resp.StatusCode, want)
			}
		}
	}
}

// A host name with its trailing dot (a fully qualified name) matches the
// routes of the name without it: a route that denies a host cannot be
// passed by with the dot. It went to the next route.
func TestTrailingDotHostMatchesItsRoutes(t *testing.T) {
	cfg := &config.Config{Routes: []config.Route{
		{Name: "deny", Match: config.RouteMatch{Authority: []string{"admin.example.com"}}, DirectResponse: &config.DirectResponse{Status: 403}},
		{Name: "ported", Match: config.RouteMatch{Authority: []string{"svc.example:8080"}}, DirectResponse: &config.DirectResponse{Status: 202}},
		{Name: "rest", DirectResponse: &config.DirectResponse{Status: 200}},
	}}
	h := startProxy(t, cfg)
	wantHostStatuses(t, h, map[string]int{
		"admin.example.com": 403, "admin.example.com.": 403, "admin.example.com.:80": 403, "ADMIN.example.com.": 403,
		"svc.example.:8080": 202, "admin.example.com..": 200, "other.example.": 200,
	})
}

// An authority pattern written with a trailing dot (a fully qualified
// name, which validate accepts) names the same host as without it, and
// matches that host with or without the dot. The pattern kept its dot
// while the request's host lost it, so the route matched no request.
func TestAuthorityPatternWithTrailingDotMatches(t *testing.T) {
	cfg := &config.Config{Routes: []config.Route{
		{Name: "deny", Match: config.RouteMatch{Authority: []string{"admin.example.com."}}, DirectResponse: &config.DirectResponse{Status: 403}},
		{Name: "wild", Match: config.RouteMatch{Authority: []string{"*.svc.example.:8080"}}, DirectResponse: &config.DirectResponse{Status: 202}},
		{Name: "rest", DirectResponse: &config.DirectResponse{Status: 200}},
	}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	h := startProxy(t, cfg)
	wantHostStatuses(t, h, map[string]int{
		"admin.example.com": 403, "admin.example.com.": 403, "Admin.Example.com.:80": 403,
		"a.svc.example:8080": 202, "a.svc.example.:8080": 202, "a.svc.example:9090": 200,
		"other.example.com.": 200,
	})
}

// A path regex's "." matches any character of the decoded path, a line
// feed or carriage return from "%0A" or "%0D" included: a route that
// denies "/secret/.*" is not passed by with an escaped newline. RE2's
// "." stops at "\n" unless the s flag is set, so "/secret/%0A" went on
// to the next route, to the upstream.
func TestPathRegexDotMatchesEscapedNewline(t *testing.T) {
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {})
	cfg := &config.Config{
		Clusters: map[string]config.Cluster{"svc": {Endpoints: eps(addr(up))}},
		Routes: []config.Route{
			{Name: "deny", Match: config.RouteMatch{Path: config.PathMatch{Regex: "/secret/.*"}}, DirectResponse: &config.DirectResponse{Status: 403}},
			{Name: "rest", Cluster: "svc"},
		},
	}
	h := startProxy(t, cfg)
	for _, target := range []string{"/secret/a", "/secret/%0Aa", "/secret/a%0A", "/secret/%0D%0A", "/secret/%0a/x"} {
		resp := sendRaw(t, h.out, "GET "+target+" HTTP/1.1\r\nHost: svc\r\n\r\n")
		readAll(t, resp)
		if resp.StatusCode != 403 {
			t.Errorf("GET %s: %d, want the deny route's 403", target, resp.StatusCode)
		}
	}
	resp, err := h.h2c.Get(h.url("/secret/%0A"))
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if resp.StatusCode != 403 {
		t.Errorf("h2 GET /secret/%%0A: %d, want 403", resp.StatusCode)
	}
}

// "*:8080", the wildcard with a port, is valid and matches any host on
// that port: each authority pattern may carry a port, "*" too. Validate
// refused it ("a wildcard is allowed only as a leading *.").
func TestWildcardAuthorityWithPortMatchesThatPort(t *testing.T) {
	cfg := &config.Config{Routes: []config.Route{
		{Name: "by-port", Match: config.RouteMatch{Authority: []string{"*:8080"}}, DirectResponse: &config.DirectResponse{Status: 202}},
		{Name: "rest", DirectResponse: &config.DirectResponse{Status: 200}},
	}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	h := startProxy(t, cfg)
	wantHostStatuses(t, h, map[string]int{"a.example:8080": 202, "[::1]:8080": 202, "a.example:9090": 200, "a.example": 200})
}

// A port written with leading zeros ("08080") is the same port (RFC 3986
// §3.2.3: a port is a decimal number), and an IPv6 address written
// another way ("[0::1]", "[0:0:0:0:0:0:0:1]") the same address: both
// match the routes of the authority in its usual spelling, so a route
// that denies it cannot be passed by with another. They were compared as
// text and went to the next route.
func TestAuthorityMatchesPortAndIPv6AddressByValue(t *testing.T) {
	cfg := &config.Config{Routes: []config.Route{
		{Name: "deny", Match: config.RouteMatch{Authority: []string{"admin.example.com:8080", "[fd00::1]", "[::1]:9000"}}, DirectResponse: &config.DirectResponse{Status: 403}},
		{Name: "zero-pattern", Match: config.RouteMatch{Authority: []string{"svc.example:0443"}}, DirectResponse: &config.DirectResponse{Status: 202}},
		{Name: "rest", DirectResponse: &config.DirectResponse{Status: 200}},
	}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	h := startProxy(t, cfg)
	wantHostStatuses(t, h, map[string]int{
		"admin.example.com:8080": 403, "admin.example.com:08080": 403, "admin.example.com:0008080": 403,
		"admin.example.com:80800": 200, "admin.example.com:80": 200,
		"[fd00::1]": 403, "[FD00:0::1]:80": 403, "[fd00:0:0:0:0:0:0:1]": 403, "[fd00::2]": 200,
		"[::1]:9000": 403, "[0::1]:09000": 403, "[0:0:0:0:0:0:0:1]:9000": 403, "[::1]:9001": 200,
		"svc.example:443": 202, "svc.example:0443": 202, "svc.example:4430": 200,
	})
}

// A direct response of status 204 or 304 has no content (RFC 9110
// §15.3.5, §15.4.5) and, over HTTP/1.1 and HTTP/2 alike, no
// Content-Length: it was sent the length of its configured body (or
// "0") while the server, rightly, sent no body, so an HTTP/2 client read
// the response as cut short ("unexpected EOF").
func TestDirectResponseWithoutContentHasNoContentLength(t *testing.T) {
	cfg := &config.Config{Routes: []config.Route{
		// Validate refuses a body with these statuses; one built by hand
		// is not sent either.
		{Name: "204-body", Match: config.RouteMatch{Path: config.PathMatch{Exact: "/204-body"}}, DirectResponse: &config.DirectResponse{Status: 204, Body: "done"}},
		{Name: "204", Match: config.RouteMatch{Path: config.PathMatch{Exact: "/204"}}, DirectResponse: &config.DirectResponse{Status: 204}},
		{Name: "304", Match: config.RouteMatch{Path: config.PathMatch{Exact: "/304"}}, DirectResponse: &config.DirectResponse{Status: 304, Headers: config.HeaderValues{{Name: "etag", Value: `"v1"`}}}},
	}}
	h := startProxy(t, cfg)
	for name, c := range map[string]*http.Client{"http1": h.h1, "h2c": h.h2c} {
		for _, path := range []string{"/204-body", "/204", "/304"} {
			resp, err := c.Get(h.url(path))
			if err != nil {
				t.Fatalf("%s GET %s: %v", name, path, err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || len(body) != 0 {
				t.Errorf("%s GET %s: body %q, %v; want none", name, path, body, err)
			}
			if cl, ok := resp.Header["Content-Length"]; ok {
				t.Errorf("%s GET %s: Content-Length %q, want none", name, path, cl)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "" {
				t.Errorf("%s GET %s: Content-Type %q, want none", name, path, ct)
			}
		}
	}
}

// A Host (or :authority, or absolute-form target's authority) that is no
// uri-host [":" port] (RFC 9110 §7.2, RFC 3986 §3.2.2-3) is refused with
// 400 (RFC 9112 §3.2, RFC 9113 §8.3.1): a second colon outside brackets,
// or a port that is not digits. "admin.example.com:80:80" was read as a
// bare IPv6 address, passed by the route for admin.example.com, and was
// sent upstream, where servers that cut the host at its first colon take
// it for admin.example.com.
func TestMalformedAuthorityIsRefusedBeforeRouting(t *testing.T) {
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {})
	cfg := &config.Config{
		Clusters: map[string]config.Cluster{"svc": {Endpoints: eps(addr(up))}},
		Routes: []config.Route{
			{Name: "deny", Match: config.RouteMatch{Authority: []string{"admin.example.com"}}, DirectResponse: &config.DirectResponse{Status: 403}},
			{Name: "rest", Cluster: "svc"},
		},
	}
	h := startProxy(t, cfg)
	for _, host := range []string{"admin.example.com:80:80", "admin.example.com:80:", "admin.example.com::80", "admin.example.com:abc", "admin.example.com:+80", "[::1]x", "[::1]:80:80", "::1"} {
		resp := sendRaw(t, h.out, "GET / HTTP/1.1\r\nHost: "+host+"\r\n\r\n")
		readAll(t, resp)
		if resp.StatusCode != 400 {
			t.Errorf("Host %q: %d, want 400", host, resp.StatusCode)
		}
	}
	resp := sendRaw(t, h.out, "GET http://admin.example.com:80:80/ HTTP/1.1\r\nHost: admin.example.com\r\n\r\n")
	readAll(t, resp)
	if resp.StatusCode != 400 {
		t.Errorf("absolute-form target http://admin.example.com:80:80/: %d, want 400", resp.StatusCode)
	}
	req, _ := http.NewRequest("GET", h.url("/"), nil)
	req.Host = "admin.example.com:80:80"
	if resp, err := h.h2c.Do(req); err == nil {
		resp.Body.Close()
		t.Errorf(":authority admin.example.com:80:80: %d, want the stream refused", resp.StatusCode)
	}
	// What stays valid.
	for host, want := range map[string]int{"admin.example.com": 403, "admin.example.com:": 403, "admin.example.com:8080": 403, "[::1]:8080": 200, "[::1]": 200, "other": 200} {
		resp := sendRaw(t, h.out, "GET / HTTP/1.1\r\nHost: "+host+"\r\n\r\n")
		readAll(t, resp)
		if resp.StatusCode != want {
			t.Errorf("Host %q: %d, want %d", host, resp.StatusCode, want)
		}
	}
}

// wantHostStatuses sends GET / over HTTP/1.1 with each Host and checks
// the status it gets.
func wantHostStatuses(t *testing.T, h *harness, want map[string]int) {
	t.Helper()
	for host, status := range want {
		req, _ := http.NewRequest("GET", h.url("/"), nil)
		req.Host = host
		resp, err := h.h1.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != status {
			t.Errorf("Host %q: %d, want %d", host, resp.StatusCode, status)
		}
	}
}

// Proxy-Authorization and Proxy-Authenticate are stripped as hop-by-hop,
// yet a route may set them: what the route sets is for the next hop (an
// upstream that is itself a proxy, a 407 sent to the client), as RFC
// 9110 §11.7 has a proxy consume the previous hop's credentials and
// send its own. The client's and the upstream's never pass.
func TestRouteSetsProxyAuthorizationForTheNextHop(t *testing.T) {
	seen := make(chan []string, 1)
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Values("Proxy-Authorization")
		w.Header().Set("Proxy-Authenticate", `Basic realm="upstream"`)
		w.WriteHeader(http.StatusProxyAuthRequired)
	})
	cfg := simpleConfig(config.Cluster{Endpoints: eps(addr(up))}, func(r *config.Route) {
		r.RequestHeaders.Add = config.HeaderValues{{Name: "proxy-authorization", Value: "Basic c2lkZWNhcjpz"}}
		r.ResponseHeaders.Add = config.HeaderValues{{Name: "proxy-authenticate", Value: `Basic realm="mesh"`}}
	})
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	h := startProxy(t, cfg)
	resp := mustGet(t, h.h1, h.url("/"), "Proxy-Authorization", "Basic Y2xpZW50OmM=")
	readAll(t, resp)
	if got := <-seen; len(got) != 1 || got[0] != "Basic c2lkZWNhcjpz" {
		t.Errorf("upstream got Proxy-Authorization %q, want the route's alone", got)
	}
	if got := resp.Header.Values("Proxy-Authenticate"); len(got) != 1 || got[0] != `Basic realm="mesh"` {
		t.Errorf("client got Proxy-Authenticate %q, want the route's alone", got)
	}
}

// A prefix whose last '/' matched an escaped slash ("/api/" matching
// "/api%2Fx") is rewritten with that escape kept before the rest of the
// path: what follows was inside the escape's segment, and stays there.
// The escape was replaced with the prefix, so the rest began a segment
// of its own: "/api%2F../admin", which normalization leaves alone
// (its dots are no segment), reached the upstream as "/v1/../admin",
// out of /v1/. And a rest that began with an escaped slash lost it
// ("/api/%2Fx" was sent as "/v1/x"), its decoded and escaped forms
// joined with one slash between them in one and two in the other.
func TestPrefixRewriteKeepsEscapedSlashInItsSegment(t *testing.T) {
	uris := make(chan string, 8)
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) { uris <- r.RequestURI })
	cfg := &config.Config{
		Clusters: map[string]config.Cluster{"svc": {Endpoints: eps(addr(up))}},
		Routes: []config.Route{
			{Name: "api", Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/api/"}}, Cluster: "svc", PrefixRewrite: "/v1/"},
			{Name: "b", Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/b"}}, Cluster: "svc", PrefixRewrite: "/"},
			{Name: "c", Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/c/"}}, Cluster: "svc", PrefixRewrite: "/v2"},
		},
	}
	h := startProxy(t, cfg)
	for _, tc := range []struct{ target, want string }{
		{"/api%2Fx", "/v1/%2Fx"},
		{"/api%2fx?q=1", "/v1/%2Fx?q=1"},
		{"/api%2F../admin", "/v1/%2F../admin"},
		{"/api%2F..", "/v1/%2F.."},
		{"/api/%2Fx", "/v1/%2Fx"},
		{"/api/x%2Fy", "/v1/x%2Fy"},
		{"/api/x", "/v1/x"},
		{"/b%2Fx", "/%2Fx"},
		{"/b/x", "/x"},
		{"/c%2Fx", "/v2%2Fx"},
		{"/c/x", "/v2x"},
	} {
		resp := sendRaw(t, h.out, "GET "+tc.target+" HTTP/1.1\r\nHost: svc\r\n\r\n")
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d", tc.target, resp.StatusCode)
		}
		if got := <-uris; got != tc.want {
			t.Errorf("%s reached the upstream as %q, want %q", tc.target, got, tc.want)
		}
	}
}

// A request whose Host has no port is on port 80, the default of the
// http scheme the listeners serve (RFC 9110 §4.2.1): a pattern written
// with ":80" matches it, as it matches the same host with ":80" written
// out, and a pattern with another port does not.
func TestAuthorityWithoutPortIsOnPort80(t *testing.T) {
	cfg := &config.Config{Routes: []config.Route{
		{Name: "deny", Match: config.RouteMatch{Authority: []string{"admin.example.com:80", "[fd00::1]:80"}}, DirectResponse: &config.DirectResponse{Status: 403}},
		{Name: "any-80", Match: config.RouteMatch{Authority: []string{"*:80"}}, DirectResponse: &config.DirectResponse{Status: 202}},
		{Name: "rest", DirectResponse: &config.DirectResponse{Status: 200}},
	}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	h := startProxy(t, cfg)
	wantHostStatuses(t, h, map[string]int{
		"admin.example.com": 403, "admin.example.com:80": 403, "admin.example.com.": 403, "ADMIN.example.com:080": 403,
		"[fd00::1]": 403, "[fd00::1]:80": 403,
		"other.example": 202, "other.example:80": 202,
		"admin.example.com:8080": 200, "other.example:8080": 200, "[fd00::1]:8080": 200,
	})
}

// A route that appends a User-Agent to a request that came without one
// sends that value alone. The proxy marks a request without one with an
// empty value (so that no transport adds its own), and the route's
// value was appended to that mark: the upstream got an empty
// User-Agent line beside the route's.
func TestRouteAppendedUserAgentIsSentAlone(t *testing.T) {
	for _, proto := range []config.Protocol{config.ProtocolHTTP1, config.ProtocolHTTP2} {
		t.Run(string(proto), func(t *testing.T) {
			seen := make(chan []string, 1)
			up := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {
				seen <- r.Header.Values("User-Agent")
			})
			cfg := simpleConfig(config.Cluster{Endpoints: eps(addr(up)), Protocol: proto}, func(r *config.Route) {
				r.RequestHeaders.Add = config.HeaderValues{{Name: "user-agent", Value: "sidecar/1", Append: true}}
			})
			if err := cfg.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			h := startProxy(t, cfg)
			// An empty value keeps net/http from sending its own.
			readAll(t, mustGet(t, h.h1, h.url("/"), "User-Agent", ""))
			if got := <-seen; len(got) != 1 || got[0] != "sidecar/1" {
				t.Errorf("upstream got User-Agent %q, want [\"sidecar/1\"]", got)
			}
			// A client's own is kept, the route's appended.
			readAll(t, mustGet(t, h.h1, h.url("/"), "User-Agent", "app/2"))
			if got := <-seen; len(got) != 2 || got[0] != "app/2" || got[1] != "sidecar/1" {
				t.Errorf("upstream got User-Agent %q, want [\"app/2\" \"sidecar/1\"]", got)
			}
		})
	}
}

// A header mutation's add list is applied in its order, as Envoy
// applies headers_to_add: an entry that replaces replaces what the
// entries before it appended. Entries that replace were applied before
// all those that append, so [{x-tag: a, append}, {x-tag: b}] sent
// "b, a" instead of "b".
func TestHeaderMutationAddListAppliesInOrder(t *testing.T) {
	seen := make(chan []string, 1)
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Values("X-Tag")
		w.Header().Set("X-Tag", "up")
	})
	list := config.HeaderValues{
		{Name: "x-tag", Value: "a", Append: true},
		{Name: "x-tag", Value: "b"},
		{Name: "x-tag", Value: "c", Append: true},
	}
	cfg := simpleConfig(config.Cluster{Endpoints: eps(addr(up))}, func(r *config.Route) {
		r.RequestHeaders.Add = list
		r.ResponseHeaders.Add = list
	})
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	h := startProxy(t, cfg)
	resp := mustGet(t, h.h1, h.url("/"), "X-Tag", "client")
	readAll(t, resp)
	if got := <-seen; !slices.Equal(got, []string{"b", "c"}) {
		t.Errorf("upstream got X-Tag %q, want [b c]", got)
	}
	if got := resp.Header.Values("X-Tag"); !slices.Equal(got, []string{"b", "c"}) {
		t.Errorf("client got X-Tag %q, want [b c]", got)
	}
}

// A direct response's headers are built as a response_headers add list
// is: an entry that replaces replaces the values before it. Every entry
// was appended, so [{x-a: 1}, {x-a: 2}] sent both values.
func TestDirectResponseHeadersReplaceAsAnAddList(t *testing.T) {
	cfg := &config.Config{Routes: []config.Route{{
		Name: "health",
		DirectResponse: &config.DirectResponse{Status: 200, Headers: config.HeaderValues{
			{Name: "x-a", Value: "1"}, {Name: "x-a", Value: "2"},
			{Name: "x-b", Value: "1"}, {Name: "x-b", Value: "2", Append: true},
		}},
	}}}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	h := startProxy(t, cfg)
	resp := mustGet(t, h.h1, h.url("/"))
	readAll(t, resp)
	if got := resp.Header.Values("X-A"); !slices.Equal(got, []string{"2"}) {
		t.Errorf("X-A = %q, want [2]", got)
	}
	if got := resp.Header.Values("X-B"); !slices.Equal(got, []string{"1", "2"}) {
		t.Errorf("X-B = %q, want [1 2]", got)
	}
}
