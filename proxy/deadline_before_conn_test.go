package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/outrigger-mesh/outrigger/breaker"
	"github.com/outrigger-mesh/outrigger/proxy/config"
	"github.com/outrigger-mesh/outrigger/proxy/internal/proxytest"
)

// A call whose deadline has passed before its attempt got a connection
// (here a grpc-timeout of a nanosecond, which the proxy takes as the
// route deadline) never reached the endpoint: it is answered
// DEADLINE_EXCEEDED, but neither the breaker nor outlier detection
// counts it, as Envoy's router reports nothing of a request still
// pending in its pool. Three in a row left a breaker that trips after
// three failures open, and outlier detection ejecting the endpoint.
func TestDeadlinePassedBeforeTheConnectionIsNotTheEndpointsFailure(t *testing.T) {
	var reached atomic.Int32
	up := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Grpc-Status", "0")
	})
	cfg := grpcConfig(addr(up))
	c := cfg.Clusters["grpc"]
	c.CircuitBreaker = tripsAfter(3)
	c.OutlierDetection = breaker.OutlierConfig{Consecutive5xx: 3, BaseEjectionTime: time.Hour, MaxEjectionPercent: 100}
	cfg.Clusters["grpc"] = c
	cfg.Routes[0].Timeout = time.Minute
	h := startProxy(t, cfg)
	// call POSTs an empty unary call with grpc-timeout timeout (none
	// when empty) and returns its response, read to its end.
	call := func(timeout string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("POST", h.url("/grpc.testing.TestService/UnaryCall"), strings.NewReader("\x00\x00\x00\x00\x00"))
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("Te", "trailers")
		if timeout != "" {
			req.Header.Set("Grpc-Timeout", timeout)
		}
		resp, err := h.h2c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		return resp
	}
	for i := range 3 {
		resp := call("1n")
		if s := resp.Header.Get("Grpc-Status") + resp.Trailer.Get("Grpc-Status"); s != "4" {
			t.Fatalf("call %d: grpc-status %q, want 4 (DEADLINE_EXCEEDED)", i, s)
		}
	}
	if n := reached.Load(); n != 0 {
		t.Fatalf("%d calls reached the upstream, want none", n)
	}
	if s := h.p.snap.Load().clusters["grpc"].res.br.Snapshot(time.Now()); s.State != breaker.StateClosed || s.Failures != 0 {
		t.Fatalf("breaker %v with %d failures, want closed with none", s.State, s.Failures)
	}
	if h.p.snap.Load().clusters["grpc"].res.det.Ejected(0, time.Now()) {
		t.Fatal("the endpoint ejected")
	}
	resp := call("")
	if resp.StatusCode != 200 || reached.Load() != 1 {
		t.Fatalf("a call with time to spare: %d, %d upstream; want it served", resp.StatusCode, reached.Load())
	}
}

// An HTTP/2 endpoint that accepts connections and never sends its
// SETTINGS (a hung process whose kernel still completes the TCP
// handshake) fails every attempt in the connection's handshake, which
// the attempt's deadline cuts short before it has a stream: that is the
// endpoint's failure to connect, as a TLS handshake that times out is,
// and the breaker counts it (Envoy sends the request on a connection
// once it is connected, and times it out on the host). Left uncounted,
// the breaker never opened on an endpoint that answered nothing.
func TestHTTP2HandshakeCutByTheDeadlineIsTheEndpointsFailure(t *testing.T) {
	for _, tc := range []struct {
		name          string
		route, perTry time.Duration
	}{
		// A second, not less: a deadline that passed before the
		// attempt dialled would spare the endpoint (it never had a
		// connection), and a loaded machine can hold an attempt up
		// that long before its dial.
		{"per-try timeout", time.Minute, time.Second},
		{"route timeout", time.Second, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Accepts, and reads what it is sent until the test's end.
			silent := proxytest.Serve(t, func(c net.Conn, _ int) { io.Copy(io.Discard, c) })
			cfg := simpleConfig(config.Cluster{Endpoints: eps(silent), Protocol: config.ProtocolHTTP2, CircuitBreaker: tripsAfter(3)}, func(r *config.Route) {
				r.Timeout, r.PerTryTimeout = tc.route, tc.perTry
			})
			h := startProxy(t, cfg)
			for i := range 3 {
				if resp, body := do(t, h.h1, "GET", h.url("/"), nil); resp.StatusCode/100 != 5 {
					t.Fatalf("call %d: %d %q, want a 5xx", i, resp.StatusCode, body)
				}
			}
			if s := svcBreaker(h); s.State != breaker.StateOpen {
				t.Fatalf("breaker %v with %d failures, want open after three handshakes that timed out", s.State, s.Failures)
			}
			wantConnectFailures(t, h, "timeout", 3)
		})
	}
}

