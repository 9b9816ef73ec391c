package h2client

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// zeros is an endless request body.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// A server that stops reading, so that the client's writes block once
// the socket buffers are full, but goes on sending frames (PRIORITY
// here), which keep the keepalive from sending a PING, is found out by
// the keepalive all the same: a write that has not returned between two
// of its checks closes the connection, which leaves the pool and fails
// its streams. Before, the connection stayed in the pool for ever and
// every request placed on it waited for its own deadline.
func TestServerThatStopsReadingIsClosed(t *testing.T) {
	s := startRawForRequest(t, []http2.Setting{{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1}}, func(rc *rawConn, h *http2.MetaHeadersFrame) {
		// All the window there is, then nothing more is read.
		if rc.fr.WriteWindowUpdate(0, 1<<31-1-65535) != nil {
			return
		}
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for range tick.C {
			if rc.fr.WritePriority(h.StreamID, http2.PriorityParam{Weight: 1}) != nil {
				return
			}
		}
	})
	tr := newTransport(t, func(tr *Transport) {
		tr.ReadIdleTimeout = 50 * time.Millisecond
		tr.PingTimeout = 5 * time.Second
	})
	req, _ := http.NewRequestWithContext(ctxTimeout(t, 10*time.Second), "POST", "http://"+s.addr+"/", zeros{})
	_, err := tr.RoundTrip(req)
	if !errors.Is(err, errWriteStalled) {
		t.Fatalf("err = %v, want the stalled write", err)
	}
	eventually(t, "the connection to leave the pool", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		return len(tr.hosts) == 0
	})
}

// Requests whose bodies wait for connection window that never comes,
// and which end meanwhile (here by their contexts), leave the list of
// senders waiting for that window: a server that grants the first 65535
// bytes and never more cannot make the connection hold every stream
// that ever waited on it.
func TestEndedStreamsLeaveTheConnectionWindowWaiters(t *testing.T) {
	const requests = 20
	s := startRaw(t, nil, func(rc *rawConn, n int) {
		// Reads everything, answers nothing, gives no window back.
		rc.readUntil(func(http2.Frame) bool { return false })
	})
	tr := newTransport(t)
	for i := range requests {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+s.addr+"/", strings.NewReader(strings.Repeat("x", 100<<10)))
		errc := make(chan error, 1)
		go func() {
			resp, err := tr.RoundTrip(req)
			if err == nil {
				resp.Body.Close()
			}
			errc <- err
		}()
		if i == 0 {
			eventually(t, "the connection", func() bool {
				tr.mu.Lock()
				defer tr.mu.Unlock()
				return tr.hosts[s.addr] != nil && len(tr.hosts[s.addr].conns) == 1
			})
		}
		c := onlyConn(t, tr, s.addr)
		eventually(t, "the request's body to wait for connection window", func() bool {
			c.mu.Lock()
			defer c.mu.Unlock()
			for _, w := range c.connWaiters {
				if !w.done {
					return true
				}
			}
			return false
		})
		cancel()
		if err := recv(t, errc); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want the cancellation", err)
		}
	}
	c := onlyConn(t, tr, s.addr)
	eventually(t, "no stream left waiting", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.connWaiters) == 0
	})
}

// stuckBody gives its first bytes, then blocks in Read until released;
// its Close does not end that Read.
type stuckBody struct {
	first   []byte
	release chan struct{}
}

func (b *stuckBody) Read(p []byte) (int, error) {
	if len(b.first) > 0 {
		n := copy(p, b.first)
		b.first = b.first[n:]
		return n, nil
	}
	<-b.release
	return 0, io.EOF
}

func (b *stuckBody) Close() error { return nil }

// A request refused after its body began, whose body can be had anew
// (GetBody) but whose old body is stuck in a Read that closing it does
// not end, fails when its context ends: the retry waits for the old
// body's sender only as long as the request may last.
func TestRetryWaitingForAStuckBodyHonoursTheContext(t *testing.T) {
	s := startRawForRequest(t, nil, func(rc *rawConn, h *http2.MetaHeadersFrame) {
		if _, err := rc.readUntil(is[*http2.DataFrame]); err != nil {
			return
		}
		rc.fr.WriteRSTStream(h.StreamID, http2.ErrCodeRefusedStream)
		io.Copy(io.Discard, rc)
	})
	tr := newTransport(t)
	body := &stuckBody{first: []byte(strings.Repeat("x", 100)), release: make(chan struct{})}
	released := sync.OnceFunc(func() { close(body.release) })
	t.Cleanup(released)
	req, _ := http.NewRequestWithContext(ctxTimeout(t, 300*time.Millisecond), "POST", "http://"+s.addr+"/", body)
	req.ContentLength = -1
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("again")), nil }
	errc := make(chan error, 1)
	go func() { errc <- fetch(tr, req).err }()
	select {
	case err := <-errc:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want the context's deadline", err)
		}
	case <-time.After(5 * time.Second):
		released()
		t.Fatalf("RoundTrip outlived its context by seconds; then: %v", <-errc)
	}
}
