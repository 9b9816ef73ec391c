package h2server

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// A header block that never ends, made of CONTINUATION frames that carry
// nothing (CVE-2024-27316's class): each costs the reader a frame header,
// and no byte or field budget ever runs out. The frames of one block are
// bounded: the connection gets GOAWAY ENHANCE_YOUR_CALM.
func TestEmptyContinuationFloodEndsConnection(t *testing.T) {
	ts := start(t, okHandler())
	rc := dialRaw(t, ts.addr)
	e := rc.flood(func(fr *http2.Framer) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: rc.headerBlock(":method", "GET")})
		for i := 0; i < 20000; i++ {
			fr.WriteContinuation(1, false, nil)
		}
	})
	if e.code != http2.ErrCodeEnhanceYourCalm || e.last != 0 {
		t.Fatalf("GOAWAY %v last %d", e.code, e.last)
	}
	rc.nc.Close()
	waitFor(t, "the log line", func() bool { return strings.Contains(ts.logs.String(), "ENHANCE_YOUR_CALM") })
}

// flood sends the frames that frames writes in one batch, from a
// goroutine (the server stops reading before their end), and returns the
// GOAWAY the server answers with.
func (rc *rawConn) flood(frames func(fr *http2.Framer)) event {
	rc.t.Helper()
	var batch bytes.Buffer
	frames(http2.NewFramer(&batch, nil))
	go rc.nc.Write(batch.Bytes())
	return rc.goAway()
}

// A legitimate block split into frames of the full size (a 1 MiB list of
// 16 KiB frames) is far from the bound.
func TestLargeHeaderBlockInManyContinuations(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("n", strings.Repeat("x", len(r.Header.Get("X-Big"))/1000))
	}), func(s *Server) { s.MaxHeaderBytes = 4 << 20 })
	rc := dialRaw(t, ts.addr)
	block := rc.headerBlock(":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/",
		"x-big", strings.Repeat("a", 3<<20))
	// Frames of 4 KiB: a client that splits more finely than it must.
	const frag = 4096
	rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:frag], EndStream: true})
	for rest := block[frag:]; len(rest) > 0; {
		n := min(frag, len(rest))
		rc.fr.WriteContinuation(1, n == len(rest), rest[:n])
		rest = rest[n:]
	}
	e := rc.until("response", func(e event) bool { return e.id == 1 || e.typ == http2.FrameGoAway })
	if e.typ != http2.FrameHeaders || e.get(":status") != "200" || len(e.get("n")) != 3<<20/1000 {
		t.Fatalf("%v %v %q", e.typ, e.code, e.get(":status"))
	}
}

// A SETTINGS frame holds up to 2730 entries. More than 100 is refused,
// as x/net/http2's server refuses them.
func TestSettingsWithManyEntriesEndConnection(t *testing.T) {
	ts := start(t, okHandler())
	rc := dialRaw(t, ts.addr)
	s := make([]http2.Setting, 101)
	for i := range s {
		s[i] = http2.Setting{ID: http2.SettingInitialWindowSize, Val: uint32(i)}
	}
	rc.fr.WriteSettings(s...)
	if e := rc.goAway(); e.code != http2.ErrCodeEnhanceYourCalm {
		t.Fatalf("GOAWAY %v", e.code)
	}
	rc.expectClosed()
}

// Rapid reset (CVE-2023-44487) through the server's own resets: each
// stream starts a handler, and a frame that breaks the stream at once
// (here a body shorter than its content-length, a malformed request,
// RFC 9113 §8.1.1) has the server reset it, so the client never sends
// RST_STREAM. Such streams are bad as the client's premature resets are.
func TestStreamsBrokenByTheClientCountAsRapidResets(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}), func(s *Server) { s.MaxConcurrentStreams = 10000 })
	rc := dialRaw(t, ts.addr)
	e := rc.flood(func(fr *http2.Framer) {
		for id := uint32(1); id < 1000; id += 2 {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: rc.headerBlock(
				":method", "POST", ":scheme", "http", ":authority", "x", ":path", "/", "content-length", "1"), EndHeaders: true})
			fr.WriteData(id, true, nil)
		}
	})
	if e.code != http2.ErrCodeEnhanceYourCalm {
		t.Fatalf("%v", e.code)
	}
	rc.nc.Close()
}

