package proxy

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// echoUpstream answers each request with the Host, escaped path and
// query it got, one per line, over HTTP/1.1 and h2c.
func echoUpstream(t *testing.T) string {
	up := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s\n%s\n%s\n%s", r.Host, r.URL.EscapedPath(), r.URL.RawQuery, r.Proto)
	})
	return addr(up)
}

// get sends a GET for target (a path and query) with Host host through
// client c, and returns the status and the echoed lines.
func getEcho(t *testing.T, c *http.Client, h *harness, host, target string) (int, []string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+h.out+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.URL.Opaque = target // sent as written
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.Split(string(b), "\n")
}

// host_rewrite sends its host upstream in place of the client's,
// auto_host_rewrite the address of the endpoint the attempt goes to,
// over HTTP/1.1 (Host) and HTTP/2 (:authority) upstreams alike; the
// route is matched on the client's authority.
func TestHostRewriteSendsTheRouteOrEndpointHost(t *testing.T) {
	up := echoUpstream(t)
	for _, proto := range []config.Protocol{config.ProtocolHTTP1, config.ProtocolHTTP2} {
		t.Run(string(proto), func(t *testing.T) {
			cfg := &config.Config{
				Clusters: map[string]config.Cluster{"svc": {Endpoints: eps(up), Protocol: proto}},
				Routes: []config.Route{
					{Name: "literal", Match: config.RouteMatch{Authority: []string{"api.local"}}, Cluster: "svc", HostRewrite: "backend.example.com:8443"},
					{Name: "auto", Match: config.RouteMatch{Authority: []string{"ext.local"}}, Cluster: "svc", AutoHostRewrite: true},
					{Name: "plain", Cluster: "svc"},
				},
			}
			h := startProxy(t, cfg)
			wantProto := "HTTP/1.1"
			if proto == config.ProtocolHTTP2 {
				wantProto = "HTTP/2.0"
			}
			for _, c := range []struct{ host, want string }{
				{"api.local", "backend.example.com:8443"},
				{"ext.local", up},
				{"other.local:81", "other.local:81"},
			} {
				for _, client := range []string{"h1", "h2c"} {
					status, got := getEcho(t, h.client(client), h, c.host, "/p?q=1")
					if status != 200 || len(got) != 4 || got[0] != c.want || got[3] != wantProto {
						t.Errorf("%s from %s: status %d, upstream got %q; want host %q over %s", c.host, client, status, got, c.want, wantProto)
					}
				}
			}
		})
	}
}

// An endpoint on its scheme's default port is sent the Host a client
// would send it: without the port.
func TestEndpointAuthorityLeavesOutTheDefaultPort(t *testing.T) {
	for _, c := range []struct{ addr, scheme, want string }{
		{"api.example.com:80", "http", "api.example.com"},
		{"api.example.com:443", "https", "api.example.com"},
		{"api.example.com:443", "http", "api.example.com:443"},
		{"api.example.com:80", "https", "api.example.com:80"},
		{"[::1]:80", "http", "[::1]"},
		{"10.0.0.1:8080", "http", "10.0.0.1:8080"},
	} {
		if got := endpointAuthority(c.addr, c.scheme); got != c.want {
			t.Errorf("endpointAuthority(%q, %q) = %q, want %q", c.addr, c.scheme, got, c.want)
		}
	}
}

