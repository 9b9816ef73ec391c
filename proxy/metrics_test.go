package proxy

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

func TestMetricsCountRequestsConnectionsAndGeneration(t *testing.T) {
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			w.WriteHeader(404)
		}
	})
	cfg := simpleConfig(config.Cluster{Endpoints: eps(addr(up))}, func(r *config.Route) { r.Match.Path.Prefix = "/" })
	cfg.Routes = append([]config.Route{{Name: "pong", Match: config.RouteMatch{Path: config.PathMatch{Exact: "/ping"}}, DirectResponse: &config.DirectResponse{Status: 200, Body: "pong"}}}, cfg.Routes...)
	h := startProxy(t, cfg)
	for _, p := range []string{"/a", "/b", "/missing", "/ping"} {
		readAll(t, mustGet(t, h.h1, h.url(p)))
	}
	m := h.p.m
	if v := testutil.ToFloat64(m.requests.WithLabelValues("outbound", "all", "svc", "2xx")); v != 2 {
		t.Errorf("2xx = %v", v)
	}
	if v := testutil.ToFloat64(m.requests.WithLabelValues("outbound", "all", "svc", "4xx")); v != 1 {
		t.Errorf("4xx = %v", v)
	}
	if v := testutil.ToFloat64(m.requests.WithLabelValues("outbound", "pong", "", "2xx")); v != 1 {
		t.Errorf("direct response = %v", v)
	}
	if v := testutil.ToFloat64(m.localReply.WithLabelValues("direct_response")); v != 1 {
		t.Errorf("local replies{direct_response} = %v", v)
	}
	if v := testutil.ToFloat64(m.conns.WithLabelValues("svc", addr(up))); v != 1 {
		t.Errorf("upstream connections = %v, want 1 kept-alive connection", v)
	}
	if v := testutil.ToFloat64(m.active.WithLabelValues("svc")); v != 0 {
		t.Errorf("active = %v", v)
	}
	if v := testutil.ToFloat64(m.generation); v != 1 {
		t.Errorf("generation = %v", v)
	}
	n, err := testutil.GatherAndCount(h.reg, "outrigger_proxy_request_duration_seconds")
	if err != nil || n == 0 {
		t.Errorf("duration histogram: %d %v", n, err)
	}
	// Closing the pool's connections brings the gauge back to zero.
	up.CloseClientConnections()
	eventually(t, 5*time.Second, "connection gauge to drop", func() bool {
		return testutil.ToFloat64(m.conns.WithLabelValues("svc", addr(up))) == 0
	})
}

func TestInboundListenerForwardsToLocalApp(t *testing.T) {
	app := upstream(t, false, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "app:", r.URL.Path) })
	cfg := &config.Config{}
	cfg.Listeners.Inbound.App = addr(app)
	h := startProxy(t, cfg)
	resp, err := h.h1.Get("http://" + h.in + "/orders/1")
	if err != nil {
		t.Fatal(err)
	}
	if b := readAll(t, resp); b != "app:/orders/1" {
		t.Fatalf("%q", b)
	}
	// The outbound listener has no routes: 404.
	resp = mustGet(t, h.h1, h.url("/orders/1"))
	readAll(t, resp)
	if resp.StatusCode != 404 {
		t.Fatalf("outbound: %d", resp.StatusCode)
	}
	var names []string
	for _, c := range h.p.Clusters() {
		names = append(names, c.Name)
	}
	if strings.Join(names, ",") != config.InboundAppCluster {
		t.Fatalf("clusters %v", names)
	}
}

