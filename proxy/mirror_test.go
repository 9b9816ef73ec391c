package proxy

import (
	"bufio"
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
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"

	"github.com/outrigger-mesh/outrigger/proxy/config"
	"github.com/outrigger-mesh/outrigger/proxy/lb"
)

// mirrored is what a mirror upstream saw of one request.
type mirrored struct {
	method, path, host, requestID, added, forwardedFor, attempt, expect string
	body                                                                string
	contentLength                                                       int64
}

// mirrorUpstream starts an upstream that reports each request it gets
// on the returned channel, then runs hold (when not nil) before it
// answers 200 "mirror".
func mirrorUpstream(t *testing.T, hold func(r *http.Request)) (string, chan mirrored) {
	got := make(chan mirrored, 64)
	up := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- mirrored{method: r.Method, path: r.URL.RequestURI(), host: r.Host, requestID: r.Header.Get("X-Request-Id"),
			added: r.Header.Get("X-Added"), forwardedFor: r.Header.Get("X-Forwarded-For"), attempt: r.Header.Get(hdrAttemptCount),
			expect: r.Header.Get("Expect"), body: string(b), contentLength: r.ContentLength}
		if hold != nil {
			hold(r)
		}
		_, _ = io.WriteString(w, "mirror")
	})
	return addr(up), got
}

// mirrorConfig routes everything to cluster svc at primary, mirrored to
// cluster shadow at shadow with percent (nil: absent).
func mirrorConfig(primary, shadow string, percent *float64, mod ...func(*config.Route)) *config.Config {
	cfg := simpleConfig(config.Cluster{Endpoints: eps(primary)}, append([]func(*config.Route){func(r *config.Route) {
		r.Mirror = []config.Mirror{{Cluster: "shadow", Percent: percent}}
	}}, mod...)...)
	cfg.Clusters["shadow"] = config.Cluster{Endpoints: eps(shadow)}
	return cfg
}

func (h *harness) mirrorCount(res mirrorResult) float64 {
	return counterValue(h.p.m.mirrored.WithLabelValues("outbound", "all", "shadow", mirrorResultNames[res]))
}

// receive waits for the mirror upstream's next request.
func receive(t *testing.T, got chan mirrored) mirrored {
	t.Helper()
	select {
	case m := <-got:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("the mirror upstream got no request")
		return mirrored{}
	}
}

// The mirror gets the request as the primary does, after the route's
// prefix_rewrite and request_headers, with the same x-request-id and
// X-Forwarded-For, its body (whether sent with a length or chunked),
// and its Host with "-shadow" before the port. The client gets the
// primary's answer.
func TestMirrorGetsTheRequestThePrimaryGets(t *testing.T) {
	primary := make(chan mirrored, 8)
	p := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		primary <- mirrored{method: r.Method, path: r.URL.RequestURI(), host: r.Host, requestID: r.Header.Get("X-Request-Id"),
			added: r.Header.Get("X-Added"), forwardedFor: r.Header.Get("X-Forwarded-For"), body: string(b)}
		_, _ = io.WriteString(w, "primary")
	})
	shadow, got := mirrorUpstream(t, nil)
	h := startProxy(t, mirrorConfig(addr(p), shadow, nil, func(r *config.Route) {
		r.Match.Path.Prefix = "/api/"
		r.PrefixRewrite = "/v2/"
		r.RequestHeaders.Add = []config.HeaderValue{{Name: "x-added", Value: "yes"}}
	}))
	for _, tc := range []struct {
		name    string
		body    io.Reader
		length  int64
		wantLen int64
	}{
		{"no body", nil, 0, 0},
		{"body with a length", strings.NewReader("hello mirror"), 12, 12},
		// Sent chunked; the copy goes with its length, as it is whole.
		{"chunked body", io.MultiReader(strings.NewReader("hello "), strings.NewReader("mirror")), -1, 12},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method := "POST"
			if tc.body == nil {
				method = "GET"
			}
			req, _ := http.NewRequest(method, h.url("/api/items?q=1"), tc.body)
			req.ContentLength = tc.length
			req.Host = "api.example:8080"
			resp, err := h.h1.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if body := readAll(t, resp); resp.StatusCode != 200 || body != "primary" {
				t.Fatalf("client got %d %q, want the primary's 200", resp.StatusCode, body)
			}
			pr, m := receive(t, primary), receive(t, got)
			want := pr
			want.host = "api.example-shadow:8080"
			want.contentLength = tc.wantLen
			if pr.host != "api.example:8080" || pr.path != "/v2/items?q=1" || pr.added != "yes" || pr.requestID == "" || pr.forwardedFor != "127.0.0.1" {
				t.Fatalf("primary got %+v", pr)
			}
			if m != want {
				t.Fatalf("mirror got\n%+v\nwant\n%+v", m, want)
			}
		})
	}
	eventually(t, 10*time.Second, "3 mirrored requests counted", func() bool { return h.mirrorCount(mirrorSent) == 3 })
}

