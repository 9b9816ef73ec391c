package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// testService implements grpc.testing.TestService for the proxy tests.
type testService struct {
	testpb.UnimplementedTestServiceServer
	deadlines chan time.Duration // remaining time seen by UnaryCall, if set
	// failUnavailable is how many UnaryCalls still fail UNAVAILABLE
	// (trailers-only, as grpc-go answers a handler error before any
	// message); calls counts every UnaryCall.
	failUnavailable atomic.Int64
	calls           atomic.Int64
}

func (s *testService) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	s.calls.Add(1)
	if s.failUnavailable.Add(-1) >= 0 {
		return nil, status.Error(codes.Unavailable, "warming up")
	}
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("x-echo"); len(v) > 0 {
		_ = grpc.SetHeader(ctx, metadata.Pairs("x-echo-header", v[0]))
		_ = grpc.SetTrailer(ctx, metadata.Pairs("x-echo-trailer", v[0]))
	}
	if s.deadlines != nil {
		if dl, ok := ctx.Deadline(); ok {
			s.deadlines <- time.Until(dl)
		} else {
			s.deadlines <- -1
		}
	}
	if len(md.Get("x-hang")) > 0 {
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	if st := req.GetResponseStatus(); st != nil && st.GetCode() != 0 {
		return nil, status.Error(codes.Code(st.GetCode()), st.GetMessage())
	}
	return &testpb.SimpleResponse{Payload: req.GetPayload(), Username: strings.Join(md.Get("x-user"), ",")}, nil
}

func (s *testService) StreamingOutputCall(req *testpb.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	for _, p := range req.GetResponseParameters() {
		if us := p.GetIntervalUs(); us > 0 {
			select {
			case <-time.After(time.Duration(us) * time.Microsecond):
			case <-stream.Context().Done():
				return status.FromContextError(stream.Context().Err()).Err()
			}
		}
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: make([]byte, p.GetSize())}}); err != nil {
			return err
		}
	}
	if st := req.GetResponseStatus(); st != nil && st.GetCode() != 0 {
		return status.Error(codes.Code(st.GetCode()), st.GetMessage())
	}
	return nil
}

func (s *testService) StreamingInputCall(stream grpc.ClientStreamingServer[testpb.StreamingInputCallRequest, testpb.StreamingInputCallResponse]) error {
	total := 0
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&testpb.StreamingInputCallResponse{AggregatedPayloadSize: int32(total)})
		}
		if err != nil {
			return err
		}
		total += len(m.GetPayload().GetBody())
	}
}

func (s *testService) FullDuplexCall(stream grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) error {
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, p := range m.GetResponseParameters() {
			if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: make([]byte, p.GetSize())}}); err != nil {
				return err
			}
		}
	}
}

func startGRPCServer(t testing.TB, svc testpb.TestServiceServer) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	testpb.RegisterTestServiceServer(s, svc)
	done := make(chan struct{})
	go func() { _ = s.Serve(ln); close(done) }()
	t.Cleanup(func() { s.Stop(); <-done })
	return ln.Addr().String()
}

func grpcClient(t testing.TB, target string) testpb.TestServiceClient {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return testpb.NewTestServiceClient(cc)
}