// regex_rewrite replaces every match in the decoded, normalized path
// with its substitution, "\1" naming a group; the query goes on as
// sent, and what the new path takes from the old keeps its escapes.
func TestRegexRewriteRewritesThePath(t *testing.T) {
	up := echoUpstream(t)
	cfg := &config.Config{
		Clusters: map[string]config.Cluster{"svc": {Endpoints: eps(up)}},
		Routes: []config.Route{
			{Name: "swap", Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/service/"}}, Cluster: "svc",
				RegexRewrite: &config.RegexRewrite{Pattern: `^/service/([^/]+)(/.*)$`, Substitution: `\2/instance/\1`}},
			{Name: "all", Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/dash/"}}, Cluster: "svc",
				RegexRewrite: &config.RegexRewrite{Pattern: `-`, Substitution: `_`}},
			{Name: "text", Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/text/"}}, Cluster: "svc",
				RegexRewrite: &config.RegexRewrite{Pattern: `^/text/(.*)$`, Substitution: `/a b/$1\\\1`}},
			{Name: "bad", Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/bad/"}}, Cluster: "svc",
				RegexRewrite: &config.RegexRewrite{Pattern: `^/bad/`, Substitution: `x/`}},
		},
	}
	h := startProxy(t, cfg)
	for _, c := range []struct{ target, path, query string }{
		{"/service/foo/v1/api?x=1&y", "/v1/api/instance/foo", "x=1&y"},
		{"/service/a%20b/c", "/c/instance/a%20b", ""},
		// An escaped slash is a '/' to the pattern, as to path
		// matching, but stays escaped where it goes.
		{"/service/foo/a%2Fb", "/a%2Fb/instance/foo", ""},
		{"/service/x/../y/z", "/z/instance/y", ""}, // after normalization
		{"/service/nomatch", "/service/nomatch", ""},
		{"/dash/a-b-c?k=a-b", "/dash/a_b_c", "k=a-b"},
		// Text is escaped as sent; "$1" is text, "\\" a backslash.
		{"/text/q", "/a%20b/$1%5Cq", ""},
	} {
		for _, client := range []string{"h1", "h2c"} {
			status, got := getEcho(t, h.client(client), h, "svc", c.target)
			if status != 200 || len(got) != 4 || got[1] != c.path || got[2] != c.query {
				t.Errorf("%s from %s: status %d, upstream got %q; want path %q, query %q", c.target, client, status, got, c.path, c.query)
			}
		}
	}
	// A rewrite whose result does not begin with "/" is refused, as is
	// one that begins with an escaped one.
	for _, target := range []string{"/bad/x", "/service/a%2Fb/c"} {
		req, _ := http.NewRequest(http.MethodGet, h.url("/"), nil)
		req.URL.Opaque = target
		resp, err := h.h1.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body := readAll(t, resp)
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("X-Outrigger-Error") != "invalid_request" || !strings.Contains(body, "regex_rewrite") {
			t.Errorf("%s: %d %q %q", target, resp.StatusCode, resp.Header.Get("X-Outrigger-Error"), body)
		}
	}
}

