package proxy

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// getWith1xx sends a GET through c and returns the response's status,
// its body and the 1xx codes the client saw before it.
func getWith1xx(t *testing.T, c *http.Client, url string) (int, string, []int) {
	t.Helper()
	var mu sync.Mutex
	var interim []int
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, _ textproto.MIMEHeader) error {
		mu.Lock()
		interim = append(interim, code)
		mu.Unlock()
		return nil
	}}
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	resp, err := c.Do(req.WithContext(httptrace.WithClientTrace(req.Context(), trace)))
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	mu.Lock()
	defer mu.Unlock()
	return resp.StatusCode, body, interim
}

// Once an interim response went downstream the response has started, as
// for Envoy (its router resets the retry state when it passes a 1xx on):
// a failure after it is answered, not retried.
func TestNoRetryAfterAnInterimResponseWentDownstream(t *testing.T) {
	for _, proto := range []config.Protocol{config.ProtocolHTTP1, config.ProtocolHTTP2} {
		t.Run(string(proto), func(t *testing.T) {
			bad := &counting{fn: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Link", "</a.css>; rel=preload")
				w.WriteHeader(http.StatusEarlyHints)
				w.Header().Del("Link")
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprint(w, "busy")
			}}
			good := echoing()
			a, b := upstream(t, true, bad.ServeHTTP), upstream(t, true, good.ServeHTTP)
			cfg := retryCfg([]string{addr(a), addr(b)}, config.RetryPolicy{Attempts: 2, RetryOn: []config.RetryCondition{"gateway-error"},
				Backoff: config.Backoff{Base: time.Microsecond}})
			c := cfg.Clusters["svc"]
			c.Protocol = proto
			c.LBPolicy = config.LBRoundRobin
			cfg.Clusters["svc"] = c
			h := startProxy(t, cfg)
			// Round robin over two endpoints: one of two requests starts
			// on the failing one.
			for i := 0; i < 2; i++ {
				status, body, interim := getWith1xx(t, h.h1, h.url("/"))
				if len(interim) == 0 {
					if status != 200 {
						t.Fatalf("request %d: %d %q from the good endpoint", i, status, body)
					}
					continue
				}
				if status != 503 || body != "busy" || fmt.Sprint(interim) != "[103]" {
					t.Fatalf("request %d: %d %q after %v, want the 503 after the 103, not retried", i, status, body, interim)
				}
			}
			if bad.n.Load() != 1 || good.n.Load() != 1 {
				t.Fatalf("bad=%d good=%d: a retry followed the 103", bad.n.Load(), good.n.Load())
			}
		})
	}
}

// An attempt that passed a 1xx on is no longer bounded by the per-try
// timeout, only by the route's: Envoy ignores a per-try timeout once the
// downstream response has started, and an upstream that sends 103 Early
// Hints (or 102 Processing) before a slow answer is not cut and retried.
func TestPerTryTimeoutNoLongerAppliesAfterAnInterimResponse(t *testing.T) {
	// The 103 must come within perTry on a loaded machine too; the
	// answer comes longer than perTry after the handler began, so after
	// the per-try timer, which began before it, would have fired.
	const perTry = time.Second
	for _, proto := range []config.Protocol{config.ProtocolHTTP1, config.ProtocolHTTP2} {
		t.Run(string(proto), func(t *testing.T) {
			up := &counting{fn: func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusEarlyHints)
				select {
				case <-r.Context().Done():
					return // cut by the proxy
				case <-time.After(perTry + perTry/2):
				}
				fmt.Fprint(w, "slow but whole")
			}}
			a := upstream(t, true, up.ServeHTTP)
			cfg := retryCfg([]string{addr(a)}, config.RetryPolicy{Attempts: 1, RetryOn: []config.RetryCondition{"gateway-error"},
				Backoff: config.Backoff{Base: time.Microsecond}},
				func(r *config.Route) { r.PerTryTimeout = perTry; r.Timeout = 10 * time.Second })
			c := cfg.Clusters["svc"]
			c.Protocol = proto
			cfg.Clusters["svc"] = c
			h := startProxy(t, cfg)
			status, body, interim := getWith1xx(t, h.h1, h.url("/"))
			if status != 200 || body != "slow but whole" || up.n.Load() != 1 {
				t.Fatalf("%d %q after %v, %d attempts: want the slow answer of the one attempt", status, body, interim, up.n.Load())
			}
		})
	}
}

// A composition call passes no 1xx on (the composition's response is the
// proxy's own), so a 103 does not start the response: a call answered
// 103 and then 503 is still retried under the route's policy.
func TestCompositeCallRetriedAfterAnInterimResponse(t *testing.T) {
	var n atomic.Int64
	flaky := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusEarlyHints)
		if n.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, `{"ok":true}`)
	})
	h := startProxy(t, oneCallComposition(addr(flaky), 1))
	status, body, interim := getWith1xx(t, h.h1, h.url("/one"))
	if status != 200 || strings.TrimSpace(body) != `{"ok":true}` || len(interim) != 0 || n.Load() != 2 {
		t.Fatalf("%d %q after %v, %d calls: want the retry's answer and no 1xx", status, body, interim, n.Load())
	}
}
