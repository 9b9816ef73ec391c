package h1client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/outrigger-mesh/outrigger/proxy/internal/sockio"
)

// serveEach answers every request on every connection with respond(n, i)
// (n: the connection's number, i: the request's on it).
func serveEach(t *testing.T, respond func(n, i int) string) *rawServer {
	return startRaw(t, func(conn net.Conn, br *bufio.Reader, n int) {
		for i := 0; ; i++ {
			if _, _, err := readRequest(br); err != nil {
				return
			}
			if _, err := io.WriteString(conn, respond(n, i)); err != nil {
				return
			}
		}
	})
}

func waiters(tr *Transport) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	n := 0
	for _, hp := range tr.hosts {
		n += len(hp.waiters)
	}
	return n
}

// A connection whose buffer holds bytes past the response it carried
// is out of step with the server: handing it to a request queued at
// MaxConnsPerHost would let those bytes be read as that request's
// response.
func TestLeftoverBytesNotHandedToWaiter(t *testing.T) {
	rs := serveEach(t, func(n, i int) string {
		if n == 0 && i == 0 {
			// One response, then bytes nobody asked for, in one write.
			return "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1" +
				"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfake!"
		}
		return "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal"
	})
	tr := newTransport(t, func(tr *Transport) { tr.MaxConnsPerHost = 1 })
	url := "http://" + rs.addr
	resp1, err := tr.RoundTrip(mustRequest(t, "GET", url, nil))
	if err != nil {
		t.Fatal(err)
	}
	if b := resp1.Body.(*responseBody).c.br.Buffered(); b == 0 {
		t.Fatal("precondition: the unsolicited bytes were not read with the head")
	}
	type result struct {
		body string
		err  error
	}
	second := make(chan result, 1)
	go func() {
		resp, err := tr.RoundTrip(mustRequest(t, "GET", url, nil).WithContext(ctxTimeout(t, 5e9)))
		if err != nil {
			second <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		second <- result{string(b), err}
	}()
	eventually(t, "second request queued", func() bool { return waiters(tr) == 1 })
	if _, err := io.ReadAll(resp1.Body); err != nil {
		t.Fatal(err)
	}
	resp1.Body.Close()
	r := <-second
	if r.err != nil || r.body != "real" {
		t.Fatalf("second response: body %q, err %v; want %q from a new connection", r.body, r.err, "real")
	}
}

// A response that ends exactly where the connection's read buffer does
// leaves bytes sent past it in the socket, unread, where release cannot
// see them. A request queued at MaxConnsPerHost is handed the connection
// at the response's end, and looks at the socket first, as a request
// taking an idle connection does: when the socket says input may have
// come (InputPender), and after a response without a body by its
// framing, whose late body a server that ignores HEAD sends. It does not
// read those bytes as its response. It was handed the connection
// unchecked and got them.
func TestUnreadBytesNotHandedToWaiter(t *testing.T) {
	// pad makes a response head of exactly the read buffer's size.
	pad := func(head string) string {
		head += "X-Pad: "
		return head + strings.Repeat("p", defaultBufferSize-len(head)-len("\r\n\r\n")) + "\r\n\r\n"
	}
	for _, tc := range []struct {
		name, method string
		first        string // the first response, as the buffer holds it
		body         int    // its body's length
		sockio       bool   // the connection says when input may have come
	}{
		{"bytes past a Content-Length body", "GET",
			"HTTP/1.1 200 OK\r\nContent-Length: 4055\r\n\r\n" + strings.Repeat("a", 4055), 4055, true},
		{"a body after a HEAD response", "HEAD",
			pad("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"), 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if len(tc.first) != defaultBufferSize {
				t.Fatalf("precondition: the first response is %d bytes, want %d", len(tc.first), defaultBufferSize)
			}
			got1, answer1 := make(chan struct{}), make(chan struct{})
			rs := startRaw(t, func(c net.Conn, br *bufio.Reader, n int) {
				for i := 0; ; i++ {
					if _, _, err := readRequest(br); err != nil {
						return
					}
					if n == 0 && i == 0 {
						close(got1)
						<-answer1
						// One response that fills the read buffer, then
						// one nobody asked for, in one write.
						io.WriteString(c, tc.first+"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfake!")
						continue
					}
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal")
				}
			})
			var once sync.Once
			answer := func() { once.Do(func() { close(answer1) }) }
			t.Cleanup(answer) // before the server's, which waits for it
			var dialled atomic.Int32
			tr := newTransport(t, func(tr *Transport) {
				tr.MaxConnsPerHost = 1
				tr.noSweep = true
				tr.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
					var d net.Dialer
					c, err := d.DialContext(ctx, network, addr)
					if err != nil || !tc.sockio {
						return c, err
					}
					w := sockio.Wrap(c)
					if _, ok := w.(*sockio.Conn); ok {
						dialled.Add(1)
					}
					return w, nil
				}
			})
			url := "http://" + rs.addr
			type result struct {
				resp *http.Response
				err  error
			}
			roundTrip := func(method string) <-chan result {
				ch := make(chan result, 1)
				go func() {
					resp, err := tr.RoundTrip(mustRequest(t, method, url, nil).WithContext(ctxTimeout(t, 5e9)))
					ch <- result{resp, err}
				}()
				return ch
			}
			first := roundTrip(tc.method)
			<-got1
			if tc.sockio && dialled.Load() != 1 {
				t.Skip("the socket cannot be watched here")
			}
			second := roundTrip("GET")
			eventually(t, "second request queued", func() bool { return waiters(tr) == 1 })
			answer()
			r1 := <-first
			if r1.err != nil {
				t.Fatal(r1.err)
			}
			resp1 := r1.resp
			if rb, ok := resp1.Body.(*responseBody); ok {
				if b := rb.c.br.Buffered(); b != tc.body {
					t.Fatalf("precondition: %d bytes buffered after the head, want the body's %d alone", b, tc.body)
				}
			}
			if b, err := io.ReadAll(resp1.Body); err != nil || len(b) != tc.body {
				t.Fatalf("first body: %d bytes, %v", len(b), err)
			}
			resp1.Body.Close()
			r2 := <-second
			if r2.err != nil {
				t.Fatalf("second request: %v", r2.err)
			}
			b, err := io.ReadAll(r2.resp.Body)
			r2.resp.Body.Close()
			if err != nil || string(b) != "real" {
				t.Fatalf("second response: body %q, err %v; want %q from a new connection", b, err, "real")
			}
		})
	}
}