func grpcConfig(endpoints ...string) *config.Config {
	return &config.Config{
		Clusters: map[string]config.Cluster{"grpc": {Endpoints: eps(endpoints...), Protocol: config.ProtocolGRPC}},
		Routes: []config.Route{{Name: "grpc", Cluster: "grpc",
			Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/grpc.testing.TestService/"}}}},
	}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestGRPCThroughProxyAllCallKinds(t *testing.T) {
	h := startProxy(t, grpcConfig(startGRPCServer(t, &testService{})))
	c := grpcClient(t, h.out)

	t.Run("unary with metadata, headers and trailers", func(t *testing.T) {
		var hdr, tr metadata.MD
		ctx := metadata.AppendToOutgoingContext(ctxT(t, 5*time.Second), "x-echo", "v1", "x-user", "ann")
		resp, err := c.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("hi")}}, grpc.Header(&hdr), grpc.Trailer(&tr))
		if err != nil {
			t.Fatal(err)
		}
		if string(resp.GetPayload().GetBody()) != "hi" || resp.GetUsername() != "ann" {
			t.Fatalf("resp %v", resp)
		}
		if got := hdr.Get("x-echo-header"); len(got) != 1 || got[0] != "v1" {
			t.Errorf("header metadata %v", hdr)
		}
		if got := tr.Get("x-echo-trailer"); len(got) != 1 || got[0] != "v1" {
			t.Errorf("trailer metadata %v", tr)
		}
	})
	t.Run("status codes and messages", func(t *testing.T) {
		for _, code := range []codes.Code{codes.NotFound, codes.PermissionDenied, codes.Unavailable, codes.Internal} {
			_, err := c.UnaryCall(ctxT(t, 5*time.Second), &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(code), Message: "naïve 100% " + code.String()}})
			st := status.Convert(err)
			if st.Code() != code || st.Message() != "naïve 100% "+code.String() {
				t.Errorf("got %v %q, want %v", st.Code(), st.Message(), code)
			}
		}
	})
	t.Run("server streaming", func(t *testing.T) {
		req := &testpb.StreamingOutputCallRequest{}
		for i := 1; i <= 5; i++ {
			req.ResponseParameters = append(req.ResponseParameters, &testpb.ResponseParameters{Size: int32(i * 1000)})
		}
		st, err := c.StreamingOutputCall(ctxT(t, 5*time.Second), req)
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 5; i++ {
			m, err := st.Recv()
			if err != nil || len(m.GetPayload().GetBody()) != i*1000 {
				t.Fatalf("message %d: %v %d", i, err, len(m.GetPayload().GetBody()))
			}
		}
		if _, err := st.Recv(); err != io.EOF {
			t.Fatalf("end: %v", err)
		}
	})
	t.Run("client streaming", func(t *testing.T) {
		st, err := c.StreamingInputCall(ctxT(t, 5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 10; i++ {
			if err := st.Send(&testpb.StreamingInputCallRequest{Payload: &testpb.Payload{Body: make([]byte, 2048)}}); err != nil {
				t.Fatal(err)
			}
		}
		resp, err := st.CloseAndRecv()
		if err != nil || resp.GetAggregatedPayloadSize() != 20480 {
			t.Fatalf("%v %v", resp, err)
		}
	})
	t.Run("bidi ping-pong", func(t *testing.T) {
		st, err := c.FullDuplexCall(ctxT(t, 5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		// Each reply must arrive before the next request is sent: proves
		// the proxy streams both directions without buffering.
		for i := 1; i <= 5; i++ {
			if err := st.Send(&testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: int32(i)}}}); err != nil {
				t.Fatal(err)
			}
			m, err := st.Recv()
			if err != nil || len(m.GetPayload().GetBody()) != i {
				t.Fatalf("round %d: %v", i, err)
			}
		}
		if err := st.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Recv(); err != io.EOF {
			t.Fatalf("end: %v", err)
		}
	})
	t.Run("unimplemented method passes through", func(t *testing.T) {
		_, err := c.UnimplementedCall(ctxT(t, 5*time.Second), &testpb.Empty{})
		if status.Code(err) != codes.Unimplemented {
			t.Fatalf("%v", err)
		}
	})
}

// The client's deadlines are a second (the route timeout is two): the
// calls must reach the upstream within them, the first one's
// connections made, and on a loaded machine that could take longer than
// 700 ms (the call failed) or 500 ms (the upstream never saw it, and
// the wait for its deadline had no end).
func TestGRPCDeadlines(t *testing.T) {
	const clientDeadline = time.Second
	svc := &testService{deadlines: make(chan time.Duration, 10)}
	cfg := grpcConfig(startGRPCServer(t, svc))
	cfg.Routes[0].Timeout = 2 * time.Second
	h := startProxy(t, cfg)
	c := grpcClient(t, h.out)
	upstreamDeadline := func(t *testing.T) time.Duration {
		t.Helper()
		select {
		case d := <-svc.deadlines:
			return d
		case <-time.After(10 * time.Second):
			t.Fatal("the call never reached the upstream")
			return 0
		}
	}

	t.Run("client deadline shorter than route timeout is propagated", func(t *testing.T) {
		if _, err := c.UnaryCall(ctxT(t, clientDeadline), &testpb.SimpleRequest{}); err != nil {
			t.Fatal(err)
		}
		if d := upstreamDeadline(t); d <= 0 || d > clientDeadline {
			t.Fatalf("upstream saw %v remaining, want (0, %v]", d, clientDeadline)
		}
	})
	t.Run("route timeout bounds a longer client deadline", func(t *testing.T) {
		if _, err := c.UnaryCall(ctxT(t, time.Minute), &testpb.SimpleRequest{}); err != nil {
			t.Fatal(err)
		}
		if d := upstreamDeadline(t); d <= 0 || d > 2*time.Second {
			t.Fatalf("upstream saw %v remaining, want (0, 2s]", d)
		}
	})
	t.Run("deadline exceeded before headers", func(t *testing.T) {
		ctx := metadata.AppendToOutgoingContext(ctxT(t, clientDeadline), "x-hang", "1")
		_, err := c.UnaryCall(ctx, &testpb.SimpleRequest{})
		if status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("%v", err)
		}
		upstreamDeadline(t)
	})
	t.Run("deadline exceeded mid-stream", func(t *testing.T) {
		req := &testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: 1}, {Size: 1, IntervalUs: 5e6}}}
		st, err := c.StreamingOutputCall(ctxT(t, clientDeadline), req)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Recv(); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Recv(); status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("%v", err)
		}
	})
}

