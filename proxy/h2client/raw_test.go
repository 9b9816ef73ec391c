package h2client

import (
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

	"golang.org/x/net/http2"

	"github.com/outrigger-mesh/outrigger/proxy/internal/proxytest"
)

// respond sends a 200 with body and END_STREAM.
func (rc *rawConn) respond(id uint32, body string) error {
	if err := rc.headers(id, body == "", ":status", "200", "content-length", fmt.Sprint(len(body))); err != nil {
		return err
	}
	if body == "" {
		return nil
	}
	return rc.fr.WriteData(id, true, []byte(body))
}

func TestGoAwayRetriesUnprocessedAndFailsProcessed(t *testing.T) {
	seen := make(chan struct{}, 2)
	// The first connection takes two requests, then says it processed
	// only the first one and goes away.
	s := startRawGoingAway(t, 2, seen, func(rc *rawConn, ids []uint32) {
		rc.fr.WriteGoAway(ids[0], http2.ErrCodeNo, []byte("bye"))
		rc.fr.WriteRSTStream(ids[0], http2.ErrCodeInternal)
		io.Copy(io.Discard, rc)
	})
	// The streams go out in this order, /a on stream 1.
	results := sendInOrder(t, newTransport(t), s.addr, seen, "/a", "/b")
	var okBodies, resets int
	for range 2 {
		r := recv(t, results)
		var se http2.StreamError
		switch {
		case r.err == nil && r.body == "second /b":
			okBodies++
		case errors.As(r.err, &se) && se.Code == http2.ErrCodeInternal && se.StreamID == 1:
			resets++
		default:
			t.Fatalf("unexpected result %q, %v", r.body, r.err)
		}
	}
	if okBodies != 1 || resets != 1 {
		t.Fatalf("ok %d, resets %d", okBodies, resets)
	}
	if n := s.accepted.Load(); n != 2 {
		t.Fatalf("server saw %d connections, want 2", n)
	}
}

func TestRefusedStreamIsRetriedOnce(t *testing.T) {
	var refused atomic.Int32
	s := startRaw(t, nil, func(rc *rawConn, n int) {
		rc.serveEach(func(h *http2.MetaHeadersFrame) {
			if h.PseudoValue("path") == "/always" || n == 0 {
				refused.Add(1)
				rc.fr.WriteRSTStream(h.StreamID, http2.ErrCodeRefusedStream)
				return
			}
			rc.respond(h.StreamID, "ok")
		})
	})
	tr := newTransport(t)
	if resp, body := get(t, tr, "http://"+s.addr+"/once"); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	req, _ := http.NewRequest("GET", "http://"+s.addr+"/always", nil)
	_, err := tr.RoundTrip(req)
	var se http2.StreamError
	if !errors.As(err, &se) || se.Code != http2.ErrCodeRefusedStream {
		t.Fatalf("err = %v, want REFUSED_STREAM", err)
	}
	if n := refused.Load(); n != 3 {
		t.Fatalf("server refused %d streams, want 3 (one, then two for the retried request)", n)
	}
	// A body that cannot be sent again is not retried.
	refused.Store(0)
	req, _ = http.NewRequest("POST", "http://"+s.addr+"/always", io.MultiReader(strings.NewReader("x")))
	if _, err = tr.RoundTrip(req); !errors.As(err, &se) || refused.Load() != 1 {
		t.Fatalf("err = %v after %d refusals", err, refused.Load())
	}
}

