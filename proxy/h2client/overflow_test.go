package h2client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/outrigger-mesh/outrigger/proxy/internal/roundtrip"
)

// errCapped is cappedDialer's refusal.
var errCapped = errors.New("connection cap reached")

// cappedDialer dials TCP with at most max (plus extra) connections open
// at once, as a cluster's max_connections does: beyond it a dial is
// refused with errCapped, unless its context is marked
// roundtrip.WithFirstConn.
type cappedDialer struct {
	max int32
	// extra raises the cap while a test runs, as a connection to another
	// of the cluster's endpoints closing, or a reload, leaves room.
	extra   atomic.Int32
	open    atomic.Int32
	dials   atomic.Int32 // connections made
	refused atomic.Int32
	// holdClose, when set, holds the Close of the connections' sockets
	// until it opens, before they give their places back.
	holdClose atomic.Pointer[gate]
	// holdRefusal, when set, holds a refused dial until it opens,
	// after sending on refusing.
	holdRefusal atomic.Pointer[gate]
	refusing    chan struct{}
	// holdDial, when set, holds each dial the cap lets through until it
	// opens, after sending the dialling request's dialTag on dialling.
	holdDial atomic.Pointer[gate]
	dialling chan string
}

// dialTag is the context key of a request's name, which cappedDialer
// sends on dialling.
type dialTag struct{}

func (d *cappedDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if d.open.Add(1) > d.max+d.extra.Load() && !roundtrip.FirstConn(ctx) {
		d.open.Add(-1)
		d.refused.Add(1)
		if g := d.holdRefusal.Load(); g != nil {
			d.refusing <- struct{}{}
			<-g.ch
		}
		return nil, errCapped
	}
	if g := d.holdDial.Load(); g != nil {
		tag, _ := ctx.Value(dialTag{}).(string)
		d.dialling <- tag
		select {
		case <-g.ch:
		case <-ctx.Done():
			d.open.Add(-1)
			return nil, ctx.Err()
		}
	}
	var nd net.Dialer
	c, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		d.open.Add(-1)
		return nil, err
	}
	d.dials.Add(1)
	return &cappedConn{Conn: c, d: d}, nil
}

// wantDials fails the test unless d made n connections.
func (d *cappedDialer) wantDials(t testing.TB, n int32) {
	t.Helper()
	if got := d.dials.Load(); got != n {
		t.Fatalf("%d connections made, want %d", got, n)
	}
}

// wantBody receives what on ch and fails the test unless it is body,
// whole and without error.
func wantBody(t testing.TB, ch <-chan outcome, body, what string) {
	t.Helper()
	if o := recv(t, ch); o.err != nil || o.body != body {
		t.Fatalf("%s: %v, want %q", what, o, body)
	}
}

// transport returns a Transport dialling through d, with DialOverflow
// recognising its refusal, and then mod applied.
func (d *cappedDialer) transport(t testing.TB, mod ...func(*Transport)) *Transport {
	return newTransport(t, append([]func(*Transport){func(tr *Transport) {
		tr.Dial = d.dial
		tr.DialOverflow = func(err error) bool { return errors.Is(err, errCapped) }
	}}, mod...)...)
}

// cappedConn gives its place under the cap back once, on Close.
type cappedConn struct {
	net.Conn
	d    *cappedDialer
	once sync.Once
}

func (c *cappedConn) Close() error {
	if g := c.d.holdClose.Load(); g != nil {
		<-g.ch
	}
	c.once.Do(func() { c.d.open.Add(-1) })
	return c.Conn.Close()
}

// holdServer starts a server that allows one stream per connection and
// holds requests to /hold until release opens; entered receives a value
// as each /hold request reaches it.
func holdServer(t *testing.T) (s *h2Server, entered chan struct{}, release *gate) {
	entered = make(chan struct{}, 8)
	release = newGate()
	s = startH2(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			entered <- struct{}{}
			<-release.ch
		}
		_, _ = io.WriteString(w, "ok "+r.URL.Path)
	}, func(srv *http2.Server) { srv.MaxConcurrentStreams = 1 })
	t.Cleanup(release.open)
	return s, entered, release
}

