package h2client

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/net/http2"
)

// heldConn holds every Write while a gate is armed, so that a test can
// keep the writer inside a system call.
type heldConn struct {
	net.Conn
	hold    atomic.Pointer[gate]
	entered chan struct{}
}

func (c *heldConn) Write(p []byte) (int, error) {
	if g := c.hold.Load(); g != nil {
		select {
		case c.entered <- struct{}{}:
		default:
		}
		<-g.ch
	}
	return c.Conn.Write(p)
}

// onlyConn returns the one connection the Transport holds to addr.
func onlyConn(t *testing.T, tr *Transport, addr string) *conn {
	t.Helper()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	hp := tr.hosts[addr]
	if hp == nil || len(hp.conns) != 1 {
		t.Fatalf("want one connection to %s", addr)
	}
	return hp.conns[0]
}

// A connection that fails while one request's HEADERS are being written
// and another's are still queued: the first may have reached the
// server, so it is not sent again; the second is sent again elsewhere,
// and its queued bytes must then never reach the first server.
func TestRequestsQueuedAtConnectionFailureReachTheServersOnce(t *testing.T) {
	var (
		mu   sync.Mutex
		seen = map[string]int{}
	)
	record := func(h *http2.MetaHeadersFrame) {
		mu.Lock()
		seen[h.PseudoValue("path")]++
		mu.Unlock()
	}
	poison := make(chan struct{})
	firstDone := make(chan struct{})
	s := startRaw(t, nil, func(rc *rawConn, n int) {
		if n > 0 {
			for {
				h, err := rc.readRequestHeaders()
				if err != nil {
					return
				}
				record(h)
				rc.respond(h.StreamID, "second")
			}
		}
		defer close(firstDone)
		h, err := rc.readRequestHeaders() // the warm-up request
		if err != nil {
			return
		}
		rc.respond(h.StreamID, "first")
		go func() {
			<-poison
			// A frame for a stream never opened: a connection error.
			rc.fr.WriteRSTStream(99, http2.ErrCodeCancel)
		}()
		for {
			f, err := rc.fr.ReadFrame()
			if err != nil {
				return
			}
			if h, ok := f.(*http2.MetaHeadersFrame); ok {
				record(h)
			}
		}
	})
	g := newGate()
	t.Cleanup(g.open)
	var first *heldConn
	tr := newTransport(t, func(tr *Transport) {
		tr.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			if err != nil || first != nil {
				return c, err
			}
			first = &heldConn{Conn: c, entered: make(chan struct{}, 1)}
			return first, nil
		}
	})
	if _, body := get(t, tr, "http://"+s.addr+"/warm"); body != "first" {
		t.Fatalf("warm-up body %q", body)
	}
	c := onlyConn(t, tr, s.addr)
	first.hold.Store(g)

	errs := make(chan error, 2)
	send := func(method, path string, body io.Reader) {
		req, _ := http.NewRequest(method, "http://"+s.addr+path, body)
		resp, err := tr.RoundTrip(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		errs <- err
	}
	go send("GET", "/a", nil)
	recv(t, first.entered) // /a's HEADERS are inside a Write
	go send("POST", "/b", strings.NewReader("not idempotent"))
	eventually(t, "/b queued", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.streams) == 2
	})
	close(poison)
	eventually(t, "the connection to fail", c.isClosed)
	g.open()
	recv(t, errs)
	recv(t, errs)
	recv(t, firstDone)

	mu.Lock()
	defer mu.Unlock()
	if seen["/a"] != 1 || seen["/b"] != 1 {
		t.Fatalf("requests seen by the servers: %v; want /a and /b once each", seen)
	}
}
