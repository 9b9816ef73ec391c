package proxy

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/breaker"
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
