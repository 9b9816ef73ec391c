package h2client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// trackedBody is a request body that counts its reads and records its
// closing.
type trackedBody struct {
	r      io.Reader
	reads  atomic.Int32
	closed atomic.Bool
}

func (b *trackedBody) Read(p []byte) (int, error) {
	b.reads.Add(1)
	return b.r.Read(p)
}

func (b *trackedBody) Close() error { b.closed.Store(true); return nil }

// expectTrace records the 100-continue hooks.
type expectTrace struct {
	mu       sync.Mutex
	waits    int
	got100   int
	infos    []int
	onInfo   func(code int)
	hookTime time.Time // when Wait100Continue was called
}

func (et *expectTrace) ctx(ctx context.Context) context.Context {
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		Wait100Continue: func() {
			et.mu.Lock()
			et.waits++
			et.hookTime = time.Now()
			et.mu.Unlock()
		},
		Got100Continue: func() {
			et.mu.Lock()
			et.got100++
			et.mu.Unlock()
		},
		Got1xxResponse: func(code int, _ textproto.MIMEHeader) error {
			et.mu.Lock()
			et.infos = append(et.infos, code)
			f := et.onInfo
			et.mu.Unlock()
			if f != nil {
				f(code)
			}
			return nil
		},
	})
}

func (et *expectTrace) counts() (waits, got100 int, infos []int) {
	et.mu.Lock()
	defer et.mu.Unlock()
	return et.waits, et.got100, append([]int(nil), et.infos...)
}

// streamSeen is what a raw server read of one request stream after its
// HEADERS.
type streamSeen struct {
	data     string
	dataAt   time.Time // when the first DATA came
	ended    bool      // END_STREAM (on DATA or trailers)
	trailers bool      // a trailer block came
	rst      bool
	code     http2.ErrCode
	err      error
}

// echoStream reads stream id to its end, reports what came on seen,
// answers "got " and the body, and reads the connection to its end.
func (rc *rawConn) echoStream(id uint32, seen chan<- streamSeen) {
	ss := rc.readStream(id, nil)
	seen <- ss
	rc.respond(id, "got "+ss.data)
	io.Copy(io.Discard, rc)
}

// readStream reads the frames of stream id until it ends (END_STREAM or
// RST_STREAM). Frames of other streams are passed to other, when set.
func (rc *rawConn) readStream(id uint32, other func(http2.Frame)) streamSeen {
	var s streamSeen
	for {
		f, err := rc.readUntil(func(http2.Frame) bool { return true })
		if err != nil {
			s.err = err
			return s
		}
		if f.Header().StreamID != id {
			if other != nil {
				other(f)
			}
			continue
		}
		switch f := f.(type) {
		case *http2.DataFrame:
			if s.dataAt.IsZero() {
				s.dataAt = time.Now()
			}
			s.data += string(f.Data())
			if f.StreamEnded() {
				s.ended = true
				return s
			}
		case *http2.MetaHeadersFrame:
			s.trailers = true
			if f.StreamEnded() {
				s.ended = true
				return s
			}
		case *http2.RSTStreamFrame:
			s.rst, s.code = true, f.ErrCode
			return s
		}
	}
}

func expectRequest(t *testing.T, ctx context.Context, url string, body io.Reader, length int64) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "POST", url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = length
	req.Header.Set("Expect", "100-continue")
	return req
}

// With a real x/net/http2 server, which sends 100 Continue when the
// handler first reads the body, the body follows the 100: a small one
// (read ahead) and a large one (streamed) alike.
func TestExpectContinueThenBody(t *testing.T) {
	s := startH2(t, func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		// The server consumes the Expect field: it is not in r.Header.
		fmt.Fprintf(w, "%d %s", len(b), b[:min(len(b), 5)])
	})
	tr := newTransport(t, func(tr *Transport) { tr.ExpectContinueTimeout = time.Minute })
	for _, size := range []int{5, 200 << 10} {
		et := &expectTrace{}
		payload := strings.Repeat("abcde", size/5)
		body := &trackedBody{r: strings.NewReader(payload)}
		start := time.Now()
		req := expectRequest(t, et.ctx(context.Background()), s.url("/"), body, int64(len(payload)))
		resp, got := do(t, tr, req)
		if want := fmt.Sprintf("%d abcde", size); resp.StatusCode != 200 || got != want {
			t.Fatalf("size %d: %d %q, want %q", size, resp.StatusCode, got, want)
		}
		if d := time.Since(start); d > 30*time.Second {
			t.Fatalf("size %d: took %v: the body waited for the timeout, not the 100", size, d)
		}
		waits, got100, infos := et.counts()
		if waits != 1 || got100 != 1 || len(infos) != 1 || infos[0] != 100 {
			t.Fatalf("size %d: Wait100Continue %d, Got100Continue %d, 1xx %v", size, waits, got100, infos)
		}
		if !body.closed.Load() {
			t.Fatalf("size %d: request body not closed", size)
		}
	}
}

