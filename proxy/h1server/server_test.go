package h1server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestKeepAliveServesRequestsOnOneConnection(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, r.Host)
	}))
	c := client(t)
	var reused atomic.Int32
	for i := 0; i < 5; i++ {
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
			if i.Reused {
				reused.Add(1)
			}
		}}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", ts.url(fmt.Sprintf("/p%d", i)), nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf("GET /p%d %s", i, ts.addr); string(b) != want || resp.ContentLength != int64(len(want)) {
			t.Fatalf("got %q (length %d), want %q", b, resp.ContentLength, want)
		}
		if resp.Header.Get("Date") == "" {
			t.Fatal("no Date header")
		}
	}
	if reused.Load() != 4 {
		t.Fatalf("%d of 4 follow-up requests reused the connection", reused.Load())
	}
}

func TestPipelinedRequestsAnsweredInOrder(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s:%s", r.URL.Path, b)
	}))
	c := dial(t, ts.addr)
	c.send(t, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"+
		"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyz"+
		"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"+
		"GET /d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	for _, want := range []string{"/a:", "/b:xyz", "/c:hi", "/d:"} {
		if _, body := c.response(t, "GET"); body != want {
			t.Fatalf("got %q, want %q", body, want)
		}
	}
	if !c.closed(5 * time.Second) {
		t.Fatal("connection open after Connection: close")
	}
}

func TestChunkedRequestBodyWithTrailers(t *testing.T) {
	type seen struct {
		body          string
		before, after http.Header
		cl            int64
		te            []string
	}
	got := make(chan seen, 1)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := seen{before: r.Trailer.Clone(), cl: r.ContentLength, te: r.TransferEncoding}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("read body: %v", err)
		}
		s.body, s.after = string(b), r.Trailer
		got <- s
	}))
	c := dial(t, ts.addr)
	c.send(t, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum, X-Other\r\n\r\n"+
		"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: 42\r\nX-Other: a\r\n\r\n")
	resp, _ := c.response(t, "POST")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	s := within(t, 5*time.Second, "handler", got)
	if s.body != "hello world" || s.cl != -1 || len(s.te) != 1 || s.te[0] != "chunked" {
		t.Fatalf("body %q, ContentLength %d, TransferEncoding %v", s.body, s.cl, s.te)
	}
	if _, ok := s.before["X-Sum"]; !ok || s.before.Get("X-Sum") != "" {
		t.Fatalf("announced trailers before the body: %v", s.before)
	}
	if s.after.Get("X-Sum") != "42" || s.after.Get("X-Other") != "a" {
		t.Fatalf("trailers after the body: %v", s.after)
	}
}

func TestResponseTrailersAnnouncedAndPrefixed(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Announced")
		w.WriteHeader(200)
		io.WriteString(w, "body")
		w.Header().Set("X-Announced", "yes")
		w.Header().Set(http.TrailerPrefix+"X-Late", "also")
	}))
	resp, err := client(t).Get(ts.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "body" || resp.TransferEncoding[0] != "chunked" {
		t.Fatalf("body %q, TE %v", b, resp.TransferEncoding)
	}
	if resp.Trailer.Get("X-Announced") != "yes" || resp.Trailer.Get("X-Late") != "also" {
		t.Fatalf("trailers %v", resp.Trailer)
	}
	if resp.Header.Get("X-Announced") != "" {
		t.Fatal("trailer value leaked into the header block")
	}
}

func TestPrefixedTrailerOnBufferedBodyForcesChunked(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "small")
		w.Header().Set(http.TrailerPrefix+"Grpc-Status", "0")
	}))
	resp, err := client(t).Get(ts.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "small" || resp.Trailer.Get("Grpc-Status") != "0" {
		t.Fatalf("body %q, trailers %v", b, resp.Trailer)
	}
}

