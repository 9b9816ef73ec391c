package h2client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// An HPACK bomb: a header block of a few KiB that decodes, through one
// dynamic-table entry referenced again and again, into megabytes. The
// decoded size is what MaxHeaderListSize bounds (RFC 9113 §6.5.2, §10.5.1):
// the stream is reset with PROTOCOL_ERROR, the connection carries on.
func TestHPACKBombResetsTheStream(t *testing.T) {
	blockLen := make(chan int, 1)
	s := startRaw(t, nil, func(rc *rawConn, n int) {
		rc.serveEach(func(h *http2.MetaHeadersFrame) {
			if h.PseudoValue("path") != "/bomb" {
				rc.respond(h.StreamID, "small")
				return
			}
			kv := []string{":status", "200"}
			v := strings.Repeat("b", 4000)
			for range 1000 {
				kv = append(kv, "x-bomb", v) // indexed after the first
			}
			rc.headers(h.StreamID, true, kv...)
			blockLen <- len(rc.hbuf.b)
		})
	})
	tr := newTransport(t, func(tr *Transport) { tr.MaxHeaderListSize = 64 << 10 })
	req, _ := http.NewRequestWithContext(ctxTimeout(t, 10*time.Second), "GET", "http://"+s.addr+"/bomb", nil)
	_, err := tr.RoundTrip(req)
	var se http2.StreamError
	if !errors.As(err, &se) || se.Code != http2.ErrCodeProtocol {
		t.Fatalf("err = %v, want a PROTOCOL_ERROR StreamError", err)
	}
	if n := recv(t, blockLen); n > 8<<10 {
		t.Fatalf("the bomb's block is %d bytes: not a bomb", n)
	}
	if _, body := get(t, tr, "http://"+s.addr+"/small"); body != "small" {
		t.Fatalf("body %q", body)
	}
	if n := s.accepted.Load(); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
}

// A header block that goes on in CONTINUATION frames past
// MaxHeaderListSize is not read to its end (CVE-2023-45288): once the
// decoded fields pass the limit, the next CONTINUATION ends the
// connection with PROTOCOL_ERROR, long before the server has sent all it
// meant to.
func TestContinuationFloodEndsTheConnection(t *testing.T) {
	const resetBeforeGoAway = http2.ErrCode(1 << 31)
	const limit = 64 << 10
	sent := make(chan int, 1)
	goaway := make(chan http2.ErrCode, 1)
	s := startRawForRequest(t, nil, func(rc *rawConn, h *http2.MetaHeadersFrame) {
		go func() {
			code, err := rc.readGoAway()
			if err != nil {
				// The client closes with the flood unread in its
				// socket: the reset that sends may overtake its GOAWAY.
				code = resetBeforeGoAway
			}
			goaway <- code
		}()
		var hb bytesBuffer
		enc := hpack.NewEncoder(&hb)
		enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
		if rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: h.StreamID, BlockFragment: hb.b}) != nil {
			return
		}
		total := len(hb.b)
		v := strings.Repeat("c", 1000)
		for range 10000 { // 150 MB if nothing stops it
			hb.b = hb.b[:0]
			for range 15 {
				enc.WriteField(hpack.HeaderField{Name: "x-c", Value: v, Sensitive: true})
			}
			if rc.fr.WriteContinuation(h.StreamID, false, hb.b) != nil {
				break
			}
			total += len(hb.b)
		}
		sent <- total
	})
	tr := newTransport(t, func(tr *Transport) { tr.MaxHeaderListSize = limit })
	req, _ := http.NewRequestWithContext(ctxTimeout(t, 10*time.Second), "GET", "http://"+s.addr+"/", nil)
	_, err := tr.RoundTrip(req)
	if err == nil {
		t.Fatal("no error")
	}
	if code := recv(t, goaway); code != http2.ErrCodeProtocol && code != resetBeforeGoAway {
		t.Fatalf("GOAWAY %v", code)
	}
	// What the server got out before the socket closed: the limit, a
	// frame, and what the socket buffers held.
	if n := recv(t, sent); n > 20<<20 {
		t.Fatalf("the server sent %d bytes of one header block", n)
	}
}