// A final response before the 100: RoundTrip returns it, the body is
// closed without a read, the server sees no DATA, and once the response
// has ended the stream is closed with RST_STREAM NO_ERROR. The
// connection carries on.
func TestExpectContinueFinalResponseSkipsBody(t *testing.T) {
	seen := make(chan streamSeen, 1)
	s := startRawForRequest(t, nil, func(rc *rawConn, h *http2.MetaHeadersFrame) {
		if h.StreamEnded() || h.PseudoValue("path") != "/refuse" {
			seen <- streamSeen{err: fmt.Errorf("first HEADERS: end %v, path %q", h.StreamEnded(), h.PseudoValue("path"))}
			return
		}
		// The response's head and body in two frames: the client
		// returns at the head and must not end the stream before the
		// body came.
		rc.headers(h.StreamID, false, ":status", "417", "content-length", "4")
		rc.fr.WriteData(h.StreamID, true, []byte("nope"))
		seen <- rc.readStream(h.StreamID, nil)
		rc.answerTheRest("next")
	})
	tr := newTransport(t, func(tr *Transport) { tr.ExpectContinueTimeout = time.Minute })
	et := &expectTrace{}
	body := &trackedBody{r: strings.NewReader(strings.Repeat("x", 100<<10))}
	req := expectRequest(t, et.ctx(context.Background()), "http://"+s.addr+"/refuse", body, -1)
	resp, got := do(t, tr, req)
	if resp.StatusCode != 417 || got != "nope" {
		t.Fatalf("got %d %q", resp.StatusCode, got)
	}
	if body.reads.Load() != 0 || !body.closed.Load() {
		t.Fatalf("request body read %d times, closed %v; want unread and closed", body.reads.Load(), body.closed.Load())
	}
	ss := recv(t, seen)
	if ss.err != nil || ss.data != "" || ss.ended || !ss.rst || ss.code != http2.ErrCodeNo {
		t.Fatalf("server saw %+v, want no DATA and RST_STREAM NO_ERROR", ss)
	}
	if waits, got100, infos := et.counts(); waits != 1 || got100 != 0 || len(infos) != 0 {
		t.Fatalf("Wait100Continue %d, Got100Continue %d, 1xx %v", waits, got100, infos)
	}
	if _, got := get(t, tr, "http://"+s.addr+"/next"); got != "next" {
		t.Fatalf("next request got %q", got)
	}
	if n := s.accepted.Load(); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
}

// A server that never answers gets the body once ExpectContinueTimeout
// passed.
func TestExpectContinueTimeoutSendsBody(t *testing.T) {
	const timeout = 50 * time.Millisecond
	seen := make(chan streamSeen, 1)
	s := startRawForRequest(t, nil, func(rc *rawConn, h *http2.MetaHeadersFrame) {
		rc.echoStream(h.StreamID, seen)
	})
	tr := newTransport(t, func(tr *Transport) { tr.ExpectContinueTimeout = timeout })
	et := &expectTrace{}
	req := expectRequest(t, et.ctx(context.Background()), "http://"+s.addr+"/", strings.NewReader("hello"), 5)
	resp, got := do(t, tr, req)
	if resp.StatusCode != 200 || got != "got hello" {
		t.Fatalf("got %d %q", resp.StatusCode, got)
	}
	ss := recv(t, seen)
	waits, got100, infos := et.counts()
	if waits != 1 || got100 != 0 || len(infos) != 0 {
		t.Fatalf("Wait100Continue %d, Got100Continue %d, 1xx %v", waits, got100, infos)
	}
	et.mu.Lock()
	waited := ss.dataAt.Sub(et.hookTime)
	et.mu.Unlock()
	if !ss.ended || ss.data != "hello" || waited < timeout {
		t.Fatalf("server saw %+v; the body came %v after the wait began, want at least %v", ss, waited, timeout)
	}
}

