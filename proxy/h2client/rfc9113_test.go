package h2client

import (
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// answer is what a raw server saw the client send after it misbehaved:
// the first RST_STREAM or GOAWAY.
type answer struct {
	rst    bool // RST_STREAM, else GOAWAY
	code   http2.ErrCode
	stream uint32
	// reset: the connection ended before either was read.
	reset bool
}

// readAnswer reads until the client's first RST_STREAM or GOAWAY and
// says which it was.
func (rc *rawConn) readAnswer() (answer, error) {
	f, err := rc.readUntil(either(is[*http2.RSTStreamFrame], is[*http2.GoAwayFrame]))
	if err != nil {
		return answer{}, err
	}
	if f, ok := f.(*http2.RSTStreamFrame); ok {
		return answer{rst: true, code: f.ErrCode, stream: f.StreamID}, nil
	}
	return answer{code: f.(*http2.GoAwayFrame).ErrCode}, nil
}

// misbehave starts a raw server whose first request is answered by
// serve; it then reports the client's first RST_STREAM or GOAWAY, and,
// when that was a RST_STREAM, answers the next request "after" to show
// the connection still works. The client's request and that follow-up
// go through one Transport; what the first request got is returned.
func misbehave(t *testing.T, settings []http2.Setting, req func(addr string) *http.Request, serve func(rc *rawConn, id uint32)) (answer, error, *Transport, *rawServer) {
	t.Helper()
	got := make(chan answer, 1)
	s := startRawForRequest(t, settings, func(rc *rawConn, h *http2.MetaHeadersFrame) {
		serve(rc, h.StreamID)
		a, err := rc.readAnswer()
		if err != nil {
			got <- answer{reset: true}
			return
		}
		got <- a
		if !a.rst {
			io.Copy(io.Discard, rc)
			return
		}
		rc.answerTheRest("after")
	})
	tr := newTransport(t)
	var r *http.Request
	if req != nil {
		r = req(s.addr)
	} else {
		r, _ = http.NewRequestWithContext(ctxTimeout(t, 10*time.Second), "GET", "http://"+s.addr+"/", nil)
	}
	err := fetch(tr, r).err
	var a answer
	select {
	case a = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the client sent neither RST_STREAM nor GOAWAY")
	}
	return a, err, tr, s
}

func wantGoAway(t *testing.T, a answer, err error, code http2.ErrCode) {
	t.Helper()
	if a.rst || a.reset || a.code != code {
		t.Fatalf("client answered %+v, want GOAWAY %v", a, code)
	}
	if err == nil {
		t.Fatal("the request did not fail")
	}
}

func wantReset(t *testing.T, a answer, err error, code http2.ErrCode, tr *Transport, s *rawServer) {
	t.Helper()
	if !a.rst || a.code != code {
		t.Fatalf("client answered %+v, want RST_STREAM %v", a, code)
	}
	var se http2.StreamError
	if !errors.As(err, &se) || se.Code != code {
		t.Fatalf("err = %v, want a %v StreamError", err, code)
	}
	if _, body := get(t, tr, "http://"+s.addr+"/"); body != "after" {
		t.Fatalf("next request got %q", body)
	}
	if n := s.accepted.Load(); n != 1 {
		t.Fatalf("%d connections, want the first one kept", n)
	}
}

func TestSettingsErrors(t *testing.T) {
	t.Run("MAX_FRAME_SIZE below 16384", func(t *testing.T) {
		a, err, _, _ := misbehave(t, nil, nil, func(rc *rawConn, id uint32) {
			rc.fr.WriteSettings(http2.Setting{ID: http2.SettingMaxFrameSize, Val: 16383})
		})
		wantGoAway(t, a, err, http2.ErrCodeProtocol)
	})
	t.Run("MAX_FRAME_SIZE above 2^24-1", func(t *testing.T) {
		a, err, _, _ := misbehave(t, nil, nil, func(rc *rawConn, id uint32) {
			rc.fr.WriteSettings(http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 24})
		})
		wantGoAway(t, a, err, http2.ErrCodeProtocol)
	})
	t.Run("INITIAL_WINDOW_SIZE above 2^31-1", func(t *testing.T) {
		a, err, _, _ := misbehave(t, nil, nil, func(rc *rawConn, id uint32) {
			rc.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 31})
		})
		wantGoAway(t, a, err, http2.ErrCodeFlowControl)
	})
	t.Run("INITIAL_WINDOW_SIZE overflowing an open stream's window", func(t *testing.T) {
		req := func(addr string) *http.Request {
			pr, pw := io.Pipe()
			t.Cleanup(func() { pw.Close() })
			r, _ := http.NewRequestWithContext(ctxTimeout(t, 10*time.Second), "POST", "http://"+addr+"/", pr)
			return r
		}
		a, err, _, _ := misbehave(t, nil, req, func(rc *rawConn, id uint32) {
			rc.fr.WriteWindowUpdate(id, maxWindow-initialPeerWindow)
			rc.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: initialPeerWindow + 1})
		})
		wantGoAway(t, a, err, http2.ErrCodeFlowControl)
	})
	t.Run("ENABLE_PUSH 2", func(t *testing.T) {
		a, err, _, _ := misbehave(t, nil, nil, func(rc *rawConn, id uint32) {
			rc.fr.WriteSettings(http2.Setting{ID: http2.SettingEnablePush, Val: 2})
		})
		wantGoAway(t, a, err, http2.ErrCodeProtocol)
	})
}

