package proxy

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/outrigger-mesh/outrigger/breaker"
	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// fallbackConfig routes everything to cluster svc (endpoint primary) with
// fallback fb, and has a second cluster "spare" (endpoint spare) when spare
// is not empty.
func fallbackConfig(primary, spare string, fb *config.Fallback, mod ...func(*config.Route)) *config.Config {
	cfg := simpleConfig(config.Cluster{Endpoints: eps(primary), OutlierDetection: breaker.OutlierConfig{Disabled: true}}, mod...)
	cfg.Routes[0].Fallback = fb
	if spare != "" {
		cfg.Clusters["spare"] = config.Cluster{Endpoints: eps(spare), OutlierDetection: breaker.OutlierConfig{Disabled: true}}
	}
	return cfg
}

func TestFallbackDirectResponseWhenBreakerOpen(t *testing.T) {
	up := echoing()
	srv := upstream(t, false, up.ServeHTTP)
	h := startProxy(t, fallbackConfig(addr(srv), "", &config.Fallback{DirectResponse: &config.DirectResponse{
		Status: 200, Body: `{"items":[]}`, Headers: config.HeaderValues{{Name: "Content-Type", Value: "application/json"}},
	}}, func(r *config.Route) {
		r.ResponseHeaders.Add = config.HeaderValues{{Name: "X-Route", Value: "all"}}
	}))
	if err := h.p.SetBreaker("svc", "open"); err != nil {
		t.Fatal(err)
	}
	resp, body := do(t, h.h1, "GET", h.url("/x"), nil)
	if resp.StatusCode != 200 || body != `{"items":[]}` || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d body %q headers %v", resp.StatusCode, body, resp.Header)
	}
	if resp.Header.Get("X-Outrigger-Fallback") != "breaker_open" || resp.Header.Get("X-Outrigger-Breaker") != "open" {
		t.Fatalf("fallback headers %v", resp.Header)
	}
	if resp.Header.Get("X-Route") != "all" {
		t.Fatalf("route response_headers not applied to the fallback: %v", resp.Header)
	}
	if resp.Header.Get("X-Outrigger-Error") != "" {
		t.Fatalf("a fallback is not an error reply: %v", resp.Header)
	}
	if up.n.Load() != 0 {
		t.Fatal("an open breaker let the request through")
	}
	if v := testutil.ToFloat64(h.p.m.fallbacks.WithLabelValues("outbound", "all", "breaker_open")); v != 1 {
		t.Fatalf("fallbacks metric %v", v)
	}
	if v := testutil.ToFloat64(h.p.m.requests.WithLabelValues("outbound", "all", "", "2xx")); v != 1 {
		t.Fatalf("route metric %v", v)
	}
}

func TestFallbackClusterOnConnectFailureResendsBody(t *testing.T) {
	spare := echoing()
	srv := upstream(t, false, spare.ServeHTTP)
	h := startProxy(t, fallbackConfig(refusedAddr(t), addr(srv), &config.Fallback{Cluster: "spare"}))
	payload := bytes.Repeat([]byte("order-"), 1000)
	resp, body := do(t, h.h1, "POST", h.url("/orders"), payload)
	want := fmt.Sprintf("ok %d %x", len(payload), sha(payload))
	if resp.StatusCode != 200 || body != want {
		t.Fatalf("status %d body %q want %q", resp.StatusCode, body, want)
	}
	if resp.Header.Get("X-Outrigger-Fallback") != "upstream_connect_failure" {
		t.Fatalf("headers %v", resp.Header)
	}
	if v := testutil.ToFloat64(h.p.m.requests.WithLabelValues("outbound", "all", "spare", "2xx")); v != 1 {
		t.Fatalf("route metric for the fallback cluster %v", v)
	}
}

func TestFallbackClusterAfterRetriesResendsBufferedBody(t *testing.T) {
	spare := echoing()
	srv := upstream(t, false, spare.ServeHTTP)
	cfg := fallbackConfig(refusedAddr(t), addr(srv), &config.Fallback{Cluster: "spare"}, func(r *config.Route) {
		r.Retry = &config.RetryPolicy{Attempts: 2, Backoff: config.Backoff{Base: time.Millisecond}}
	})
	h := startProxy(t, cfg)
	payload := []byte(strings.Repeat("x", 5000))
	resp, body := do(t, h.h1, "PUT", h.url("/orders/1"), payload)
	if want := fmt.Sprintf("ok %d %x", len(payload), sha(payload)); resp.StatusCode != 200 || body != want {
		t.Fatalf("status %d body %q", resp.StatusCode, body)
	}
	if v := counterValue(h.p.m.retries.WithLabelValues("svc")); v != 2 {
		t.Fatalf("primary retries %v, want 2 before the fallback", v)
	}
}

func TestFallbackClusterHasItsOwnBreakerAndNoChain(t *testing.T) {
	spare := echoing()
	srv := upstream(t, false, spare.ServeHTTP)
	h := startProxy(t, fallbackConfig(refusedAddr(t), addr(srv), &config.Fallback{Cluster: "spare"}))
	if err := h.p.SetBreaker("svc", "open"); err != nil {
		t.Fatal(err)
	}
	if err := h.p.SetBreaker("spare", "open"); err != nil {
		t.Fatal(err)
	}
	resp, body := do(t, h.h1, "GET", h.url("/x"), nil)
	if resp.StatusCode != 503 || resp.Header.Get("X-Outrigger-Error") != "breaker_open" ||
		resp.Header.Get("X-Outrigger-Fallback") != "breaker_open" || !strings.Contains(body, "spare") {
		t.Fatalf("status %d headers %v body %q", resp.StatusCode, resp.Header, body)
	}
	if spare.n.Load() != 0 {
		t.Fatal("the fallback cluster's open breaker let the request through")
	}
	if v := testutil.ToFloat64(h.p.bm.rejected.WithLabelValues("spare", "open")); v != 1 {
		t.Fatalf("fallback cluster rejections %v", v)
	}
}