// RFC 9113 §8.2.1: a request, or its trailers, with a field value that
// starts or ends with SP or HTAB is malformed: the stream is reset
// PROTOCOL_ERROR, and a request never reaches the handler.
func TestFieldValueEdgeWhitespaceIsMalformed(t *testing.T) {
	var calls atomic.Int32
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		io.Copy(io.Discard, r.Body)
	}))
	rc := dialRaw(t, ts.addr)
	rc.get(1, "/", "x-a", "v ")
	if e := rc.rst(1); e.code != http2.ErrCodeProtocol {
		t.Fatalf("%v", e.code)
	}
	rc.post(3, "/", "trailer", "x-t")
	rc.writeHeaders(3, true, "x-t", "\tv")
	if e := rc.rst(3); e.code != http2.ErrCodeProtocol {
		t.Fatalf("%v", e.code)
	}
	rc.get(5, "/", "x-a", "v w")
	if status, _, _, rst := rc.response(5); status != "200" || rst != nil {
		t.Fatalf("%s %v", status, rst)
	}
	// (Stream 3's handler, its stream reset, may start after stream
	// 5's answer.)
	waitFor(t, "the handlers of streams 3 and 5", func() bool { return calls.Load() >= 2 })
	if n := calls.Load(); n != 2 {
		t.Fatalf("handler ran %d times, want 2 (streams 3 and 5)", n)
	}
}

// A client that never reads, asking for responses without a body
// (HEAD, 204, 304, trailers-only gRPC errors): such a response is one
// header block, which no flow-control window holds back, and its stream
// ends at once, freeing its place among the concurrent streams. The
// pending-bytes bound must hold the handlers back as it does for bodies.
func TestNonReadingClientBodylessResponsesStayBounded(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	rc := dialRaw(t, ts.addr)
	sc := ts.conn(t)
	// Little room in the server's socket: what does not fit waits in
	// its write buffer. (The client's socket keeps its default, about
	// 128 KiB; made tiny as well, loopback TCP stalls on it at times.)
	sc.nc.(*net.TCPConn).SetWriteBuffer(4096)
	// streamsDone says whether the server has read stream id and has no
	// stream open.
	streamsDone := func(id uint32) bool {
		return sc.locked(func() bool { return sc.maxClientID == id && len(sc.streams) == 0 && !sc.opening })
	}
	// Up to 100000 responses of 10 bytes, 1 MB, far beyond what the
	// sockets hold, sent as a careful attacker would: 200 streams at a
	// time, each batch once the last has ended (so none is refused).
	var batch bytes.Buffer
	fr := http2.NewFramer(&batch, nil)
	id, peak := uint32(1), 0
	for b := 0; b < 500; b++ {
		batch.Reset()
		for j := 0; j < 200; j++ {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: rc.headerBlock(
				":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/"), EndStream: true, EndHeaders: true})
			id += 2
		}
		rc.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := rc.nc.Write(batch.Bytes()); err != nil {
			break
		}
		drained := false
		for end := time.Now().Add(2 * time.Second); !drained && time.Now().Before(end); time.Sleep(time.Millisecond) {
			drained = streamsDone(id - 2)
		}
		sc.mu.Lock()
		peak = max(peak, len(sc.wbuf))
		sc.mu.Unlock()
		if !drained {
			break // the handlers are held back
		}
	}
	t.Logf("peak pending %d bytes after %d streams", peak, id/2)
	if limit := maxPending + 64<<10; peak > limit {
		t.Fatalf("%d bytes pending for a client that reads nothing (bound %d)", peak, limit)
	}
	rc.nc.Close()
}