func TestFlowControlErrors(t *testing.T) {
	t.Run("stream WINDOW_UPDATE of 0", func(t *testing.T) {
		a, err, tr, s := misbehave(t, nil, nil, func(rc *rawConn, id uint32) {
			rc.headers(id, false, ":status", "200")
			rc.fr.AllowIllegalWrites = true
			rc.fr.WriteWindowUpdate(id, 0)
		})
		wantReset(t, a, err, http2.ErrCodeProtocol, tr, s)
	})
	t.Run("connection WINDOW_UPDATE of 0", func(t *testing.T) {
		a, err, _, _ := misbehave(t, nil, nil, func(rc *rawConn, id uint32) {
			rc.headers(id, false, ":status", "200")
			rc.fr.AllowIllegalWrites = true
			rc.fr.WriteWindowUpdate(0, 0)
		})
		wantGoAway(t, a, err, http2.ErrCodeProtocol)
	})
	t.Run("connection window overflow", func(t *testing.T) {
		a, err, _, _ := misbehave(t, nil, nil, func(rc *rawConn, id uint32) {
			rc.headers(id, false, ":status", "200")
			rc.fr.WriteWindowUpdate(0, maxWindow)
		})
		wantGoAway(t, a, err, http2.ErrCodeFlowControl)
	})
	t.Run("stream window overflow", func(t *testing.T) {
		a, err, tr, s := misbehave(t, nil, nil, func(rc *rawConn, id uint32) {
			rc.headers(id, false, ":status", "200")
			rc.fr.WriteWindowUpdate(id, maxWindow)
		})
		wantReset(t, a, err, http2.ErrCodeFlowControl, tr, s)
	})
}

