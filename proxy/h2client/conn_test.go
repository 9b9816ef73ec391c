package h2client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// heldConn holds every Write while a gate is armed, so that a test can
// keep the writer inside a system call.
type heldConn struct {
	net.Conn
	hold    atomic.Pointer[gate]
	entered chan struct{}
}

func (c *heldConn) Write(p []byte) (int, error) {
	if g := c.hold.Load(); g != nil {
		select {
		case c.entered <- struct{}{}:
		default:
		}
		<-g.ch
	}
	return c.Conn.Write(p)
}

// onlyConn returns the one connection the Transport holds to addr.
func onlyConn(t *testing.T, tr *Transport, addr string) *conn {
	t.Helper()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	hp := tr.hosts[addr]
	if hp == nil || len(hp.conns) != 1 {
		t.Fatalf("want one connection to %s", addr)
	}
	return hp.conns[0]
}

// A connection that fails while one request's HEADERS are being written
// and another's are still queued: the first may have reached the
// server, so it is not sent again; the second is sent again elsewhere,
// and its queued bytes must then never reach the first server.
func TestRequestsQueuedAtConnectionFailureReachTheServersOnce(t *testing.T) {
	var (
		mu   sync.Mutex
		seen = map[string]int{}
	)
	record := func(h *http2.MetaHeadersFrame) {
		mu.Lock()
		seen[h.PseudoValue("path")]++
		mu.Unlock()
	}
	poison := make(chan struct{})
	firstDone := make(chan struct{})
	s := startRaw(t, nil, func(rc *rawConn, n int) {
		if n > 0 {
			rc.answerEach(func(h *http2.MetaHeadersFrame) string {
				record(h)
				return "second"
			})
			return
		}
		defer close(firstDone)
		h, err := rc.readRequestHeaders() // the warm-up request
		if err != nil {
			return
		}
		rc.respond(h.StreamID, "first")
		go func() {
			<-poison
			// A frame for a stream never opened: a connection error.
			rc.fr.WriteRSTStream(99, http2.ErrCodeCancel)
		}()
		for {
			f, err := rc.fr.ReadFrame()
			if err != nil {
				return
			}
			if h, ok := f.(*http2.MetaHeadersFrame); ok {
				record(h)
			}
		}
	})
	g := newGate()
	var first *heldConn
	tr := newTransport(t, func(tr *Transport) {
		tr.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			if err != nil || first != nil {
				return c, err
			}
			first = &heldConn{Conn: c, entered: make(chan struct{}, 1)}
			return first, nil
		}
	})
	t.Cleanup(g.open) // before the Transport's cleanup waits for the writer
	if _, body := get(t, tr, "http://"+s.addr+"/warm"); body != "first" {
		t.Fatalf("warm-up body %q", body)
	}
	c := onlyConn(t, tr, s.addr)
	first.hold.Store(g)

	errs := make(chan error, 2)
	send := func(method, path string, body io.Reader) {
		req, _ := http.NewRequest(method, "http://"+s.addr+path, body)
		resp, err := tr.RoundTrip(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		errs <- err
	}
	go send("GET", "/a", nil)
	recv(t, first.entered) // /a's HEADERS are inside a Write
	go send("POST", "/b", strings.NewReader("not idempotent"))
	eventually(t, "/b queued", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.streams) == 2
	})
	close(poison)
	eventually(t, "the connection to fail", c.isClosed)
	g.open()
	recv(t, errs)
	recv(t, errs)
	recv(t, firstDone)

	mu.Lock()
	defer mu.Unlock()
	if seen["/a"] != 1 || seen["/b"] != 1 {
		t.Fatalf("requests seen by the servers: %v; want /a and /b once each", seen)
	}
}

// A server must not send SETTINGS_ENABLE_PUSH 1 (RFC 9113 §6.5.2).
func TestServerEnablingPushIsAConnectionError(t *testing.T) {
	s := startRaw(t, []http2.Setting{{ID: http2.SettingEnablePush, Val: 1}}, func(rc *rawConn, n int) {
		io.Copy(io.Discard, rc)
	})
	tr := newTransport(t)
	req, _ := http.NewRequestWithContext(ctxTimeout(t, 5*time.Second), "GET", "http://"+s.addr+"/", nil)
	resp, err := tr.RoundTrip(req)
	if err == nil {
		resp.Body.Close()
		t.Fatal("request succeeded over a connection whose server enabled push")
	}
	if !strings.Contains(err.Error(), "PROTOCOL_ERROR") {
		t.Fatalf("err = %v, want a PROTOCOL_ERROR", err)
	}
}

