package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/breaker"
	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// Every count a request takes (the cluster's limits, the cluster's,
// endpoints' and proxy's in-flight counts) is given back on every path: a
// storm of concurrent requests that meet 503s, resets before and in the
// middle of a body, per-try timeouts, retries with and without a kept
// body, and clients that give up at assorted moments, leaves them all at
// zero, over an HTTP/1.1 and an HTTP/2 upstream.
func TestCountsReturnToZeroAfterMixedOutcomes(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		name := "http1"
		if h2 {
			name = "http2"
		}
		t.Run(name, func(t *testing.T) { countsAfterStorm(t, h2) })
	}
}

func countsAfterStorm(t *testing.T, h2 bool) {
	var n atomic.Int64
	a := upstream(t, h2, func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) % 5 {
		case 0:
			w.WriteHeader(http.StatusServiceUnavailable)
		case 1:
			panic(http.ErrAbortHandler) // reset before the response
		case 2:
			select { // past the per-try timeout
			case <-r.Context().Done():
			case <-time.After(200 * time.Millisecond):
			}
		case 3:
			w.Header().Set("Content-Length", "10")
			w.Write([]byte("abc"))
			panic(http.ErrAbortHandler) // reset in the middle of the body
		default:
			io.Copy(io.Discard, r.Body)
			w.Write([]byte("ok"))
		}
	})
	b := upstream(t, h2, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusBadGateway)
	})
	cfg := retryCfg([]string{addr(a), addr(b)}, config.RetryPolicy{
		Attempts: 3, RetryOn: []config.RetryCondition{"5xx", "reset"},
		Backoff: config.Backoff{Base: time.Millisecond}, MaxBufferedBodyBytes: 100,
	}, func(r *config.Route) { r.PerTryTimeout = 50 * time.Millisecond })
	client := "h1"
	if h2 {
		cc := cfg.Clusters["svc"]
		cc.Protocol = config.ProtocolHTTP2
		cfg.Clusters["svc"] = cc
		client = "h2c"
	}
	h := startProxy(t, cfg)
	cl := h.client(client)
	const requests = 200
	done := make(chan struct{}, requests)
	for i := range requests {
		go func() {
			defer func() { done <- struct{}{} }()
			// Some clients give up early, at assorted moments.
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%7)*20*time.Millisecond+time.Millisecond)
			defer cancel()
			method, body := http.MethodGet, io.Reader(nil)
			if i%3 == 0 {
				// PUT bodies on both sides of the replay buffer's limit.
				method, body = http.MethodPut, strings.NewReader(strings.Repeat("x", 50+i))
			}
			req, _ := http.NewRequestWithContext(ctx, method, h.url("/"), body)
			if resp, err := cl.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	for range requests {
		<-done
	}
	c := h.p.snap.Load().clusters["svc"]
	eventually(t, 5*time.Second, "every count back at zero", func() bool {
		// Idle pooled connections count towards max_connections. They
		// are closed at each look, not once: the proxy's attempts for
		// clients that gave up may still be ending, and the connections
		// they leave idle come after a single close (an HTTP/2 one held
		// max_connections at 1 until the deadline).
		c.pool.closeIdle()
		if c.res.limits.Snapshot().InUse != [breaker.NumLimits]int64{} || c.active.Load() != 0 || h.p.inflight.Load() != 0 {
			return false
		}
		for _, e := range c.endpoints {
			if e.active.Load() != 0 {
				return false
			}
		}
		return true
	})
}

// A round_robin cluster's first turn is Options.RoundRobinStart's, and by
// default a random endpoint's: sidecars started together (a rollout) do
// not all send their first request to the same endpoint.
func TestRoundRobinStartsWhereOptionsSay(t *testing.T) {
	var addrs []string
	for i := range 4 {
		s := upstream(t, false, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, i) })
		addrs = append(addrs, addr(s))
	}
	cfg := simpleConfig(config.Cluster{Endpoints: eps(addrs...)})
	first := func(start func() uint64) string {
		h := startProxy(t, cfg, func(o *Options) { o.RoundRobinStart = start })
		return readAll(t, mustGet(t, h.h1, h.url("/")))
	}
	if got := first(func() uint64 { return 2 }); got != "2" {
		t.Fatalf("RoundRobinStart 2: first answer from endpoint %s", got)
	}
	seen := map[string]bool{}
	for range 12 {
		seen[first(nil)] = true
	}
	// Twelve proxies all starting at one endpoint of four: about 2 in
	// 10 million by chance.
	if len(seen) < 2 {
		t.Fatalf("twelve proxies with random starts all sent their first request to endpoint %v", seen)
	}
}