// An HTTP/2 endpoint whose SETTINGS allow no streams fails each attempt
// before it has one, on a connection the endpoint did make: the
// endpoint's failure (a reset), as Envoy's router counts the reset of a
// stream sent on a connection it had, not an attempt whose deadline
// passed before its connection. Left uncounted, such an endpoint failed
// every call sent to it and was never ejected.
func TestHTTP2UpstreamAllowingNoStreamsIsTheEndpointsFailure(t *testing.T) {
	up, _ := noStreamsUpstream(t)
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(up), Protocol: config.ProtocolHTTP2, CircuitBreaker: tripsAfter(3)}))
	for i := range 3 {
		if resp, body := do(t, h.h1, "GET", h.url("/"), nil); resp.StatusCode/100 != 5 {
			t.Fatalf("call %d: %d %q, want a 5xx", i, resp.StatusCode, body)
		}
	}
	if s := svcBreaker(h); s.State != breaker.StateOpen {
		t.Fatalf("breaker %v with %d failures, want open after three calls the endpoint took no stream for", s.State, s.Failures)
	}
}

// noStreamsUpstream is the address of an HTTP/2 server whose SETTINGS
// allow no streams, and the count of the connections it accepted.
func noStreamsUpstream(t *testing.T) (string, *atomic.Int32) {
	t.Helper()
	conns := new(atomic.Int32)
	return proxytest.Serve(t, func(c net.Conn, _ int) {
		conns.Add(1)
		br := bufio.NewReader(c)
		if _, err := io.ReadFull(br, make([]byte, len(http2.ClientPreface))); err != nil {
			return
		}
		fr := http2.NewFramer(c, br)
		if fr.WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 0}) != nil {
			return
		}
		for {
			if _, err := fr.ReadFrame(); err != nil {
				return
			}
		}
	}), conns
}

// An attempt that failed before it had a stream never reached the
// upstream's application, whatever failed it: here an HTTP/2 endpoint
// that allows no streams, retried on the cluster's other endpoint,
// which refuses the connection. The request is one no upstream saw, so
// the route's fallback answers it, as after two connect failures.
func TestFallbackAfterAnAttemptThatHadNoStream(t *testing.T) {
	noStreams, conns := noStreamsUpstream(t)
	cfg := fallbackConfig(noStreams, "", &config.Fallback{DirectResponse: &config.DirectResponse{Status: 200, Body: "spare"}}, func(r *config.Route) {
		r.Retry = &config.RetryPolicy{Attempts: 1, RetryOn: []config.RetryCondition{"reset", "connect-failure"}, Backoff: config.Backoff{Base: time.Millisecond}}
	})
	c := cfg.Clusters["svc"]
	c.Protocol = config.ProtocolHTTP2
	c.Endpoints = append(c.Endpoints, eps(refusedAddr(t))...)
	cfg.Clusters["svc"] = c
	h := startProxy(t, cfg)
	resp, body := do(t, h.h1, "GET", h.url("/"), nil)
	if resp.StatusCode != 200 || body != "spare" || resp.Header.Get(hdrFallback) != "upstream_connect_failure" {
		t.Fatalf("%d %q %s %q, want the fallback for a connect failure", resp.StatusCode, body, hdrFallback, resp.Header.Get(hdrFallback))
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections to the endpoint that allows no streams, want 1 (the first attempt's)", n)
	}
}
