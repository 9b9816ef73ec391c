package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

const (
	idOrders = "spiffe://cluster.local/ns/shop/sa/orders"
	idOps    = "spiffe://cluster.local/ns/ops/sa/deployer"
	idOther  = "spiffe://cluster.local/ns/other/sa/x"
)

// shopRules refuses /admin to everyone, then lets orders read items,
// anyone of namespace ops do anything, and anyone at all read a health
// path.
func shopRules() config.Authorization {
	return config.Authorization{
		Deny: []config.AuthorizationRule{{Name: "block-admin", To: config.AuthorizationOperation{Paths: []string{"/admin*"}}}},
		Allow: []config.AuthorizationRule{
			{Name: "orders-read", From: config.AuthorizationSource{Principals: []string{idOrders}},
				To: config.AuthorizationOperation{Methods: []string{"GET", "HEAD"}, Paths: []string{"/items", "/items/*"}}},
			{Name: "ops", From: config.AuthorizationSource{Namespaces: []string{"ops"}}},
			{Name: "health", To: config.AuthorizationOperation{Paths: []string{"*/health"}}},
		},
	}
}

// countingApp answers "ok" and counts the requests it served.
type countingApp struct{ n atomic.Int64 }

func (a *countingApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.n.Add(1)
	io.WriteString(w, "ok")
}

func authzDenied(h *harness, l Listener, rule string) float64 {
	return counterValue(h.p.m.authzDenied.WithLabelValues(l.String(), rule))
}

