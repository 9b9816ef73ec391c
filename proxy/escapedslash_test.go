package proxy

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// escapedSlashProxy is pathConfig's proxy (a direct 403 for /admin, the
// rest to an upstream that echoes the request target it got) under
// path_with_escaped_slashes a, with an inbound listener to the same
// upstream. It returns the upstream's call count.
func escapedSlashProxy(t *testing.T, a config.PathWithEscapedSlashes) (*config.Config, *harness, *atomic.Int64) {
	t.Helper()
	calls := new(atomic.Int64)
	up := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		fmt.Fprint(w, r.RequestURI)
	})
	cfg := &config.Config{
		Listeners: config.Listeners{PathWithEscapedSlashes: a, Inbound: config.InboundListener{App: addr(up)}},
		Clusters:  map[string]config.Cluster{"svc": {Endpoints: eps(addr(up))}},
		Routes: []config.Route{
			{Name: "deny-admin", Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/admin"}},
				DirectResponse: &config.DirectResponse{Status: 403, Body: "denied"}},
			{Name: "rest", Cluster: "svc"},
			{Name: "in-deny-admin", Listener: config.Inbound, Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/admin"}},
				DirectResponse: &config.DirectResponse{Status: 403, Body: "denied"}},
		},
	}
	return cfg, startProxy(t, cfg), calls
}

// sendEscaped sends method target to the listener at hostport, over
// HTTP/1.1 written on the socket (Go's client would rewrite some
// targets) or h2c (which sends :path as written), and does not follow
// a redirect.
func sendEscaped(t *testing.T, h *harness, client, hostport, method, target string, hdr ...string) *http.Response {
	t.Helper()
	if client == "h1" {
		var b strings.Builder
		fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: svc\r\n", method, target)
		for i := 0; i+1 < len(hdr); i += 2 {
			fmt.Fprintf(&b, "%s: %s\r\n", hdr[i], hdr[i+1])
		}
		if method == http.MethodPost {
			b.WriteString("Content-Length: 4\r\n\r\nbody")
		} else {
			b.WriteString("\r\n")
		}
		return sendRaw(t, hostport, b.String())
	}
	var body *strings.Reader
	if method == http.MethodPost {
		body = strings.NewReader("body")
	}
	req, err := http.NewRequest(method, "http://"+hostport+target, nil)
	if body != nil {
		req, err = http.NewRequest(method, "http://"+hostport+target, body)
	}
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := h.h2c.Transport.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	return resp
}

func escapedSlashReplies(h *harness) (rejected, redirected float64) {
	return testutil.ToFloat64(h.p.m.localByCode[ReasonPathWithEscapedSlash]),
		testutil.ToFloat64(h.p.m.localByCode[ReasonEscapedSlashRedirect])
}

