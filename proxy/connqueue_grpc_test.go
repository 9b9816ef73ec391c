package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/outrigger-mesh/outrigger/breaker"
	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// heldGRPC is a gRPC upstream whose unary calls wait for a token on
// release, and whose FullDuplexCall streams echo until the client ends
// them; entered counts the calls of either kind that reached it.
type heldGRPC struct {
	testpb.UnimplementedTestServiceServer
	entered atomic.Int64
	release chan struct{}
	done    chan struct{} // closed at the test's cleanup
}

// newHeldGRPC starts a gRPC server for a heldGRPC that allows streams
// streams at once on a connection (SETTINGS_MAX_CONCURRENT_STREAMS), and
// returns it with its address. The calls still held are let go at t's
// cleanup, before the proxy's Shutdown (so call it after startProxy, or
// call unblock then).
func newHeldGRPC(t *testing.T, streams uint32) (*heldGRPC, string) {
	t.Helper()
	s := &heldGRPC{release: make(chan struct{}), done: make(chan struct{})}
	ln, err := netListen(t)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.MaxConcurrentStreams(streams))
	testpb.RegisterTestServiceServer(srv, s)
	served := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(served) }()
	t.Cleanup(func() { srv.Stop(); <-served })
	return s, ln.Addr().String()
}

// unblockOnCleanup lets every call still held go at t's cleanup.
func (s *heldGRPC) unblockOnCleanup(t *testing.T) {
	t.Cleanup(func() { close(s.done) })
}

func (s *heldGRPC) UnaryCall(ctx context.Context, _ *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	s.entered.Add(1)
	select {
	case <-s.release:
	case <-s.done:
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	return &testpb.SimpleResponse{}, nil
}

func (s *heldGRPC) FullDuplexCall(stream grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) error {
	s.entered.Add(1)
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: m.GetPayload()}); err != nil {
			return err
		}
	}
}

// grpcHeldConfig routes the TestService to cluster svc, a gRPC cluster
// of endpoint ep with max_connections 1: FullDuplexCall under a route
// timeout the tests outlast, the other methods under route r (its Name,
// Match and Cluster are set here), so that a held stream outlives the
// waits r's timeouts end.
func grpcHeldConfig(ep string, cl config.Cluster, r config.Route) *config.Config {
	cl.Endpoints = eps(ep)
	cl.Protocol = config.ProtocolGRPC
	cl.Limits.MaxConnections = 1
	r.Name, r.Cluster = "grpc", "svc"
	r.Match = config.RouteMatch{Path: config.PathMatch{Prefix: "/grpc.testing.TestService/"}}
	held := config.Route{Name: "stream", Cluster: "svc", Timeout: time.Minute,
		Match: config.RouteMatch{Path: config.PathMatch{Exact: "/grpc.testing.TestService/FullDuplexCall"}}}
	return &config.Config{Clusters: map[string]config.Cluster{"svc": cl}, Routes: []config.Route{held, r}}
}

// unaryResult is one unary call's end: its error and the metadata of
// its answer, headers and trailers together.
type unaryResult struct {
	err error
	md  metadata.MD
}

// callUnary makes a unary call through c in the background, bounded by
// d, and returns a channel that gets its end.
func callUnary(c testpb.TestServiceClient, d time.Duration) <-chan unaryResult {
	out := make(chan unaryResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		var hdr, tr metadata.MD
		_, err := c.UnaryCall(ctx, &testpb.SimpleRequest{}, grpc.Header(&hdr), grpc.Trailer(&tr))
		out <- unaryResult{err, metadata.Join(hdr, tr)}
	}()
	return out
}

// openStream opens a FullDuplexCall through c, bounded by ctx, and has
// one message echoed: the stream is then upstream.
func openStream(t *testing.T, ctx context.Context, c testpb.TestServiceClient) grpc.BidiStreamingClient[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse] {
	t.Helper()
	st, err := c.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	echo(t, st)
	return st
}

// echo sends a message on st and reads its echo.
func echo(t *testing.T, st grpc.BidiStreamingClient[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) {
	t.Helper()
	if err := st.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte("x")}}); err != nil {
		t.Fatalf("send: %v", err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatalf("recv: %v", err)
	}
}