// A request queued at MaxConnsPerHost that is handed a connection it
// then finds unusable (bytes past the last response in the socket)
// dials a new one in that connection's place, before the requests
// queued after it: it was first in line. It gave the place to the next
// one and queued again behind all the others.
func TestWaiterHandedBadConnectionDialsInItsPlace(t *testing.T) {
	got1, answer1 := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var order []string
	rs := startRaw(t, func(c net.Conn, br *bufio.Reader, n int) {
		for i := 0; ; i++ {
			req, _, err := readRequest(br)
			if err != nil {
				return
			}
			if n == 0 && i == 0 {
				close(got1)
				<-answer1
				// A HEAD response head that fills the read buffer,
				// then a body sent after it anyway, in one write.
				head := "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Pad: "
				head += strings.Repeat("p", defaultBufferSize-len(head)-len("\r\n\r\n")) + "\r\n\r\n"
				io.WriteString(c, head+"fake!")
				continue
			}
			mu.Lock()
			order = append(order, req.URL.Path)
			mu.Unlock()
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal")
		}
	})
	var once sync.Once
	answer := func() { once.Do(func() { close(answer1) }) }
	t.Cleanup(answer) // before the server's, which waits for it
	tr := newTransport(t, func(tr *Transport) {
		tr.MaxConnsPerHost = 1
		tr.noSweep = true
	})
	url := "http://" + rs.addr
	roundTrip := func(method, path string) <-chan error {
		ch := make(chan error, 1)
		go func() {
			resp, err := tr.RoundTrip(mustRequest(t, method, url+path, nil).WithContext(ctxTimeout(t, 5e9)))
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			ch <- err
		}()
		return ch
	}
	first := roundTrip("HEAD", "/a")
	<-got1
	second := roundTrip("GET", "/b")
	eventually(t, "second request queued", func() bool { return waiters(tr) == 1 })
	third := roundTrip("GET", "/c")
	eventually(t, "third request queued", func() bool { return waiters(tr) == 2 })
	answer()
	for _, ch := range []<-chan error{first, second, third} {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(order, " ") != "/b /c" {
		t.Fatalf("served %v, want /b before /c", order)
	}
}

// RFC 9110 §8.6 and RFC 9112 §6.1: a 204 carries neither Content-Length
// nor Transfer-Encoding. A server that sends them may send a body too,
// which would be read as the next response: the connection is not reused.
func TestNoContentWithFramingNotReused(t *testing.T) {
	for _, c := range []struct{ name, head string }{
		{"204 with Content-Length", "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"},
		{"204 chunked", "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n"},
		{"304 chunked", "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rs := serveEach(t, func(n, i int) string {
				if n == 0 && i == 0 {
					return c.head
				}
				return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
			})
			tr := newTransport(t)
			url := "http://" + rs.addr
			get(t, tr, url)
			if _, body := get(t, tr, url); body != "ok" {
				t.Fatalf("body %q", body)
			}
			if n := rs.accepted.Load(); n != 2 {
				t.Fatalf("server accepted %d connections, want 2 (the first not reused)", n)
			}
		})
	}
}