// At a cap DialOverflow recognises, a request that finds the host's one
// connection's streams all taken waits for one to end instead of
// failing, and is sent on that connection: several of them, one after
// the other, every one of them through the waiters of a refused dial or
// through a refused dial of its own.
func TestDialOverflowWaitsForAStream(t *testing.T) {
	s, entered, release := holdServer(t)
	d := &cappedDialer{max: 1}
	tr := d.transport(t)
	held := goFetch(t, tr, s.url("/hold"))
	recv(t, entered)

	const waiting = 3
	out := make(chan outcome, waiting)
	for range waiting {
		req, _ := http.NewRequestWithContext(ctxTimeout(t, 10*time.Second), "GET", s.url("/next"), nil)
		go func() { out <- fetch(tr, req) }()
	}
	eventually(t, "a refused dial", func() bool { return d.refused.Load() >= 1 })
	select {
	case o := <-out:
		t.Fatalf("a request ended while the only stream was held: %v", o)
	default:
	}
	release.open()
	wantBody(t, held, "ok /hold", "held request")
	for range waiting {
		if o := recv(t, out); o.err != nil || o.body != "ok /next" {
			t.Fatalf("waiting request: %v, want it sent once a stream was free", o)
		}
	}
	d.wantDials(t, 1)
}

// A wait at the cap ends with the request's context, with an error that
// says it never got a stream (ErrConnectionWait) and why.
func TestDialOverflowWaitEndsWithErrConnectionWait(t *testing.T) {
	s, entered, _ := holdServer(t)
	d := &cappedDialer{max: 1}
	tr := d.transport(t)
	goFetch(t, tr, s.url("/hold"))
	recv(t, entered)

	// A second, not less: a context that ended before the round trip
	// looked for a connection fails it without ErrConnectionWait, which
	// a loaded machine could bring about with a shorter one.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", s.url("/next"), nil)
	o := fetch(tr, req)
	if !errors.Is(o.err, ErrConnectionWait) || !errors.Is(o.err, context.DeadlineExceeded) {
		t.Fatalf("%v, want ErrConnectionWait and the deadline", o)
	}
	if d.refused.Load() == 0 {
		t.Fatal("no dial was refused: the request did not wait at the cap")
	}
	// The waiter is gone: a stream's end wakes no one.
	tr.mu.Lock()
	hp := tr.hosts[s.addr]
	tr.mu.Unlock()
	if n := hp.freed.waiting.Load(); n != 0 {
		t.Fatalf("%d waiters armed after the wait ended, want 0", n)
	}
}

// A connection that closes while requests wait at the cap leaves its
// place: a waiter dials again (as the host's first connection, when it
// was the last) and is sent on the new connection.
func TestDialOverflowDialsWhenAConnectionCloses(t *testing.T) {
	s, entered, _ := holdServer(t)
	d := &cappedDialer{max: 1}
	tr := d.transport(t)
	held := goFetch(t, tr, s.url("/hold"))
	recv(t, entered)

	out := goFetch(t, tr, s.url("/next"))
	eventually(t, "a refused dial", func() bool { return d.refused.Load() >= 1 })

	tr.mu.Lock()
	first := tr.hosts[s.addr].conns[0]
	tr.mu.Unlock()
	first.close(errors.New("closed by the test"))
	if o := recv(t, held); o.err == nil {
		t.Fatalf("held request: %v, want the closed connection's error", o)
	}
	wantBody(t, out, "ok /next", "waiting request: want it sent on a new connection")
	d.wantDials(t, 2)
}