// A stream refused (REFUSED_STREAM, or above a GOAWAY's last stream)
// after its 103 Early Hints was passed on is not sent again: the caller,
// a proxy that wrote the 103 to its client, would get it twice for one
// request. It fails as a reset, without ErrUnprocessed, on the one
// connection.
func TestRefusedAfter1xxIsNotSentAgain(t *testing.T) {
	for _, refuse := range []string{"rst", "goaway"} {
		t.Run(refuse, func(t *testing.T) {
			s := startRaw(t, nil, func(rc *rawConn, n int) {
				if n > 0 {
					rc.serveEach(func(h *http2.MetaHeadersFrame) {
						rc.headers(h.StreamID, false, ":status", "103", "link", "</again.css>; rel=preload")
						rc.respond(h.StreamID, "second")
					})
					return
				}
				h, err := rc.readRequestHeaders()
				if err != nil {
					return
				}
				rc.headers(h.StreamID, false, ":status", "103", "link", "</a.css>; rel=preload")
				if refuse == "rst" {
					rc.fr.WriteRSTStream(h.StreamID, http2.ErrCodeRefusedStream)
				} else {
					rc.fr.WriteGoAway(0, http2.ErrCodeNo, nil)
				}
				io.Copy(io.Discard, rc)
			})
			tr := newTransport(t)
			var hooks recordingHooks
			req, _ := http.NewRequest("GET", "http://"+s.addr+"/", nil)
			resp, err := tr.RoundTripHooks(ctxTimeout(t, 10*time.Second), req, &hooks, time.Time{})
			if err == nil {
				resp.Body.Close()
			}
			if err == nil || errors.Is(err, ErrUnprocessed) || len(hooks.infos) != 1 {
				t.Fatalf("err %v, 1xx %v; want one 103, then an error without ErrUnprocessed", err, hooks.infos)
			}
			var se http2.StreamError
			var ge *goAwayError
			if refuse == "rst" && !(errors.As(err, &se) && se.Code == http2.ErrCodeRefusedStream) || refuse == "goaway" && !errors.As(err, &ge) {
				t.Fatalf("err %v", err)
			}
			if n := s.accepted.Load(); n != 1 {
				t.Fatalf("%d connections, want 1", n)
			}
		})
	}
}

func TestResetDuringResponseBody(t *testing.T) {
	s := startRawForRequest(t, nil, func(rc *rawConn, h *http2.MetaHeadersFrame) {
		rc.headers(h.StreamID, false, ":status", "200")
		rc.fr.WriteData(h.StreamID, false, []byte("partial"))
		rc.fr.WriteRSTStream(h.StreamID, http2.ErrCodeInternal)
		io.Copy(io.Discard, rc)
	})
	tr := newTransport(t)
	req, _ := http.NewRequest("GET", "http://"+s.addr+"/", nil)
	resp := roundTrip(t, tr, req)
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	var se http2.StreamError
	if string(b) != "partial" || !errors.As(err, &se) || se.Code != http2.ErrCodeInternal || se.StreamID != 1 {
		t.Fatalf("body %q, err %v", b, err)
	}
}

func TestFlowControlTinyServerWindowLargeBody(t *testing.T) {
	const size = 200 << 10
	got := make(chan int, 1)
	s := startRawForRequest(t, []http2.Setting{{ID: http2.SettingInitialWindowSize, Val: 10}}, func(rc *rawConn, h *http2.MetaHeadersFrame) {
		total := 0
		for {
			f, err := rc.fr.ReadFrame()
			if err != nil {
				return
			}
			d, ok := f.(*http2.DataFrame)
			if !ok {
				continue
			}
			if len(d.Data()) > 10 {
				got <- -len(d.Data())
				return
			}
			total += len(d.Data())
			if d.StreamEnded() {
				break
			}
			// Hand the window back a little at a time.
			rc.fr.WriteWindowUpdate(h.StreamID, uint32(len(d.Data())))
			rc.fr.WriteWindowUpdate(0, uint32(len(d.Data())))
		}
		got <- total
		rc.respond(h.StreamID, "done")
		io.Copy(io.Discard, rc)
	})
	tr := newTransport(t)
	req, _ := http.NewRequest("POST", "http://"+s.addr+"/", strings.NewReader(strings.Repeat("z", size)))
	if _, body := do(t, tr, req); body != "done" {
		t.Fatalf("body %q", body)
	}
	if n := recv(t, got); n != size {
		t.Fatalf("server got %d bytes (negative: a frame beyond the window), want %d", n, size)
	}
}

func TestLargeResponseBodyGetsWindowUpdates(t *testing.T) {
	const size = 5 << 20 // beyond the stream and connection windows
	s := startH2(t, func(w http.ResponseWriter, r *http.Request) {
		chunk := []byte(strings.Repeat("y", 32<<10))
		for sent := 0; sent < size; sent += len(chunk) {
			w.Write(chunk)
		}
	})
	tr := newTransport(t)
	req, _ := http.NewRequest("GET", s.url("/big"), nil)
	resp := roundTrip(t, tr, req)
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != size {
		t.Fatalf("read %d bytes, %v", n, err)
	}
}

