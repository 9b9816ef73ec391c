package h2server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

func okHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
}

func TestServerSettingsFirst(t *testing.T) {
	ts := start(t, okHandler(), func(s *Server) { s.MaxConcurrentStreams = 7 })
	rc := dialRaw(t, ts.addr)
	e, err := rc.next()
	if err != nil || e.typ != http2.FrameSettings || e.ack {
		t.Fatalf("%+v %v", e, err)
	}
	got := map[http2.SettingID]uint32{}
	for _, s := range e.setting {
		got[s.ID] = s.Val
	}
	if got[http2.SettingMaxConcurrentStreams] != 7 || got[http2.SettingInitialWindowSize] != 1<<20 || got[http2.SettingMaxHeaderListSize] != http.DefaultMaxHeaderBytes {
		t.Fatalf("%v", got)
	}
	e = rc.until("connection WINDOW_UPDATE", func(e event) bool { return e.typ == http2.FrameWindowUpdate })
	if e.id != 0 || e.inc != 1<<20-65535 {
		t.Fatalf("%+v", e)
	}
	rc.until("SETTINGS ack", func(e event) bool { return e.typ == http2.FrameSettings && e.ack })
}

func TestBadPrefaceCloses(t *testing.T) {
	ts := start(t, okHandler())
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.Write([]byte("PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"))
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = io.Copy(io.Discard, nc)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("not closed")
	}
}

func TestFirstFrameMustBeSettings(t *testing.T) {
	ts := start(t, okHandler())
	nc, _ := net.Dial("tcp", ts.addr)
	defer nc.Close()
	nc.Write([]byte(http2.ClientPreface))
	fr := http2.NewFramer(nc, nc)
	fr.WritePing(false, [8]byte{})
	rc := &rawConn{t: t, nc: nc, fr: fr}
	rc.dec = dialDecoder()
	if e := rc.goAway(); e.code != http2.ErrCodeProtocol {
		t.Fatalf("%v", e.code)
	}
}

// connErrorCase is a frame sequence that must end the connection.
func TestConnectionErrors(t *testing.T) {
	cases := []struct {
		name string
		send func(rc *rawConn)
		code http2.ErrCode
		last uint32
	}{
		{"even stream id", func(rc *rawConn) { rc.get(2, "/") }, http2.ErrCodeProtocol, 0},
		{"decreasing stream id", func(rc *rawConn) {
			rc.get(5, "/")
			rc.response(5)
			rc.get(3, "/")
		}, http2.ErrCodeProtocol, 5},
		{"HEADERS on a closed stream", func(rc *rawConn) {
			rc.get(1, "/")
			rc.response(1)
			rc.get(1, "/")
		}, http2.ErrCodeProtocol, 1},
		{"DATA on an idle stream", func(rc *rawConn) { rc.fr.WriteData(9, true, []byte("x")) }, http2.ErrCodeProtocol, 0},
		{"RST_STREAM on an idle stream", func(rc *rawConn) { rc.fr.WriteRSTStream(9, 8) }, http2.ErrCodeProtocol, 0},
		{"WINDOW_UPDATE on an idle stream", func(rc *rawConn) { rc.fr.WriteWindowUpdate(9, 1) }, http2.ErrCodeProtocol, 0},
		{"zero WINDOW_UPDATE increment on an idle stream", func(rc *rawConn) {
			rc.fr.WriteRawFrame(http2.FrameWindowUpdate, 0, 9, u32(0))
		}, http2.ErrCodeProtocol, 0},
		{"DATA on an even stream below the highest opened", func(rc *rawConn) {
			rc.get(5, "/")
			rc.response(5)
			rc.fr.WriteData(2, true, []byte("x"))
		}, http2.ErrCodeProtocol, 5},
		{"RST_STREAM on an even stream below the highest opened", func(rc *rawConn) {
			rc.get(5, "/")
			rc.response(5)
			rc.fr.WriteRSTStream(2, http2.ErrCodeCancel)
		}, http2.ErrCodeProtocol, 5},
		{"WINDOW_UPDATE on an even stream below the highest opened", func(rc *rawConn) {
			rc.get(5, "/")
			rc.response(5)
			rc.fr.WriteWindowUpdate(2, 1)
		}, http2.ErrCodeProtocol, 5},
		{"PUSH_PROMISE", func(rc *rawConn) {
			rc.fr.WritePushPromise(http2.PushPromiseParam{StreamID: 1, PromiseID: 2, BlockFragment: rc.headerBlock(":method", "GET"), EndHeaders: true})
		}, http2.ErrCodeProtocol, 0},
		{"connection window overflow", func(rc *rawConn) { rc.fr.WriteWindowUpdate(0, 1<<31-1) }, http2.ErrCodeFlowControl, 0},
		{"zero connection window increment", func(rc *rawConn) { rc.fr.WriteRawFrame(http2.FrameWindowUpdate, 0, 0, u32(0)) }, http2.ErrCodeProtocol, 0},
		{"DATA beyond the connection window", func(rc *rawConn) {
			rc.post(1, "/block")
			chunk := make([]byte, 16384)
			for i := 0; i < 65; i++ { // 1 MiB + 16 KiB
				rc.fr.WriteData(1, false, chunk)
			}
		}, http2.ErrCodeFlowControl, 1},
		{"bad initial window setting", func(rc *rawConn) {
			rc.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 31})
		}, http2.ErrCodeFlowControl, 0},
		{"frame too large", func(rc *rawConn) {
			rc.fr.WriteRawFrame(http2.FrameData, 0, 1, make([]byte, 16385))
		}, http2.ErrCodeFrameSize, 0},
		{"CONTINUATION without HEADERS", func(rc *rawConn) {
			rc.fr.WriteContinuation(1, true, rc.headerBlock(":method", "GET"))
		}, http2.ErrCodeProtocol, 0},
		{"interleaved HEADERS", func(rc *rawConn) {
			rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: rc.headerBlock(":method", "GET"), EndHeaders: false})
			rc.get(3, "/")
		}, http2.ErrCodeProtocol, 0},
		{"CONTINUATION after a malformed field", func(rc *rawConn) {
			rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: rc.headerBlock(":method", "GET", "X-Upper", "1")})
			rc.fr.WriteContinuation(1, true, rc.headerBlock(":path", "/"))
		}, http2.ErrCodeProtocol, 0},
		{"header block far beyond the list limit", func(rc *rawConn) {
			rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: make([]byte, 2*2*1000+1)})
		}, http2.ErrCodeProtocol, 0},
		{"header string beyond the list limit", func(rc *rawConn) {
			rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: rc.headerBlock("x-a", strings.Repeat("a", 1001)), EndHeaders: true})
		}, http2.ErrCodeCompression, 0},
		{"bad hpack", func(rc *rawConn) {
			rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0xff, 0xff, 0xff, 0xff}, EndHeaders: true})
		}, http2.ErrCodeCompression, 0},
	}
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/block" {
			<-r.Context().Done()
		}
	}), func(s *Server) { s.MaxHeaderBytes = 1000 })
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rc := dialRaw(t, ts.addr)
			rc.t = t
			tc.send(rc)
			e := rc.goAway()
			if e.code != tc.code || e.last != tc.last {
				t.Fatalf("GOAWAY %v last %d, want %v last %d", e.code, e.last, tc.code, tc.last)
			}
			rc.expectClosed()
		})
	}
}