func TestUpstreamTLS(t *testing.T) {
	for _, proto := range []config.Protocol{config.ProtocolHTTP1, config.ProtocolHTTP2} {
		t.Run(string(proto), func(t *testing.T) {
			up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprint(w, r.Proto, " ", r.TLS != nil)
			}))
			up.EnableHTTP2 = proto == config.ProtocolHTTP2
			up.StartTLS()
			defer up.Close()
			c := config.Cluster{Endpoints: eps(strings.TrimPrefix(up.URL, "https://")), Protocol: proto,
				TLS: config.TLS{Enabled: true, InsecureSkipVerify: true}}
			h := startProxy(t, simpleConfig(c))
			want := "HTTP/1.1 true"
			if proto == config.ProtocolHTTP2 {
				want = "HTTP/2.0 true"
			}
			if b := readAll(t, mustGet(t, h.h1, h.url("/"))); b != want {
				t.Fatalf("%q, want %q", b, want)
			}
		})
	}
	// A certificate that does not verify fails the handshake, before any
	// byte of the request: a connect failure, retried whatever the method.
	var hits atomic.Int32
	bad := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer bad.Close()
	bc := config.Cluster{Endpoints: eps(strings.TrimPrefix(bad.URL, "https://")), Protocol: config.ProtocolHTTP1,
		TLS: config.TLS{Enabled: true}}
	hb := startProxy(t, simpleConfig(bc, func(r *config.Route) {
		r.Retry = &config.RetryPolicy{Attempts: 2, RetryOn: []config.RetryCondition{config.RetryOnConnectFailure},
			Backoff: config.Backoff{Base: time.Millisecond, Max: time.Millisecond}}
	}))
	resp0, _ := do(t, hb.h1, "POST", hb.url("/"), []byte("x"))
	if resp0.StatusCode != 502 || resp0.Header.Get("X-Outrigger-Error") != "upstream_connect_failure" || hits.Load() != 0 {
		t.Fatalf("%d %q, %d requests reached the server", resp0.StatusCode, resp0.Header.Get("X-Outrigger-Error"), hits.Load())
	}
	if v := counterValue(hb.p.m.retries.WithLabelValues("svc")); v != 2 {
		t.Fatalf("retries_total = %v, want 2", v)
	}

	// An h1-only TLS server cannot serve an http2 cluster: connect failure.
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	up.TLS = &tls.Config{NextProtos: []string{"http/1.1"}}
	up.StartTLS()
	defer up.Close()
	c := config.Cluster{Endpoints: eps(strings.TrimPrefix(up.URL, "https://")), Protocol: config.ProtocolHTTP2,
		TLS: config.TLS{Enabled: true, InsecureSkipVerify: true}}
	h := startProxy(t, simpleConfig(c))
	resp := mustGet(t, h.h1, h.url("/"))
	readAll(t, resp)
	if resp.StatusCode != 502 || resp.Header.Get("X-Outrigger-Error") != "upstream_connect_failure" {
		t.Fatalf("%d %q", resp.StatusCode, resp.Header.Get("X-Outrigger-Error"))
	}
}

// seriesWith counts the series of the proxy's metrics (outrigger_proxy_*
// and outrigger_breaker_*) that carry label name=value.
func seriesWith(t *testing.T, h *harness, name, value string) int {
	t.Helper()
	return countSeries(t, h, "outrigger_proxy_", name, value) + countSeries(t, h, "outrigger_breaker_", name, value)
}

// countSeries counts the series of the metrics named prefix* that carry
// label name=value.
func countSeries(t *testing.T, h *harness, prefix, name, value string) int {
	t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), prefix) {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == name && l.GetValue() == value {
					n++
				}
			}
		}
	}
	return n
}

