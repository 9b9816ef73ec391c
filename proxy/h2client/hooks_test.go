package h2client

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/internal/reqctx"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// recordingHooks records what a round trip reported; fail1xx, when
// set, is returned from Got1xxResponse.
type recordingHooks struct {
	conns   atomic.Int32
	mu      sync.Mutex
	infos   []int
	headers []textproto.MIMEHeader
	fail1xx error
}

func (h *recordingHooks) GotConn() { h.conns.Add(1) }

func (h *recordingHooks) Got1xxResponse(code int, header textproto.MIMEHeader) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.infos = append(h.infos, code)
	h.headers = append(h.headers, header)
	return h.fail1xx
}

// grpcMessage frames m as one gRPC length-prefixed message.
func grpcMessage(t testing.TB, m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, 5, 5+len(b))
	binary.BigEndian.PutUint32(out[1:], uint32(len(b)))
	return append(out, b...)
}

// The deadline given to RoundTripHooks bounds the reading of a gRPC
// response body as a context's deadline would: a read waiting for a
// message fails with an error that wraps context.DeadlineExceeded, not
// before the deadline, and the stream is reset, which the grpc-go
// server sees as the call cancelled.
func TestRoundTripHooksDeadlineEndsGRPCBodyRead(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	gs := grpc.NewServer(grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		err := h(srv, ss)
		ended <- err
		return err
	}))
	testpb.RegisterTestServiceServer(gs, &grpcService{})
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)

	tr := newTransport(t)
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.Close() })
	req, _ := http.NewRequest("POST", "http://"+ln.Addr().String()+"/grpc.testing.TestService/FullDuplexCall", pr)
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	go pw.Write(grpcMessage(t, &testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: 10}}}))

	var hooks recordingHooks
	// The dial, the handshake and the server's reply come before the
	// deadline: two seconds, which a loaded machine under the race
	// detector does not take for them (500 ms failed the round trip or
	// the reply's read now and then).
	deadline := time.Now().Add(2 * time.Second)
	resp, err := tr.RoundTripHooks(context.Background(), req, &hooks, deadline)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if hooks.conns.Load() != 1 {
		t.Fatalf("GotConn called %d times", hooks.conns.Load())
	}
	// The reply to the one message sent, then nothing: the server waits
	// for the next message, which never comes.
	reply := make([]byte, 5+proto.Size(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: make([]byte, 10)}}))
	if _, err := io.ReadFull(resp.Body, reply); err != nil {
		t.Fatalf("reading the reply: %v", err)
	}
	read := make(chan outcome, 1)
	go func() {
		n, err := resp.Body.Read(make([]byte, 64))
		read <- outcome{body: strings.Repeat("x", n), err: err}
	}()
	if o := recv(t, read); o.body != "" || !errors.Is(o.err, context.DeadlineExceeded) {
		t.Fatalf("read after the reply: %q, %v; want an error wrapping context.DeadlineExceeded", o.body, o.err)
	}
	if time.Now().Before(deadline) {
		t.Fatal("the read failed before the deadline")
	}
	if err := recv(t, ended); status.Code(err) != codes.Canceled {
		t.Fatalf("the server's call ended with %v, want Canceled", err)
	}
}

// A deadline that passes while the response head is awaited fails the
// round trip with an error wrapping context.DeadlineExceeded and resets
// the stream, which the server sees as its request's context ending.
func TestRoundTripHooksDeadlineEndsWaitForHeaders(t *testing.T) {
	gone := make(chan struct{})
	s := startH2(t, func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
		close(gone)
	})
	tr := newTransport(t)
	req, _ := http.NewRequest("GET", s.url("/hang"), nil)
	done := make(chan error, 1)
	go func() {
		_, err := tr.RoundTripHooks(ctxTimeout(t, 10*time.Second), req, nil, time.Now().Add(100*time.Millisecond))
		done <- err
	}()
	if err := recv(t, done); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want one wrapping context.DeadlineExceeded", err)
	}
	recv(t, gone)
}

// A deadline already past opens no stream and calls no hook: the
// server sees no request.
func TestRoundTripHooksPastDeadlineSendsNothing(t *testing.T) {
	var served atomic.Int32
	s := startH2(t, func(w http.ResponseWriter, r *http.Request) { served.Add(1) })
	tr := newTransport(t)
	var hooks recordingHooks
	req, _ := http.NewRequest("POST", s.url("/"), strings.NewReader("body"))
	_, err := tr.RoundTripHooks(context.Background(), req, &hooks, time.Now().Add(-time.Second))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want one wrapping context.DeadlineExceeded", err)
	}
	if hooks.conns.Load() != 0 {
		t.Fatal("GotConn called for a request never sent")
	}
	// The connection, which the request did not dial, serves the next.
	if _, body := get(t, tr, s.url("/")); body != "" || served.Load() != 1 {
		t.Fatalf("body %q, %d requests served, want 1", body, served.Load())
	}
}

// The deadline bounds the dial of a connection as it bounds the round
// trip.
func TestRoundTripHooksDeadlineEndsDial(t *testing.T) {
	tr := newTransport(t, func(t *Transport) {
		t.Dial = func(ctx context.Context, _, _ string) (net.Conn, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}
	})
	req, _ := http.NewRequest("GET", "http://127.0.0.1:1/", nil)
	_, err := tr.RoundTripHooks(context.Background(), req, nil, time.Now().Add(50*time.Millisecond))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want one wrapping context.DeadlineExceeded", err)
	}
}