func TestGRPCLocalRepliesAreTrailersOnly(t *testing.T) {
	cfg := grpcConfig(refusedAddr(t))
	h := startProxy(t, cfg)
	c := grpcClient(t, h.out)

	// In a trailers-only response grpc-go hands the header block to the
	// caller as trailer metadata.
	var tr metadata.MD
	_, err := c.UnaryCall(ctxT(t, 5*time.Second), &testpb.SimpleRequest{}, grpc.Trailer(&tr))
	st := status.Convert(err)
	if st.Code() != codes.Unavailable || st.Message() != "upstream connect failure" {
		t.Fatalf("connect failure: %v %q", st.Code(), st.Message())
	}
	if v := tr.Get("x-outrigger-error"); len(v) != 1 || v[0] != "upstream_connect_failure" {
		t.Errorf("x-outrigger-error %v", tr)
	}

	big := grpcConfig(startGRPCServer(t, &testService{}))
	big.Listeners.MaxRequestBodyBytes = 1 << 10
	hb := startProxy(t, big)
	_, err = grpcClient(t, hb.out).UnaryCall(ctxT(t, 5*time.Second), &testpb.SimpleRequest{Payload: &testpb.Payload{Body: make([]byte, 4096)}})
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || st.Message() != "request body too large" {
		t.Fatalf("too large: %v %q", st.Code(), st.Message())
	}

	// A path no route takes: UNIMPLEMENTED, like a server without the method.
	cc, err := grpc.NewClient("passthrough:///"+h.out, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	err = cc.Invoke(ctxT(t, 5*time.Second), "/other.Service/Method", &testpb.Empty{}, &testpb.Empty{})
	if st := status.Convert(err); st.Code() != codes.Unimplemented || st.Message() != "no route matches the request" {
		t.Fatalf("no route: %v %q", st.Code(), st.Message())
	}
}

func TestGRPCRetryOnUnavailableTrailersOnly(t *testing.T) {
	// The first endpoint answers every call UNAVAILABLE in a trailers-only
	// response; the retry goes to the second.
	bad := startGRPCServer(t, &testService{})
	good := startGRPCServer(t, &testService{})
	cfg := grpcConfig(bad, good)
	// gRPC calls are POSTs, yet a trailers-only UNAVAILABLE is retried
	// without allow_non_idempotent.
	cfg.Routes[0].Retry = &config.RetryPolicy{Attempts: 1, RetryOn: []config.RetryCondition{"unavailable"}, Backoff: config.Backoff{Base: time.Microsecond}}
	h := startProxy(t, cfg)
	c := grpcClient(t, h.out)
	// UnaryCall with ResponseStatus UNAVAILABLE fails on both, so one
	// call is attempted twice: observe it through the retry counter.
	_, err := c.UnaryCall(ctxT(t, 5*time.Second), &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.Unavailable), Message: "down"}})
	if st := status.Convert(err); st.Code() != codes.Unavailable || st.Message() != "down" {
		t.Fatalf("%v", err)
	}
	eventually(t, 5*time.Second, "one retry counted", func() bool {
		return counterValue(h.p.m.retries.WithLabelValues("grpc")) == 1
	})
	// A successful call is not retried.
	if _, err := c.UnaryCall(ctxT(t, 5*time.Second), &testpb.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
	if v := counterValue(h.p.m.retries.WithLabelValues("grpc")); v != 1 {
		t.Fatalf("retries %v", v)
	}
}

