package h2server

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
)

// shutdownAsync starts ts.Shutdown and returns its result's channel;
// the test's cleanup waits for it.
func shutdownAsync(t *testing.T, ts *testServer) <-chan error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	shut := make(chan error, 1)
	go func() { shut <- ts.Shutdown(ctx) }()
	t.Cleanup(cancel)
	return shut
}

// held is a handler whose requests to /held wait for release; others
// are answered at once.
func held(started chan<- struct{}, release <-chan struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/held" {
			started <- struct{}{}
			<-release
		}
		io.WriteString(w, "ok")
	})
}

// heldStream starts a server serving held (modified by mod), opens
// stream 1 to /held on a raw connection, and returns once its handler
// waits. started takes the start of each later /held stream (up to two
// unread); closing release lets them all answer.
func heldStream(t *testing.T, mod ...func(*Server)) (ts *testServer, rc *rawConn, started, release chan struct{}) {
	t.Helper()
	started, release = make(chan struct{}, 2), make(chan struct{})
	ts = start(t, held(started, release), mod...)
	rc = dialRaw(t, ts.addr)
	rc.get(1, "/held")
	<-started
	return ts, rc, started, release
}

// Shutdown's first GOAWAY is a notice naming 2^31-1, followed by a PING
// (RFC 9113 §6.8), not a GOAWAY naming the last stream the client
// opened.
func TestShutdownSendsNoticeThenPing(t *testing.T) {
	ts, rc, _, release := heldStream(t, func(s *Server) { s.noticeWait = time.Minute })
	defer close(release)
	shutdownAsync(t, ts)
	if data := rc.shutdownNotice(); data != noticePing {
		t.Fatalf("PING data %q", data)
	}
}

// A stream the client opens after the notice, before it acknowledges the
// PING, is served; the final GOAWAY, sent on the acknowledgement, names
// it; a stream opened after that is refused; the connection closes once
// its streams are done, and Shutdown returns.
func TestShutdownServesStreamsOpenedBeforeThePingAck(t *testing.T) {
	ts, rc, started, release := heldStream(t, func(s *Server) { s.noticeWait = time.Minute })
	shut := shutdownAsync(t, ts)
	data := rc.shutdownNotice()

	rc.get(3, "/")
	if status, body, _, rst := rc.response(3); status != "200" || body != "ok" || rst != nil {
		t.Fatalf("stream 3 opened after the notice: %s %q reset %v", status, body, rst)
	}
	rc.get(5, "/held")
	<-started
	rc.fr.WritePing(true, data)
	if e := rc.goAway(); e.code != http2.ErrCodeNo || e.last != 5 {
		t.Fatalf("final GOAWAY %v last %d, want NO_ERROR last 5", e.code, e.last)
	}
	rc.get(7, "/")
	if e := rc.rst(7); e.code != http2.ErrCodeRefusedStream {
		t.Fatalf("stream 7 opened after the final GOAWAY: %v", e.code)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned with streams in flight: %v", err)
	default:
	}
	close(release)
	// Streams 1 and 5 end in either order.
	ended := map[uint32]bool{}
	for len(ended) < 2 {
		e, err := rc.next()
		if err != nil {
			t.Fatalf("streams ended %v: %v", ended, err)
		}
		switch {
		case e.typ == http2.FrameRSTStream:
			t.Fatalf("stream %d reset %v", e.id, e.code)
		case e.typ == http2.FrameHeaders && e.get(":status") != "200":
			t.Fatalf("stream %d: %s", e.id, e.get(":status"))
		case e.end:
			ended[e.id] = true
		}
	}
	rc.expectClosed()
	if err := within(t, "Shutdown", shut); err != nil {
		t.Fatal(err)
	}
}

// An acknowledgement of a PING other than the notice's does not end the
// notice.
func TestShutdownIgnoresOtherPingAcks(t *testing.T) {
	ts, rc, _, release := heldStream(t, func(s *Server) { s.noticeWait = time.Minute })
	defer close(release)
	shutdownAsync(t, ts)
	data := rc.shutdownNotice()
	rc.fr.WritePing(true, [8]byte{1})
	rc.get(3, "/")
	if status, _, _, rst := rc.response(3); status != "200" || rst != nil {
		t.Fatalf("stream 3 after a stray PING ack: %s reset %v", status, rst)
	}
	rc.fr.WritePing(true, data)
	if e := rc.goAway(); e.last != 3 {
		t.Fatalf("final GOAWAY last %d, want 3", e.last)
	}
}

// A client that never acknowledges the notice's PING gets the final
// GOAWAY after noticeWait (the default, a second), naming the last
// stream it opened.
func TestShutdownFinalGoAwayWithoutPingAck(t *testing.T) {
	ts, rc, _, release := heldStream(t)
	shut := shutdownAsync(t, ts)
	began := time.Now()
	rc.shutdownNotice()
	rc.get(3, "/")
	if status, _, _, rst := rc.response(3); status != "200" || rst != nil {
		t.Fatalf("stream 3 opened after the notice: %s reset %v", status, rst)
	}
	e := rc.goAway()
	took := time.Since(began)
	if e.code != http2.ErrCodeNo || e.last != 3 {
		t.Fatalf("final GOAWAY %v last %d, want NO_ERROR last 3", e.code, e.last)
	}
	if took > noticeWait+4*time.Second {
		t.Fatalf("final GOAWAY after %v, want about %v", took, noticeWait)
	}
	close(release)
	rc.response(1)
	rc.expectClosed()
	if err := within(t, "Shutdown", shut); err != nil {
		t.Fatal(err)
	}
}

