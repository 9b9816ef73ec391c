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

	"github.com/outrigger-mesh/outrigger/proxy/internal/roundtrip"
)

// errCapped is the error of a dial a cap beyond the Transport refused.
var errCapped = errors.New("connections capped")

// cappedDial returns a Dial that refuses (errCapped) while *refuse is set,
// unless it is a host's first connection (roundtrip.FirstConn), as the
// proxy's cluster-wide cap does, or always with strict; and a
// DialOverflow that recognises its refusals.
func cappedDial(refuse *atomic.Bool, strict bool) (func(context.Context, string, string) (net.Conn, error), func(error) bool) {
	var d net.Dialer
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if refuse.Load() && (strict || !roundtrip.FirstConn(ctx)) {
			return nil, errCapped
		}
		return d.DialContext(ctx, network, addr)
	}
	return dial, func(err error) bool { return errors.Is(err, errCapped) }
}

// heldServer starts a server whose handler answers "ok" once it
// receives on release. The test's cleanup closes release before the
// server's Close, which waits for the handlers, should the test fail
// first.
func heldServer(t *testing.T) (*server, chan struct{}) {
	release := make(chan struct{})
	srv := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		io.WriteString(w, "ok")
	})
	t.Cleanup(func() { close(release) })
	return srv, release
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