// The idle timeout also ends a connection that sent only the preface,
// and one whose first header block never ends: no stream is open while
// a block is read.
func TestIdleTimeoutEndsPrefaceOnlyAndUnfinishedHeaderBlock(t *testing.T) {
	ts := start(t, okHandler(), func(s *Server) { s.IdleTimeout = 100 * time.Millisecond })
	// goAwayThenEOF reads frames, acknowledging none (an acknowledgement
	// in the middle of a header block, or in place of the preface's
	// SETTINGS, would be an error of its own), until GOAWAY, then until
	// the server closes.
	goAwayThenEOF := func(t *testing.T, nc net.Conn) {
		nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		fr := http2.NewFramer(nil, nc)
		for i := 0; ; i++ {
			f, err := fr.ReadFrame()
			if err != nil || i > 100 {
				t.Fatalf("no GOAWAY: %v", err)
			}
			if ga, ok := f.(*http2.GoAwayFrame); ok {
				if ga.ErrCode != http2.ErrCodeNo || ga.LastStreamID != 0 {
					t.Fatalf("GOAWAY %v %d", ga.ErrCode, ga.LastStreamID)
				}
				break
			}
		}
		if _, err := io.Copy(io.Discard, nc); err != nil {
			t.Fatalf("not closed: %v", err)
		}
	}
	t.Run("preface only", func(t *testing.T) {
		nc, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.Write([]byte(http2.ClientPreface))
		goAwayThenEOF(t, nc)
	})
	t.Run("unfinished header block", func(t *testing.T) {
		rc := dialRaw(t, ts.addr)
		rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: rc.headerBlock(":method", "GET")})
		goAwayThenEOF(t, rc.nc)
	})
}

// SETTINGS_HEADER_TABLE_SIZE of 4 GiB only lifts the limit of the
// response encoder's dynamic table (RFC 7541 §4.2); the table stays at
// 4096 bytes, so a client's many distinct fields cost the connection
// no more: a decoder that allows 4096 bytes reads every response.
func TestHugeHeaderTableSizeKeepsTheEncoderTable(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < 50; i++ {
			w.Header().Set("x-f"+strconv.Itoa(i), r.URL.Path+strings.Repeat("v", 100))
		}
	}))
	rc := dialRaw(t, ts.addr, http2.Setting{ID: http2.SettingHeaderTableSize, Val: 1<<32 - 1})
	for id := uint32(1); id < 40; id += 2 {
		path := "/" + strconv.Itoa(int(id))
		rc.get(id, path)
		e := rc.until("response", func(e event) bool { return e.id == id && e.typ == http2.FrameHeaders })
		if e.get(":status") != "200" || e.get("x-f49") != path+strings.Repeat("v", 100) {
			t.Fatalf("stream %d: %q %q", id, e.get(":status"), e.get("x-f49"))
		}
	}
}

// blockedOnConnWindow opens n streams whose handlers write without end
// and waits until all of them wait for the connection's window (spent by
// the first, with the windows of the protocol's start).
func blockedOnConnWindow(t *testing.T, n int) (*rawConn, *serverConn) {
	t.Helper()
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeUntilError(w)
	}))
	rc := dialRaw(t, ts.addr)
	sc := ts.conn(t)
	for id := uint32(1); id < uint32(2*n); id += 2 {
		rc.get(id, "/")
	}
	waitFor(t, "the handlers to wait for the connection's window", func() bool {
		return sc.locked(func() bool { return sc.sendWaiters == n && sc.sendWindow <= 0 })
	})
	return rc, sc
}

// wakes is sc.sendWakes.
func (sc *serverConn) wakes() int {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.sendWakes
}

// Handlers waiting to send are woken only when they can go on: a
// WINDOW_UPDATE for one stream, or a SETTINGS frame, each a few bytes,
// woke every handler waiting on the connection, here 100 blocked on the
// connection's window, to find it still closed.
func TestWindowUpdatesWakeOnlyTheSendersTheyFree(t *testing.T) {
	const streams = 100
	rc, sc := blockedOnConnWindow(t, streams)
	before := sc.wakes()
	var batch bytes.Buffer
	fr := http2.NewFramer(&batch, nil)
	for i := 0; i < 1000; i++ {
		fr.WriteWindowUpdate(1, 1)
		fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 65535 + uint32(i%2)})
	}
	fr.WritePing(false, [8]byte{7})
	rc.nc.Write(batch.Bytes())
	rc.until("PING ack", func(e event) bool { return e.typ == http2.FramePing && e.ack })
	wakes := sc.wakes() - before
	// Reading the responses up to the PING ack lets the writer drain,
	// which may wake each handler a few times; the 2000 frames must not
	// wake them all each.
	if wakes > 10*streams {
		t.Fatalf("%d wake-ups of %d waiting handlers for 2000 frames that free none", wakes, streams)
	}
	t.Logf("%d wake-ups", wakes)
	rc.nc.Close()
}

