package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

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

// A client that goes away while its request waits out a retry's
// back-off is a client gone: counted code_class="4xx" (recorded 499,
// never sent) as docs/proxy.md Metrics promises, not a 504
// upstream_timeout local reply.
func TestClientGoneDuringBackoffCountsAsClientClosed(t *testing.T) {
	for _, tc := range []struct {
		name string
		fn   http.HandlerFunc
	}{
		{"5xx", failing(503).ServeHTTP},
		{"reset", func(w http.ResponseWriter, r *http.Request) { panic(http.ErrAbortHandler) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hits atomic.Int64
			a := upstream(t, false, func(w http.ResponseWriter, r *http.Request) { hits.Add(1); tc.fn(w, r) })
			h := startProxy(t, retryCfg([]string{addr(a)}, config.RetryPolicy{Attempts: 1, RetryOn: []config.RetryCondition{"5xx"},
				Backoff: config.Backoff{Base: time.Minute, Max: time.Minute}}),
				func(o *Options) { o.Int63n = func(n int64) int64 { return n - 1 } })
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", h.url("/"), nil)
			done := make(chan error, 1)
			go func() {
				resp, err := h.h1.Do(req)
				if err == nil {
					resp.Body.Close()
				}
				done <- err
			}()
			eventually(t, 5*time.Second, "the first attempt", func() bool { return hits.Load() == 1 })
			cancel()
			<-done
			var got [6]float64
			eventually(t, 5*time.Second, "the request to be counted", func() bool {
				for i, c := range []string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"} {
					got[i] = testutil.ToFloat64(h.p.m.requests.WithLabelValues("outbound", "all", "svc", c))
				}
				return got[4]+got[5] > 0
			})
			if got[4] != 1 || got[5] != 0 {
				t.Fatalf("code classes other..5xx %v, want one 4xx (499)", got)
			}
			if v := testutil.ToFloat64(h.p.m.localByCode[ReasonUpstreamTimeout]); v != 0 {
				t.Fatalf("upstream_timeout local replies %v", v)
			}
		})
	}
}

// Every attempt of one request carries the same x-request-id (the one
// the proxy made, when the client sent none) and one X-Forwarded-For
// entry: the header is built once and copied for each retry.
func TestRetriesCarryTheSameRequestID(t *testing.T) {
	ids := make(chan http.Header, 4)
	var n atomic.Int64
	a := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		ids <- r.Header.Clone()
		if n.Add(1) < 3 {
			w.WriteHeader(503)
		}
	})
	h := startProxy(t, retryCfg([]string{addr(a)}, config.RetryPolicy{Attempts: 2, RetryOn: []config.RetryCondition{"5xx"},
		Backoff: config.Backoff{Base: time.Microsecond}}))
	resp, _ := do(t, h.h1, "GET", h.url("/"), nil)
	if resp.StatusCode != 200 || len(ids) != 3 {
		t.Fatalf("%d after %d attempts", resp.StatusCode, len(ids))
	}
	first := <-ids
	id := first.Get("X-Request-Id")
	if len(id) != 32 {
		t.Fatalf("x-request-id %q", id)
	}
	for i := 1; i < 3; i++ {
		got := <-ids
		if got.Get("X-Request-Id") != id || len(got.Values("X-Request-Id")) != 1 {
			t.Fatalf("attempt %d: x-request-id %q, want %q", i, got.Values("X-Request-Id"), id)
		}
		if got.Get("X-Forwarded-For") != "127.0.0.1" {
			t.Fatalf("attempt %d: X-Forwarded-For %q", i, got.Values("X-Forwarded-For"))
		}
	}
}

// A retry replays the body kept so far without waiting for a read of the
// client's body that the failed attempt left behind. h2client reads the
// body on a goroutine of its own, which stays in its read after the
// stream is reset; a client that sends the next piece of its body only
// once the upstream has answered the first (a full-duplex stream) then
// waited for the retry while the retry waited for it, until the route
// deadline or, with timeout_disabled, for good. The piece that read
// brings still goes to the retry, in its place.
func TestRetryDoesNotWaitForTheFailedAttemptsBodyRead(t *testing.T) {
	const first, rest = "0123456789", "abcdef"
	var resets atomic.Int32
	a := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {
		resets.Add(1)
		buf := make([]byte, len(first))
		_, _ = io.ReadFull(r.Body, buf)
		panic(http.ErrAbortHandler) // RST_STREAM
	})
	gotFirst := make(chan struct{})
	b := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, len(first))
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			return
		}
		close(gotFirst)
		more, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		_, _ = w.Write(append(buf, more...))
	})
	cfg := retryCfg([]string{addr(a), addr(b)}, config.RetryPolicy{Attempts: 1, RetryOn: []config.RetryCondition{"reset"},
		Backoff: config.Backoff{Base: time.Microsecond}}, func(r *config.Route) { r.TimeoutDisabled = true })
	c := cfg.Clusters["svc"]
	c.Protocol = config.ProtocolHTTP2
	cfg.Clusters["svc"] = c
	h := startProxy(t, cfg)

	pr, pw := io.Pipe()
	defer pw.CloseWithError(errors.New("client done"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "PUT", h.url("/"), pr)
	type result struct {
		resp *http.Response
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := h.h2c.Do(req)
		if err != nil {
			done <- result{err: err}
			return
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- result{resp, string(body), err}
	}()
	if _, err := io.WriteString(pw, first); err != nil {
		t.Fatal(err)
	}
	select {
	case <-gotFirst:
	case <-ctx.Done():
		t.Fatalf("the retry did not reach the other endpoint (%d attempts reset)", resets.Load())
	}
	if _, err := io.WriteString(pw, rest); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	res := <-done
	if res.err != nil {
		t.Fatalf("no response: %v", res.err)
	}
	if res.resp.StatusCode != 200 || res.body != first+rest || resets.Load() != 1 {
		t.Fatalf("%d %q %q after %d reset attempts; want 200 %q after 1", res.resp.StatusCode,
			res.resp.Header.Get(hdrError), res.body, resets.Load(), first+rest)
	}
}