// awaitCalls waits, 5 s at most each, for the calls' results, and fails
// unless each is want (nil: success; else an error that wraps it).
func awaitCalls(t *testing.T, want error, calls ...<-chan error) {
	t.Helper()
	for _, ch := range calls {
		select {
		case err := <-ch:
			if want == nil && err != nil || want != nil && !errors.Is(err, want) {
				t.Fatalf("a call: %v, want %v", err, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a call still waits")
		}
	}
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

// behindOneConnection starts three calls on a Transport whose Dial
// cappedDial(strict) refuses once the first call has its connection:
// the first holds the host's one connection until release, the other two
// wait for it. The server's answers close their connections with closing.
// refuse is the Dial's switch, set.
func behindOneConnection(t *testing.T, strict, closing bool) (srv *server, tr *Transport, refuse *atomic.Bool, release chan struct{}, calls []<-chan error) {
	t.Helper()
	release = make(chan struct{})
	srv = startServer(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		if closing {
			w.Header().Set("Connection", "close")
		}
		io.WriteString(w, "ok")
	})
	refuse = new(atomic.Bool)
	dial, overflow := cappedDial(refuse, strict)
	tr = newTransport(t, func(tr *Transport) { tr.Dial, tr.DialOverflow = dial, overflow })
	addr := srv.Listener.Addr().String()
	calls = append(calls, roundTripAsync(tr, srv.URL))
	eventually(t, "the first connection", func() bool { return srv.opened.Load() == 1 })
	refuse.Store(true)
	calls = append(calls, roundTripAsync(tr, srv.URL), roundTripAsync(tr, srv.URL))
	eventually(t, "two waiters", func() bool { o, w := hostState(tr, addr); return o == 1 && w == 2 })
	return srv, tr, refuse, release, calls
}

// A request whose dial DialOverflow refuses waits for one of its host's
// connections while the host has one, and gets it when it comes back.
func TestDialOverflowWaitsForTheHostsConnection(t *testing.T) {
	srv, _, _, release, calls := behindOneConnection(t, false, false)
	for range 3 {
		release <- struct{}{}
	}
	for _, ch := range calls {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.opened.Load(); n != 1 {
		t.Fatalf("%d connections, want the one", n)
	}
}

// Requests waiting for a connection that closes instead of coming back
// dial in the place it left: as the host's first connection again,
// which the cap does not hold back, so none waits on for nothing.
func TestDialOverflowWaitersDialWhenTheLastConnectionCloses(t *testing.T) {
	srv, _, _, release, calls := behindOneConnection(t, false, true)
	for range 3 {
		release <- struct{}{}
	}
	awaitCalls(t, nil, calls...)
	if n := srv.opened.Load(); n != 3 {
		t.Fatalf("%d connections, want one per call", n)
	}
}

// A Dial that refuses even a host's first connection fails the request
// with its error, and the waiters behind it each in turn, none left
// waiting; the host is left as if never used.
func TestDialOverflowRefusingTheFirstConnectionFails(t *testing.T) {
	srv, tr, refuse, release, calls := behindOneConnection(t, true, true)
	addr := srv.Listener.Addr().String()
	release <- struct{}{}
	if err := <-calls[0]; err != nil {
		t.Fatal(err)
	}
	awaitCalls(t, errCapped, calls[1:]...)
	if o, w := hostState(tr, addr); o != -1 {
		t.Fatalf("host left with %d open, %d waiting", o, w)
	}
	refuse.Store(false)
	go func() { release <- struct{}{} }()
	if _, body := get(t, tr, srv.URL); body != "ok" {
		t.Fatalf("body %q", body)
	}
}

// A host's first connection is dialled as such (roundtrip.FirstConn),
// and the cap lets it through; a second, over the cap, is refused and
// the request waits for the first.
func TestDialOverflowFirstConnectionIsMade(t *testing.T) {
	srv, release := heldServer(t)
	refuse := new(atomic.Bool)
	refuse.Store(true)
	dial, overflow := cappedDial(refuse, false)
	tr := newTransport(t, func(tr *Transport) { tr.Dial, tr.DialOverflow = dial, overflow })
	first := roundTripAsync(tr, srv.URL)
	eventually(t, "the first connection", func() bool { return srv.opened.Load() == 1 })
	second := roundTripAsync(tr, srv.URL)
	eventually(t, "a waiter", func() bool { _, w := hostState(tr, srv.Listener.Addr().String()); return w == 1 })
	release <- struct{}{}
	release <- struct{}{}
	for _, ch := range []<-chan error{first, second} {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.opened.Load(); n != 1 {
		t.Fatalf("%d connections, want the first alone", n)
	}
}

// A request refused a dial takes an idle connection of its host even
// when it asked for a fresh one (a retry), as at MaxConnsPerHost.
func TestDialOverflowTakesAnIdleConnection(t *testing.T) {
	srv := startServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	var refuse atomic.Bool
	dial, overflow := cappedDial(&refuse, false)
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

// A request whose wait for its host's connection runs out fails with
// ErrConnectionWait and its context's cause, and leaves the queue.
func TestDialOverflowWaitEndsWithErrConnectionWait(t *testing.T) {
	srv, release := heldServer(t)
	refuse := new(atomic.Bool)
	refuse.Store(true)
	dial, overflow := cappedDial(refuse, false)
	tr := newTransport(t, func(tr *Transport) { tr.Dial, tr.DialOverflow = dial, overflow })
	addr := srv.Listener.Addr().String()
	first := roundTripAsync(tr, srv.URL)
	eventually(t, "the first connection", func() bool { return srv.opened.Load() == 1 })
	// A second, not less: a context that ended before the round trip
	// looked for a connection fails it without ErrConnectionWait, which
	// a loaded machine could bring about with a shorter one.
	req, _ := http.NewRequestWithContext(ctxTimeout(t, time.Second), "GET", srv.URL, nil)
	_, err := tr.RoundTrip(req)
	if !errors.Is(err, ErrConnectionWait) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want ErrConnectionWait and the deadline", err)
	}
	if o, w := hostState(tr, addr); o != 1 || w != 0 {
		t.Fatalf("host left with %d open, %d waiting; want the first connection alone", o, w)
	}
	release <- struct{}{}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
}

// gatedDial returns a Dial that counts its calls and, for the first,
// waits for gate and fails with errRefusedHere; later calls dial.
func gatedDial(calls *atomic.Int32, gate <-chan struct{}) func(context.Context, string, string) (net.Conn, error) {
	var d net.Dialer
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if calls.Add(1) == 1 {
			select {
			case <-gate:
				return nil, errRefusedHere
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return d.DialContext(ctx, network, addr)
	}
}

var errRefusedHere = errors.New("connection refused here")

// When the dial of a host's only connection fails, the requests waiting
// for a connection to the host fail with its error at once (as Envoy
// fails its pending requests), none dialling again in turn.
func TestFailedDialFailsTheHostsWaiters(t *testing.T) {
	srv := startServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	var calls atomic.Int32
	gate := make(chan struct{})
	tr := newTransport(t, func(tr *Transport) { tr.Dial, tr.MaxConnsPerHost = gatedDial(&calls, gate), 1 })
	addr := srv.Listener.Addr().String()
	first := roundTripAsync(tr, srv.URL)
	eventually(t, "the first dial", func() bool { return calls.Load() == 1 })
	second, third := roundTripAsync(tr, srv.URL), roundTripAsync(tr, srv.URL)
	eventually(t, "two waiters", func() bool { o, w := hostState(tr, addr); return o == 1 && w == 2 })
	close(gate)
	awaitCalls(t, errRefusedHere, first, second, third)
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d dials, want the one", n)
	}
	if o, _ := hostState(tr, addr); o != -1 {
		t.Fatalf("host left with %d open", o)
	}
	if _, body := get(t, tr, srv.URL); body != "ok" {
		t.Fatalf("body %q", body)
	}
}

// A dial ended by its own request's context fails no one else: the
// first waiter dials in its place.
func TestDialEndedByItsRequestPassesTheSlotOn(t *testing.T) {
	srv := startServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	var calls atomic.Int32
	tr := newTransport(t, func(tr *Transport) { tr.Dial, tr.MaxConnsPerHost = gatedDial(&calls, nil), 1 })
	addr := srv.Listener.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
	first := make(chan error, 1)
	go func() { _, err := tr.RoundTrip(req); first <- err }()
	eventually(t, "the first dial", func() bool { return calls.Load() == 1 })
	second := roundTripAsync(tr, srv.URL)
	eventually(t, "a waiter", func() bool { _, w := hostState(tr, addr); return w == 1 })
	cancel()
	if err := <-first; err == nil {
		t.Fatal("the cancelled call succeeded")
	}
	if err := <-second; err != nil {
		t.Fatalf("the waiter: %v, want its own dial's answer", err)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("%d dials, want 2", n)
	}
}

// With another connection of the host open, a failed dial fails no
// waiter: the open connection may still serve them.
func TestFailedDialBesideAnOpenConnectionKeepsTheWaiters(t *testing.T) {
	release := make(chan struct{})
	srv := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			<-release
		}
		io.WriteString(w, "ok")
	})
	var calls atomic.Int32
	calls.Store(-1) // the held call's dial is the 0th, made at once
	gate := make(chan struct{})
	var d net.Dialer
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if calls.Add(1) == 1 {
			<-gate
			return nil, errRefusedHere
		}
		return d.DialContext(ctx, network, addr)
	}
	tr := newTransport(t, func(tr *Transport) { tr.Dial, tr.MaxConnsPerHost = dial, 2 })
	addr := srv.Listener.Addr().String()
	held := roundTripAsync(tr, srv.URL+"/hold")
	eventually(t, "the held call", func() bool { return srv.opened.Load() == 1 })
	failing := roundTripAsync(tr, srv.URL)
	eventually(t, "the failing dial", func() bool { return calls.Load() == 1 })
	waiting := roundTripAsync(tr, srv.URL)
	eventually(t, "a waiter", func() bool { o, w := hostState(tr, addr); return o == 2 && w == 1 })
	close(gate)
	if err := <-failing; !errors.Is(err, errRefusedHere) {
		t.Fatalf("the failing dial's call: %v", err)
	}
	close(release)
	for _, ch := range []<-chan error{held, waiting} {
		if err := <-ch; err != nil {
			t.Fatalf("a call: %v", err)
		}
	}
}

