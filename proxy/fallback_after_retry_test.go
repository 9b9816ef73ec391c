package proxy

import (
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// A fallback is for a request the primary's upstream never saw
// (docs/proxy.md Local replies; config.Route.Fallback: "every case in
// which the upstream application never saw the request"). Once an
// attempt reached the upstream (it answered 5xx, or the connection broke
// after the request went out), a retry that the breaker then refuses
// must not hand the request to the fallback: a POST retried with
// allow_non_idempotent was executed by the primary and then again by
// the fallback cluster.
func TestFallbackNotUsedWhenARetryIsRefusedAfterTheUpstreamSawTheRequest(t *testing.T) {
	for _, tc := range []struct {
		name string
		fn   http.HandlerFunc
	}{
		{"5xx", failing(503).ServeHTTP},
		{"reset", func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			panic(http.ErrAbortHandler)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var primary atomic.Int64
			srv := upstream(t, false, func(w http.ResponseWriter, r *http.Request) { primary.Add(1); tc.fn(w, r) })
			spare := echoing()
			sp := upstream(t, false, spare.ServeHTTP)
			cfg := fallbackConfig(addr(srv), addr(sp), &config.Fallback{Cluster: "spare"}, func(r *config.Route) {
				r.Retry = &config.RetryPolicy{Attempts: 1, AllowNonIdempotent: true,
					RetryOn: []config.RetryCondition{"5xx"}, Backoff: config.Backoff{Base: time.Millisecond}}
			})
			var h *harness
			var forced atomic.Bool
			h = startProxy(t, cfg, func(o *Options) {
				// The back-off is drawn after the retry was decided: the
				// breaker opens (as another request's failures would trip
				// it) while this request waits to retry.
				o.Int63n = func(int64) int64 {
					if err := h.p.SetBreaker("svc", "open"); err != nil {
						t.Error(err)
					}
					forced.Store(true)
					return 0
				}
			})
			resp, body := do(t, h.h1, "POST", h.url("/orders"), []byte("order-1"))
			if !forced.Load() || primary.Load() != 1 {
				t.Fatalf("setup: retry decided %v, primary attempts %d", forced.Load(), primary.Load())
			}
			if spare.n.Load() != 0 || resp.Header.Get(hdrFallback) != "" {
				t.Fatalf("the fallback cluster got a request the primary had seen: %d %q %v", resp.StatusCode, body, resp.Header)
			}
			if resp.StatusCode != 503 || resp.Header.Get(hdrError) != "breaker_open" {
				t.Fatalf("%d %q", resp.StatusCode, resp.Header.Get(hdrError))
			}
		})
	}
}
