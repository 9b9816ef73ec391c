package h1server

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/h2server"
	"github.com/outrigger-mesh/outrigger/proxy/internal/proxytest"
)

// waitNoConns polls until s tracks no connection: its goroutine has
// given its buffers back.
func waitNoConns(t testing.TB, s *Server) {
	t.Helper()
	waitNoConnsWithin(t, s, 5*time.Second)
}

// waitNoConnsWithin is waitNoConns with a wait of d.
func waitNoConnsWithin(t testing.TB, s *Server, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		s.mu.Lock()
		n := len(s.conns)
		s.mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("connection still tracked")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestBodyLeftBehindByPanickingHandlerFailsReads: a reader the handler
// left behind (an upstream transport) must not read the connection's
// buffer after a panic ended the connection; that buffer goes back to a
// pool and may be serving another client.
func TestBodyLeftBehindByPanickingHandlerFailsReads(t *testing.T) {
	release, result := make(chan struct{}), make(chan error, 1)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		go func() {
			<-release
			_, err := r.Body.Read(make([]byte, 64))
			result <- err
		}()
		panic(http.ErrAbortHandler)
	}))
	c := dial(t, ts.addr)
	c.send(t, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabcde")
	if !c.closed(5 * time.Second) {
		t.Fatal("connection open after a panic")
	}
	waitNoConns(t, ts.Server)
	close(release)
	if err := within(t, 5*time.Second, "leftover read", result); !errors.Is(err, http.ErrBodyReadAfterClose) {
		t.Fatalf("read after the connection ended: %v, want http.ErrBodyReadAfterClose", err)
	}
}

// TestWriteAfterHandlerReturnedFails: a write from a goroutine the
// handler left behind must not land in the next response on the
// connection.
func TestWriteAfterHandlerReturnedFails(t *testing.T) {
	leftover := make(chan http.ResponseWriter, 1)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/first" {
			leftover <- w
		}
		io.WriteString(w, "ok "+r.URL.Path)
	}))
	c := dial(t, ts.addr)
	c.send(t, "GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, body := c.response(t, "GET"); body != "ok /first" {
		t.Fatalf("%q", body)
	}
	w := <-leftover
	if _, err := io.WriteString(w, "INJECTED"); err == nil {
		t.Error("Write after the handler returned succeeded")
	}
	w.WriteHeader(500)
	if err := http.NewResponseController(w).Flush(); err == nil {
		t.Error("Flush after the handler returned succeeded")
	}
	c.send(t, "GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, body := c.response(t, "GET")
	if resp.StatusCode != 200 || body != "ok /second" {
		t.Fatalf("second response %d %q %v", resp.StatusCode, body, resp.Header)
	}
}

// TestNonCanonicalFramingKeysFromHandlerNotSent: the server frames the
// body itself; a handler's "content-length" or "transfer-encoding" under a
// non-canonical key would give the client two framings.
func TestNonCanonicalFramingKeysFromHandlerNotSent(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["content-length"] = []string{"1"}
		w.Header()["transfer-encoding"] = []string{"chunked"}
		w.Header()["TRANSFER-ENCODING"] = []string{"identity"}
		io.WriteString(w, "hello")
	}))
	c := dial(t, ts.addr)
	c.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
	for i := 0; i < 2; i++ {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		var head strings.Builder
		for {
			line, err := c.br.ReadString('\n')
			if err != nil {
				t.Fatalf("read head: %v (so far %q)", err, head.String())
			}
			head.WriteString(line)
			if line == "\r\n" {
				break
			}
		}
		h := strings.ToLower(head.String())
		if strings.Count(h, "content-length:")+strings.Count(h, "transfer-encoding:") != 1 {
			t.Fatalf("response %d framed twice:\n%s", i, head.String())
		}
		if !strings.Contains(h, "content-length: 5\r\n") {
			t.Fatalf("response %d:\n%s", i, head.String())
		}
		b := make([]byte, 5)
		if _, err := io.ReadFull(c.br, b); err != nil || string(b) != "hello" {
			t.Fatalf("body %q %v", b, err)
		}
	}
}

// TestLargeResponseHeaderNotKeptByIdleConnection: one response with a
// huge header block must not leave its buffer with the keep-alive
// connection for the rest of its life.
func TestLargeResponseHeaderNotKeptByIdleConnection(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			w.Header().Set("X-Big", strings.Repeat("b", 512<<10))
		case "/probe":
			// The handler runs on the connection's goroutine.
			fmt.Fprint(w, cap(w.(*response).c.hdrBuf))
			return
		}
		io.WriteString(w, "ok")
	}))
	c := dial(t, ts.addr)
	c.send(t, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, _ := c.response(t, "GET"); len(resp.Header.Get("X-Big")) != 512<<10 {
		t.Fatal("big header lost")
	}
	c.send(t, "GET /probe HTTP/1.1\r\nHost: x\r\n\r\n")
	_, body := c.response(t, "GET")
	if n, _ := strconv.Atoi(body); n > maxKeptHdrBuf {
		t.Fatalf("connection keeps a %d-byte header buffer", n)
	}
}