// The graceful shutdown RFC 9113 §6.8 describes: GOAWAY with the largest
// stream id, a PING round trip, then GOAWAY with the real last stream.
// Streams above it are sent again elsewhere; the one at or below it
// completes on the first connection; a later GOAWAY with a higher id
// (which a server must not send) revives nothing.
func TestGracefulGoAwayInTwoSteps(t *testing.T) {
	seen := make(chan struct{}, 3)
	s := startRawGoingAway(t, 3, seen, func(rc *rawConn, ids []uint32) {
		rc.fr.WriteGoAway(maxStreamID, http2.ErrCodeNo, nil)
		rc.fr.WritePing(false, [8]byte{7})
		if _, err := rc.readUntil(isPingAck); err != nil {
			return
		}
		rc.fr.WriteGoAway(ids[0], http2.ErrCodeNo, nil)
		rc.fr.WriteGoAway(ids[2], http2.ErrCodeNo, nil)
		rc.respond(ids[0], "first")
		io.Copy(io.Discard, rc)
	})
	// Streams 1, 3, 5 in this order.
	results := sendInOrder(t, newTransport(t), s.addr, seen, "/a", "/b", "/c")
	got := map[string]bool{}
	for range 3 {
		got[recv(t, results).String()] = true
	}
	for _, want := range []string{"/a: first", "/b: second /b", "/c: second /c"} {
		if !got[want] {
			t.Fatalf("results %v, want %q among them", got, want)
		}
	}
}

// A server may answer before it has read the whole request body and
// then end the stream with RST_STREAM NO_ERROR (RFC 9113 §8.1): the
// response stands, whole, however late the reader reads it, and the
// request body the server never gave window for is abandoned.
func TestResetNoErrorAfterCompleteResponseKeepsIt(t *testing.T) {
	s := startRawForRequest(t, []http2.Setting{{ID: http2.SettingInitialWindowSize, Val: 0}}, func(rc *rawConn, h *http2.MetaHeadersFrame) {
		rc.headers(h.StreamID, false, ":status", "200")
		rc.fr.WriteData(h.StreamID, false, []byte(strings.Repeat("r", 16000)))
		rc.fr.WriteData(h.StreamID, true, []byte(strings.Repeat("s", 16000)))
		rc.fr.WriteRSTStream(h.StreamID, http2.ErrCodeNo)
		rc.fr.WritePing(false, [8]byte{1})
		io.Copy(io.Discard, rc)
	})
	tr := newTransport(t)
	body := &trackedBody{r: strings.NewReader(strings.Repeat("q", 100000))}
	req, _ := http.NewRequestWithContext(ctxTimeout(t, 10*time.Second), "POST", "http://"+s.addr+"/", body)
	resp := roundTrip(t, tr, req)
	// Read only once the RST_STREAM (and the PING after it) were handled.
	c := onlyConn(t, tr, s.addr)
	eventually(t, "the frames after the response", func() bool { return c.framesRead.Load() >= 6 })
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || len(b) != 32000 || b[0] != 'r' || b[31999] != 's' {
		t.Fatalf("read %d bytes, %v", len(b), err)
	}
	eventually(t, "the request body to be closed", body.closed.Load)
}

// A SETTINGS flood from a server that reads none of the acknowledgements
// (each SETTINGS frame must be acknowledged, RFC 9113 §6.5.3) ends the
// connection with ENHANCE_YOUR_CALM once 1 MiB of them is queued, as a
// PING flood does, instead of queueing acknowledgements without bound.
func TestSettingsFloodFromServerThatDoesNotReadEndsConnection(t *testing.T) {
	gone := make(chan struct{})
	s := startRaw(t, nil, func(rc *rawConn, n int) {
		// The client's socket has a small send buffer, so that its
		// queue, not the kernel's, is what fills. (A small receive
		// buffer here too stalled the loopback connection at times:
		// this side blocked writing and the client blocked reading,
		// until the test's deadline.) How
		// much the kernel absorbs before the client's writes block
		// varies from run to run: the flood goes on until the client
		// ends the connection, within the test's time.
		deadline := time.Now().Add(20 * time.Second)
		for i := 0; i < 1e8 && time.Now().Before(deadline); i++ {
			if rc.fr.WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: uint32(100 + i%2)}) != nil {
				close(gone)
				return
			}
		}
	})
	tr := newTransport(t, func(tr *Transport) {
		tr.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			if err == nil {
				c.(*net.TCPConn).SetWriteBuffer(4 << 10)
			}
			return c, err
		}
	})
	ctx := ctxTimeout(t, 20*time.Second)
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+s.addr+"/", nil)
	_, err := tr.RoundTrip(req)
	if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "ENHANCE_YOUR_CALM") {
		t.Fatalf("err = %v (context: %v)", err, ctx.Err())
	}
	recv(t, gone)
}