// A server that raises SETTINGS_MAX_CONCURRENT_STREAMS makes room on its
// connection: a request waiting at the cap is sent on it while the
// first stream is still open.
func TestDialOverflowWaiterTakesStreamsTheServerAdds(t *testing.T) {
	sawSecond := make(chan struct{})
	raise := make(chan struct{})
	s := startRaw(t, []http2.Setting{{ID: http2.SettingMaxConcurrentStreams, Val: 1}}, func(rc *rawConn, n int) {
		first, err := rc.readRequestHeaders()
		if err != nil {
			return
		}
		select {
		case <-raise:
		case <-time.After(10 * time.Second):
			return
		}
		if err := rc.fr.WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 2}); err != nil {
			return
		}
		second, err := rc.readRequestHeaders()
		if err != nil {
			return
		}
		close(sawSecond)
		rc.respond(second.StreamID, "second")
		rc.respond(first.StreamID, "first")
		rc.answerTheRest("more")
	})
	d := &cappedDialer{max: 1}
	tr := d.transport(t)
	firstOut := goFetch(t, tr, "http://"+s.addr+"/first")
	waitFirstStream(t, tr, s.addr)
	secondOut := goFetch(t, tr, "http://"+s.addr+"/second")
	eventually(t, "a refused dial", func() bool { return d.refused.Load() >= 1 })
	close(raise)
	recv(t, sawSecond)
	wantBody(t, secondOut, "second", "second")
	wantBody(t, firstOut, "first", "first")
	d.wantDials(t, 1)
}

// Without DialOverflow, a refused dial fails the request with the dial's
// error, as before: the cap is someone else's to report.
func TestDialRefusalWithoutDialOverflowFails(t *testing.T) {
	s, entered, _ := holdServer(t)
	d := &cappedDialer{max: 1}
	tr := newTransport(t, func(tr *Transport) { tr.Dial = d.dial })
	goFetch(t, tr, s.url("/hold"))
	recv(t, entered)
	req, _ := http.NewRequestWithContext(ctxTimeout(t, 10*time.Second), "GET", s.url("/next"), nil)
	if o := fetch(tr, req); !errors.Is(o.err, errCapped) {
		t.Fatalf("%v, want the dial's refusal", o)
	}
}

// A request the server refused unprocessed (REFUSED_STREAM) is sent again
// on another connection; at the cap, with no other to be had, it is sent
// again on the same one rather than waiting for one that cannot come.
func TestDialOverflowRetryOfARefusedStreamTakesTheSameConnection(t *testing.T) {
	s := startRaw(t, []http2.Setting{{ID: http2.SettingMaxConcurrentStreams, Val: 2}}, func(rc *rawConn, n int) {
		held, err := rc.readRequestHeaders()
		if err != nil {
			return
		}
		refused, err := rc.readRequestHeaders()
		if err != nil {
			return
		}
		if err := rc.fr.WriteRSTStream(refused.StreamID, http2.ErrCodeRefusedStream); err != nil {
			return
		}
		again, err := rc.readRequestHeaders()
		if err != nil {
			return
		}
		rc.respond(again.StreamID, "again")
		rc.respond(held.StreamID, "held")
		rc.answerTheRest("more")
	})
	d := &cappedDialer{max: 1}
	tr := d.transport(t)
	heldOut := goFetch(t, tr, "http://"+s.addr+"/held")
	waitFirstStream(t, tr, s.addr)
	req, _ := http.NewRequestWithContext(ctxTimeout(t, 5*time.Second), "GET", "http://"+s.addr+"/refused", nil)
	if o := fetch(tr, req); o.err != nil || o.body != "again" {
		t.Fatalf("refused request: %v, want it sent again on the one connection", o)
	}
	wantBody(t, heldOut, "held", "held")
	if n, r := d.dials.Load(), d.refused.Load(); n != 1 || r == 0 {
		t.Fatalf("%d connections made and %d dials refused, want 1 and the retry's refused", n, r)
	}
}