func TestStreamErrors(t *testing.T) {
	base := []string{":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/"}
	cases := []struct {
		name string
		kv   []string
	}{
		{"connection header", append(base, "connection", "close")},
		{"keep-alive header", append(base, "keep-alive", "1")},
		{"transfer-encoding header", append(base, "transfer-encoding", "chunked")},
		{"upgrade header", append(base, "upgrade", "h2c")},
		{"te other than trailers", append(base, "te", "gzip")},
		{"uppercase field name", append(base, "X-Upper", "1")},
		{"missing :path", base[:6]},
		{"missing :method", base[2:]},
		{"bad :scheme", []string{":method", "GET", ":scheme", "ftp", ":authority", "x", ":path", "/"}},
		{":protocol", append(base, ":protocol", "websocket")},
		{"pseudo after regular", []string{":method", "GET", ":scheme", "http", "x-a", "1", ":path", "/"}},
		{"path without slash", []string{":method", "GET", ":scheme", "http", ":authority", "x", ":path", "p"}},
		{"CONNECT with :path", []string{":method", "CONNECT", ":authority", "x:1", ":path", "/"}},
		{"content-length with END_STREAM", append(base, "content-length", "3")},
		{"unknown pseudo-header", append([]string{":foo", "1"}, base...)},
		{"duplicate pseudo-header", append([]string{":path", "/a"}, base...)},
		{"response pseudo-header", append([]string{":status", "200"}, base...)},
		{"invalid field value", append(base, "x-a", "a\x00b")},
		{"field name not a token", append(base, "x a", "1")},
		{"bad content-length", append(base, "content-length", "x")},
		{"space in :path's query", []string{":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/p?a b"}},
		{"control byte in :path's query", []string{":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/p?a\x01b"}},
		{"DEL in :path", []string{":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/p\x7f"}},
		{"space in :path", []string{":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/a b"}},
		{"fragment in :path's query", []string{":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/p?a#b"}},
		{"fragment in :path", []string{":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/p#b"}},
		{"OPTIONS target with a space", []string{":method", "OPTIONS", ":scheme", "http", ":authority", "x", ":path", "* x"}},
		{"Trailer naming a non-token", append(base, "trailer", "x t")},
		{"no authority", []string{":method", "GET", ":scheme", "http", ":path", "/"}},
		{"empty authority", []string{":method", "GET", ":scheme", "https", ":authority", "", ":path", "/"}},
		{"empty Host", []string{":method", "GET", ":scheme", "http", ":path", "/", "host", ""}},
	}
	ts := start(t, okHandler())
	rc := dialRaw(t, ts.addr)
	id := uint32(1)
	for _, tc := range cases {
		rc.writeHeaders(id, true, tc.kv...)
		if e := rc.rst(id); e.code != http2.ErrCodeProtocol {
			t.Fatalf("%s: RST %v", tc.name, e.code)
		}
		// DATA sent before the client saw the reset is answered (or
		// ignored), never a connection error.
		id += 2
	}
	rc.get(id, "/")
	if status, body, _, _ := rc.response(id); status != "200" || body != "ok" {
		t.Fatalf("after stream errors: %s %q", status, body)
	}
}

func TestTrailersWithoutEndStream(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		if err == nil {
			t.Error("body read succeeded")
		}
	}))
	rc := dialRaw(t, ts.addr)
	rc.post(1, "/")
	rc.fr.WriteData(1, false, []byte("x"))
	rc.writeHeaders(1, false, "x-t", "1")
	if e := rc.rst(1); e.code != http2.ErrCodeProtocol {
		t.Fatalf("%v", e.code)
	}
}

func TestFramesAfterClientEndOfStream(t *testing.T) {
	release := make(chan struct{})
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		<-release
	}))
	defer close(release)
	rc := dialRaw(t, ts.addr)
	rc.post(1, "/")
	rc.fr.WriteData(1, true, []byte("x"))
	rc.fr.WriteData(1, false, []byte("more"))
	if e := rc.rst(1); e.code != http2.ErrCodeStreamClosed {
		t.Fatalf("%v", e.code)
	}
}