// DATA frames that carry nothing and do not end the stream cost the
// reader a frame each and give the handler nothing (CVE-2019-9518):
// more than 100 in a row end the connection, as Netty (10) and Envoy (1)
// end it. A few among DATA that carry a body are fine.
func TestEmptyDataFloodEndsConnection(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	}))
	t.Run("a few", func(t *testing.T) {
		rc := dialRaw(t, ts.addr)
		rc.t = t
		rc.post(1, "/")
		for i := 0; i < 3; i++ {
			for j := 0; j < 100; j++ {
				rc.fr.WriteData(1, false, nil)
			}
			rc.fr.WriteData(1, i == 2, []byte("x"))
		}
		if status, body, _, rst := rc.response(1); status != "200" || body != "xxx" || rst != nil {
			t.Fatalf("%s %q %v", status, body, rst)
		}
	})
	t.Run("flood", func(t *testing.T) {
		rc := dialRaw(t, ts.addr)
		rc.t = t
		rc.post(1, "/")
		e := rc.flood(func(fr *http2.Framer) {
			for i := 0; i < 10000; i++ {
				fr.WriteData(1, false, nil)
			}
		})
		if e.code != http2.ErrCodeEnhanceYourCalm || e.last != 1 {
			t.Fatalf("GOAWAY %v last %d", e.code, e.last)
		}
		rc.nc.Close()
	})
}

// A header block left open while another stream keeps the idle timeout
// away (HEADERS without END_HEADERS, and no CONTINUATION) held the
// connection's reader, and the fields decoded so far, for as long as
// that stream lasted. ReadHeaderTimeout bounds it: GOAWAY
// ENHANCE_YOUR_CALM naming the last stream opened, the connection
// closed, and the streams in flight ended.
func TestOpenHeaderBlockEndsConnectionAfterReadHeaderTimeout(t *testing.T) {
	ended := make(chan struct{})
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		close(ended)
	}), func(s *Server) {
		s.IdleTimeout = time.Hour
		// The preface, and the two-frame block below, must be read
		// within it: a second, which a loaded machine does not take
		// (with 100 ms their timers fired now and then).
		s.ReadHeaderTimeout = time.Second
	})
	rc := dialRaw(t, ts.addr)
	// A block of two frames, ended in time: its timer is stopped.
	block := rc.headerBlock(":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/")
	rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:3], EndStream: true})
	rc.fr.WriteContinuation(1, true, block[3:])
	rc.until("stream 1's response", func(e event) bool { return e.id == 1 && e.typ == http2.FrameHeaders })
	passed := time.Now().Add(1500 * time.Millisecond)
	waitFor(t, "the timeout to pass", func() bool { return time.Now().After(passed) })
	rc.fr.WritePing(false, [8]byte{1})
	if e := rc.until("PING ack", func(e event) bool { return e.typ == http2.FramePing || e.typ == http2.FrameGoAway }); e.typ != http2.FramePing {
		t.Fatalf("GOAWAY %v after a block ended in time", e.code)
	}
	rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: rc.headerBlock(":method", "GET")})
	if e := rc.goAway(); e.code != http2.ErrCodeEnhanceYourCalm || e.last != 1 {
		t.Fatalf("GOAWAY %v last %d", e.code, e.last)
	}
	rc.expectClosed()
	rc.nc.Close()
	<-ended
}

