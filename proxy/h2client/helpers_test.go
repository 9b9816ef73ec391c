package h2client

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/outrigger-mesh/outrigger/proxy/internal/proxytest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// h2Server is a real x/net/http2 server over cleartext (prior
// knowledge) on loopback, counting connections.
type h2Server struct {
	addr   string
	srv    *http2.Server
	opened atomic.Int32
}

func startH2(t testing.TB, h http.HandlerFunc, mod ...func(*http2.Server)) *h2Server {
	t.Helper()
	s := &h2Server{srv: &http2.Server{}}
	for _, f := range mod {
		f(s.srv)
	}
	s.addr = proxytest.Serve(t, func(c net.Conn, _ int) {
		s.opened.Add(1)
		s.srv.ServeConn(c, &http2.ServeConnOpts{Handler: h})
	})
	return s
}

func (s *h2Server) url(path string) string { return "http://" + s.addr + path }

// newTransport returns a Transport whose connections are closed when the
// test ends (before the servers it used are closed).
func newTransport(t testing.TB, mod ...func(*Transport)) *Transport {
	tr := &Transport{}
	for _, f := range mod {
		f(tr)
	}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		tr.closeAllForTest()
	})
	return tr
}

// closeAllForTest closes every connection, busy or not, and waits for
// their goroutines.
func (t *Transport) closeAllForTest() {
	var all []*conn
	t.mu.Lock()
	for _, hp := range t.hosts {
		all = append(all, hp.conns...)
	}
	t.mu.Unlock()
	for _, c := range all {
		c.close(errIdleClosed)
		<-c.readerDone
		<-c.writerDone
	}
}

func get(t testing.TB, tr http.RoundTripper, url string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return do(t, tr, req)
}