func TestApplyDeletesSeriesOfRemovedRoutesClustersAndEndpoints(t *testing.T) {
	ok := func(w http.ResponseWriter, r *http.Request) {}
	a, b := upstream(t, false, ok), upstream(t, false, ok)
	cfg := func(withB bool) *config.Config {
		c := &config.Config{
			Clusters: map[string]config.Cluster{"keep": {Endpoints: eps(addr(a))}},
			Routes: []config.Route{
				{Name: "kept", Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/a"}}, Cluster: "keep"},
			},
		}
		if withB {
			c.Clusters["gone"] = config.Cluster{Endpoints: eps(addr(b))}
			c.Routes = append(c.Routes, config.Route{Name: "removed",
				Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/b"}}, Cluster: "gone"})
		}
		return c
	}
	h := startProxy(t, cfg(true))
	for _, p := range []string{"/a", "/b"} {
		readAll(t, mustGet(t, h.h1, h.url(p)))
	}
	m := h.p.m
	for _, c := range []struct{ label, value string }{{"route", "removed"}, {"cluster", "gone"}, {"endpoint", addr(b)}} {
		if seriesWith(t, h, c.label, c.value) == 0 {
			t.Fatalf("no series with %s=%q before the reload", c.label, c.value)
		}
	}

	if countSeries(t, h, "outrigger_breaker_", "cluster", "gone") == 0 {
		t.Fatal("the breaker series of a cluster are not exported")
	}

	// A failed Apply changes nothing, and leaves no series of the
	// clusters it would have added.
	bad := cfg(false)
	bad.Clusters["added"] = config.Cluster{Endpoints: eps(addr(b))}
	bad.Routes[0].Cluster = "nonexistent"
	if err := h.p.Apply(bad); err == nil {
		t.Fatal("Apply accepted a route to a missing cluster")
	}
	if seriesWith(t, h, "route", "removed") == 0 || seriesWith(t, h, "cluster", "gone") == 0 {
		t.Fatal("a failed Apply deleted series")
	}
	if n := seriesWith(t, h, "cluster", "added"); n != 0 {
		t.Fatalf("a failed Apply left %d series of a cluster it would have added", n)
	}

	if err := h.p.Apply(cfg(false)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ label, value string }{{"route", "removed"}, {"cluster", "gone"}, {"endpoint", addr(b)}} {
		if n := seriesWith(t, h, c.label, c.value); n != 0 {
			t.Errorf("%d series with %s=%q after the reload removed it", n, c.label, c.value)
		}
	}
	// What stays keeps its counts.
	if v := testutil.ToFloat64(m.requests.WithLabelValues("outbound", "kept", "keep", "2xx")); v != 1 {
		t.Errorf("kept route's 2xx = %v, want 1", v)
	}
	readAll(t, mustGet(t, h.h1, h.url("/a")))
	if v := testutil.ToFloat64(m.requests.WithLabelValues("outbound", "kept", "keep", "2xx")); v != 2 {
		t.Errorf("kept route's 2xx = %v after another request, want 2", v)
	}
	if seriesWith(t, h, "endpoint", addr(a)) == 0 {
		t.Error("the kept endpoint's connection series was deleted")
	}
}

// A route to a cluster exports its request series with that cluster
// only: a route's cluster="" series, for the proxy's own answers on it,
// exist for direct responses, compositions and direct-response fallbacks,
// and were made for every route, 6 counters and a histogram of zeros
// each, as if a cluster route answered without its cluster.
func TestClusterRoutesExportNoSeriesWithoutTheirCluster(t *testing.T) {
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {})
	cfg := simpleConfig(config.Cluster{Endpoints: eps(addr(up))}, func(r *config.Route) { r.Match.Path.Prefix = "/" })
	cfg.Routes = append([]config.Route{
		{Name: "pong", Match: config.RouteMatch{Path: config.PathMatch{Exact: "/ping"}}, DirectResponse: &config.DirectResponse{Status: 200, Body: "pong"}},
		{Name: "spare", Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/spare"}}, Cluster: "svc",
			Fallback: &config.Fallback{DirectResponse: &config.DirectResponse{Status: 200, Body: "spare"}}},
	}, cfg.Routes...)
	h := startProxy(t, cfg)
	for _, p := range []string{"/a", "/ping", "/spare"} {
		readAll(t, mustGet(t, h.h1, h.url(p)))
	}
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	localSeries := map[string]int{} // route -> series with cluster=""
	for _, mf := range mfs {
		if mf.GetName() != "outrigger_proxy_requests_total" && mf.GetName() != "outrigger_proxy_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["cluster"] == "" && labels["route"] != "" {
				localSeries[labels["route"]]++
			}
		}
	}
	if n := localSeries["all"]; n != 0 {
		t.Errorf("the cluster route exports %d series with cluster=\"\"", n)
	}
	for _, r := range []string{"pong", "spare"} {
		if localSeries[r] == 0 {
			t.Errorf("route %s exports no series with cluster=\"\" for its direct response", r)
		}
	}
}

// A failed Apply leaves no series of the inbound app's cluster it would
// have added with the listener's app, which the config's clusters do not
// list: the build goes on past a cluster with a problem (to list them
// all), so the app's cluster was built, its breaker series with it.
func TestFailedApplyLeavesNoSeriesOfTheInboundAppCluster(t *testing.T) {
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {})
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up))}))
	bad := simpleConfig(config.Cluster{Endpoints: eps(addr(up))})
	bad.Listeners.Inbound.App = addr(up)
	bad.Clusters["a"] = config.Cluster{Endpoints: eps(addr(up)), TLS: config.TLS{Enabled: true, CAFile: t.TempDir() + "/missing.pem"}}
	if err := h.p.Apply(bad); err == nil || !strings.Contains(err.Error(), "missing.pem") {
		t.Fatalf("Apply with a missing ca_file: %v", err)
	}
	if n := seriesWith(t, h, "cluster", config.InboundAppCluster); n != 0 {
		t.Fatalf("a failed Apply left %d series of the inbound app's cluster", n)
	}
}