func TestFramesOnWrongStreams(t *testing.T) {
	t.Run("DATA on stream 0", func(t *testing.T) {
		a, err, _, _ := misbehave(t, nil, nil, func(rc *rawConn, id uint32) {
			// The Framer refuses to write it: by hand.
			rc.Write([]byte{0, 0, 1, 0, 0, 0, 0, 0, 0, 'x'})
		})
		wantGoAway(t, a, err, http2.ErrCodeProtocol)
	})
	t.Run("HEADERS on a stream never opened", func(t *testing.T) {
		a, err, _, _ := misbehave(t, nil, nil, func(rc *rawConn, id uint32) {
			rc.headers(id+2, true, ":status", "200")
		})
		wantGoAway(t, a, err, http2.ErrCodeProtocol)
	})
	t.Run("HEADERS on stream 0", func(t *testing.T) {
		a, err, _, _ := misbehave(t, nil, nil, func(rc *rawConn, id uint32) {
			rc.fr.AllowIllegalWrites = true
			rc.headers(0, true, ":status", "200")
		})
		wantGoAway(t, a, err, http2.ErrCodeProtocol)
	})
	t.Run("RST_STREAM on a stream never opened", func(t *testing.T) {
		a, err, _, _ := misbehave(t, nil, nil, func(rc *rawConn, id uint32) {
			rc.fr.WriteRSTStream(id+2, http2.ErrCodeCancel)
		})
		wantGoAway(t, a, err, http2.ErrCodeProtocol)
	})
	t.Run("WINDOW_UPDATE on a stream never opened", func(t *testing.T) {
		a, err, _, _ := misbehave(t, nil, nil, func(rc *rawConn, id uint32) {
			rc.fr.WriteWindowUpdate(id+2, 100)
		})
		wantGoAway(t, a, err, http2.ErrCodeProtocol)
	})
	t.Run("HEADERS on a server stream", func(t *testing.T) {
		a, err, _, _ := misbehave(t, nil, nil, func(rc *rawConn, id uint32) {
			rc.headers(2, true, ":status", "200")
		})
		wantGoAway(t, a, err, http2.ErrCodeProtocol)
	})
	t.Run("frame beyond MAX_FRAME_SIZE", func(t *testing.T) {
		a, err, _, _ := misbehave(t, nil, nil, func(rc *rawConn, id uint32) {
			rc.headers(id, false, ":status", "200")
			rc.fr.WriteData(id, false, make([]byte, defaultMaxFrame+1))
		})
		// The client closes with the frame's payload unread: the TCP
		// reset that sends may overtake its GOAWAY.
		if !a.reset {
			wantGoAway(t, a, err, http2.ErrCodeFrameSize)
		} else if err == nil {
			t.Fatal("the request did not fail")
		}
	})
	t.Run("padding longer than the frame", func(t *testing.T) {
		a, err, _, _ := misbehave(t, nil, nil, func(rc *rawConn, id uint32) {
			rc.headers(id, false, ":status", "200")
			rc.Write([]byte{0, 0, 2, 0, 0x8, 0, 0, 0, byte(id), 5, 'x'})
		})
		wantGoAway(t, a, err, http2.ErrCodeProtocol)
	})
	// A frame too short for the fields its flags announce (the pad
	// length of a PADDED frame, the priority fields of HEADERS) is a
	// connection error FRAME_SIZE_ERROR (RFC 9113 §4.2), not an end of
	// the socket.
	t.Run("PADDED DATA without its pad length", func(t *testing.T) {
		a, err, _, _ := misbehave(t, nil, nil, func(rc *rawConn, id uint32) {
			rc.headers(id, false, ":status", "200")
			rc.Write([]byte{0, 0, 0, 0, 0x8, 0, 0, 0, byte(id)})
		})
		wantGoAway(t, a, err, http2.ErrCodeFrameSize)
	})
	t.Run("HEADERS with PRIORITY shorter than its priority fields", func(t *testing.T) {
		a, err, _, _ := misbehave(t, nil, nil, func(rc *rawConn, id uint32) {
			rc.Write([]byte{0, 0, 1, 1, 0x4 | 0x20, 0, 0, 0, byte(id), 0x88})
		})
		wantGoAway(t, a, err, http2.ErrCodeFrameSize)
	})
	t.Run("duplicated :status", func(t *testing.T) {
		a, err, tr, s := misbehave(t, nil, nil, func(rc *rawConn, id uint32) {
			rc.headers(id, true, ":status", "200", ":status", "204")
		})
		wantReset(t, a, err, http2.ErrCodeProtocol, tr, s)
	})
}