func TestCompileSubstitution(t *testing.T) {
	for _, c := range []struct {
		sub    string
		groups int
		want   string // pieces as text or \N
		err    bool
	}{
		{`/x/\1\0`, 1, `[/x/][\1][\0]`, false},
		{`a\\b`, 0, `[a\b]`, false},
		{`\2`, 1, ``, true},
		{`\`, 1, ``, true},
		{`\n`, 1, ``, true},
		{`${1}`, 1, `[${1}]`, false},
		// A reference is one digit, as in RE2's Rewrite (and so
		// Envoy's): "\10" is group 1, then "0", however many groups.
		{`\10`, 10, `[\1][0]`, false},
		{`\1\0`, 0, ``, true},
	} {
		ps, err := compileSubstitution(c.sub, c.groups)
		if (err != nil) != c.err {
			t.Errorf("%q: error %v", c.sub, err)
			continue
		}
		var b strings.Builder
		for _, p := range ps {
			if p.group >= 0 {
				fmt.Fprintf(&b, `[\%d]`, p.group)
			} else {
				fmt.Fprintf(&b, "[%s]", p.text)
			}
		}
		if b.String() != c.want {
			t.Errorf("%q: pieces %s, want %s", c.sub, b.String(), c.want)
		}
	}
}

// A mirrored copy carries the route's host_rewrite with "-shadow", as
// Envoy's copies carry the rewritten host, and the rewritten path;
// under auto_host_rewrite it carries the client's host, its endpoint
// being of the mirror's cluster.
func TestMirroredCopyCarriesTheRewrites(t *testing.T) {
	primary := echoUpstream(t)
	shadow, got := mirrorUpstream(t, nil)
	for _, c := range []struct {
		name     string
		mod      func(*config.Route)
		wantHost string
	}{
		{"host_rewrite", func(r *config.Route) { r.HostRewrite = "backend.example:8443" }, "backend.example-shadow:8443"},
		{"auto_host_rewrite", func(r *config.Route) { r.AutoHostRewrite = true }, "api.example-shadow"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := startProxy(t, mirrorConfig(primary, shadow, nil, c.mod, func(r *config.Route) {
				r.RegexRewrite = &config.RegexRewrite{Pattern: "^/old/", Substitution: "/new/"}
			}))
			status, _ := getEcho(t, h.h1, h, "api.example", "/old/x?q=1")
			if status != 200 {
				t.Fatalf("status %d", status)
			}
			if m := receive(t, got); m.host != c.wantHost || m.path != "/new/x?q=1" {
				t.Errorf("mirror got host %q, path %q; want %q, /new/x?q=1", m.host, m.path, c.wantHost)
			}
		})
	}
}

// append_x_forwarded_host appends the client's Host to x-forwarded-host
// when the route rewrites the Host, after what the client sent and not
// twice in a row (Envoy's append_x_forwarded_host); without it, or
// without a rewrite, x-forwarded-host goes on as the client sent it.
func TestAppendXForwardedHostNamesTheClientsHost(t *testing.T) {
	up := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s\n%s", r.Host, strings.Join(r.Header.Values("X-Forwarded-Host"), "|"))
	})
	for _, proto := range []config.Protocol{config.ProtocolHTTP1, config.ProtocolHTTP2} {
		t.Run(string(proto), func(t *testing.T) {
			cfg := &config.Config{
				Clusters: map[string]config.Cluster{"svc": {Endpoints: eps(addr(up)), Protocol: proto}},
				Routes: []config.Route{
					{Name: "literal", Match: config.RouteMatch{Authority: []string{"api.local"}}, Cluster: "svc", HostRewrite: "backend.example", AppendXForwardedHost: true},
					{Name: "auto", Match: config.RouteMatch{Authority: []string{"ext.local"}}, Cluster: "svc", AutoHostRewrite: true, AppendXForwardedHost: true},
					{Name: "off", Match: config.RouteMatch{Authority: []string{"off.local"}}, Cluster: "svc", HostRewrite: "backend.example"},
					{Name: "plain", Cluster: "svc"},
				},
			}
			h := startProxy(t, cfg)
			for _, c := range []struct {
				host     string
				xfh      []string // sent by the client
				wantHost string
				wantXFH  string // the upstream's lines, joined with "|"
			}{
				{"api.local", nil, "backend.example", "api.local"},
				{"api.local:8080", []string{"edge.example"}, "backend.example", "edge.example, api.local:8080"},
				{"api.local", []string{"a.example", "b.example"}, "backend.example", "a.example, b.example, api.local"},
				// The client's host last already: not appended again.
				{"api.local", []string{"edge.example, api.local"}, "backend.example", "edge.example, api.local"},
				{"ext.local", nil, addr(up), "ext.local"},
				{"off.local", []string{"edge.example"}, "backend.example", "edge.example"},
				{"other.local", []string{"edge.example"}, "other.local", "edge.example"},
				{"other.local", nil, "other.local", ""},
			} {
				for _, client := range []string{"h1", "h2c"} {
					req, _ := http.NewRequest(http.MethodGet, h.url("/"), nil)
					req.Host = c.host
					for _, v := range c.xfh {
						req.Header.Add("X-Forwarded-Host", v)
					}
					resp, body := sendReq(t, h.client(client), req)
					if got := strings.SplitN(body, "\n", 2); resp.StatusCode != 200 || len(got) != 2 || got[0] != c.wantHost || got[1] != c.wantXFH {
						t.Errorf("%s from %s with %q: %d, upstream got %q; want host %q, x-forwarded-host %q", c.host, client, c.xfh, resp.StatusCode, got, c.wantHost, c.wantXFH)
					}
				}
			}
		})
	}
}

// Every attempt carries the same x-forwarded-host, the client's Host
// appended once: a retry under auto_host_rewrite, which goes with
// another endpoint's Host, appends neither the first attempt's Host nor
// the client's again.
func TestAppendXForwardedHostIsTheSameOnEveryAttempt(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	record := func(status int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen = append(seen, r.Host+" "+strings.Join(r.Header.Values("X-Forwarded-Host"), "|"))
			mu.Unlock()
			w.WriteHeader(status)
		}
	}
	a, b := upstream(t, false, record(503)), upstream(t, false, record(200))
	h := startProxy(t, retryCfg([]string{addr(a), addr(b)}, config.RetryPolicy{Attempts: 1, RetryOn: []config.RetryCondition{"5xx"}, Backoff: config.Backoff{Base: time.Millisecond}},
		func(r *config.Route) { r.AutoHostRewrite, r.AppendXForwardedHost = true, true }))
	req, _ := http.NewRequest(http.MethodGet, h.url("/"), nil)
	req.Host = "api.local"
	req.Header.Set("X-Forwarded-Host", "edge.example")
	if resp, _ := sendReq(t, h.h1, req); resp.StatusCode != 200 {
		t.Fatalf("status %d, want 200 from the retry", resp.StatusCode)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{addr(a) + " edge.example, api.local", addr(b) + " edge.example, api.local"}
	if !slices.Equal(seen, want) {
		t.Errorf("attempts got %q, want %q", seen, want)
	}
}

// sendReq sends req through client c and returns the response with its body
// read.
func sendReq(t *testing.T, c *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	return resp, readAll(t, resp)
}
