package proxy

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// stall returns a channel closed when the test ends, for handlers that
// hold their response open; it is registered after the servers it
// serves, so it is closed before they are.
func stall(t *testing.T) chan struct{} {
	ch := make(chan struct{})
	t.Cleanup(func() { close(ch) })
	return ch
}

// A 5xx that is retried is dropped, not read: an upstream that sends the
// 503's head and then stalls its body must not hold the retry until the
// route deadline (which then ended the request 504 upstream_timeout
// although a healthy endpoint was there to answer).
func TestRetriedResponseWithStalledBodyDoesNotHoldTheRetry(t *testing.T) {
	for _, h2c := range []bool{false, true} {
		name := "http1"
		if h2c {
			name = "h2c"
		}
		t.Run(name, func(t *testing.T) {
			bad, good := make(chan struct{}, 8), echoing()
			var stop chan struct{}
			a := upstream(t, h2c, func(w http.ResponseWriter, r *http.Request) {
				bad <- struct{}{}
				w.Header().Set("Content-Length", "100")
				w.WriteHeader(503)
				_, _ = w.Write([]byte("unavailable"))
				http.NewResponseController(w).Flush()
				select {
				case <-r.Context().Done():
				case <-stop:
				}
			})
			b := upstream(t, h2c, good.ServeHTTP)
			stop = stall(t)
			cfg := retryCfg([]string{addr(a), addr(b)}, config.RetryPolicy{Attempts: 1, RetryOn: []config.RetryCondition{"5xx"},
				Backoff: config.Backoff{Base: time.Microsecond}}, func(r *config.Route) { r.Timeout = 3 * time.Second })
			if h2c {
				c := cfg.Clusters["svc"]
				c.Protocol = config.ProtocolHTTP2
				cfg.Clusters["svc"] = c
			}
			h := startProxy(t, cfg)
			start := time.Now()
			resp, body := do(t, h.h1, "GET", h.url("/"), nil)
			el := time.Since(start)
			if resp.StatusCode != 200 || !strings.HasPrefix(body, "ok") {
				t.Fatalf("%d %q after %v", resp.StatusCode, body, el)
			}
			if len(bad) != 1 || good.n.Load() != 1 {
				t.Fatalf("hits %d/%d", len(bad), good.n.Load())
			}
			if el > 2*time.Second {
				t.Fatalf("retry waited %v on the dropped response's body", el)
			}
		})
	}
}