// A connection still being dialled is no connection the waiters can be
// served on: when the host has no connection made, a failed dial fails
// its waiters though another dial is in flight, rather than hand its
// slot to one that dials into the same failure.
func TestFailedDialBesideAnotherDialFailsTheWaiters(t *testing.T) {
	srv := startServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	var calls atomic.Int32
	gates := [2]chan struct{}{make(chan struct{}), make(chan struct{})}
	var d net.Dialer
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if n := calls.Add(1); n <= 2 {
			<-gates[n-1]
			return nil, errRefusedHere
		}
		return d.DialContext(ctx, network, addr)
	}
	tr := newTransport(t, func(tr *Transport) { tr.Dial, tr.MaxConnsPerHost = dial, 2 })
	addr := srv.Listener.Addr().String()
	first := roundTripAsync(tr, srv.URL)
	eventually(t, "the first dial", func() bool { return calls.Load() == 1 })
	second := roundTripAsync(tr, srv.URL)
	eventually(t, "the second dial", func() bool { return calls.Load() == 2 })
	third, fourth := roundTripAsync(tr, srv.URL), roundTripAsync(tr, srv.URL)
	eventually(t, "two waiters", func() bool { o, w := hostState(tr, addr); return o == 2 && w == 2 })
	close(gates[0])
	awaitCalls(t, errRefusedHere, first, third, fourth)
	if n := calls.Load(); n != 2 {
		t.Fatalf("%d dials, want the two", n)
	}
	if o, w := hostState(tr, addr); o != 1 || w != 0 {
		t.Fatalf("host with %d open, %d waiting; want the dial in flight alone", o, w)
	}
	close(gates[1])
	if err := <-second; !errors.Is(err, errRefusedHere) {
		t.Fatalf("the second dial's call: %v", err)
	}
	if o, _ := hostState(tr, addr); o != -1 {
		t.Fatalf("host left with %d open", o)
	}
	if _, body := get(t, tr, srv.URL); body != "ok" {
		t.Fatalf("body %q", body)
	}
}

