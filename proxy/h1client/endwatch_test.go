package h1client

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/h1server"
	"github.com/outrigger-mesh/outrigger/proxy/internal/roundtrip"
)

// startH1 serves h with an h1server on a loopback port until the test
// ends, and returns its address.
func startH1(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &h1server.Server{Handler: h}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

func recvWithin[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// A proxy's downstream client that goes away ends the upstream exchange
// blocked on its response, through the request context's WatchEnd: the
// error wraps context.Canceled and the upstream connection is closed,
// not reused.
func TestDownstreamGoneEndsBlockedUpstreamRead(t *testing.T) {
	const canned = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	upGot, upClosed := make(chan struct{}), make(chan struct{})
	up := startRaw(t, func(c net.Conn, br *bufio.Reader, n int) {
		for {
			if _, _, err := readRequest(br); err != nil {
				return
			}
			if n == 0 {
				// Never answer: the exchange blocks until it is
				// cancelled, which closes the connection.
				close(upGot)
				_, _ = io.Copy(io.Discard, br)
				close(upClosed)
				return
			}
			if _, err := io.WriteString(c, canned); err != nil {
				return
			}
		}
	})
	tr := newTransport(t)
	errs := make(chan error, 1)
	addr := startH1(t, func(w http.ResponseWriter, r *http.Request) {
		if _, ok := r.Context().(roundtrip.EndWatcher); !ok {
			t.Errorf("h1server's request context %T has no WatchEnd/StopWatch", r.Context())
		}
		out, _ := http.NewRequest("GET", "http://"+up.addr+r.URL.Path, nil)
		resp, err := tr.RoundTripHooks(r.Context(), out, nil, time.Time{})
		if r.URL.Path == "/hang" {
			errs <- err
		}
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		_, _ = io.Copy(w, resp.Body)
		resp.Body.Close()
	})

	down, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(down, "GET /hang HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	recvWithin(t, "the upstream request", upGot)
	down.Close()
	if err := recvWithin(t, "the upstream round trip's end", errs); !errors.Is(err, context.Canceled) {
		t.Fatalf("round trip error %v, want one wrapping context.Canceled", err)
	}
	recvWithin(t, "the upstream connection's close", upClosed)

	// The next request gets a new upstream connection.
	down2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer down2.Close()
	_ = down2.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(down2, "GET /ok HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(down2), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != "ok" {
		t.Fatalf("second request: %d %q", resp.StatusCode, b)
	}
	if n := up.accepted.Load(); n != 2 {
		t.Fatalf("%d upstream connections, want 2 (the cancelled one not reused)", n)
	}
}

// unwatch racing with the end of h1server's request context (its
// handler returning): false exactly when cancel ran, so that a
// connection is reused only if its cancellation never fired, and never
// fires later.
func TestUnwatchRacesTheEndOfTheRequestContext(t *testing.T) {
	type result struct {
		c      *conn
		ok     bool
		p1, p2 net.Conn
	}
	results := make(chan result, 1)
	checks := make(chan error, 1)
	var stopped, fired int
	check := func() error {
		select {
		case res := <-results:
			res.p1.Close()
			res.p2.Close()
			// The previous request's context has ended (the server
			// ends it before reading this request), running cancel
			// synchronously if the watch was still registered.
			switch cancelled := res.c.cancelled.Load(); {
			case res.ok && cancelled:
				return errors.New("unwatch reported true but cancel ran")
			case !res.ok && !cancelled:
				return errors.New("unwatch reported false but cancel did not run")
			case res.ok:
				stopped++
			default:
				fired++
			}
		case <-time.After(5 * time.Second):
			return errors.New("no result from the previous request")
		}
		return nil
	}
	addr := startH1(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/first" {
			checks <- check()
		}
		if r.URL.Path == "/last" {
			return
		}
		p1, p2 := net.Pipe()
		c := &conn{nc: p1}
		c.cancelFn = c.cancel
		c.watch(r.Context())
		if c.ew == nil {
			t.Errorf("watch of %T did not use WatchEnd", r.Context())
		}
		// The handler returns (ending the context) while unwatch runs.
		go func() {
			ok := c.unwatch()
			results <- result{c, ok, p1, p2}
		}()
	})
	down, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer down.Close()
	_ = down.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(down)
	send := func(path string) {
		t.Helper()
		if _, err := io.WriteString(down, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		if err := readCanned(br); err != nil {
			t.Fatal(err)
		}
	}
	send("/first")
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < 1000 && time.Now().Before(deadline); i++ {
		send("/next")
		if err := recvWithin(t, "a check", checks); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	send("/last")
	if err := recvWithin(t, "the last check", checks); err != nil {
		t.Fatal(err)
	}
	t.Logf("unwatch stopped the watch %d times, the end fired it %d times", stopped, fired)
}

// A watch of a request context that has ended cancels at once, and its
// unwatch reports false.
func TestWatchOfAnEndedRequestContextCancels(t *testing.T) {
	ctxs := make(chan context.Context, 1)
	addr := startH1(t, func(w http.ResponseWriter, r *http.Request) { ctxs <- r.Context() })
	down, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer down.Close()
	_ = down.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(down, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	ctx := recvWithin(t, "the request", ctxs)
	if err := readCanned(bufio.NewReader(down)); err != nil {
		t.Fatal(err)
	}
	recvWithin(t, "the context's end", ctx.Done())
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	c := &conn{nc: p1}
	c.cancelFn = c.cancel
	c.watch(ctx)
	if !c.cancelled.Load() {
		t.Fatal("watch of an ended context did not cancel")
	}
	if c.unwatch() {
		t.Fatal("unwatch reported true")
	}
}
