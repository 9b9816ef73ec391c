package proxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/outrigger-mesh/outrigger/breaker"
	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// counting wraps a handler and counts its requests.
type counting struct {
	n  atomic.Int64
	fn http.HandlerFunc
}

func (c *counting) ServeHTTP(w http.ResponseWriter, r *http.Request) { c.n.Add(1); c.fn(w, r) }

func failing(status int) *counting {
	return &counting{fn: func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(status)
		fmt.Fprint(w, "upstream says ", status)
	}}
}

func echoing() *counting {
	return &counting{fn: func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "ok %d %x", len(b), sha(b))
	}}
}

func sha(b []byte) uint32 {
	var h uint32 = 2166136261
	for _, c := range b {
		h = (h ^ uint32(c)) * 16777619
	}
	return h
}

// refusedAddr returns a loopback address that refuses connections for
// the rest of the test (see holdRefusedAddr).
func refusedAddr(t *testing.T) string {
	a, _ := holdRefusedAddr(t)
	return a
}

// holdRefusedAddr returns a loopback address whose port a socket is
// bound to without listening, so that connections to it are refused
// and no listener is given the port, until the test ends or release
// lets it go (for the test to listen on it). The port of a listener
// closed at once was free for the next: the proxy the test started
// then was handed it for one of its own listeners now and then, so the
// requests for the refused endpoint went round through the proxy
// itself until max_requests overflowed (a fallback's reason overflow
// where upstream_connect_failure was expected).
func holdRefusedAddr(t *testing.T) (addr string, release func()) {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	release = sync.OnceFunc(func() { syscall.Close(fd) })
	t.Cleanup(release)
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port), release
}

func retryCfg(endpoints []string, rp config.RetryPolicy, mod ...func(*config.Route)) *config.Config {
	return simpleConfig(config.Cluster{Endpoints: eps(endpoints...)}, append([]func(*config.Route){func(r *config.Route) {
		r.Retry = &rp
	}}, mod...)...)
}

func do(t *testing.T, c *http.Client, method, url string, body []byte) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, _ := http.NewRequest(method, url, rd)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return resp, readAll(t, resp)
}