// TestAnnouncedTrailerWithInvalidNameNotWritten: a name in the handler's
// "Trailer" header that is no valid field name (here one carrying CR LF)
// must not reach the trailer section, where it would add fields.
func TestAnnouncedTrailerWithInvalidNameNotWritten(t *testing.T) {
	const bad = "X-T\r\nX-Evil: 1"
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", bad+", X-Good")
		w.WriteHeader(200)
		io.WriteString(w, "body")
		w.Header()[bad] = []string{"v"}
		w.Header().Set("X-Good", "g")
	}))
	resp, err := client(t).Get(ts.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if b, err := io.ReadAll(resp.Body); err != nil || string(b) != "body" {
		t.Fatalf("%q %v", b, err)
	}
	if resp.Trailer.Get("X-Evil") != "" || resp.Trailer.Get("X-Good") != "g" {
		t.Fatalf("trailer %v", resp.Trailer)
	}
}

// TestLargeFoldedRequestHeaderNotKeptByIdleConnection: the header
// reader's buffer for folded (obs-fold) lines grows to the longest such
// line; a keep-alive connection must not keep it between requests.
func TestLargeFoldedRequestHeaderNotKeptByIdleConnection(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/probe" {
			// The handler runs on the connection's goroutine.
			fmt.Fprint(w, reflect.ValueOf(&w.(*response).c.tp).Elem().FieldByName("buf").Cap())
			return
		}
		fmt.Fprint(w, len(r.Header.Get("X-Folded")))
	}))
	c := dial(t, ts.addr)
	fold := strings.Repeat("f", 8<<10)
	c.send(t, "GET /big HTTP/1.1\r\nHost: x\r\nX-Folded: a"+strings.Repeat("\r\n "+fold, 64)+"\r\n\r\n")
	if _, body := c.response(t, "GET"); body == "0" {
		t.Fatal("folded header lost")
	}
	c.send(t, "GET /probe HTTP/1.1\r\nHost: x\r\n\r\n")
	_, body := c.response(t, "GET")
	if n, _ := strconv.Atoi(body); n > maxKeptHdrBuf {
		t.Fatalf("connection keeps a %d-byte header reader buffer", n)
	}
}

// TestPipelinedRequestArrivingDuringWatchIsServed: the byte the
// client-gone watcher reads from a request pipelined behind a slow one
// is the next request's first byte, not lost.
func TestPipelinedRequestArrivingDuringWatchIsServed(t *testing.T) {
	release := make(chan struct{})
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		io.WriteString(w, r.Method+" "+r.URL.Path)
	}))
	for _, first := range []string{
		"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
		"POST /slow HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
	} {
		c := dial(t, ts.addr)
		c.send(t, first)
		if strings.HasPrefix(first, "GET") {
			waitWatching(t, ts.Server)
		}
		c.send(t, "PUT /next HTTP/1.1\r\nHost: x\r\n\r\n")
		release <- struct{}{}
		if _, body := c.response(t, "GET"); !strings.HasSuffix(body, " /slow") {
			t.Fatalf("first response %q", body)
		}
		if _, body := c.response(t, "PUT"); body != "PUT /next" {
			t.Fatalf("pipelined response %q", body)
		}
	}
}

// TestUnreadBodyDrainIsBoundedInTime: a client that stops sending the
// body the handler left unread gets its response (and a closed
// connection) after drainTimeout, instead of holding the connection's
// goroutine until it goes away. A reader the handler left blocked on the
// body is released too.
func TestUnreadBodyDrainIsBoundedInTime(t *testing.T) {
	leftover := make(chan error, 1)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/leftover" {
			started := make(chan struct{})
			go func() {
				close(started)
				_, err := io.Copy(io.Discard, r.Body)
				leftover <- err
			}()
			<-started
		}
		io.WriteString(w, "early answer")
	}))
	for _, path := range []string{"/", "/leftover"} {
		c := dial(t, ts.addr)
		sent := time.Now()
		c.send(t, "POST "+path+" HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
		resp, body := c.response(t, "POST")
		if body != "early answer" || !resp.Close {
			t.Fatalf("%s: %q close=%v", path, body, resp.Close)
		}
		if d := time.Since(sent); d > drainTimeout+2*time.Second {
			t.Fatalf("%s: answered after %v", path, d)
		}
		if !c.closed(5 * time.Second) {
			t.Fatalf("%s: connection left open with the body unread", path)
		}
	}
	if err := within(t, 5*time.Second, "leftover reader", leftover); err == nil {
		t.Fatal("leftover reader saw a complete body")
	}
}