func TestInformationalResponsesReachTrace(t *testing.T) {
	s := startRawForRequest(t, nil, func(rc *rawConn, h *http2.MetaHeadersFrame) {
		rc.headers(h.StreamID, false, ":status", "103", "link", "</a.css>; rel=preload")
		rc.headers(h.StreamID, false, ":status", "100")
		rc.respond(h.StreamID, "final")
		io.Copy(io.Discard, rc)
	})
	tr := newTransport(t)
	var got []string
	req, _ := http.NewRequest("GET", "http://"+s.addr+"/", nil)
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			got = append(got, fmt.Sprintf("%d %s", code, h.Get("Link")))
			return nil
		},
		Got100Continue: func() { got = append(got, "continue") },
	}))
	resp, body := do(t, tr, req)
	if resp.StatusCode != 200 || body != "final" || fmt.Sprint(got) != "[103 </a.css>; rel=preload 100  continue]" {
		t.Fatalf("got %d %q, 1xx %q", resp.StatusCode, body, got)
	}
}

func TestMalformedResponsesResetTheStream(t *testing.T) {
	cases := []struct {
		name  string
		serve func(rc *rawConn, id uint32)
	}{
		{"missing :status", func(rc *rawConn, id uint32) { rc.headers(id, true, "content-type", "text/plain") }},
		{"bad :status", func(rc *rawConn, id uint32) { rc.headers(id, true, ":status", "20x") }},
		{"101", func(rc *rawConn, id uint32) { rc.headers(id, true, ":status", "101") }},
		{"request pseudo-field", func(rc *rawConn, id uint32) { rc.headers(id, true, ":status", "200", ":path", "/") }},
		{"connection header", func(rc *rawConn, id uint32) { rc.headers(id, true, ":status", "200", "connection", "close") }},
		{"transfer-encoding", func(rc *rawConn, id uint32) {
			rc.headers(id, true, ":status", "200", "transfer-encoding", "chunked")
		}},
		{"uppercase name", func(rc *rawConn, id uint32) { rc.headers(id, true, ":status", "200", "X-Upper", "v") }},
		{"DATA before HEADERS", func(rc *rawConn, id uint32) { rc.fr.WriteData(id, true, []byte("x")) }},
		{"pseudo-field in trailers", func(rc *rawConn, id uint32) {
			rc.headers(id, false, ":status", "200")
			rc.headers(id, true, ":status", "200")
		}},
		{"trailers without END_STREAM", func(rc *rawConn, id uint32) {
			rc.headers(id, false, ":status", "200")
			rc.headers(id, false, "grpc-status", "0")
		}},
		{"more data than content-length", func(rc *rawConn, id uint32) {
			rc.headers(id, false, ":status", "200", "content-length", "2")
			rc.fr.WriteData(id, true, []byte("abc"))
		}},
		{"less data than content-length", func(rc *rawConn, id uint32) {
			rc.headers(id, false, ":status", "200", "content-length", "5")
			rc.fr.WriteData(id, true, []byte("abc"))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rst := make(chan http2.ErrCode, 1)
			s := startRawForRequest(t, nil, func(rc *rawConn, h *http2.MetaHeadersFrame) {
				tc.serve(rc, h.StreamID)
				if code, err := rc.readReset(); err == nil {
					rst <- code
				}
				io.Copy(io.Discard, rc)
			})
			tr := newTransport(t)
			req, _ := http.NewRequest("GET", "http://"+s.addr+"/", nil)
			resp, err := tr.RoundTrip(req)
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			if err == nil {
				t.Fatal("no error")
			}
			if tc.name == "less data than content-length" {
				if !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("err = %v, want io.ErrUnexpectedEOF", err)
				}
				return
			}
			var se http2.StreamError
			if !errors.As(err, &se) || se.Code != http2.ErrCodeProtocol {
				t.Fatalf("err = %v, want a PROTOCOL_ERROR StreamError", err)
			}
			select {
			case code := <-rst:
				if code != http2.ErrCodeProtocol {
					t.Fatalf("server saw RST_STREAM %v", code)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("server saw no RST_STREAM")
			}
			// The connection stays usable.
			tr.mu.Lock()
			n := len(tr.hosts[s.addr].conns)
			tr.mu.Unlock()
			if n != 1 {
				t.Fatalf("%d connections after a stream error, want 1", n)
			}
		})
	}
}