func TestRetry5xxGoesToAnotherEndpoint(t *testing.T) {
	bad, good := failing(503), echoing()
	a, b := upstream(t, false, bad.ServeHTTP), upstream(t, false, good.ServeHTTP)
	fast := config.Backoff{Base: time.Millisecond, Max: time.Millisecond}
	h := startProxy(t, retryCfg([]string{addr(a), addr(b)}, config.RetryPolicy{Attempts: 3, RetryOn: []config.RetryCondition{"5xx"}, Backoff: fast}))
	for i := 0; i < 4; i++ {
		resp, body := do(t, h.h1, "GET", h.url("/"), nil)
		if resp.StatusCode != 200 || !strings.HasPrefix(body, "ok") {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	// Round robin gives every first attempt to the failing endpoint (each
	// retry takes a turn too); every retry goes to the other one.
	if bad.n.Load() != 4 || good.n.Load() != 4 {
		t.Fatalf("bad hit %d, good hit %d; want 4 and 4", bad.n.Load(), good.n.Load())
	}
	if v := testutil.ToFloat64(h.p.m.retries.WithLabelValues("svc")); v != 4 {
		t.Fatalf("retries_total = %v, want 4", v)
	}
}

func TestRetryWithBufferedBodyReplaysItIntact(t *testing.T) {
	bad, good := failing(502), echoing()
	a, b := upstream(t, false, bad.ServeHTTP), upstream(t, false, good.ServeHTTP)
	h := startProxy(t, retryCfg([]string{addr(a), addr(b)}, config.RetryPolicy{Attempts: 1, RetryOn: []config.RetryCondition{"gateway-error"}, Backoff: config.Backoff{Base: time.Microsecond}}))
	body := bytes.Repeat([]byte("0123456789abcdef"), 1000) // 16000 bytes < 64 KiB
	resp, got := do(t, h.h1, "PUT", h.url("/"), body)
	if want := fmt.Sprintf("ok %d %x", len(body), sha(body)); resp.StatusCode != 200 || got != want {
		t.Fatalf("%d %q, want %q", resp.StatusCode, got, want)
	}
	if bad.n.Load() != 1 || good.n.Load() != 1 {
		t.Fatalf("hits %d/%d", bad.n.Load(), good.n.Load())
	}
}

func TestRetryNotForPOSTOn5xx(t *testing.T) {
	bad, good := failing(503), echoing()
	a, b := upstream(t, false, bad.ServeHTTP), upstream(t, false, good.ServeHTTP)
	h := startProxy(t, retryCfg([]string{addr(a), addr(b)}, config.RetryPolicy{Attempts: 2, RetryOn: []config.RetryCondition{"5xx"}}))
	resp, body := do(t, h.h1, "POST", h.url("/"), []byte("x"))
	if resp.StatusCode != 503 || body != "upstream says 503" {
		t.Fatalf("%d %q: the upstream's own response must be forwarded", resp.StatusCode, body)
	}
	if good.n.Load() != 0 {
		t.Fatal("POST was retried")
	}
}

func TestRetryPOSTOnConnectFailureIsSafe(t *testing.T) {
	good := echoing()
	b := upstream(t, false, good.ServeHTTP)
	h := startProxy(t, retryCfg([]string{refusedAddr(t), addr(b)}, config.RetryPolicy{Attempts: 1, RetryOn: []config.RetryCondition{"connect-failure"}, Backoff: config.Backoff{Base: time.Microsecond}}))
	body := []byte("payload")
	resp, got := do(t, h.h1, "POST", h.url("/"), body)
	if resp.StatusCode != 200 || got != fmt.Sprintf("ok 7 %x", sha(body)) {
		t.Fatalf("%d %q", resp.StatusCode, got)
	}
}

func TestRetryNotWhenBodyExceedsBuffer(t *testing.T) {
	bad, good := failing(503), failing(503)
	a, b := upstream(t, false, bad.ServeHTTP), upstream(t, false, good.ServeHTTP)
	h := startProxy(t, retryCfg([]string{addr(a), addr(b)}, config.RetryPolicy{Attempts: 2, RetryOn: []config.RetryCondition{"5xx"}, MaxBufferedBodyBytes: 1024}))
	big := bytes.Repeat([]byte("z"), 100<<10)
	resp, got := do(t, h.h1, "PUT", h.url("/"), big)
	if resp.StatusCode != 503 || bad.n.Load()+good.n.Load() != 1 {
		t.Fatalf("%d %q hits=%d: a body over the buffer limit must not be retried", resp.StatusCode, got, bad.n.Load()+good.n.Load())
	}
	// Chunked (unknown length) bodies follow the same rule.
	req, _ := http.NewRequest("PUT", h.url("/"), io.MultiReader(bytes.NewReader(big)))
	req.ContentLength = -1
	r2, err := h.h1.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, r2)
	if r2.StatusCode != 503 || bad.n.Load()+good.n.Load() != 2 {
		t.Fatalf("chunked: %d hits=%d", r2.StatusCode, bad.n.Load()+good.n.Load())
	}
}

func TestRetryBackoffUsesFullJitterOnInjectedRand(t *testing.T) {
	bad := failing(503)
	a := upstream(t, false, bad.ServeHTTP)
	var mu sync.Mutex
	var ceilings []time.Duration
	h := startProxy(t, retryCfg([]string{addr(a)}, config.RetryPolicy{Attempts: 4, RetryOn: []config.RetryCondition{"5xx"},
		Backoff: config.Backoff{Base: time.Millisecond, Max: 3 * time.Millisecond}}),
		func(o *Options) {
			o.Int63n = func(n int64) int64 {
				mu.Lock()
				ceilings = append(ceilings, time.Duration(n))
				mu.Unlock()
				return 0
			}
		})
	resp, _ := do(t, h.h1, "GET", h.url("/"), nil)
	if resp.StatusCode != 503 || bad.n.Load() != 5 {
		t.Fatalf("%d after %d attempts", resp.StatusCode, bad.n.Load())
	}
	mu.Lock()
	defer mu.Unlock()
	want := []time.Duration{time.Millisecond, 2 * time.Millisecond, 3 * time.Millisecond, 3 * time.Millisecond}
	if fmt.Sprint(ceilings) != fmt.Sprint(want) {
		t.Fatalf("back-off ceilings %v, want %v", ceilings, want)
	}
}

// The one retry budget is the cluster's (limits.retry_budget): routes to
// the same cluster share it, and a request holds its slot while it backs off.
func TestRetryBudgetIsPerClusterAndSharedByRoutes(t *testing.T) {
	bad := failing(503)
	a := upstream(t, false, bad.ServeHTTP)
	rp := config.RetryPolicy{Attempts: 1, RetryOn: []config.RetryCondition{"5xx"}, Backoff: config.Backoff{Base: time.Hour, Max: time.Hour}}
	cfg := &config.Config{
		Clusters: map[string]config.Cluster{"svc": {
			Endpoints: eps(addr(a)),
			// 1% of a few requests in flight rounds down: min_retry_concurrency 1 is the limit.
			Limits: breaker.LimitsConfig{RetryBudget: &breaker.RetryBudgetConfig{BudgetPercent: 1, MinRetryConcurrency: 1}},
		}},
		// Route a's request holds the budget until its timeout, by which
		// route b's request must have been refused its retry, on a loaded
		// machine too.
		Routes: []config.Route{
			{Name: "a", Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/a"}}, Cluster: "svc", Retry: &rp, Timeout: 2 * time.Second},
			{Name: "b", Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/b"}}, Cluster: "svc", Retry: &rp, Timeout: 500 * time.Millisecond},
		},
	}
	// Every back-off lasts until the route timeout.
	h := startProxy(t, cfg, func(o *Options) { o.Int63n = func(n int64) int64 { return n - 1 } })
	first := make(chan int, 1)
	go func() {
		resp, err := h.h1.Get(h.url("/a"))
		if err != nil {
			first <- -1
			return
		}
		resp.Body.Close()
		first <- resp.StatusCode
	}()
	c := h.p.snap.Load().clusters["svc"]
	inUse := func() int64 { return c.res.limits.Snapshot().InUse[breaker.LimitRetries] }
	eventually(t, 5*time.Second, "route a's retry to take the cluster's budget", func() bool { return inUse() == 1 })
	resp, body := do(t, h.h1, "GET", h.url("/b"), nil)
	if resp.StatusCode != 503 || body != "upstream says 503" {
		t.Fatalf("route b: %d %q, want the upstream 503 without retry", resp.StatusCode, body)
	}
	if v := testutil.ToFloat64(h.p.bm.rejected.WithLabelValues("svc", "max_retries")); v != 1 {
		t.Fatalf("retry rejections %v", v)
	}
	if st := <-first; st != 504 {
		t.Fatalf("first request ended %d, want 504 (deadline during back-off)", st)
	}
	if inUse() != 0 {
		t.Fatal("budget slot leaked")
	}
}

func TestRouteTimeoutLocalReply504(t *testing.T) {
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up))}, func(r *config.Route) { r.Timeout = 100 * time.Millisecond }))
	start := time.Now()
	resp, body := do(t, h.h1, "GET", h.url("/"), nil)
	if resp.StatusCode != 504 || resp.Header.Get("X-Outrigger-Error") != "upstream_timeout" || body != "upstream request timeout\n" {
		t.Fatalf("%d %q %q", resp.StatusCode, resp.Header.Get("X-Outrigger-Error"), body)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("took %v", el)
	}
}