// Many requests at once over a cap of two connections to a server that
// allows two streams each, some with contexts that end while they wait:
// each one is answered or fails with ErrConnectionWait, the cap holds,
// and no waiter is left armed.
func TestDialOverflowUnderContention(t *testing.T) {
	s := startH2(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Millisecond)
		_, _ = io.WriteString(w, "ok")
	}, func(srv *http2.Server) { srv.MaxConcurrentStreams = 2 })
	d := &cappedDialer{max: 2}
	var maxOpen atomic.Int32
	tr := newTransport(t, func(tr *Transport) {
		tr.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.dial(ctx, network, addr)
			for n := d.open.Load(); err == nil && n > maxOpen.Load(); n = d.open.Load() {
				maxOpen.CompareAndSwap(maxOpen.Load(), n)
			}
			return c, err
		}
		tr.DialOverflow = func(err error) bool { return errors.Is(err, errCapped) }
	})
	const workers, each = 16, 12
	var ok, waited atomic.Int32
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				timeout, short := 10*time.Second, (w+i)%4 == 0
				if short {
					timeout = time.Duration(1+i%3) * time.Millisecond
				}
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				req, _ := http.NewRequestWithContext(ctx, "GET", s.url("/"), nil)
				o := fetch(tr, req)
				cancel()
				switch {
				case o.err == nil && o.body == "ok":
					ok.Add(1)
				case errors.Is(o.err, errCapped):
					t.Errorf("request: %v, want no refusal by the cap", o)
				case short:
					// Out of time waiting, dialling or answering.
					waited.Add(1)
				default:
					t.Errorf("request: %v", o)
				}
			}
		})
	}
	wg.Wait()
	if ok.Load()+waited.Load() != workers*each || ok.Load() < workers*each*3/4 {
		t.Fatalf("%d of %d requests answered and %d ran out of time, want every one with a long timeout answered", ok.Load(), workers*each, waited.Load())
	}
	// The first connection is let through the cap and may pass it by one.
	if m := maxOpen.Load(); m > 3 {
		t.Fatalf("%d connections open at once over a cap of 2", m)
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, hp := range tr.hosts {
		if n := hp.freed.waiting.Load(); n != 0 {
			t.Fatalf("%d waiters armed after every request ended", n)
		}
	}
}

// A connection that takes no new streams (here after the server's
// GOAWAY) while one of its streams goes on does not hold the host's
// place under the cap: the next request dials as the host's first
// connection instead of waiting for that stream to end.
func TestDialOverflowLetsAHostWhoseConnectionIsGoingAwayDial(t *testing.T) {
	release := newGate()
	s := startRaw(t, nil, func(rc *rawConn, n int) {
		if n > 0 {
			rc.answerTheRest("new")
			return
		}
		h, err := rc.readRequestHeaders()
		if err != nil {
			return
		}
		if err := rc.fr.WriteGoAway(h.StreamID, http2.ErrCodeNo, nil); err != nil {
			return
		}
		select {
		case <-release.ch:
		case <-time.After(10 * time.Second):
			return
		}
		rc.respond(h.StreamID, "old")
	})
	t.Cleanup(release.open)
	d := &cappedDialer{max: 1}
	tr := d.transport(t)
	old := goFetch(t, tr, "http://"+s.addr+"/old")
	eventually(t, "the GOAWAY read", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		hp := tr.hosts[s.addr]
		if hp == nil || len(hp.conns) != 1 {
			return false
		}
		c := hp.conns[0]
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.goAway
	})
	req, _ := http.NewRequestWithContext(ctxTimeout(t, 5*time.Second), "GET", "http://"+s.addr+"/new", nil)
	if o := fetch(tr, req); o.err != nil || o.body != "new" {
		t.Fatalf("%v, want it sent on a new connection while the old one's stream goes on", o)
	}
	release.open()
	wantBody(t, old, "old", "old")
	d.wantDials(t, 2)
}

// armedOn reports how many requests are armed to wait at the cap for
// room on addr's connections. Read under the Transport's lock, under
// which a request arms and looks for room in one go: a count that
// includes a request means it has looked, and waits unless it dials.
func armedOn(tr *Transport, addr string) int32 {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	hp := tr.hosts[addr]
	if hp == nil {
		return 0
	}
	return hp.freed.waiting.Load()
}

// fetchInLine GETs url on tr (within 5 s) from a goroutine of its own,
// and returns once the request is the armed'th in line at the cap on
// addr's host (what names it for a failure): its outcome comes on the
// channel returned.
func fetchInLine(t *testing.T, tr *Transport, url, addr string, armed int32, what string) <-chan outcome {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctxTimeout(t, 5*time.Second), "GET", url, nil)
	out := make(chan outcome, 1)
	go func() { out <- fetch(tr, req) }()
	eventually(t, what, func() bool { return armedOn(tr, addr) == armed })
	return out
}

