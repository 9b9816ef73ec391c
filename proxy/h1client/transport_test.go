package h1client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/internal/proxytest"
)

func TestKeepAliveReusesOneConnection(t *testing.T) {
	s := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", r.URL.Path)
	})
	tr := newTransport(t)
	var reused []bool
	for i := range 5 {
		req, _ := http.NewRequest("GET", fmt.Sprintf("%s/p%d", s.URL, i), nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) { reused = append(reused, info.Reused) },
		}))
		resp, body := do(t, tr, req)
		if resp.StatusCode != 200 || body != fmt.Sprintf("hello /p%d", i) {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
		if resp.ContentLength != int64(len(body)) || resp.Proto != "HTTP/1.1" || resp.Request != req {
			t.Fatalf("ContentLength %d, Proto %q, Request %p", resp.ContentLength, resp.Proto, resp.Request)
		}
	}
	if n := s.opened.Load(); n != 1 {
		t.Fatalf("server saw %d connections, want 1", n)
	}
	want := []bool{false, true, true, true, true}
	if fmt.Sprint(reused) != fmt.Sprint(want) {
		t.Fatalf("GotConn Reused = %v, want %v", reused, want)
	}
}

func TestContentLengthRequestAndResponse(t *testing.T) {
	s := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Got-Length", fmt.Sprint(r.ContentLength))
		w.Header().Set("X-Got-TE", strings.Join(r.TransferEncoding, ","))
		w.Write(bytes.ToUpper(b))
	})
	tr := newTransport(t)
	for _, size := range []int{1, 100, 5000, 100 << 10} { // within and beyond the write buffer
		payload := strings.Repeat("a", size)
		req, _ := http.NewRequest("POST", s.URL+"/echo", strings.NewReader(payload))
		resp, body := do(t, tr, req)
		if body != strings.ToUpper(payload) {
			t.Fatalf("size %d: body of %d bytes, want %d", size, len(body), size)
		}
		if got := resp.Header.Get("X-Got-Length"); got != fmt.Sprint(size) {
			t.Fatalf("size %d: server saw ContentLength %s", size, got)
		}
		if got := resp.Header.Get("X-Got-TE"); got != "" {
			t.Fatalf("server saw Transfer-Encoding %q", got)
		}
		if resp.ContentLength != int64(size) && (resp.ContentLength != -1 || resp.TransferEncoding == nil) {
			t.Fatalf("response ContentLength %d, TransferEncoding %v", resp.ContentLength, resp.TransferEncoding)
		}
	}
	if n := s.opened.Load(); n != 1 {
		t.Fatalf("server saw %d connections, want 1", n)
	}
}

func TestShortRequestBodyIsAnError(t *testing.T) {
	s := startServer(t, func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) })
	tr := newTransport(t)
	req, _ := http.NewRequest("POST", s.URL, io.NopCloser(strings.NewReader("abc")))
	req.ContentLength = 10
	_, err := tr.RoundTrip(req)
	if err == nil || !strings.Contains(err.Error(), "7 bytes short of its ContentLength") {
		t.Fatalf("err = %v", err)
	}
}

func TestChunkedRequestWithTrailers(t *testing.T) {
	type seen struct {
		te      []string
		body    string
		trailer http.Header
	}
	got := make(chan seen, 1)
	s := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.TransferEncoding, string(b), r.Trailer}
	})
	tr := newTransport(t)
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("PUT", s.URL, pr)
	req.ContentLength = -1
	req.Trailer = http.Header{"X-Checksum": nil}
	go func() {
		pw.Write([]byte("part one, "))
		pw.Write([]byte("part two"))
		req.Trailer.Set("X-Checksum", "abc123")
		pw.Close()
	}()
	resp, _ := do(t, tr, req)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	sn := <-got
	if fmt.Sprint(sn.te) != "[chunked]" || sn.body != "part one, part two" || sn.trailer.Get("X-Checksum") != "abc123" {
		t.Fatalf("server saw TE %v body %q trailer %v", sn.te, sn.body, sn.trailer)
	}
}

func TestUnknownLengthBodyProbed(t *testing.T) {
	type seen struct {
		cl   int64
		te   []string
		body string
	}
	got := make(chan seen, 2)
	s := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.ContentLength, r.TransferEncoding, string(b)}
	})
	tr := newTransport(t)
	// ContentLength 0 with a non-empty body: sent chunked.
	req, _ := http.NewRequest("POST", s.URL, nil)
	req.Body = io.NopCloser(strings.NewReader("surprise"))
	do(t, tr, req)
	if sn := <-got; sn.body != "surprise" || fmt.Sprint(sn.te) != "[chunked]" {
		t.Fatalf("server saw %+v", sn)
	}
	// ContentLength 0 with an empty body: Content-Length: 0.
	req, _ = http.NewRequest("POST", s.URL, nil)
	req.Body = io.NopCloser(strings.NewReader(""))
	do(t, tr, req)
	if sn := <-got; sn.body != "" || sn.cl != 0 || sn.te != nil {
		t.Fatalf("server saw %+v", sn)
	}
}