func TestContentLengthMismatch(t *testing.T) {
	errs := make(chan error, 2)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		errs <- err
	}))
	rc := dialRaw(t, ts.addr)
	// Less than declared.
	rc.post(1, "/", "content-length", "5")
	rc.fr.WriteData(1, true, []byte("abc"))
	if e := rc.rst(1); e.code != http2.ErrCodeProtocol {
		t.Fatalf("short: %v", e.code)
	}
	// More than declared.
	rc.post(3, "/", "content-length", "2")
	rc.fr.WriteData(3, false, []byte("abc"))
	if e := rc.rst(3); e.code != http2.ErrCodeProtocol {
		t.Fatalf("long: %v", e.code)
	}
	for i := 0; i < 2; i++ {
		if err := <-errs; err == nil {
			t.Fatal("body read succeeded")
		}
	}
}

func TestOversizedHeaderList(t *testing.T) {
	ts := start(t, okHandler(), func(s *Server) { s.MaxHeaderBytes = 1000 })
	rc := dialRaw(t, ts.addr)
	var big []string
	for i := 0; i < 12; i++ {
		big = append(big, fmt.Sprintf("x-big-%d", i), strings.Repeat("a", 100))
	}
	rc.get(1, "/", big...)
	status, _, _, _ := rc.response(1)
	if status != "431" {
		t.Fatalf("%s", status)
	}
	// The dynamic table stayed in step: the next request is read.
	rc.get(3, "/", "x-small", "b")
	if status, body, _, _ := rc.response(3); status != "200" || body != "ok" {
		t.Fatalf("%s %q", status, body)
	}
}

func TestTooManyStreamsRefused(t *testing.T) {
	release := make(chan struct{})
	var running atomic.Int32
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		running.Add(1)
		<-release
	}), func(s *Server) { s.MaxConcurrentStreams = 2 })
	rc := dialRaw(t, ts.addr)
	rc.get(1, "/")
	rc.get(3, "/")
	rc.get(5, "/")
	if e := rc.rst(5); e.code != http2.ErrCodeRefusedStream {
		t.Fatalf("%v", e.code)
	}
	// A stream the client reset counts until its handler returns.
	rc.fr.WriteRSTStream(1, 8)
	rc.get(7, "/")
	if e := rc.rst(7); e.code != http2.ErrCodeRefusedStream {
		t.Fatalf("%v", e.code)
	}
	close(release)
	waitFor(t, "handlers", func() bool { return running.Load() == 2 })
	// Once they have returned, there is room again. The test waits for
	// the streams to end rather than retrying a bounded number of
	// times: a released handler run late on a loaded machine outlasted
	// the retries' round trips.
	sc := ts.conn(t)
	waitFor(t, "the streams to end", func() bool { return sc.locked(func() bool { return len(sc.streams) == 0 }) })
	rc.get(9, "/")
	e := rc.until("answer", func(e event) bool {
		return e.id == 9 && (e.typ == http2.FrameHeaders || e.typ == http2.FrameRSTStream)
	})
	if e.typ != http2.FrameHeaders {
		t.Fatalf("stream refused after the handlers returned: %v", e.code)
	}
}

func TestRapidResetEnhanceYourCalm(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	rc := dialRaw(t, ts.addr)
	var buf bytes.Buffer
	fr := http2.NewFramer(&buf, nil)
	for id := uint32(1); id < 2000; id += 2 {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: rc.headerBlock(":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/"), EndStream: true, EndHeaders: true})
		fr.WriteRSTStream(id, 8)
	}
	go rc.nc.Write(buf.Bytes())
	if e := rc.goAway(); e.code != http2.ErrCodeEnhanceYourCalm {
		t.Fatalf("%v", e.code)
	}
	rc.nc.Close()
	waitFor(t, "the log line", func() bool { return strings.Contains(ts.logs.String(), "ENHANCE_YOUR_CALM") })
}

func TestLateResetsAreNotRapidResets(t *testing.T) {
	// A client whose every call runs into its deadline resets each stream
	// after the answer was due: not an attack, no GOAWAY.
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	started := make(chan struct{})
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ok" {
			_, _ = io.WriteString(w, "ok")
			return
		}
		clock.Add(int64(2 * time.Second)) // the upstream is slow
		started <- struct{}{}
		<-r.Context().Done()
	}), func(s *Server) { s.now = func() time.Time { return time.Unix(0, clock.Load()) } })
	rc := dialRaw(t, ts.addr)
	for id := uint32(1); id < 600; id += 2 {
		rc.get(id, "/")
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatalf("stream %d: handler did not start", id)
		}
		rc.fr.WriteRSTStream(id, http2.ErrCodeCancel)
	}
	rc.get(601, "/ok")
	if status, body, _, _ := rc.response(601); status != "200" || body != "ok" {
		t.Fatalf("%s %q", status, body)
	}
}

func TestCancelledStreamsWithCompletionsAreFine(t *testing.T) {
	ts := start(t, okHandler())
	rc := dialRaw(t, ts.addr)
	// As many completed as cancelled: no GOAWAY.
	for id := uint32(1); id < 800; id += 4 {
		rc.get(id, "/")
		rc.response(id)
		rc.post(id+2, "/")
		rc.fr.WriteRSTStream(id+2, 8)
	}
	rc.get(801, "/")
	if status, _, _, _ := rc.response(801); status != "200" {
		t.Fatal(status)
	}
}

func TestPingAck(t *testing.T) {
	ts := start(t, okHandler())
	rc := dialRaw(t, ts.addr)
	rc.fr.WritePing(false, [8]byte{1, 2, 3, 4, 5, 6, 7, 8})
	e := rc.until("PING ack", func(e event) bool { return e.typ == http2.FramePing })
	if !e.ack || !bytes.Equal(e.data, []byte{1, 2, 3, 4, 5, 6, 7, 8}) {
		t.Fatalf("%+v", e)
	}
}