// A path with an escaped slash is routed and forwarded as it came under
// keep (the default), so /public%2F..%2Fadmin passes the route that
// denies /admin; reject refuses it 400; unescape_and_forward makes the
// %2F a separator, so the dots take it to /admin, which is denied;
// unescape_and_redirect answers 307 to that path. The query is never
// changed. HTTP/1.1 and h2c alike.
func TestPathWithEscapedSlashes(t *testing.T) {
	const query = "?q=%2F..%2Fx&r=a\\b"
	for _, client := range []string{"h1", "h2c"} {
		for _, a := range []config.PathWithEscapedSlashes{"", config.PathWithEscapedSlashesKeep,
			config.PathWithEscapedSlashesReject, config.PathWithEscapedSlashesUnescapeAndForward,
			config.PathWithEscapedSlashesUnescapeAndRedirect} {
			t.Run(client+"/"+string(a), func(t *testing.T) {
				_, h, calls := escapedSlashProxy(t, a)
				for _, target := range []string{"/public%2F..%2Fadmin", "/api/..%2fadmin/users", "/x/..%2F..%2Fadmin"} {
					before := calls.Load()
					resp := sendEscaped(t, h, client, h.out, http.MethodGet, target+query)
					body := readAll(t, resp)
					switch a {
					case "", config.PathWithEscapedSlashesKeep:
						// As sent, but for the hex normalization upper-cases.
						if resp.StatusCode != 200 || body != strings.ReplaceAll(target, "%2f", "%2F")+query {
							t.Errorf("GET %s: %d, upstream got %q; want 200, the target as sent", target, resp.StatusCode, body)
						}
					case config.PathWithEscapedSlashesReject:
						if resp.StatusCode != 400 || resp.Header.Get(HeaderError) != "path_with_escaped_slash" {
							t.Errorf("GET %s: %d %s %q; want 400 path_with_escaped_slash", target, resp.StatusCode, resp.Header.Get(HeaderError), body)
						}
					case config.PathWithEscapedSlashesUnescapeAndForward:
						if resp.StatusCode != 403 || body != "denied" {
							t.Errorf("GET %s: %d %q; want the /admin route's 403", target, resp.StatusCode, body)
						}
					case config.PathWithEscapedSlashesUnescapeAndRedirect:
						want := "/admin" + query
						if target == "/api/..%2fadmin/users" {
							want = "/admin/users" + query
						}
						if resp.StatusCode != 307 || resp.Header.Get("Location") != want {
							t.Errorf("GET %s: %d Location %q; want 307 %q", target, resp.StatusCode, resp.Header.Get("Location"), want)
						}
						if resp.Header.Get(HeaderError) != "" {
							t.Errorf("GET %s: a redirect with x-outrigger-error %q", target, resp.Header.Get(HeaderError))
						}
					}
					if n := calls.Load() - before; n != 0 && a != "" && a != config.PathWithEscapedSlashesKeep {
						t.Errorf("GET %s: the upstream was called %d times", target, n)
					}
				}

				// A path without escaped slashes goes through under every
				// action, as does one whose '%' escapes something else.
				for _, target := range []string{"/plain/path?x=%2F", "/a%20b/c"} {
					resp := sendEscaped(t, h, client, h.out, http.MethodGet, target)
					if body := readAll(t, resp); resp.StatusCode != 200 || body != target {
						t.Errorf("GET %s: %d, upstream got %q; want 200, the target as sent", target, resp.StatusCode, body)
					}
				}

				// An escaped slash that exposes no dots: forwarded as a
				// separator, or redirected to, and a POST is redirected
				// 307 as well, so that its client sends the body again.
				for _, method := range []string{http.MethodGet, http.MethodPost} {
					resp := sendEscaped(t, h, client, h.out, method, "/files/a%2Fb%2Fc?x=1")
					body := readAll(t, resp)
					switch a {
					case "", config.PathWithEscapedSlashesKeep:
						if body != "/files/a%2Fb%2Fc?x=1" {
							t.Errorf("%s: upstream got %q", method, body)
						}
					case config.PathWithEscapedSlashesReject:
						if resp.StatusCode != 400 {
							t.Errorf("%s: %d, want 400", method, resp.StatusCode)
						}
					case config.PathWithEscapedSlashesUnescapeAndForward:
						if resp.StatusCode != 200 || body != "/files/a/b/c?x=1" {
							t.Errorf("%s: %d, upstream got %q; want /files/a/b/c?x=1", method, resp.StatusCode, body)
						}
					case config.PathWithEscapedSlashesUnescapeAndRedirect:
						if resp.StatusCode != 307 || resp.Header.Get("Location") != "/files/a/b/c?x=1" {
							t.Errorf("%s: %d Location %q; want 307 /files/a/b/c?x=1", method, resp.StatusCode, resp.Header.Get("Location"))
						}
					}
				}

				// An escaped backslash: refused by reject; the others send
				// it on escaped (a bare '\' cannot be sent), as keep does.
				resp := sendEscaped(t, h, client, h.out, http.MethodGet, "/a%5cb")
				body := readAll(t, resp)
				if a == config.PathWithEscapedSlashesReject {
					if resp.StatusCode != 400 {
						t.Errorf("GET /a%%5cb: %d, want 400", resp.StatusCode)
					}
				} else if resp.StatusCode != 200 || body != "/a%5Cb" {
					t.Errorf("GET /a%%5cb: %d, upstream got %q; want /a%%5Cb", resp.StatusCode, body)
				}

				rejected, redirected := escapedSlashReplies(h)
				switch a {
				case config.PathWithEscapedSlashesReject:
					if rejected != 6 || redirected != 0 {
						t.Errorf("local replies: %v path_with_escaped_slash, %v escaped_slash_redirect; want 6, 0", rejected, redirected)
					}
				case config.PathWithEscapedSlashesUnescapeAndRedirect:
					if rejected != 0 || redirected != 5 {
						t.Errorf("local replies: %v path_with_escaped_slash, %v escaped_slash_redirect; want 0, 5", rejected, redirected)
					}
				default:
					if rejected != 0 || redirected != 0 {
						t.Errorf("local replies: %v path_with_escaped_slash, %v escaped_slash_redirect; want none", rejected, redirected)
					}
				}
			})
		}
	}
}

// A bare '\' goes upstream as %5C, so reject refuses it as it does %5C.
func TestPathWithEscapedSlashesRejectsBareBackslash(t *testing.T) {
	_, h, calls := escapedSlashProxy(t, config.PathWithEscapedSlashesReject)
	resp := sendRaw(t, h.out, "GET /public\\..\\admin HTTP/1.1\r\nHost: svc\r\n\r\n")
	if body := readAll(t, resp); resp.StatusCode != 400 || calls.Load() != 0 {
		t.Errorf("GET /public\\..\\admin: %d %q, %d upstream calls; want 400 and none", resp.StatusCode, body, calls.Load())
	}
}

