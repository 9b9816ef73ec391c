package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/outrigger-mesh/outrigger/breaker"
	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// A client that stalls its request body is the client's failure, not the
// upstream's: the 504 it gets must not count against the endpoint or
// the cluster's breaker (docs/proxy.md: the breaker and outlier detector
// get the attempt's outcome, and a call the client abandoned counts
// neither way). Counting it let a few slow clients trip the breaker for
// every caller of a healthy cluster. The stalls' route timeout is a
// second: only a deadline that passes while the body is awaited is the
// client's, one that passes before, in the connection to the upstream
// (a new one for each stall over HTTP/1.1), is the upstream's, and on a
// loaded machine two connections in a row could outlast 200 ms and trip
// the breaker.
func TestStalledRequestBodyDoesNotCountAgainstTheUpstream(t *testing.T) {
	const timeout = time.Second
	for _, proto := range []config.Protocol{config.ProtocolHTTP1, config.ProtocolHTTP2} {
		t.Run(string(proto), func(t *testing.T) {
			su := &stallUpstream{}
			up := upstream(t, proto == config.ProtocolHTTP2, su.handler)
			cc := config.Cluster{Endpoints: eps(addr(up)), Protocol: proto,
				CircuitBreaker: tripsAfter(2)}
			cfg := simpleConfig(cc, func(r *config.Route) { r.Timeout = timeout })
			// The healthy request goes to the same cluster on a route
			// with the default timeout: under the stalls', on a loaded
			// machine, its answer could come too late and be a 504 of its
			// own.
			cfg.Routes = append([]config.Route{{Name: "healthy", Cluster: "svc",
				Match: config.RouteMatch{Path: config.PathMatch{Exact: "/healthy"}}}}, cfg.Routes...)
			h := startProxy(t, cfg)
			for i := 0; i < 3; i++ {
				c, err := net.DialTimeout("tcp", h.out, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789"); err != nil {
					t.Fatal(err)
				}
				resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: "POST"})
				if err != nil {
					t.Fatalf("no response: %v", err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				c.Close()
				if resp.StatusCode != http.StatusGatewayTimeout || resp.Header.Get(hdrError) != "upstream_timeout" {
					t.Fatalf("stall %d: %d %q, want 504 upstream_timeout", i, resp.StatusCode, resp.Header.Get(hdrError))
				}
			}
			resp := mustGet(t, h.h1, h.url("/healthy"))
			readAll(t, resp)
			if resp.StatusCode != 200 {
				t.Fatalf("after clients stalled their bodies a healthy upstream gets %d %q (breaker %q)",
					resp.StatusCode, resp.Header.Get(hdrError), resp.Header.Get(hdrBreaker))
			}
			s := svcBreaker(h)
			if s.State != breaker.StateClosed {
				t.Fatalf("breaker %v", s.State)
			}
		})
	}
}

// The other side of the line: a body sent whole to an upstream that then
// does not answer in time is the upstream's timeout, and counts.
func TestWholeBodyThenUpstreamTimeoutStillCounts(t *testing.T) {
	stop := make(chan struct{})
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	})
	t.Cleanup(func() { close(stop) })
	cc := config.Cluster{Endpoints: eps(addr(up)),
		CircuitBreaker: tripsAfter(2)}
	h := startProxy(t, simpleConfig(cc, func(r *config.Route) { r.Timeout = stallTimeout }))
	for i, want := range []string{"upstream_timeout", "upstream_timeout", "breaker_open"} {
		resp, _ := do(t, h.h1, "POST", h.url("/"), []byte("0123456789"))
		if got := resp.Header.Get(hdrError); got != want {
			t.Fatalf("request %d: %d %q, want %q", i, resp.StatusCode, got, want)
		}
	}
}