// Over mutual TLS on the inbound listener, HTTP/1.1 and HTTP/2, each
// caller gets what the rules give its certificate's URI SAN: a refused
// request is answered 403 rbac_denied with Envoy's text and never
// reaches the app, and is counted by the deny rule that refused it or,
// matching no allow rule, under rule "". A caller without a certificate
// has no principal, whatever x-forwarded-client-cert it sends.
func TestAuthorizationByCallerIdentityOverMutualTLS(t *testing.T) {
	pki := newListenerPKI(t)
	app := &countingApp{}
	up := upstream(t, false, app.ServeHTTP)
	cfg := inboundTLSConfig(addr(up), config.ListenerTLS{Enabled: true, CertFile: pki.certFile, KeyFile: pki.keyFile, ClientCAFile: pki.caFile})
	cfg.Authorization = shopRules()
	h := startProxy(t, cfg)

	forged := []string{"X-Forwarded-Client-Cert", "Hash=x;URI=" + idOrders}
	for _, h2 := range []bool{false, true} {
		clients := map[string]*http.Client{
			"orders": tlsClient(t, pki.ca, clientCert(t, pki.ca, idOrders), h2),
			"ops":    tlsClient(t, pki.ca, clientCert(t, pki.ca, idOps), h2),
			"other":  tlsClient(t, pki.ca, clientCert(t, pki.ca, idOther), h2),
			"none":   tlsClient(t, pki.ca, nil, h2),
		}
		for _, tc := range []struct {
			who, method, path string
			hdr               []string
			want              int
			rule              string // the deny series that counts a 403
		}{
			{"orders", "GET", "/items", nil, 200, ""},
			{"orders", "HEAD", "/items/7", nil, 200, ""},
			{"orders", "POST", "/items", nil, 403, ""},
			{"orders", "GET", "/carts", nil, 403, ""},
			{"orders", "GET", "/admin/users", nil, 403, "block-admin"},
			// Normalized before the rules see it, as before routing.
			{"orders", "GET", "/items/../admin", nil, 403, "block-admin"},
			{"ops", "DELETE", "/carts/1", nil, 200, ""},
			{"ops", "GET", "/admin", nil, 403, "block-admin"},
			{"other", "GET", "/items", nil, 403, ""},
			{"other", "GET", "/a/health", nil, 200, ""},
			{"none", "GET", "/items", forged, 403, ""},
			{"none", "GET", "/health", forged, 200, ""},
		} {
			name := fmt.Sprintf("h2=%v %s %s %s", h2, tc.who, tc.method, tc.path)
			before, denied := app.n.Load(), authzDenied(h, Inbound, tc.rule)
			req, err := http.NewRequest(tc.method, "https://"+h.in+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i+1 < len(tc.hdr); i += 2 {
				req.Header.Set(tc.hdr[i], tc.hdr[i+1])
			}
			resp, err := clients[tc.who].Do(req)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			body := readAll(t, resp)
			if resp.StatusCode != tc.want {
				t.Fatalf("%s: got %d %q, want %d", name, resp.StatusCode, body, tc.want)
			}
			if tc.want == 200 {
				if app.n.Load() != before+1 {
					t.Fatalf("%s: allowed but the app did not serve it", name)
				}
				continue
			}
			if e := resp.Header.Get(hdrError); e != "rbac_denied" || (tc.method != "HEAD" && body != "RBAC: access denied\n") {
				t.Fatalf("%s: refused with %q %q, want rbac_denied and Envoy's text", name, e, body)
			}
			if app.n.Load() != before {
				t.Fatalf("%s: refused but the app served it", name)
			}
			if got := authzDenied(h, Inbound, tc.rule); got != denied+1 {
				t.Fatalf("%s: authorization_denied{rule=%q} went from %v to %v, want one more", name, tc.rule, denied, got)
			}
		}
	}
	if got := counterValue(h.p.m.localByCode[ReasonRBACDenied]); got != 14 {
		t.Fatalf("local_replies{rbac_denied} = %v, want 14", got)
	}
	if got := counterValue(h.p.m.authzAllowed[Inbound]); got != 10 {
		t.Fatalf("authorization_allowed{inbound} = %v, want 10", got)
	}
	if got := counterValue(h.p.m.authzAllowed[Outbound]); got != 0 {
		t.Fatalf("authorization_allowed{outbound} = %v, want 0: no rule names it", got)
	}
}

// A client of a plaintext listener has no principal, and a forged
// x-forwarded-client-cert gives it none: a rule that needs a principal
// (which validation refuses on such a listener; a config built by hand
// still gets it) neither lets it in nor treats it as the identity it
// names.
func TestAuthorizationForgedClientCertHeaderGrantsNothing(t *testing.T) {
	app := &countingApp{}
	up := upstream(t, false, app.ServeHTTP)
	cfg := simpleConfig(config.Cluster{Endpoints: eps(addr(up))})
	cfg.Authorization = config.Authorization{
		Deny: []config.AuthorizationRule{{Name: "not-orders", Listeners: []config.Direction{config.Outbound},
			From: config.AuthorizationSource{NotPrincipals: []string{idOrders}}}},
		Allow: []config.AuthorizationRule{{Name: "orders", Listeners: []config.Direction{config.Outbound},
			From: config.AuthorizationSource{Principals: []string{"*"}}}},
	}
	h := startProxy(t, cfg)
	for _, c := range []*http.Client{h.h1, h.h2c} {
		resp := mustGet(t, c, h.url("/items"), "X-Forwarded-Client-Cert", "Hash=x;Subject=\"\";URI="+idOrders)
		if b := readAll(t, resp); resp.StatusCode != 403 || resp.Header.Get(hdrError) != "rbac_denied" {
			t.Fatalf("got %d %q, want 403 rbac_denied", resp.StatusCode, b)
		}
	}
	// Refused by the deny rule: without a principal, not_principals
	// matches whatever it names.
	if got := authzDenied(h, Outbound, "not-orders"); got != 2 || app.n.Load() != 0 {
		t.Fatalf("not-orders refused %v, the app served %d; want 2 and none", got, app.n.Load())
	}
}

// A gRPC call the rules refuse ends PERMISSION_DENIED with Envoy's
// message, over mutual TLS with grpc-go's client and server; one they
// allow reaches the server.
func TestAuthorizationGRPCPermissionDenied(t *testing.T) {
	pki := newListenerPKI(t)
	svc := &testService{}
	cfg := inboundTLSConfig(startGRPCServer(t, svc),
		config.ListenerTLS{Enabled: true, CertFile: pki.certFile, KeyFile: pki.keyFile, ClientCAFile: pki.caFile, RequireClientCert: true})
	cfg.Listeners.Inbound.AppProtocol = config.ProtocolGRPC
	cfg.Authorization = config.Authorization{Allow: []config.AuthorizationRule{{Name: "orders",
		From: config.AuthorizationSource{Principals: []string{idOrders}},
		To:   config.AuthorizationOperation{Methods: []string{"POST"}, Paths: []string{"/grpc.testing.TestService/*"}}}}}
	h := startProxy(t, cfg)
	call := func(id string) error {
		roots := x509.NewCertPool()
		roots.AddCert(pki.ca.cert)
		creds := credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: "callee.test",
			Certificates: []tls.Certificate{clientCert(t, pki.ca, id).tlsCert(t)}})
		cc, err := grpc.NewClient("passthrough:///"+h.in, grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		_, err = testpb.NewTestServiceClient(cc).UnaryCall(ctxT(t, 5*time.Second), &testpb.SimpleRequest{})
		return err
	}
	if err := call(idOrders); err != nil {
		t.Fatalf("orders' call: %v", err)
	}
	err := call(idOther)
	if st := status.Convert(err); st.Code() != codes.PermissionDenied || st.Message() != "RBAC: access denied" {
		t.Fatalf("another caller's call ended %v, want PERMISSION_DENIED \"RBAC: access denied\"", err)
	}
	if n := svc.calls.Load(); n != 1 {
		t.Fatalf("the server served %d calls, want only orders' one", n)
	}
}