// A mirror that does not answer delays neither the client's response
// nor later requests: the client has the primary's answer while the
// mirror upstream still holds its copy. Shutdown then ends the copy in
// flight at once, and counts it failed.
func TestMirrorNeverDelaysThePrimaryAndShutdownEndsIt(t *testing.T) {
	p := upstream(t, true, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "primary") })
	var held atomic.Int64
	ended := make(chan struct{}, 8)
	shadow, got := mirrorUpstream(t, func(r *http.Request) {
		held.Add(1)
		<-r.Context().Done() // never answers: only the proxy ends it
		held.Add(-1)
		ended <- struct{}{}
	})
	h := startProxy(t, mirrorConfig(addr(p), shadow, nil, func(r *config.Route) { r.Timeout = time.Minute }))
	for i := range 2 {
		resp, body := do(t, h.h1, "POST", h.url("/"), []byte("data"))
		if resp.StatusCode != 200 || body != "primary" {
			t.Fatalf("request %d: %d %q, want the primary's 200", i, resp.StatusCode, body)
		}
	}
	receive(t, got)
	receive(t, got)
	eventually(t, 10*time.Second, "the mirror upstream to hold both copies", func() bool { return held.Load() == 2 })
	if v := h.mirrorCount(mirrorSent) + h.mirrorCount(mirrorFailed); v != 0 {
		t.Fatalf("%v copies ended while the mirror upstream holds them", v)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := h.p.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("Shutdown took %v: it waited for the mirrored requests", took)
	}
	// Shutdown returned once the copies' goroutines had: counted.
	if v := h.mirrorCount(mirrorFailed); v != 2 {
		t.Fatalf("failed copies after Shutdown: %v, want 2", v)
	}
	for range 2 {
		select {
		case <-ended:
		case <-time.After(10 * time.Second):
			t.Fatal("the mirror upstream's request was not ended by Shutdown")
		}
	}
}

// A mirror that cannot be reached is the mirror cluster's failure only:
// the client has the primary's answer, and the copy counts as failed,
// and as a connect failure of the mirror cluster, as any request's.
func TestMirrorFailureIsNotTheClients(t *testing.T) {
	p := upstream(t, true, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "primary") })
	h := startProxy(t, mirrorConfig(addr(p), refusedAddr(t), nil))
	for i := range 3 {
		resp, body := do(t, h.h1, "GET", h.url("/"), nil)
		if resp.StatusCode != 200 || body != "primary" || resp.Header.Get(HeaderError) != "" {
			t.Fatalf("request %d: %d %q %q, want the primary's 200", i, resp.StatusCode, body, resp.Header.Get(HeaderError))
		}
	}
	eventually(t, 10*time.Second, "3 failed copies", func() bool { return h.mirrorCount(mirrorFailed) == 3 })
	if v := counterValue(h.p.m.connectFail.WithLabelValues("shadow", "refused")); v != 3 {
		t.Fatalf("connect failures of the mirror cluster: %v, want 3", v)
	}
	if v := counterValue(h.p.m.requests.WithLabelValues("outbound", "all", "svc", "2xx")); v != 3 {
		t.Fatalf("route requests: %v, want the 3 the client sent", v)
	}
}