// TestPrefixedTrailerAfterFlushSent: a streamed (flushed, chunked)
// response whose handler sets an unannounced trailer with
// http.TrailerPrefix at the end still carries it, as with net/http.
func TestPrefixedTrailerAfterFlushSent(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "streamed")
		w.(http.Flusher).Flush()
		w.Header().Set(http.TrailerPrefix+"X-Late", "1")
	}))
	resp, err := client(t).Get(ts.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "streamed" || resp.Trailer.Get("X-Late") != "1" {
		t.Fatalf("body %q, trailers %v", b, resp.Trailer)
	}
}

func TestHeaderSnapshotAtWriteHeader(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Before", "1")
		w.WriteHeader(201)
		w.Header().Set("X-After", "1")
		w.WriteHeader(500) // superfluous: ignored
		io.WriteString(w, "x")
	}))
	resp, err := client(t).Get(ts.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 || resp.Header.Get("X-Before") != "1" || resp.Header.Get("X-After") != "" {
		t.Fatalf("%d %v", resp.StatusCode, resp.Header)
	}
}

func TestInformationalResponsesPrecedeFinal(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		w.Header().Set("X-Final", "1")
		io.WriteString(w, "done")
	}))
	var got []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		got = append(got, fmt.Sprintf("%d %s", code, h.Get("Link")))
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", ts.url("/"), nil)
	resp, err := client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(got) != 1 || got[0] != "103 </style.css>; rel=preload" {
		t.Fatalf("1xx seen: %q", got)
	}
	if string(b) != "done" || resp.Header.Get("X-Final") != "1" || resp.Header.Get("Link") != "" {
		t.Fatalf("final: %q %v", b, resp.Header)
	}
}

func TestExpectContinueSentOnFirstBodyRead(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/refuse" {
			http.Error(w, "no", http.StatusForbidden)
			return
		}
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "got %s", b)
	}))
	c := dial(t, ts.addr)
	c.send(t, "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
	resp, _ := c.response(t, "PUT")
	if resp.StatusCode != 100 {
		t.Fatalf("first response %d, want 100", resp.StatusCode)
	}
	c.send(t, "data")
	if resp, body := c.response(t, "PUT"); resp.StatusCode != 200 || body != "got data" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}

	// A handler that answers without reading: no 100, and the
	// connection closes, for the client may never send the body.
	c2 := dial(t, ts.addr)
	c2.send(t, "PUT /refuse HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
	resp, _ = c2.response(t, "PUT")
	if resp.StatusCode != 403 || !resp.Close {
		t.Fatalf("%d close=%v", resp.StatusCode, resp.Close)
	}
	if !c2.closed(5 * time.Second) {
		t.Fatal("connection kept after an unsent body")
	}
}

func TestFlushStreamsBeforeHandlerReturns(t *testing.T) {
	release := make(chan struct{})
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first")
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("flush: %v", err)
		}
		<-release
		io.WriteString(w, "second")
	}))
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	resp, err := client(t).Get(ts.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first" {
		t.Fatalf("%q %v", buf, err)
	}
	close(release)
	rest, _ := io.ReadAll(resp.Body)
	if string(rest) != "second" || resp.ContentLength != -1 {
		t.Fatalf("%q length %d", rest, resp.ContentLength)
	}
}

func TestLargeBodyChunkedSmallBodyHasLength(t *testing.T) {
	big := strings.Repeat("b", 3*bodyBufSize)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			io.WriteString(w, big)
			return
		}
		io.WriteString(w, "small")
	}))
	c := client(t)
	for path, want := range map[string]string{"/big": big, "/small": "small"} {
		resp, err := c.Get(ts.url(path))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != want {
			t.Fatalf("%s: %d bytes", path, len(b))
		}
		if chunked := len(resp.TransferEncoding) > 0; chunked != (path == "/big") {
			t.Fatalf("%s: TE %v, length %d", path, resp.TransferEncoding, resp.ContentLength)
		}
	}
}

