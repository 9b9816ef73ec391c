package proxy

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/outrigger-mesh/outrigger/breaker"
	"github.com/outrigger-mesh/outrigger/composer"
	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// shop is three real upstreams (orders, customers, shipments) and a
// config whose route order-details composes them.
type shop struct {
	orders, customers, shipments *countingServer
	// inFlight and maxInFlight show that independent calls overlap.
	inFlight, maxInFlight atomic.Int64
	gate                  chan struct{} // closed: the parallel calls proceed
	mu                    sync.Mutex
	paths                 []string // escaped request URIs the upstreams saw
}

type countingServer struct {
	addr string
	n    atomic.Int64
}

func (s *shop) record(r *http.Request) {
	s.mu.Lock()
	s.paths = append(s.paths, r.URL.EscapedPath())
	s.mu.Unlock()
}

func (s *shop) parallel(fn func()) {
	n := s.inFlight.Add(1)
	for {
		m := s.maxInFlight.Load()
		if n <= m || s.maxInFlight.CompareAndSwap(m, n) {
			break
		}
	}
	if s.gate != nil {
		select {
		case <-s.gate:
		case <-time.After(10 * time.Second):
		}
	}
	fn()
	s.inFlight.Add(-1)
}

func startShop(t *testing.T) *shop {
	s := &shop{}
	serve := func(fn func(w http.ResponseWriter, r *http.Request)) *countingServer {
		cs := &countingServer{}
		up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
			cs.n.Add(1)
			s.record(r)
			fn(w, r)
		})
		cs.addr = addr(up)
		return cs
	}
	s.orders = serve(func(w http.ResponseWriter, r *http.Request) {
		id := strings.TrimPrefix(r.URL.Path, "/orders/")
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":%q,"customerId":7,"items":[{"sku":"a","qty":1},{"sku":"b","qty":2}]}`, id)
	})
	s.customers = serve(func(w http.ResponseWriter, r *http.Request) {
		s.parallel(func() {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"id":%q,"name":"Ada"}`, strings.TrimPrefix(r.URL.Path, "/customers/"))
		})
	})
	s.shipments = serve(func(w http.ResponseWriter, r *http.Request) {
		s.parallel(func() {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `[{"sku":"a","carrier":"dhl","order":%q}]`, r.URL.Query().Get("order"))
		})
	})
	return s
}

func (s *shop) config(optionalShipments bool) *config.Config {
	return &config.Config{
		Clusters: map[string]config.Cluster{
			"orders":    {Endpoints: eps(s.orders.addr)},
			"customers": {Endpoints: eps(s.customers.addr)},
			"shipments": {Endpoints: eps(s.shipments.addr)},
		},
		Routes: []config.Route{{
			Name:  "order-details",
			Match: config.RouteMatch{Path: config.PathMatch{Regex: `/orders/(?P<id>.+)/details`}},
			ResponseHeaders: config.HeaderMutation{
				Add: config.HeaderValues{{Name: "X-Composed-By", Value: "outrigger"}},
			},
			Composition: &composer.Spec{
				Calls: []composer.Call{
					{Name: "order", Cluster: "orders", Path: "/orders/{id}"},
					{Name: "customer", Cluster: "customers", Path: "/customers/{order.customerId}"},
					{Name: "shipments", Cluster: "shipments", Path: "/shipments", Query: map[string]string{"order": "{id}"}, Optional: optionalShipments},
				},
				Output: composer.Output{
					Merge: []string{"order"},
					Nest:  []composer.Nest{{From: "customer"}},
					Join:  []composer.Join{{Into: "items", On: "sku", From: "shipments", As: "shipments", Many: true}},
				},
			},
		}},
	}
}

func decodeJSON(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("body %q: %v", s, err)
	}
	return m
}

func TestCompositeRouteJoinsDependentAndParallelCalls(t *testing.T) {
	s := startShop(t)
	s.gate = make(chan struct{})
	h := startProxy(t, s.config(true))
	// customer depends on order; shipments depends only on the request.
	// customers and shipments both wait at the gate: when both are in
	// flight at once, they ran in parallel.
	go func() {
		// Bounded generously: the second call's arrival, on a loaded
		// machine under -race, could be more than 2 s behind the first.
		deadline := time.Now().Add(10 * time.Second)
		for s.inFlight.Load() < 2 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		close(s.gate)
	}()
	resp := mustGet(t, h.h1, h.url("/orders/42/details"))
	body := readAll(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if got := s.maxInFlight.Load(); got != 2 {
		t.Fatalf("customers and shipments overlapped %d-wide, want 2", got)
	}
	if resp.Header.Get("X-Outrigger-Partial") != "" || resp.Header.Get("X-Composed-By") != "outrigger" {
		t.Fatalf("headers: %v", resp.Header)
	}
	m := decodeJSON(t, body)
	if m["id"] != "42" || m["customer"].(map[string]any)["name"] != "Ada" {
		t.Fatalf("body %s", body)
	}
	items := m["items"].([]any)
	first := items[0].(map[string]any)
	if sh := first["shipments"].([]any); len(sh) != 1 || sh[0].(map[string]any)["carrier"] != "dhl" {
		t.Fatalf("join: %s", body)
	}
	if second := items[1].(map[string]any); len(second["shipments"].([]any)) != 0 {
		t.Fatalf("join of b: %s", body)
	}
	if v := testutil.ToFloat64(h.p.m.requests.WithLabelValues("outbound", "order-details", "", "2xx")); v != 1 {
		t.Fatalf("route requests metric %v", v)
	}
	if n := gathered(t, h, "outrigger_composer_requests_total", "result", "ok"); n != 1 {
		t.Fatalf("composer metrics on the proxy registry: %v ok requests", n)
	}
}

func TestCompositeOptionalCallWithOpenBreakerIsPartial(t *testing.T) {
	s := startShop(t)
	h := startProxy(t, s.config(true))
	if err := h.p.SetBreaker("shipments", "open"); err != nil {
		t.Fatal(err)
	}
	resp := mustGet(t, h.h1, h.url("/orders/1/details"))
	body := readAll(t, resp)
	if resp.StatusCode != 200 || resp.Header.Get("X-Outrigger-Partial") != "shipments" {
		t.Fatalf("status %d headers %v body %s", resp.StatusCode, resp.Header, body)
	}
	sec, _ := decodeJSON(t, body)["_outrigger"].(map[string]any)
	calls, _ := sec["calls"].([]any)
	if sec["partial"] != true || len(calls) != 1 {
		t.Fatalf("partial section: %s", body)
	}
	c := calls[0].(map[string]any)
	if c["name"] != "shipments" || c["reason"] != "breaker_open" {
		t.Fatalf("partial call: %v", c)
	}
	if n := s.shipments.n.Load(); n != 0 {
		t.Fatalf("an open breaker let %d calls through", n)
	}
	if v := counterValue(h.p.bm.rejected.WithLabelValues("shipments", "open")); v != 1 {
		t.Fatalf("breaker rejections %v", v)
	}
}

func TestCompositeRequiredCallWithOpenBreakerFails(t *testing.T) {
	s := startShop(t)
	h := startProxy(t, s.config(false))
	if err := h.p.SetBreaker("customers", "open"); err != nil {
		t.Fatal(err)
	}
	resp := mustGet(t, h.h1, h.url("/orders/1/details"))
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("X-Outrigger-Error") != composer.ErrorCallFailed {
		t.Fatalf("status %d headers %v body %s", resp.StatusCode, resp.Header, body)
	}
	if !strings.Contains(body, `"customer"`) || !strings.Contains(body, "breaker_open") {
		t.Fatalf("error body does not name the call and reason: %s", body)
	}
	if v := testutil.ToFloat64(h.p.m.requests.WithLabelValues("outbound", "order-details", "", "5xx")); v != 1 {
		t.Fatalf("route requests metric %v", v)
	}
}

func TestCompositeUnreachableClusterIsConnectFailure(t *testing.T) {
	s := startShop(t)
	cfg := s.config(true)
	// Bound and not listening for the rest of the test (see
	// holdRefusedAddr): the port of an upstream closed at once was free
	// for the proxy started next to take for a listener of its own.
	cfg.Clusters["shipments"] = config.Cluster{Endpoints: eps(refusedAddr(t)), OutlierDetection: breaker.OutlierConfig{Disabled: true}}
	h := startProxy(t, cfg)
	resp := mustGet(t, h.h1, h.url("/orders/1/details"))
	body := readAll(t, resp)
	if resp.StatusCode != 200 || !strings.Contains(body, `"reason":"connect_failed"`) {
		t.Fatalf("status %d body %s", resp.StatusCode, body)
	}
}

func TestCompositePathParameterStaysInItsSegment(t *testing.T) {
	s := startShop(t)
	h := startProxy(t, s.config(true))
	// The client sends an escaped "../" inside the id: decoded it would
	// climb out of /orders/ at the backend.
	resp := mustGet(t, h.h1, h.url("/orders/..%2F..%2Fadmin/details"))
	body := readAll(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	s.mu.Lock()
	paths := append([]string(nil), s.paths...)
	s.mu.Unlock()
	found := false
	for _, p := range paths {
		if strings.Contains(p, "admin") && p != "/orders/..%2F..%2Fadmin" {
			t.Fatalf("backend saw %q: the parameter left its segment", p)
		}
		found = found || p == "/orders/..%2F..%2Fadmin"
	}
	if !found {
		t.Fatalf("orders never saw the escaped id; paths %v", paths)
	}
	if m := decodeJSON(t, body); m["id"] != "../../admin" {
		t.Fatalf("order id %v", m["id"])
	}
	// A value that is exactly ".." never becomes one: the path is
	// normalized to /details before routing, which no route takes...
	resp = mustGet(t, h.h1, h.url("/orders/../details"))
	body = readAll(t, resp)
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("'..' id: status %d body %s, want 404 (normalized to /details)", resp.StatusCode, body)
	}
	// ... and without normalization it is refused, not sent.
	cfg := s.config(true)
	cfg.Listeners.PathNormalization = config.PathNormalizationNone
	if err := h.p.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	resp = mustGet(t, h.h1, h.url("/orders/../details"))
	body = readAll(t, resp)
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("'..' id: status %d body %s", resp.StatusCode, body)
	}
}

func TestCompositeHotApplySwapsComposition(t *testing.T) {
	s := startShop(t)
	cfg := s.config(true)
	h := startProxy(t, cfg)
	resp := mustGet(t, h.h1, h.url("/orders/5/details"))
	if body := readAll(t, resp); !strings.Contains(body, `"customer"`) {
		t.Fatalf("before: %s", body)
	}
	next := s.config(true)
	spec := next.Routes[0].Composition
	spec.Calls = spec.Calls[:1]
	spec.Output = composer.Output{Select: []string{"id"}}
	if err := h.p.Apply(next); err != nil {
		t.Fatalf("re-apply (composer metrics re-registered on the same registry): %v", err)
	}
	before := s.customers.n.Load()
	resp = mustGet(t, h.h1, h.url("/orders/5/details"))
	if body := readAll(t, resp); strings.TrimSpace(body) != `{"id":"5"}` {
		t.Fatalf("after: %s", body)
	}
	if s.customers.n.Load() != before {
		t.Fatal("the old composition still served")
	}
}

// oneCallComposition routes /one to a composition of one call, to
// cluster a at upstream, under a route retry policy of attempts.
func oneCallComposition(upstream string, attempts int) *config.Config {
	return &config.Config{
		Clusters: map[string]config.Cluster{"a": {Endpoints: eps(upstream)}},
		Routes: []config.Route{{
			Name:        "one",
			Match:       config.RouteMatch{Path: config.PathMatch{Exact: "/one"}},
			Retry:       &config.RetryPolicy{Attempts: attempts, Backoff: config.Backoff{Base: time.Millisecond}},
			Composition: &composer.Spec{Calls: []composer.Call{{Name: "a", Cluster: "a", Path: "/a"}}},
		}},
	}
}

func TestCompositeCallsUseRouteRetryPolicy(t *testing.T) {
	var n atomic.Int64
	flaky := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, `{"ok":true}`)
	})
	h := startProxy(t, oneCallComposition(addr(flaky), 2))
	resp := mustGet(t, h.h1, h.url("/one"))
	if body := readAll(t, resp); resp.StatusCode != 200 || strings.TrimSpace(body) != `{"ok":true}` {
		t.Fatalf("status %d body %s", resp.StatusCode, body)
	}
	if n.Load() != 2 {
		t.Fatalf("upstream calls %d, want 2 (one retry)", n.Load())
	}
}

func TestCompositeCallTimeoutCountsForTheBreaker(t *testing.T) {
	s := startShop(t)
	cfg := s.config(true)
	slow := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	cfg.Clusters["shipments"] = config.Cluster{Endpoints: eps(addr(slow)), OutlierDetection: breaker.OutlierConfig{Disabled: true}}
	cfg.Routes[0].Composition.Calls[2].Timeout = composer.Duration(50 * time.Millisecond)
	h := startProxy(t, cfg)
	resp := mustGet(t, h.h1, h.url("/orders/1/details"))
	body := readAll(t, resp)
	if resp.StatusCode != 200 || resp.Header.Get("X-Outrigger-Partial") != "shipments" || !strings.Contains(body, `"reason":"timeout"`) {
		t.Fatalf("status %d headers %v body %s", resp.StatusCode, resp.Header, body)
	}
	var st BreakerStatus
	for _, c := range h.p.Clusters() {
		if c.Name == "shipments" {
			st = c.Breaker
		}
	}
	if st.Failures != 1 {
		t.Fatalf("the call's timeout was not recorded as a failure: %+v", st)
	}
}

// The example the docs point at is a config the proxy serves as is.
func TestShopComposeExampleApplies(t *testing.T) {
	cfg, err := config.Load("../examples/shop-compose/composition.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p := New(Options{})
	if err := p.Apply(cfg); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	rt := p.snap.Load().tables[Outbound].find(httptestRequest("/orders/1/details"))
	if rt == nil || rt.compose == nil || rt.compose.Name() != "order-details" {
		t.Fatalf("route %+v", rt)
	}
}

func httptestRequest(path string) *http.Request {
	r, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1"+path, nil)
	return r
}

// A composite request and all its calls carry one x-request-id: the
// client's, or one the proxy makes for it (and the access log records),
// so that the backends' logs tie back to the request. Each call used to
// make its own unless forward_headers named x-request-id, and the access
// log had none. The calls name the client in X-Forwarded-For, as a
// forwarded request does; they named nobody.
func TestCompositeCallsShareTheRequestID(t *testing.T) {
	var mu sync.Mutex
	var seen, xff []string
	serve := func() string {
		return addr(upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen = append(seen, strings.Join(r.Header.Values(hdrRequestID), "|"))
			xff = append(xff, strings.Join(r.Header.Values(hdrForwardedFor), "|"))
			mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"ok":true}`)
		}))
	}
	a, b := serve(), serve()
	cfg := &config.Config{
		Clusters: map[string]config.Cluster{"a": {Endpoints: eps(a)}, "b": {Endpoints: eps(b)}},
		Routes: []config.Route{{
			Name:  "both",
			Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/both"}},
			Composition: &composer.Spec{
				Calls:  []composer.Call{{Name: "a", Cluster: "a", Path: "/a"}, {Name: "b", Cluster: "b", Path: "/b"}},
				Output: composer.Output{Nest: []composer.Nest{{From: "a"}, {From: "b"}}},
			},
		}},
	}
	h := startProxy(t, cfg)
	for _, sent := range []string{"", "client-id-1"} {
		mu.Lock()
		seen = nil
		mu.Unlock()
		var resp *http.Response
		if sent == "" {
			resp = mustGet(t, h.h1, h.url("/both"))
		} else {
			resp = mustGet(t, h.h1, h.url("/both"), "X-Request-Id", sent)
		}
		if body := readAll(t, resp); resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		mu.Lock()
		got := append([]string(nil), seen...)
		mu.Unlock()
		if len(got) != 2 || got[0] != got[1] || got[0] == "" {
			t.Fatalf("x-request-id %q sent: the calls carried %q, want one id for both", sent, got)
		}
		if sent != "" && got[0] != sent {
			t.Fatalf("x-request-id %q sent: the calls carried %q", sent, got[0])
		}
		if sent == "" && (len(got[0]) != 32 || strings.Trim(got[0], "0123456789abcdef") != "") {
			t.Fatalf("no x-request-id sent: the calls carried %q, want a generated id", got[0])
		}
		mu.Lock()
		fwd := append([]string(nil), xff...)
		xff = nil
		mu.Unlock()
		if len(fwd) != 2 || fwd[0] != "127.0.0.1" || fwd[1] != "127.0.0.1" {
			t.Fatalf("the calls carried X-Forwarded-For %q, want the client's address", fwd)
		}
	}
}