// percent copies that share of the requests: with draws that go round
// the quarters of the million, 25 % of 40 requests are mirrored.
func TestMirrorPercent(t *testing.T) {
	p := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {})
	shadow, got := mirrorUpstream(t, nil)
	var next atomic.Int64
	draw := func(n int64) int64 { return (next.Add(1) - 1) % 4 * (n / 4) }
	quarter := 25.0
	h := startProxy(t, mirrorConfig(addr(p), shadow, &quarter), func(o *Options) { o.Int63n = draw })
	for range 40 {
		if resp, _ := do(t, h.h1, "GET", h.url("/"), nil); resp.StatusCode != 200 {
			t.Fatalf("%d, want 200", resp.StatusCode)
		}
	}
	eventually(t, 10*time.Second, "10 copies sent", func() bool { return h.mirrorCount(mirrorSent) == 10 })
	if len(got) != 10 {
		t.Fatalf("the mirror upstream got %d requests, want 10", len(got))
	}
}

// A body over the cap, with a length or chunked, reaches the primary
// whole and is not mirrored; nor is one over max_request_body_bytes,
// which the client is refused.
func TestMirrorDropsABodyOverTheCap(t *testing.T) {
	var primaryGot atomic.Int64
	p := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if bytes.Equal(b, bytes.Repeat([]byte("x"), len(b))) {
			primaryGot.Store(int64(len(b)))
		}
	})
	shadow, got := mirrorUpstream(t, nil)
	h := startProxy(t, mirrorConfig(addr(p), shadow, nil))
	large := bytes.Repeat([]byte("x"), mirrorBodyCap+1)
	for _, chunked := range []bool{false, true} {
		primaryGot.Store(0)
		req, _ := http.NewRequest("POST", h.url("/"), io.MultiReader(bytes.NewReader(large)))
		if !chunked {
			req.ContentLength = int64(len(large))
		}
		resp, err := h.h1.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		if resp.StatusCode != 200 || primaryGot.Load() != int64(len(large)) {
			t.Fatalf("chunked %v: %d, the primary got %d bytes; want 200 and %d", chunked, resp.StatusCode, primaryGot.Load(), len(large))
		}
	}
	eventually(t, 10*time.Second, "2 copies dropped", func() bool { return h.mirrorCount(mirrorDroppedBody) == 2 })

	// Within the cap but over max_request_body_bytes: refused, and not
	// mirrored either. A length that says so is refused before the
	// request is forwarded, so before any mirror is drawn (not counted);
	// a chunked body crosses the limit as it streams.
	cfg := mirrorConfig(addr(p), shadow, nil)
	cfg.Listeners.MaxRequestBodyBytes = 10
	if err := h.p.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	for _, chunked := range []bool{false, true} {
		req, _ := http.NewRequest("POST", h.url("/"), io.MultiReader(strings.NewReader("more than ten bytes")))
		if !chunked {
			req.ContentLength = 19
		}
		resp, err := h.h1.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("chunked %v: %d, want 413", chunked, resp.StatusCode)
		}
	}
	eventually(t, 10*time.Second, "3 copies dropped", func() bool { return h.mirrorCount(mirrorDroppedBody) == 3 })
	if len(got) != 0 || h.mirrorCount(mirrorSent) != 0 {
		t.Fatalf("the mirror upstream got %d requests, want none", len(got))
	}
}

// Past the bound on copies in flight, copies are dropped and counted;
// the client never waits for a slot.
func TestMirrorOverflowDrops(t *testing.T) {
	p := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {})
	release := make(chan struct{})
	shadow, got := mirrorUpstream(t, func(r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	h := startProxy(t, mirrorConfig(addr(p), shadow, nil))
	h.p.mirrors.setMax(1)
	for range 3 {
		if resp, _ := do(t, h.h1, "GET", h.url("/"), nil); resp.StatusCode != 200 {
			t.Fatalf("%d, want 200", resp.StatusCode)
		}
	}
	receive(t, got)
	if v := h.mirrorCount(mirrorDroppedOverflow); v != 2 {
		t.Fatalf("copies dropped past the bound: %v, want 2", v)
	}
	close(release)
	// The copy is counted before its goroutine gives its slot back: the
	// next copy finds the slot free only once that goroutine has ended.
	eventually(t, 10*time.Second, "the copy in flight to be sent and its slot freed", func() bool {
		return h.mirrorCount(mirrorSent) == 1 && h.mirrorsRunning() == 0
	})
	if resp, _ := do(t, h.h1, "GET", h.url("/"), nil); resp.StatusCode != 200 {
		t.Fatalf("%d, want 200", resp.StatusCode)
	}
	receive(t, got)
	eventually(t, 10*time.Second, "a copy sent once a slot is free", func() bool { return h.mirrorCount(mirrorSent) == 2 })
}

// A reload that removes a route's mirror removes its series; the
// series are there from the route's start, at 0.
func TestMirrorSeriesGoWithTheMirror(t *testing.T) {
	p := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {})
	shadow, _ := mirrorUpstream(t, nil)
	h := startProxy(t, mirrorConfig(addr(p), shadow, nil))
	if n := countSeries(t, h, "outrigger_proxy_mirrored_requests_total", "route", "all"); n != int(numMirrorResults) {
		t.Fatalf("%d mirror series, want %d", n, numMirrorResults)
	}
	if err := h.p.Apply(simpleConfig(config.Cluster{Endpoints: eps(addr(p))})); err != nil {
		t.Fatal(err)
	}
	if n := countSeries(t, h, "outrigger_proxy_mirrored_requests_total", "route", "all"); n != 0 {
		t.Fatalf("%d mirror series after the mirror was removed, want 0", n)
	}
}