// Reloads that change the rules while requests run lose none: a caller
// every version allows is always served, one that only some versions
// allow gets 200 or 403 and nothing else, and once a version is
// applied every request after it gets what that version says. A reload
// that drops a rule removes its series.
func TestAuthorizationReloadWhileRequestsRun(t *testing.T) {
	pki := newListenerPKI(t)
	app := &countingApp{}
	up := upstream(t, false, app.ServeHTTP)
	tl := config.ListenerTLS{Enabled: true, CertFile: pki.certFile, KeyFile: pki.keyFile, ClientCAFile: pki.caFile}
	version := func(otherToo bool) *config.Config {
		cfg := inboundTLSConfig(addr(up), tl)
		ids := []string{idOrders}
		if otherToo {
			ids = append(ids, idOther)
		}
		cfg.Authorization.Allow = []config.AuthorizationRule{{Name: "callers", From: config.AuthorizationSource{Principals: ids}}}
		if !otherToo {
			cfg.Authorization.Deny = []config.AuthorizationRule{{Name: "no-other", From: config.AuthorizationSource{Namespaces: []string{"other"}}}}
		}
		return cfg
	}
	h := startProxy(t, version(false))
	orders := tlsClient(t, pki.ca, clientCert(t, pki.ca, idOrders), true)
	other := tlsClient(t, pki.ca, clientCert(t, pki.ca, idOther), false)
	get := func(c *http.Client) (int, error) {
		resp, err := c.Get("https://" + h.in + "/items")
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var served atomic.Int64
	errs := make(chan error, 8)
	for i := range 4 {
		c, mustServe := orders, true
		if i%2 == 1 {
			c, mustServe = other, false
		}
		wg.Go(func() {
			for n := 0; n < 100000; n++ {
				select {
				case <-stop:
					return
				default:
				}
				code, err := get(c)
				switch {
				case err != nil:
					errs <- err
					return
				case code == 200:
					served.Add(1)
				case code != 403 || mustServe:
					errs <- fmt.Errorf("got %d (caller always allowed: %v)", code, mustServe)
					return
				}
			}
		})
	}
	for i := range 20 {
		if err := h.p.Apply(version(i%2 == 0)); err != nil {
			t.Fatal(err)
		}
		// A few requests on each version.
		target := served.Load() + 4
		eventually(t, 10*time.Second, "requests served on the new rules", func() bool { return served.Load() >= target })
	}
	close(stop)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}

	for _, tc := range []struct {
		otherToo bool
		want     int
	}{{true, 200}, {false, 403}, {true, 200}} {
		if err := h.p.Apply(version(tc.otherToo)); err != nil {
			t.Fatal(err)
		}
		if code, err := get(other); err != nil || code != tc.want {
			t.Fatalf("other, other allowed %v: got %d %v, want %d", tc.otherToo, code, err, tc.want)
		}
		if code, err := get(orders); err != nil || code != 200 {
			t.Fatalf("orders: got %d %v, want 200", code, err)
		}
	}
	// The last version has no deny rule: its series is gone.
	if n := countSeries(t, h, "outrigger_proxy_authorization_denied_total", "rule", "no-other"); n != 0 {
		t.Fatalf("%d authorization_denied series of the removed rule no-other are exported", n)
	}
}