func TestChunkedResponseTrailers(t *testing.T) {
	s := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Announced")
		w.Write([]byte("first "))
		w.(http.Flusher).Flush() // forces chunked encoding
		w.Write([]byte("second"))
		w.Header().Set("X-Announced", "a")
		w.Header().Set(http.TrailerPrefix+"X-Unannounced", "u")
	})
	tr := newTransport(t)
	resp, err := tr.RoundTrip(mustRequest(t, "GET", s.URL, nil))
	if err != nil {
		t.Fatal(err)
	}
	if resp.ContentLength != -1 || fmt.Sprint(resp.TransferEncoding) != "[chunked]" {
		t.Fatalf("ContentLength %d, TransferEncoding %v", resp.ContentLength, resp.TransferEncoding)
	}
	if v, ok := resp.Trailer["X-Announced"]; !ok || v != nil {
		t.Fatalf("before EOF: Trailer = %v, want the announced key with a nil value", resp.Trailer)
	}
	if _, ok := resp.Header["Trailer"]; ok {
		t.Fatal("the Trailer field stayed in Header")
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(b) != "first second" {
		t.Fatalf("body %q, %v", b, err)
	}
	if resp.Trailer.Get("X-Announced") != "a" || resp.Trailer.Get("X-Unannounced") != "u" {
		t.Fatalf("after EOF: Trailer = %v", resp.Trailer)
	}
	get(t, tr, s.URL)
	if n := s.opened.Load(); n != 1 {
		t.Fatalf("server saw %d connections, want 1 (chunked body read to EOF is reusable)", n)
	}
}

func TestCloseDelimitedBody(t *testing.T) {
	rs := startRaw(t, func(c net.Conn, br *bufio.Reader, _ int) {
		if _, _, err := readRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end")
	})
	tr := newTransport(t)
	for range 2 {
		resp, body := get(t, tr, "http://"+rs.addr+"/")
		if body != "until the end" || !resp.Close || resp.ContentLength != -1 {
			t.Fatalf("body %q, Close %v, ContentLength %d", body, resp.Close, resp.ContentLength)
		}
	}
	if n := rs.accepted.Load(); n != 2 {
		t.Fatalf("%d connections, want 2: a close-delimited body's connection is not reused", n)
	}
}

func TestResponsesWithoutBody(t *testing.T) {
	s := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/204":
			w.WriteHeader(204)
		case "/304":
			w.WriteHeader(304)
		default:
			w.Header().Set("Content-Length", "11")
			w.Write([]byte("hello world"))
		}
	})
	tr := newTransport(t)
	for _, c := range []struct {
		method, path string
		status       int
		cl           int64
	}{
		{"HEAD", "/", 200, 11},
		{"GET", "/204", 204, 0},
		{"GET", "/304", 304, 0},
		{"HEAD", "/", 200, 11},
	} {
		resp, err := tr.RoundTrip(mustRequest(t, c.method, s.URL+c.path, nil))
		if err != nil {
			t.Fatal(err)
		}
		if resp.Body != http.NoBody || resp.StatusCode != c.status || resp.ContentLength != c.cl {
			t.Fatalf("%s %s: status %d, ContentLength %d, Body %T", c.method, c.path, resp.StatusCode, resp.ContentLength, resp.Body)
		}
		resp.Body.Close()
	}
	if n := s.opened.Load(); n != 1 {
		t.Fatalf("server saw %d connections, want 1", n)
	}
}

func TestEarlyHintsReportedThroughTrace(t *testing.T) {
	s := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		w.Write([]byte("final"))
	})
	tr := newTransport(t)
	var codes []int
	var link string
	req := mustRequest(t, "GET", s.URL, nil)
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			codes = append(codes, code)
			link = h.Get("Link")
			return nil
		},
	}))
	resp, body := do(t, tr, req)
	if resp.StatusCode != 200 || body != "final" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	if fmt.Sprint(codes) != "[103]" || link != "</style.css>; rel=preload" {
		t.Fatalf("1xx codes %v, Link %q", codes, link)
	}
}