func TestShadowHost(t *testing.T) {
	for in, want := range map[string]string{
		"api":              "api-shadow",
		"api.example:8080": "api.example-shadow:8080",
		"10.0.0.1:80":      "10.0.0.1-shadow:80",
		"[::1]:80":         "[::1]-shadow:80",
		"[::1]":            "[::1]-shadow",
		"":                 "-shadow",
	} {
		if got := shadowHost(in); got != want {
			t.Errorf("shadowHost(%q) = %q, want %q", in, got, want)
		}
	}
}

// streamRecorder is a testService that also reports each client
// stream's aggregated size and :authority.
type streamRecorder struct {
	testService
	streams chan string
}

func (s *streamRecorder) StreamingInputCall(stream grpc.ClientStreamingServer[testpb.StreamingInputCallRequest, testpb.StreamingInputCallResponse]) error {
	total := 0
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			md, _ := metadata.FromIncomingContext(stream.Context())
			s.streams <- fmt.Sprintf("%d %s", total, strings.Join(md.Get(":authority"), ","))
			return stream.SendAndClose(&testpb.StreamingInputCallResponse{AggregatedPayloadSize: int32(total)})
		}
		if err != nil {
			return err
		}
		total += len(m.GetPayload().GetBody())
	}
}

// gRPC calls are mirrored once their request stream is whole: a unary
// call, and a client stream once the client ends it, with every message
// and the -shadow authority.
func TestMirrorGRPC(t *testing.T) {
	primary, shadow := &streamRecorder{streams: make(chan string, 4)}, &streamRecorder{streams: make(chan string, 4)}
	cfg := grpcConfig(startGRPCServer(t, primary))
	cfg.Clusters["shadow"] = config.Cluster{Endpoints: eps(startGRPCServer(t, shadow)), Protocol: config.ProtocolGRPC}
	cfg.Routes[0].Mirror = []config.Mirror{{Cluster: "shadow"}}
	h := startProxy(t, cfg)
	c := grpcClient(t, h.out)

	resp, err := c.UnaryCall(ctxT(t, 5*time.Second), &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("hi")}})
	if err != nil || string(resp.GetPayload().GetBody()) != "hi" {
		t.Fatalf("unary: %v %v", resp, err)
	}
	eventually(t, 10*time.Second, "the mirror's unary call", func() bool { return shadow.calls.Load() == 1 })

	stream, err := c.StreamingInputCall(ctxT(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := stream.Send(&testpb.StreamingInputCallRequest{Payload: &testpb.Payload{Body: make([]byte, 100)}}); err != nil {
			t.Fatal(err)
		}
	}
	if r, err := stream.CloseAndRecv(); err != nil || r.GetAggregatedPayloadSize() != 300 {
		t.Fatalf("client stream: %v %v", r, err)
	}
	if got := <-primary.streams; got != "300 "+h.out {
		t.Fatalf("primary: %q", got)
	}
	host, port, _ := net.SplitHostPort(h.out)
	select {
	case got := <-shadow.streams:
		if want := "300 " + host + "-shadow:" + port; got != want {
			t.Fatalf("mirror: %q, want %q", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the mirror got no client stream")
	}
	eventually(t, 10*time.Second, "2 copies sent", func() bool {
		return counterValue(h.p.m.mirrored.WithLabelValues("outbound", "grpc", "shadow", "sent")) == 2
	})
}

// On a route that retries, the copy is made once, of the body as the
// client sent it, however many attempts the primary makes; its one
// attempt is attempt 1.
func TestMirrorOnceWhateverThePrimaryRetries(t *testing.T) {
	var attempts atomic.Int64
	p := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if attempts.Add(1) == 1 {
			w.WriteHeader(503)
			return
		}
		_, _ = w.Write(b)
	})
	shadow, got := mirrorUpstream(t, nil)
	h := startProxy(t, mirrorConfig(addr(p), shadow, nil, func(r *config.Route) {
		r.Retry = &config.RetryPolicy{Attempts: 2, RetryOn: []config.RetryCondition{"5xx"}, AllowNonIdempotent: true,
			Backoff: config.Backoff{Base: time.Millisecond, Max: time.Millisecond}}
		r.IncludeRequestAttemptCount = true
	}))
	for _, chunked := range []bool{false, true} {
		attempts.Store(0)
		req, _ := http.NewRequest("POST", h.url("/"), io.MultiReader(strings.NewReader("once")))
		if !chunked {
			req.ContentLength = 4
		}
		resp, err := h.h1.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if body := readAll(t, resp); resp.StatusCode != 200 || body != "once" || attempts.Load() != 2 {
			t.Fatalf("chunked %v: %d %q after %d attempts, want the retry's 200", chunked, resp.StatusCode, body, attempts.Load())
		}
		if m := receive(t, got); m.body != "once" || m.attempt != "1" {
			t.Fatalf("chunked %v: the mirror got %q, attempt %q", chunked, m.body, m.attempt)
		}
	}
	eventually(t, 10*time.Second, "2 copies sent", func() bool { return h.mirrorCount(mirrorSent) == 2 })
	if len(got) != 0 {
		t.Fatalf("%d more copies, want one per request", len(got))
	}
}