func TestPerTryTimeoutRetriesElsewhere(t *testing.T) {
	slow := &counting{fn: func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }}
	good := echoing()
	a, b := upstream(t, false, slow.ServeHTTP), upstream(t, false, good.ServeHTTP)
	// The retry's answer must come within the per-try timeout on a
	// loaded machine too.
	h := startProxy(t, retryCfg([]string{addr(a), addr(b)}, config.RetryPolicy{Attempts: 1, RetryOn: []config.RetryCondition{"gateway-error"}, Backoff: config.Backoff{Base: time.Microsecond}},
		func(r *config.Route) { r.PerTryTimeout = time.Second }))
	resp, body := do(t, h.h1, "GET", h.url("/"), nil)
	if resp.StatusCode != 200 || slow.n.Load() != 1 || good.n.Load() != 1 {
		t.Fatalf("%d %q slow=%d good=%d", resp.StatusCode, body, slow.n.Load(), good.n.Load())
	}
	// Without a retry the per-try timeout is a 504. It is a second: a
	// connection not made within it is a connect failure (502), and on a
	// loaded machine that could take longer than 50 ms.
	h2 := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(a))}, func(r *config.Route) { r.PerTryTimeout = time.Second }))
	resp, _ = do(t, h2.h1, "GET", h2.url("/"), nil)
	if resp.StatusCode != 504 || resp.Header.Get("X-Outrigger-Error") != "upstream_timeout" {
		t.Fatalf("no retry: %d %q", resp.StatusCode, resp.Header.Get("X-Outrigger-Error"))
	}
}

