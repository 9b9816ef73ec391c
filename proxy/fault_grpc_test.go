package proxy

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// A gRPC call's grpc-timeout runs from when the client sent the call, a
// fault's delay included: the route timeout starts after the delay, but
// the client's deadline does not wait for it. A call whose deadline
// passed during the delay is answered DEADLINE_EXCEEDED and not
// forwarded (the client has given up: the upstream's work would be
// thrown away); one with time left is forwarded with only that time in
// its grpc-timeout, not the whole of it again.
func TestFaultDelayCountsAgainstTheGRPCDeadline(t *testing.T) {
	var calls atomic.Int64
	var sent atomic.Value
	up := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		sent.Store(r.Header.Get("Grpc-Timeout"))
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Grpc-Status", "0")
	})
	const delay = 300 * time.Millisecond
	cfg := grpcConfig(addr(up))
	cfg.Routes[0].Fault = &config.Fault{Delay: &config.FaultDelay{Fixed: delay, Percent: 100}}
	h := startProxy(t, cfg)
	call := func(timeout string) *http.Response {
		t.Helper()
		// The client leaves the deadline to the servers, as a client
		// behind another proxy that forwards its grpc-timeout does.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "POST", h.url("/grpc.testing.TestService/UnaryCall"), strings.NewReader("\x00\x00\x00\x00\x00"))
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("Te", "trailers")
		req.Header.Set("Grpc-Timeout", timeout)
		resp, err := h.h2c.Do(req)
		if err != nil {
			t.Fatalf("grpc-timeout %s: %v", timeout, err)
		}
		readAll(t, resp)
		return resp
	}

	resp := call("100m") // passes during the delay
	if st := resp.Header.Get("Grpc-Status"); st != "4" || resp.Header.Get(HeaderError) != "upstream_timeout" {
		t.Fatalf("deadline passed during the delay: grpc-status %q %q, want 4 upstream_timeout", st, resp.Header.Get(HeaderError))
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("a call whose deadline passed during the delay was forwarded (%d upstream calls)", n)
	}

	resp = call("2S")
	if st := resp.Header.Get("Grpc-Status"); st != "0" || calls.Load() != 1 {
		t.Fatalf("grpc-status %q, %d upstream calls; want 0 and 1", st, calls.Load())
	}
	got, err := parseGRPCTimeout(sent.Load().(string))
	if err != nil {
		t.Fatal(err)
	}
	if got > 2*time.Second-delay {
		t.Fatalf("upstream told grpc-timeout %v: the %v delay was not taken from the client's 2s", got, delay)
	}
}