func TestExpectContinue(t *testing.T) {
	var bodyRead atomic.Bool
	s := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/refuse" {
			w.WriteHeader(http.StatusExpectationFailed)
			return
		}
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	})
	tr := newTransport(t, func(tr *Transport) { tr.ExpectContinueTimeout = 5 * time.Second })

	t.Run("server asks for the body", func(t *testing.T) {
		var got100, wait atomic.Bool
		req := mustRequest(t, "POST", s.URL+"/accept", strings.NewReader("the body"))
		req.Header.Set("Expect", "100-continue")
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			Wait100Continue: func() { wait.Store(true) },
			Got100Continue:  func() { got100.Store(true) },
		}))
		resp, body := do(t, tr, req)
		if resp.StatusCode != 200 || body != "the body" || !got100.Load() || !wait.Load() {
			t.Fatalf("got %d %q, Wait100Continue %v, Got100Continue %v", resp.StatusCode, body, wait.Load(), got100.Load())
		}
	})
	t.Run("server refuses", func(t *testing.T) {
		opened := s.opened.Load()
		req := mustRequest(t, "POST", s.URL+"/refuse", &spyReader{r: strings.NewReader("unwanted"), read: &bodyRead})
		req.ContentLength = int64(len("unwanted"))
		req.Header.Set("Expect", "100-continue")
		resp, _ := do(t, tr, req)
		if resp.StatusCode != http.StatusExpectationFailed || bodyRead.Load() {
			t.Fatalf("status %d, body read %v", resp.StatusCode, bodyRead.Load())
		}
		get(t, tr, s.URL+"/accept")
		if s.opened.Load() == opened {
			t.Fatal("the connection whose body was refused was reused")
		}
	})
}

func TestExpectContinueTimeoutSendsBody(t *testing.T) {
	got := make(chan string, 1)
	rs := startRaw(t, func(c net.Conn, br *bufio.Reader, _ int) {
		// Never says 100 Continue: reads the head, then the body.
		req, body, err := readRequest(br)
		if err != nil {
			return
		}
		got <- req.Header.Get("Expect") + " " + string(body)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	})
	tr := newTransport(t, func(tr *Transport) { tr.ExpectContinueTimeout = 50 * time.Millisecond })
	req := mustRequest(t, "POST", "http://"+rs.addr, strings.NewReader("late body"))
	req.Header.Set("Expect", "100-continue")
	if resp, _ := do(t, tr, req); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if s := <-got; s != "100-continue late body" {
		t.Fatalf("server saw %q", s)
	}
}

type spyReader struct {
	r    io.Reader
	read *atomic.Bool
}

func (s *spyReader) Read(p []byte) (int, error) { s.read.Store(true); return s.r.Read(p) }

func TestUpgradeEchoesThroughBody(t *testing.T) {
	s := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "no upgrade", 400)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		// Head and first bytes in one write: the client must hand out
		// what it buffered first.
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nwelcome;")
		io.Copy(c, brw)
	})
	tr := newTransport(t)
	req := mustRequest(t, "GET", s.URL, nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "echo")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	rwc, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		t.Fatalf("101 body is %T, not an io.ReadWriteCloser", resp.Body)
	}
	if _, err := io.WriteString(rwc, "ping"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len("welcome;ping"))
	if _, err := io.ReadFull(rwc, buf); err != nil || string(buf) != "welcome;ping" {
		t.Fatalf("read %q, %v", buf, err)
	}
	rwc.Close()
	eventually(t, "upgraded connection closed", func() bool { return s.closed.Load() == 1 })
}

func TestCancelWhileWaitingForHeaders(t *testing.T) {
	arrived := make(chan struct{})
	s := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-r.Context().Done() // until the client's connection closes
	})
	tr := newTransport(t)
	cause := errors.New("caller gave up")
	ctx, cancel := context.WithCancelCause(context.Background())
	req := mustRequest(t, "GET", s.URL, nil).WithContext(ctx)
	errc := make(chan error, 1)
	go func() {
		_, err := tr.RoundTrip(req)
		errc <- err
	}()
	<-arrived
	cancel(cause)
	select {
	case err := <-errc:
		if !errors.Is(err, cause) {
			t.Fatalf("err = %v, want the context's cause", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("RoundTrip did not return after cancellation")
	}
	eventually(t, "server to see the connection closed", func() bool { return s.closed.Load() == 1 })
}

func TestCancelMidBody(t *testing.T) {
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
	ctx, cancel := context.WithCancel(context.Background())
	resp, err := tr.RoundTrip(mustRequest(t, "GET", s.URL, nil).WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, err := resp.Body.Read(buf)
	if err != nil || !strings.HasPrefix("first part", string(buf[:n])) {
		t.Fatalf("first read %q, %v", buf[:n], err)
	}
	time.AfterFunc(20*time.Millisecond, cancel)
	_, err = io.ReadAll(resp.Body)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("read after cancel: %v, want context.Canceled", err)
	}
	resp.Body.Close()
	eventually(t, "server to see the connection closed", func() bool { return s.closed.Load() == 1 })
}

func TestCloseBeforeEOF(t *testing.T) {
	big := strings.Repeat("x", 1<<20)
	s := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/small" {
			w.Write([]byte("tiny"))
			return
		}
		w.Write([]byte(big))
	})
	tr := newTransport(t)
	resp, err := tr.RoundTrip(mustRequest(t, "GET", s.URL+"/big", nil))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Read(make([]byte, 10))
	resp.Body.Close()
	if _, err := resp.Body.Read(make([]byte, 1)); err == nil {
		t.Fatal("Read after Close succeeded")
	}
	eventually(t, "connection closed", func() bool { return s.closed.Load() == 1 })

	// A remainder already buffered is skipped, and the connection kept.
	resp, err = tr.RoundTrip(mustRequest(t, "GET", s.URL+"/small", nil))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "body buffered", func() bool {
		return resp.Body.(*responseBody).c.br.Buffered() >= 4
	})
	resp.Body.Close()
	get(t, tr, s.URL+"/small")
	if n := s.opened.Load(); n != 2 {
		t.Fatalf("server saw %d connections, want 2", n)
	}
}