func TestIgnoredFrames(t *testing.T) {
	ts := start(t, okHandler())
	rc := dialRaw(t, ts.addr)
	rc.fr.WritePriority(3, http2.PriorityParam{StreamDep: 0, Weight: 10})
	rc.fr.WriteRawFrame(0xfa, 0, 1, []byte("unknown"))
	rc.get(1, "/")
	if status, body, _, _ := rc.response(1); status != "200" || body != "ok" {
		t.Fatalf("%s %q", status, body)
	}
	// PRIORITY of the wrong length is a stream error.
	rc.fr.WriteRawFrame(http2.FramePriority, 0, 3, []byte{1})
	rc.until("error", func(e event) bool { return e.typ == http2.FrameRSTStream || e.typ == http2.FrameGoAway })
}

func TestWindowUpdateOverflowResetsStream(t *testing.T) {
	release := make(chan struct{})
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
		<-release
	}))
	defer close(release)
	rc := dialRaw(t, ts.addr)
	rc.get(1, "/")
	rc.fr.WriteWindowUpdate(1, 1<<31-1)
	if e := rc.rst(1); e.code != http2.ErrCodeFlowControl {
		t.Fatalf("%v", e.code)
	}
	rc.fr.WriteRawFrame(http2.FrameWindowUpdate, 0, 1, u32(0))
	rc.get(3, "/")
	rc.fr.WriteRawFrame(http2.FrameWindowUpdate, 0, 3, u32(0))
	if e := rc.rst(3); e.code != http2.ErrCodeProtocol {
		t.Fatalf("zero increment: %v", e.code)
	}
}

func TestTinyClientWindowReceivesLargeBody(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789"), 10000)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
	rc := dialRaw(t, ts.addr, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 10}, http2.Setting{ID: http2.SettingMaxFrameSize, Val: 16384})
	rc.get(1, "/")
	var got bytes.Buffer
	for i := 0; i < 100000; i++ {
		e, err := rc.next()
		if err != nil {
			t.Fatal(err)
		}
		if e.typ == http2.FrameData && e.id == 1 {
			if len(e.data) > 10 {
				t.Fatalf("DATA of %d bytes beyond a window of 10", len(e.data))
			}
			got.Write(e.data)
			if e.end {
				break
			}
			if len(e.data) > 0 {
				rc.fr.WriteWindowUpdate(1, uint32(len(e.data)))
				rc.fr.WriteWindowUpdate(0, uint32(len(e.data)))
			}
		}
	}
	if !bytes.Equal(got.Bytes(), body) {
		t.Fatalf("got %d bytes", got.Len())
	}
}

func TestWindowChangeBySettings(t *testing.T) {
	body := bytes.Repeat([]byte("z"), 100)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body); w.(http.Flusher).Flush() }))
	rc := dialRaw(t, ts.addr, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
	rc.get(1, "/")
	rc.until("HEADERS", func(e event) bool { return e.typ == http2.FrameHeaders && e.id == 1 })
	// The window opens by SETTINGS alone.
	rc.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1000})
	_, got, _, _ := rc.response(1)
	if got != string(body) {
		t.Fatalf("%q", got)
	}
}

func TestBlockedWriterReleasedByReset(t *testing.T) {
	done := make(chan error, 1)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := w.Write(make([]byte, 100<<10))
		done <- err
	}))
	rc := dialRaw(t, ts.addr, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
	rc.get(1, "/")
	rc.until("HEADERS", func(e event) bool { return e.typ == http2.FrameHeaders && e.id == 1 })
	select {
	case <-done:
		t.Fatal("write finished without a window")
	case <-time.After(50 * time.Millisecond):
	}
	rc.fr.WriteRSTStream(1, 8)
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("write succeeded on a reset stream")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("writer still blocked")
	}
}

func TestBlockedWriterReleasedByConnectionEnd(t *testing.T) {
	done := make(chan error, 1)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := w.Write(make([]byte, 100<<10))
		done <- err
	}))
	rc := dialRaw(t, ts.addr, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
	rc.get(1, "/")
	rc.until("HEADERS", func(e event) bool { return e.typ == http2.FrameHeaders && e.id == 1 })
	rc.nc.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("write succeeded on a dead connection")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("writer still blocked")
	}
}

func TestIdleTimeout(t *testing.T) {
	// A second, not less: the idle time runs from the accept, so the
	// request must arrive within it, which a loaded machine could miss.
	ts := start(t, okHandler(), func(s *Server) { s.IdleTimeout = time.Second })
	rc := dialRaw(t, ts.addr)
	rc.get(1, "/")
	rc.response(1)
	e := rc.goAway()
	if e.code != http2.ErrCodeNo || e.last != 1 {
		t.Fatalf("%v %d", e.code, e.last)
	}
	rc.expectClosed()
}

func TestClientGoAwayFinishesStreams(t *testing.T) {
	release := make(chan struct{})
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		io.WriteString(w, "done")
	}))
	rc := dialRaw(t, ts.addr)
	rc.get(1, "/")
	rc.fr.WriteGoAway(0, http2.ErrCodeNo, nil)
	close(release)
	if status, body, _, _ := rc.response(1); status != "200" || body != "done" {
		t.Fatalf("%s %q", status, body)
	}
	rc.expectClosed()
}