// A 103 before the 100 is reported and does not end the wait: no DATA
// until the 100.
func TestExpectContinueAfterEarlyHints(t *testing.T) {
	saw103 := make(chan struct{})
	seen := make(chan streamSeen, 1)
	s := startRawForRequest(t, nil, func(rc *rawConn, h *http2.MetaHeadersFrame) {
		rc.headers(h.StreamID, false, ":status", "103", "link", "</style.css>; rel=preload")
		select {
		case <-saw103:
		case <-time.After(10 * time.Second):
			seen <- streamSeen{err: errors.New("the client did not report the 103")}
			return
		}
		// The client handled the 103; a PING's answer comes after
		// anything it would have queued by now.
		rc.fr.WritePing(false, [8]byte{1})
		var early string
		if _, err := rc.readUntil(func(f http2.Frame) bool {
			if d, ok := f.(*http2.DataFrame); ok && d.StreamID == h.StreamID {
				early += string(d.Data())
			}
			p, ok := f.(*http2.PingFrame)
			return ok && p.IsAck()
		}); err != nil {
			return
		}
		if early != "" {
			seen <- streamSeen{err: fmt.Errorf("DATA %q before the 100", early)}
			return
		}
		rc.headers(h.StreamID, false, ":status", "100")
		rc.echoStream(h.StreamID, seen)
	})
	tr := newTransport(t, func(tr *Transport) { tr.ExpectContinueTimeout = time.Minute })
	et := &expectTrace{onInfo: func(code int) {
		if code == 103 {
			close(saw103)
		}
	}}
	start := time.Now()
	req := expectRequest(t, et.ctx(context.Background()), "http://"+s.addr+"/", strings.NewReader("hello"), 5)
	resp, got := do(t, tr, req)
	if resp.StatusCode != 200 || got != "got hello" {
		t.Fatalf("got %d %q", resp.StatusCode, got)
	}
	if ss := recv(t, seen); ss.err != nil || !ss.ended || ss.data != "hello" {
		t.Fatalf("server saw %+v", ss)
	}
	if waits, got100, infos := et.counts(); waits != 1 || got100 != 1 || fmt.Sprint(infos) != "[103 100]" {
		t.Fatalf("Wait100Continue %d, Got100Continue %d, 1xx %v", waits, got100, infos)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("took %v: the body waited for the timeout", d)
	}
}

// The context ending while the request waits for its 100 resets the
// stream with CANCEL (no DATA sent) and fails RoundTrip with the
// context's error; the connection carries on.
func TestExpectContinueContextCancelledWhileWaiting(t *testing.T) {
	gotHeaders := make(chan struct{})
	seen := make(chan streamSeen, 1)
	s := startRawForRequest(t, nil, func(rc *rawConn, h *http2.MetaHeadersFrame) {
		close(gotHeaders)
		seen <- rc.readStream(h.StreamID, nil)
		rc.answerTheRest("next")
	})
	tr := newTransport(t, func(tr *Transport) { tr.ExpectContinueTimeout = time.Minute })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	body := &trackedBody{r: strings.NewReader(strings.Repeat("x", 100<<10))}
	req := expectRequest(t, ctx, "http://"+s.addr+"/", body, -1)
	errc := make(chan error, 1)
	go func() {
		_, err := tr.RoundTrip(req)
		errc <- err
	}()
	recv(t, gotHeaders)
	cancel()
	if err := recv(t, errc); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if ss := recv(t, seen); ss.err != nil || ss.data != "" || !ss.rst || ss.code != http2.ErrCodeCancel {
		t.Fatalf("server saw %+v, want no DATA and RST_STREAM CANCEL", ss)
	}
	if body.reads.Load() != 0 || !body.closed.Load() {
		t.Fatalf("request body read %d times, closed %v", body.reads.Load(), body.closed.Load())
	}
	if _, got := get(t, tr, "http://"+s.addr+"/next"); got != "next" {
		t.Fatalf("next request got %q", got)
	}
}