// A server that sends DATA beyond the stream window it was given has the
// stream reset with FLOW_CONTROL_ERROR (RFC 9113 §6.9.1); the data within
// the window stays readable. The client's unread body keeps the stream
// window from being given back.
func TestDataBeyondTheStreamWindow(t *testing.T) {
	codes := make(chan answer, 2)
	s := startRawForRequest(t, nil, func(rc *rawConn, h *http2.MetaHeadersFrame) {
		rc.headers(h.StreamID, false, ":status", "200")
		chunk := make([]byte, defaultMaxFrame)
		for sent := 0; sent <= streamWindow; sent += len(chunk) {
			if rc.fr.WriteData(h.StreamID, false, chunk) != nil {
				return
			}
		}
		a, err := rc.readAnswer()
		if err != nil {
			return
		}
		codes <- a
		io.Copy(io.Discard, rc)
	})
	tr := newTransport(t)
	req, _ := http.NewRequestWithContext(ctxTimeout(t, 10*time.Second), "GET", "http://"+s.addr+"/", nil)
	resp := roundTrip(t, tr, req)
	if a := recv(t, codes); !a.rst || a.code != http2.ErrCodeFlowControl {
		t.Fatalf("first answer %+v, want RST_STREAM FLOW_CONTROL_ERROR", a)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	var se http2.StreamError
	if n != streamWindow || !errors.As(err, &se) || se.Code != http2.ErrCodeFlowControl {
		t.Fatalf("read %d bytes, then %v; want the window's %d bytes, then FLOW_CONTROL_ERROR", n, err, streamWindow)
	}
}

// Settings a client has no use for are accepted: ENABLE_PUSH 0 (only 1
// is forbidden from a server, RFC 9113 §6.5.2) and identifiers it does
// not know (which it must ignore, §6.5.2).
func TestIgnoredSettings(t *testing.T) {
	s := startRaw(t, []http2.Setting{{ID: http2.SettingEnablePush, Val: 0}, {ID: 0x4242, Val: 7}}, func(rc *rawConn, n int) {
		rc.answerEach(func(*http2.MetaHeadersFrame) string {
			// More of them before each answer.
			rc.fr.WriteSettings(http2.Setting{ID: 0x99, Val: 1 << 31}, http2.Setting{ID: http2.SettingEnablePush, Val: 0})
			return "ok"
		})
	})
	getOverOneConnection(t, s, 2, "ok")
}

// A server whose first SETTINGS frame is itself a connection error is
// told so with GOAWAY before the connection closes (RFC 9113 §5.4.1),
// with the code a later frame would get (a frame over
// SETTINGS_MAX_FRAME_SIZE is FRAME_SIZE_ERROR, §4.2), and the request
// fails with a HandshakeError: nothing was sent.
func TestInvalidFirstSettingsGetGoAway(t *testing.T) {
	cases := []struct {
		name     string
		settings []http2.Setting
		code     http2.ErrCode
	}{
		{"MAX_FRAME_SIZE", []http2.Setting{{ID: http2.SettingMaxFrameSize, Val: 100}}, http2.ErrCodeProtocol},
		{"INITIAL_WINDOW_SIZE", []http2.Setting{{ID: http2.SettingInitialWindowSize, Val: 1 << 31}}, http2.ErrCodeFlowControl},
		{"ENABLE_PUSH", []http2.Setting{{ID: http2.SettingEnablePush, Val: 1}}, http2.ErrCodeProtocol},
		// 16386 bytes, over the 16384 a frame may have.
		{"larger than the frame size", make([]http2.Setting, 16386/6), http2.ErrCodeFrameSize},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan http2.ErrCode, 1)
			s := startRaw(t, tc.settings, func(rc *rawConn, n int) {
				code, err := rc.readGoAway()
				if err != nil {
					close(got)
					return
				}
				got <- code
			})
			tr := newTransport(t)
			req, _ := http.NewRequestWithContext(ctxTimeout(t, 10*time.Second), "GET", "http://"+s.addr+"/", nil)
			_, err := tr.RoundTrip(req)
			var he *HandshakeError
			if !errors.As(err, &he) {
				t.Fatalf("err = %v, want a HandshakeError", err)
			}
			code, ok := <-got
			if !ok || code != tc.code {
				t.Fatalf("GOAWAY %v (received: %v), want %v", code, ok, tc.code)
			}
		})
	}
}

// A frame the framer finds malformed for its stream (here WINDOW_UPDATE
// of 0, a stream error on an open stream) on a stream the client never
// opened is a connection error: on an idle stream any frame but HEADERS
// and PRIORITY is (RFC 9113 §5.1).
func TestStreamErrorOnStreamNeverOpenedIsAConnectionError(t *testing.T) {
	a, err, _, _ := misbehave(t, nil, nil, func(rc *rawConn, id uint32) {
		rc.headers(id, false, ":status", "200")
		rc.fr.AllowIllegalWrites = true
		rc.fr.WriteWindowUpdate(id+2, 0)
	})
	wantGoAway(t, a, err, http2.ErrCodeProtocol)
}

