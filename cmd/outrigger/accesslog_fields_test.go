package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// httpClients are the clients the access log's field tests send plain
// HTTP requests with through the proxy's own server: HTTP/1.1, and h2c
// with prior knowledge. Neither keeps a connection for the next test.
func httpClients() []struct {
	name string
	c    *http.Client
} {
	return []struct {
		name string
		c    *http.Client
	}{
		{"http1", &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}},
		{"h2c", &http.Client{Transport: &http2.Transport{AllowHTTP: true,
			DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, addr)
			}}, Timeout: 10 * time.Second}},
	}
}

// send sends req with c and reads the response's body whole.
func send(t *testing.T, c *http.Client, req *http.Request) *http.Response {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if tr, ok := c.Transport.(*http2.Transport); ok {
		tr.CloseIdleConnections()
	}
	return resp
}

// newRequest is a request for path on lp, with body when not nil.
func (lp *loggedProxy) newRequest(t *testing.T, method, path string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+lp.addr+path, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// grpcService is the upstream of the gRPC field tests: grpc-go's test
// service, whose calls answer with what the request asks (a payload, a
// status, messages spaced in time).
type grpcService struct {
	testpb.UnimplementedTestServiceServer
	// failed holds the x-fail-once values of the calls failed
	// UNAVAILABLE: a call carrying one fails the first time only. nil:
	// none fails so.
	failed *sync.Map
}

// UnaryCall answers with the request's payload, or fails with its
// response_status before any message (grpc-go then answers
// trailers-only).
func (s grpcService) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("x-fail-once"); len(v) > 0 && s.failed != nil {
		if _, seen := s.failed.LoadOrStore(v[0], true); !seen {
			return nil, status.Error(codes.Unavailable, "warming up")
		}
	}
	if st := req.GetResponseStatus(); st.GetCode() != 0 {
		return nil, status.Error(codes.Code(st.GetCode()), st.GetMessage())
	}
	return &testpb.SimpleResponse{Payload: req.GetPayload()}, nil
}

// StreamingOutputCall sends a message per response parameter, each
// after its interval, then ends with the request's response_status (in
// the trailers).
func (grpcService) StreamingOutputCall(req *testpb.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	for _, p := range req.GetResponseParameters() {
		select {
		case <-time.After(time.Duration(p.GetIntervalUs()) * time.Microsecond):
		case <-stream.Context().Done():
			return stream.Context().Err()
		}
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: make([]byte, p.GetSize())}}); err != nil {
			return err
		}
	}
	if st := req.GetResponseStatus(); st.GetCode() != 0 {
		return status.Error(codes.Code(st.GetCode()), st.GetMessage())
	}
	return nil
}

// startGRPCUpstream serves svc with grpc-go on loopback.
func startGRPCUpstream(t *testing.T, svc testpb.TestServiceServer) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	testpb.RegisterTestServiceServer(s, svc)
	done := make(chan struct{})
	go func() { s.Serve(ln); close(done) }()
	t.Cleanup(func() { s.Stop(); <-done })
	return ln.Addr().String()
}

// grpcTestClient is a grpc-go client of the test service at addr.
func grpcTestClient(t *testing.T, addr string, opts ...grpc.DialOption) testpb.TestServiceClient {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr, append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return testpb.NewTestServiceClient(cc)
}