// blackhole returns an address whose accept queue is full, so new
// connection attempts hang (the kernel drops their SYNs) until the
// dialer's timeout.
func blackhole(t *testing.T) string {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, _ := syscall.Getsockname(fd)
	a := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	// Fill the queue: connections that complete are never accepted; once
	// one attempt times out after another was made, the queue is full. An
	// attempt that times out before any was made proves nothing: on a
	// loaded machine its time may have run out before it sent its SYN.
	made := 0
	for i := 0; i < 8; i++ {
		c, err := net.DialTimeout("tcp", a, 100*time.Millisecond)
		if err != nil {
			if made > 0 {
				return a
			}
			continue
		}
		made++
		t.Cleanup(func() { c.Close() })
	}
	t.Skip("cannot fill the accept queue on this kernel")
	return ""
}

func TestConnectTimeoutToBlackhole(t *testing.T) {
	bh := blackhole(t)
	h := startProxy(t, &config.Config{
		Clusters: map[string]config.Cluster{"svc": {Endpoints: eps(bh), ConnectTimeout: 150 * time.Millisecond}},
		Routes:   []config.Route{{Name: "all", Cluster: "svc"}},
	})
	start := time.Now()
	resp, _ := do(t, h.h1, "GET", h.url("/"), nil)
	el := time.Since(start)
	if resp.StatusCode != 502 || resp.Header.Get("X-Outrigger-Error") != "upstream_connect_failure" {
		t.Fatalf("%d %q", resp.StatusCode, resp.Header.Get("X-Outrigger-Error"))
	}
	if el < 100*time.Millisecond || el > 5*time.Second {
		t.Fatalf("took %v, want about the 150ms connect timeout", el)
	}
}

func TestConnectRefusedLocalReply502(t *testing.T) {
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(refusedAddr(t))}))
	resp, _ := do(t, h.h1, "GET", h.url("/"), nil)
	if resp.StatusCode != 502 || resp.Header.Get("X-Outrigger-Error") != "upstream_connect_failure" {
		t.Fatalf("%d %q", resp.StatusCode, resp.Header.Get("X-Outrigger-Error"))
	}
	if v := testutil.ToFloat64(h.p.m.localReply.WithLabelValues("upstream_connect_failure")); v != 1 {
		t.Fatalf("local_replies_total = %v", v)
	}
}

