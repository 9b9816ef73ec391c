package proxy

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// deadlineService is a gRPC TestService whose UnaryCall records the time
// left to each call's deadline (-1 for none) and fails the first
// failFirst calls UNAVAILABLE (trailers-only).
type deadlineService struct {
	testService
	mu        sync.Mutex
	left      []time.Duration
	failFirst int
}

func (s *deadlineService) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	left := time.Duration(-1)
	if dl, ok := ctx.Deadline(); ok {
		left = time.Until(dl)
	}
	s.mu.Lock()
	s.left = append(s.left, left)
	fail := s.failFirst > 0
	s.failFirst--
	s.mu.Unlock()
	if fail {
		return nil, status.Error(codes.Unavailable, "warming up")
	}
	return &testpb.SimpleResponse{Payload: req.GetPayload()}, nil
}

func (s *deadlineService) seen() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.left...)
}

const (
	longRoute = time.Minute // the route timeout
	perTry    = 2 * time.Second
)

// A retry replays a body kept whole, so with grpc_timeout_per_try the
// upstream is told the per-try timeout, not the minute left to the
// route deadline: it gives up on the attempt when the proxy does.
func TestGRPCTimeoutOfARetryIsThePerTryTimeout(t *testing.T) {
	svc := &deadlineService{failFirst: 1}
	cfg := grpcConfig(startGRPCServer(t, svc))
	cfg.Routes[0].Timeout = longRoute
	cfg.Routes[0].PerTryTimeout = perTry
	cfg.Routes[0].GRPCTimeoutPerTry = true
	cfg.Routes[0].Retry = &config.RetryPolicy{Attempts: 1, RetryOn: []config.RetryCondition{"unavailable"},
		Backoff: config.Backoff{Base: time.Microsecond}}
	h := startProxy(t, cfg)
	c := grpcClient(t, h.out)
	if _, err := c.UnaryCall(ctxT(t, 5*time.Minute), &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("hi")}}); err != nil {
		t.Fatal(err)
	}
	left := svc.seen()
	if len(left) != 2 {
		t.Fatalf("server saw %d calls, want 2", len(left))
	}
	// The first try's message may not have reached the proxy whole when
	// its headers went out; the retry's was in memory.
	if d := left[1]; d <= 0 || d > perTry {
		t.Fatalf("the retry's deadline was %v away, want at most the per-try timeout %v", d, perTry)
	}
}

// A gRPC request without a body (its HEADERS end the stream) has no
// upload to cut: with grpc_timeout_per_try it is told the per-try
// timeout, also on a route without a deadline, where it was told none.
// Without the option it is told the time to the route deadline, as
// before.
func TestGRPCTimeoutOfABodylessCallIsThePerTryTimeout(t *testing.T) {
	for _, tc := range []struct {
		name            string
		option, noRoute bool
		min, max        time.Duration // -1: no grpc-timeout
	}{
		{"per-try under the route deadline", true, false, 0, perTry},
		{"per-try without a route deadline", true, true, 0, perTry},
		{"option off", false, false, perTry, longRoute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seen := make(chan string, 1)
			up := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {
				seen <- r.Header.Get("Grpc-Timeout")
				w.Header().Set("Content-Type", "application/grpc")
				w.Header().Set("Grpc-Status", "0")
			})
			cfg := grpcConfig(addr(up))
			cfg.Routes[0].Timeout = longRoute
			if tc.noRoute {
				cfg.Routes[0].Timeout, cfg.Routes[0].TimeoutDisabled = 0, true
			}
			cfg.Routes[0].PerTryTimeout = perTry
			cfg.Routes[0].GRPCTimeoutPerTry = tc.option
			h := startProxy(t, cfg)
			req, _ := http.NewRequest(http.MethodPost, h.url("/grpc.testing.TestService/EmptyCall"), nil)
			req.Header.Set("Content-Type", "application/grpc")
			req.Header.Set("Te", "trailers")
			resp, err := h.h2c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			readAll(t, resp)
			got := <-seen
			d, err := parseGRPCTimeout(got)
			if err != nil || d <= tc.min || d > tc.max {
				t.Fatalf("upstream grpc-timeout %q (%v), want in (%v, %v]", got, d, tc.min, tc.max)
			}
		})
	}
}

// A client-streaming call whose upload lasts longer than the per-try
// timeout is not cut: its body was still coming from the client when the
// headers went out, and the per-try timer does not count the time spent
// waiting for it, so the upstream is told the time to the route
// deadline. The per-try timeout is a second: it bounds the waits on the
// upstream (the connection, each piece taken, the answer after the
// last), and on a loaded machine one of them could outlast 150 ms and
// cut the attempt.
func TestGRPCTimeoutOfAStreamingUploadIsTheRouteDeadline(t *testing.T) {
	const pt = time.Second
	cfg := grpcConfig(startGRPCServer(t, &testService{}))
	cfg.Routes[0].Timeout = longRoute
	cfg.Routes[0].PerTryTimeout = pt
	cfg.Routes[0].GRPCTimeoutPerTry = true
	h := startProxy(t, cfg)
	c := grpcClient(t, h.out)
	stream, err := c.StreamingInputCall(ctxT(t, 5*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	const pieces = 4
	for i := range pieces {
		if err := stream.Send(&testpb.StreamingInputCallRequest{Payload: &testpb.Payload{Body: make([]byte, 10)}}); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		// Paced so that the upload outlasts the per-try timeout.
		time.Sleep(pt / 2)
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		t.Fatalf("upload of %v cut: %v", time.Since(start), err)
	}
	if n := resp.GetAggregatedPayloadSize(); n != pieces*10 {
		t.Fatalf("upstream got %d bytes, want %d", n, pieces*10)
	}
	if el := time.Since(start); el <= pt {
		t.Fatalf("the upload took %v, not longer than the per-try timeout %v", el, pt)
	}
}