func TestHeadAndNoContentHaveNoBody(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/204" {
			w.WriteHeader(204)
			if _, err := w.Write([]byte("x")); err != http.ErrBodyNotAllowed {
				t.Errorf("write on 204: %v", err)
			}
			return
		}
		io.WriteString(w, "hello")
	}))
	c := dial(t, ts.addr)
	c.send(t, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET /204 HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, body := c.response(t, "HEAD")
	if resp.ContentLength != 5 || body != "" {
		t.Fatalf("HEAD: length %d body %q", resp.ContentLength, body)
	}
	resp, body = c.response(t, "GET")
	if resp.StatusCode != 204 || body != "" || resp.Header.Get("Content-Length") != "" {
		t.Fatalf("204: %v %q", resp.Header, body)
	}
	if _, body = c.response(t, "GET"); body != "hello" {
		t.Fatalf("after HEAD and 204: %q", body)
	}
}

func TestHTTP10KeepAliveAndClose(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stream" {
			io.WriteString(w, "a")
			w.(http.Flusher).Flush()
		}
		io.WriteString(w, "ok")
	}))
	c := dial(t, ts.addr)
	c.send(t, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	resp, body := c.response(t, "GET")
	if body != "ok" || resp.Close || resp.Header.Get("Connection") != "keep-alive" || resp.ProtoMinor != 0 {
		t.Fatalf("%q %v %v", body, resp.Close, resp.Header)
	}
	// Unknown length on HTTP/1.0: delimited by the close.
	c.send(t, "GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	if _, body := c.response(t, "GET"); body != "aok" {
		t.Fatalf("%q", body)
	}
	// "close" wins over "keep-alive" (RFC 9112 §9.3), as in net/http.
	c3 := dial(t, ts.addr)
	c3.send(t, "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n")
	if resp, _ := c3.response(t, "GET"); resp.Header.Get("Connection") != "close" {
		t.Fatalf("HTTP/1.0 asking to close answered with %v", resp.Header)
	}
	if !c3.closed(5 * time.Second) {
		t.Fatal("HTTP/1.0 asking to close kept open")
	}
	c2 := dial(t, ts.addr)
	c2.send(t, "GET / HTTP/1.0\r\n\r\n")
	if resp, _ := c2.response(t, "GET"); !resp.Close {
		t.Fatal("HTTP/1.0 without keep-alive kept open")
	}
	if !c2.closed(5 * time.Second) {
		t.Fatal("not closed")
	}
}

func TestUnreadBodyDrainedOrConnectionClosed(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ignored")
	}))
	c := dial(t, ts.addr)
	c.send(t, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
	c.response(t, "POST")
	if resp, body := c.response(t, "GET"); resp.StatusCode != 200 || body != "ignored" {
		t.Fatalf("request after a drained body: %d %q", resp.StatusCode, body)
	}
	c2 := dial(t, ts.addr)
	c2.send(t, fmt.Sprintf("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", maxDrain+1))
	if resp, _ := c2.response(t, "POST"); !resp.Close {
		t.Fatal("a body too long to drain kept the connection")
	}
	if !c2.closed(5 * time.Second) {
		t.Fatal("not closed")
	}
}

func TestHijackGetsBufferedBytes(t *testing.T) {
	done := make(chan struct{})
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(done)
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		if _, err := w.Write([]byte("x")); err != http.ErrHijacked {
			t.Errorf("Write after Hijack: %v", err)
		}
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		for i := 0; i < 2; i++ {
			line, err := brw.ReadString('\n')
			if err != nil {
				return
			}
			brw.WriteString("echo " + line)
			brw.Flush()
		}
	}))
	c := dial(t, ts.addr)
	// The first line rides with the request: it is in the server's buffer.
	c.send(t, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\none\n")
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("%v %v", resp, err)
	}
	c.send(t, "two\n")
	for _, want := range []string{"echo one\n", "echo two\n"} {
		if line, err := c.br.ReadString('\n'); line != want {
			t.Fatalf("got %q %v, want %q", line, err, want)
		}
	}
	within(t, 5*time.Second, "handler", done)
}