// A connection dialled while requests wait at the cap (here the cap
// left room for another request's dial, as another endpoint's
// connection closing would) has its free streams taken by them at
// once, as Envoy's pools attach pending requests to a connection as it
// becomes ready; they waited for a stream on the host's other
// connections to end.
func TestDialOverflowWaiterTakesAStreamOfAConnectionDialledMeanwhile(t *testing.T) {
	release := newGate()
	s := startRaw(t, nil, func(rc *rawConn, n int) {
		if n == 0 {
			// The first connection allows one stream: its first.
			if err := rc.fr.WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 1}); err != nil {
				return
			}
			h, err := rc.readRequestHeaders()
			if err != nil {
				return
			}
			select {
			case <-release.ch:
			case <-time.After(10 * time.Second):
				return
			}
			rc.respond(h.StreamID, "held")
			rc.answerTheRest("more")
			return
		}
		// The second allows many: /waiting is answered at once, the
		// other held.
		var held uint32
		for range 2 {
			h, err := rc.readRequestHeaders()
			if err != nil {
				return
			}
			if h.PseudoValue("path") == "/waiting" {
				rc.respond(h.StreamID, "waiting")
			} else {
				held = h.StreamID
			}
		}
		select {
		case <-release.ch:
		case <-time.After(10 * time.Second):
			return
		}
		rc.respond(held, "dialled")
		rc.answerTheRest("more")
	})
	t.Cleanup(release.open)
	d := &cappedDialer{max: 1}
	tr := d.transport(t)
	heldOut := goFetch(t, tr, "http://"+s.addr+"/held")
	waitFirstStream(t, tr, s.addr)
	eventually(t, "the first connection's limit of one stream", func() bool {
		tr.mu.Lock()
		c := tr.hosts[s.addr].conns[0]
		tr.mu.Unlock()
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.maxStreams == 1
	})

	waiting := fetchInLine(t, tr, "http://"+s.addr+"/waiting", s.addr, 1, "the request waiting at the cap")

	d.extra.Store(1)
	dialledOut := goFetch(t, tr, "http://"+s.addr+"/dialled")
	wantBody(t, waiting, "waiting", "waiting request: want it sent on the connection dialled while it waited")
	release.open()
	wantBody(t, heldOut, "held", "held")
	wantBody(t, dialledOut, "dialled", "dialled")
	d.wantDials(t, 2)
}

// A request waiting at the cap when the host's one connection receives
// GOAWAY, a stream of its going on, dials the host's next connection as
// its first, as a request that comes after the GOAWAY does, instead of
// waiting for that stream to end.
func TestDialOverflowWaiterDialsWhenTheConnectionGoesAway(t *testing.T) {
	goAway, release := newGate(), newGate()
	s := startRaw(t, []http2.Setting{{ID: http2.SettingMaxConcurrentStreams, Val: 1}}, func(rc *rawConn, n int) {
		if n > 0 {
			rc.answerTheRest("new")
			return
		}
		h, err := rc.readRequestHeaders()
		if err != nil {
			return
		}
		for _, g := range []*gate{goAway, release} {
			select {
			case <-g.ch:
			case <-time.After(10 * time.Second):
				return
			}
			if g == goAway {
				if err := rc.fr.WriteGoAway(h.StreamID, http2.ErrCodeNo, nil); err != nil {
					return
				}
			}
		}
		rc.respond(h.StreamID, "old")
	})
	t.Cleanup(goAway.open)
	t.Cleanup(release.open)
	d := &cappedDialer{max: 1}
	tr := d.transport(t)
	old := goFetch(t, tr, "http://"+s.addr+"/old")
	waitFirstStream(t, tr, s.addr)

	waiting := fetchInLine(t, tr, "http://"+s.addr+"/new", s.addr, 1, "the request waiting at the cap")

	goAway.open()
	wantBody(t, waiting, "new", "waiting request: want it sent on a new connection while the old one's stream goes on")
	release.open()
	wantBody(t, old, "old", "old")
	d.wantDials(t, 2)
}