// A 204 with "Content-Length: 0", and a 304 with the length a 200 would
// have had (RFC 9110 §8.6), keep their connection.
func TestNoContentWithoutBodyReused(t *testing.T) {
	rs := serveEach(t, func(n, i int) string {
		switch i {
		case 0:
			return "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"
		case 1:
			return "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"
		}
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	})
	tr := newTransport(t)
	url := "http://" + rs.addr
	for range 3 {
		get(t, tr, url)
	}
	if n := rs.accepted.Load(); n != 1 {
		t.Fatalf("server accepted %d connections, want 1", n)
	}
}

// RFC 9110 §6.5.1: framing, routing and connection fields are not
// trailers; a recipient must not merge them into the header, so a proxy
// passes none on.
func TestForbiddenTrailerFieldsDropped(t *testing.T) {
	rs := serveEach(t, func(n, i int) string {
		return "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Ok\r\n\r\n" +
			"2\r\nok\r\n0\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\nHost: evil.example\r\n" +
			"Connection: close\r\nTrailer: X-More\r\nX-Ok: 1\r\nGrpc-Status: 0\r\n\r\n"
	})
	tr := newTransport(t)
	resp, body := get(t, tr, "http://"+rs.addr)
	if body != "ok" {
		t.Fatalf("body %q", body)
	}
	want := http.Header{"X-Ok": {"1"}, "Grpc-Status": {"0"}}
	if len(resp.Trailer) != len(want) || resp.Trailer.Get("X-Ok") != "1" || resp.Trailer.Get("Grpc-Status") != "0" {
		t.Fatalf("trailers %v, want %v", resp.Trailer, want)
	}
}

// ownDoneCtx is a context the context package does not recognise as its
// own, so that context.AfterFunc watches it with a goroutine: a watch
// left registered shows up as a leaked goroutine.
type ownDoneCtx struct {
	context.Context
	done chan struct{}
}

func (c *ownDoneCtx) Done() <-chan struct{} { return c.done }
func (c *ownDoneCtx) Err() error {
	select {
	case <-c.done:
		return context.Canceled
	default:
		return nil
	}
}

// A failed exchange stops watching the request's context: a context
// that outlives many requests (a caller's long-lived one) must not keep
// each failed connection, and its buffers, reachable until it ends.
func TestFailedExchangeStopsWatchingContext(t *testing.T) {
	rs := startRaw(t, func(c net.Conn, br *bufio.Reader, n int) {
		readRequest(br) // and close without a response
	})
	tr := newTransport(t)
	ctx := &ownDoneCtx{Context: context.Background(), done: make(chan struct{})}
	defer close(ctx.done)
	before := goleak.IgnoreCurrent()
	for _, method := range []string{"GET", "POST"} {
		var body io.Reader
		if method == "POST" {
			body = strings.NewReader("body")
		}
		_, err := tr.RoundTrip(mustRequest(t, method, "http://"+rs.addr, body).WithContext(ctx))
		if err == nil {
			t.Fatal("RoundTrip succeeded")
		}
	}
	if err := goleak.Find(before); err != nil {
		t.Fatalf("the context is still watched after the exchange failed: %v", err)
	}
}