// A header block that never ends and decodes to nothing (empty
// CONTINUATION frames, or frames of dynamic table size updates, which an
// empty table accepts again and again) holds no memory, but it would
// hold the connection's reader: it is cut after 16 CONTINUATION frames
// plus one per KiB of MaxHeaderListSize, as proxy/h2server cuts a
// request's, with GOAWAY ENHANCE_YOUR_CALM. The keepalive, which would
// close the connection in the end, is off here.
func TestEndlessHeaderBlockIsCutByItsFrameCount(t *testing.T) {
	for _, frag := range [][]byte{nil, bytes.Repeat([]byte{0x20}, 1000)} {
		t.Run(fmt.Sprintf("%d-byte fragments", len(frag)), func(t *testing.T) {
			const resetBeforeGoAway = http2.ErrCode(1 << 31)
			sent := make(chan int, 1)
			goAway := make(chan http2.ErrCode, 1)
			s := startRawForRequest(t, nil, func(rc *rawConn, h *http2.MetaHeadersFrame) {
				go func() {
					code, err := rc.readGoAway()
					if err != nil {
						// The client closes with frames unread in its
						// socket: the reset that sends may overtake
						// its GOAWAY.
						code = resetBeforeGoAway
					}
					goAway <- code
				}()
				n := 0
				defer func() { sent <- n }()
				if rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: h.StreamID}) != nil {
					return
				}
				for range 1_000_000 {
					if rc.fr.WriteContinuation(h.StreamID, false, frag) != nil {
						return
					}
					n++
				}
			})
			tr := newTransport(t, func(tr *Transport) {
				tr.ReadIdleTimeout = -1
				tr.MaxHeaderListSize = 16 << 10 // 32 frames
			})
			req, _ := http.NewRequestWithContext(ctxTimeout(t, 5*time.Second), "GET", "http://"+s.addr+"/", nil)
			if _, err := tr.RoundTrip(req); !errors.Is(err, errTooManyContinuations) {
				t.Fatalf("err = %v, want too many CONTINUATION frames", err)
			}
			if code := recv(t, goAway); code != http2.ErrCodeEnhanceYourCalm && code != resetBeforeGoAway {
				t.Fatalf("GOAWAY %v, want ENHANCE_YOUR_CALM", code)
			}
			// What the server got out before the socket closed: the
			// frames allowed, and what the socket buffers held.
			if n := recv(t, sent); n >= 1_000_000 {
				t.Fatalf("the server sent all %d CONTINUATION frames", n)
			}
		})
	}
}

// A header block of as many CONTINUATION frames as allowed (16 plus one
// per KiB of MaxHeaderListSize) is a response like any other; one more
// frame ends the connection.
func TestHeaderBlockOfTheMostContinuationsAllowed(t *testing.T) {
	const allowed = 16 + 4 // MaxHeaderListSize 4 KiB
	for _, conts := range []int{allowed, allowed + 1} {
		t.Run(fmt.Sprint(conts), func(t *testing.T) {
			s := startRawForRequest(t, nil, func(rc *rawConn, h *http2.MetaHeadersFrame) {
				var hb bytesBuffer
				enc := hpack.NewEncoder(&hb)
				enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
				enc.WriteField(hpack.HeaderField{Name: "x-last", Value: "yes"})
				if rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: h.StreamID, BlockFragment: hb.b}) != nil {
					return
				}
				for i := range conts {
					if rc.fr.WriteContinuation(h.StreamID, i == conts-1, nil) != nil {
						return
					}
				}
				rc.fr.WriteData(h.StreamID, true, []byte("ok"))
				io.Copy(io.Discard, rc)
			})
			tr := newTransport(t, func(tr *Transport) { tr.MaxHeaderListSize = 4 << 10 })
			req, _ := http.NewRequestWithContext(ctxTimeout(t, 5*time.Second), "GET", "http://"+s.addr+"/", nil)
			o := fetch(tr, req)
			if conts > allowed {
				if !errors.Is(o.err, errTooManyContinuations) {
					t.Fatalf("err = %v, want too many CONTINUATION frames", o.err)
				}
				return
			}
			if o.err != nil || o.body != "ok" {
				t.Fatalf("got %v", o)
			}
		})
	}
}