func TestShutdownLetsStreamsFinish(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-release
		io.WriteString(w, "finished")
	}))
	rc := dialRaw(t, ts.addr)
	rc.get(1, "/")
	<-started
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- ts.Shutdown(ctx)
	}()
	e := rc.finalGoAway()
	if e.code != http2.ErrCodeNo || e.last != 1 {
		t.Fatalf("%v %d", e.code, e.last)
	}
	// A stream opened after the final GOAWAY is refused.
	rc.get(3, "/")
	if e := rc.rst(3); e.code != http2.ErrCodeRefusedStream {
		t.Fatalf("%v", e.code)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned with a stream in flight: %v", err)
	default:
	}
	close(release)
	if status, body, _, _ := rc.response(1); status != "200" || body != "finished" {
		t.Fatalf("%s %q", status, body)
	}
	rc.expectClosed()
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
}

func TestShutdownDeadlineClosesTheRest(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	rc := dialRaw(t, ts.addr)
	rc.get(1, "/")
	rc.until("SETTINGS", func(e event) bool { return e.typ == http2.FrameSettings && e.ack })
	waitFor(t, "stream", func() bool {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		for sc := range ts.conns {
			sc.mu.Lock()
			n := len(sc.streams)
			sc.mu.Unlock()
			return n == 1
		}
		return false
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := ts.Shutdown(ctx); err != context.DeadlineExceeded {
		t.Fatalf("%v", err)
	}
	rc.expectClosed()
}

func TestCloseEndsEverything(t *testing.T) {
	started := make(chan struct{})
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done()
	}))
	rc := dialRaw(t, ts.addr)
	rc.get(1, "/")
	<-started
	ts.Close()
	rc.expectClosed()
}

func TestBaseContextCancelEndsConnection(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan struct{})
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done()
	}), func(s *Server) { s.BaseContext = ctx })
	rc := dialRaw(t, ts.addr)
	rc.get(1, "/")
	<-started
	cancel()
	rc.expectClosed()
}

func TestPaddedDataAndContinuation(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s", r.Header.Get("X-Long"), b)
	}))
	rc := dialRaw(t, ts.addr)
	block := rc.headerBlock(":method", "POST", ":scheme", "http", ":authority", "x", ":path", "/", "x-long", "v")
	rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:3]})
	rc.fr.WriteContinuation(1, false, block[3:5])
	rc.fr.WriteContinuation(1, true, block[5:])
	rc.fr.WriteDataPadded(1, true, []byte("padded"), make([]byte, 100))
	if status, body, _, _ := rc.response(1); status != "200" || body != "v padded" {
		t.Fatalf("%s %q", status, body)
	}
}

func TestLargeResponseHeaderUsesContinuation(t *testing.T) {
	big := strings.Repeat("h", 40000)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Big", big)
	}))
	c, _ := h2Client(t)
	resp, err := c.Get(ts.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("X-Big") != big {
		t.Fatal("big header lost")
	}
}

func TestNonReadingClientHoldsBackTheHandler(t *testing.T) {
	const total = 16 << 20
	var written atomic.Int64
	done := make(chan struct{})
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(done)
		chunk := make([]byte, 16<<10)
		for written.Load() < total {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			written.Add(int64(len(chunk)))
		}
	}))
	// Windows so large that only the pending-bytes bound holds it back.
	rc := dialRaw(t, ts.addr, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1})
	rc.fr.WriteWindowUpdate(0, 1<<31-1-65535)
	rc.get(1, "/")
	// Wait until the handler stalls, not reading anything.
	var last int64 = -1
	waitFor(t, "the handler to stall", func() bool {
		time.Sleep(20 * time.Millisecond)
		n := written.Load()
		stalled := n == last
		last = n
		return stalled
	})
	if last >= total {
		t.Fatalf("the handler wrote all %d bytes to a client that reads nothing", last)
	}
	t.Logf("stalled after %d bytes", last)
	_, body, _, rst := rc.response(1)
	if rst != nil || len(body) != total {
		t.Fatalf("got %d bytes, reset %v", len(body), rst)
	}
	<-done
}

func TestPingFloodWithoutReadingIsCutOff(t *testing.T) {
	ts := start(t, okHandler())
	rc := dialRaw(t, ts.addr)
	var batch bytes.Buffer
	fr := http2.NewFramer(&batch, nil)
	for i := 0; i < 4096; i++ {
		fr.WritePing(false, [8]byte{byte(i)})
	}
	// Bounded by time, not by the batches written: once the server has
	// cut the connection off it still reads, and drops, what comes for
	// up to a second (lingerTimeout, so that its GOAWAY may be read),
	// which a fast loopback fills with gigabytes.
	deadline := time.Now().Add(30 * time.Second)
	rc.nc.SetWriteDeadline(deadline)
	for i := 0; ; i++ {
		if _, err := rc.nc.Write(batch.Bytes()); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("the server kept reading pings it could not answer")
			}
			return
		}
		if i > 1<<24 || time.Now().After(deadline) {
			t.Fatal("not cut off")
		}
	}
}

// serveOne serves the next connection on a fresh listener with opts.
func serveOne(t *testing.T, s *Server, opts func() *ConnOpts) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s.ServeConn(c, opts())
	}()
	t.Cleanup(func() {
		ln.Close()
		s.Close()
		<-done
	})
	return ln.Addr().String()
}