// A "Content-Length: 0" response has nothing to read: its connection
// goes back at once, as in net/http, not when the caller gets round to
// closing the body (a proxy may first write the head to a slow client).
func TestZeroLengthResponseReleasesConnectionAtOnce(t *testing.T) {
	rs := serveEach(t, func(n, i int) string { return "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" })
	tr := newTransport(t, func(tr *Transport) { tr.MaxConnsPerHost = 1 })
	url := "http://" + rs.addr
	first, err := tr.RoundTrip(mustRequest(t, "GET", url, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer first.Body.Close()
	if first.Body != http.NoBody || first.ContentLength != 0 {
		t.Fatalf("Body %T, ContentLength %d", first.Body, first.ContentLength)
	}
	// The first body is still open: at MaxConnsPerHost 1 this waits
	// for ever unless the connection went back already.
	resp, err := tr.RoundTrip(mustRequest(t, "GET", url, nil).WithContext(ctxTimeout(t, 2e9)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if n := rs.accepted.Load(); n != 1 {
		t.Fatalf("server accepted %d connections, want 1", n)
	}
}

// A sweep peeks at idle connections without the lock. One taken for a
// request meanwhile, and given back before the sweep removes what it
// found dead, was judged on an exchange's bytes: it stays idle.
func TestSweepSparesConnectionReusedDuringCheck(t *testing.T) {
	rs := serveEach(t, func(n, i int) string { return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" })
	tr := newTransport(t, func(tr *Transport) { tr.noSweep = true })
	url := "http://" + rs.addr
	get(t, tr, url)
	cands := tr.sweepCandidates()
	if len(cands) != 1 {
		t.Fatalf("%d candidates, want 1", len(cands))
	}
	get(t, tr, url) // reuses the connection and gives it back
	tr.sweepRemove(cands)
	get(t, tr, url)
	if n := rs.accepted.Load(); n != 1 {
		t.Fatalf("server accepted %d connections, want 1 (the reused one kept)", n)
	}
}

// A POST the server read on a reused connection and then closed without
// answering may have been processed: it is not sent again.
func TestPostReadThenDroppedIsNotResent(t *testing.T) {
	var posts atomic.Int32
	rs := startRaw(t, func(c net.Conn, br *bufio.Reader, n int) {
		for i := 0; ; i++ {
			req, _, err := readRequest(br)
			if err != nil {
				return
			}
			if req.Method == "POST" {
				posts.Add(1)
				return // read, maybe acted on, never answered
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	tr := newTransport(t, func(tr *Transport) { tr.noSweep = true })
	url := "http://" + rs.addr
	get(t, tr, url)
	for _, body := range []io.Reader{nil, strings.NewReader("payload")} {
		posts.Store(0)
		get(t, tr, url) // an idle connection to reuse
		resp, err := tr.RoundTrip(mustRequest(t, "POST", url, body).WithContext(ctxTimeout(t, 5e9)))
		if err == nil {
			resp.Body.Close()
			t.Fatal("POST succeeded")
		}
		if n := posts.Load(); n != 1 {
			t.Fatalf("server read %d POSTs, want 1", n)
		}
	}
}

func hostCount(tr *Transport) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return len(tr.hosts)
}

// Upstream endpoints come and go: a host whose last connection closed
// leaves nothing behind in the Transport, and is set up again when
// asked for.
func TestHostForgottenWhenItsLastConnectionCloses(t *testing.T) {
	rs := serveEach(t, func(n, i int) string { return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" })
	tr := newTransport(t, func(tr *Transport) { tr.MaxConnsPerHost = 1 })
	url := "http://" + rs.addr
	get(t, tr, url)
	if n := hostCount(tr); n != 1 {
		t.Fatalf("%d hosts with an idle connection, want 1", n)
	}
	tr.CloseIdleConnections()
	if n := hostCount(tr); n != 0 {
		t.Fatalf("%d hosts after the last connection closed, want 0", n)
	}
	// A request that looked its host up before it was forgotten still
	// counts against MaxConnsPerHost with everyone else.
	stale, err := tr.host(mustRequest(t, "GET", url, nil).URL)
	if err != nil {
		t.Fatal(err)
	}
	get(t, tr, url)
	tr.CloseIdleConnections()
	held, err := tr.RoundTrip(mustRequest(t, "GET", url, nil)) // takes the one slot
	if err != nil {
		t.Fatal(err)
	}
	c, _, _, err := tr.getConn(ctxTimeout(t, 100*time.Millisecond), stale, time.Time{}, false, false)
	if err == nil {
		c.discard()
		t.Fatal("a second connection opened past MaxConnsPerHost 1")
	}
	io.ReadAll(held.Body)
	held.Body.Close()
	get(t, tr, url)
}

// A Read that Close ends from another goroutine says the body was
// closed, not that the connection timed out (the deadline Close moves
// is how, not why): a caller must not count it as a slow upstream.
func TestCloseDuringReadIsNotATimeout(t *testing.T) {
	rs := startRaw(t, func(c net.Conn, br *bufio.Reader, n int) {
		if _, _, err := readRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab")
		io.Copy(io.Discard, br) // until the client closes
	})
	tr := newTransport(t)
	resp, err := tr.RoundTrip(mustRequest(t, "GET", "http://"+rs.addr, nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 2)); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := resp.Body.Read(make([]byte, 10))
		done <- err
	}()
	awaitReading(t, "the Read to block", resp)
	resp.Body.Close()
	err = <-done
	var ne net.Error
	if !errors.Is(err, errBodyClosed) || errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("Read ended by Close returned %v, want %v", err, errBodyClosed)
	}
}

// A request that cannot be sent again after a stale connection fails it
// (a POST, or a body without GetBody) is not sent on an idle connection
// the server has closed since its last response, however short the
// idle spell: the server closed it without "Connection: close" (RFC 9112
// §9.3.1 lets it), and a non-idempotent request written into it would
// be lost (RFC 9110 §9.2.2 forbids sending it again).
func TestRequestThatCannotBeResentSkipsClosedIdleConnection(t *testing.T) {
	rs := closeAfterOne(t)
	tr := newTransport(t, func(tr *Transport) { tr.noSweep = true }) // the closed connection must stay idle
	url := "http://" + rs.addr
	for i, mk := range []func() *http.Request{
		func() *http.Request { return mustRequest(t, "POST", url, nil) },
		func() *http.Request { return mustRequest(t, "POST", url, strings.NewReader("payload")) },
		func() *http.Request {
			// Idempotent, but its body cannot be rewound.
			req := mustRequest(t, "PUT", url, nil)
			req.Body = io.NopCloser(strings.NewReader("payload"))
			req.ContentLength = 7
			return req
		},
	} {
		get(t, tr, url) // an idle connection, closed by the server at once
		eventually(t, "the server's close to reach the idle connection", func() bool {
			tr.mu.Lock()
			defer tr.mu.Unlock()
			for _, hp := range tr.hosts {
				return len(hp.idle) == 1 && !peekAlive(hp.idle[0].raw, false)
			}
			return false
		})
		var reused []bool
		req := mk()
		req = req.WithContext(httptrace.WithClientTrace(ctxTimeout(t, 5*time.Second), &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) { reused = append(reused, info.Reused) },
		}))
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("request %d (%s): %v", i, req.Method, err)
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
		if fmt.Sprint(reused) != "[false]" {
			t.Fatalf("request %d: GotConn Reused %v, want a fresh connection", i, reused)
		}
	}
}

// A request sent again after a stale failure (a GET) needs no peek
// before a short idle spell: the retry covers it, and a busy connection
// costs no system call.
func TestRetriableRequestNotPeekedAfterShortIdle(t *testing.T) {
	rs := closeAfterOne(t)
	tr := newTransport(t, func(tr *Transport) { tr.noSweep = true })
	url := "http://" + rs.addr
	get(t, tr, url)
	eventually(t, "the server's close to reach the idle connection", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		for _, hp := range tr.hosts {
			return len(hp.idle) == 1 && !peekAlive(hp.idle[0].raw, false)
		}
		return false
	})
	var reused []bool
	req := mustRequest(t, "GET", url, nil)
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { reused = append(reused, info.Reused) },
	}))
	if _, body := do(t, tr, req); body != "1" || fmt.Sprint(reused) != "[true]" {
		t.Fatalf("body %q, GotConn Reused %v: want the stale connection taken and the GET sent again", body, reused)
	}
}

// The check made before every request that cannot be sent again costs a
// system call and no allocation.
func TestAliveCheckAllocatesNothing(t *testing.T) {
	s := startServer(t, func(w http.ResponseWriter, r *http.Request) {})
	tr := newTransport(t)
	get(t, tr, s.URL)
	tr.mu.Lock()
	var c *conn
	for _, hp := range tr.hosts {
		c = hp.idle[0]
	}
	tr.mu.Unlock()
	if c.raw == nil {
		t.Skip("the connection exposes no socket to peek at")
	}
	if !c.alive() {
		t.Fatal("a live idle connection was found dead")
	}
	if a := testing.AllocsPerRun(100, func() { c.alive() }); a != 0 {
		t.Fatalf("%v allocations per check, want 0", a)
	}
}

// The same holds for a connection handed straight to a request queued at
// MaxConnsPerHost: a POST waiting for the one connection, which the
// server closed after answering the request that held it, goes out on a
// new connection.
func TestRequestThatCannotBeResentSkipsClosedConnectionHandedOver(t *testing.T) {
	closed := make(chan struct{}, 4)
	rs := startRaw(t, func(c net.Conn, br *bufio.Reader, n int) {
		defer func() { closed <- struct{}{} }()
		if _, _, err := readRequest(br); err != nil {
			return
		}
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n%d", n)
		c.Close() // no Connection: close said
	})
	tr := newTransport(t, func(tr *Transport) { tr.MaxConnsPerHost = 1; tr.noSweep = true })
	url := "http://" + rs.addr
	held, err := tr.RoundTrip(mustRequest(t, "GET", url, nil))
	if err != nil {
		t.Fatal(err)
	}
	posted := make(chan string, 1)
	go func() {
		resp, err := tr.RoundTrip(mustRequest(t, "POST", url, strings.NewReader("payload")).WithContext(ctxTimeout(t, 5*time.Second)))
		if err != nil {
			posted <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		posted <- string(b)
	}()
	eventually(t, "the POST to queue for the connection", func() bool { return waiters(tr) == 1 })
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the server did not close the connection")
	}
	hc := held.Body.(*responseBody).c // its head read, its body byte buffered
	eventually(t, "the server's close to reach the held connection", func() bool { return !peekAlive(hc.raw, false) })
	io.ReadAll(held.Body) // gives the connection to the POST
	held.Body.Close()
	select {
	case got := <-posted:
		if got != "1" {
			t.Fatalf("POST: %s, want the second connection's answer", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("POST hung")
	}
}

// A server that answers with no body by its framing (HEAD, 204, 304,
// Content-Length 0) and then writes one anyway (one that ignores HEAD,
// say), after the head, leaves those bytes on the idle connection after
// release looked at its buffer. The connection is peeked at before its
// next use and closed: the next request does not read them as its
// response. It was reused at once (it had idled less than peekAfter),
// and the next request got the stray bytes.
func TestUnsolicitedBytesAfterBodilessResponseAreNotReadAsNextResponse(t *testing.T) {
	for _, tc := range []struct{ name, method, head, late string }{
		{"HEAD then a body", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "hello"},
		{"HEAD then a response", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
			"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfake!"},
		{"304 then a response", "GET", "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
			"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfake!"},
		{"204 then a response", "GET", "HTTP/1.1 204 No Content\r\n\r\n",
			"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfake!"},
		{"empty 200 then a response", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
			"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfake!"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			headSent, lateSent := make(chan struct{}), make(chan struct{})
			var once sync.Once
			release := func() { once.Do(func() { close(headSent) }) }
			t.Cleanup(release) // before the server's, which waits for it
			rs := startRaw(t, func(c net.Conn, br *bufio.Reader, n int) {
				for i := 0; ; i++ {
					if _, _, err := readRequest(br); err != nil {
						return
					}
					if n == 0 && i == 0 {
						io.WriteString(c, tc.head)
						// The late bytes follow once the client has the
						// response, and is done with it.
						<-headSent
						io.WriteString(c, tc.late)
						close(lateSent)
						continue
					}
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal")
				}
			})
			tr := newTransport(t)
			url := "http://" + rs.addr + "/"
			req, _ := http.NewRequest(tc.method, url, nil)
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			release()
			<-lateSent // on loopback, in the client's socket once written
			req, _ = http.NewRequest("GET", url, nil)
			resp, err = tr.RoundTrip(req)
			if err != nil {
				t.Fatalf("next request: %v", err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != "real" || rs.accepted.Load() != 2 {
				t.Fatalf("next request got %d %q on connection %d, want %q on a new one",
					resp.StatusCode, b, rs.accepted.Load(), "real")
			}
		})
	}
}