func TestPushPromiseIsAConnectionError(t *testing.T) {
	goaway := make(chan http2.ErrCode, 1)
	s := startRawForRequest(t, nil, func(rc *rawConn, h *http2.MetaHeadersFrame) {
		rc.fr.WritePushPromise(http2.PushPromiseParam{StreamID: h.StreamID, PromiseID: 2, BlockFragment: []byte{0x82}, EndHeaders: true})
		if code, err := rc.readGoAway(); err == nil {
			goaway <- code
		}
	})
	tr := newTransport(t)
	req, _ := http.NewRequest("GET", "http://"+s.addr+"/", nil)
	if _, err := tr.RoundTrip(req); err == nil {
		t.Fatal("no error")
	}
	if code := recv(t, goaway); code != http2.ErrCodeProtocol {
		t.Fatalf("GOAWAY %v", code)
	}
}

func TestPingTimeoutClosesConnection(t *testing.T) {
	pings := make(chan struct{}, 10)
	s := startRaw(t, nil, func(rc *rawConn, n int) {
		// Never answers PINGs.
		rc.readUntil(func(f http2.Frame) bool {
			if _, ok := f.(*http2.PingFrame); ok {
				pings <- struct{}{}
			}
			return false
		})
	})
	// PingTimeout also bounds the handshake and the acknowledgement of
	// the client's SETTINGS: a second, so that a loaded machine slow to
	// run the server's goroutine does not fail the connection with the
	// SETTINGS timeout first.
	tr := newTransport(t, func(tr *Transport) {
		tr.ReadIdleTimeout = 20 * time.Millisecond
		tr.PingTimeout = time.Second
	})
	req, _ := http.NewRequest("GET", "http://"+s.addr+"/", nil)
	_, err := tr.RoundTrip(req)
	if !errors.Is(err, errPingTimeout) {
		t.Fatalf("err = %v, want the ping timeout", err)
	}
	// The server reads the PING on its own goroutine, which may come to
	// it after the client has given up on the answer.
	recv(t, pings)
}

func TestPingAnsweredKeepsConnection(t *testing.T) {
	s := startH2(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(150 * time.Millisecond) // silence longer than ReadIdleTimeout
		w.Write([]byte("slow"))
	})
	tr := newTransport(t, func(tr *Transport) {
		tr.ReadIdleTimeout = 20 * time.Millisecond
		tr.PingTimeout = time.Second
	})
	if _, body := get(t, tr, s.url("/")); body != "slow" {
		t.Fatalf("body %q", body)
	}
	if n := s.opened.Load(); n != 1 {
		t.Fatalf("%d connections", n)
	}
}

func TestIdleTimeoutByInjectedClock(t *testing.T) {
	s := startH2(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("x")) })
	clk := proxytest.NewClock(time.Unix(1000, 0))
	tr := newTransport(t, func(tr *Transport) {
		tr.IdleTimeout = time.Minute
		tr.Now = clk.Now
	})
	get(t, tr, s.url("/"))
	clk.Advance(59 * time.Second)
	get(t, tr, s.url("/"))
	if n := s.opened.Load(); n != 1 {
		t.Fatalf("%d connections before the idle timeout, want 1", n)
	}
	clk.Advance(time.Minute)
	get(t, tr, s.url("/"))
	if n := s.opened.Load(); n != 2 {
		t.Fatalf("%d connections after the idle timeout, want 2", n)
	}
	tr.mu.Lock()
	n := len(tr.hosts[s.addr].conns)
	tr.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d connections kept, want 1 (the expired one closed)", n)
	}
}

func TestIdleTimerClosesUnusedConnection(t *testing.T) {
	s := startH2(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("x")) })
	tr := newTransport(t, func(tr *Transport) { tr.IdleTimeout = 30 * time.Millisecond })
	get(t, tr, s.url("/"))
	eventually(t, "the idle connection to close", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		return len(tr.hosts) == 0
	})
}

func TestCloseIdleConnectionsKeepsBusyOnes(t *testing.T) {
	release := newGate()
	s := startH2(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			<-release.ch
		}
		w.Write([]byte("x"))
	})
	t.Cleanup(release.open)
	tr := newTransport(t)
	req, _ := http.NewRequest("GET", s.url("/slow"), nil)
	resp := roundTrip(t, tr, req)
	tr.CloseIdleConnections()
	release.open()
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(b) != "x" {
		t.Fatalf("busy connection's body %q, %v", b, err)
	}
	tr.CloseIdleConnections()
	tr.mu.Lock()
	n := len(tr.hosts)
	tr.mu.Unlock()
	if n != 0 {
		t.Fatal("idle connection kept")
	}
}