func TestUpstreamResetLocalReply502(t *testing.T) {
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		c, _, _ := http.NewResponseController(w).Hijack()
		c.Close()
	})
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up))}))
	resp, _ := do(t, h.h1, "GET", h.url("/"), nil)
	if resp.StatusCode != 502 || resp.Header.Get("X-Outrigger-Error") != "upstream_reset" {
		t.Fatalf("%d %q", resp.StatusCode, resp.Header.Get("X-Outrigger-Error"))
	}
}

func TestRequestBodyLimit(t *testing.T) {
	good := echoing()
	up := upstream(t, false, good.ServeHTTP)
	cfg := simpleConfig(config.Cluster{Endpoints: eps(addr(up))})
	cfg.Listeners.MaxRequestBodyBytes = 1000
	h := startProxy(t, cfg)
	resp, _ := do(t, h.h1, "POST", h.url("/"), make([]byte, 1001))
	if resp.StatusCode != 413 || resp.Header.Get("X-Outrigger-Error") != "request_too_large" || good.n.Load() != 0 {
		t.Fatalf("content-length: %d %q hits=%d", resp.StatusCode, resp.Header.Get("X-Outrigger-Error"), good.n.Load())
	}
	req, _ := http.NewRequest("POST", h.url("/"), io.MultiReader(bytes.NewReader(make([]byte, 5000))))
	req.ContentLength = -1
	r2, err := h.h1.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, r2)
	if r2.StatusCode != 413 {
		t.Fatalf("chunked: %d", r2.StatusCode)
	}
	resp, body := do(t, h.h1, "POST", h.url("/"), make([]byte, 1000))
	if resp.StatusCode != 200 || !strings.HasPrefix(body, "ok 1000") {
		t.Fatalf("at the limit: %d %q", resp.StatusCode, body)
	}
}

func TestRequestHeaderLimit(t *testing.T) {
	up := upstream(t, false, echoing().ServeHTTP)
	cfg := simpleConfig(config.Cluster{Endpoints: eps(addr(up))})
	cfg.Listeners.MaxRequestHeaderBytes = 2048
	h := startProxy(t, cfg)
	resp := mustGet(t, h.h1, h.url("/"), "X-Big", strings.Repeat("a", 8192))
	readAll(t, resp)
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

// A client that goes away while the upstream holds its request ends
// the upstream request, whatever the protocols on either side: the
// transports watch the request's context (h2server's and h1server's
// own type).
func TestClientGoneCancelsUpstream(t *testing.T) {
	for _, proto := range []config.Protocol{config.ProtocolHTTP1, config.ProtocolHTTP2} {
		for _, down := range []string{"h1", "h2c"} {
			t.Run(string(proto)+" from "+down, func(t *testing.T) {
				arrived, cancelled := make(chan struct{}), make(chan struct{})
				up := upstream(t, proto == config.ProtocolHTTP2, func(w http.ResponseWriter, r *http.Request) {
					close(arrived)
					<-r.Context().Done()
					close(cancelled)
				})
				h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up)), Protocol: proto}))
				client := h.h1
				if down == "h2c" {
					client = h.h2c
				}
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				req, _ := http.NewRequestWithContext(ctx, "GET", h.url("/"), nil)
				// Cancel once the upstream holds the request, so the test
				// proves the cancellation travels upstream rather than
				// racing the dial.
				go func() {
					select {
					case <-arrived:
					case <-time.After(5 * time.Second):
					}
					cancel()
				}()
				if _, err := client.Do(req); err == nil {
					t.Fatal("expected cancellation")
				}
				select {
				case <-cancelled:
				case <-time.After(5 * time.Second):
					t.Fatal("upstream request not cancelled")
				}
			})
		}
	}
}