// A body that crosses listeners.max_request_body_bytes after the
// upstream began its response aborts the response (docs/proxy.md
// Request bodies); that is the client's doing, so it counts against
// neither the endpoint nor the breaker. It was recorded as the
// upstream's reset. (An http1 cluster sends the whole body before it
// reads the response, so the limit is met first there: 413.)
func TestBodyOverLimitAfterResponseStartedDoesNotCountAgainstTheUpstream(t *testing.T) {
	up := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {
		// Full duplex: answer first, then read the body.
		_ = http.NewResponseController(w).EnableFullDuplex()
		w.WriteHeader(200)
		_, _ = io.WriteString(w, "started\n")
		_ = http.NewResponseController(w).Flush()
		buf := make([]byte, 512)
		for {
			n, err := r.Body.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return
				}
				_ = http.NewResponseController(w).Flush()
			}
			if err != nil {
				return
			}
		}
	})
	cfg := simpleConfig(config.Cluster{Endpoints: eps(addr(up)), Protocol: config.ProtocolHTTP2,
		CircuitBreaker: tripsAfter(1)})
	cfg.Listeners.MaxRequestBodyBytes = 1 << 10
	h := startProxy(t, cfg)

	c, err := net.DialTimeout("tcp", h.out, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: "POST"})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("no response head: %v", err)
	}
	chunk := strings.Repeat("x", 256)
	for i := 0; i < 16; i++ { // 4 KiB, over the 1 KiB limit
		if _, err := fmt.Fprintf(c, "%x\r\n%s\r\n", len(chunk), chunk); err != nil {
			break
		}
	}
	if _, err := io.Copy(io.Discard, resp.Body); err == nil {
		t.Fatal("the response ended as if complete")
	}
	eventually(t, 5*time.Second, "the request to end", func() bool {
		return testutil.ToFloat64(h.p.m.active.WithLabelValues("svc")) == 0
	})
	if s := svcBreaker(h); s.State != breaker.StateClosed {
		t.Fatalf("the client's oversized body tripped the breaker: %v", s.State)
	}
}

// A request body the client breaks (a malformed chunk) before any
// response is the client's failure: it counts against neither the
// endpoint nor the breaker, and is not retried. It was recorded as the
// upstream's reset.
func TestBrokenRequestBodyDoesNotCountAgainstTheUpstream(t *testing.T) {
	for _, proto := range []config.Protocol{config.ProtocolHTTP1, config.ProtocolHTTP2} {
		t.Run(string(proto), func(t *testing.T) {
			su := &stallUpstream{}
			up := upstream(t, proto == config.ProtocolHTTP2, su.handler)
			cc := config.Cluster{Endpoints: eps(addr(up)), Protocol: proto,
				CircuitBreaker: tripsAfter(1)}
			h := startProxy(t, simpleConfig(cc, func(r *config.Route) {
				r.Retry = &config.RetryPolicy{Attempts: 2, RetryOn: []config.RetryCondition{"5xx"}, Backoff: config.Backoff{Base: time.Millisecond}}
			}))
			c, err := net.DialTimeout("tcp", h.out, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(c, "PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\nzz\r\n"); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: "PUT"})
			if err != nil {
				t.Fatalf("no response: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != 400 || resp.Header.Get(hdrError) != "invalid_request" {
				t.Fatalf("%d %q", resp.StatusCode, resp.Header.Get(hdrError))
			}
			if s := svcBreaker(h); s.State != breaker.StateClosed {
				t.Fatalf("a client's malformed body tripped the breaker (reply %d %q)", resp.StatusCode, resp.Header.Get(hdrError))
			}
			if v := testutil.ToFloat64(h.p.m.retries.WithLabelValues("svc")); v != 0 {
				t.Fatalf("retried %v times", v)
			}
		})
	}
}

// tripsAfter is a breaker that opens after n failures in a row, and on
// nothing else.
func tripsAfter(n int) breaker.Config {
	return breaker.Config{
		ConsecutiveFailures: breaker.ConsecutiveFailuresConfig{Threshold: n},
		FailureRate:         breaker.FailureRateConfig{Disabled: true},
	}
}

// svcBreaker is the serving breaker of simpleConfig's cluster, now.
func svcBreaker(h *harness) breaker.Snapshot {
	return h.p.snap.Load().clusters["svc"].res.br.Snapshot(time.Now())
}