func TestHijackAfterWatcherStartedKeepsClientBytes(t *testing.T) {
	ready := make(chan struct{})
	proceed := make(chan struct{})
	done := make(chan string, 1)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(ready)
		<-proceed
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			done <- err.Error()
			return
		}
		defer conn.Close()
		line, _ := brw.ReadString('\n')
		done <- line
	}))
	c := dial(t, ts.addr)
	c.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	<-ready
	waitWatching(t, ts.Server)
	c.send(t, "early bytes\n")
	close(proceed)
	if got := within(t, 5*time.Second, "handler", done); got != "early bytes\n" {
		t.Fatalf("hijacker read %q", got)
	}
}

func TestAbortHandlerBreaksResponse(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    http.HandlerFunc
	}{
		{"buffered", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "partial")
			panic(http.ErrAbortHandler)
		}},
		{"content-length", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "100")
			io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}},
		{"chunked", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := start(t, tc.h)
			resp, err := client(t).Get(ts.url("/"))
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			if err == nil {
				t.Fatal("aborted response read as a success")
			}
			if ts.logs.String() != "" {
				t.Fatalf("ErrAbortHandler logged: %s", ts.logs)
			}
		})
	}
}

func TestPanicIsLoggedAndClosesConnection(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		panic("boom")
	}))
	c := dial(t, ts.addr)
	c.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if !c.closed(5 * time.Second) {
		t.Fatal("connection open after a panic")
	}
	if !strings.Contains(ts.logs.String(), "boom") {
		t.Fatalf("log: %q", ts.logs)
	}
}

func TestClientGoneCancelsContext(t *testing.T) {
	arrived, cancelled := make(chan struct{}), make(chan error, 1)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != http.NoBody {
			io.ReadAll(r.Body)
		}
		close(arrived)
		select {
		case <-r.Context().Done():
			cancelled <- r.Context().Err()
		case <-time.After(10 * time.Second):
			cancelled <- errors.New("not cancelled")
		}
	}))
	for _, req := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi",
	} {
		arrived = make(chan struct{})
		c := dial(t, ts.addr)
		c.send(t, req)
		within(t, 5*time.Second, "request", arrived)
		c.Close()
		if err := within(t, 5*time.Second, "cancellation", cancelled); err != context.Canceled {
			t.Fatalf("%q: %v", req, err)
		}
	}
}

func TestReadHeaderAndIdleTimeoutsCloseConnections(t *testing.T) {
	// Timeouts of a second, not less: the idle connection's request must
	// be read within the read-header timeout of its accept, and its
	// response written within the idle timeout, which a loaded machine
	// could miss.
	const idleTimeout = time.Second
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), func(s *Server) {
		s.ReadHeaderTimeout = time.Second
		s.IdleTimeout = idleTimeout
	})
	slow := dial(t, ts.addr)
	slow.send(t, "GET / HTTP/1.1\r\nHost: x\r\n")
	if !slow.closed(5 * time.Second) {
		t.Fatal("half a header kept the connection past ReadHeaderTimeout")
	}
	idle := dial(t, ts.addr)
	idle.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, _ := idle.response(t, "GET"); resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	start := time.Now()
	if !idle.closed(5 * time.Second) {
		t.Fatal("idle connection kept past IdleTimeout")
	}
	if d := time.Since(start); d < idleTimeout/2 {
		t.Fatalf("idle connection closed after %v, before IdleTimeout", d)
	}
}