// A connection that closes while requests wait at the cap leaves its
// place under the cap only once its socket has closed, which its writer
// does after it has left the host's list: a waiter dials again then,
// not when the connection left the list, where the cap, still counting
// it, refused the dial and the waiter went back to sleep on the host's
// other connection until its deadline.
func TestDialOverflowWaiterDialsOnceTheClosedSocketLeftItsPlace(t *testing.T) {
	s, entered, release := holdServer(t)
	d := &cappedDialer{max: 2}
	tr := d.transport(t)
	closing := newGate()
	t.Cleanup(closing.open)
	held1 := goFetch(t, tr, s.url("/hold"))
	recv(t, entered)
	held2 := goFetch(t, tr, s.url("/hold"))
	recv(t, entered)

	waiting := fetchInLine(t, tr, s.url("/next"), s.addr, 1, "the request waiting at the cap")

	d.holdClose.Store(closing)
	tr.mu.Lock()
	first := tr.hosts[s.addr].conns[0]
	tr.mu.Unlock()
	first.close(errors.New("closed by the test"))
	if o := recv(t, held1); o.err == nil {
		t.Fatalf("held request: %v, want the closed connection's error", o)
	}
	// The close woke the waiter (the channel it was armed on is gone);
	// once it is armed again, with no dial in flight, it has looked,
	// and dialled if it was to, with the socket still open.
	eventually(t, "the waiter looking again", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		hp := tr.hosts[s.addr]
		hp.freed.mu.Lock()
		defer hp.freed.mu.Unlock()
		return len(hp.conns) == 1 && hp.dialing == nil && len(hp.freed.line) == 1
	})
	closing.open()
	wantBody(t, waiting, "ok /next", "waiting request: want it sent on a new connection once the closed one's socket closed")
	release.open()
	wantBody(t, held2, "ok /hold", "held request")
	d.wantDials(t, 3)
}

// A connection that closes while a request's dial is being refused at
// the cap, after the refusal, leaves a place the request dials in: it
// does not wait as if the cap were still full.
func TestDialOverflowConnectionClosedDuringARefusedDialIsDialledIn(t *testing.T) {
	s, entered, release := holdServer(t)
	d := &cappedDialer{max: 2, refusing: make(chan struct{}, 1)}
	tr := d.transport(t)
	refusal := newGate()
	t.Cleanup(refusal.open)
	held1 := goFetch(t, tr, s.url("/hold"))
	recv(t, entered)
	held2 := goFetch(t, tr, s.url("/hold"))
	recv(t, entered)

	d.holdRefusal.Store(refusal)
	req, _ := http.NewRequestWithContext(ctxTimeout(t, 5*time.Second), "GET", s.url("/next"), nil)
	waiting := make(chan outcome, 1)
	go func() { waiting <- fetch(tr, req) }()
	recv(t, d.refusing)
	d.holdRefusal.Store(nil)

	tr.mu.Lock()
	first := tr.hosts[s.addr].conns[0]
	tr.mu.Unlock()
	first.close(errors.New("closed by the test"))
	if o := recv(t, held1); o.err == nil {
		t.Fatalf("held request: %v, want the closed connection's error", o)
	}
	eventually(t, "the closed connection's socket closed", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		return tr.hosts[s.addr].closes == 1
	})
	refusal.open()
	wantBody(t, waiting, "ok /next", "waiting request: want it sent on a new connection in the closed one's place")
	release.open()
	wantBody(t, held2, "ok /hold", "held request")
	d.wantDials(t, 3)
}