// closeStream ends st from the client's side and reads it to its end.
func closeStream(t *testing.T, st grpc.BidiStreamingClient[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) {
	t.Helper()
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("the stream's end: %v, want EOF", err)
	}
}

// pending is how many calls of cluster svc wait for a connection.
func pending(h *harness) int64 { return limitsInUse(h)[breaker.LimitPendingRequests] }

// At max_connections 1, gRPC calls to an upstream that allows one or two
// streams at a time wait for a stream of the one connection, as in
// Envoy's pools: unary calls behind a held unary call, and a streaming
// call behind a held stream, are served in turn on that connection.
func TestMaxConnectionsQueuesGRPCCalls(t *testing.T) {
	for _, streams := range []uint32{1, 2} {
		t.Run("unary/"+string(rune('0'+streams)), func(t *testing.T) {
			up, ep := newHeldGRPC(t, streams)
			h := startProxy(t, grpcHeldConfig(ep, config.Cluster{}, config.Route{}))
			up.unblockOnCleanup(t)
			c := grpcClient(t, h.out)

			n := int(streams) + 2
			var res []<-chan unaryResult
			for range n {
				res = append(res, callUnary(c, 10*time.Second))
			}
			for i := range n {
				upstream := min(int(streams), n-i)
				eventually(t, 5*time.Second, "calls upstream, the others waiting", func() bool {
					return up.entered.Load() == int64(i+upstream) && pending(h) == int64(n-i-upstream)
				})
				if c := limitsInUse(h)[breaker.LimitConnections]; c != 1 {
					t.Fatalf("%d connections, want 1", c)
				}
				up.release <- struct{}{}
			}
			for _, ch := range res {
				if r := <-ch; r.err != nil {
					t.Fatalf("a call: %v", r.err)
				}
			}
		})
	}
	t.Run("stream", func(t *testing.T) {
		up, ep := newHeldGRPC(t, 1)
		h := startProxy(t, grpcHeldConfig(ep, config.Cluster{}, config.Route{}))
		up.unblockOnCleanup(t)
		c := grpcClient(t, h.out)
		ctx := ctxT(t, 10*time.Second)

		first := openStream(t, ctx, c)
		// The second stream's headers and message go out; the proxy
		// holds them until the first stream ends.
		second, err := c.FullDuplexCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := second.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte("y")}}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, "the second stream waiting", func() bool { return pending(h) == 1 })
		echo(t, first) // the first goes on meanwhile
		if n := up.entered.Load(); n != 1 {
			t.Fatalf("%d streams upstream, want 1", n)
		}
		closeStream(t, first)
		if _, err := second.Recv(); err != nil {
			t.Fatalf("the second stream: %v", err)
		}
		closeStream(t, second)
		if n := limitsInUse(h)[breaker.LimitConnections]; n != 1 {
			t.Fatalf("%d connections, want 1", n)
		}
	})
}

// The gRPC calls waiting at max_connections hold max_pending_requests
// slots: one over it is refused at once, UNAVAILABLE with
// x-outrigger-breaker: max_pending_requests, as Envoy's overflow.
func TestMaxConnectionsGRPCQueueBoundedByMaxPendingRequests(t *testing.T) {
	up, ep := newHeldGRPC(t, 1)
	h := startProxy(t, grpcHeldConfig(ep, config.Cluster{Limits: breaker.LimitsConfig{MaxPendingRequests: 1}}, config.Route{}))
	up.unblockOnCleanup(t)
	c := grpcClient(t, h.out)

	first := callUnary(c, 10*time.Second)
	eventually(t, 5*time.Second, "a call upstream", func() bool { return up.entered.Load() == 1 })
	second := callUnary(c, 10*time.Second)
	eventually(t, 5*time.Second, "a call waiting", func() bool { return pending(h) == 1 })
	r := <-callUnary(c, 10*time.Second)
	if status.Code(r.err) != codes.Unavailable || len(r.md.Get("x-outrigger-breaker")) == 0 || r.md.Get("x-outrigger-breaker")[0] != "max_pending_requests" {
		t.Fatalf("a third call: %v %v, want UNAVAILABLE max_pending_requests", r.err, r.md)
	}
	up.release <- struct{}{}
	eventually(t, 5*time.Second, "the waiting call upstream", func() bool { return up.entered.Load() == 2 })
	up.release <- struct{}{}
	for _, ch := range []<-chan unaryResult{first, second} {
		if r := <-ch; r.err != nil {
			t.Fatalf("a call: %v", r.err)
		}
	}
}