// Content-length values that cannot all be the body's length make the
// response malformed (RFC 9113 §8.1.1, RFC 9110 §8.6): passed on, they
// would frame the body differently downstream. Repeats of one value are
// one value.
func TestResponseContentLengthValues(t *testing.T) {
	cases := []struct {
		name   string
		fields []string
		ok     bool
	}{
		{"differing values", []string{"content-length", "5", "content-length", "7"}, false},
		{"not a number", []string{"content-length", "5x"}, false},
		{"a list", []string{"content-length", "5, 7"}, false},
		{"negative", []string{"content-length", "-5"}, false},
		{"the same value twice", []string{"content-length", "5", "content-length", "5"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rst := make(chan http2.ErrCode, 1)
			s := startRawForRequest(t, nil, func(rc *rawConn, h *http2.MetaHeadersFrame) {
				rc.headers(h.StreamID, false, append([]string{":status", "200"}, tc.fields...)...)
				rc.fr.WriteData(h.StreamID, true, []byte("hello"))
				if code, err := rc.readReset(); err == nil {
					rst <- code
				}
				io.Copy(io.Discard, rc)
			})
			tr := newTransport(t)
			req, _ := http.NewRequest("GET", "http://"+s.addr+"/", nil)
			resp, err := tr.RoundTrip(req)
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || string(b) != "hello" || resp.ContentLength != 5 || len(resp.Header["Content-Length"]) != 1 {
					t.Fatalf("body %q, err %v, ContentLength %d, header %q", b, err, resp.ContentLength, resp.Header["Content-Length"])
				}
				return
			}
			if err == nil {
				resp.Body.Close()
				t.Fatalf("response with %v accepted (ContentLength %d)", tc.fields, resp.ContentLength)
			}
			var se http2.StreamError
			if !errors.As(err, &se) || se.Code != http2.ErrCodeProtocol {
				t.Fatalf("err = %v, want a PROTOCOL_ERROR StreamError", err)
			}
			if code := recv(t, rst); code != http2.ErrCodeProtocol {
				t.Fatalf("server saw RST_STREAM %v", code)
			}
		})
	}
}

