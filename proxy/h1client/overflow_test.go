package h1client

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// errCapped is the error of a dial a cap beyond the Transport refused.
var errCapped = errors.New("connections capped")

// cappedDial returns a Dial that refuses (errCapped) while *refuse is set,
// and a DialOverflow that recognises its refusals.
func cappedDial(refuse *atomic.Bool) (func(context.Context, string, string) (net.Conn, error), func(error) bool) {
	var d net.Dialer
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if refuse.Load() {
			return nil, errCapped
		}
		return d.DialContext(ctx, network, addr)
	}
	return dial, func(err error) bool { return errors.Is(err, errCapped) }
}

// roundTripAsync starts a GET of url on tr and returns a channel with its
// body, or its error.
func roundTripAsync(tr *Transport, url string) <-chan error {
	out := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest("GET", url, nil)
		resp, err := tr.RoundTrip(req)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		out <- err
	}()
	return out
}

// hostState is the host's open count and waiters, as the pool has them
// (-1, -1 when the host is not in the Transport).
func hostState(tr *Transport, addr string) (open, waiters int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	hp := tr.hosts[hostKey{"http", addr}]
	if hp == nil {
		return -1, -1
	}
	return hp.open, len(hp.waiters)
}

// A request whose dial DialOverflow refuses waits for one of its host's
// connections while the host has one, and gets it when it comes back.
func TestDialOverflowWaitsForTheHostsConnection(t *testing.T) {
	release := make(chan struct{})
	srv := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		io.WriteString(w, "ok")
	})
	var refuse atomic.Bool
	dial, overflow := cappedDial(&refuse)
	tr := newTransport(t, func(tr *Transport) { tr.Dial, tr.DialOverflow = dial, overflow })
	addr := srv.Listener.Addr().String()

	first := roundTripAsync(tr, srv.URL)
	eventually(t, "the first connection", func() bool { return srv.opened.Load() == 1 })
	refuse.Store(true)
	second := roundTripAsync(tr, srv.URL)
	third := roundTripAsync(tr, srv.URL)
	eventually(t, "two waiters", func() bool { o, w := hostState(tr, addr); return o == 1 && w == 2 })
	for range 3 {
		release <- struct{}{}
	}
	for _, ch := range []<-chan error{first, second, third} {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.opened.Load(); n != 1 {
		t.Fatalf("%d connections, want the one", n)
	}
}

// Requests waiting for a connection that closes instead of coming back
// each dial in turn, and fail with the dial's error when refused again
// (with no connection left to wait for), none waiting on for nothing;
// the host is then left as if never used.
func TestDialOverflowWaitersFailWhenTheLastConnectionCloses(t *testing.T) {
	release := make(chan struct{})
	srv := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Header().Set("Connection", "close")
		io.WriteString(w, "ok")
	})
	var refuse atomic.Bool
	dial, overflow := cappedDial(&refuse)
	tr := newTransport(t, func(tr *Transport) { tr.Dial, tr.DialOverflow = dial, overflow })
	addr := srv.Listener.Addr().String()

	first := roundTripAsync(tr, srv.URL)
	eventually(t, "the first connection", func() bool { return srv.opened.Load() == 1 })
	refuse.Store(true)
	second := roundTripAsync(tr, srv.URL)
	third := roundTripAsync(tr, srv.URL)
	eventually(t, "two waiters", func() bool { o, w := hostState(tr, addr); return o == 1 && w == 2 })
	release <- struct{}{}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for _, ch := range []<-chan error{second, third} {
		select {
		case err := <-ch:
			if !errors.Is(err, errCapped) {
				t.Fatalf("a waiter: %v, want the dial's error", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a waiter still waits, with no connection to wait for")
		}
	}
	if o, w := hostState(tr, addr); o != -1 {
		t.Fatalf("host left with %d open, %d waiting", o, w)
	}
	refuse.Store(false)
	go func() { release <- struct{}{} }()
	if _, body := get(t, tr, srv.URL); body != "ok" {
		t.Fatalf("body %q", body)
	}
}

// A request refused a dial with no connection of its host's open fails
// at once with the dial's error, the host left unused.
func TestDialOverflowWithoutConnectionFails(t *testing.T) {
	srv := startServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	refuse := new(atomic.Bool)
	refuse.Store(true)
	dial, overflow := cappedDial(refuse)
	tr := newTransport(t, func(tr *Transport) { tr.Dial, tr.DialOverflow = dial, overflow })
	req, _ := http.NewRequest("GET", srv.URL, nil)
	if _, err := tr.RoundTrip(req); !errors.Is(err, errCapped) {
		t.Fatalf("err %v, want the dial's error", err)
	}
	if o, _ := hostState(tr, srv.Listener.Addr().String()); o != -1 {
		t.Fatalf("host left with %d open", o)
	}
}

// A request refused a dial takes an idle connection of its host even
// when it asked for a fresh one (a retry), as at MaxConnsPerHost.
func TestDialOverflowTakesAnIdleConnection(t *testing.T) {
	srv := startServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	var refuse atomic.Bool
	dial, overflow := cappedDial(&refuse)
	tr := newTransport(t, func(tr *Transport) { tr.Dial, tr.DialOverflow = dial, overflow })
	if _, body := get(t, tr, srv.URL); body != "ok" {
		t.Fatalf("body %q", body)
	}
	refuse.Store(true)
	req, _ := http.NewRequest("GET", srv.URL, nil)
	c, _, _, err := tr.getConn(context.Background(), mustHost(t, tr, req), time.Time{}, false, true)
	if err != nil {
		t.Fatal(err)
	}
	c.release(true)
	if n := srv.opened.Load(); n != 1 {
		t.Fatalf("%d connections, want the idle one reused", n)
	}
}

func mustHost(t *testing.T, tr *Transport, req *http.Request) *hostPool {
	t.Helper()
	hp, err := tr.host(req.URL)
	if err != nil {
		t.Fatal(err)
	}
	return hp
}