// Without ExpectContinueTimeout the body goes at once, Expect field and
// all, as before.
func TestExpectContinueWithoutTimeoutSendsAtOnce(t *testing.T) {
	seen := make(chan streamSeen, 1)
	expect := make(chan string, 1)
	s := startRawForRequest(t, nil, func(rc *rawConn, h *http2.MetaHeadersFrame) {
		for _, f := range h.RegularFields() {
			if f.Name == "expect" {
				expect <- f.Value
			}
		}
		rc.echoStream(h.StreamID, seen)
	})
	tr := newTransport(t)
	et := &expectTrace{}
	req := expectRequest(t, et.ctx(context.Background()), "http://"+s.addr+"/", strings.NewReader("hello"), 5)
	if _, got := do(t, tr, req); got != "got hello" {
		t.Fatalf("got %q", got)
	}
	if ss := recv(t, seen); !ss.ended || ss.data != "hello" {
		t.Fatalf("server saw %+v", ss)
	}
	if v := recv(t, expect); v != "100-continue" {
		t.Fatalf("expect field %q", v)
	}
	if waits, _, _ := et.counts(); waits != 0 {
		t.Fatalf("Wait100Continue called %d times without a timeout", waits)
	}
}

// A request refused while it waits for its 100 is sent again, its body
// untouched, on another connection.
func TestExpectContinueRefusedWhileWaitingIsRetried(t *testing.T) {
	seen := make(chan streamSeen, 1)
	s := startRaw(t, nil, func(rc *rawConn, n int) {
		h, err := rc.readRequestHeaders()
		if err != nil {
			return
		}
		if n == 0 {
			rc.fr.WriteRSTStream(h.StreamID, http2.ErrCodeRefusedStream)
			io.Copy(io.Discard, rc)
			return
		}
		rc.headers(h.StreamID, false, ":status", "100")
		ss := rc.readStream(h.StreamID, nil)
		seen <- ss
		rc.respond(h.StreamID, fmt.Sprintf("got %d", len(ss.data)))
		io.Copy(io.Discard, rc)
	})
	tr := newTransport(t, func(tr *Transport) { tr.ExpectContinueTimeout = time.Minute })
	payload := strings.Repeat("y", 40<<10)
	body := &trackedBody{r: strings.NewReader(payload)}
	req := expectRequest(t, context.Background(), "http://"+s.addr+"/", body, int64(len(payload)))
	if _, got := do(t, tr, req); got != fmt.Sprintf("got %d", len(payload)) {
		t.Fatalf("got %q", got)
	}
	if ss := recv(t, seen); !ss.ended || len(ss.data) != len(payload) {
		t.Fatalf("server saw %d bytes, ended %v", len(ss.data), ss.ended)
	}
	if n := s.accepted.Load(); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
}

// A request waiting for its 100 holds up no other stream of its
// connection: a GET sent meanwhile completes, then the waiting one gets
// its 100 and sends its body.
func TestExpectContinueWaitLeavesOtherStreamsAlone(t *testing.T) {
	seen := make(chan streamSeen, 1)
	s := startRaw(t, nil, func(rc *rawConn, n int) {
		waiting, err := rc.readRequestHeaders()
		if err != nil {
			return
		}
		other, err := rc.readRequestHeaders()
		if err != nil {
			return
		}
		rc.respond(other.StreamID, "other")
		rc.headers(waiting.StreamID, false, ":status", "100")
		rc.echoStream(waiting.StreamID, seen)
	})
	tr := newTransport(t, func(tr *Transport) { tr.ExpectContinueTimeout = time.Minute })
	waiting := make(chan struct{})
	et := &expectTrace{}
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		Wait100Continue: func() { close(waiting) },
	})
	type result struct {
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		req := expectRequest(t, et.ctx(ctx), "http://"+s.addr+"/wait", strings.NewReader("hello"), 5)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			done <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- result{string(b), err}
	}()
	recv(t, waiting)
	if _, got := get(t, tr, "http://"+s.addr+"/other"); got != "other" {
		t.Fatalf("other request got %q", got)
	}
	if r := recv(t, done); r.err != nil || r.body != "got hello" {
		t.Fatalf("waiting request: %q, %v", r.body, r.err)
	}
	if ss := recv(t, seen); !ss.ended || ss.data != "hello" {
		t.Fatalf("server saw %+v", ss)
	}
	if n := s.accepted.Load(); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
}