// A waiter whose context ends as a failed dial fails it holds no slot,
// whichever it sees first: it gives none back.
func TestWaiterEndingAsTheDialFailsGivesNoSlotBack(t *testing.T) {
	srv := startServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	var calls atomic.Int32
	gate := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var d net.Dialer
	dial := func(dctx context.Context, network, addr string) (net.Conn, error) {
		if calls.Add(1) == 1 {
			<-gate
			cancel() // the waiter's end, racing the failure's hand-over
			return nil, errRefusedHere
		}
		return d.DialContext(dctx, network, addr)
	}
	tr := newTransport(t, func(tr *Transport) { tr.Dial, tr.MaxConnsPerHost = dial, 1 })
	addr := srv.Listener.Addr().String()
	first := roundTripAsync(tr, srv.URL)
	eventually(t, "the first dial", func() bool { return calls.Load() == 1 })
	tr.mu.Lock()
	hp := tr.hosts[hostKey{"http", addr}]
	tr.mu.Unlock()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
	waiter := make(chan error, 1)
	go func() { _, err := tr.RoundTrip(req); waiter <- err }()
	eventually(t, "a waiter", func() bool { _, w := hostState(tr, addr); return w == 1 })
	close(gate)
	if err := <-first; !errors.Is(err, errRefusedHere) {
		t.Fatalf("the dialling call: %v", err)
	}
	if err := <-waiter; !errors.Is(err, errRefusedHere) && !errors.Is(err, ErrConnectionWait) {
		t.Fatalf("the waiter: %v", err)
	}
	tr.mu.Lock()
	open := hp.open
	tr.mu.Unlock()
	if open != 0 {
		t.Fatalf("the failed host's pool counts %d open, want 0", open)
	}
	if _, body := get(t, tr, srv.URL); body != "ok" {
		t.Fatalf("body %q", body)
	}
}

// RetryOverflowed has the requests waiting after a refused dial dial
// again: the cap may have been raised. Each gets a connection of its
// own without waiting for the held one.
func TestRetryOverflowedDialsForTheWaiters(t *testing.T) {
	srv, tr, refuse, release, calls := behindOneConnection(t, false, false)
	addr := srv.Listener.Addr().String()
	refuse.Store(false)
	tr.RetryOverflowed()
	eventually(t, "a connection per call", func() bool { return srv.opened.Load() == 3 })
	if o, w := hostState(tr, addr); o != 3 || w != 0 {
		t.Fatalf("host with %d open, %d waiting; want 3 and none", o, w)
	}
	for range 3 {
		release <- struct{}{}
	}
	awaitCalls(t, nil, calls...)
}

// A raise whose RetryOverflowed runs after the cap refused a request's
// dial but before the request has joined the host's queue is not lost
// on it: the request dials again rather than waiting for the held
// connection. (DialOverflow runs between the two: it raises the cap
// there, the first time it is asked.)
func TestRetryOverflowedBeforeTheRefusedRequestWaits(t *testing.T) {
	srv, release := heldServer(t)
	refuse := new(atomic.Bool)
	dial, overflow := cappedDial(refuse, false)
	var tr *Transport
	var raised atomic.Bool
	tr = newTransport(t, func(c *Transport) {
		c.Dial = dial
		c.DialOverflow = func(err error) bool {
			if !overflow(err) {
				return false
			}
			if raised.CompareAndSwap(false, true) {
				refuse.Store(false)
				tr.RetryOverflowed()
			}
			return true
		}
	})
	first := roundTripAsync(tr, srv.URL)
	eventually(t, "the first connection", func() bool { return srv.opened.Load() == 1 })
	refuse.Store(true)
	second := roundTripAsync(tr, srv.URL)
	eventually(t, "a second connection", func() bool { return srv.opened.Load() == 2 })
	release <- struct{}{}
	release <- struct{}{}
	awaitCalls(t, nil, first, second)
	if !raised.Load() {
		t.Fatal("the cap never refused the second dial")
	}
}