// closeAfterOne serves one response per connection, then closes it
// although the response said nothing of closing: the client's idle
// connection is stale.
func closeAfterOne(t *testing.T) *rawServer {
	return startRaw(t, func(c net.Conn, br *bufio.Reader, n int) {
		if _, _, err := readRequest(br); err != nil {
			return
		}
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n%d", n)
	})
}

func TestStaleIdleConnectionRetried(t *testing.T) {
	rs := closeAfterOne(t)
	tr := newTransport(t, func(tr *Transport) {
		tr.noSweep = true // the stale connections must stay
		tr.Dial = hiddenSocketDial
	})
	if _, body := get(t, tr, "http://"+rs.addr); body != "0" {
		t.Fatalf("first body %q", body)
	}
	// The server closes the idle connection: the GET is sent again, with
	// one GotConn for the round trip.
	gotConn := 0
	req := mustRequest(t, "GET", "http://"+rs.addr, nil)
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) { gotConn++ },
	}))
	if _, body := do(t, tr, req); body != "1" || gotConn != 1 {
		t.Fatalf("second body %q, GotConn called %d times", body, gotConn)
	}
	// A body that cannot be sent again is not resent, even with an
	// Idempotency-Key.
	req = mustRequest(t, "PUT", "http://"+rs.addr, nil)
	req.Body = io.NopCloser(strings.NewReader("payload"))
	req.ContentLength = 7
	req.Header.Set("Idempotency-Key", "k1")
	if _, err := tr.RoundTrip(req); err == nil {
		t.Fatal("a PUT whose body cannot be rewound was sent again")
	}
	if n := rs.accepted.Load(); n != 2 {
		t.Fatalf("accepted %d, want 2", n)
	}
	// With GetBody (and an Idempotency-Key, as net/http asks) it is.
	get(t, tr, "http://"+rs.addr) // leaves an idle connection that will be stale
	req = mustRequest(t, "PUT", "http://"+rs.addr, strings.NewReader("payload"))
	req.Header.Set("Idempotency-Key", "k2")
	if _, body := do(t, tr, req); body != "3" {
		t.Fatalf("body %q, want the fourth connection's", body)
	}
}

// hiddenSocketDial dials connections that hide their socket, so that
// they cannot be peeked at: a server's close is found only by the
// exchange, as when it is still on its way when a request takes the
// connection.
func hiddenSocketDial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return struct{ net.Conn }{c}, nil
}

func TestStaleRetryDoesNotTakeAnotherIdleConnection(t *testing.T) {
	rs := closeAfterOne(t)
	tr := newTransport(t, func(tr *Transport) {
		tr.noSweep = true
		tr.Dial = hiddenSocketDial
	})
	// Two connections, each answered once and then closed by the
	// server, as a server restarting closes every one: both idle.
	var resps []*http.Response
	for range 2 {
		resp, err := tr.RoundTrip(mustRequest(t, "GET", "http://"+rs.addr, nil))
		if err != nil {
			t.Fatal(err)
		}
		resps = append(resps, resp)
	}
	for _, resp := range resps {
		io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	// The GET fails on one stale connection and is sent again on a new
	// one, not on the other stale one.
	resp, err := tr.RoundTrip(mustRequest(t, "GET", "http://"+rs.addr, nil))
	if err != nil {
		t.Fatalf("GET after the server closed its idle connections: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "2" {
		t.Fatalf("body %q, want the third connection's", b)
	}
}

func TestStaleIdleConnectionFoundByPeek(t *testing.T) {
	rs := closeAfterOne(t)
	clk := proxytest.NewClock(time.Unix(1000, 0))
	tr := newTransport(t, func(tr *Transport) { tr.Now = clk.Now; tr.IdleTimeout = time.Minute; tr.noSweep = true })
	var reused []bool
	post := func() {
		req := mustRequest(t, "POST", "http://"+rs.addr, nil) // never resent: the peek must find it
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) { reused = append(reused, info.Reused) },
		}))
		do(t, tr, req)
	}
	post()
	eventually(t, "the server's close to reach the idle connection", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		for _, hp := range tr.hosts {
			return len(hp.idle) == 1 && !peekAlive(hp.idle[0].raw, false)
		}
		return false
	})
	clk.Advance(2 * time.Second)
	post()
	if fmt.Sprint(reused) != "[false false]" {
		t.Fatalf("GotConn Reused %v: the closed idle connection was not found by the peek", reused)
	}
}