// A header block may stay open (HEADERS without END_HEADERS, then
// CONTINUATION frames or nothing) for PingTimeout, the time a PING's
// answer may take, since none can come while it is open; then the
// connection ends with GOAWAY ENHANCE_YOUR_CALM, with the keepalive off
// and whether the server is silent or trickles frames.
func TestHeaderBlockLeftOpenIsCutByPingTimeout(t *testing.T) {
	for _, trickle := range []bool{false, true} {
		t.Run(fmt.Sprintf("trickle=%v", trickle), func(t *testing.T) {
			goAway := make(chan http2.ErrCode, 1)
			s := startRawForRequest(t, nil, func(rc *rawConn, h *http2.MetaHeadersFrame) {
				done := make(chan struct{})
				go func() {
					defer close(done)
					code, err := rc.readGoAway()
					if err != nil {
						close(goAway)
						return
					}
					goAway <- code
				}()
				if rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: h.StreamID}) != nil {
					return
				}
				if !trickle {
					<-done
					return
				}
				tick := time.NewTicker(10 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-done:
						return
					case <-tick.C:
						if rc.fr.WriteContinuation(h.StreamID, false, nil) != nil {
							return
						}
					}
				}
			})
			// PingTimeout also bounds the handshake and the server's
			// acknowledgement of the client's SETTINGS, which must come
			// first: a second, which a loaded machine does not take to
			// run the server's goroutine (200 ms could end the
			// connection with the SETTINGS timeout instead).
			tr := newTransport(t, func(tr *Transport) {
				tr.ReadIdleTimeout = -1
				tr.PingTimeout = time.Second
			})
			req, _ := http.NewRequestWithContext(ctxTimeout(t, 10*time.Second), "GET", "http://"+s.addr+"/", nil)
			if _, err := tr.RoundTrip(req); !errors.Is(err, errHeaderBlockTimeout) {
				t.Fatalf("err = %v, want the header block's timeout", err)
			}
			if code, ok := <-goAway; !ok || code != http2.ErrCodeEnhanceYourCalm {
				t.Fatalf("GOAWAY %v (received: %v), want ENHANCE_YOUR_CALM", code, ok)
			}
		})
	}
}

// Header blocks in several frames that do end leave no read deadline
// behind: the connection serves on, silent between responses for longer
// than PingTimeout.
func TestEndedHeaderBlockLeavesNoDeadline(t *testing.T) {
	next := make(chan struct{})
	s := startRaw(t, nil, func(rc *rawConn, n int) {
		rc.serveEach(func(h *http2.MetaHeadersFrame) {
			var hb bytesBuffer
			enc := hpack.NewEncoder(&hb)
			enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
			rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: h.StreamID, BlockFragment: hb.b})
			rc.fr.WriteContinuation(h.StreamID, true, nil)
			<-next // silence, the response's head sent
			rc.fr.WriteData(h.StreamID, true, []byte("ok"))
		})
	})
	// PingTimeout bounds the handshake and the time from the HEADERS
	// frame to its CONTINUATION, two writes of the server's goroutine:
	// half a second, which a loaded machine does not take between them
	// (50 ms failed the handshake, or cut the block, now and then).
	tr := newTransport(t, func(tr *Transport) {
		tr.ReadIdleTimeout = -1
		tr.PingTimeout = 500 * time.Millisecond
	})
	for range 2 {
		req, _ := http.NewRequestWithContext(ctxTimeout(t, 10*time.Second), "GET", "http://"+s.addr+"/", nil)
		resp := roundTrip(t, tr, req)
		timer := time.AfterFunc(2*tr.PingTimeout, func() { next <- struct{}{} })
		b, err := io.ReadAll(resp.Body)
		timer.Stop()
		resp.Body.Close()
		if string(b) != "ok" || err != nil {
			t.Fatalf("body %q, err %v", b, err)
		}
	}
	if n := s.accepted.Load(); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
}

// GOAWAY, then the connection closes with streams in flight: the stream
// above the last stream id is sent again on another connection, the one
// at or below it (which the server may have processed) fails with an
// error that says the connection was lost. Neither is lost silently.
func TestGoAwayThenCloseWithStreamsInFlight(t *testing.T) {
	seen := make(chan struct{}, 2)
	s := startRawGoingAway(t, 2, seen, func(rc *rawConn, ids []uint32) {
		rc.fr.WriteGoAway(ids[0], http2.ErrCodeNo, nil)
		rc.headers(ids[0], false, ":status", "200")
		rc.fr.WriteData(ids[0], false, []byte("part"))
		// The connection closes: a FIN after the frames, and whatever
		// the client still sends is read, so that no TCP reset
		// overtakes them.
		rc.Conn.(*net.TCPConn).CloseWrite()
		io.Copy(io.Discard, rc)
	})
	// Streams 1 and 3, in this order.
	results := sendInOrder(t, newTransport(t), s.addr, seen, "/a", "/b")
	got := map[string]bool{}
	for range 2 {
		got[recv(t, results).String()] = true
	}
	if !got["/b: second /b"] {
		t.Fatalf("results %v: /b was not sent again", got)
	}
	for r := range got {
		if strings.HasPrefix(r, "/a: ") && !strings.Contains(r, "part then h2client: reading from server: unexpected EOF") {
			t.Fatalf("/a: %q, want its partial body then the lost connection", r)
		}
	}
}