// grpcRoutes routes the test service's calls to the cluster "grpc" at
// addr.
func grpcRoutes(addr string) *config.Config {
	return &config.Config{
		Clusters: map[string]config.Cluster{"grpc": {Endpoints: []config.Endpoint{{Address: addr}}, Protocol: config.ProtocolGRPC}},
		Routes: []config.Route{{Name: "grpc", Cluster: "grpc",
			Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/grpc.testing.TestService/"}}}},
	}
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// user_agent is the request's User-Agent as received, over every
// protocol: not the one a route's request_headers sets for the
// upstream, and escaped so that a client cannot end the line or add a
// field with its value.
func TestAccessLogUserAgent(t *testing.T) {
	up := newUpstream(t, "up")
	forged := "agent/1.0 \"quoted\" \\ \t\"}{\"status\":200,\"x\":\""
	for _, hc := range httpClients() {
		t.Run(hc.name, func(t *testing.T) {
			lp := startServedProxy(t, &config.Config{
				Clusters: map[string]config.Cluster{"up": {Endpoints: []config.Endpoint{{Address: up.addr()}}}},
				Routes: []config.Route{{Name: "r", Cluster: "up",
					Match:          config.RouteMatch{Path: config.PathMatch{Prefix: "/"}},
					RequestHeaders: config.HeaderMutation{Add: config.HeaderValues{{Name: "User-Agent", Value: "rewritten"}}}}},
			})
			req := lp.newRequest(t, "GET", "/ua", nil)
			req.Header.Set("User-Agent", forged)
			send(t, hc.c, req)
			req = lp.newRequest(t, "GET", "/none", nil)
			req.Header.Set("User-Agent", "") // Go's clients then send none
			send(t, hc.c, req)
			lines := waitLines(t, lp.logPath, 2)
			if len(lines) != 2 {
				t.Fatalf("%d lines: %v", len(lines), lines)
			}
			if l := lines[0]; l["user_agent"] != forged || l["status"] != 200.0 || l["x"] != nil {
				t.Errorf("line %v; want user_agent %q", l, forged)
			}
			if l := lines[1]; l["user_agent"] != "" {
				t.Errorf("line %v; want an empty user_agent", l)
			}
		})
	}
	t.Run("grpc", func(t *testing.T) {
		lp := startServedProxy(t, grpcRoutes(startGRPCUpstream(t, grpcService{})))
		c := grpcTestClient(t, lp.addr, grpc.WithUserAgent("shop/2.1"))
		if _, err := c.UnaryCall(ctxFor(t, 10*time.Second), &testpb.SimpleRequest{}); err != nil {
			t.Fatal(err)
		}
		lines := waitLines(t, lp.logPath, 1)
		// grpc-go puts its own name after the application's.
		if ua, _ := lines[0]["user_agent"].(string); len(lines) != 1 || !strings.HasPrefix(ua, "shop/2.1 grpc-go/") {
			t.Fatalf("lines %v; want user_agent shop/2.1 grpc-go/...", lines)
		}
	})
}

// bytes_received is the request body bytes the proxy read from the
// client, over every protocol: the body's length however it was framed
// (chunked, HTTP/2 DATA without a content-length, gRPC messages), and 0
// for a body the proxy answered without reading, whatever its
// Content-Length said.
func TestAccessLogBytesReceived(t *testing.T) {
	up := newUpstream(t, "up")
	cfg := &config.Config{
		Clusters: map[string]config.Cluster{"up": {Endpoints: []config.Endpoint{{Address: up.addr()}}}},
		Routes: []config.Route{
			{Name: "direct", Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/direct"}},
				DirectResponse: &config.DirectResponse{Status: 204}},
			{Name: "r", Cluster: "up", Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/"}}},
		},
	}
	body := strings.Repeat("0123456789", 2000)
	for _, hc := range httpClients() {
		t.Run(hc.name, func(t *testing.T) {
			lp := startServedProxy(t, cfg)
			// Without a length: chunked over HTTP/1.1, DATA frames alone
			// over HTTP/2.
			send(t, hc.c, lp.newRequest(t, "POST", "/upload", io.MultiReader(strings.NewReader(body))))
			send(t, hc.c, lp.newRequest(t, "POST", "/direct", strings.NewReader(body)))
			lines := waitLines(t, lp.logPath, 2)
			if len(lines) != 2 {
				t.Fatalf("%d lines: %v", len(lines), lines)
			}
			if l := lines[0]; l["status"] != 200.0 || l["bytes_received"] != float64(len(body)) {
				t.Errorf("line %v; want bytes_received %d", l, len(body))
			}
			if l := lines[1]; l["status"] != 204.0 || l["bytes_received"] != 0.0 {
				t.Errorf("line %v; want bytes_received 0, the body unread", l)
			}
		})
	}
	t.Run("grpc", func(t *testing.T) {
		lp := startServedProxy(t, grpcRoutes(startGRPCUpstream(t, grpcService{})))
		c := grpcTestClient(t, lp.addr)
		req := &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte(body)}}
		if _, err := c.UnaryCall(ctxFor(t, 10*time.Second), req); err != nil {
			t.Fatal(err)
		}
		lines := waitLines(t, lp.logPath, 1)
		// One message: its 5-byte prefix (flag, length) and itself.
		if want := float64(5 + proto.Size(req)); len(lines) != 1 || lines[0]["bytes_received"] != want {
			t.Fatalf("lines %v; want bytes_received %v", lines, want)
		}
	})
}

// A tunnel's bytes_received are those the client sent through it after
// its request: those that came in the same packet as the request,
// already read into the server's buffer, and those after the 101, as
// Envoy's BYTES_RECEIVED counts an upgraded stream's.
func TestAccessLogCountsWhatATunnelReceived(t *testing.T) {
	up := newEchoUpgrader(t)
	lp := startServedProxy(t, routeAllTo(up, "ws"))
	first, second := "early bytes", strings.Repeat("echo", 5000)
	c, err := net.Dial("tcp", lp.addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"+first)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("%v %v", resp, err)
	}
	io.WriteString(c, second)
	b := make([]byte, len(first)+len(second))
	if _, err := io.ReadFull(br, b); err != nil || string(b) != first+second {
		t.Fatalf("echo of %d bytes: %v", len(b), err)
	}
	c.Close()
	lines := waitLines(t, lp.logPath, 1)
	n := float64(len(first) + len(second))
	if l := lines[0]; len(lines) != 1 || l["status"] != 101.0 || l["bytes_received"] != n || l["bytes"] != n {
		t.Fatalf("lines %v; want status 101, bytes_received and bytes %v", lines, n)
	}
}

// grpc_status is the grpc-status sent downstream for a gRPC request, as
// a number: an upstream's in its trailers or its trailers-only answer,
// the proxy's own local reply's, and the one the proxy ends a stream
// with in its trailers (a route timeout mid-stream). A request that is
// not gRPC has none, over HTTP/1.1 and h2c alike.
func TestAccessLogGRPCStatus(t *testing.T) {
	up := startGRPCUpstream(t, grpcService{})
	cfg := grpcRoutes(up)
	cfg.Routes = append([]config.Route{{Name: "stream", Cluster: "grpc", Timeout: 300 * time.Millisecond,
		Match: config.RouteMatch{Path: config.PathMatch{Exact: "/grpc.testing.TestService/StreamingOutputCall"},
			Headers: []config.HeaderMatch{{Name: "x-short", Exact: "1"}}}}}, cfg.Routes...)
	lp := startServedProxy(t, cfg)
	c := grpcTestClient(t, lp.addr)

	if _, err := c.UnaryCall(ctxFor(t, 10*time.Second), &testpb.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
	_, err := c.UnaryCall(ctxFor(t, 10*time.Second), &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.NotFound)}})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("unary: %v", err)
	}
	// Messages, then the status in the trailers.
	readStream := func(ctx context.Context, req *testpb.StreamingOutputCallRequest) error {
		st, err := c.StreamingOutputCall(ctx, req)
		if err != nil {
			return err
		}
		for {
			if _, err := st.Recv(); err != nil {
				return err
			}
		}
	}
	err = readStream(ctxFor(t, 10*time.Second), &testpb.StreamingOutputCallRequest{
		ResponseParameters: []*testpb.ResponseParameters{{Size: 10}, {Size: 10}},
		ResponseStatus:     &testpb.EchoStatus{Code: int32(codes.FailedPrecondition)}})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("stream: %v", err)
	}
	// The route timeout passes between two messages: the proxy ends the
	// stream with DEADLINE_EXCEEDED trailers of its own.
	err = readStream(metadata.AppendToOutgoingContext(ctxFor(t, 10*time.Second), "x-short", "1"), &testpb.StreamingOutputCallRequest{
		ResponseParameters: []*testpb.ResponseParameters{{Size: 10}, {Size: 10, IntervalUs: 10e6}}})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("cut stream: %v", err)
	}
	// No route: the proxy's own trailers-only UNIMPLEMENTED.
	callNoRoute(t, lp.addr)
	lines := waitLines(t, lp.logPath, 5)
	want := []struct {
		route string
		code  float64
	}{{"grpc", 0}, {"grpc", 5}, {"grpc", 9}, {"stream", 4}, {"", 12}}
	if len(lines) != len(want) {
		t.Fatalf("%d lines: %v", len(lines), lines)
	}
	for i, w := range want {
		if l := lines[i]; l["route"] != w.route || l["grpc_status"] != w.code {
			t.Errorf("line %d: %v; want route %q, grpc_status %v", i, l, w.route, w.code)
		}
	}

	for _, hc := range httpClients() {
		t.Run(hc.name, func(t *testing.T) {
			lp := startServedProxy(t, &config.Config{Routes: []config.Route{{Name: "direct",
				Match: config.RouteMatch{Path: config.PathMatch{Exact: "/plain"}}, DirectResponse: &config.DirectResponse{Status: 200}}}})
			send(t, hc.c, lp.newRequest(t, "GET", "/plain", nil))
			send(t, hc.c, lp.newRequest(t, "GET", "/nowhere", nil))
			lines := waitLines(t, lp.logPath, 2)
			for _, l := range lines {
				if _, ok := l["grpc_status"]; ok {
					t.Errorf("line %v of a request that is not gRPC has a grpc_status", l)
				}
			}
		})
	}
}

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// attempts is the number of upstream attempts made for the request, as
// Envoy's UPSTREAM_REQUEST_ATTEMPT_COUNT: 1 for a plain forward, one
// more for each retry (a connection that failed counts), the fallback
// cluster's counted on from the primary's, and 0 when the proxy
// answered without trying an upstream.
func TestAccessLogAttempts(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]bool{}
	// The first request for a path ending in /flaky (and a query) fails
	// 503.
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		first := !seen[r.URL.RequestURI()]
		seen[r.URL.RequestURI()] = true
		mu.Unlock()
		if first && strings.HasSuffix(r.URL.Path, "/flaky") {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(up.Close)
	dead := deadAddr(t)
	retry := &config.RetryPolicy{Attempts: 1, RetryOn: []config.RetryCondition{"5xx"}}
	cfg := &config.Config{
		Clusters: map[string]config.Cluster{
			"up":   {Endpoints: []config.Endpoint{{Address: up.Listener.Addr().String()}}},
			"dead": {Endpoints: []config.Endpoint{{Address: dead}}},
		},
		Routes: []config.Route{
			{Name: "direct", Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/direct"}},
				DirectResponse: &config.DirectResponse{Status: 204}},
			{Name: "lost", Cluster: "dead", Retry: retry, Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/lost"}}},
			{Name: "saved", Cluster: "dead", Retry: retry, Fallback: &config.Fallback{Cluster: "up"},
				Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/saved"}}},
			{Name: "up", Cluster: "up", Retry: retry, Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/up"}}},
		},
	}
	want := []struct {
		path     string
		status   float64
		attempts float64
	}{
		{"/up/plain", 200, 1},
		{"/up/flaky", 200, 2},
		{"/lost", 502, 2},  // upstream_connect_failure after its retry
		{"/saved", 200, 3}, // the primary's two, the fallback's one
		{"/direct", 204, 0},
		{"/nowhere", 404, 0},
	}
	for _, hc := range httpClients() {
		t.Run(hc.name, func(t *testing.T) {
			lp := startServedProxy(t, cfg)
			for _, w := range want {
				send(t, hc.c, lp.newRequest(t, "GET", w.path+"?"+hc.name, nil))
			}
			lines := waitLines(t, lp.logPath, len(want))
			if len(lines) != len(want) {
				t.Fatalf("%d lines: %v", len(lines), lines)
			}
			for i, w := range want {
				if l := lines[i]; l["status"] != w.status || l["attempts"] != w.attempts {
					t.Errorf("%s: line %v; want status %v, attempts %v", w.path, l, w.status, w.attempts)
				}
			}
		})
	}
	t.Run("grpc", func(t *testing.T) {
		cfg := grpcRoutes(startGRPCUpstream(t, grpcService{failed: new(sync.Map)}))
		cfg.Routes[0].Retry = &config.RetryPolicy{Attempts: 1} // retry_on has unavailable by default
		lp := startServedProxy(t, cfg)
		c := grpcTestClient(t, lp.addr)
		if _, err := c.UnaryCall(ctxFor(t, 10*time.Second), &testpb.SimpleRequest{}); err != nil {
			t.Fatal(err)
		}
		// UNAVAILABLE (trailers-only), then OK on the retry.
		ctx := metadata.AppendToOutgoingContext(ctxFor(t, 10*time.Second), "x-fail-once", "a")
		if _, err := c.UnaryCall(ctx, &testpb.SimpleRequest{}); err != nil {
			t.Fatal(err)
		}
		callNoRoute(t, lp.addr)
		lines := waitLines(t, lp.logPath, 3)
		if len(lines) != 3 {
			t.Fatalf("%d lines: %v", len(lines), lines)
		}
		for i, want := range []float64{1, 2, 0} {
			if l := lines[i]; l["attempts"] != want {
				t.Errorf("line %v; want attempts %v", l, want)
			}
		}
	})
}

// upstream_header_ms is the time from the request's start to the
// arrival of the header of the upstream response that went downstream
// (Envoy's RESPONSE_DURATION), over every protocol: an upstream that
// takes 100ms to answer and a second more to end its body has it at 100ms
// or more, and 100ms or more under duration_ms. A reply the proxy made
// itself has none. The body's second leaves the proxy 900ms to take the
// header once the upstream has sent it: with 150ms, a proxy that took it
// 50ms late on a loaded machine had it less than 100ms under duration_ms.
func TestAccessLogUpstreamHeaderTime(t *testing.T) {
	const headerAfter, bodyAfter = 100 * time.Millisecond, time.Second
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(headerAfter)
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		time.Sleep(bodyAfter)
		io.WriteString(w, "done")
	}))
	t.Cleanup(up.Close)
	cfg := &config.Config{
		Clusters: map[string]config.Cluster{
			"up":   {Endpoints: []config.Endpoint{{Address: up.Listener.Addr().String()}}},
			"dead": {Endpoints: []config.Endpoint{{Address: deadAddr(t)}}},
		},
		Routes: []config.Route{
			{Name: "direct", Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/direct"}},
				DirectResponse: &config.DirectResponse{Status: 204}},
			{Name: "dead", Cluster: "dead", Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/dead"}}},
			{Name: "up", Cluster: "up", Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/"}}},
		},
	}
	// check checks the line of a response whose header came after
	// headerAfter, and its end bodyAfter later.
	check := func(t *testing.T, l map[string]any) {
		t.Helper()
		header, ok := l["upstream_header_ms"].(float64)
		total, _ := l["duration_ms"].(float64)
		if !ok || header < float64(headerAfter.Milliseconds()) || total-header < float64(headerAfter.Milliseconds()) {
			t.Errorf("line %v; want upstream_header_ms >= %v and %v or more under duration_ms", l, headerAfter, headerAfter)
		}
	}
	for _, hc := range httpClients() {
		t.Run(hc.name, func(t *testing.T) {
			lp := startServedProxy(t, cfg)
			send(t, hc.c, lp.newRequest(t, "GET", "/slow", nil))
			send(t, hc.c, lp.newRequest(t, "GET", "/direct", nil))
			send(t, hc.c, lp.newRequest(t, "GET", "/dead", nil))
			lines := waitLines(t, lp.logPath, 3)
			if len(lines) != 3 {
				t.Fatalf("%d lines: %v", len(lines), lines)
			}
			check(t, lines[0])
			for _, l := range lines[1:] {
				if _, ok := l["upstream_header_ms"]; ok {
					t.Errorf("line %v of the proxy's own reply has upstream_header_ms", l)
				}
			}
		})
	}
	t.Run("grpc", func(t *testing.T) {
		lp := startServedProxy(t, grpcRoutes(startGRPCUpstream(t, grpcService{})))
		c := grpcTestClient(t, lp.addr)
		// grpc-go sends the header with the first message.
		st, err := c.StreamingOutputCall(ctxFor(t, 10*time.Second), &testpb.StreamingOutputCallRequest{
			ResponseParameters: []*testpb.ResponseParameters{
				{Size: 1, IntervalUs: int32(headerAfter.Microseconds())},
				{Size: 1, IntervalUs: int32(bodyAfter.Microseconds())},
			}})
		if err != nil {
			t.Fatal(err)
		}
		for err == nil {
			_, err = st.Recv()
		}
		if err != io.EOF {
			t.Fatal(err)
		}
		callNoRoute(t, lp.addr)
		lines := waitLines(t, lp.logPath, 2)
		if len(lines) != 2 {
			t.Fatalf("%d lines: %v", len(lines), lines)
		}
		check(t, lines[0])
		if _, ok := lines[1]["upstream_header_ms"]; ok {
			t.Errorf("line %v of the proxy's own reply has upstream_header_ms", lines[1])
		}
	})
}

// callNoRoute makes a gRPC call no route matches through the sidecar at
// addr, and checks that it gets the proxy's own trailers-only
// UNIMPLEMENTED.
func callNoRoute(t *testing.T, addr string) {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if err := cc.Invoke(ctxFor(t, 10*time.Second), "/nowhere.Service/Call", &testpb.Empty{}, &testpb.Empty{}); status.Code(err) != codes.Unimplemented {
		t.Fatalf("no route: %v", err)
	}
}