// TestReadHeaderTimeoutCountsFromAcceptForFirstRequest: a client that
// waits almost the whole timeout before its first byte does not get the
// timeout afresh for the rest of its header.
func TestReadHeaderTimeoutCountsFromAcceptForFirstRequest(t *testing.T) {
	const timeout = 1500 * time.Millisecond
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), func(s *Server) {
		s.ReadHeaderTimeout = timeout
	})
	dialed := time.Now()
	slow := dial(t, ts.addr)
	time.Sleep(timeout * 8 / 10) // the client's own pace, not a wait for the server
	slow.send(t, "G")
	if !slow.closed(5 * time.Second) {
		t.Fatal("half a request line kept the connection")
	}
	// Counted afresh from the first byte it would end past 1.8 timeout;
	// counted from the accept, at the timeout, plus the time the dial,
	// the accept and the connection's goroutine took, which the bound
	// leaves a second for.
	if d := time.Since(dialed); d > timeout*17/10 {
		t.Fatalf("closed %v after accept, ReadHeaderTimeout is %v", d, timeout)
	}
}

func TestShutdownDrainsActiveRequestAndRefusesNewConnections(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(entered)
			<-release
		}
		io.WriteString(w, "done")
	}))
	c := client(t)
	// An idle keep-alive connection, which Shutdown closes at once.
	if resp, err := c.Get(ts.url("/")); err == nil {
		io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	result := make(chan string, 1)
	go func() {
		resp, err := client(t).Get(ts.url("/slow"))
		if err != nil {
			result <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		result <- fmt.Sprintf("%s close=%v", b, resp.Close)
	}()
	within(t, 5*time.Second, "slow request", entered)
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- ts.Shutdown(ctx)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", ts.addr, time.Second)
		if err != nil {
			break
		}
		conn.Close()
		if time.Now().After(deadline) {
			t.Fatal("listener still accepting after Shutdown")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	default:
	}
	close(release)
	if got := within(t, 5*time.Second, "slow response", result); got != "done close=true" {
		t.Fatalf("in-flight request got %q", got)
	}
	if err := within(t, 5*time.Second, "Shutdown", shut); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func TestShutdownDeadlineReturnsContextError(t *testing.T) {
	entered := make(chan struct{})
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done()
	}))
	c := dial(t, ts.addr)
	c.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	within(t, 5*time.Second, "request", entered)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := ts.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v", err)
	}
	ts.Close() // cancels the request's context; the handler returns
	if !c.closed(5 * time.Second) {
		t.Fatal("Close left the connection open")
	}
}

func TestServeAfterShutdownReturnsServerClosed(t *testing.T) {
	s := &Server{Handler: http.NotFoundHandler()}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := ln.Accept(); err == nil {
		t.Fatal("listener left open")
	}
}

func TestRequestFields(t *testing.T) {
	got := make(chan *http.Request, 1)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		got <- r
	}))
	c := dial(t, ts.addr)
	c.send(t, "POST /a%2Fb?q=1 HTTP/1.1\r\nHost: example.com:8080\r\nX-Multi: 1\r\nx-multi: 2\r\nContent-Length: 0\r\n\r\n")
	c.response(t, "POST")
	r := within(t, 5*time.Second, "request", got)
	if r.Method != "POST" || r.RequestURI != "/a%2Fb?q=1" || r.URL.Path != "/a/b" || r.URL.RawQuery != "q=1" ||
		r.Host != "example.com:8080" || r.Header.Get("Host") != "" || r.Proto != "HTTP/1.1" ||
		len(r.Header["X-Multi"]) != 2 || r.ContentLength != 0 || r.Body != http.NoBody ||
		r.RemoteAddr != c.LocalAddr().String() {
		t.Fatalf("%+v", r)
	}
	if la, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr); la == nil || la.String() != ts.addr {
		t.Fatalf("LocalAddrContextKey %v", la)
	}
}

func TestOneWriteForSmallResponse(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "hello")
	}))
	c := dial(t, ts.addr)
	c.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	// One write lands as one segment on loopback: a single read returns
	// the whole response.
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(buf[:n], []byte("\r\n\r\nhello")) || !bytes.Contains(buf[:n], []byte("Content-Length: 5\r\n")) {
		t.Fatalf("first read: %q", buf[:n])
	}
}