// DATA with content in a response that has none (to HEAD, or a 204 or
// 304: RFC 9110 §6.4.1, §15.3.5) resets the stream with PROTOCOL_ERROR,
// as x/net/http2 does for HEAD, rather than being dropped while it holds
// the stream's window. The response head already returned stands.
func TestDataInResponseWithoutContentResetsStream(t *testing.T) {
	for _, tc := range []struct{ method, status string }{{"HEAD", "200"}, {"GET", "204"}, {"GET", "304"}} {
		t.Run(tc.method+" "+tc.status, func(t *testing.T) {
			a, err, tr, s := misbehave(t, nil, func(addr string) *http.Request {
				r, _ := http.NewRequestWithContext(ctxTimeout(t, 10*time.Second), tc.method, "http://"+addr+"/", nil)
				return r
			}, func(rc *rawConn, id uint32) {
				rc.headers(id, false, ":status", tc.status, "content-length", "5")
				rc.fr.WriteData(id, true, []byte("hello"))
			})
			if err != nil {
				t.Fatalf("the response head did not stand: %v", err)
			}
			if !a.rst || a.code != http2.ErrCodeProtocol {
				t.Fatalf("client answered %+v, want RST_STREAM PROTOCOL_ERROR", a)
			}
			if _, body := get(t, tr, "http://"+s.addr+"/"); body != "after" {
				t.Fatalf("next request got %q", body)
			}
		})
	}
}

// A server that answers at once, streams a response larger than every
// window, and never gives the request body any window (it may answer
// before reading the request, RFC 9113 §8.1) does not deadlock the
// client: the response is read whole while the body waits, and when the
// response ends the unsent body is abandoned with RST_STREAM CANCEL.
func TestResponseStreamsWhileRequestBodyHasNoWindow(t *testing.T) {
	const size = 3 << 20
	rst := make(chan http2.ErrCode, 1)
	s := startRawForRequest(t, []http2.Setting{{ID: http2.SettingInitialWindowSize, Val: 0}}, func(rc *rawConn, h *http2.MetaHeadersFrame) {
		// The client's frames are read (for its WINDOW_UPDATEs) while
		// the response goes out within the stream window they give (the
		// connection's, 4 MiB, is larger than the response).
		reading := make(chan struct{})
		defer func() { <-reading }()
		credit := make(chan int, 100)
		go func() {
			defer close(reading)
			f, err := rc.readUntil(func(f http2.Frame) bool {
				if wu, ok := f.(*http2.WindowUpdateFrame); ok && wu.StreamID == h.StreamID {
					credit <- int(wu.Increment)
				}
				return is[*http2.RSTStreamFrame](f)
			})
			if err == nil {
				rst <- f.(*http2.RSTStreamFrame).ErrCode
			}
			io.Copy(io.Discard, rc)
		}()
		rc.headers(h.StreamID, false, ":status", "200")
		chunk := make([]byte, defaultMaxFrame)
		window := streamWindow
		for sent := 0; sent < size; sent += len(chunk) {
			for window < len(chunk) {
				select {
				case n := <-credit:
					window += n
				case <-reading:
					return
				}
			}
			if rc.fr.WriteData(h.StreamID, false, chunk) != nil {
				return
			}
			window -= len(chunk)
		}
		rc.fr.WriteData(h.StreamID, true, nil)
	})
	tr := newTransport(t)
	pr, pw := io.Pipe()
	defer pw.Close()
	go pw.Write(make([]byte, 100<<10))
	req, _ := http.NewRequestWithContext(ctxTimeout(t, 10*time.Second), "POST", "http://"+s.addr+"/", pr)
	// Read as it comes: the server writes without waiting for window.
	resp := roundTrip(t, tr, req)
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != size {
		t.Fatalf("read %d bytes, %v", n, err)
	}
	if code := recv(t, rst); code != http2.ErrCodeCancel {
		t.Fatalf("RST_STREAM %v", code)
	}
}