// TestGRPCTimeoutHeaderBoundsTheCall sends grpc-timeout with a plain HTTP/2
// client (which enforces no deadline itself) so that only the proxy can end
// the call: a trailers-only DEADLINE_EXCEEDED local reply. The timeout is
// a second ("1S"): the call must reach the upstream within it, and on a
// loaded machine 150 ms could pass before, the upstream never seeing it.
func TestGRPCTimeoutHeaderBoundsTheCall(t *testing.T) {
	const timeout = time.Second
	seen := make(chan string, 1)
	up := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Get("Grpc-Timeout")
		<-r.Context().Done()
	})
	cfg := grpcConfig(addr(up))
	cfg.Routes[0].Timeout = time.Minute
	h := startProxy(t, cfg)
	req, _ := http.NewRequest("POST", h.url("/grpc.testing.TestService/UnaryCall"), strings.NewReader("\x00\x00\x00\x00\x00"))
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	req.Header.Set("Grpc-Timeout", "1S")
	start := time.Now()
	resp, err := h.h2c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if el := time.Since(start); el < timeout-50*time.Millisecond || el > 10*time.Second {
		t.Fatalf("answered after %v", el)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Grpc-Status") != "4" || resp.Header.Get("X-Outrigger-Error") != "upstream_timeout" {
		t.Fatalf("%d %v", resp.StatusCode, resp.Header)
	}
	var got string
	select {
	case got = <-seen:
	case <-time.After(10 * time.Second):
		t.Fatal("the call never reached the upstream")
	}
	d, err := parseGRPCTimeout(got)
	if err != nil || d <= 0 || d > timeout {
		t.Fatalf("upstream grpc-timeout %q (%v)", got, d)
	}
}

func TestGRPCTrailersOnlyUnavailableRetriedWithoutAllowNonIdempotent(t *testing.T) {
	svc := &testService{}
	svc.failUnavailable.Store(1)
	target := startGRPCServer(t, svc)
	cfg := grpcConfig(target)
	cfg.Routes[0].Retry = &config.RetryPolicy{Attempts: 2, RetryOn: []config.RetryCondition{"unavailable", "resource-exhausted"}, Backoff: config.Backoff{Base: time.Microsecond}}
	h := startProxy(t, cfg)
	c := grpcClient(t, h.out)
	resp, err := c.UnaryCall(ctxT(t, 5*time.Second), &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("hello")}})
	if err != nil {
		t.Fatalf("call failed: %v", err)
	}
	if string(resp.GetPayload().GetBody()) != "hello" {
		t.Fatalf("payload %q: the retry did not resend the message", resp.GetPayload().GetBody())
	}
	if n := svc.calls.Load(); n != 2 {
		t.Fatalf("server saw %d calls, want 2", n)
	}
	if v := counterValue(h.p.m.retries.WithLabelValues("grpc")); v != 1 {
		t.Fatalf("retries %v", v)
	}

	// A status the policy does not list (INTERNAL) is not retried.
	before := svc.calls.Load()
	_, err = c.UnaryCall(ctxT(t, 5*time.Second), &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.Internal), Message: "bug"}})
	if status.Code(err) != codes.Internal || svc.calls.Load() != before+1 {
		t.Fatalf("INTERNAL: %v after %d calls", err, svc.calls.Load()-before)
	}
}

// retry_on internal retries a trailers-only INTERNAL (the default
// classifier counts it a failure): a server that always answers it is
// called once per attempt.
func TestGRPCTrailersOnlyInternalRetried(t *testing.T) {
	svc := &testService{}
	target := startGRPCServer(t, svc)
	cfg := grpcConfig(target)
	cfg.Routes[0].Retry = &config.RetryPolicy{Attempts: 2, RetryOn: []config.RetryCondition{"internal"}, Backoff: config.Backoff{Base: time.Microsecond}}
	h := startProxy(t, cfg)
	c := grpcClient(t, h.out)
	_, err := c.UnaryCall(ctxT(t, 5*time.Second), &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.Internal), Message: "bug"}})
	if status.Code(err) != codes.Internal || svc.calls.Load() != 3 {
		t.Fatalf("INTERNAL: %v after %d calls, want 3", err, svc.calls.Load())
	}
}