// A gRPC call waiting at max_connections behind a held stream waits no
// longer than its route timeout (DEADLINE_EXCEEDED, the proxy's
// upstream_timeout), and three such waits leave a breaker that trips
// after three failures closed, with no failure, and the endpoint
// unejected: they never reached it. The timeout is a second, not less:
// it runs from the call's start, and one that passes before the call
// has asked for a connection (a loaded machine can hold it up that
// long) ends it before it waits, as a timeout of the endpoint's. The
// three wait at once, each its timeout from its own start.
func TestMaxConnectionsGRPCWaitEndsWithTheRouteTimeout(t *testing.T) {
	up, ep := newHeldGRPC(t, 1)
	cl := config.Cluster{CircuitBreaker: tripsAfter(3),
		OutlierDetection: breaker.OutlierConfig{Consecutive5xx: 3, BaseEjectionTime: time.Hour, MaxEjectionPercent: 100}}
	h := startProxy(t, grpcHeldConfig(ep, cl, config.Route{Timeout: time.Second}))
	up.unblockOnCleanup(t)
	c := grpcClient(t, h.out)

	st := openStream(t, ctxT(t, 10*time.Second), c)
	var calls []<-chan unaryResult
	for range 3 {
		calls = append(calls, callUnary(c, 10*time.Second))
	}
	for i, ch := range calls {
		r := <-ch
		if status.Code(r.err) != codes.DeadlineExceeded || len(r.md.Get("x-outrigger-error")) == 0 || r.md.Get("x-outrigger-error")[0] != "upstream_timeout" {
			t.Fatalf("waiting call %d: %v %v, want DEADLINE_EXCEEDED upstream_timeout", i, r.err, r.md)
		}
	}
	if n := up.entered.Load(); n != 1 {
		t.Fatalf("%d calls upstream, want the stream", n)
	}
	if s := svcBreaker(h); s.State != breaker.StateClosed || s.Failures != 0 {
		t.Fatalf("breaker %v with %d failures, want closed with none", s.State, s.Failures)
	}
	if h.p.snap.Load().clusters["svc"].res.det.Ejected(0, time.Now()) {
		t.Fatal("the endpoint ejected")
	}
	echo(t, st)
	closeStream(t, st)
}

// A per-try timeout ends a gRPC call's wait at max_connections as it
// ends an attempt: with retry_on covering it (gateway-error), the call
// is retried, and the retry, waiting in turn, takes the stream the held
// one leaves; without a retry it is answered DEADLINE_EXCEEDED. Neither
// wait is the endpoint's failure. The timeout is a second, not less: it
// runs from each attempt's start, and one that passes before the
// attempt has asked for a connection (a loaded machine can hold it up
// that long) ends it before it waits, as a timeout of the endpoint's;
// the retry's must outlast the held stream's end and the retry's way
// upstream and back.
func TestMaxConnectionsGRPCWaitEndsWithThePerTryTimeout(t *testing.T) {
	for _, retry := range []bool{true, false} {
		name := "retried"
		if !retry {
			name = "answered"
		}
		t.Run(name, func(t *testing.T) {
			up, ep := newHeldGRPC(t, 1)
			r := config.Route{Timeout: 10 * time.Second, PerTryTimeout: time.Second}
			if retry {
				r.Retry = &config.RetryPolicy{Attempts: 1, RetryOn: []config.RetryCondition{config.RetryOnGatewayError}, AllowNonIdempotent: true}
			}
			h := startProxy(t, grpcHeldConfig(ep, config.Cluster{CircuitBreaker: tripsAfter(1)}, r))
			up.unblockOnCleanup(t)
			c := grpcClient(t, h.out)

			st := openStream(t, ctxT(t, 10*time.Second), c)
			call := callUnary(c, 10*time.Second)
			if !retry {
				r := <-call
				if status.Code(r.err) != codes.DeadlineExceeded {
					t.Fatalf("the waiting call: %v, want DEADLINE_EXCEEDED", r.err)
				}
			} else {
				retries := h.p.m.retries.WithLabelValues("svc")
				eventually(t, 5*time.Second, "the waiting call retried", func() bool { return counterValue(retries) == 1 })
				eventually(t, 5*time.Second, "the retry waiting", func() bool { return pending(h) == 1 })
				// The retry is let go as soon as it is upstream, so that
				// its per-try timeout waits on no poll of this test's.
				released := make(chan struct{})
				go func() {
					defer close(released)
					select {
					case up.release <- struct{}{}:
					case <-up.done:
					}
				}()
				closeStream(t, st)
				if r := <-call; r.err != nil {
					t.Fatalf("the retried call: %v", r.err)
				}
				<-released
				if n := up.entered.Load(); n != 2 {
					t.Fatalf("%d calls upstream, want the stream and the retry", n)
				}
			}
			if s := svcBreaker(h); s.State != breaker.StateClosed || s.Failures != 0 {
				t.Fatalf("breaker %v with %d failures, want closed with none", s.State, s.Failures)
			}
			if !retry {
				echo(t, st)
				closeStream(t, st)
			}
		})
	}
}