func TestUpgradeRequestIsStream1WithItsSettings(t *testing.T) {
	s := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s %s", r.Proto, r.Method, r.URL.Path, b)
	})}
	// HTTP2-Settings: INITIAL_WINDOW_SIZE 5.
	settings := append([]byte{0, byte(http2.SettingInitialWindowSize)}, u32(5)...)
	addr := serveOne(t, s, func() *ConnOpts {
		req, _ := http.NewRequest("POST", "http://x/up", strings.NewReader("body"))
		req.RemoteAddr = "client"
		return &ConnOpts{Upgrade: req, Settings: settings}
	})
	rc := dialRaw(t, addr)
	e, err := rc.next()
	if err != nil || e.typ != http2.FrameSettings {
		t.Fatalf("first frame %+v %v", e, err)
	}
	var got bytes.Buffer
	for got.Len() < len("HTTP/2.0 POST /up body") {
		e := rc.until("DATA", func(e event) bool { return e.typ == http2.FrameData && e.id == 1 })
		if len(e.data) > 5 {
			t.Fatalf("DATA of %d bytes beyond the upgrade's window of 5", len(e.data))
		}
		got.Write(e.data)
		if len(e.data) > 0 {
			rc.fr.WriteWindowUpdate(1, uint32(len(e.data)))
		}
	}
	if got.String() != "HTTP/2.0 POST /up body" {
		t.Fatalf("%q", got.String())
	}
	// Stream 1 is taken: the client goes on with 3, with a usual window.
	rc.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 65535})
	rc.get(3, "/next")
	if status, body, _, _ := rc.response(3); status != "200" || !strings.HasSuffix(body, "/next ") {
		t.Fatalf("%s %q", status, body)
	}
}

func TestServeConnAfterShutdownServesOnlyTheUpgrade(t *testing.T) {
	s := &Server{Handler: okHandler()}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	addr := serveOne(t, s, func() *ConnOpts {
		req, _ := http.NewRequest("GET", "http://x/", nil)
		return &ConnOpts{Upgrade: req}
	})
	rc := dialRaw(t, addr)
	e, err := rc.next()
	if err != nil || e.typ != http2.FrameSettings {
		t.Fatalf("first frame %+v %v", e, err)
	}
	if status, body, _, _ := rc.response(1); status != "200" || body != "ok" {
		t.Fatalf("%s %q", status, body)
	}
	rc.expectClosed()
}

// The upgrade's stream 1 starts before ServeConn's reader runs; its end
// re-arms the idle timer, which must already be in place (this raced).
func TestUpgradeWithIdleTimeoutThenGoesIdle(t *testing.T) {
	s := &Server{Handler: okHandler(), IdleTimeout: 100 * time.Millisecond}
	addr := serveOne(t, s, func() *ConnOpts {
		req, _ := http.NewRequest("GET", "http://x/", nil)
		return &ConnOpts{Upgrade: req}
	})
	rc := dialRaw(t, addr)
	if status, body, _, _ := rc.response(1); status != "200" || body != "ok" {
		t.Fatalf("%s %q", status, body)
	}
	if e := rc.goAway(); e.code != http2.ErrCodeNo || e.last != 1 {
		t.Fatalf("%v %d", e.code, e.last)
	}
	rc.expectClosed()
}

// RFC 9113 §5.3.1 (h2spec 5.3.1): a stream that depends on itself is a
// stream error, by PRIORITY or by HEADERS; PRIORITY does not open an idle
// stream, so a lower stream id may still be opened after it.
func TestSelfDependencyIsStreamError(t *testing.T) {
	ts := start(t, okHandler())
	rc := dialRaw(t, ts.addr)
	rc.fr.WritePriority(9, http2.PriorityParam{StreamDep: 9, Weight: 15})
	if e := rc.rst(9); e.code != http2.ErrCodeProtocol {
		t.Fatalf("PRIORITY: RST %v", e.code)
	}
	rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, EndStream: true, EndHeaders: true,
		BlockFragment: rc.headerBlock(":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/"),
		Priority:      http2.PriorityParam{StreamDep: 3, Weight: 15}})
	if e := rc.rst(3); e.code != http2.ErrCodeProtocol {
		t.Fatalf("HEADERS: RST %v", e.code)
	}
	rc.get(5, "/")
	if status, body, _, _ := rc.response(5); status != "200" || body != "ok" {
		t.Fatalf("%s %q", status, body)
	}
}

// Padding is returned to the stream's window as it arrives: DATA frames of
// padding alone must not close the window on a handler waiting for bytes.
func TestPaddingOnlyDataReturnsStreamWindow(t *testing.T) {
	got := make(chan string, 1)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- string(b)
	}), func(s *Server) { s.MaxUploadBufferPerStream = 4096 })
	rc := dialRaw(t, ts.addr)
	rc.until("SETTINGS", func(e event) bool { return e.typ == http2.FrameSettings && !e.ack })
	rc.post(1, "/")
	// 16 frames of 256 bytes, all padding: the stream's window of 4096.
	for i := 0; i < 16; i++ {
		rc.fr.WriteDataPadded(1, false, nil, make([]byte, 255))
	}
	rc.until("stream WINDOW_UPDATE", func(e event) bool { return e.typ == http2.FrameWindowUpdate && e.id == 1 })
	rc.fr.WriteData(1, true, []byte("x"))
	select {
	case b := <-got:
		if b != "x" {
			t.Fatalf("%q", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("handler did not get the body")
	}
}

// After the final GOAWAY, each new stream is answered RST_STREAM REFUSED_STREAM; a
// client that opens streams without reading those answers is cut off,
// as for PING, rather than buffered without end.
func TestRefusedStreamFloodWithoutReadingIsCutOff(t *testing.T) {
	started := make(chan struct{})
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done()
	}))
	rc := dialRaw(t, ts.addr)
	rc.get(1, "/")
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	shutdown := make(chan error, 1)
	go func() { shutdown <- ts.Shutdown(ctx) }()
	defer func() { cancel(); <-shutdown }()
	rc.finalGoAway()

	var batch bytes.Buffer
	fr := http2.NewFramer(&batch, nil)
	id := uint32(3)
	rc.nc.SetWriteDeadline(time.Now().Add(30 * time.Second))
	for written := 0; written < 64<<20; written += batch.Len() {
		batch.Reset()
		for i := 0; i < 4096; i++ {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndStream: true, EndHeaders: true,
				BlockFragment: rc.headerBlock(":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/")})
			id += 2
		}
		if _, err := rc.nc.Write(batch.Bytes()); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("the server kept reading streams it could not refuse")
			}
			return
		}
	}
	// All was written: the server may have cut the client off with its
	// answers still in the socket buffers (its writer lagging behind
	// its reader), then drained what the client sent for a while so
	// that the GOAWAY is read. What tells is that GOAWAY.
	rc.nc.SetReadDeadline(time.Now().Add(30 * time.Second))
	for i := 0; i < 1<<24; i++ {
		f, err := rc.fr.ReadFrame()
		if err != nil {
			t.Fatalf("not cut off: %v", err)
		}
		if g, ok := f.(*http2.GoAwayFrame); ok && g.ErrCode == http2.ErrCodeEnhanceYourCalm {
			return
		}
	}
	t.Fatal("not cut off")
}