func do(t testing.TB, tr http.RoundTripper, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("RoundTrip: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return resp, string(b)
}

// eventually polls cond until it holds or a deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// eventuallyPipeClosed polls until a write to pw fails because its
// reader, a request body, was closed.
func eventuallyPipeClosed(t testing.TB, what string, pw *io.PipeWriter) {
	t.Helper()
	eventually(t, what, func() bool {
		_, err := pw.Write([]byte("x"))
		return errors.Is(err, io.ErrClosedPipe)
	})
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// rawServer is a hand-driven HTTP/2 server: each accepted connection's
// preface is read and a SETTINGS frame sent, then handle runs with a
// Framer (n counts connections from 0). Cleanup closes everything and
// waits for the handlers.
type rawServer struct {
	addr     string
	accepted atomic.Int32
}

// rawConn is one connection of a rawServer.
type rawConn struct {
	net.Conn
	fr   *http2.Framer
	enc  *hpack.Encoder
	hbuf *bytesBuffer
}

type bytesBuffer struct{ b []byte }

func (b *bytesBuffer) Write(p []byte) (int, error) { b.b = append(b.b, p...); return len(p), nil }

// headers encodes fields as one header block.
func (rc *rawConn) headers(id uint32, end bool, kv ...string) error {
	rc.hbuf.b = rc.hbuf.b[:0]
	for i := 0; i+1 < len(kv); i += 2 {
		rc.enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	return rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: rc.hbuf.b, EndStream: end, EndHeaders: true})
}

// readUntil reads frames until one satisfies match, or fails.
func (rc *rawConn) readUntil(match func(http2.Frame) bool) (http2.Frame, error) {
	for {
		f, err := rc.fr.ReadFrame()
		if err != nil {
			return nil, err
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			rc.fr.WriteSettingsAck()
		}
		if match(f) {
			return f, nil
		}
	}
}

// readRequestHeaders reads until a request's HEADERS.
func (rc *rawConn) readRequestHeaders() (*http2.MetaHeadersFrame, error) {
	f, err := rc.readUntil(func(f http2.Frame) bool { _, ok := f.(*http2.MetaHeadersFrame); return ok })
	if err != nil {
		return nil, err
	}
	return f.(*http2.MetaHeadersFrame), nil
}

// is matches the frames of type F, for readUntil.
func is[F http2.Frame](f http2.Frame) bool { _, ok := f.(F); return ok }

// isPingAck matches PING acknowledgements, for readUntil.
func isPingAck(f http2.Frame) bool { p, ok := f.(*http2.PingFrame); return ok && p.IsAck() }

// either matches the frames any of ms matches, for readUntil.
func either(ms ...func(http2.Frame) bool) func(http2.Frame) bool {
	return func(f http2.Frame) bool {
		for _, m := range ms {
			if m(f) {
				return true
			}
		}
		return false
	}
}

// readReset reads until the client's RST_STREAM and returns its code.
func (rc *rawConn) readReset() (http2.ErrCode, error) {
	f, err := rc.readUntil(is[*http2.RSTStreamFrame])
	if err != nil {
		return 0, err
	}
	return f.(*http2.RSTStreamFrame).ErrCode, nil
}

// readGoAway reads until the client's GOAWAY and returns its code.
func (rc *rawConn) readGoAway() (http2.ErrCode, error) {
	f, err := rc.readUntil(is[*http2.GoAwayFrame])
	if err != nil {
		return 0, err
	}
	return f.(*http2.GoAwayFrame).ErrCode, nil
}

// readRequests reads the HEADERS of k requests, signalling seen after
// each, and returns their stream ids.
func (rc *rawConn) readRequests(k int, seen chan<- struct{}) ([]uint32, error) {
	var ids []uint32
	for range k {
		h, err := rc.readRequestHeaders()
		if err != nil {
			return nil, err
		}
		ids = append(ids, h.StreamID)
		seen <- struct{}{}
	}
	return ids, nil
}

// serveEach hands the HEADERS of every further request of the
// connection to serve, until the connection ends.
func (rc *rawConn) serveEach(serve func(h *http2.MetaHeadersFrame)) {
	for {
		h, err := rc.readRequestHeaders()
		if err != nil {
			return
		}
		serve(h)
	}
}

// answerEach answers every further request of the connection with the
// body answer gives for its HEADERS, until the connection ends.
func (rc *rawConn) answerEach(answer func(h *http2.MetaHeadersFrame) string) {
	rc.serveEach(func(h *http2.MetaHeadersFrame) { rc.respond(h.StreamID, answer(h)) })
}

// answerTheRest answers every further request of the connection with body.
func (rc *rawConn) answerTheRest(body string) {
	rc.answerEach(func(*http2.MetaHeadersFrame) string { return body })
}

// withPath answers a request with prefix and its :path.
func withPath(prefix string) func(h *http2.MetaHeadersFrame) string {
	return func(h *http2.MetaHeadersFrame) string { return prefix + h.PseudoValue("path") }
}

func startRaw(t testing.TB, settings []http2.Setting, handle func(rc *rawConn, n int)) *rawServer {
	t.Helper()
	rs := &rawServer{}
	rs.addr = proxytest.Serve(t, func(c net.Conn, n int) {
		rs.accepted.Add(1)
		br := bufio.NewReader(c)
		preface := make([]byte, len(http2.ClientPreface))
		if _, err := io.ReadFull(br, preface); err != nil || string(preface) != http2.ClientPreface {
			return
		}
		rc := &rawConn{Conn: c, hbuf: &bytesBuffer{}}
		rc.fr = http2.NewFramer(c, br)
		rc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
		rc.enc = hpack.NewEncoder(rc.hbuf)
		if err := rc.fr.WriteSettings(settings...); err != nil {
			return
		}
		handle(rc, n)
	})
	return rs
}

// startRawForRequest starts a raw server whose connections each read
// their first request's HEADERS and hand them to serve; a connection that
// ends before them is dropped.
func startRawForRequest(t testing.TB, settings []http2.Setting, serve func(rc *rawConn, h *http2.MetaHeadersFrame)) *rawServer {
	t.Helper()
	return startRaw(t, settings, func(rc *rawConn, n int) {
		h, err := rc.readRequestHeaders()
		if err != nil {
			return
		}
		serve(rc, h)
	})
}

// startRawGoingAway starts a raw server for tests of GOAWAY: its first
// connection reads k requests, signalling seen after each, and hands
// their stream ids to first, which sends the GOAWAY; every later
// connection, where the client sends again what the GOAWAY left
// unprocessed, answers each request "second " and its path.
func startRawGoingAway(t testing.TB, k int, seen chan<- struct{}, first func(rc *rawConn, ids []uint32)) *rawServer {
	t.Helper()
	return startRaw(t, nil, func(rc *rawConn, n int) {
		if n > 0 {
			rc.answerEach(withPath("second "))
			return
		}
		ids, err := rc.readRequests(k, seen)
		if err != nil {
			return
		}
		first(rc, ids)
	})
}

// getOverOneConnection GETs s's "/" count times through a new Transport,
// failing the test unless each body is want and s accepted one
// connection for them all.
func getOverOneConnection(t testing.TB, s *rawServer, count int, want string) {
	t.Helper()
	tr := newTransport(t)
	for range count {
		if _, body := get(t, tr, "http://"+s.addr+"/"); body != want {
			t.Fatalf("body %q", body)
		}
	}
	if n := s.accepted.Load(); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
}

// roundTrip sends req through tr and returns the response, its body
// unread, failing the test when none came.
func roundTrip(t testing.TB, tr http.RoundTripper, req *http.Request) *http.Response {
	t.Helper()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// outcome is what one request got through a Transport: the response body
// as far as it was read, and the error that ended it, if any.
type outcome struct {
	path string
	body string
	err  error
}

// String reads "path: body", "path: body then error", or, when no body
// came before the error, "path: error".
func (o outcome) String() string {
	switch {
	case o.err == nil:
		return o.path + ": " + o.body
	case o.body == "":
		return o.path + ": " + o.err.Error()
	}
	return o.path + ": " + o.body + " then " + o.err.Error()
}

// fetch sends req through tr and reads the whole response body. It is
// safe to call from any goroutine.
func fetch(tr http.RoundTripper, req *http.Request) outcome {
	o := outcome{path: req.URL.Path}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		o.err = err
		return o
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	o.body, o.err = string(b), err
	return o
}

// goFetch GETs url through tr from a goroutine of its own, within 10 s;
// the outcome comes on the channel returned.
func goFetch(t testing.TB, tr http.RoundTripper, url string) <-chan outcome {
	out := make(chan outcome, 1)
	req, _ := http.NewRequestWithContext(ctxTimeout(t, 10*time.Second), "GET", url, nil)
	go func() { out <- fetch(tr, req) }()
	return out
}

// sendInOrder GETs each path on addr from a goroutine of its own, the
// next one only once the server has signalled on seen that it read the
// one before, so that the streams reach the server in the order given.
// The outcomes come on the returned channel as the requests end.
func sendInOrder(t testing.TB, tr *Transport, addr string, seen <-chan struct{}, paths ...string) <-chan outcome {
	t.Helper()
	out := make(chan outcome, len(paths))
	for _, p := range paths {
		req, _ := http.NewRequestWithContext(ctxTimeout(t, 10*time.Second), "GET", "http://"+addr+p, nil)
		go func() { out <- fetch(tr, req) }()
		recv(t, seen)
	}
	return out
}

// recv receives from ch, failing the test when nothing comes within 10s.
func recv[T any](t testing.TB, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting on a channel")
	}
	var zero T
	return zero
}

// gate is a channel handlers wait on; open is idempotent. Register
// t.Cleanup(g.open) after starting the server, so that a failing test
// does not leave a handler waiting while the server's cleanup waits for
// it.
type gate struct {
	ch   chan struct{}
	open func()
}

func newGate() *gate {
	ch := make(chan struct{})
	return &gate{ch: ch, open: sync.OnceFunc(func() { close(ch) })}
}

// waitFirstStream waits until tr has one connection to addr, carrying
// one stream.
func waitFirstStream(t testing.TB, tr *Transport, addr string) {
	t.Helper()
	eventually(t, "the first stream", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		hp := tr.hosts[addr]
		if hp == nil || len(hp.conns) != 1 {
			return false
		}
		c := hp.conns[0]
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.streams) == 1
	})
}

// isClosed reports whether the connection has closed.
func (c *conn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}