// A connection whose stream ids are spent takes no new streams and is
// closed, even with idle expiry turned off, rather than kept open
// unusable.
func TestConnectionWithSpentStreamIDsIsClosed(t *testing.T) {
	s := startH2(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	tr := newTransport(t, func(tr *Transport) { tr.IdleTimeout = -1 })
	if _, body := get(t, tr, s.url("/")); body != "ok" {
		t.Fatalf("body %q", body)
	}
	c := onlyConn(t, tr, s.addr)
	c.mu.Lock()
	c.nextID = maxStreamID // the last client stream id
	c.mu.Unlock()
	if _, body := get(t, tr, s.url("/")); body != "ok" {
		t.Fatalf("body %q", body)
	}
	if _, body := get(t, tr, s.url("/")); body != "ok" {
		t.Fatalf("body %q", body)
	}
	if n := s.opened.Load(); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
	eventually(t, "the spent connection to close", c.isClosed)
}

// Padding is never read, so it must be given back on arrival: a server
// may spend the whole stream window on padding and then wait for window
// while the caller waits for data.
func TestPaddingAloneDoesNotStallTheStream(t *testing.T) {
	s := startRawForRequest(t, nil, func(rc *rawConn, h *http2.MetaHeadersFrame) {
		rc.headers(h.StreamID, false, ":status", "200")
		pad := make([]byte, 255)
		for range streamWindow / 256 { // 1 pad-length byte + 255 of padding each
			if err := rc.fr.WriteDataPadded(h.StreamID, false, nil, pad); err != nil {
				return
			}
		}
		if _, err := rc.readUntil(func(f http2.Frame) bool {
			wu, ok := f.(*http2.WindowUpdateFrame)
			return ok && wu.StreamID == h.StreamID
		}); err != nil {
			return
		}
		rc.fr.WriteData(h.StreamID, true, []byte("end"))
		io.Copy(io.Discard, rc)
	})
	tr := newTransport(t)
	req, _ := http.NewRequestWithContext(ctxTimeout(t, 5*time.Second), "GET", "http://"+s.addr+"/", nil)
	resp := roundTrip(t, tr, req)
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(b) != "end" {
		t.Fatalf("body %q, %v", b, err)
	}
}

// A connection that fails between its handshake and its first stream
// (here: the write of the SETTINGS acknowledgement fails) has carried no
// request: the request that dialled it is sent on another connection,
// not failed as if the server allowed no streams.
func TestConnectionFailingRightAfterHandshakeSendsTheRequestElsewhere(t *testing.T) {
	s := startH2(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	for i := range 100 {
		var dials atomic.Int32
		tr := newTransport(t, func(tr *Transport) {
			tr.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
				var d net.Dialer
				c, err := d.DialContext(ctx, network, addr)
				if err != nil || dials.Add(1) > 1 {
					return c, err
				}
				return &failingConn{Conn: c}, nil
			}
		})
		req, _ := http.NewRequest("GET", s.url("/"), nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("attempt %d: %v", i, err)
		}
		resp.Body.Close()
		tr.CloseIdleConnections()
	}
}

// A trailer added after the request started is checked like the
// announced ones: an invalid name fails the request instead of going
// out as a malformed field.
func TestInvalidTrailerNameAddedLateFailsTheRequest(t *testing.T) {
	got := make(chan string, 1)
	s := startRaw(t, nil, func(rc *rawConn, n int) {
		if _, err := rc.readRequestHeaders(); err != nil {
			return
		}
		f, err := rc.readUntil(func(f http2.Frame) bool {
			switch f.(type) {
			case *http2.RSTStreamFrame, *http2.MetaHeadersFrame:
				return true
			}
			return false
		})
		switch f.(type) {
		case *http2.RSTStreamFrame:
			got <- "RST_STREAM"
		case *http2.MetaHeadersFrame:
			got <- "trailers"
		default:
			got <- fmt.Sprint("read error: ", err)
		}
		io.Copy(io.Discard, rc)
	})
	tr := newTransport(t)
	pr, pw := io.Pipe()
	req, _ := http.NewRequestWithContext(ctxTimeout(t, 5*time.Second), "POST", "http://"+s.addr+"/", pr)
	req.Trailer = http.Header{"X-Sum": nil}
	go func() {
		pw.Write([]byte("data"))
		req.Trailer["Bad Name"] = []string{"v"}
		pw.Close()
	}()
	resp, err := tr.RoundTrip(req)
	if err == nil {
		resp.Body.Close()
		t.Fatal("request with an invalid trailer name succeeded")
	}
	if !strings.Contains(err.Error(), "trailer") {
		t.Fatalf("err = %v, want one naming the trailer", err)
	}
	if what := recv(t, got); what != "RST_STREAM" {
		t.Fatalf("server got %s, want RST_STREAM", what)
	}
}

// The bound on answers a server that does not read can make us queue
// counts those answers, not the requests queued behind a slow write: a
// PING arriving while large header blocks wait is answered, not taken
// for a flood.
func TestPingWhileManyRequestsAreQueuedIsAnswered(t *testing.T) {
	const requests, headerSize = 20, 64 << 10
	ping := newGate()
	s := startRawForRequest(t, nil, func(rc *rawConn, h *http2.MetaHeadersFrame) {
		rc.respond(h.StreamID, "warm") // the warm-up request
		<-ping.ch
		rc.fr.WritePing(false, [8]byte{1})
		rc.answerTheRest("ok")
	})
	g := newGate()
	var held *heldConn
	tr := newTransport(t, func(tr *Transport) {
		tr.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			if err != nil || held != nil {
				return c, err
			}
			held = &heldConn{Conn: c, entered: make(chan struct{}, 1)}
			return held, nil
		}
	})
	t.Cleanup(g.open) // before the Transport's cleanup waits for the writer
	t.Cleanup(ping.open)
	if _, body := get(t, tr, "http://"+s.addr+"/warm"); body != "warm" {
		t.Fatalf("warm-up body %q", body)
	}
	c := onlyConn(t, tr, s.addr)
	held.hold.Store(g)
	errs := make(chan error, requests+1)
	big := strings.Repeat("{", headerSize) // longer Huffman-coded: sent as is
	send := func(hdr string) {
		go func() {
			req, _ := http.NewRequestWithContext(ctxTimeout(t, 10*time.Second), "GET", "http://"+s.addr+"/", nil)
			req.Header.Set("X-Big", hdr)
			resp, err := tr.RoundTrip(req)
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			errs <- err
		}()
	}
	// A small request first holds the writer inside its write, so that
	// every large one queues behind it.
	send("small")
	select {
	case <-held.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the writer did not start its write")
	}
	for range requests {
		send(big)
	}
	eventually(t, "the requests to be queued", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.streams) == requests+1
	})
	c.mu.Lock()
	queued := len(c.wbuf)
	c.mu.Unlock()
	if queued <= maxControlQueue {
		t.Fatalf("only %d bytes queued, want over %d", queued, maxControlQueue)
	}
	ping.open()
	eventually(t, "the PING to be handled", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.closed || len(c.wbuf) > queued
	})
	g.open()
	for range requests + 1 {
		if err := recv(t, errs); err != nil {
			t.Fatal(err)
		}
	}
}