func TestContextCancelResetsStream(t *testing.T) {
	for _, after := range []bool{false, true} {
		t.Run(fmt.Sprint("after headers ", after), func(t *testing.T) {
			rst := make(chan http2.ErrCode, 1)
			sent := make(chan struct{})
			s := startRawForRequest(t, nil, func(rc *rawConn, h *http2.MetaHeadersFrame) {
				close(sent)
				if after {
					rc.headers(h.StreamID, false, ":status", "200")
				}
				if code, err := rc.readReset(); err == nil {
					rst <- code
				}
				io.Copy(io.Discard, rc)
			})
			tr := newTransport(t)
			cause := errors.New("caller gave up")
			ctx, cancel := context.WithCancelCause(context.Background())
			req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+s.addr+"/", nil)
			var err error
			if after {
				resp, rerr := tr.RoundTrip(req)
				if rerr != nil {
					t.Fatal(rerr)
				}
				defer resp.Body.Close()
				time.AfterFunc(20*time.Millisecond, func() { cancel(cause) })
				_, err = io.ReadAll(resp.Body)
			} else {
				// Cancel once the server has the request's HEADERS: a
				// cancel timed from the start could land in the dial or
				// the handshake on a loaded machine, before there is a
				// stream to reset.
				stop := make(chan struct{})
				defer close(stop)
				go func() {
					select {
					case <-sent:
						cancel(cause)
					case <-stop:
					}
				}()
				_, err = tr.RoundTrip(req)
			}
			if !errors.Is(err, cause) {
				t.Fatalf("err = %v, want the context's cause", err)
			}
			if code := recv(t, rst); code != http2.ErrCodeCancel {
				t.Fatalf("RST_STREAM %v", code)
			}
		})
	}
}

func TestBodyCloseEarlyResetsStream(t *testing.T) {
	rst := make(chan http2.ErrCode, 1)
	s := startRawForRequest(t, nil, func(rc *rawConn, h *http2.MetaHeadersFrame) {
		rc.headers(h.StreamID, false, ":status", "200")
		rc.fr.WriteData(h.StreamID, false, []byte("more to come"))
		if code, err := rc.readReset(); err == nil {
			rst <- code
		}
		io.Copy(io.Discard, rc)
	})
	tr := newTransport(t)
	req, _ := http.NewRequest("GET", "http://"+s.addr+"/", nil)
	resp := roundTrip(t, tr, req)
	buf := make([]byte, 4)
	io.ReadFull(resp.Body, buf)
	resp.Body.Close()
	if _, err := resp.Body.Read(buf); err == nil {
		t.Fatal("read after Close succeeded")
	}
	if code := recv(t, rst); code != http2.ErrCodeCancel {
		t.Fatalf("RST_STREAM %v", code)
	}
}

func TestSmallMaxConcurrentStreamsOpensMoreConnections(t *testing.T) {
	release := newGate()
	s := startH2(t, func(w http.ResponseWriter, r *http.Request) {
		<-release.ch
		w.Write([]byte("x"))
	}, func(s *http2.Server) { s.MaxConcurrentStreams = 2 })
	t.Cleanup(release.open)
	tr := newTransport(t)
	const n = 5
	errs := make(chan error, n)
	for range n {
		go func() {
			req, _ := http.NewRequest("GET", s.url("/"), nil)
			resp, err := tr.RoundTrip(req)
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			errs <- err
		}()
	}
	eventually(t, "three connections", func() bool { return s.opened.Load() == 3 })
	release.open()
	for range n {
		if err := recv(t, errs); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.opened.Load(); got != 3 {
		t.Fatalf("%d connections, want 3", got)
	}
}

func TestConcurrentFirstRequestsDialOnce(t *testing.T) {
	s := startH2(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("x")) })
	var dials atomic.Int32
	tr := newTransport(t, func(tr *Transport) {
		tr.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			time.Sleep(20 * time.Millisecond) // let the others pile up
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}
	})
	const n = 20
	errs := make(chan error, n)
	for range n {
		go func() {
			req, _ := http.NewRequest("GET", s.url("/"), nil)
			resp, err := tr.RoundTrip(req)
			if err == nil {
				io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			errs <- err
		}()
	}
	for range n {
		if err := recv(t, errs); err != nil {
			t.Fatal(err)
		}
	}
	if d := dials.Load(); d != 1 {
		t.Fatalf("%d dials, want 1", d)
	}
}

