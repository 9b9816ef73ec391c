package h2client

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// grpcService is a real grpc-go TestService.
type grpcService struct {
	testpb.UnimplementedTestServiceServer
	cancelled chan struct{} // a hanging call saw its context end
}

func (s *grpcService) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("x-echo"); len(v) > 0 {
		grpc.SetHeader(ctx, metadata.Pairs("x-echo-header", v[0]))
		grpc.SetTrailer(ctx, metadata.Pairs("x-echo-trailer", v[0]))
	}
	if len(md.Get("x-hang")) > 0 {
		<-ctx.Done()
		s.cancelled <- struct{}{}
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	if st := req.GetResponseStatus(); st != nil && st.GetCode() != 0 {
		return nil, status.Error(codes.Code(st.GetCode()), st.GetMessage())
	}
	return &testpb.SimpleResponse{Payload: req.GetPayload()}, nil
}

func (s *grpcService) StreamingOutputCall(req *testpb.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	for _, p := range req.GetResponseParameters() {
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: make([]byte, p.GetSize())}}); err != nil {
			return err
		}
	}
	return nil
}

func (s *grpcService) StreamingInputCall(stream grpc.ClientStreamingServer[testpb.StreamingInputCallRequest, testpb.StreamingInputCallResponse]) error {
	total := 0
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			return stream.SendAndClose(&testpb.StreamingInputCallResponse{AggregatedPayloadSize: int32(total)})
		}
		if err != nil {
			return err
		}
		total += len(m.GetPayload().GetBody())
	}
}

func (s *grpcService) FullDuplexCall(stream grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) error {
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		size := int32(0)
		if ps := m.GetResponseParameters(); len(ps) > 0 {
			size = ps[0].GetSize()
		}
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: make([]byte, size)}}); err != nil {
			return err
		}
	}
}

// relay forwards each request to upstream through tr the way the proxy
// does: streaming both bodies, flushing each read, and passing trailers.
func relay(tr *Transport, upstream string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		out := &http.Request{
			Method:        r.Method,
			URL:           &url.URL{Scheme: "http", Host: upstream, Path: r.URL.Path},
			Header:        r.Header.Clone(),
			Body:          r.Body,
			Host:          r.Host,
			Trailer:       r.Trailer,
			ContentLength: r.ContentLength,
		}
		// The caller's deadline reaches the upstream as the reset its
		// expiry causes; an upstream timer of its own (grpc-go resets
		// the stream when grpc-timeout passes) would race the caller's
		// and make the relay answer 502 first.
		delete(out.Header, "Grpc-Timeout")
		resp, err := tr.RoundTrip(out.WithContext(r.Context()))
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, vv := range resp.Header {
			w.Header()[k] = vv
		}
		for k := range resp.Trailer {
			w.Header().Add("Trailer", k)
		}
		w.WriteHeader(resp.StatusCode)
		if resp.Header["Grpc-Status"] != nil {
			// Trailers-only: one HEADERS frame with END_STREAM.
			return
		}
		w.(http.Flusher).Flush()
		buf := make([]byte, 32<<10)
		for {
			n, err := resp.Body.Read(buf)
			if n > 0 {
				w.Write(buf[:n])
				w.(http.Flusher).Flush()
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				panic(http.ErrAbortHandler)
			}
		}
		for k, vv := range resp.Trailer {
			w.Header()[http.TrailerPrefix+k] = vv
		}
	}
}

// startGRPC runs a grpc-go server and a relay in front of it using a
// Transport, and returns a client of the relay.
func startGRPC(t *testing.T) (testpb.TestServiceClient, *grpcService) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	svc := &grpcService{cancelled: make(chan struct{}, 1)}
	gs := grpc.NewServer()
	testpb.RegisterTestServiceServer(gs, svc)
	go gs.Serve(ln)
	tr := newTransport(t)
	rs := startH2(t, relay(tr, ln.Addr().String()))
	cc, err := grpc.NewClient(rs.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cc.Close()
		gs.Stop()
	})
	return testpb.NewTestServiceClient(cc), svc
}

