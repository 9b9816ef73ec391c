package proxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/grpclog"
	"google.golang.org/grpc/interop"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// The gRPC interop cases report a failure through grpclog's Fatal, which
// exits the process. This logger turns it into a panic that the case's
// runner recovers into a test failure. Other logs go where grpc-go's own
// logger sends them by default: errors to stderr, nothing else.
func init() {
	grpclog.SetLoggerV2(panicOnFatal{grpclog.NewLoggerV2(io.Discard, io.Discard, os.Stderr)})
}

type panicOnFatal struct{ grpclog.LoggerV2 }

type interopFailure string

func (panicOnFatal) Fatal(args ...any) { panic(interopFailure(fmt.Sprint(args...))) }
func (panicOnFatal) Fatalf(format string, args ...any) {
	panic(interopFailure(fmt.Sprintf(format, args...)))
}
func (panicOnFatal) Fatalln(args ...any) { panic(interopFailure(fmt.Sprintln(args...))) }

// TestGRPCInteropThroughProxy runs grpc-go's interop cases, the ones every
// gRPC implementation runs against every other, from a grpc-go client
// through the outbound listener to grpc-go's interop server: unary calls
// with empty and large (about 300 KB) messages; client, server and
// bidirectional streaming; an empty stream; a deadline shorter than the
// server's sleep; cancellation before and after the first response;
// initial and trailing metadata (binary ones too) echoed back; a status
// code and message, one with whitespace and Unicode; an unimplemented
// method and service.
func TestGRPCInteropThroughProxy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	testpb.RegisterTestServiceServer(s, interop.NewTestServer())
	done := make(chan struct{})
	go func() { _ = s.Serve(ln); close(done) }()
	t.Cleanup(func() { s.Stop(); <-done })

	h := startProxy(t, &config.Config{
		Clusters: map[string]config.Cluster{"grpc": {Endpoints: eps(ln.Addr().String()), Protocol: config.ProtocolGRPC}},
		Routes:   []config.Route{{Name: "grpc", Cluster: "grpc"}},
	})
	cc, err := grpc.NewClient("passthrough:///"+h.out, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	tc := testpb.NewTestServiceClient(cc)

	cases := []struct {
		name string
		run  func(context.Context)
	}{
		{"empty_unary", func(ctx context.Context) { interop.DoEmptyUnaryCall(ctx, tc) }},
		{"large_unary", func(ctx context.Context) { interop.DoLargeUnaryCall(ctx, tc) }},
		{"client_streaming", func(ctx context.Context) { interop.DoClientStreaming(ctx, tc) }},
		{"server_streaming", func(ctx context.Context) { interop.DoServerStreaming(ctx, tc) }},
		{"ping_pong", func(ctx context.Context) { interop.DoPingPong(ctx, tc) }},
		{"empty_stream", func(ctx context.Context) { interop.DoEmptyStream(ctx, tc) }},
		{"timeout_on_sleeping_server", func(ctx context.Context) { interop.DoTimeoutOnSleepingServer(ctx, tc) }},
		{"cancel_after_begin", func(ctx context.Context) { interop.DoCancelAfterBegin(ctx, tc) }},
		{"cancel_after_first_response", func(ctx context.Context) { interop.DoCancelAfterFirstResponse(ctx, tc) }},
		{"custom_metadata", func(ctx context.Context) { interop.DoCustomMetadata(ctx, tc) }},
		{"status_code_and_message", func(ctx context.Context) { interop.DoStatusCodeAndMessage(ctx, tc) }},
		{"special_status_message", func(ctx context.Context) { interop.DoSpecialStatusMessage(ctx, tc) }},
		{"unimplemented_method", func(ctx context.Context) { interop.DoUnimplementedMethod(ctx, cc) }},
		{"unimplemented_service", func(ctx context.Context) {
			interop.DoUnimplementedService(ctx, testpb.NewUnimplementedServiceClient(cc))
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			defer func() {
				if r := recover(); r != nil {
					f, ok := r.(interopFailure)
					if !ok {
						panic(r)
					}
					t.Fatalf("%s", f)
				}
			}()
			c.run(ctx)
		})
	}
}
