package h2client

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/keepalive"
)

// A request above a GOAWAY's last stream id whose body was streaming
// (no GetBody) is not sent again by the Transport, but its error says
// the server did not process it, so that the caller may; a processed one
// says nothing of the kind.
func TestUnsentAgainUnprocessedRequestWrapsErrUnprocessed(t *testing.T) {
	s := startRaw(t, nil, func(rc *rawConn, n int) {
		h, err := rc.readRequestHeaders()
		if err != nil {
			return
		}
		if h.PseudoValue("path") == "/processed" {
			rc.fr.WriteRSTStream(h.StreamID, http2.ErrCodeInternal)
		} else {
			rc.fr.WriteGoAway(0, http2.ErrCodeNo, nil)
		}
		rc.readUntil(func(http2.Frame) bool { return false })
	})
	tr := newTransport(t)
	for _, c := range []struct {
		path        string
		unprocessed bool
	}{{"/unprocessed", true}, {"/processed", false}} {
		pr, pw := io.Pipe()
		t.Cleanup(func() { pw.Close() })
		req, _ := http.NewRequestWithContext(ctxTimeout(t, 10*time.Second), "POST", "http://"+s.addr+c.path, pr)
		_, err := tr.RoundTrip(req)
		if err == nil {
			t.Fatalf("%s: no error", c.path)
		}
		if errors.Is(err, ErrUnprocessed) != c.unprocessed {
			t.Errorf("%s: %v: errors.Is(err, ErrUnprocessed) = %v, want %v", c.path, err, !c.unprocessed, c.unprocessed)
		}
	}
}

// A call that waits long for its answer, over a connection that stays
// silent, outlives the keepalive check's PINGs: they are spaced by
// MinPingInterval, which a grpc-go server's keepalive enforcement
// (here a minimum of 300 ms, 5 minutes by default) accepts. PINGs every
// ReadIdleTimeout made it end the connection, and the call with it,
// with GOAWAY ENHANCE_YOUR_CALM "too_many_pings" at the third that came
// too soon.
func TestQuietGRPCCallOutlivesKeepalivePings(t *testing.T) {
	addr, svc := keepaliveServer(t, 300*time.Millisecond)
	tr := newTransport(t, func(tr *Transport) {
		tr.ReadIdleTimeout = 20 * time.Millisecond
		tr.MinPingInterval = 400 * time.Millisecond
	})
	cancel, errc := hangingCall(t, tr, addr)
	defer cancel()
	var c *conn
	eventually(t, "the connection", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		if hp := tr.hosts[addr]; hp != nil && len(hp.conns) > 0 {
			c = hp.conns[0]
		}
		return c != nil
	})
	// Until the fifth PING is answered: the server answers a PING
	// before it sends the GOAWAY that PING earned, so a GOAWAY for the
	// fourth came before that answer.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		pings, answered, goAway, closed, cerr := c.pingData[0], !c.pingSent, c.goAway, c.closed, c.err
		c.mu.Unlock()
		if goAway || closed {
			t.Fatalf("GOAWAY or close after %d PINGs, the call in flight: %v", pings, cerr)
		}
		if pings >= 5 && answered {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d PINGs sent, want 5 answered", pings)
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case err := <-errc:
		t.Fatalf("call ended before it was cancelled: %v", err)
	default:
	}
	cancel()
	<-errc
	recv(t, svc.cancelled)
}

// keepaliveServer starts a grpc-go server whose keepalive enforcement
// counts PINGs closer than minTime (ending the connection with GOAWAY
// "too_many_pings" at the third); it returns its address and service.
func keepaliveServer(t *testing.T, minTime time.Duration) (string, *grpcService) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: minTime}))
	svc := &grpcService{cancelled: make(chan struct{}, 8)}
	testpb.RegisterTestServiceServer(gs, svc)
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	return ln.Addr().String(), svc
}

// hangingCall starts a unary call to addr (an empty SimpleRequest) that
// x-hang holds unanswered until cancel; errc gets how it ended.
func hangingCall(t *testing.T, tr *Transport, addr string) (cancel context.CancelFunc, errc <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctxTimeout(t, 20*time.Second))
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+addr+"/grpc.testing.TestService/UnaryCall",
		strings.NewReader("\x00\x00\x00\x00\x00"))
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	req.Header.Set("X-Hang", "1")
	ch := make(chan error, 1)
	go func() {
		resp, err := tr.RoundTrip(req)
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		ch <- err
	}()
	return cancel, ch
}