// dialFailure stands for the proxy's connect error type.
type dialFailure struct{ addr string }

func (e *dialFailure) Error() string { return "connect to " + e.addr + " failed" }

func TestDialErrorIsFoundByErrorsAs(t *testing.T) {
	tr := newTransport(t, func(tr *Transport) {
		tr.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			return nil, &dialFailure{addr}
		}
	})
	req, _ := http.NewRequest("GET", "http://127.0.0.1:1/", nil)
	_, err := tr.RoundTrip(req)
	var df *dialFailure
	if !errors.As(err, &df) {
		t.Fatalf("err = %v", err)
	}
}

func TestWaitingForDialHonoursContext(t *testing.T) {
	unblock := make(chan struct{})
	tr := newTransport(t, func(tr *Transport) {
		tr.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			<-unblock
			return nil, errors.New("refused")
		}
	})
	first := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest("GET", "http://127.0.0.1:1/", nil)
		_, err := tr.RoundTrip(req)
		first <- err
	}()
	eventually(t, "the dial to start", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		hp := tr.hosts["127.0.0.1:1"]
		return hp != nil && hp.dialing != nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://127.0.0.1:1/", nil)
	if _, err := tr.RoundTrip(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiter err = %v", err)
	}
	close(unblock)
	if err := recv(t, first); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("dialer err = %v", err)
	}
}

// failingConn fails every write after the first (the handshake).
type failingConn struct {
	net.Conn
	writes atomic.Int32
}

func (c *failingConn) Write(p []byte) (int, error) {
	if c.writes.Add(1) > 1 {
		return 0, errors.New("broken pipe (test)")
	}
	return c.Conn.Write(p)
}

func TestRequestNeverWrittenIsRetriedOnNewConnection(t *testing.T) {
	s := startH2(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
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
	if _, body := get(t, tr, s.url("/")); body != "ok" {
		t.Fatalf("body %q", body)
	}
	if d := dials.Load(); d != 2 {
		t.Fatalf("%d dials, want 2", d)
	}
	// A streaming body without GetBody cannot be sent again.
	dials.Store(0)
	tr.closeAllForTest()
	req, _ := http.NewRequest("POST", s.url("/"), io.MultiReader(strings.NewReader("body")))
	if _, err := tr.RoundTrip(req); err == nil || dials.Load() != 1 {
		t.Fatalf("err = %v after %d dials", err, dials.Load())
	}
}

func TestPerRequestFieldsAreNotIndexed(t *testing.T) {
	got := make(chan map[string]bool, 1)
	s := startRawForRequest(t, nil, func(rc *rawConn, h *http2.MetaHeadersFrame) {
		m := map[string]bool{}
		for _, f := range h.Fields {
			m[f.Name] = f.Sensitive
		}
		got <- m
		rc.respond(h.StreamID, "")
		io.Copy(io.Discard, rc)
	})
	tr := newTransport(t)
	req, _ := http.NewRequest("GET", "http://"+s.addr+"/", nil)
	req.Header.Set("X-Request-Id", "8d1f")
	req.Header.Set("Authorization", "Bearer x")
	req.Header.Set("Content-Type", "application/grpc")
	do(t, tr, req)
	m := recv(t, got)
	if !m["x-request-id"] || !m["authorization"] || m["content-type"] || m[":path"] {
		t.Fatalf("never-indexed flags: %v", m)
	}
}

func TestServerAllowingNoStreamsIsAnErrorNotADialLoop(t *testing.T) {
	s := startRaw(t, []http2.Setting{{ID: http2.SettingMaxConcurrentStreams, Val: 0}}, func(rc *rawConn, n int) {
		io.Copy(io.Discard, rc)
	})
	tr := newTransport(t)
	req, _ := http.NewRequest("GET", "http://"+s.addr+"/", nil)
	if _, err := tr.RoundTrip(req); err == nil || !strings.Contains(err.Error(), "takes no stream") {
		t.Fatalf("err = %v", err)
	}
	if n := s.accepted.Load(); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
}

func TestSettingsRaisingTheWindowReleasesTheSender(t *testing.T) {
	const size = 100 << 10
	got := make(chan int, 1)
	s := startRawForRequest(t, []http2.Setting{{ID: http2.SettingInitialWindowSize, Val: 10}}, func(rc *rawConn, h *http2.MetaHeadersFrame) {
		total := 0
		raised := false
		for {
			f, err := rc.fr.ReadFrame()
			if err != nil {
				return
			}
			d, ok := f.(*http2.DataFrame)
			if !ok {
				continue
			}
			total += len(d.Data())
			if d.StreamEnded() {
				break
			}
			if !raised && total == 10 {
				// The stream's window is spent: raise every window.
				raised = true
				rc.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
				rc.fr.WriteWindowUpdate(0, 1<<20)
			}
		}
		got <- total
		rc.respond(h.StreamID, "done")
		io.Copy(io.Discard, rc)
	})
	tr := newTransport(t)
	req, _ := http.NewRequest("POST", "http://"+s.addr+"/", strings.NewReader(strings.Repeat("z", size)))
	if _, body := do(t, tr, req); body != "done" {
		t.Fatalf("body %q", body)
	}
	if n := recv(t, got); n != size {
		t.Fatalf("server got %d bytes", n)
	}
}

func TestPingFloodFromServerThatDoesNotReadEndsConnection(t *testing.T) {
	goaway := make(chan struct{})
	s := startRaw(t, nil, func(rc *rawConn, n int) {
		// Reads nothing after the preface; writes PINGs until the client
		// gives up on the connection.
		for i := 0; i < 1e6; i++ {
			if rc.fr.WritePing(false, [8]byte{byte(i)}) != nil {
				close(goaway)
				return
			}
		}
	})
	tr := newTransport(t)
	ctx := ctxTimeout(t, 20*time.Second)
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+s.addr+"/", nil)
	_, err := tr.RoundTrip(req)
	if err == nil || ctx.Err() != nil {
		t.Fatalf("err = %v (context: %v)", err, ctx.Err())
	}
	select {
	case <-goaway:
	case <-time.After(10 * time.Second):
		t.Fatal("connection still open")
	}
}

