package proxy

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// An HTTP/1.1 attempt carries the route deadline on its upstream
// connection rather than on a context: these pin that the deadline
// passing mid-body still ends the upstream exchange, and that it leaves
// with its exchange (TestClientGoneCancelsUpstream pins the client
// leaving).

func TestRouteTimeoutMidBodyAbortsDownstream(t *testing.T) {
	var upstreamGone atomic.Bool
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		_, _ = io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
			upstreamGone.Store(true)
		case <-time.After(10 * time.Second):
		}
	})
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up))}, func(r *config.Route) { r.Timeout = 200 * time.Millisecond }))
	start := time.Now()
	resp, err := h.h1.Get(h.url("/"))
	if err == nil {
		var b []byte
		b, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Fatalf("body %q read as complete", b)
		}
	}
	if el := time.Since(start); el < 200*time.Millisecond || el > 5*time.Second {
		t.Fatalf("ended after %v, want about the route timeout", el)
	}
	eventually(t, 5*time.Second, "the upstream to see its request end", upstreamGone.Load)
}

func TestIdleUpstreamConnectionOutlivesRouteTimeout(t *testing.T) {
	var conns atomic.Int32
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			// A slow server: longer than the first request's deadline
			// had left.
			time.Sleep(150 * time.Millisecond)
		}
		_, _ = io.WriteString(w, "ok")
	}))
	up.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	up.Start()
	t.Cleanup(up.Close)
	cfg := &config.Config{
		Clusters: map[string]config.Cluster{"svc": {Endpoints: eps(addr(up))}},
		Routes: []config.Route{
			{Name: "fast", Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/fast"}}, Cluster: "svc", Timeout: 100 * time.Millisecond},
			{Name: "slow", Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/slow"}}, Cluster: "svc", Timeout: 5 * time.Second},
		},
	}
	h := startProxy(t, cfg)
	first := time.Now()
	if resp, body := do(t, h.h1, "GET", h.url("/fast"), nil); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("fast: %d %q", resp.StatusCode, body)
	}
	// The same upstream connection, idle in between, serves a request
	// that outlasts the first one's deadline.
	if resp, body := do(t, h.h1, "GET", h.url("/slow"), nil); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("slow: %d %q", resp.StatusCode, body)
	}
	if time.Since(first) < 100*time.Millisecond {
		t.Fatal("the first deadline had not passed yet")
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("upstream saw %d connections, want 1", n)
	}
}