func TestGRPCStatusRetryNeedsWholeBody(t *testing.T) {
	// The kept body is smaller than the request: the call cannot be
	// resent, so UNAVAILABLE is passed on after one attempt.
	svc := &testService{}
	svc.failUnavailable.Store(1)
	target := startGRPCServer(t, svc)
	cfg := grpcConfig(target)
	cfg.Routes[0].Retry = &config.RetryPolicy{Attempts: 2, RetryOn: []config.RetryCondition{"unavailable"}, MaxBufferedBodyBytes: 16, Backoff: config.Backoff{Base: time.Microsecond}}
	h := startProxy(t, cfg)
	c := grpcClient(t, h.out)
	_, err := c.UnaryCall(ctxT(t, 5*time.Second), &testpb.SimpleRequest{Payload: &testpb.Payload{Body: make([]byte, 1024)}})
	if status.Code(err) != codes.Unavailable || svc.calls.Load() != 1 {
		t.Fatalf("%v after %d calls", err, svc.calls.Load())
	}
}

// A deadline that passes mid-stream, after several messages, ends the
// call DEADLINE_EXCEEDED. From the second message on the response
// writes are bounded by the same deadline; its timer, firing with the
// route context's, made the trailers fail to go out about half the time
// (the client saw RST_STREAM INTERNAL_ERROR). Five calls each way give
// that race room to show. The deadline is a second: the three messages
// must come within it, the first call's connections made, and on a
// loaded machine they could come after 300 ms.
func TestGRPCDeadlineMidStreamAfterSeveralMessages(t *testing.T) {
	const deadline = time.Second
	for _, tc := range []struct {
		name         string
		routeTimeout time.Duration
		callDeadline time.Duration
	}{
		{"route timeout", deadline, 10 * time.Second},
		{"client deadline", 0, deadline},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := grpcConfig(startGRPCServer(t, &testService{}))
			if tc.routeTimeout > 0 {
				cfg.Routes[0].Timeout = tc.routeTimeout
			}
			h := startProxy(t, cfg)
			c := grpcClient(t, h.out)
			for i := range 5 {
				req := &testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{
					{Size: 1}, {Size: 1, IntervalUs: 10000}, {Size: 1, IntervalUs: 10000}, {Size: 1, IntervalUs: 5e6}}}
				st, err := c.StreamingOutputCall(ctxT(t, tc.callDeadline), req)
				if err != nil {
					t.Fatal(err)
				}
				for range 3 {
					if _, err := st.Recv(); err != nil {
						t.Fatalf("call %d: %v", i, err)
					}
				}
				if _, err := st.Recv(); status.Code(err) != codes.DeadlineExceeded {
					t.Fatalf("call %d, after 3 messages: %v, want DeadlineExceeded", i, err)
				}
			}
		})
	}
}

// An upstream whose trailers-only answer (HEADERS with END_STREAM and
// the call's status) also declares a Content-Length it has no body for:
// the status is the call's, and the length is dropped, which the client
// would never get. The length went on, and the server, finding it unmet,
// reset the stream INTERNAL_ERROR in place of the upstream's status.
func TestGRPCTrailersOnlyWithContentLengthKeepsStatus(t *testing.T) {
	up := rawH2Upstream(t, func(n int, fr *http2.Framer) {
		var hb bytes.Buffer
		enc := hpack.NewEncoder(&hb)
		for {
			h, err := readH2Request(fr)
			if err != nil {
				return
			}
			hb.Reset()
			for _, kv := range [][2]string{{":status", "200"}, {"content-type", "application/grpc"},
				{"grpc-status", "7"}, {"grpc-message", "denied"}, {"content-length", "5"}} {
				enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
			}
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: h.StreamID, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
		}
	})
	h := startProxy(t, grpcConfig(up))
	_, err := grpcClient(t, h.out).UnaryCall(ctxT(t, 5*time.Second), &testpb.SimpleRequest{})
	if st := status.Convert(err); st.Code() != codes.PermissionDenied || st.Message() != "denied" {
		t.Fatalf("%v %q, want PermissionDenied %q", st.Code(), st.Message(), "denied")
	}
}