// A connection without streams closes once the final GOAWAY is out.
func TestShutdownOfIdleConnection(t *testing.T) {
	ts := start(t, okHandler(), func(s *Server) { s.noticeWait = time.Minute })
	rc := dialRaw(t, ts.addr)
	rc.get(1, "/")
	rc.response(1)
	shut := shutdownAsync(t, ts)
	if e := rc.finalGoAway(); e.code != http2.ErrCodeNo || e.last != 1 {
		t.Fatalf("final GOAWAY %v last %d, want NO_ERROR last 1", e.code, e.last)
	}
	rc.expectClosed()
	if err := within(t, "Shutdown", shut); err != nil {
		t.Fatal(err)
	}
}

// A connection error after the notice alone names the last stream the
// client opened, which was taken, not the notice's 2^31-1.
func TestConnectionErrorAfterNoticeNamesLastStream(t *testing.T) {
	ts, rc, _, release := heldStream(t, func(s *Server) { s.noticeWait = time.Minute })
	defer close(release)
	shutdownAsync(t, ts)
	rc.shutdownNotice()
	rc.get(3, "/")
	rc.response(3)
	rc.get(4, "/") // even: a connection error
	if e := rc.goAway(); e.code != http2.ErrCodeProtocol || e.last != 3 {
		t.Fatalf("GOAWAY %v last %d, want PROTOCOL_ERROR last 3", e.code, e.last)
	}
}

// The idle timeout closes in one step: GOAWAY naming the last stream,
// no notice.
func TestIdleTimeoutGoAwayIsSingle(t *testing.T) {
	// Stream 1 must arrive within the idle timeout of the accept: a
	// second, which a loaded machine does not take (with 50 ms the idle
	// GOAWAY could come first, naming no stream).
	ts := start(t, okHandler(), func(s *Server) { s.IdleTimeout = time.Second })
	rc := dialRaw(t, ts.addr)
	rc.get(1, "/")
	rc.response(1)
	for {
		e, err := rc.next()
		if err != nil {
			t.Fatal(err)
		}
		if e.typ == http2.FramePing {
			t.Fatal("PING before the idle GOAWAY")
		}
		if e.typ == http2.FrameGoAway {
			if e.code != http2.ErrCodeNo || e.last != 1 {
				t.Fatalf("GOAWAY %v last %d, want NO_ERROR last 1", e.code, e.last)
			}
			break
		}
	}
	rc.expectClosed()
}

// The x/net/http2 client goes on with a request in flight through both
// GOAWAYs, and its next request goes on a new connection.
func TestShutdownWithXNetClient(t *testing.T) {
	started, release := make(chan struct{}, 1), make(chan struct{})
	ts := start(t, held(started, release), func(s *Server) { s.noticeWait = time.Minute })
	c, _ := h2Client(t)
	got := make(chan error, 1)
	go func() {
		resp, err := c.Get(ts.url("/held"))
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		got <- err
	}()
	<-started
	sc := ts.conn(t)
	shut := shutdownAsync(t, ts)
	// x/net acknowledges the PING: the final GOAWAY follows the notice.
	waitFor(t, "the final GOAWAY", func() bool {
		return sc.locked(func() bool { return sc.draining })
	})
	close(release)
	if err := within(t, "the response", got); err != nil {
		t.Fatal(err)
	}
	if err := within(t, "Shutdown", shut); err != nil {
		t.Fatal(err)
	}
}

// grpc-go, which answers the notice's PING, keeps a streaming call open
// through both GOAWAYs, and Shutdown returns once the call ends.
func TestShutdownWithGRPCClient(t *testing.T) {
	gs := grpc.NewServer()
	testpb.RegisterTestServiceServer(gs, echoService{})
	ts := start(t, gs, func(s *Server) { s.noticeWait = time.Minute })
	t.Cleanup(gs.Stop)
	cc, err := grpc.NewClient(ts.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := testpb.NewTestServiceClient(cc).FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	echo := func(what string) {
		t.Helper()
		if err := st.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte(what)}}); err != nil {
			t.Fatalf("send %s: %v", what, err)
		}
		resp, err := st.Recv()
		if err != nil || string(resp.GetPayload().GetBody()) != what {
			t.Fatalf("recv %s: %v %v", what, resp, err)
		}
	}
	echo("before")
	sc := ts.conn(t)
	shut := shutdownAsync(t, ts)
	waitFor(t, "the final GOAWAY", func() bool {
		return sc.locked(func() bool { return sc.draining })
	})
	echo("after")
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != io.EOF {
		t.Fatalf("end of call: %v", err)
	}
	if err := within(t, "Shutdown", shut); err != nil {
		t.Fatal(err)
	}
}