func TestGRPCUnaryStatusAndMetadata(t *testing.T) {
	client, _ := startGRPC(t)
	ctx := metadata.AppendToOutgoingContext(ctxTimeout(t, 10*time.Second), "x-echo", "v1")
	var hdr, trl metadata.MD
	resp, err := client.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("ping")}},
		grpc.Header(&hdr), grpc.Trailer(&trl))
	if err != nil {
		t.Fatal(err)
	}
	if string(resp.GetPayload().GetBody()) != "ping" {
		t.Fatalf("payload %q", resp.GetPayload().GetBody())
	}
	if got := hdr.Get("x-echo-header"); len(got) != 1 || got[0] != "v1" {
		t.Fatalf("header metadata %v", hdr)
	}
	if got := trl.Get("x-echo-trailer"); len(got) != 1 || got[0] != "v1" {
		t.Fatalf("trailer metadata %v", trl)
	}
	_, err = client.UnaryCall(ctxTimeout(t, 10*time.Second), &testpb.SimpleRequest{
		ResponseStatus: &testpb.EchoStatus{Code: int32(codes.NotFound), Message: "no such thing"}})
	if st := status.Convert(err); st.Code() != codes.NotFound || st.Message() != "no such thing" {
		t.Fatalf("status %v", st)
	}
}

func TestGRPCDeadlineCancelsUpstream(t *testing.T) {
	client, svc := startGRPC(t)
	// The connections first (grpc-go's to the relay, the Transport's to
	// the server), then a deadline long enough for the call to reach the
	// server on a loaded machine: one that passed before, in a dial,
	// failed the call as well but cancelled no upstream call.
	if _, err := client.UnaryCall(ctxTimeout(t, 10*time.Second), &testpb.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "x-hang", "1"), time.Second)
	defer cancel()
	_, err := client.UnaryCall(ctx, &testpb.SimpleRequest{})
	if code := status.Code(err); code != codes.DeadlineExceeded {
		t.Fatalf("code %v (%v)", code, err)
	}
	select {
	case <-svc.cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream call was not cancelled")
	}
}

func TestGRPCServerStreaming(t *testing.T) {
	client, _ := startGRPC(t)
	var params []*testpb.ResponseParameters
	for _, n := range []int32{1, 100, 70 << 10, 0, 5} {
		params = append(params, &testpb.ResponseParameters{Size: n})
	}
	stream, err := client.StreamingOutputCall(ctxTimeout(t, 10*time.Second), &testpb.StreamingOutputCallRequest{ResponseParameters: params})
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range params {
		m, err := stream.Recv()
		if err != nil || int32(len(m.GetPayload().GetBody())) != p.GetSize() {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
}

func TestGRPCClientStreaming(t *testing.T) {
	client, _ := startGRPC(t)
	stream, err := client.StreamingInputCall(ctxTimeout(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, n := range []int{3, 40 << 10, 1, 200 << 10} {
		total += n
		if err := stream.Send(&testpb.StreamingInputCallRequest{Payload: &testpb.Payload{Body: []byte(strings.Repeat("q", n))}}); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil || int(resp.GetAggregatedPayloadSize()) != total {
		t.Fatalf("aggregated %d, %v", resp.GetAggregatedPayloadSize(), err)
	}
}

func TestGRPCBidiStreamingIsFullDuplex(t *testing.T) {
	client, _ := startGRPC(t)
	stream, err := client.FullDuplexCall(ctxTimeout(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	// Each reply must arrive while the request stream is still open.
	for i, n := range []int32{10, 0, 33 << 10, 7} {
		if err := stream.Send(&testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: n}}}); err != nil {
			t.Fatal(err)
		}
		m, err := stream.Recv()
		if err != nil || int32(len(m.GetPayload().GetBody())) != n {
			t.Fatalf("reply %d: %v", i, err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("end: %v", err)
	}
}