// A client's "Expect: 100-continue" goes to the primary, which decides
// whether to take the body, and not with the copy, whose body is whole
// in memory: the mirror would only be waited for.
func TestMirrorCopyDoesNotExpectContinue(t *testing.T) {
	primary := make(chan string, 1)
	p := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		primary <- r.Header.Get("Expect") + " " + string(b)
	})
	shadow, got := mirrorUpstream(t, nil)
	h := startProxy(t, mirrorConfig(addr(p), shadow, nil))
	c, err := net.DialTimeout("tcp", h.out, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "POST / HTTP/1.1\r\nHost: api\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nbody"); err != nil {
		t.Fatal(err)
	}
	if got := <-primary; got != "100-continue body" {
		t.Fatalf("primary got %q, want the Expect and the body", got)
	}
	if m := receive(t, got); m.expect != "" || m.body != "body" || m.host != "api-shadow" {
		t.Fatalf("mirror got %+v, want the body without Expect", m)
	}
}

// A request that ends before its body was read whole (the primary
// answered without waiting for the rest of it) is not mirrored: the
// copy is counted dropped when the request ends. (The primary speaks
// HTTP/2: net/http's HTTP/1.1 server reads the rest of a body its
// handler left before it answers.)
func TestMirrorDropsABodyThePrimaryDidNotRead(t *testing.T) {
	p := upstream(t, true, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "early") })
	shadow, got := mirrorUpstream(t, nil)
	cfg := mirrorConfig(addr(p), shadow, nil)
	cfg.Clusters["svc"] = config.Cluster{Endpoints: eps(addr(p)), Protocol: config.ProtocolHTTP2}
	h := startProxy(t, cfg)
	pr, pw := io.Pipe()
	defer pw.Close()
	go func() { _, _ = io.WriteString(pw, "part of a body") }()
	req, _ := http.NewRequest("POST", h.url("/"), pr)
	resp, err := h.h1.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp); resp.StatusCode != 200 || body != "early" {
		t.Fatalf("%d %q, want the primary's early answer", resp.StatusCode, body)
	}
	eventually(t, 10*time.Second, "the copy to be dropped", func() bool { return h.mirrorCount(mirrorDroppedBody) == 1 })
	if len(got) != 0 || h.mirrorCount(mirrorSent) != 0 {
		t.Fatalf("the mirror upstream got %d requests, want none", len(got))
	}
}