// A reload that raises max_connections applies to the gRPC calls
// waiting at the old limit at once, as Envoy's circuit breakers do: the
// calls waiting behind a held stream dial connections of their own
// under the new limit, without waiting for the stream to end; so do
// they when the reload also changes the cluster's connection settings,
// and the calls wait in a pool the reload retired.
func TestMaxConnectionsRaisedByAReloadServesTheGRPCCallsWaiting(t *testing.T) {
	for _, newPool := range []bool{false, true} {
		name := "kept pool"
		if newPool {
			name = "new pool"
		}
		t.Run(name, func(t *testing.T) {
			up, ep := newHeldGRPC(t, 1)
			r := config.Route{Timeout: 10 * time.Second}
			h := startProxy(t, grpcHeldConfig(ep, config.Cluster{}, r))
			up.unblockOnCleanup(t)
			c := grpcClient(t, h.out)

			st := openStream(t, ctxT(t, 10*time.Second), c)
			calls := []<-chan unaryResult{callUnary(c, 10*time.Second), callUnary(c, 10*time.Second)}
			eventually(t, 5*time.Second, "two calls waiting", func() bool { return pending(h) == 2 })

			pool := h.p.snap.Load().clusters["svc"].pool
			cl := config.Cluster{Limits: breaker.LimitsConfig{MaxConnections: 3}}
			if newPool {
				cl.ConnectTimeout = 3 * time.Second
			}
			cfg := grpcHeldConfig(ep, cl, r)
			cl = cfg.Clusters["svc"]
			cl.Limits.MaxConnections = 3 // grpcHeldConfig's is 1
			cfg.Clusters["svc"] = cl
			if err := h.p.Apply(cfg); err != nil {
				t.Fatal(err)
			}
			if kept := h.p.snap.Load().clusters["svc"].pool == pool; kept == newPool {
				t.Fatalf("the reload kept the pool: %v, want %v", kept, !newPool)
			}
			eventually(t, 5*time.Second, "the waiting calls upstream", func() bool { return up.entered.Load() == 3 })
			if n := limitsInUse(h)[breaker.LimitConnections]; n != 3 {
				t.Fatalf("%d connections, want 3", n)
			}
			up.release <- struct{}{}
			up.release <- struct{}{}
			for _, ch := range calls {
				if r := <-ch; r.err != nil {
					t.Fatalf("a waiting call: %v", r.err)
				}
			}
			echo(t, st)
			closeStream(t, st)
		})
	}
}

