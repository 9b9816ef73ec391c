package proxy

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/outrigger-mesh/outrigger/breaker"
	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// A grpc-timeout of zero ("0m", or the "0n" grpc-go's encoder writes for
// a deadline already past) is a deadline that has passed, as grpc-go's
// server reads it: the call ends DEADLINE_EXCEEDED at once. It must not
// switch off the route timeout, which is what taking it as "no timeout"
// did: the call then waited on a hung upstream for as long as the client
// stayed.
func TestGRPCTimeoutZeroIsAnExpiredDeadlineNotNone(t *testing.T) {
	up := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	cfg := grpcConfig(addr(up))
	cfg.Routes[0].Timeout = 20 * time.Second
	h := startProxy(t, cfg)
	for _, v := range []string{"0m", "0n", "00000000S"} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		req, _ := http.NewRequestWithContext(ctx, "POST", h.url("/grpc.testing.TestService/UnaryCall"), strings.NewReader("\x00\x00\x00\x00\x00"))
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("Te", "trailers")
		req.Header.Set("Grpc-Timeout", v)
		resp, err := h.h2c.Do(req)
		if err != nil {
			cancel()
			t.Fatalf("grpc-timeout %s: %v (the call was not bounded)", v, err)
		}
		readAll(t, resp)
		cancel()
		if resp.StatusCode != 200 || resp.Header.Get("Grpc-Status") != "4" || resp.Header.Get("X-Outrigger-Error") != "upstream_timeout" {
			t.Fatalf("grpc-timeout %s: %d %v", v, resp.StatusCode, resp.Header)
		}
	}
}

// A gRPC call answered with a non-200 HTTP status (an HTTP/2 load
// balancer's or server's 503, with no grpc-status) has no response
// message: the answer is whole at its headers, as a trailers-only one
// is (gRPC maps such a status to UNAVAILABLE, PROTOCOL-HTTP2.md and
// http-grpc-status-mapping.md). A route that retries gateway-error with
// allow_non_idempotent retries it (docs/proxy.md Retries); it was passed
// on without a retry, because a gRPC response was judged only by its
// grpc-status.
func TestGRPCCallAnsweredHTTP503IsRetriedAsGatewayError(t *testing.T) {
	var bad atomic.Int64
	lb := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {
		bad.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, "no healthy upstream")
	})
	svc := &testService{}
	cfg := grpcConfig(addr(lb), startGRPCServer(t, svc))
	cfg.Routes[0].Retry = &config.RetryPolicy{Attempts: 1, AllowNonIdempotent: true,
		RetryOn: []config.RetryCondition{"gateway-error"}, Backoff: config.Backoff{Base: time.Microsecond}}
	h := startProxy(t, cfg)
	resp, err := grpcClient(t, h.out).UnaryCall(ctxT(t, 5*time.Second), &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("hi")}})
	if err != nil {
		t.Fatalf("call failed after %d/%d attempts: %v", bad.Load(), svc.calls.Load(), err)
	}
	if string(resp.GetPayload().GetBody()) != "hi" || bad.Load() != 1 || svc.calls.Load() != 1 {
		t.Fatalf("payload %q, attempts %d/%d", resp.GetPayload().GetBody(), bad.Load(), svc.calls.Load())
	}
}

// A malformed grpc-timeout is ignored (docs/proxy.md Timeouts) and the
// header is replaced by the time remaining; with timeout_disabled there
// is no time remaining to send, and the malformed value went upstream
// as it came, where a gRPC server fails the call (grpc-go: INTERNAL
// "malformed grpc-timeout").
func TestMalformedGRPCTimeoutIsNotForwardedWithoutARouteTimeout(t *testing.T) {
	cfg := grpcConfig(startGRPCServer(t, &testService{}))
	cfg.Routes[0].TimeoutDisabled = true
	h := startProxy(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", h.url("/grpc.testing.TestService/UnaryCall"), strings.NewReader("\x00\x00\x00\x00\x00"))
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	req.Header.Set("Grpc-Timeout", "1.5S")
	resp, err := h.h2c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	st := resp.Trailer.Get("Grpc-Status")
	if st == "" {
		st = resp.Header.Get("Grpc-Status")
	}
	if resp.StatusCode != 200 || st != "0" {
		t.Fatalf("%d grpc-status %q %v %v", resp.StatusCode, st, resp.Header, resp.Trailer)
	}
}

// A grpc-timeout past what a time.Duration holds ("99999999H", the
// largest the header can say) saturates, and on a route with
// timeout_disabled the time remaining sent upstream is then within a
// unit of the largest duration: rounding it up overflowed, and the
// upstream was sent a negative grpc-timeout ("-9223372036853m"), which
// a gRPC server fails the call for (grpc-go: INTERNAL "malformed
// grpc-timeout").
func TestGRPCTimeoutAtTheLargestDurationIsSentValid(t *testing.T) {
	cfg := grpcConfig(startGRPCServer(t, &testService{}))
	cfg.Routes[0].TimeoutDisabled = true
	h := startProxy(t, cfg)
	for _, v := range []string{"99999999H", "2562048H"} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		req, _ := http.NewRequestWithContext(ctx, "POST", h.url("/grpc.testing.TestService/UnaryCall"), strings.NewReader("\x00\x00\x00\x00\x00"))
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("Te", "trailers")
		req.Header.Set("Grpc-Timeout", v)
		resp, err := h.h2c.Do(req)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		readAll(t, resp)
		cancel()
		st, msg := resp.Trailer.Get("Grpc-Status"), resp.Trailer.Get("Grpc-Message")
		if st == "" {
			st, msg = resp.Header.Get("Grpc-Status"), resp.Header.Get("Grpc-Message")
		}
		if resp.StatusCode != 200 || st != "0" {
			t.Fatalf("grpc-timeout %s: %d grpc-status %q %q", v, resp.StatusCode, st, msg)
		}
	}
}

// A gRPC call whose stream ends without a grpc-status (a body, then
// END_STREAM and no trailers) failed: gRPC sends the status even for
// OK, and grpc-go's client ends such a call INTERNAL. The outlier
// detector and the breaker count it as the client does; it was counted
// a success, by the HTTP 200 alone, so an endpoint that drops its
// trailers was never ejected.
func TestGRPCCallEndingWithoutStatusIsAFailure(t *testing.T) {
	up := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/grpc")
		_, _ = w.Write([]byte("\x00\x00\x00\x00\x00"))
	})
	cfg := grpcConfig(addr(up))
	c := cfg.Clusters["grpc"]
	c.OutlierDetection = breaker.OutlierConfig{Consecutive5xx: 3}
	cfg.Clusters["grpc"] = c
	h := startProxy(t, cfg)
	client := grpcClient(t, h.out)
	for i := range 2 {
		_, err := client.UnaryCall(ctxT(t, 5*time.Second), &testpb.SimpleRequest{})
		if status.Code(err) != codes.Internal {
			t.Fatalf("call %d: %v, want the client's INTERNAL", i, err)
		}
	}
	s := h.p.snap.Load().clusters["grpc"].res.det.Snapshot(time.Now()).Endpoints[0]
	if s.Consecutive5xx != 2 || s.IntervalSuccesses != 0 || s.IntervalRequests != 2 {
		t.Fatalf("detector saw %d failures in a row, %d successes of %d calls; want 2, 0 of 2",
			s.Consecutive5xx, s.IntervalSuccesses, s.IntervalRequests)
	}
}
