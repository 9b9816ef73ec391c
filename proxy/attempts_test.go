package proxy

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/breaker"
	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// A per-try timeout that runs out while the attempt is still connecting
// ends an attempt that never reached the upstream: a connect failure,
// which is safe to retry whatever the method, not a timeout of a
// request the upstream may have acted on.
func TestPerTryTimeoutDuringConnectIsAConnectFailure(t *testing.T) {
	for _, h2c := range []bool{false, true} {
		name := "http1"
		if h2c {
			name = "h2c"
		}
		t.Run(name, func(t *testing.T) {
			bh := blackhole(t)
			good := echoing()
			b := upstream(t, h2c, good.ServeHTTP)
			cfg := retryCfg([]string{bh, addr(b)}, config.RetryPolicy{Attempts: 1,
				RetryOn: []config.RetryCondition{"connect-failure", "gateway-error"},
				Backoff: config.Backoff{Base: time.Microsecond}},
				func(r *config.Route) { r.PerTryTimeout = 150 * time.Millisecond })
			c := cfg.Clusters["svc"]
			c.ConnectTimeout = 5 * time.Second
			if h2c {
				c.Protocol = config.ProtocolHTTP2
			}
			cfg.Clusters["svc"] = c
			h := startProxy(t, cfg)
			resp, body := do(t, h.h1, http.MethodPost, h.url("/"), []byte("order"))
			if resp.StatusCode != 200 || !strings.HasPrefix(body, "ok 5") || good.n.Load() != 1 {
				t.Fatalf("POST: %d %q (%s), healthy endpoint hit %d times; want the connect retried there",
					resp.StatusCode, body, resp.Header.Get("X-Outrigger-Error"), good.n.Load())
			}
		})
	}
}

// An ejected endpoint's share goes to the endpoints left, evenly, under
// every policy: round robin and random gave all of it to the endpoint
// listed after it, which then took twice the load of the others.
func TestEjectedEndpointShareIsSpreadEvenly(t *testing.T) {
	for _, policy := range []string{"round_robin", "random", "least_request"} {
		t.Run(policy, func(t *testing.T) {
			sick := upstream(t, false, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
			a, b := echoing(), echoing()
			ua, ub := upstream(t, false, a.ServeHTTP), upstream(t, false, b.ServeHTTP)
			cl := config.Cluster{Endpoints: eps(addr(sick), addr(ua), addr(ub)), LBPolicy: config.LBPolicy(policy),
				OutlierDetection: breaker.OutlierConfig{Consecutive5xx: 1, BaseEjectionTime: time.Hour, MaxEjectionPercent: 50}}
			h := startProxy(t, simpleConfig(cl))
			eventually(t, 5*time.Second, "the failing endpoint ejected", func() bool {
				readAll(t, mustGet(t, h.h1, h.url("/")))
				return endpointState(h, "svc", addr(sick)).State == "ejected"
			})
			a.n.Store(0)
			b.n.Store(0)
			const n = 600
			for range n {
				if resp := mustGet(t, h.h1, h.url("/")); readAll(t, resp) == "" || resp.StatusCode != 200 {
					t.Fatalf("status %d", resp.StatusCode)
				}
			}
			// Even: 300 each, give or take five standard deviations of
			// the random policies' draws; the skew was 400 and 200.
			if na, nb := a.n.Load(), b.n.Load(); na+nb != n || na < n/2-60 || na > n/2+60 {
				t.Fatalf("endpoints after the ejected one took %d and %d of %d requests, want about %d each", na, nb, n, n/2)
			}
		})
	}
}