// A reload that removes the endpoint gRPC calls wait for at
// max_connections leaves their waits bounded by their route timeout:
// the held stream goes on to its end, and a waiting call ends by its
// timeout at the latest.
func TestMaxConnectionsGRPCWaitForARemovedEndpointEnds(t *testing.T) {
	up, ep := newHeldGRPC(t, 1)
	other, ep2 := newHeldGRPC(t, 1)
	r := config.Route{Timeout: time.Second}
	h := startProxy(t, grpcHeldConfig(ep, config.Cluster{}, r))
	up.unblockOnCleanup(t)
	other.unblockOnCleanup(t)
	c := grpcClient(t, h.out)

	st := openStream(t, ctxT(t, 10*time.Second), c)
	call := callUnary(c, 10*time.Second)
	eventually(t, 5*time.Second, "a call waiting", func() bool { return pending(h) == 1 })
	if err := h.p.Apply(grpcHeldConfig(ep2, config.Cluster{}, r)); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-call:
		if code := status.Code(res.err); code != codes.DeadlineExceeded && code != codes.OK {
			t.Fatalf("the waiting call: %v, want its route timeout or an answer", res.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting call outlived its route timeout")
	}
	if n := pending(h); n != 0 {
		t.Fatalf("%d calls pending, want none", n)
	}
	echo(t, st)
	closeStream(t, st)
}

// The proxy's Shutdown lets the gRPC calls waiting at max_connections
// finish as it does the calls in flight: they are served in turn as the
// held stream ends. Past its deadline it ends them, and returns.
func TestShutdownWithGRPCCallsWaitingAtMaxConnections(t *testing.T) {
	t.Run("drained", func(t *testing.T) {
		up, ep := newHeldGRPC(t, 1)
		h := startProxy(t, grpcHeldConfig(ep, config.Cluster{}, config.Route{Timeout: 10 * time.Second}))
		up.unblockOnCleanup(t)
		c := grpcClient(t, h.out)

		st := openStream(t, ctxT(t, 10*time.Second), c)
		calls := []<-chan unaryResult{callUnary(c, 10*time.Second), callUnary(c, 10*time.Second)}
		eventually(t, 5*time.Second, "two calls waiting", func() bool { return pending(h) == 2 })
		shut := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			shut <- h.p.Shutdown(ctx)
		}()
		eventually(t, 5*time.Second, "the shutdown begun", func() bool {
			h.p.srvMu.Lock()
			defer h.p.srvMu.Unlock()
			return h.p.shutdown
		})
		closeStream(t, st)
		for i := range 2 {
			eventually(t, 5*time.Second, "a waiting call upstream", func() bool { return up.entered.Load() == int64(2+i) })
			up.release <- struct{}{}
		}
		for _, ch := range calls {
			if r := <-ch; r.err != nil {
				t.Fatalf("a waiting call: %v", r.err)
			}
		}
		if err := <-shut; err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	})
	t.Run("cut", func(t *testing.T) {
		up, ep := newHeldGRPC(t, 1)
		h := startProxy(t, grpcHeldConfig(ep, config.Cluster{}, config.Route{Timeout: 10 * time.Second}))
		up.unblockOnCleanup(t)
		c := grpcClient(t, h.out)

		openStream(t, ctxT(t, 10*time.Second), c)
		call := callUnary(c, 10*time.Second)
		eventually(t, 5*time.Second, "a call waiting", func() bool { return pending(h) == 1 })
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		if err := h.p.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown: %v, want its deadline exceeded", err)
		}
		select {
		case r := <-call:
			if r.err == nil {
				t.Fatal("the waiting call succeeded")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the waiting call outlived the Shutdown")
		}
		eventually(t, 5*time.Second, "nothing in flight", func() bool {
			return h.p.inflight.Load() == 0 && pending(h) == 0
		})
	})
}