func TestMaxConnsPerHostQueues(t *testing.T) {
	release := make(chan struct{})
	var inHandler atomic.Int32
	s := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		inHandler.Add(1)
		if r.URL.Path == "/hold" {
			<-release
		}
		w.Write([]byte("ok"))
	})
	// Let go before the server's Close, which waits for the handler,
	// should the test fail first.
	letGo := sync.OnceFunc(func() { close(release) })
	t.Cleanup(letGo)
	tr := newTransport(t, func(tr *Transport) { tr.MaxConnsPerHost = 1 })
	held := make(chan error, 1)
	go func() {
		resp, err := tr.RoundTrip(mustRequest(t, "GET", s.URL+"/hold", nil))
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		held <- err
	}()
	eventually(t, "first request in the handler", func() bool { return inHandler.Load() == 1 })

	// A queued request whose context ends gives up. A second, not less:
	// a context that ended before the round trip looked for a connection
	// fails it without a wait, which a loaded machine could bring about
	// with a shorter one.
	_, err := tr.RoundTrip(mustRequest(t, "GET", s.URL, nil).WithContext(ctxTimeout(t, time.Second)))
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "waiting for a connection") {
		t.Fatalf("err = %v", err)
	}
	// A queued request gets the connection once the first is done.
	queued := make(chan error, 1)
	go func() {
		_, err := tr.RoundTrip(mustRequest(t, "GET", s.URL, nil))
		queued <- err
	}()
	eventually(t, "second request queued", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		for _, hp := range tr.hosts {
			return len(hp.waiters) == 1
		}
		return false
	})
	letGo()
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	if err := <-queued; err != nil {
		t.Fatal(err)
	}
	if n := s.opened.Load(); n != 1 {
		t.Fatalf("server saw %d connections, want 1", n)
	}
}

func TestIdleExpiryByInjectedClock(t *testing.T) {
	s := startServer(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	clk := proxytest.NewClock(time.Unix(1000, 0))
	tr := newTransport(t, func(tr *Transport) { tr.Now = clk.Now; tr.IdleTimeout = 30 * time.Second })
	get(t, tr, s.URL)
	clk.Advance(29 * time.Second) // old enough for the peek, not to expire
	get(t, tr, s.URL)
	if n := s.opened.Load(); n != 1 {
		t.Fatalf("server saw %d connections before expiry, want 1", n)
	}
	clk.Advance(30 * time.Second)
	get(t, tr, s.URL)
	if n := s.opened.Load(); n != 2 {
		t.Fatalf("server saw %d connections after expiry, want 2", n)
	}
	eventually(t, "expired connection closed", func() bool { return s.closed.Load() == 1 })
}

func TestMaxIdlePerHost(t *testing.T) {
	release := make(chan struct{})
	var inHandler atomic.Int32
	s := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		inHandler.Add(1)
		<-release
	})
	tr := newTransport(t, func(tr *Transport) { tr.MaxIdlePerHost = 1 })
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := tr.RoundTrip(mustRequest(t, "GET", s.URL, nil))
			if err == nil {
				resp.Body.Close()
			}
		}()
	}
	eventually(t, "three requests in flight", func() bool { return inHandler.Load() == 3 })
	close(release)
	wg.Wait()
	eventually(t, "two of three connections closed", func() bool { return s.closed.Load() == 2 })
}

func TestCloseIdleConnections(t *testing.T) {
	s := startServer(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	tr := newTransport(t)
	get(t, tr, s.URL)
	tr.CloseIdleConnections()
	eventually(t, "idle connection closed", func() bool { return s.closed.Load() == 1 })
	get(t, tr, s.URL)
	if n := s.opened.Load(); n != 2 {
		t.Fatalf("server saw %d connections, want 2", n)
	}
}

func TestTLS(t *testing.T) {
	s := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "tls %v %s", r.TLS != nil, r.Host)
	}))
	defer s.Close()
	var opened atomic.Int32
	tr := newTransport(t, func(tr *Transport) {
		tr.TLSClientConfig = s.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
		tr.ConnectTimeout = 5 * time.Second
		tr.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			opened.Add(1)
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}
	})
	for range 3 {
		resp, body := get(t, tr, s.URL)
		if !strings.HasPrefix(body, "tls true") || resp.TLS == nil || resp.TLS.NegotiatedProtocol != "http/1.1" {
			t.Fatalf("body %q, TLS %+v", body, resp.TLS)
		}
	}
	if n := opened.Load(); n != 1 {
		t.Fatalf("dialled %d times, want 1", n)
	}
	// A server certificate not trusted is a handshake error.
	tr2 := newTransport(t, func(tr *Transport) { tr.TLSClientConfig = &tls.Config{} })
	_, err := tr2.RoundTrip(mustRequest(t, "GET", s.URL, nil))
	var he *HandshakeError
	if !errors.As(err, &he) || he.Addr != s.Listener.Addr().String() || !strings.Contains(err.Error(), "tls handshake") {
		t.Fatalf("err = %v", err)
	}
	tr.CloseIdleConnections()
}

type dialError struct{ addr string }