// deadlineRecorder is a testService that reports, for each client
// stream, how long the deadline it was given left it when it began.
type deadlineRecorder struct {
	testService
	left chan time.Duration
}

func (s *deadlineRecorder) StreamingInputCall(stream grpc.ClientStreamingServer[testpb.StreamingInputCallRequest, testpb.StreamingInputCallResponse]) error {
	left := time.Duration(-1)
	if dl, ok := stream.Context().Deadline(); ok {
		left = time.Until(dl)
	}
	s.left <- left
	for {
		if _, err := stream.Recv(); err != nil {
			return stream.SendAndClose(&testpb.StreamingInputCallResponse{})
		}
	}
}

// A client stream's copy goes when the stream has ended, and its
// grpc-timeout is what the client's deadline has left then, not what it
// had when the primary went: the time the stream took is charged to it.
func TestMirrorClientStreamCopyKeepsTheClientsDeadline(t *testing.T) {
	primary, shadow := &deadlineRecorder{left: make(chan time.Duration, 1)}, &deadlineRecorder{left: make(chan time.Duration, 1)}
	cfg := grpcConfig(startGRPCServer(t, primary))
	cfg.Clusters["shadow"] = config.Cluster{Endpoints: eps(startGRPCServer(t, shadow)), Protocol: config.ProtocolGRPC}
	cfg.Routes[0].Mirror = []config.Mirror{{Cluster: "shadow"}}
	h := startProxy(t, cfg)
	c := grpcClient(t, h.out)

	ctx := ctxT(t, 5*time.Second)
	dl, _ := ctx.Deadline()
	stream, err := c.StreamingInputCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&testpb.StreamingInputCallRequest{Payload: &testpb.Payload{Body: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	<-primary.left
	// The stream lasts a second more before the client ends it.
	for end := time.Now().Add(time.Second); time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
	leftAtEnd := time.Until(dl)
	if _, err := stream.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-shadow.left:
		// The copy's grpc-timeout is charged the time since the proxy
		// readied the copy, a little after the client set its
		// deadline: the slack covers that gap on a loaded machine,
		// while a copy that kept the deadline the stream began with
		// has about a second more.
		if got < 0 || got > leftAtEnd+500*time.Millisecond {
			t.Fatalf("the copy had %v left, the client %v when its stream ended", got, leftAtEnd)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the mirror got no client stream")
	}
}

// A gRPC copy's grpc-timeout is charged the real time its request took
// to be whole, not the time Options.Now, the metrics' clock, tells: a
// proxy whose metrics clock runs apart from the wall clock (an injected
// one) still sends the copy, with the client's deadline.
func TestMirrorGRPCDeadlineIsRealTime(t *testing.T) {
	primary, shadow := &testService{}, &testService{}
	cfg := grpcConfig(startGRPCServer(t, primary))
	cfg.Clusters["shadow"] = config.Cluster{Endpoints: eps(startGRPCServer(t, shadow)), Protocol: config.ProtocolGRPC}
	cfg.Routes[0].Mirror = []config.Mirror{{Cluster: "shadow"}}
	// Each reading of the metrics clock is an hour after the last.
	var hours atomic.Int64
	h := startProxy(t, cfg, func(o *Options) {
		o.Now = func() time.Time { return time.Unix(0, 0).Add(time.Duration(hours.Add(1)) * time.Hour) }
	})
	c := grpcClient(t, h.out)

	if _, err := c.UnaryCall(ctxT(t, 5*time.Second), &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("hi")}}); err != nil {
		t.Fatal(err)
	}
	sent := h.p.m.mirrored.WithLabelValues("outbound", "grpc", "shadow", mirrorResultNames[mirrorSent])
	failed := h.p.m.mirrored.WithLabelValues("outbound", "grpc", "shadow", mirrorResultNames[mirrorFailed])
	eventually(t, 10*time.Second, "the copy's result", func() bool { return counterValue(sent)+counterValue(failed) == 1 })
	if counterValue(sent) != 1 || shadow.calls.Load() != 1 {
		t.Fatalf("%v sent, %v failed, %d calls at the mirror; want the copy sent", counterValue(sent), counterValue(failed), shadow.calls.Load())
	}
}