// GotConn is called once per round trip, also when the server refused
// the first stream and the request went again on another connection.
func TestRoundTripHooksGotConnOncePerRoundTrip(t *testing.T) {
	s := startRaw(t, nil, func(rc *rawConn, n int) {
		if n > 0 {
			rc.answerTheRest("second")
			return
		}
		h, err := rc.readRequestHeaders()
		if err != nil {
			return
		}
		rc.fr.WriteRSTStream(h.StreamID, http2.ErrCodeRefusedStream)
		rc.fr.WriteGoAway(h.StreamID, http2.ErrCodeNo, nil)
		io.Copy(io.Discard, rc)
	})
	tr := newTransport(t)
	var hooks recordingHooks
	req, _ := http.NewRequest("GET", "http://"+s.addr+"/", nil)
	resp, err := tr.RoundTripHooks(ctxTimeout(t, 10*time.Second), req, &hooks, time.Now().Add(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "second" || err != nil {
		t.Fatalf("body %q, %v", b, err)
	}
	if n := s.accepted.Load(); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
	if n := hooks.conns.Load(); n != 1 {
		t.Fatalf("GotConn called %d times, want 1", n)
	}
}

// Informational responses reach the hooks with their fields, before the
// final response; an error from Got1xxResponse ends the round trip with
// it and resets the stream.
func TestRoundTripHooksReports1xx(t *testing.T) {
	gone := make(chan struct{}, 1)
	s := startH2(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.(http.Flusher).Flush()
		if r.URL.Path == "/refused" {
			<-r.Context().Done()
			gone <- struct{}{}
			return
		}
		w.Header().Del("Link")
		w.Write([]byte("final"))
	})
	tr := newTransport(t)

	var hooks recordingHooks
	req, _ := http.NewRequest("GET", s.url("/"), nil)
	resp, err := tr.RoundTripHooks(ctxTimeout(t, 10*time.Second), req, &hooks, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "final" || len(hooks.infos) != 1 || hooks.infos[0] != http.StatusEarlyHints ||
		hooks.headers[0].Get("Link") != "</style.css>; rel=preload" {
		t.Fatalf("body %q, 1xx %v %v", b, hooks.infos, hooks.headers)
	}

	errNo1xx := errors.New("no 1xx wanted")
	refusing := &recordingHooks{fail1xx: errNo1xx}
	req, _ = http.NewRequest("GET", s.url("/refused"), nil)
	if _, err := tr.RoundTripHooks(ctxTimeout(t, 10*time.Second), req, refusing, time.Time{}); !errors.Is(err, errNo1xx) {
		t.Fatalf("err %v, want Got1xxResponse's", err)
	}
	recv(t, gone)
}

// The end of a request context of the proxy's servers (reqctx, which the
// transport watches with WatchEnd) resets the stream: the round trip
// fails with its cause and the server sees its request end.
func TestRoundTripHooksRequestContextEndResetsStream(t *testing.T) {
	arrived, gone := make(chan struct{}), make(chan struct{})
	s := startH2(t, func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-r.Context().Done()
		close(gone)
	})
	tr := newTransport(t)
	var rc reqctx.Conn
	rc.Init(context.Background())
	var ctx reqctx.Context
	ctx.Init(&rc)
	done := make(chan error, 1)
	req, _ := http.NewRequest("GET", s.url("/hang"), nil)
	go func() {
		_, err := tr.RoundTripHooks(&ctx, req, nil, time.Now().Add(10*time.Second))
		done <- err
	}()
	recv(t, arrived)
	ctx.Cancel()
	if err := recv(t, done); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want one wrapping context.Canceled", err)
	}
	recv(t, gone)
}

// endingCtx is a context that ends as its end is watched: WatchEnd runs
// the function at once, as reqctx's does on a context that has ended.
type endingCtx struct {
	context.Context
	ended atomic.Bool
}

func (c *endingCtx) WatchEnd(f func()) uint64 {
	c.ended.Store(true)
	f()
	return 0
}

func (c *endingCtx) StopWatch(uint64) bool { return false }

func (c *endingCtx) Err() error {
	if c.ended.Load() {
		return context.Canceled
	}
	return nil
}

// A context that ends as the stream is about to open fails the round
// trip with its cause before anything is sent, and gives back the
// connection's stream slot.
func TestRoundTripHooksContextEndedBeforeStreamOpens(t *testing.T) {
	var served atomic.Int32
	s := startH2(t, func(w http.ResponseWriter, r *http.Request) { served.Add(1) })
	tr := newTransport(t)
	if _, body := get(t, tr, s.url("/")); body != "" {
		t.Fatalf("body %q", body)
	}
	req, _ := http.NewRequest("GET", s.url("/"), nil)
	if _, err := tr.RoundTripHooks(&endingCtx{Context: context.Background()}, req, nil, time.Time{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want one wrapping context.Canceled", err)
	}
	if _, body := get(t, tr, s.url("/")); body != "" || served.Load() != 2 {
		t.Fatalf("body %q, %d requests served, want 2", body, served.Load())
	}
	tr.mu.Lock()
	var conns []*conn
	for _, hp := range tr.hosts {
		conns = append(conns, hp.conns...)
	}
	tr.mu.Unlock()
	if len(conns) != 1 {
		t.Fatalf("%d connections, want 1", len(conns))
	}
	c := conns[0]
	c.mu.Lock()
	reserved := c.reserved
	c.mu.Unlock()
	if reserved != 0 {
		t.Fatalf("%d stream slots held, want 0", reserved)
	}
}