// Handlers blocked on the connection's window, and a client that opens
// it a byte at a time: each WINDOW_UPDATE woke every handler whose own
// window was open, for one of them to take the byte and the others to
// find the window closed again (some 100 wake-ups per frame here). Only
// as many as the window can serve are woken, each passing on what it
// leaves.
func TestOneByteConnectionWindowUpdatesWakeOneSender(t *testing.T) {
	const streams, updates = 100, 300
	rc, sc := blockedOnConnWindow(t, streams)
	// readData reads n bytes of DATA.
	readData := func(n int) {
		for n > 0 {
			n -= len(rc.until("DATA", func(e event) bool { return e.typ == http2.FrameData }).data)
		}
	}
	readData(initialWindow)
	before := sc.wakes()
	// Each update once the last byte came: it finds the window closed.
	for i := 0; i < updates; i++ {
		rc.fr.WriteWindowUpdate(0, 1)
		readData(1)
	}
	// Every byte was sent: the window was passed on, nothing was lost.
	waitFor(t, "the handlers to wait again", func() bool {
		return sc.locked(func() bool { return sc.sendWaiters == streams })
	})
	wakes := sc.wakes() - before
	t.Logf("%d wake-ups for %d one-byte updates", wakes, updates)
	if wakes > 2*updates {
		t.Fatalf("%d wake-ups of %d waiting handlers for %d one-byte updates", wakes, streams, updates)
	}
	rc.nc.Close()
}

// The connection's receive window bounds the request body a client can
// make the server hold, across all its streams. A stream whose handler
// has read everything kept the buffer its body had grown to, so a client
// that sent each of many streams a burst, one stream after the other,
// had the server hold a window's worth per stream (here 16 x 512 KiB for
// 1 MiB of window, up to 250 x 1 MiB with the defaults) while nothing
// was left unread.
func TestDrainedRequestBodiesDoNotKeepTheirBuffers(t *testing.T) {
	const streams, burst = 16, 512 << 10
	// The body goes on after the burst: the handler waits for the rest,
	// as a proxy relaying an upload does.
	held := bufferedAfterBursts(t, streams, burst, burst, true)
	if limit := streams * defaultMaxFrame; held > limit {
		t.Fatalf("%d drained streams hold %d bytes of body buffers (bound %d)", streams, held, limit)
	}
}

// A stream whose handler stops reading just short of the end of a burst
// (its upstream stalls) kept the buffer the burst had grown to around
// the few bytes left: a client could have the server hold a window's
// worth per stream, 250 MiB a connection with the defaults, for 1 MiB of
// unread data. Once little is left in a large buffer, it moves to a
// smaller one.
func TestStalledRequestBodiesDoNotKeepTheirBuffers(t *testing.T) {
	// Bursts of a quarter of the connection's window: a stalled stream
	// keeps its unread bytes' credit, and the client sends within the
	// window the server has returned.
	const streams, burst, left = 16, 256 << 10, 1 << 10
	held := bufferedAfterBursts(t, streams, burst, burst-left, false)
	if limit := streams * defaultMaxFrame; held > limit {
		t.Fatalf("%d stalled streams with %d bytes unread each hold %d bytes of body buffers (bound %d)", streams, left, held, limit)
	}
}

// bufferedAfterBursts opens streams POSTs on one connection, one after the
// other, sends each a burst of body bytes, and once all of it is
// buffered has the stream's handler read the first read bytes; then the
// handler reads on (goOn) or stops. It checks that every stream has
// burst-read bytes unread, and returns the capacity of the streams'
// body buffers.
func bufferedAfterBursts(t *testing.T, streams, burst, read int, goOn bool) (held int) {
	t.Helper()
	release := make([]chan struct{}, streams)
	for i := range release {
		release[i] = make(chan struct{})
	}
	done, stop := make(chan struct{}, streams), make(chan struct{})
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i, _ := strconv.Atoi(r.URL.Path[1:])
		<-release[i]
		if _, err := io.ReadFull(r.Body, make([]byte, read)); err != nil {
			t.Error(err)
		}
		done <- struct{}{}
		if goOn {
			io.Copy(io.Discard, r.Body)
		} else {
			<-stop
		}
	}))
	t.Cleanup(func() { // before the server's: its handlers end first
		close(stop)
		for _, c := range release {
			select {
			case <-c:
			default:
				close(c)
			}
		}
	})
	rc := dialRaw(t, ts.addr)
	defer rc.nc.Close()
	sc := ts.conn(t)
	unread := func(id uint32) int {
		sc.mu.Lock()
		defer sc.mu.Unlock()
		if st := sc.streams[id]; st != nil {
			return len(st.rbuf) - st.roff
		}
		return -1
	}
	p := make([]byte, 16<<10)
	for i := 0; i < streams; i++ {
		id := uint32(2*i + 1)
		rc.post(id, "/"+strconv.Itoa(i))
		for n := 0; n < burst; n += len(p) {
			rc.fr.WriteData(id, false, p)
		}
		// All of it buffered before the handler reads: a burst.
		waitFor(t, fmt.Sprintf("stream %d's burst to be buffered", id), func() bool { return unread(id) == burst })
		close(release[i])
		<-done
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	for _, st := range sc.streams {
		if n := len(st.rbuf) - st.roff; n != burst-read {
			t.Errorf("stream %d has %d bytes unread, want %d", st.id, n, burst-read)
		}
		held += cap(st.rbuf)
	}
	t.Logf("%d bytes of buffers held by %d streams", held, streams)
	return held
}