func TestReplayBodyViews(t *testing.T) {
	src := strings.NewReader("hello world")
	rb := newReplayBody(src, 8, 11)
	v1 := rb.view()
	buf := make([]byte, 5)
	if n, _ := v1.Read(buf); string(buf[:n]) != "hello" {
		t.Fatalf("%q", buf[:n])
	}
	v1.release()
	if _, err := v1.Read(buf); err != errBodyDetached {
		t.Fatalf("detached view read: %v", err)
	}
	v2 := rb.view()
	all, err := io.ReadAll(v2)
	if err != nil || string(all) != "hello world" {
		t.Fatalf("replay %q %v", all, err)
	}
	// 11 bytes > limit 8: the copy is gone.
	if rb.replayable() || rb.complete() {
		t.Fatal("overflowed body still replayable")
	}
	small := newReplayBody(strings.NewReader("abc"), 8, 3)
	_, _ = io.ReadAll(io.LimitReader(small.view(), 3))
	if !small.complete() {
		t.Fatal("a body read to its declared length is complete")
	}
}

// An HTTP/2 GET has a non-nil Body that returns EOF at once; it is sent
// upstream as no body, and it must stay retriable like an HTTP/1.1 GET.
func TestRetryH2CGetWithEndedStream(t *testing.T) {
	bad, good := failing(503), echoing()
	a, b := upstream(t, false, bad.ServeHTTP), upstream(t, false, good.ServeHTTP)
	fast := config.Backoff{Base: time.Millisecond, Max: time.Millisecond}
	h := startProxy(t, retryCfg([]string{addr(a), addr(b)}, config.RetryPolicy{Attempts: 2, RetryOn: []config.RetryCondition{"5xx"}, Backoff: fast}))
	for i := 0; i < 2; i++ {
		resp, body := do(t, h.h2c, "GET", h.url("/"), nil)
		if resp.ProtoMajor != 2 || resp.StatusCode != 200 || !strings.HasPrefix(body, "ok") {
			t.Fatalf("request %d: %s %d %q", i, resp.Proto, resp.StatusCode, body)
		}
	}
	if bad.n.Load() != 2 || good.n.Load() != 2 {
		t.Fatalf("bad hit %d, good hit %d; want 2 and 2", bad.n.Load(), good.n.Load())
	}
}

// An upstream's answer that says it is overloaded (another Outrigger's
// overflow, Envoy's x-envoy-overloaded) is not retried, as Envoy does
// not retry x-envoy-overloaded; another sidecar's breaker_open is (the
// next endpoint's breaker may be closed), as is a plain 503.
func TestOverloadedAnswerIsNotRetried(t *testing.T) {
	fast := config.Backoff{Base: time.Millisecond, Max: time.Millisecond}
	for _, tc := range []struct {
		name    string
		header  [2]string
		retried bool
	}{
		{"outrigger overflow", [2]string{HeaderError, "overflow"}, false},
		{"envoy overloaded", [2]string{"X-Envoy-Overloaded", "true"}, false},
		{"outrigger breaker open", [2]string{HeaderError, "breaker_open"}, true},
		{"plain", [2]string{"X-Other", "x"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := &counting{fn: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set(tc.header[0], tc.header[1])
				w.WriteHeader(503)
			}}
			good := echoing()
			a, b := upstream(t, false, bad.ServeHTTP), upstream(t, false, good.ServeHTTP)
			h := startProxy(t, retryCfg([]string{addr(a), addr(b)},
				config.RetryPolicy{Attempts: 2, RetryOn: []config.RetryCondition{"5xx"}, Backoff: fast}))
			resp, body := do(t, h.h1, "GET", h.url("/"), nil)
			want, wantGood := 503, int64(0)
			if tc.retried {
				want, wantGood = 200, 1
			}
			if resp.StatusCode != want || bad.n.Load() != 1 || good.n.Load() != wantGood {
				t.Fatalf("%d %q; %d and %d upstream requests, want %d", resp.StatusCode, body, bad.n.Load(), good.n.Load(), want)
			}
		})
	}
}