// A request that waited at the cap and then waits for another request's
// dial (woken, with it, by a connection's close) fails with
// ErrConnectionWait and its context's cause when its context ends: it
// is still waiting for room on the host's connections, and the host
// never saw it.
func TestDialOverflowWaitForAnotherRequestsDialEndsWithErrConnectionWait(t *testing.T) {
	s, entered, _ := holdServer(t)
	d := &cappedDialer{max: 1, dialling: make(chan string, 1)}
	tr := d.transport(t)
	dial := newGate()
	t.Cleanup(dial.open)
	held := goFetch(t, tr, s.url("/hold"))
	recv(t, entered)

	// Two requests wait at the cap, each cancelled with a cause of its
	// own.
	causes := map[string]error{"one": errors.New("one gave up"), "two": errors.New("two gave up")}
	cancels := map[string]context.CancelCauseFunc{}
	outs := map[string]chan outcome{}
	for name := range causes {
		ctx, cancel := context.WithCancelCause(context.WithValue(context.Background(), dialTag{}, name))
		t.Cleanup(func() { cancel(nil) })
		out := make(chan outcome, 1)
		cancels[name], outs[name] = cancel, out
		req, _ := http.NewRequestWithContext(ctx, "GET", s.url("/next"), nil)
		go func() { out <- fetch(tr, req) }()
	}
	eventually(t, "two requests waiting at the cap", func() bool { return armedOn(tr, s.addr) == 2 })

	// The host's only connection closes: one of them dials the host's
	// first connection, held, and the other waits for that dial.
	d.holdDial.Store(dial)
	tr.mu.Lock()
	first := tr.hosts[s.addr].conns[0]
	tr.mu.Unlock()
	first.close(errors.New("closed by the test"))
	if o := recv(t, held); o.err == nil {
		t.Fatalf("held request: %v, want the closed connection's error", o)
	}
	dialler := recv(t, d.dialling)
	other := "one"
	if dialler == "one" {
		other = "two"
	}
	// The other in line on the host's new pool (the dialler is out of
	// line while it dials): it has looked and found the dial in flight.
	eventually(t, "the other request waiting for the dial", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		hp := tr.hosts[s.addr]
		return hp != nil && hp.dialing != nil && hp.freed.waiting.Load() == 1
	})
	cancels[other](causes[other])
	if o := recv(t, outs[other]); !errors.Is(o.err, ErrConnectionWait) || !errors.Is(o.err, causes[other]) {
		t.Fatalf("%s: %v, want ErrConnectionWait and its cause", other, o)
	}
	d.holdDial.Store(nil)
	dial.open()
	if o := recv(t, outs[dialler]); o.err != nil || o.body != "ok /next" {
		t.Fatalf("%s: %v, want it sent on the connection it dialled", dialler, o)
	}
}

// A request that waits for another request's dial to its host and runs
// out of time first never reached the host: its error says so
// (ErrConnectionWait), so that the proxy does not count it against the
// host; the dial's own end is the dialling request's.
func TestWaitForAnotherRequestsDialEndsWithErrConnectionWait(t *testing.T) {
	s := startH2(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	dialing, letDial := make(chan struct{}, 1), newGate()
	t.Cleanup(letDial.open)
	tr := newTransport(t, func(tr *Transport) {
		tr.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			dialing <- struct{}{}
			<-letDial.ch
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}
	})
	first := goFetch(t, tr, s.url("/first"))
	recv(t, dialing)
	// A second, not less, as in TestDialOverflowWaitEndsWithErrConnectionWait.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", s.url("/second"), nil)
	if o := fetch(tr, req); !errors.Is(o.err, ErrConnectionWait) || !errors.Is(o.err, context.DeadlineExceeded) {
		t.Fatalf("%v, want ErrConnectionWait and the deadline", o)
	}
	letDial.open()
	wantBody(t, first, "ok", "the dialling request")
}

// A request waiting at the cap for a stream on a host that Retain lets
// go dials the host's next connection as its first, as one that comes
// after the Retain does, instead of sleeping until the held stream ends
// or its deadline: the host's connection takes no new stream.
func TestDialOverflowWaiterDialsWhenItsHostIsLetGo(t *testing.T) {
	s, entered, release := holdServer(t)
	d := &cappedDialer{max: 1}
	tr := d.transport(t)
	held := goFetch(t, tr, s.url("/hold"))
	recv(t, entered)

	waiting := fetchInLine(t, tr, s.url("/next"), s.addr, 1, "the request waiting at the cap")

	tr.Retain(func(string) bool { return false })
	wantBody(t, waiting, "ok /next", "waiting request: want it sent on a new connection while the held stream goes on")
	release.open()
	wantBody(t, held, "ok /hold", "held request")
	d.wantDials(t, 2)
}