// A request the primary's cluster refuses once it was readied (here a
// connection that could not be made) is copied when it has no body, and
// not when it has one: the primary never read the body, and a copy goes
// only with a body read whole, so it counts as dropped_body.
func TestMirrorOfARequestThePrimaryNeverSent(t *testing.T) {
	shadow, got := mirrorUpstream(t, nil)
	h := startProxy(t, mirrorConfig(refusedAddr(t), shadow, nil))
	if resp, _ := do(t, h.h1, "GET", h.url("/"), nil); resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("GET: %d, want 502", resp.StatusCode)
	}
	if m := receive(t, got); m.method != "GET" {
		t.Fatalf("the mirror got %s, want the GET", m.method)
	}
	if resp, _ := do(t, h.h1, "POST", h.url("/"), []byte("a body")); resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("POST: %d, want 502", resp.StatusCode)
	}
	// The GET's copy is counted sent once its answer is back, which may
	// come after the mirror got it.
	eventually(t, 10*time.Second, "the POST's copy to be dropped, the GET's counted", func() bool {
		return h.mirrorCount(mirrorDroppedBody) == 1 && h.mirrorCount(mirrorSent) == 1
	})
	if len(got) != 0 || h.mirrorCount(mirrorSent) != 1 {
		t.Fatalf("the mirror got %d more requests and %v were sent, want none and 1", len(got), h.mirrorCount(mirrorSent))
	}
}

// A request with an empty Host (HTTP/1.0 without one, or HTTP/1.1 with
// "Host:" empty, RFC 9112 §3.2) is mirrored with the Host "-shadow", as
// Envoy's shadow writer appends "-shadow" to whatever host it has, so
// that the mirror can still tell the copy from a request of its own. An
// HTTP/2 request without :authority never gets that far: it is
// malformed, and neither forwarded nor mirrored.
func TestMirrorOfARequestWithoutHost(t *testing.T) {
	primary := make(chan string, 8)
	p := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {
		primary <- r.Host
		_, _ = io.WriteString(w, "primary")
	})
	shadow, got := mirrorUpstream(t, nil)
	h := startProxy(t, mirrorConfig(addr(p), shadow, nil))
	for _, req := range []string{
		"GET /a HTTP/1.0\r\n\r\n",
		"GET /b HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n",
	} {
		c, err := net.DialTimeout("tcp", h.out, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%q: %v", req, err)
		}
		body := readAll(t, resp)
		c.Close()
		if resp.StatusCode != 200 || body != "primary" {
			t.Fatalf("%q: client got %d %q, want the primary's 200", req, resp.StatusCode, body)
		}
		<-primary
		if m := receive(t, got); m.host != "-shadow" {
			t.Fatalf("%q: mirror got Host %q, want -shadow", req, m.host)
		}
	}
	// The shadow has each copy before the proxy has its answer and counts it.
	eventually(t, 10*time.Second, "the 2 copies of the HTTP/1 requests counted", func() bool { return h.mirrorCount(mirrorSent) == 2 })

	c, fr := dialRawH2(t, h.out)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":path", "/c"}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		if i == 100 {
			t.Fatal("no reset of the stream without :authority")
		}
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("read frame: %v", err)
		}
		if f, ok := f.(*http2.SettingsFrame); ok && !f.IsAck() {
			_ = fr.WriteSettingsAck()
		}
		if f, ok := f.(*http2.RSTStreamFrame); ok && f.StreamID == 1 {
			if f.ErrCode != http2.ErrCodeProtocol {
				t.Fatalf("stream without :authority reset %v, want PROTOCOL_ERROR", f.ErrCode)
			}
			break
		}
		if f, ok := f.(*http2.HeadersFrame); ok && f.StreamID == 1 {
			t.Fatal("the stream without :authority got a response")
		}
	}
	c.Close()
	if v := h.mirrorCount(mirrorSent) + h.mirrorCount(mirrorFailed); v != 2 || len(got) != 0 {
		t.Fatalf("%v copies sent and %d more received, want the 2 of the HTTP/1 requests only", v, len(got))
	}
}