// A client that sends the preface and then nothing, or its first
// SETTINGS a byte at a time, held the connection until the idle timeout
// (5 minutes on the proxy's listeners), where an HTTP/1.1 client must
// have sent its request head within the read-header timeout. The client
// preface, up to the end of its SETTINGS frame, gets ReadHeaderTimeout:
// past it the connection gets GOAWAY ENHANCE_YOUR_CALM and is closed.
// One that sent it in time is not held to it afterwards.
func TestClientPrefaceWithinReadHeaderTimeout(t *testing.T) {
	// The "in time" connection must send its preface within it: a
	// second, which a loaded machine does not take (with 100 ms the
	// timer fired now and then before the client's SETTINGS was read).
	ts := start(t, okHandler(), func(s *Server) {
		s.IdleTimeout = time.Hour
		s.ReadHeaderTimeout = time.Second
	})
	// goAwayCalm reads frames (the server's SETTINGS) until GOAWAY, which
	// must be ENHANCE_YOUR_CALM, then until the server closes.
	goAwayCalm := func(t *testing.T, nc net.Conn) {
		nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		fr := http2.NewFramer(nil, nc)
		for i := 0; ; i++ {
			f, err := fr.ReadFrame()
			if err != nil || i > 10 {
				t.Fatalf("no GOAWAY: %v", err)
			}
			if ga, ok := f.(*http2.GoAwayFrame); ok {
				if ga.ErrCode != http2.ErrCodeEnhanceYourCalm || ga.LastStreamID != 0 {
					t.Fatalf("GOAWAY %v %d", ga.ErrCode, ga.LastStreamID)
				}
				break
			}
		}
		if _, err := io.Copy(io.Discard, nc); err != nil {
			t.Fatalf("not closed: %v", err)
		}
	}
	dial := func(t *testing.T) net.Conn {
		nc, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		return nc
	}
	t.Run("part of the preface", func(t *testing.T) {
		nc := dial(t)
		nc.Write([]byte(http2.ClientPreface[:10]))
		goAwayCalm(t, nc)
	})
	t.Run("preface only", func(t *testing.T) {
		nc := dial(t)
		nc.Write([]byte(http2.ClientPreface))
		goAwayCalm(t, nc)
	})
	t.Run("part of the first SETTINGS", func(t *testing.T) {
		nc := dial(t)
		// The frame header of a SETTINGS of one entry, and 3 of its 6
		// bytes.
		nc.Write(append([]byte(http2.ClientPreface), 0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3, 0))
		goAwayCalm(t, nc)
	})
	t.Run("in time", func(t *testing.T) {
		rc := dialRaw(t, ts.addr)
		rc.t = t
		passed := time.Now().Add(1500 * time.Millisecond)
		waitFor(t, "the timeout to pass", func() bool { return time.Now().After(passed) })
		rc.fr.WritePing(false, [8]byte{1})
		if e := rc.until("PING ack", func(e event) bool { return e.typ == http2.FramePing || e.typ == http2.FrameGoAway }); e.typ != http2.FramePing {
			t.Fatalf("GOAWAY %v after a preface sent in time", e.code)
		}
		rc.get(1, "/")
		if status, _, _, rst := rc.response(1); status != "200" || rst != nil {
			t.Fatalf("%s %v", status, rst)
		}
	})
}
