package proxy

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
)

// A gRPC call's Envoy headers, sent as metadata, are honored and
// removed: x-envoy-retry-grpc-on with x-envoy-max-retries retries a
// trailers-only UNAVAILABLE on a route without a retry policy, and
// x-envoy-upstream-rq-timeout-ms under the client's deadline is the
// grpc-timeout the upstream is told, while the client's deadline still
// bounds a call whose header lifts the route timeout.
func TestEnvoyHeadersOfAGRPCCall(t *testing.T) {
	svc := &testService{deadlines: make(chan time.Duration, 4)}
	svc.failUnavailable.Store(2)
	var sawEnvoy atomic.Bool
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		for k := range md {
			if strings.HasPrefix(k, "x-envoy-") {
				sawEnvoy.Store(true)
			}
		}
		return handler(ctx, req)
	}))
	testpb.RegisterTestServiceServer(s, svc)
	done := make(chan struct{})
	go func() { _ = s.Serve(ln); close(done) }()
	t.Cleanup(func() { s.Stop(); <-done })

	h := startProxy(t, grpcConfig(ln.Addr().String()))
	c := grpcClient(t, h.out)
	ctx := metadata.AppendToOutgoingContext(ctxT(t, 30*time.Second),
		"x-envoy-retry-grpc-on", "unavailable", "x-envoy-max-retries", "2", "x-envoy-upstream-rq-timeout-ms", "5000")
	if _, err := c.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("hi")}}); err != nil {
		t.Fatalf("%v after %d calls, want the third's answer", err, svc.calls.Load())
	}
	if n := svc.calls.Load(); n != 3 {
		t.Fatalf("%d calls, want 3", n)
	}
	if d := <-svc.deadlines; d <= 0 || d > 5*time.Second {
		t.Fatalf("upstream deadline %v, want the header's 5s at most", d)
	}
	// 0 lifts the route timeout, not the client's deadline, which
	// still bounds the call.
	ctx = metadata.AppendToOutgoingContext(ctxT(t, 10*time.Second), "x-envoy-upstream-rq-timeout-ms", "0")
	if _, err := c.UnaryCall(ctx, &testpb.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
	if d := <-svc.deadlines; d <= 0 || d > 10*time.Second {
		t.Fatalf("upstream deadline %v after x-envoy-upstream-rq-timeout-ms 0, want the client's 10s at most", d)
	}
	if sawEnvoy.Load() {
		t.Fatal("the upstream was sent the headers")
	}
}