// A sender waiting for connection window is listed once however many
// stream WINDOW_UPDATEs wake it: a server cannot grow the list.
func TestStreamWindowUpdatesWhileConnectionWindowIsSpentDoNotGrowTheWaiters(t *testing.T) {
	const updates = 500
	sent := make(chan struct{})
	s := startRawForRequest(t, nil, func(rc *rawConn, h *http2.MetaHeadersFrame) {
		// Read the body until the connection window (65535) is spent.
		got := 0
		for got < initialPeerWindow {
			f, err := rc.fr.ReadFrame()
			if err != nil {
				return
			}
			if d, ok := f.(*http2.DataFrame); ok {
				got += len(d.Data())
			}
		}
		for range updates {
			if rc.fr.WriteWindowUpdate(h.StreamID, 1) != nil {
				return
			}
		}
		// A PING answered after the updates tells the test they were read.
		rc.fr.WritePing(false, [8]byte{7})
		if _, err := rc.readUntil(isPingAck); err != nil {
			return
		}
		close(sent)
		io.Copy(io.Discard, rc)
	})
	tr := newTransport(t)
	req, _ := http.NewRequestWithContext(ctxTimeout(t, 10*time.Second), "POST", "http://"+s.addr+"/",
		io.MultiReader(strings.NewReader(strings.Repeat("x", 200<<10))))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if resp, err := tr.RoundTrip(req); err == nil {
			resp.Body.Close()
		}
	}()
	recv(t, sent)
	c := onlyConn(t, tr, s.addr)
	c.mu.Lock()
	n := len(c.connWaiters)
	c.mu.Unlock()
	if n > 1 {
		t.Fatalf("%d entries waiting for connection window, want 1", n)
	}
	tr.closeAllForTest()
	recv(t, done)
}

// A server's SETTINGS_HEADER_TABLE_SIZE below the default shrinks the
// encoder's dynamic table, which the next header block announces first
// (RFC 7541 §4.2, §6.3), and no block then indexes beyond it.
func TestServerHeaderTableSizeShrinksTheEncoderTable(t *testing.T) {
	blocks := make(chan []byte, 2)
	s := startRaw(t, []http2.Setting{{ID: http2.SettingHeaderTableSize, Val: 0}}, func(rc *rawConn, n int) {
		rc.fr.ReadMetaHeaders = nil // the raw block
		for range 2 {
			f, err := rc.readUntil(is[*http2.HeadersFrame])
			if err != nil {
				return
			}
			h := f.(*http2.HeadersFrame)
			blocks <- append([]byte(nil), h.HeaderBlockFragment()...)
			rc.enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
			rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: h.StreamID, BlockFragment: rc.hbuf.b, EndStream: true, EndHeaders: true})
			rc.hbuf.b = rc.hbuf.b[:0]
		}
		io.Copy(io.Discard, rc)
	})
	tr := newTransport(t)
	dec := hpack.NewDecoder(4096, nil)
	dec.SetAllowedMaxDynamicTableSize(0)
	for i := range 2 {
		req, _ := http.NewRequest("GET", "http://"+s.addr+"/", nil)
		req.Header.Set("Content-Type", "application/grpc")
		do(t, tr, req)
		b := recv(t, blocks)
		if i == 0 && (len(b) == 0 || b[0]&0xe0 != 0x20) {
			t.Fatalf("first header block does not start with a dynamic table size update: % x", b[:min(len(b), 4)])
		}
		if _, err := dec.DecodeFull(b); err != nil {
			t.Fatalf("block %d: %v", i, err)
		}
	}
}

