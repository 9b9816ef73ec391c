package proxy

import (
	"net/http"
	"strings"
	"testing"
	"time"

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