func (e *dialError) Error() string { return "cannot reach " + e.addr }

func TestDialErrorsStayVisible(t *testing.T) {
	tr := newTransport(t, func(tr *Transport) {
		tr.Dial = func(_ context.Context, _, addr string) (net.Conn, error) { return nil, &dialError{addr} }
	})
	_, err := tr.RoundTrip(mustRequest(t, "GET", "http://127.0.0.1:1/", nil))
	var de *dialError
	if !errors.As(err, &de) || de.addr != "127.0.0.1:1" {
		t.Fatalf("err = %v, want a *dialError", err)
	}
	// The failed dial gave its slot back.
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, hp := range tr.hosts {
		if hp.open != 0 {
			t.Fatalf("open = %d after a failed dial", hp.open)
		}
	}
}

func TestRequestOnTheWire(t *testing.T) {
	heads := make(chan string, 10)
	rs := startRaw(t, func(c net.Conn, br *bufio.Reader, _ int) {
		for {
			var head strings.Builder
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					return
				}
				head.WriteString(line)
				if line == "\r\n" {
					break
				}
			}
			heads <- head.String()
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		}
	})
	tr := newTransport(t)
	base := "http://" + rs.addr

	req := mustRequest(t, "GET", base+"/a%2Fb/c?q=1&r=%20", nil)
	req.Header["User-Agent"] = []string{""}
	req.Host = "svc.internal"
	do(t, tr, req)
	h := <-heads
	if !strings.HasPrefix(h, "GET /a%2Fb/c?q=1&r=%20 HTTP/1.1\r\nHost: svc.internal\r\n") {
		t.Fatalf("head %q", h)
	}
	for _, absent := range []string{"User-Agent", "Accept-Encoding", "Content-Length", "Transfer-Encoding"} {
		if strings.Contains(h, absent) {
			t.Fatalf("head has %s: %q", absent, h)
		}
	}

	req = mustRequest(t, "POST", base+"/", nil)
	req.Close = true
	do(t, tr, req)
	h = <-heads
	if !strings.Contains(h, "Content-Length: 0\r\n") || !strings.Contains(h, "Connection: close\r\n") {
		t.Fatalf("POST without body: head %q", h)
	}
	if n := rs.accepted.Load(); n != 1 {
		t.Fatalf("accepted %d", n)
	}
	get(t, tr, base+"/")
	<-heads
	if n := rs.accepted.Load(); n != 2 {
		t.Fatalf("accepted %d, want 2: Request.Close ends the connection", n)
	}
}

func TestInvalidRequestsRefusedBeforeDialling(t *testing.T) {
	var dials atomic.Int32
	tr := newTransport(t, func(tr *Transport) {
		tr.Dial = func(context.Context, string, string) (net.Conn, error) {
			dials.Add(1)
			return nil, errors.New("no dialling in this test")
		}
	})
	mk := func(f func(r *http.Request)) *http.Request {
		r := mustRequest(t, "GET", "http://example.test/", nil)
		f(r)
		return r
	}
	for name, c := range map[string]struct {
		req  *http.Request
		want string
	}{
		"name with space":    {mk(func(r *http.Request) { r.Header["Bad Name"] = []string{"v"} }), "invalid header field name"},
		"name with colon":    {mk(func(r *http.Request) { r.Header["X-A:b"] = []string{"v"} }), "invalid header field name"},
		"value with CRLF":    {mk(func(r *http.Request) { r.Header.Set("X-Inject", "v\r\nX-Evil: 1") }), "invalid header field value"},
		"value with NUL":     {mk(func(r *http.Request) { r.Header.Set("X-A", "a\x00b") }), "invalid header field value"},
		"host with CRLF":     {mk(func(r *http.Request) { r.Host = "a\r\nX: y" }), "invalid Host"},
		"method with space":  {mk(func(r *http.Request) { r.Method = "GET /x" }), "invalid method"},
		"query with space":   {mk(func(r *http.Request) { r.URL.RawQuery = "a b" }), "request target"},
		"query with newline": {mk(func(r *http.Request) { r.URL.RawQuery = "a\nb" }), "request target"},
		"scheme":             {mk(func(r *http.Request) { r.URL.Scheme = "ftp" }), "unsupported scheme"},
		"trailer key":        {mk(func(r *http.Request) { r.Trailer = http.Header{"Content-Length": nil} }), "may not be a trailer"},
	} {
		_, err := tr.RoundTrip(c.req)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", name, err, c.want)
		}
		if !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("%s: %v is not ErrInvalidRequest", name, err)
		}
	}
	if n := dials.Load(); n != 0 {
		t.Fatalf("dialled %d times for invalid requests", n)
	}
	// A request that fails otherwise (here, at its dial) is not one.
	if _, err := tr.RoundTrip(mustRequest(t, "GET", "http://example.test/", nil)); err == nil || errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("failed dial: %v", err)
	}
}