// Frames that arrive for a stream the client reset are dropped without
// harm to the connection, and the DATA among them is given back to the
// connection's window.
func TestFramesForAResetStreamAreDroppedAndTheirWindowReturned(t *testing.T) {
	returned := make(chan bool, 1)
	s := startRawForRequest(t, nil, func(rc *rawConn, h *http2.MetaHeadersFrame) {
		rc.headers(h.StreamID, false, ":status", "200")
		rc.fr.WriteData(h.StreamID, false, []byte("x"))
		if _, err := rc.readUntil(is[*http2.RSTStreamFrame]); err != nil {
			return
		}
		chunk := make([]byte, 16<<10)
		for sent := 1; sent < streamWindow; sent += len(chunk) {
			rc.fr.WriteData(h.StreamID, false, chunk[:min(len(chunk), streamWindow-sent)])
		}
		rc.headers(h.StreamID, true, "grpc-status", "0")
		rc.fr.WriteRSTStream(h.StreamID, http2.ErrCodeInternal)
		got := 0
		for got < streamWindow {
			f, err := rc.readUntil(func(f http2.Frame) bool { w, ok := f.(*http2.WindowUpdateFrame); return ok && w.StreamID == 0 })
			if err != nil {
				returned <- false
				return
			}
			got += int(f.(*http2.WindowUpdateFrame).Increment)
		}
		returned <- true
		h, err := rc.readRequestHeaders()
		if err != nil {
			return
		}
		rc.respond(h.StreamID, "second")
		io.Copy(io.Discard, rc)
	})
	tr := newTransport(t)
	req, _ := http.NewRequestWithContext(ctxTimeout(t, 10*time.Second), "GET", "http://"+s.addr+"/", nil)
	resp := roundTrip(t, tr, req)
	var one [1]byte
	if _, err := io.ReadFull(resp.Body, one[:]); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !recv(t, returned) {
		t.Fatal("the connection's window was not given back for the dropped DATA")
	}
	if _, body := get(t, tr, "http://"+s.addr+"/"); body != "second" {
		t.Fatalf("body %q", body)
	}
	if n := s.accepted.Load(); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
}

// When the request whose dial others wait for gives up, its dial ends
// with it, and a waiter dials in its place.
func TestWaiterDialsWhenTheDiallingRequestGivesUp(t *testing.T) {
	s := startH2(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	var dials atomic.Int32
	tr := newTransport(t, func(tr *Transport) {
		tr.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if dials.Add(1) == 1 {
				<-ctx.Done() // an upstream that does not answer the SYN
				return nil, ctx.Err()
			}
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "GET", s.url("/"), nil)
		_, err := tr.RoundTrip(req)
		first <- err
	}()
	eventually(t, "the first dial", func() bool { return dials.Load() == 1 })
	second := make(chan error, 1)
	asked := make(chan struct{})
	go func() {
		ctx := httptrace.WithClientTrace(ctxTimeout(t, 10*time.Second), &httptrace.ClientTrace{
			GetConn: func(string) { close(asked) },
		})
		req, _ := http.NewRequestWithContext(ctx, "GET", s.url("/"), nil)
		resp, err := tr.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
		}
		second <- err
	}()
	recv(t, asked) // it is about to wait for the dial in flight
	cancel()
	if err := recv(t, first); !errors.Is(err, context.Canceled) {
		t.Fatalf("dialling request: %v", err)
	}
	if err := recv(t, second); err != nil {
		t.Fatalf("waiting request: %v", err)
	}
	if n := dials.Load(); n != 2 {
		t.Fatalf("%d dials, want 2", n)
	}
}