// A copy has no hash key, as Envoy's shadow requests have none (they go
// through its async client, whose route has no hash_policy): a maglev
// mirror cluster picks its endpoint as for a request without a key, at
// random, whatever the route's hash_policy finds in the request, which
// still picks the primary's endpoint. Of 64 copies with one key, both
// of two mirror endpoints get some (all on one: a chance of 2^-63).
func TestMirrorCopyHasNoHashKey(t *testing.T) {
	primary, paddrs := selfBackends(t, 2)
	mirror, maddrs := selfBackends(t, 2)
	cfg := maglevConfig(paddrs, config.HashPolicy{Header: "x-user"})
	cfg.Routes[0].Mirror = []config.Mirror{{Cluster: "shadow"}}
	cfg.Clusters["shadow"] = config.Cluster{Endpoints: eps(maddrs...), LBPolicy: config.LBMaglev}
	h := startProxy(t, cfg)
	want := owner(paddrs, lb.Hash("u1"))
	const n = 64
	for range n {
		if got := via(t, h, "/", "x-user", "u1"); got != want {
			t.Fatalf("primary %s answered, want the key's owner %s", got, want)
		}
	}
	eventually(t, 10*time.Second, "every copy to be sent", func() bool {
		return counterValue(h.p.m.mirrored.WithLabelValues("outbound", "all", "shadow", "sent")) == n
	})
	if a, b := mirror[0].hits.Load(), mirror[1].hits.Load(); a == 0 || b == 0 || a+b != n {
		t.Fatalf("mirror endpoints got %d and %d copies of %d with one key, want both some", a, b, n)
	}
	if a, b := primary[0].hits.Load(), primary[1].hits.Load(); a+b != n || a != 0 && b != 0 {
		t.Fatalf("primary endpoints got %d and %d requests with one key, want all on one", a, b)
	}
}

// mirrorsRunning is the number of copies in flight.
func (h *harness) mirrorsRunning() int {
	h.p.mirrors.mu.Lock()
	defer h.p.mirrors.mu.Unlock()
	return h.p.mirrors.running
}

// exportedMirrorCounts returns the outrigger_proxy_mirrored_requests_total
// series of route "all" the registry exports, by result, read without
// creating any.
func exportedMirrorCounts(t *testing.T, h *harness) map[string]float64 {
	t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "outrigger_proxy_mirrored_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var route, result string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "route":
					route = l.GetValue()
				case "result":
					result = l.GetValue()
				}
			}
			if route == "all" {
				out[result] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}

// A copy in flight when a reload comes is counted on its mirror's series
// when the reload kept the mirror; when the reload removed it, on no
// series, as the old configuration's requests are: the series the
// reload deleted does not come back with it, and the series of the
// mirror a later reload adds back starts at 0, which the copy leaves
// alone.
func TestMirrorCopyInFlightAcrossAReload(t *testing.T) {
	for _, tc := range []struct {
		name    string
		reloads []bool // each reload's config: with the mirror or without
		want    map[string]float64
	}{
		{"kept", []bool{true}, map[string]float64{"sent": 1, "failed": 0, "dropped_body": 0, "dropped_overflow": 0}},
		{"removed", []bool{false}, map[string]float64{}},
		{"removed then added back", []bool{false, true}, map[string]float64{"sent": 0, "failed": 0, "dropped_body": 0, "dropped_overflow": 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {})
			release := make(chan struct{})
			shadow, got := mirrorUpstream(t, func(r *http.Request) {
				select {
				case <-release:
				case <-r.Context().Done():
				}
			})
			h := startProxy(t, mirrorConfig(addr(p), shadow, nil))
			if resp, _ := do(t, h.h1, "GET", h.url("/"), nil); resp.StatusCode != 200 {
				t.Fatalf("%d, want 200", resp.StatusCode)
			}
			receive(t, got)
			for _, with := range tc.reloads {
				cfg := simpleConfig(config.Cluster{Endpoints: eps(addr(p))})
				if with {
					cfg = mirrorConfig(addr(p), shadow, nil)
				}
				if err := h.p.Apply(cfg); err != nil {
					t.Fatal(err)
				}
			}
			close(release)
			eventually(t, 10*time.Second, "the copy to end", func() bool { return h.mirrorsRunning() == 0 })
			exported := exportedMirrorCounts(t, h)
			if len(exported) != len(tc.want) {
				t.Fatalf("exported %v, want %v", exported, tc.want)
			}
			for k, v := range tc.want {
				if exported[k] != v {
					t.Fatalf("exported %v, want %v", exported, tc.want)
				}
			}
		})
	}
}