func TestFallbackNotUsedOnTimeoutOrUpstreamStatus(t *testing.T) {
	slow := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	spare := echoing()
	srv := upstream(t, false, spare.ServeHTTP)
	h := startProxy(t, fallbackConfig(addr(slow), addr(srv), &config.Fallback{Cluster: "spare"}, func(r *config.Route) {
		// The 503 is to come within it: 100ms left a loaded machine
		// under -race room to miss it (504).
		r.Timeout = time.Second
	}))
	resp, _ := do(t, h.h1, "GET", h.url("/slow"), nil)
	if resp.StatusCode != 504 || resp.Header.Get("X-Outrigger-Fallback") != "" {
		t.Fatalf("timeout: status %d headers %v", resp.StatusCode, resp.Header)
	}
	resp, _ = do(t, h.h1, "GET", h.url("/503"), nil)
	if resp.StatusCode != 503 || resp.Header.Get("X-Outrigger-Fallback") != "" {
		t.Fatalf("upstream 503: status %d headers %v", resp.StatusCode, resp.Header)
	}
	if spare.n.Load() != 0 {
		t.Fatal("fallback used for a request the primary may have processed")
	}
}

func TestFallbackOnOverflow(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	busy := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
	})
	cfg := fallbackConfig(addr(busy), "", &config.Fallback{DirectResponse: &config.DirectResponse{Status: 202, Body: "later"}})
	c := cfg.Clusters["svc"]
	c.Limits = breaker.LimitsConfig{MaxRequests: 1}
	cfg.Clusters["svc"] = c
	h := startProxy(t, cfg)
	first := make(chan int, 1)
	go func() {
		resp, err := h.h1.Get(h.url("/a"))
		if err != nil {
			first <- 0
			return
		}
		resp.Body.Close()
		first <- resp.StatusCode
	}()
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("first request never reached the upstream")
	}
	resp, body := do(t, h.h1, "GET", h.url("/b"), nil)
	close(release)
	if resp.StatusCode != 202 || body != "later" || resp.Header.Get("X-Outrigger-Fallback") != "overflow" ||
		resp.Header.Get("X-Outrigger-Breaker") != "max_requests" {
		t.Fatalf("status %d body %q headers %v", resp.StatusCode, body, resp.Header)
	}
	if st := <-first; st != 200 {
		t.Fatalf("first request %d", st)
	}
}

func TestRouteResponseHeadersApplyToLocalReplies(t *testing.T) {
	up := echoing()
	srv := upstream(t, false, up.ServeHTTP)
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(srv))}, func(r *config.Route) {
		r.ResponseHeaders.Add = config.HeaderValues{
			{Name: "X-Route", Value: "all"},
			{Name: "X-Outrigger-Error", Value: "overridden"}, // the reply's own header wins
		}
	}))
	if err := h.p.SetBreaker("svc", "open"); err != nil {
		t.Fatal(err)
	}
	resp, _ := do(t, h.h1, "GET", h.url("/x"), nil)
	if resp.StatusCode != 503 || resp.Header.Get("X-Route") != "all" {
		t.Fatalf("status %d headers %v", resp.StatusCode, resp.Header)
	}
	if got := resp.Header.Values("X-Outrigger-Error"); len(got) != 1 || got[0] != "breaker_open" {
		t.Fatalf("x-outrigger-error %q", got)
	}
	// A request that matched no route has no route edits.
	cfg := simpleConfig(config.Cluster{Endpoints: eps(addr(srv))}, func(r *config.Route) {
		r.Match.Path.Exact = "/only"
		r.ResponseHeaders.Add = config.HeaderValues{{Name: "X-Route", Value: "all"}}
	})
	if err := h.p.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	resp, _ = do(t, h.h1, "GET", h.url("/other"), nil)
	if resp.StatusCode != 404 || resp.Header.Get("X-Route") != "" {
		t.Fatalf("no route: status %d headers %v", resp.StatusCode, resp.Header)
	}
}

// The fallback cluster is sent the request as the client sent it, edited
// once: one X-Forwarded-For entry, the route's header edits applied once,
// no hop-by-hop header.
func TestFallbackClusterGetsTheHeaderEditedOnce(t *testing.T) {
	seen := make(chan http.Header, 1)
	srv := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
	})
	h := startProxy(t, fallbackConfig(refusedAddr(t), addr(srv), &config.Fallback{Cluster: "spare"}, func(r *config.Route) {
		r.RequestHeaders = config.HeaderMutation{Add: config.HeaderValues{{Name: "x-tag", Value: "route", Append: true}}}
	}))
	req, err := http.NewRequest("GET", h.url("/x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Forwarded-For", "198.51.100.7")
	req.Header.Set("Connection", "X-Hop")
	req.Header.Set("X-Hop", "1")
	resp, err := h.h1.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if resp.Header.Get("X-Outrigger-Fallback") != "upstream_connect_failure" {
		t.Fatalf("not served by the fallback: %d %v", resp.StatusCode, resp.Header)
	}
	got := <-seen
	if xff := got.Values("X-Forwarded-For"); len(xff) != 1 || xff[0] != "198.51.100.7, 127.0.0.1" {
		t.Errorf("X-Forwarded-For %q, want one entry appended", xff)
	}
	if tags := got.Values("X-Tag"); len(tags) != 1 {
		t.Errorf("x-tag %q, want the route's edit once", tags)
	}
	if got.Get("X-Hop") != "" || len(got.Values("X-Request-Id")) != 1 {
		t.Errorf("header %v", got)
	}
}