func TestHTTP10ResponseNotReused(t *testing.T) {
	rs := startRaw(t, func(c net.Conn, br *bufio.Reader, _ int) {
		for {
			if _, _, err := readRequest(br); err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	tr := newTransport(t)
	for range 2 {
		resp, body := get(t, tr, "http://"+rs.addr)
		if body != "ok" || !resp.Close || resp.ProtoMinor != 0 {
			t.Fatalf("body %q Close %v Proto %q", body, resp.Close, resp.Proto)
		}
	}
	if n := rs.accepted.Load(); n != 2 {
		t.Fatalf("accepted %d, want 2", n)
	}
}

func mustRequest(t testing.TB, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestIdleConnectionClosedByServerIsSwept(t *testing.T) {
	s := startServer(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	var closed atomic.Int32
	tr := newTransport(t, func(tr *Transport) {
		tr.MaxConnsPerHost = 1
		tr.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &closeCounter{TCPConn: c.(*net.TCPConn), n: &closed}, nil
		}
	})
	get(t, tr, s.URL)
	s.CloseClientConnections()
	// No request comes: the sweep finds the closed connection and frees
	// its socket and its MaxConnsPerHost slot.
	eventually(t, "idle connection swept", func() bool { return closed.Load() == 1 })
	// The slot is given back after the socket's close: waited for, not
	// looked at once.
	eventually(t, "the swept connection's slot freed", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		for _, hp := range tr.hosts {
			if hp.open != 0 || len(hp.idle) != 0 {
				return false
			}
		}
		return true
	})
	get(t, tr, s.URL)
}

type closeCounter struct {
	*net.TCPConn
	n *atomic.Int32
}

func (c *closeCounter) Close() error { c.n.Add(1); return c.TCPConn.Close() }

type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, errors.New("client went away")
	}
	m := min(len(p), f.n)
	f.n -= m
	return m, nil
}

func TestRequestBodyReadErrorClosesConnection(t *testing.T) {
	s := startServer(t, func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) })
	tr := newTransport(t)
	get(t, tr, s.URL)
	req := mustRequest(t, "POST", s.URL, io.NopCloser(&failingReader{n: 100 << 10}))
	req.ContentLength = 200 << 10
	_, err := tr.RoundTrip(req)
	if err == nil || !strings.Contains(err.Error(), "client went away") {
		t.Fatalf("err = %v", err)
	}
	eventually(t, "connection closed", func() bool { return s.closed.Load() == 1 })
	get(t, tr, s.URL)
	if n := s.opened.Load(); n != 2 {
		t.Fatalf("server saw %d connections, want 2", n)
	}
}

// writeCounter counts the writes (system calls) made on a connection.
type writeCounter struct {
	*net.TCPConn
	n *atomic.Int32
}

func (c *writeCounter) Write(p []byte) (int, error) { c.n.Add(1); return c.TCPConn.Write(p) }

// countWrites makes a transport count in n the writes on the connections
// it dials.
func countWrites(n *atomic.Int32) func(*Transport) {
	return func(tr *Transport) {
		tr.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &writeCounter{TCPConn: c.(*net.TCPConn), n: n}, nil
		}
	}
}

func TestOneWritePerSmallRequest(t *testing.T) {
	s := startServer(t, func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) })
	var writes atomic.Int32
	tr := newTransport(t, countWrites(&writes))
	req := mustRequest(t, "GET", s.URL+"/x", nil)
	req.Header.Set("X-Some", "header")
	do(t, tr, req)
	if n := writes.Swap(0); n != 1 {
		t.Fatalf("GET: %d writes, want 1", n)
	}
	do(t, tr, mustRequest(t, "POST", s.URL+"/x", strings.NewReader(`{"small":"body"}`)))
	if n := writes.Swap(0); n != 1 {
		t.Fatalf("POST with a small body: %d writes, want 1", n)
	}
}

// A request body of known length larger than the write buffer does not
// go out in pieces of the buffer's size: with nothing buffered, the body
// is read into a larger pooled buffer that goes to the connection
// without a copy, so a connection can keep small buffers (the proxy's
// have 4 KiB) without paying a read and a write per 4 KiB of an upload.
func TestLargeRequestBodyWrittenInLargePieces(t *testing.T) {
	const size = 1 << 20
	got := make(chan int64, 1)
	s := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		got <- n
	})
	var writes atomic.Int32
	tr := newTransport(t, countWrites(&writes))
	do(t, tr, mustRequest(t, "POST", s.URL, bytes.NewReader(bytes.Repeat([]byte("x"), size))))
	if n := <-got; n != size {
		t.Fatalf("server read %d body bytes, want %d", n, size)
	}
	// 16 KiB pieces make 64 writes (and the head, and the tail that
	// stays in the buffer for the check for excess); the default 4 KiB
	// buffer's would make 257.
	if n := writes.Load(); n > 80 {
		t.Fatalf("a 1 MiB body took %d writes", n)
	}
}