// Under path_with_escaped_slashes keep (the default), the path sent on
// keeps its "%2F", which one upstream reads as part of a segment and
// another as a separator ("/public%2F..%2Fadmin" is then "/admin"): a
// request with one is let through only when the rules let through both
// the path as routed and the path as the second upstream reads it,
// dot segments removed, so that neither an allow rule's prefix nor a
// deny rule's path is passed by that way. Paths that both readings
// agree on are judged as before.
func TestAuthorizationEscapedSlashReadBothWays(t *testing.T) {
	app := &countingApp{}
	up := upstream(t, false, app.ServeHTTP)
	admin := config.AuthorizationRule{Name: "admin", Listeners: []config.Direction{config.Outbound},
		To: config.AuthorizationOperation{Paths: []string{"/admin", "/admin/*"}}}
	public := config.AuthorizationRule{Name: "public", Listeners: []config.Direction{config.Outbound},
		To: config.AuthorizationOperation{Paths: []string{"/public/*"}}}
	for _, tc := range []struct {
		allow bool
		path  string
		want  int
		rule  string // the deny series that counts a 403
	}{
		{true, "/public/x", 200, ""},
		{true, "/public/a%2Fb", 200, ""},
		{true, "/public/a%2F..%2Fb", 200, ""},
		{true, "/public%2F..%2Fadmin", 403, "admin"},
		{true, "/public/x%2F..%2F..%2Fadmin", 403, "admin"},
		{true, "/public%2F..%2Fitems", 403, ""},
		{false, "/x%2F..%2Fadmin", 403, "admin"},
		{false, "/x%2F..%2Fadmin%2Fusers", 403, "admin"},
		{false, "/x%2F..%2Fitems", 200, ""},
	} {
		cfg := simpleConfig(config.Cluster{Endpoints: eps(addr(up))})
		cfg.Authorization.Deny = []config.AuthorizationRule{admin}
		if tc.allow {
			cfg.Authorization.Allow = []config.AuthorizationRule{public}
		}
		h := startProxy(t, cfg)
		for _, c := range []*http.Client{h.h1, h.h2c} {
			before, denied := app.n.Load(), authzDenied(h, Outbound, tc.rule)
			resp := mustGet(t, c, h.url(tc.path))
			if b := readAll(t, resp); resp.StatusCode != tc.want {
				t.Fatalf("allow list %v, %s: got %d %q, want %d", tc.allow, tc.path, resp.StatusCode, b, tc.want)
			}
			if tc.want == 200 {
				if app.n.Load() != before+1 {
					t.Fatalf("allow list %v, %s: allowed but the app did not serve it", tc.allow, tc.path)
				}
				continue
			}
			if app.n.Load() != before {
				t.Fatalf("allow list %v, %s: refused but the app served it", tc.allow, tc.path)
			}
			if got := authzDenied(h, Outbound, tc.rule); got != denied+1 {
				t.Fatalf("allow list %v, %s: authorization_denied{rule=%q} went from %v to %v, want one more", tc.allow, tc.path, tc.rule, denied, got)
			}
		}
	}
}