func TestRetryWithGetBodySendsTheBodyAgain(t *testing.T) {
	bodies := make(chan string, 4)
	s := startRaw(t, nil, func(rc *rawConn, n int) {
		for {
			h, err := rc.readRequestHeaders()
			if err != nil {
				return
			}
			var b []byte
			for {
				f, err := rc.fr.ReadFrame()
				if err != nil {
					return
				}
				if d, ok := f.(*http2.DataFrame); ok {
					b = append(b, d.Data()...)
					if d.StreamEnded() {
						break
					}
				}
			}
			bodies <- string(b)
			if n == 0 {
				rc.fr.WriteRSTStream(h.StreamID, http2.ErrCodeRefusedStream)
				continue
			}
			rc.respond(h.StreamID, "ok")
		}
	})
	tr := newTransport(t)
	payload := strings.Repeat("g", 40<<10) // streamed, not read ahead
	req, _ := http.NewRequest("POST", "http://"+s.addr+"/", io.MultiReader(strings.NewReader(payload)))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(payload)), nil }
	if _, body := do(t, tr, req); body != "ok" {
		t.Fatalf("body %q", body)
	}
	if a, b := recv(t, bodies), recv(t, bodies); a != payload || b != payload {
		t.Fatalf("bodies of %d and %d bytes, want %d", len(a), len(b), len(payload))
	}
}

func TestResponseHeaderListOverLimitResetsStream(t *testing.T) {
	s := startRaw(t, nil, func(rc *rawConn, n int) {
		rc.serveEach(func(h *http2.MetaHeadersFrame) {
			if h.PseudoValue("path") == "/big" {
				// Each field within the limit, all of them beyond it.
				v := strings.Repeat("v", 400)
				rc.headers(h.StreamID, true, ":status", "200", "x-a", v, "x-b", v, "x-c", v)
				return
			}
			rc.respond(h.StreamID, "small")
		})
	})
	tr := newTransport(t, func(tr *Transport) { tr.MaxHeaderListSize = 1000 })
	req, _ := http.NewRequest("GET", "http://"+s.addr+"/big", nil)
	_, err := tr.RoundTrip(req)
	var se http2.StreamError
	if !errors.As(err, &se) || se.Code != http2.ErrCodeProtocol {
		t.Fatalf("err = %v, want a PROTOCOL_ERROR StreamError", err)
	}
	if _, body := get(t, tr, "http://"+s.addr+"/small"); body != "small" {
		t.Fatalf("body %q", body)
	}
	if n := s.accepted.Load(); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
}