// waitWatching polls until a connection of s has its client-gone watcher
// read in progress.
func waitWatching(t testing.TB, s *Server) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		running := false
		for c := range s.conns {
			c.wmu.Lock()
			running = running || c.wRunning
			c.wmu.Unlock()
		}
		s.mu.Unlock()
		if running {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("watcher never started")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestBaseContextCancelEndsHTTP2AndHijackedRequests(t *testing.T) {
	base, cancel := context.WithCancel(context.Background())
	defer cancel()
	ended := make(chan string, 2)
	entered := make(chan struct{}, 2)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hijack" {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Errorf("hijack: %v", err)
				return
			}
			defer conn.Close()
		}
		entered <- struct{}{}
		<-r.Context().Done()
		ended <- r.URL.Path
	}), func(s *Server) { s.BaseContext = base })
	h2, _ := h2Client(t)
	go func() {
		if resp, err := h2.Get(ts.url("/h2")); err == nil {
			resp.Body.Close()
		}
	}()
	c := dial(t, ts.addr)
	c.send(t, "GET /hijack HTTP/1.1\r\nHost: x\r\n\r\n")
	within(t, 5*time.Second, "first request", entered)
	within(t, 5*time.Second, "second request", entered)
	cancel()
	got := map[string]bool{}
	got[within(t, 5*time.Second, "a cancelled request", ended)] = true
	got[within(t, 5*time.Second, "a cancelled request", ended)] = true
	if !got["/h2"] || !got["/hijack"] {
		t.Fatalf("ended: %v", got)
	}
}

func TestHandlerConnectionCloseEndsConnection(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		io.WriteString(w, "bye")
	}))
	c := dial(t, ts.addr)
	c.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, body := c.response(t, "GET")
	if body != "bye" || !resp.Close {
		t.Fatalf("%q close=%v %v", body, resp.Close, resp.Header)
	}
	if !c.closed(5 * time.Second) {
		t.Fatal("connection kept after the handler's Connection: close")
	}
}

func TestWriteTimeoutEndsStalledResponse(t *testing.T) {
	errc := make(chan error, 1)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The client never reads: writes fill the socket buffers, then
		// the write deadline ends them.
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		for i := 0; i < 4096; i++ {
			if _, err := w.Write(chunk); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}), func(s *Server) { s.WriteTimeout = 200 * time.Millisecond })
	c := dial(t, ts.addr)
	c.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	var ne net.Error
	if err := within(t, 10*time.Second, "stalled write", errc); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("write error %v, want a timeout", err)
	}
}

func TestShutdownServesRequestOfConnectionAcceptedBefore(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "late") }))
	c := dial(t, ts.addr)
	// Wait until the server has accepted it.
	deadline := time.Now().Add(5 * time.Second)
	for {
		ts.mu.Lock()
		n := len(ts.conns)
		ts.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("connection never tracked")
		}
		time.Sleep(time.Millisecond)
	}
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- ts.Shutdown(ctx)
	}()
	// The request must come after Shutdown has begun.
	for !ts.inShutdown.Load() {
		if time.Now().After(deadline) {
			t.Fatal("Shutdown never began")
		}
		time.Sleep(time.Millisecond)
	}
	c.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, body := c.response(t, "GET")
	if body != "late" || !resp.Close {
		t.Fatalf("%q close=%v", body, resp.Close)
	}
	if err := within(t, 5*time.Second, "Shutdown", shut); err != nil {
		t.Fatal(err)
	}
}

func TestFailedWriteCancelsContext(t *testing.T) {
	wrote, gone := make(chan struct{}), make(chan struct{})
	result := make(chan error, 1)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first")
		w.(http.Flusher).Flush()
		close(wrote)
		<-gone
		// Keep writing until the dead connection fails a write.
		chunk := bytes.Repeat([]byte("x"), 32<<10)
		for i := 0; i < 1000; i++ {
			if _, err := w.Write(chunk); err != nil {
				break
			}
			w.(http.Flusher).Flush()
		}
		result <- r.Context().Err()
	}))
	c := dial(t, ts.addr)
	c.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	within(t, 5*time.Second, "first write", wrote)
	c.Close()
	close(gone)
	if err := within(t, 5*time.Second, "handler", result); err != context.Canceled {
		t.Fatalf("context after a failed write: %v", err)
	}
}