// A GOAWAY sent while the reader builds a new stream's request (here the
// idle timer's, for a connection whose first request has a long header
// block) names that stream, so the stream must still be answered before
// the connection closes: its response was lost, the client having been
// told the request was taken.
func TestGoAwayWhileStreamOpensStillAnswersIt(t *testing.T) {
	kv := []string{":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/"}
	for i := 0; i < 6000; i++ {
		kv = append(kv, fmt.Sprintf("x-h%d", i), "v")
	}
	// exchange sends the request and reads until the connection ends.
	exchange := func(idle time.Duration) (goAwayLast uint32, answered bool, took time.Duration) {
		ts := start(t, okHandler(), func(s *Server) { s.IdleTimeout = idle })
		rc := dialRaw(t, ts.addr)
		block := rc.headerBlock(kv...)
		began := time.Now()
		rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:16000], EndStream: true})
		for b := block[16000:]; len(b) > 0; {
			n := min(len(b), 16000)
			rc.fr.WriteContinuation(1, n == len(b), b[:n])
			b = b[n:]
		}
		goAwayLast = 1<<31 - 1
		for {
			e, err := rc.next()
			if err != nil {
				return goAwayLast, answered, took
			}
			switch {
			case e.typ == http2.FrameGoAway:
				goAwayLast = e.last
			case e.typ == http2.FrameHeaders && e.id == 1:
				answered, took = true, time.Since(began)
				if idle == 0 {
					return goAwayLast, answered, took
				}
			}
		}
	}
	_, ok, took := exchange(0)
	if !ok {
		t.Fatal("no response without an idle timeout")
	}
	// Idle timeouts around the time the request takes: some fire before
	// the stream is seen, some while its request is built, some after.
	for i := 0; i <= 40; i++ {
		idle := took/2 + took*time.Duration(i)/40
		last, answered, _ := exchange(idle)
		if last >= 1 && !answered {
			t.Fatalf("idle timeout %v: GOAWAY named stream 1 (last %d), which was never answered", idle, last)
		}
	}
}

// RFC 9113 §6.8: a later GOAWAY (here a connection error during a
// graceful shutdown) must not name a higher stream than the final one,
// even though the client opened (refused) streams in between.
func TestSecondGoAwayDoesNotRaiseLastStreamID(t *testing.T) {
	started := make(chan struct{})
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done()
	}))
	rc := dialRaw(t, ts.addr)
	rc.get(1, "/")
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	shutdown := make(chan error, 1)
	go func() { shutdown <- ts.Shutdown(ctx) }()
	defer func() { cancel(); <-shutdown }()
	if e := rc.finalGoAway(); e.code != http2.ErrCodeNo || e.last != 1 {
		t.Fatalf("final GOAWAY %v last %d", e.code, e.last)
	}
	rc.get(3, "/")
	if e := rc.rst(3); e.code != http2.ErrCodeRefusedStream {
		t.Fatalf("stream 3: %v", e.code)
	}
	rc.get(4, "/") // even: a connection error
	e := rc.goAway()
	if e.code != http2.ErrCodeProtocol || e.last != 1 {
		t.Fatalf("second GOAWAY %v last %d, want PROTOCOL_ERROR last 1", e.code, e.last)
	}
}

// Request trailers that may not be trailers (RFC 9110 §6.5.1: Host,
// Content-Length, ...) reset the stream, as with x/net/http2, rather than
// reach Request.Trailer to be sent on upstream.
func TestForbiddenRequestTrailerResetsStream(t *testing.T) {
	got := make(chan string, 2)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		got <- fmt.Sprintf("%v %q", err != nil, r.Trailer)
	}))
	rc := dialRaw(t, ts.addr)
	for i, name := range []string{"host", "content-length"} {
		id := uint32(1 + 2*i)
		rc.post(id, "/", "trailer", "x-t, "+name)
		rc.fr.WriteData(id, false, []byte("abc"))
		rc.writeHeaders(id, true, "x-t", "1", name, "3")
		if e := rc.rst(id); e.code != http2.ErrCodeProtocol {
			t.Fatalf("%s: RST %v", name, e.code)
		}
		if s := <-got; !strings.HasPrefix(s, "true ") {
			t.Fatalf("%s: handler saw %s", name, s)
		}
	}
}

