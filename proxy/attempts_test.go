package proxy

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/breaker"
	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// A per-try timeout that runs out while the attempt is still connecting
// ends an attempt that never reached the upstream: a connect failure,
// which is safe to retry whatever the method, not a timeout of a
// request the upstream may have acted on. The per-try timeout is a
// second, which the retry is to be answered within: 150ms left a loaded
// machine under -race room to miss it.
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
				func(r *config.Route) { r.PerTryTimeout = time.Second })
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

// least_request keeps endpoint weights under load: it compares requests
// in flight per unit of weight, so an endpoint of weight 3 holds about
// three times the requests of one of weight 1. Comparing the bare counts
// evened them out, which gave the light endpoint twice its share.
func TestLeastRequestInFlightFollowsWeights(t *testing.T) {
	hold := make(chan struct{})
	arrived := make(chan int, 64)
	handler := func(id int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			arrived <- id
			select {
			case <-hold:
			case <-r.Context().Done():
			}
		}
	}
	light, heavy := upstream(t, false, handler(0)), upstream(t, false, handler(1))
	release := sync.OnceFunc(func() { close(hold) })
	t.Cleanup(release)
	cl := config.Cluster{LBPolicy: config.LBLeastRequest, Endpoints: []config.Endpoint{
		{Address: addr(light), Weight: 1}, {Address: addr(heavy), Weight: 3}}}
	h := startProxy(t, simpleConfig(cl))

	const n = 40
	var wg sync.WaitGroup
	defer wg.Wait()
	defer release()
	var got [2]int
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := h.h1.Get(h.url("/"))
			if err == nil {
				resp.Body.Close()
			}
		}()
		// The next request is balanced once this one is in flight.
		select {
		case id := <-arrived:
			got[id]++
		case <-time.After(10 * time.Second):
			t.Fatalf("request not forwarded; in flight so far %v", got)
		}
	}
	// Weighted, the light endpoint holds about n/4 (10); it held about
	// n/2 (17 to 20) when the bare counts were compared.
	if got[0] > n/4+2 {
		t.Fatalf("in flight on weights 1 and 3: %v, want about %d and %d", got, n/4, 3*n/4)
	}
}