// A grpc-status in a header block that does not end the stream is not
// the call's: only a HEADERS with END_STREAM is trailers-only (gRPC's
// PROTOCOL-HTTP2.md), and the status comes in the trailers. An upstream
// whose response headers say UNAVAILABLE and whose trailers say OK after
// a message is an OK call, passed on as the upstream sent it and not
// retried; one whose stream ends without trailers gets INTERNAL from
// the client, as it would straight from the upstream. The first was
// retried on the header block's UNAVAILABLE and answered UNAVAILABLE
// trailers-only, the message dropped; the second got the header block's
// status.
func TestGRPCStatusInHeadersThatDoNotEndTheStreamIsNotTheCalls(t *testing.T) {
	var calls atomic.Int64
	msg := grpcMessage(t, &testpb.SimpleResponse{Payload: &testpb.Payload{Body: []byte("hello")}})
	up := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/grpc")
		if r.URL.Path == "/grpc.testing.TestService/UnaryCall" && r.Header.Get("X-No-Trailers") != "" {
			w.Header().Set("Grpc-Status", "7")
			w.Header().Set("Grpc-Message", "denied")
			w.Header().Set("Content-Length", fmt.Sprint(len(msg)))
			w.WriteHeader(200)
			_, _ = w.Write(msg)
			return
		}
		w.Header().Set("Grpc-Status", "14")
		w.Header().Set("Grpc-Message", "not yet")
		w.WriteHeader(200)
		_, _ = w.Write(msg)
		w.Header().Set(http.TrailerPrefix+"Grpc-Status", "0")
		w.Header().Set(http.TrailerPrefix+"Grpc-Message", "")
	})
	cfg := grpcConfig(addr(up))
	cfg.Routes[0].Retry = &config.RetryPolicy{Attempts: 1, RetryOn: []config.RetryCondition{"unavailable"}, Backoff: config.Backoff{Base: time.Microsecond}}
	h := startProxy(t, cfg)
	c := grpcClient(t, h.out)
	resp, err := c.UnaryCall(ctxT(t, 5*time.Second), &testpb.SimpleRequest{})
	if err != nil || string(resp.GetPayload().GetBody()) != "hello" || calls.Load() != 1 {
		t.Fatalf("call: %v, payload %q after %d upstream calls; want OK, %q after 1", err, resp.GetPayload().GetBody(), calls.Load(), "hello")
	}
	_, err = c.UnaryCall(metadata.AppendToOutgoingContext(ctxT(t, 5*time.Second), "x-no-trailers", "1"), &testpb.SimpleRequest{})
	if st := status.Convert(err); st.Code() != codes.Internal {
		t.Fatalf("call without trailers: %v %q, want Internal", st.Code(), st.Message())
	}
}

// Trailers over the client's SETTINGS_MAX_HEADER_LIST_SIZE fail that
// call only (INTERNAL, its stream reset): the client's connection, and
// the next call on it, go on. They were sent, and grpc-go ended the
// whole connection (COMPRESSION_ERROR), every call on it with it.
func TestGRPCTrailersOverClientLimitFailOneCall(t *testing.T) {
	msg := []byte{0, 0, 0, 0, 0} // an empty SimpleResponse
	up := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/grpc")
		w.WriteHeader(200)
		_, _ = w.Write(msg)
		w.Header().Set(http.TrailerPrefix+"Grpc-Status", "0")
		if r.Header.Get("X-Big") != "" {
			w.Header().Set(http.TrailerPrefix+"X-Big", strings.Repeat("a", 64<<10))
		}
	})
	h := startProxy(t, grpcConfig(addr(up)))
	cc, err := grpc.NewClient("passthrough:///"+h.out, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithMaxHeaderListSize(16<<10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	c := testpb.NewTestServiceClient(cc)
	_, err = c.UnaryCall(metadata.AppendToOutgoingContext(ctxT(t, 5*time.Second), "x-big", "1"), &testpb.SimpleRequest{})
	if status.Code(err) != codes.Internal {
		t.Fatalf("call with big trailers: %v, want Internal", err)
	}
	if _, err := c.UnaryCall(ctxT(t, 5*time.Second), &testpb.SimpleRequest{}); err != nil {
		t.Fatalf("next call on the same connection: %v", err)
	}
	if s := cc.GetState(); s.String() != "READY" {
		t.Fatalf("client connection %v after the call", s)
	}
}