// TestOverPaddedHeadersEndConnection: a HEADERS frame whose padding is
// longer than its payload is a connection error PROTOCOL_ERROR (RFC 9113
// §6.2). Its header block is not decoded, so the HPACK dynamic table no
// longer matches the client's (RFC 9113 §4.3): a later request that
// refers to an entry the undecoded block added would be read with
// another field in its place (here "x-user: alice" for "bob").
func TestOverPaddedHeadersEndConnection(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("x-user", r.Header.Get("X-User"))
	}))
	rc := dialRaw(t, ts.addr)
	rc.get(1, "/", "x-user", "alice")
	if status, _, _, _ := rc.response(1); status != "200" {
		t.Fatalf("stream 1: %s", status)
	}
	// Adds "x-user: bob" to the client's table; the pad length is one
	// more than the block.
	block := rc.headerBlock(":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/", "x-user", "bob")
	payload := append([]byte{byte(len(block) + 1)}, block...)
	if err := rc.fr.WriteRawFrame(http2.FrameHeaders, http2.FlagHeadersPadded|http2.FlagHeadersEndHeaders|http2.FlagHeadersEndStream, 3, payload); err != nil {
		t.Fatal(err)
	}
	// Refers to "x-user: bob" by its index in the client's table.
	rc.writeHeaders(5, true, ":method", "GET", ":scheme", "http", ":authority", "y", ":path", "/", "x-user", "bob")
	e := rc.until("GOAWAY", func(e event) bool {
		if e.typ == http2.FrameHeaders && e.id == 5 {
			t.Fatalf("stream 5 answered with x-user %q after an undecoded header block", e.get("x-user"))
		}
		return e.typ == http2.FrameGoAway
	})
	if e.code != http2.ErrCodeProtocol {
		t.Fatalf("GOAWAY %v", e.code)
	}
	rc.expectClosed()
}

// RFC 9113 §5.1: a frame other than PRIORITY after the client's own
// RST_STREAM is a stream error of type STREAM_CLOSED, whether the handler
// still runs (the stream is known) or has ended (it is remembered).
func TestFramesAfterClientResetAreStreamClosed(t *testing.T) {
	release := make(chan struct{})
	ended := make(chan uint32, 4)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" {
			return
		}
		<-r.Context().Done()
		if r.URL.Path == "/held" {
			<-release
		}
		ended <- 0
	}))
	defer close(release)
	rc := dialRaw(t, ts.addr)

	// The handler of stream 1 still runs.
	rc.post(1, "/held")
	rc.fr.WriteRSTStream(1, http2.ErrCodeCancel)
	rc.fr.WriteData(1, false, []byte("late"))
	if e := rc.rst(1); e.code != http2.ErrCodeStreamClosed {
		t.Fatalf("DATA after the client's reset, handler running: %v", e.code)
	}
	rc.writeHeaders(1, true, "x-trailer", "late")
	if e := rc.rst(1); e.code != http2.ErrCodeStreamClosed {
		t.Fatalf("HEADERS after the client's reset, handler running: %v", e.code)
	}

	// The handler of stream 3 has ended.
	rc.post(3, "/gone")
	rc.fr.WriteRSTStream(3, http2.ErrCodeCancel)
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("handler of stream 3 did not end")
	}
	waitGone(t, ts, 3)
	rc.fr.WriteData(3, false, []byte("late"))
	if e := rc.rst(3); e.code != http2.ErrCodeStreamClosed {
		t.Fatalf("DATA after the client's reset, handler gone: %v", e.code)
	}
	rc.writeHeaders(3, true, "x-trailer", "late")
	if e := rc.rst(3); e.code != http2.ErrCodeStreamClosed {
		t.Fatalf("HEADERS after the client's reset, handler gone: %v", e.code)
	}
	// The connection is fine.
	rc.get(5, "/")
	if status, _, _, rst := rc.response(5); status != "200" || rst != nil {
		t.Fatalf("stream 5: %s %v", status, rst)
	}
}

// RFC 9113 §5.4.2: frames the client sent before it saw the server's
// RST_STREAM are ignored, not answered.
func TestFramesAfterServerResetAreIgnored(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Answer without reading the body: the server resets the rest
		// of the request with NO_ERROR (RFC 9113 §8.1).
		io.WriteString(w, "early")
	}))
	rc := dialRaw(t, ts.addr)
	rc.post(1, "/")
	if e := rc.rst(1); e.code != http2.ErrCodeNo {
		t.Fatalf("%v", e.code)
	}
	waitGone(t, ts, 1)
	rc.fr.WriteData(1, false, []byte("in flight"))
	rc.writeHeaders(1, true, "x-trailer", "in flight")
	// The next frame about stream 1 would come before stream 3's answer.
	rc.get(3, "/")
	for {
		e, err := rc.next()
		if err != nil {
			t.Fatal(err)
		}
		if e.id == 1 || e.typ == http2.FrameGoAway {
			t.Fatalf("late frames on a stream the server reset were answered: %+v", e)
		}
		if e.id == 3 && e.end {
			return
		}
	}
}

// waitGone waits until the server has forgotten stream id on its only
// connection.
func waitGone(t *testing.T, ts *testServer, id uint32) {
	t.Helper()
	waitFor(t, "stream gone", func() bool {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		for sc := range ts.conns {
			sc.mu.Lock()
			_, open := sc.streams[id]
			sc.mu.Unlock()
			return !open
		}
		return false
	})
}

// An upgrade's HTTP2-Settings is held to the entries a SETTINGS frame may
// carry, and its request is not served.
func TestUpgradeSettingsWithTooManyEntriesIsRefused(t *testing.T) {
	var ran atomic.Bool
	s := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ran.Store(true) })}
	var settings []byte
	for range maxSettingsPerFrame + 1 {
		settings = append(settings, 0, byte(http2.SettingEnablePush))
		settings = append(settings, u32(0)...)
	}
	addr := serveOne(t, s, func() *ConnOpts {
		req, _ := http.NewRequest("GET", "http://x/up", nil)
		return &ConnOpts{Upgrade: req, Settings: settings}
	})
	rc := dialRaw(t, addr)
	if e := rc.goAway(); e.code != http2.ErrCodeEnhanceYourCalm || e.last != 0 {
		t.Fatalf("GOAWAY %v last %d", e.code, e.last)
	}
	rc.expectClosed()
	if ran.Load() {
		t.Fatal("the upgrade's request was served")
	}
}