// TestHandlerWriteDeadlineEndsWithItsResponse: a write deadline a handler
// sets through http.ResponseController bounds its own response, not the
// later ones on the keep-alive connection (there is no WriteTimeout to
// replace it).
func TestHandlerWriteDeadlineEndsWithItsResponse(t *testing.T) {
	// A second, not less: the first response must be written within it,
	// which a loaded machine could miss.
	const deadline = time.Second
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/first" {
			if err := http.NewResponseController(w).SetWriteDeadline(time.Now().Add(deadline)); err != nil {
				t.Error(err)
			}
		}
		io.WriteString(w, "ok "+r.URL.Path)
	}))
	c := dial(t, ts.addr)
	c.send(t, "GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, body := c.response(t, "GET"); body != "ok /first" {
		t.Fatalf("%q", body)
	}
	time.Sleep(2 * deadline) // the client's pace: the next request comes after that deadline
	c.send(t, "GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatalf("second request on the connection: %v", err)
	}
	resp.Body.Close()
}

// TestDrainDeadlineDoesNotCutPipelinedRequest: the deadline put on the
// drain of an unread body does not carry over to the rest of a request
// pipelined behind it (with no ReadHeaderTimeout, its header may take
// its time).
func TestDrainDeadlineDoesNotCutPipelinedRequest(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok "+r.URL.Path)
	}), func(s *Server) { s.ReadHeaderTimeout = 0 })
	c := dial(t, ts.addr)
	c.send(t, "POST /first HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nabcdeGET /next HTTP/1.1\r\nHo")
	if _, body := c.response(t, "POST"); body != "ok /first" {
		t.Fatalf("%q", body)
	}
	time.Sleep(drainTimeout * 3 / 2) // the client's pace: past the drain's deadline
	c.send(t, "st: x\r\n\r\n")
	if _, body := c.response(t, "GET"); body != "ok /next" {
		t.Fatalf("%q", body)
	}
}

// TestExpectRefusedWithReaderLeftBlockedClosesConnection: a handler
// refuses an expected body, and leaves a reader blocked on it (holding
// the body's lock) for a body the client will never send. The connection
// must still be closed, not wait on that lock for as long as the client
// stays.
func TestExpectRefusedWithReaderLeftBlockedClosesConnection(t *testing.T) {
	leftover := make(chan error, 1)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusExpectationFailed)
		w.(http.Flusher).Flush()
		go func() {
			_, err := io.Copy(io.Discard, r.Body)
			leftover <- err
		}()
		b := w.(*response).body
		deadline := time.Now().Add(5 * time.Second)
		for b.mu.TryLock() { // until the reader holds the lock, blocked
			b.mu.Unlock()
			if time.Now().After(deadline) {
				t.Error("reader never blocked")
				return
			}
			time.Sleep(time.Millisecond)
		}
	}))
	c := dial(t, ts.addr)
	c.send(t, "PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n")
	if resp, _ := c.response(t, "PUT"); resp.StatusCode != http.StatusExpectationFailed {
		t.Fatal(resp.Status)
	}
	if !c.closed(drainTimeout + 3*time.Second) {
		t.Fatal("connection left open, its goroutine stuck on the body")
	}
	if err := within(t, 5*time.Second, "leftover reader", leftover); err == nil {
		t.Fatal("leftover reader saw a complete body")
	}
}

// TestResponseFieldValuesCannotSplit: CR and LF in a value the handler
// sets (header, 1xx, trailer) become spaces, so that no value can end
// its field line and start another field, or another response (RFC
// 9110 §5.5, RFC 9112 §11.1).
func TestResponseFieldValuesCannotSplit(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</a>\r\n\r\nHTTP/1.1 200 OK\r\nX-Injected: 1")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Set("Link", "</b>")
		w.Header().Set("X-A", "v\r\nX-Injected: 2")
		w.Header().Set("Trailer", "X-T")
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		io.WriteString(w, "body")
		w.Header().Set("X-T", "t\nX-Injected: 3")
	}))
	c := dial(t, ts.addr)
	c.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	tp := textproto.NewReader(c.br)
	if line, err := tp.ReadLine(); err != nil || line != "HTTP/1.1 103 Early Hints" {
		t.Fatalf("first line %q %v", line, err)
	}
	h, err := tp.ReadMIMEHeader()
	if err != nil || h.Get("Link") != "</a>    HTTP/1.1 200 OK  X-Injected: 1" || h["X-Injected"] != nil {
		t.Fatalf("103 header %v %v", h, err)
	}
	resp, body := c.response(t, "GET")
	if resp.StatusCode != 200 || body != "body" || resp.Header["X-Injected"] != nil || resp.Trailer["X-Injected"] != nil {
		t.Fatalf("%d %q header %v trailer %v", resp.StatusCode, body, resp.Header, resp.Trailer)
	}
	if resp.Header.Get("X-A") != "v  X-Injected: 2" || resp.Trailer.Get("X-T") != "t X-Injected: 3" {
		t.Fatalf("header %v trailer %v", resp.Header, resp.Trailer)
	}
}

