package h1client

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestDeadlineWhileWaitingForHeaders(t *testing.T) {
	s := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // until the client's connection closes
	})
	tr := newTransport(t)
	// A second, not less: the dial and the request's write must come
	// before the deadline, which a loaded machine could miss, failing
	// the round trip in the dial instead.
	const timeout = time.Second
	start := time.Now()
	_, err := tr.RoundTripHooks(context.Background(), mustRequest(t, "GET", s.URL, nil), nil, start.Add(timeout))
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "reading response") {
		t.Fatalf("err = %v, want a deadline reading the response", err)
	}
	if d := time.Since(start); d < timeout || d > 5*time.Second {
		t.Fatalf("returned after %v", d)
	}
	eventually(t, "server to see the connection closed", func() bool { return s.closed.Load() == 1 })
}

func TestDeadlineMidBody(t *testing.T) {
	release := make(chan struct{})
	s := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("first part"))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	tr := newTransport(t)
	// A second, not less: the dial and the response's head must come
	// before the deadline, which a loaded machine could miss.
	resp, err := tr.RoundTripHooks(context.Background(), mustRequest(t, "GET", s.URL, nil), nil, time.Now().Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "reading body") {
		t.Fatalf("read past the deadline: %v, want a deadline reading the body", err)
	}
	eventually(t, "server to see the connection closed", func() bool { return s.closed.Load() == 1 })
}

func TestDeadlineDoesNotOutliveItsExchange(t *testing.T) {
	s := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		if d, err := time.ParseDuration(r.URL.Query().Get("delay")); err == nil {
			time.Sleep(d) // the server is slow; the test waits for it, not for a timer
		}
		w.Write([]byte("ok"))
	})
	tr := newTransport(t)
	// A second, not less: the first exchange, dial included, must end
	// before the deadline, which a loaded machine could miss.
	dl := time.Now().Add(time.Second)
	resp, err := tr.RoundTripHooks(context.Background(), mustRequest(t, "GET", s.URL, nil), nil, dl)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(resp.Body); err != nil || string(b) != "ok" {
		t.Fatalf("body %q, %v", b, err)
	}
	resp.Body.Close()
	// The idle connection, reused past the first deadline, carries none
	// (and so does a body-less response's).
	for _, url := range []string{s.URL + "/?delay=1s", s.URL + "/?delay=10ms"} {
		resp, body := do(t, tr, mustRequest(t, "GET", url, nil))
		if resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
	}
	if time.Now().Before(dl) {
		t.Fatal("the first deadline had not passed yet")
	}
	if n := s.opened.Load(); n != 1 {
		t.Fatalf("server saw %d connections, want 1", n)
	}
}

func TestContextStillCancelsWithDeadline(t *testing.T) {
	arrived := make(chan struct{})
	s := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-r.Context().Done()
	})
	tr := newTransport(t)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := tr.RoundTripHooks(ctx, mustRequest(t, "GET", s.URL, nil), nil, time.Now().Add(time.Minute))
		errc <- err
	}()
	<-arrived
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("RoundTripHooks did not return after cancellation")
	}
}

func TestPassedDeadlineTakesNoConnection(t *testing.T) {
	var hits atomic.Int32
	s := startServer(t, func(w http.ResponseWriter, r *http.Request) { hits.Add(1) })
	// The deadline is on the real clock, whatever clock idle expiry uses.
	for _, tr := range []*Transport{newTransport(t), newTransport(t, func(tr *Transport) {
		tr.Now = func() time.Time { return time.Unix(1, 0) }
	})} {
		_, err := tr.RoundTripHooks(context.Background(), mustRequest(t, "GET", s.URL, nil), nil, time.Now().Add(-time.Second))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v", err)
		}
	}
	if n := s.opened.Load(); n != 0 || hits.Load() != 0 {
		t.Fatalf("server saw %d connections, %d requests", n, hits.Load())
	}
}

func TestDeadlineBoundsWaitForConnection(t *testing.T) {
	release := make(chan struct{})
	var inHandler atomic.Int32
	s := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		inHandler.Add(1)
		<-release
		w.Write([]byte("ok"))
	})
	// Let go before the server's Close, which waits for the handler,
	// should the test fail first.
	letGo := sync.OnceFunc(func() { close(release) })
	t.Cleanup(letGo)
	tr := newTransport(t, func(tr *Transport) { tr.MaxConnsPerHost = 1 })
	held := make(chan error, 1)
	go func() {
		resp, err := tr.RoundTrip(mustRequest(t, "GET", s.URL, nil))
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		held <- err
	}()
	eventually(t, "first request in the handler", func() bool { return inHandler.Load() == 1 })
	// A second, not less: a deadline that passed before the round trip
	// looked for a connection fails it without a wait, which a loaded
	// machine could bring about with a shorter one.
	_, err := tr.RoundTripHooks(context.Background(), mustRequest(t, "GET", s.URL, nil), nil, time.Now().Add(time.Second))
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "waiting for a connection") {
		t.Fatalf("err = %v", err)
	}
	letGo()
	if err := <-held; err != nil {
		t.Fatal(err)
	}
}

func TestDeadlineShorterThanExpectContinueTimeout(t *testing.T) {
	release := make(chan struct{})
	s := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		// Never answers, never reads the body (so net/http does not
		// notice the client leave): held until the test ends.
		<-release
	})
	t.Cleanup(func() { close(release) }) // runs before the server's Close
	tr := newTransport(t, func(tr *Transport) { tr.ExpectContinueTimeout = time.Minute })
	req := mustRequest(t, "POST", s.URL, strings.NewReader("body"))
	req.Header.Set("Expect", "100-continue")
	start := time.Now()
	_, err := tr.RoundTripHooks(req.Context(), req, nil, start.Add(100*time.Millisecond))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the deadline", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("returned after %v", d)
	}
}

// deadlineConn records the deadlines set on a connection.
type deadlineConn struct {
	net.Conn
	mu  sync.Mutex
	set []time.Time
}

func (c *deadlineConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.set = append(c.set, t)
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

func (c *deadlineConn) deadlines() []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.set)
}

// A connection keeps its deadline while idle: the next exchange sets
// the deadline only when its own differs, and clears it when it has none.
func TestDeadlineChangedOnlyWhenItDiffers(t *testing.T) {
	s := startServer(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	var dc *deadlineConn
	tr := newTransport(t, func(tr *Transport) {
		tr.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			nc, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			dc = &deadlineConn{Conn: nc}
			return dc, nil
		}
	})
	d1 := time.Now().Add(time.Minute)
	d2 := d1.Add(time.Second)
	for i, dl := range []time.Time{d1, d1, d2, {}, {}, d2} {
		resp, err := tr.RoundTripHooks(context.Background(), mustRequest(t, "GET", s.URL, nil), nil, dl)
		if err != nil {
			t.Fatalf("round trip %d: %v", i, err)
		}
		if b, err := io.ReadAll(resp.Body); err != nil || string(b) != "ok" {
			t.Fatalf("round trip %d: body %q, %v", i, b, err)
		}
		resp.Body.Close()
	}
	if n := s.opened.Load(); n != 1 {
		t.Fatalf("server saw %d connections, want 1", n)
	}
	want := []time.Time{d1, d2, {}, d2}
	if got := dc.deadlines(); !slices.EqualFunc(got, want, time.Time.Equal) {
		t.Fatalf("deadlines set %v, want %v", got, want)
	}
}
