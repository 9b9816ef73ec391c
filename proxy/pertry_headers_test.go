package proxy

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// The per-try timeout ends at the response headers: a body that takes
// longer than it to come is passed on whole, not cut and retried (Envoy
// ignores a per-try timeout once the downstream response started); the
// route timeout bounds it.
func TestPerTryTimeoutEndsAtTheResponseHeaders(t *testing.T) {
	// The headers must come within perTry on a loaded machine too; the
	// body's end comes longer than perTry after the handler began, so
	// after the per-try timer, which began before it, would have fired.
	const perTry = time.Second
	for _, proto := range []config.Protocol{config.ProtocolHTTP1, config.ProtocolHTTP2} {
		t.Run(string(proto), func(t *testing.T) {
			up := &counting{fn: func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprint(w, "first ")
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return // cut by the proxy
				case <-time.After(perTry + perTry/2):
				}
				fmt.Fprint(w, "and last")
			}}
			a := upstream(t, true, up.ServeHTTP)
			cfg := retryCfg([]string{addr(a)}, config.RetryPolicy{Attempts: 1, RetryOn: []config.RetryCondition{"5xx", "reset"},
				Backoff: config.Backoff{Base: time.Microsecond}},
				func(r *config.Route) { r.PerTryTimeout = perTry; r.Timeout = 10 * time.Second })
			c := cfg.Clusters["svc"]
			c.Protocol = proto
			cfg.Clusters["svc"] = c
			h := startProxy(t, cfg)
			resp, body := do(t, h.h1, "GET", h.url("/"), nil)
			if resp.StatusCode != 200 || body != "first and last" || up.n.Load() != 1 {
				t.Fatalf("%d %q after %d attempts, want the whole body of one", resp.StatusCode, body, up.n.Load())
			}
		})
	}
}