// A request waiting at the cap for a stream on a connection that passes
// MaxConnAge while its stream goes on dials the host's next connection
// as its first, as one that comes after does: the aged connection takes
// no new stream, and no stream's end may come before its deadline.
func TestDialOverflowWaiterDialsWhenTheConnectionAges(t *testing.T) {
	s, entered, release := holdServer(t)
	d := &cappedDialer{max: 1}
	tr := d.transport(t, func(tr *Transport) { tr.MaxConnAge = 300 * time.Millisecond })
	held := goFetch(t, tr, s.url("/hold"))
	recv(t, entered)

	wantBody(t, goFetch(t, tr, s.url("/next")), "ok /next", "waiting request: want it sent on a new connection once the held one aged")
	release.open()
	wantBody(t, held, "ok /hold", "held request")
	d.wantDials(t, 2)
}

// Requests waiting at the cap get the stream slots that come free in the
// order they began to wait, as Envoy's pending requests do: a slot wakes
// the first in line alone, which a later request cannot pass.
func TestDialOverflowWaitersAreServedInTheirOrder(t *testing.T) {
	release := newGate()
	t.Cleanup(release.open)
	entered := make(chan struct{}, 1)
	var mu sync.Mutex
	var order []string
	s := startH2(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			entered <- struct{}{}
			<-release.ch
			return
		}
		mu.Lock()
		order = append(order, r.URL.Path)
		mu.Unlock()
	}, func(srv *http2.Server) { srv.MaxConcurrentStreams = 1 })
	d := &cappedDialer{max: 1}
	tr := d.transport(t)
	held := goFetch(t, tr, s.url("/hold"))
	recv(t, entered)

	var outs []<-chan outcome
	want := []string{"/w1", "/w2", "/w3", "/w4"}
	for i, p := range want {
		outs = append(outs, goFetch(t, tr, s.url(p)))
		eventually(t, p+" in line", func() bool { return armedOn(tr, s.addr) == int32(i+1) })
	}
	release.open()
	recv(t, held)
	for i, ch := range outs {
		wantBody(t, ch, "", want[i])
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(order) != fmt.Sprint(want) {
		t.Fatalf("served in the order %v, want %v", order, want)
	}
	d.wantDials(t, 1)
}

// A request waiting at the cap behind another that takes the last
// stream MaxStreamsPerConn allows on the host's one connection (woken,
// as first in line, by the end of the stream before) dials the host's
// next connection as its first, as after a GOAWAY, instead of sleeping
// until a stream on that connection, which takes no new one, ends or
// its deadline passes.
func TestDialOverflowWaiterDialsWhenTheLastStreamOfTheConnectionIsTaken(t *testing.T) {
	first, release := newGate(), newGate()
	entered := make(chan struct{}, 1)
	s := startH2(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/first":
			<-first.ch
		case "/hold":
			entered <- struct{}{}
			<-release.ch
		}
		_, _ = io.WriteString(w, "ok "+r.URL.Path)
	}, func(srv *http2.Server) { srv.MaxConcurrentStreams = 1 })
	t.Cleanup(first.open)
	t.Cleanup(release.open)
	d := &cappedDialer{max: 1}
	tr := d.transport(t, func(tr *Transport) { tr.MaxStreamsPerConn = 2 })
	firstOut := goFetch(t, tr, s.url("/first"))
	waitFirstStream(t, tr, s.addr)

	held := goFetch(t, tr, s.url("/hold"))
	eventually(t, "the first request in line", func() bool { return armedOn(tr, s.addr) == 1 })
	waiting := fetchInLine(t, tr, s.url("/next"), s.addr, 2, "the second request in line")

	// The first stream's end wakes the first in line, which takes the
	// connection's last stream.
	first.open()
	wantBody(t, firstOut, "ok /first", "first request")
	recv(t, entered)
	wantBody(t, waiting, "ok /next", "second in line: want it sent on a new connection while the last stream of the old one goes on")
	release.open()
	wantBody(t, held, "ok /hold", "held request")
	d.wantDials(t, 2)
}