func TestExpectContinueWithNetHTTPClient(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%d", len(b))
	}))
	tr := &http.Transport{ExpectContinueTimeout: 10 * time.Second}
	defer tr.CloseIdleConnections()
	var got100 atomic.Bool
	trace := &httptrace.ClientTrace{Got100Continue: func() { got100.Store(true) }}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "PUT", ts.url("/"), strings.NewReader(strings.Repeat("z", 1000)))
	req.Header.Set("Expect", "100-continue")
	start := time.Now()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// Without the 100 the client would wait out ExpectContinueTimeout.
	if string(b) != "1000" || !got100.Load() || time.Since(start) > 5*time.Second {
		t.Fatalf("%q, 100 seen: %v, after %v", b, got100.Load(), time.Since(start))
	}
}

func TestNoInformationalResponseToHTTP10(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusEarlyHints)
		io.WriteString(w, "final")
	}))
	c := dial(t, ts.addr)
	c.send(t, "GET / HTTP/1.0\r\n\r\n")
	if resp, body := c.response(t, "GET"); resp.StatusCode != 200 || body != "final" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
}

// Empty lines after a request (which a server skips before the next
// request line, RFC 9112 §2.2) are no header block: the wait for the
// next request stays bounded by the idle timeout, and a head begun after
// them by the read-header timeout. A buffered "\r\n\r\n" was taken for a
// whole head, and the connection was left with no deadline at all.
func TestEmptyLinesAfterRequestKeepTimeouts(t *testing.T) {
	for _, tc := range []struct {
		name      string
		rht, idle time.Duration
		tail      string
	}{
		// Timeouts of a second, not less: the request must be read
		// within the read-header timeout of the accept, and its response
		// written within the idle timeout, which a loaded machine could
		// miss.
		{"empty lines, both timeouts", time.Second, time.Second, "\r\n\r\n"},
		{"empty lines, idle timeout only", 0, time.Second, "\r\n\r\n"},
		{"bare LFs, idle timeout only", 0, time.Second, "\n\n"},
		{"empty lines and half a head", time.Second, time.Second, "\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), func(s *Server) {
				s.ReadHeaderTimeout = tc.rht
				s.IdleTimeout = tc.idle
			})
			c := dial(t, ts.addr)
			c.send(t, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"+tc.tail)
			if resp, _ := c.response(t, "GET"); resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if !c.closed(5 * time.Second) {
				t.Fatalf("connection kept open after %q past its timeouts", tc.tail)
			}
		})
	}
	// The request after an empty line is served as before.
	ts := start(t, pathHandler())
	c := dial(t, ts.addr)
	c.send(t, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
	for _, want := range []string{"/a", "/b"} {
		if resp, body := c.response(t, "GET"); resp.StatusCode != 200 || body != want {
			t.Fatalf("%d %q, want 200 %q", resp.StatusCode, body, want)
		}
	}
}

