package h2server

import (
	"context"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// echoService answers with what it was sent; a request's response
// status makes the call fail with that code.
type echoService struct {
	testpb.UnimplementedTestServiceServer
}

func (echoService) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	grpc.SetTrailer(ctx, metadata.Pairs("x-trailer", "unary"))
	if s := req.GetResponseStatus(); s != nil {
		return nil, status.Error(codes.Code(s.Code), s.Message)
	}
	return &testpb.SimpleResponse{Payload: req.GetPayload()}, nil
}

func (echoService) StreamingOutputCall(req *testpb.StreamingOutputCallRequest, st grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	for _, p := range req.GetResponseParameters() {
		if err := st.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: make([]byte, p.GetSize())}}); err != nil {
			return err
		}
	}
	return nil
}

func (echoService) StreamingInputCall(st grpc.ClientStreamingServer[testpb.StreamingInputCallRequest, testpb.StreamingInputCallResponse]) error {
	total := 0
	for {
		req, err := st.Recv()
		if err == io.EOF {
			return st.SendAndClose(&testpb.StreamingInputCallResponse{AggregatedPayloadSize: int32(total)})
		}
		if err != nil {
			return err
		}
		total += len(req.GetPayload().GetBody())
	}
}

func (echoService) FullDuplexCall(st grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) error {
	st.SetTrailer(metadata.Pairs("x-trailer", "bidi"))
	for {
		req, err := st.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if s := req.GetResponseStatus(); s != nil {
			return status.Error(codes.Code(s.Code), s.Message)
		}
		if err := st.Send(&testpb.StreamingOutputCallResponse{Payload: req.GetPayload()}); err != nil {
			return err
		}
	}
}

// grpcClient serves echoService through grpc.Server's ServeHTTP behind
// the Server, and dials it with grpc-go.
func grpcClient(t *testing.T) testpb.TestServiceClient {
	gs := grpc.NewServer()
	testpb.RegisterTestServiceServer(gs, echoService{})
	ts := start(t, gs)
	t.Cleanup(gs.Stop)
	cc, err := grpc.NewClient(ts.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return testpb.NewTestServiceClient(cc)
}

func TestGRPCUnary(t *testing.T) {
	c := grpcClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := 0; i < 3; i++ {
		var tr metadata.MD
		resp, err := c.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("ping")}}, grpc.Trailer(&tr))
		if err != nil || string(resp.GetPayload().GetBody()) != "ping" || tr.Get("x-trailer")[0] != "unary" {
			t.Fatalf("%v %v %v", resp, err, tr)
		}
	}
	_, err := c.UnaryCall(ctx, &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.NotFound), Message: "nope"}})
	if s, _ := status.FromError(err); s.Code() != codes.NotFound || s.Message() != "nope" {
		t.Fatalf("%v", err)
	}
	// A large message crosses the flow-control windows both ways.
	big := make([]byte, 3<<20)
	resp, err := c.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: big}}, grpc.MaxCallRecvMsgSize(8<<20))
	if err != nil || len(resp.GetPayload().GetBody()) != len(big) {
		t.Fatalf("big: %v", err)
	}
}

func TestGRPCServerStreaming(t *testing.T) {
	c := grpcClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var params []*testpb.ResponseParameters
	for i := 0; i < 20; i++ {
		params = append(params, &testpb.ResponseParameters{Size: int32(i * 1000)})
	}
	st, err := c.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{ResponseParameters: params})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		resp, err := st.Recv()
		if err == io.EOF {
			if i != 20 {
				t.Fatalf("%d messages", i)
			}
			break
		}
		if err != nil || len(resp.GetPayload().GetBody()) != i*1000 {
			t.Fatalf("%d: %v", i, err)
		}
	}
}

func TestGRPCClientStreaming(t *testing.T) {
	c := grpcClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := c.StreamingInputCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		if err := st.Send(&testpb.StreamingInputCallRequest{Payload: &testpb.Payload{Body: make([]byte, 10000)}}); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := st.CloseAndRecv()
	if err != nil || resp.GetAggregatedPayloadSize() != 500000 {
		t.Fatalf("%v %v", resp, err)
	}
}

func TestGRPCBidiStreaming(t *testing.T) {
	c := grpcClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := c.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		msg := []byte{byte(i)}
		if err := st.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: msg}}); err != nil {
			t.Fatal(err)
		}
		resp, err := st.Recv()
		if err != nil || resp.GetPayload().GetBody()[0] != byte(i) {
			t.Fatalf("%d: %v", i, err)
		}
	}
	st.Send(&testpb.StreamingOutputCallRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.Aborted), Message: "stop"}})
	_, err = st.Recv()
	if s, _ := status.FromError(err); s.Code() != codes.Aborted || st.Trailer().Get("x-trailer")[0] != "bidi" {
		t.Fatalf("%v %v", err, st.Trailer())
	}
}

func TestGRPCCancelAndDeadline(t *testing.T) {
	c := grpcClient(t)
	ctx, cancel := context.WithCancel(context.Background())
	st, err := c.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte("x")}})
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := st.Recv(); status.Code(err) != codes.Canceled {
		t.Fatalf("%v", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	st, err = c.FullDuplexCall(ctx)
	if err == nil {
		_, err = st.Recv()
	}
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("%v", err)
	}
}

// ctxService's FullDuplexCall answers one message, then waits for its
// context's end and reports its error on ended.
type ctxService struct {
	testpb.UnimplementedTestServiceServer
	ended chan error
}

func (s ctxService) FullDuplexCall(st grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) error {
	if _, err := st.Recv(); err != nil {
		return err
	}
	if err := st.Send(&testpb.StreamingOutputCallResponse{}); err != nil {
		return err
	}
	<-st.Context().Done()
	s.ended <- st.Context().Err()
	return st.Context().Err()
}

// A gRPC handler's context, which grpc-go's ServeHTTP derives from the
// stream's, ends when the client cancels the call (RST_STREAM CANCEL)
// and at the call's deadline (grpc-timeout).
func TestGRPCHandlerContextEndsWithTheCall(t *testing.T) {
	svc := ctxService{ended: make(chan error, 1)}
	gs := grpc.NewServer()
	testpb.RegisterTestServiceServer(gs, svc)
	ts := start(t, gs)
	t.Cleanup(gs.Stop)
	cc, err := grpc.NewClient(ts.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	c := testpb.NewTestServiceClient(cc)
	call := func(ctx context.Context) {
		t.Helper()
		st, err := c.FullDuplexCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&testpb.StreamingOutputCallRequest{}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Recv(); err != nil {
			t.Fatal(err)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	call(ctx)
	cancel()
	if err := within(t, "the handler context's end on cancel", svc.ended); err != context.Canceled {
		t.Fatalf("after the client's cancel: %v", err)
	}

	// The call's message and its answer must come before the deadline:
	// a second, which a loaded machine does not take (300 ms failed
	// the call's Recv now and then).
	ctx, cancel = context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	call(ctx)
	if err := within(t, "the handler context's end at the deadline", svc.ended); err != context.DeadlineExceeded && err != context.Canceled {
		// (The server's timer and the client's RST_STREAM race: either
		// ends it.)
		t.Fatalf("at the deadline: %v", err)
	}
}