// The option applies on the inbound listener too, and a reload changes
// it for the requests that start after it.
func TestPathWithEscapedSlashesInboundAndReload(t *testing.T) {
	cfg, h, _ := escapedSlashProxy(t, "")
	get := func(hostport string) (int, string) {
		resp := sendRaw(t, hostport, "GET /public%2F..%2Fadmin HTTP/1.1\r\nHost: svc\r\n\r\n")
		return resp.StatusCode, readAll(t, resp)
	}
	for _, hp := range []string{h.out, h.in} {
		if status, body := get(hp); status != 200 || body != "/public%2F..%2Fadmin" {
			t.Fatalf("%s under keep: %d %q, want the path forwarded as sent", hp, status, body)
		}
	}
	cfg.Listeners.PathWithEscapedSlashes = config.PathWithEscapedSlashesUnescapeAndForward
	if err := h.p.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	for _, hp := range []string{h.out, h.in} {
		if status, body := get(hp); status != 403 {
			t.Errorf("%s after a reload to unescape_and_forward: %d %q, want the /admin route's 403", hp, status, body)
		}
	}
	cfg.Listeners.PathWithEscapedSlashes = config.PathWithEscapedSlashesReject
	if err := h.p.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	for _, hp := range []string{h.out, h.in} {
		if status, _ := get(hp); status != 400 {
			t.Errorf("%s after a reload to reject: %d, want 400", hp, status)
		}
	}
}

// With path_normalization none, unescape_and_forward unescapes and
// leaves the dots, as Envoy does without normalize_path.
func TestUnescapeAndForwardWithoutNormalization(t *testing.T) {
	cfg, h, _ := escapedSlashProxy(t, config.PathWithEscapedSlashesUnescapeAndForward)
	cfg.Listeners.PathNormalization = config.PathNormalizationNone
	if err := h.p.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	resp := sendRaw(t, h.out, "GET /files/a%2Fb/./c HTTP/1.1\r\nHost: svc\r\n\r\n")
	if body := readAll(t, resp); body != "/files/a/b/./c" {
		t.Errorf("upstream got %q, want /files/a/b/./c", body)
	}
}

// A gRPC call whose path has an escaped slash is answered as the other
// local replies are, trailers-only INTERNAL with x-outrigger-error,
// under reject and under unescape_and_redirect (a gRPC client cannot
// follow a redirect; Envoy answers it the same). Under
// unescape_and_forward the call goes on, with the slash unescaped.
func TestPathWithEscapedSlashesGRPC(t *testing.T) {
	svc := &testService{}
	target := startGRPCServer(t, svc)
	for _, a := range []config.PathWithEscapedSlashes{config.PathWithEscapedSlashesReject,
		config.PathWithEscapedSlashesUnescapeAndRedirect, config.PathWithEscapedSlashesUnescapeAndForward} {
		t.Run(string(a), func(t *testing.T) {
			cfg := grpcConfig(target)
			cfg.Listeners.PathWithEscapedSlashes = a
			h := startProxy(t, cfg)
			cc, err := grpc.NewClient("passthrough:///"+h.out, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cc.Close() })
			calls := svc.calls.Load()
			var tr metadata.MD
			err = cc.Invoke(ctxT(t, 5*time.Second), "/grpc.testing.TestService/x%2F..%2FUnaryCall",
				&testpb.SimpleRequest{}, &testpb.SimpleResponse{}, grpc.Trailer(&tr))
			if a == config.PathWithEscapedSlashesUnescapeAndForward {
				if err != nil || svc.calls.Load() != calls+1 {
					t.Fatalf("%v, %d calls; want the call to reach UnaryCall", err, svc.calls.Load()-calls)
				}
				return
			}
			if st := status.Convert(err); st.Code() != codes.Internal {
				t.Fatalf("%v %q, want INTERNAL", st.Code(), st.Message())
			}
			if v := tr.Get("x-outrigger-error"); len(v) != 1 || v[0] != "path_with_escaped_slash" {
				t.Errorf("x-outrigger-error %v", tr)
			}
			if n := svc.calls.Load() - calls; n != 0 {
				t.Errorf("the service was called %d times", n)
			}
		})
	}
	// An h2c request with a gRPC content type but no gRPC client: the
	// answer is trailers-only too, not a redirect.
	_, h, _ := escapedSlashProxy(t, config.PathWithEscapedSlashesUnescapeAndRedirect)
	resp := sendEscaped(t, h, "h2c", h.out, http.MethodPost, "/svc/a%2FM", "Content-Type", "application/grpc")
	readAll(t, resp)
	if resp.StatusCode != 200 || resp.Header.Get("Grpc-Status") != "13" || resp.Header.Get("Location") != "" {
		t.Errorf("%d grpc-status %q Location %q; want 200, 13, none", resp.StatusCode, resp.Header.Get("Grpc-Status"), resp.Header.Get("Location"))
	}
}

// The check every request under a non-default action goes through
// costs no allocation for a path without '%'.
func TestEscapedSlashCheckAllocatesNothing(t *testing.T) {
	u := &url.URL{Path: "/api/v1/users/42/orders", RawQuery: "page=2"}
	for _, a := range []escapedSlashAction{escapedSlashesReject, escapedSlashesForward, escapedSlashesRedirect} {
		allocs := testing.AllocsPerRun(100, func() {
			if reject, redirect := applyEscapedSlashes(a, u); reject || redirect {
				t.Fatalf("action %d: reject %v, redirect %v for a plain path", a, reject, redirect)
			}
		})
		if allocs != 0 {
			t.Errorf("action %d: the check cost %v allocations", a, allocs)
		}
	}
}