// Two clusters' queues at max_connections share nothing: with cluster
// svc's one connection taken and a call waiting for it, a cluster of
// other endpoints under max_connections 1 serves its calls on a
// connection of its own, queues them behind its own, and the streams
// that end there serve none of svc's; svc's waiting call is served when
// svc's stream ends.
func TestMaxConnectionsQueuesOfTwoClustersShareNothing(t *testing.T) {
	up, ep := newHeldGRPC(t, 1)
	b := newHeldUpstream(t, func(s *httptest.Server) {
		s.Config.Protocols = new(http.Protocols)
		s.Config.Protocols.SetUnencryptedHTTP2(true)
		s.Config.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: 1}
	})
	cfg := grpcHeldConfig(ep, config.Cluster{}, config.Route{Timeout: 10 * time.Second})
	cfg.Clusters["b"] = config.Cluster{Endpoints: eps(b.addr), Protocol: config.ProtocolHTTP2, Limits: breaker.LimitsConfig{MaxConnections: 1}}
	cfg.Routes = append([]config.Route{{Name: "b", Cluster: "b", Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/b"}}}}, cfg.Routes...)
	h := startProxy(t, cfg)
	up.unblockOnCleanup(t)
	b.unblockOnCleanup(t)
	c := grpcClient(t, h.out)
	bLimits := func() [breaker.NumLimits]int64 {
		return h.p.snap.Load().clusters["b"].res.limits.Snapshot().InUse
	}

	st := openStream(t, ctxT(t, 10*time.Second), c)
	call := callUnary(c, 10*time.Second)
	eventually(t, 5*time.Second, "a call of svc waiting", func() bool { return pending(h) == 1 })

	bres := []<-chan int{getStatus(h, "/b/1"), getStatus(h, "/b/2")}
	eventually(t, 5*time.Second, "a call of b upstream, the other waiting", func() bool {
		return b.entered.Load() == 1 && bLimits()[breaker.LimitPendingRequests] == 1
	})
	for i := range 2 {
		b.release <- struct{}{}
		if i == 0 {
			eventually(t, 5*time.Second, "b's waiting call upstream", func() bool { return b.entered.Load() == 2 })
		}
	}
	for _, ch := range bres {
		if code := <-ch; code != http.StatusOK {
			t.Fatalf("a call of b: %d, want 200", code)
		}
	}
	if n := bLimits()[breaker.LimitConnections]; n != 1 {
		t.Fatalf("b counts %d connections, want its own one", n)
	}
	if n, p := up.entered.Load(), pending(h); n != 1 || p != 1 {
		t.Fatalf("svc: %d calls upstream, %d waiting, want the stream and one waiting", n, p)
	}
	if n := limitsInUse(h)[breaker.LimitConnections]; n != 1 {
		t.Fatalf("svc counts %d connections, want its own one", n)
	}
	closeStream(t, st)
	eventually(t, 5*time.Second, "svc's waiting call upstream", func() bool { return up.entered.Load() == 2 })
	up.release <- struct{}{}
	if r := <-call; r.err != nil {
		t.Fatalf("svc's waiting call: %v", r.err)
	}
}

// A gRPC stream waiting at max_connections whose client cancels it
// gives its max_pending_requests slot back at once and is counted by
// neither the breaker nor outlier detection; the held stream goes on.
func TestMaxConnectionsGRPCWaitCancelledByTheClient(t *testing.T) {
	up, ep := newHeldGRPC(t, 1)
	h := startProxy(t, grpcHeldConfig(ep, config.Cluster{CircuitBreaker: tripsAfter(1)}, config.Route{}))
	up.unblockOnCleanup(t)
	c := grpcClient(t, h.out)

	st := openStream(t, ctxT(t, 10*time.Second), c)
	ctx, cancel := context.WithCancel(ctxT(t, 10*time.Second))
	second, err := c.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the second stream waiting", func() bool { return pending(h) == 1 })
	cancel()
	if _, err := second.Recv(); status.Code(err) != codes.Canceled {
		t.Fatalf("the cancelled stream: %v, want CANCELED", err)
	}
	// Its max_requests slot is given back once its outcome is recorded
	// (the pending one before): the breaker is read after that.
	eventually(t, 5*time.Second, "the cancelled call ended", func() bool {
		in := limitsInUse(h)
		return in[breaker.LimitPendingRequests] == 0 && in[breaker.LimitRequests] == 1
	})
	if s := svcBreaker(h); s.State != breaker.StateClosed || s.Failures != 0 {
		t.Fatalf("breaker %v with %d failures, want closed with none", s.State, s.Failures)
	}
	echo(t, st)
	closeStream(t, st)
	if n := up.entered.Load(); n != 1 {
		t.Fatalf("%d streams upstream, want the held one", n)
	}
}