// A HEADERS frame whose padding is longer than its payload is refused
// by the Framer before its header block is decoded, and every later
// block of the connection is decoded against the HPACK table that one
// would have changed (RFC 9113 §4.3): it is a connection error
// PROTOCOL_ERROR, not the stream's. The fields the server's encoder
// indexed in it would be missing from the client's table, and a later
// response that refers to them read with another field's value.
func TestHeadersPaddingLongerThanTheFrameIsAConnectionError(t *testing.T) {
	goAway := make(chan http2.ErrCode, 1)
	s := startRaw(t, nil, func(rc *rawConn, n int) {
		answer := func(id uint32) { rc.headers(id, true, ":status", "200", "x-v", "new") }
		if n == 0 {
			h, err := rc.readRequestHeaders()
			if err != nil {
				return
			}
			// Indexed: dynamic table entry 62.
			rc.headers(h.StreamID, true, ":status", "200", "x-v", "old")
			if h, err = rc.readRequestHeaders(); err != nil {
				return
			}
			// "x-v: new" indexed in a frame whose pad length (one more
			// than the block) reaches past its end: entry 62 for the
			// server, "x-v: old" becomes 63.
			rc.hbuf.b = rc.hbuf.b[:0]
			rc.enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
			rc.enc.WriteField(hpack.HeaderField{Name: "x-v", Value: "new"})
			payload := append([]byte{byte(len(rc.hbuf.b) + 1)}, rc.hbuf.b...)
			rc.fr.WriteRawFrame(http2.FrameHeaders, http2.FlagHeadersPadded|http2.FlagHeadersEndHeaders|http2.FlagHeadersEndStream, h.StreamID, payload)
		}
		for {
			f, err := rc.readUntil(either(is[*http2.MetaHeadersFrame], is[*http2.GoAwayFrame]))
			if err != nil {
				return
			}
			if ga, ok := f.(*http2.GoAwayFrame); ok {
				goAway <- ga.ErrCode
				io.Copy(io.Discard, rc)
				return
			}
			answer(f.(*http2.MetaHeadersFrame).StreamID)
		}
	})
	tr := newTransport(t)
	if resp, _ := get(t, tr, "http://"+s.addr+"/a"); resp.Header.Get("X-V") != "old" {
		t.Fatalf("first response x-v %q", resp.Header.Get("X-V"))
	}
	req, _ := http.NewRequestWithContext(ctxTimeout(t, 10*time.Second), "GET", "http://"+s.addr+"/b", nil)
	if o := fetch(tr, req); o.err == nil {
		t.Fatalf("HEADERS with bad padding: %v", o)
	}
	// The server's "x-v: new" is its entry 62 now.
	if resp, _ := get(t, tr, "http://"+s.addr+"/c"); resp.Header.Get("X-V") != "new" {
		t.Fatalf("response after the bad HEADERS read x-v %q, want \"new\"", resp.Header.Get("X-V"))
	}
	select {
	case code := <-goAway:
		if code != http2.ErrCodeProtocol {
			t.Fatalf("GOAWAY %v, want PROTOCOL_ERROR", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the client sent no GOAWAY")
	}
}

// A server that closes its connection inside a frame (its header, or
// its payload) ends the connection as a lost socket: the response body
// fails with io.ErrUnexpectedEOF, not as a frame too short for its
// fields.
func TestServerClosingMidFrameIsAnUnexpectedEOF(t *testing.T) {
	for _, tc := range []struct {
		name string
		tail []byte
	}{
		{"in a frame header", []byte{0, 0, 5, 0}},
		{"in a payload", []byte{0, 0, 5, 0, 0, 0, 0, 0, 1, 'a', 'b'}},
		{"in a padded payload", []byte{0, 0, 5, 0, 0x8, 0, 0, 0, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startRawForRequest(t, nil, func(rc *rawConn, h *http2.MetaHeadersFrame) {
				rc.headers(h.StreamID, false, ":status", "200")
				rc.fr.WriteData(h.StreamID, false, []byte("ok"))
				rc.Write(tc.tail)
			})
			tr := newTransport(t)
			req, _ := http.NewRequestWithContext(ctxTimeout(t, 10*time.Second), "GET", "http://"+s.addr+"/", nil)
			if o := fetch(tr, req); o.body != "ok" || !errors.Is(o.err, io.ErrUnexpectedEOF) {
				t.Fatalf("got %v, want ok then io.ErrUnexpectedEOF", o)
			}
		})
	}
}