func TestCloseUnblocksRead(t *testing.T) {
	release := make(chan struct{})
	s := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	tr := newTransport(t)
	resp, err := tr.RoundTrip(mustRequest(t, "GET", s.URL, nil))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := resp.Body.Read(make([]byte, 10))
		done <- err
	}()
	awaitReading(t, "the Read to block", resp)
	resp.Body.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("blocked Read returned no error after Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock the Read")
	}
	eventually(t, "connection closed", func() bool { return s.closed.Load() == 1 })
}

// A final response that a net/http server sends before it has read the
// request body (a 413 to an upload) is read once the body is sent, or
// once sending it fails; the connection is reused only when the server
// did not say it closes, and the next request is answered in order.
func TestFinalResponseBeforeRequestBodyIsRead(t *testing.T) {
	s := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/refuse" {
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			io.WriteString(w, "too large")
			return
		}
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "read %d", len(b))
	})
	tr := newTransport(t)
	// Small enough for net/http to drain and keep the connection, then
	// too large to drain (it closes), then too large for the socket
	// buffers (the write fails once the server closes).
	for _, n := range []int{8 << 10, 300 << 10, 8 << 20} {
		req := mustRequest(t, "POST", s.URL+"/refuse", bytes.NewReader(bytes.Repeat([]byte("x"), n)))
		resp, err := tr.RoundTrip(req.WithContext(ctxTimeout(t, 10*time.Second)))
		if err != nil {
			t.Fatalf("%d-byte upload: %v", n, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge || string(body) != "too large" {
			t.Fatalf("%d-byte upload: %d %q %v", n, resp.StatusCode, body, err)
		}
		if _, body := do(t, tr, mustRequest(t, "POST", s.URL+"/read", strings.NewReader("abc"))); body != "read 3" {
			t.Fatalf("request after a %d-byte refused upload: %q", n, body)
		}
	}
}

// Interim responses a server sends unasked (100 Continue to a request
// without Expect, 103) are skipped (RFC 9110 §15.2: a client MUST be
// able to parse them), and the final response after them keeps the
// connection in step.
func TestUnaskedInterimResponsesSkipped(t *testing.T) {
	rs := serveEach(t, func(n, i int) string {
		return "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" +
			fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n%d.%d", n, i)
	})
	tr := newTransport(t)
	for i, want := range []string{"0.0", "0.1"} {
		resp, body := get(t, tr, "http://"+rs.addr)
		if resp.StatusCode != 200 || body != want || resp.Header["Link"] != nil {
			t.Fatalf("request %d: %d %q %v", i, resp.StatusCode, body, resp.Header)
		}
	}
}

// closeGate is a connection whose Close waits for gate.
type closeGate struct {
	net.Conn
	gate chan struct{}
}

func (c *closeGate) Close() error {
	<-c.gate
	return c.Conn.Close()
}

func TestExpiredConnectionsSlotNotHandedOutTwice(t *testing.T) {
	s := startServer(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	clk := proxytest.NewClock(time.Unix(1000, 0))
	gate := make(chan struct{})
	var dials atomic.Int32
	tr := newTransport(t, func(tr *Transport) {
		tr.Now = clk.Now
		tr.IdleTimeout = time.Minute
		tr.MaxConnsPerHost = 1
		tr.noSweep = true
		tr.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			if err != nil || dials.Add(1) > 1 {
				return c, err
			}
			// The first connection's close waits, so that another
			// request comes while it expires.
			return &closeGate{Conn: c, gate: gate}, nil
		}
	})
	get(t, tr, s.URL)
	clk.Advance(2 * time.Minute)
	hp := func() *hostPool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		for _, hp := range tr.hosts {
			return hp
		}
		return nil
	}()

	// A takes the expired connection and dials in its slot; B, at the
	// cap meanwhile, waits.
	type result struct {
		resp *http.Response
		err  error
	}
	a, b := make(chan result, 1), make(chan result, 1)
	go func() {
		resp, err := tr.RoundTrip(mustRequest(t, "GET", s.URL, nil))
		a <- result{resp, err}
	}()
	eventually(t, "the expired connection being closed", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		return len(hp.idle) == 0
	})
	go func() {
		resp, err := tr.RoundTrip(mustRequest(t, "GET", s.URL, nil))
		b <- result{resp, err}
	}()
	eventually(t, "second request queued", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		return len(hp.waiters) == 1
	})
	close(gate)
	ra := <-a
	if ra.err != nil {
		t.Fatal(ra.err)
	}
	tr.mu.Lock()
	open := hp.open
	tr.mu.Unlock()
	if open > 1 {
		t.Errorf("%d connections counted open under MaxConnsPerHost 1", open)
	}
	io.ReadAll(ra.resp.Body)
	ra.resp.Body.Close()
	rb := <-b
	if rb.err != nil {
		t.Fatal(rb.err)
	}
	io.ReadAll(rb.resp.Body)
	rb.resp.Body.Close()
	if n := dials.Load(); n != 2 {
		t.Errorf("%d connections dialled, want 2 (B reuses A's)", n)
	}
}