// fillUnread pipelines requests on c, reading none of the answers, until
// the server stops taking them (its answers fill the socket's buffers
// and it blocks writing one) or ends the connection.
func fillUnread(t *testing.T, c *rawConn, req string) {
	t.Helper()
	if tc, ok := c.Conn.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(16 << 10)
	}
	batch := []byte(strings.Repeat(req, 64))
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		_ = c.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
		if _, err := c.Write(batch); err != nil {
			return
		}
	}
	t.Fatal("the server never stopped taking requests")
}

// What is left of a response once the handler has returned (here all
// of it: a short body is held back until then) is written with no
// handler to bound the write. A client that pipelines requests and reads
// none of the answers fills the socket's buffers, and the write of a
// later one blocked for good, holding the connection and its goroutine;
// the idle timeout bounds it, as it bounds a connection that sends
// nothing.
//
// The fill stops at a write that found no room for 300 ms, which on a
// loaded machine may come before the server has blocked: it may be
// slow to read, or loopback TCP between it and a client with a small
// receive buffer that reads nothing may stall (segments dropped,
// retransmissions backed off for seconds). The server then still has
// the requests in the socket buffers to answer (up to megabytes of
// them, seconds of work under the race detector), hence the wait of
// 30 s; and the fill's last write may have been cut in the middle of a
// request, whose rest the server, its send buffer not full, would wait
// for as long as the connection lasts with no read-header timeout,
// hence the one of a second.
func TestIdleTimeoutBoundsTheEndOfAResponseToAClientThatReadsNothing(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	}), func(s *Server) {
		s.IdleTimeout = 200 * time.Millisecond
		s.ReadHeaderTimeout = time.Second
	})
	c := dial(t, ts.addr)
	fillUnread(t, c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	waitNoConnsWithin(t, ts.Server, 30*time.Second)
}

// servePipe serves s on a proxytest.PipeListener and returns a client end,
// closed by the test's cleanup, on which req is being written, once s
// tracks the connection.
func servePipe(t *testing.T, s *Server, req string) net.Conn {
	t.Helper()
	ln := proxytest.NewPipeListener()
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
		}
	})
	client := ln.Dial()
	t.Cleanup(func() { client.Close() })
	go func() { _, _ = io.WriteString(client, req) }()
	s.init()
	waitFor(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.conns) > 0
	})
	return client
}

// The server's own answers, to a malformed request and the 101 to an
// h2c upgrade, are written with no handler's write deadline in force: a
// client that read none of them held the connection and its goroutine
// for good. The idle timeout bounds them as it bounds the end of a
// response.
func TestIdleTimeoutBoundsTheServersOwnAnswers(t *testing.T) {
	for name, req := range map[string]string{
		"malformed": "GET / HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n",
		"h2c":       "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: \r\n\r\n",
		"response":  "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			s := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, "hello")
			}), H2: &h2server.Server{}, IdleTimeout: 200 * time.Millisecond}
			servePipe(t, s, req)
			waitNoConns(t, s)
		})
	}
}

// A 1xx response is written while the handler runs: the automatic "100
// Continue" on the body's first read, one the handler sends (a proxy's
// 103 from its upstream). Unless a deadline bounds it, the idle timeout
// does: a client that read none of it held the handler for good,
// blocked in the body's read or its WriteHeader, past any read deadline
// it set. A 100 that cannot be sent fails the body's read: the client
// waits for it before sending the body.
func TestIdleTimeoutBoundsInformationalResponses(t *testing.T) {
	for name, tc := range map[string]struct {
		req string
		h   http.HandlerFunc
	}{
		"100-continue": {
			"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
			func(w http.ResponseWriter, r *http.Request) {
				if _, err := io.ReadAll(r.Body); err == nil {
					t.Error("the body's read succeeded with no 100 sent")
				}
			},
		},
		"103": {
			"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
			func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Link", "</a>; rel=preload")
				w.WriteHeader(http.StatusEarlyHints)
			},
		},
	} {
		t.Run(name, func(t *testing.T) {
			s := &Server{Handler: tc.h, IdleTimeout: 200 * time.Millisecond}
			servePipe(t, s, tc.req)
			waitNoConns(t, s)
		})
	}
}