// Fields that must not be trailers (RFC 9110 §6.5.1: framing, routing,
// authentication, request modifiers, content metadata; x/net's
// ValidTrailerHeader list, which the HTTP/2 listener applies) are not
// passed on from a chunked body's trailer section, and a Trailer header
// that declares one is refused, as the HTTP/2 listener refuses the
// request: the handler would otherwise forward, say, an Authorization
// or Connection field that no one checked as a header.
func TestRequestTrailersThatMustNotBeTrailers(t *testing.T) {
	got := make(chan http.Header, 1)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		got <- r.Trailer
	}))
	c := dial(t, ts.addr)
	c.send(t, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"+
		"5\r\nhello\r\n0\r\nX-Sum: 42\r\nAuthorization: Bearer x\r\nConnection: close\r\nContent-Type: text/evil\r\nCache-Control: no-store\r\n\r\n")
	resp, _ := c.response(t, "POST")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	tr := within(t, 5*time.Second, "handler", got)
	if tr.Get("X-Sum") != "42" || len(tr) != 1 {
		t.Fatalf("trailers %v, want X-Sum alone", tr)
	}
	for _, k := range []string{"Authorization", "Connection", "Content-Type", "Te", "Expect"} {
		c := dial(t, ts.addr)
		c.send(t, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum, "+k+"\r\n\r\n0\r\n\r\n")
		if resp, _ := c.response(t, "POST"); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("Trailer declaring %s: status %d, want 400", k, resp.StatusCode)
		}
	}
}

// A client that half-closes its connection after its request reads as
// one gone: its request's context is cancelled. A handler that then
// returns without writing (a proxy that dropped the upstream request it
// was waiting on) gave no answer, and the server sent the default 200
// with no body in its name, a success the client could read.
func TestNoDefaultResponseAfterTheClientWentAway(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The body first, as a proxy sends it upstream: the watch for
		// the client starts at its end.
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
			w.WriteHeader(http.StatusGatewayTimeout)
		}
	}))
	for _, req := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi",
		"GET / HTTP/1.0\r\n\r\n",
	} {
		c := dial(t, ts.addr)
		c.send(t, req)
		if err := c.Conn.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(c.br)
		if len(got) > 0 || err != nil {
			t.Fatalf("%q: the client got %q (%v), want the connection's end", req, got, err)
		}
	}
}

// A close the client did not ask for (here the handler's "Connection:
// close"; Shutdown's is the same) may meet a request the client
// pipelined, arriving once the server has stopped reading. Closed with
// it unread, the socket sent a reset and dropped what it still held of
// the response: the client read a cut-off body and ECONNRESET (RFC 9112
// §9.6). The connection is closed in stages instead.
func TestServerCloseDoesNotResetAClientThatPipelined(t *testing.T) {
	body := strings.Repeat("x", 8<<20) // more than the socket buffers hold
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		io.WriteString(w, body)
	}))
	for i := 0; i < 5; i++ {
		c := dial(t, ts.addr)
		c.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(c.br, &http.Request{Method: "GET"})
		if err != nil {
			t.Fatal(err)
		}
		// The next request, before the response has been read: the
		// server is still writing it.
		c.send(t, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
		n, err := io.Copy(io.Discard, resp.Body)
		if err != nil || n != int64(len(body)) {
			t.Fatalf("connection %d: read %d of %d bytes: %v", i, n, len(body), err)
		}
		c.Close()
	}
}

// SetKeepAlivesEnabled(false) has each response from then on say
// Connection: close and close its connection, an idle keep-alive
// connection's next one included, while the Server goes on accepting;
// the idle connection itself is left for that request. True undoes it.
func TestKeepAlivesDisabledCloseAfterTheNextResponse(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	idle := dial(t, ts.addr)
	idle.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, _ := idle.response(t, "GET"); resp.Close {
		t.Fatal("Connection: close before SetKeepAlivesEnabled(false)")
	}
	ts.SetKeepAlivesEnabled(false)
	idle.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, body := idle.response(t, "GET"); !resp.Close || body != "ok" {
		t.Fatalf("the idle connection's next response: close=%v %q", resp.Close, body)
	}
	if !idle.closed(5 * time.Second) {
		t.Fatal("the connection stayed open after Connection: close")
	}
	ts.SetKeepAlivesEnabled(true)
	again := dial(t, ts.addr)
	for range 2 {
		again.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, _ := again.response(t, "GET"); resp.Close {
			t.Fatal("Connection: close after SetKeepAlivesEnabled(true)")
		}
	}
}
