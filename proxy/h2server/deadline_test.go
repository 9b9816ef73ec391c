package h2server

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// expectDeadlineError waits for the error of a blocked operation (what)
// on errc, which must come soon and wrap os.ErrDeadlineExceeded.
func expectDeadlineError(t *testing.T, what string, errc <-chan error) {
	t.Helper()
	select {
	case err := <-errc:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("%s: %v, want os.ErrDeadlineExceeded", what, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%s still blocked", what)
	}
}

// A stream's body Read blocked waiting for DATA is ended by the handler's
// read deadline, by its timer or set (already passed) from another
// goroutine; the handler answers, the stream is reset NO_ERROR after the
// response as for any unread body, and the connection serves on.
func TestSetReadDeadlineEndsBlockedStreamRead(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(rc *http.ResponseController)
	}{
		{"timer", func(rc *http.ResponseController) { _ = rc.SetReadDeadline(time.Now().Add(50 * time.Millisecond)) }},
		{"other goroutine", func(rc *http.ResponseController) {
			go func() { _ = rc.SetReadDeadline(time.Now()) }()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			readErr := make(chan error, 1)
			ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == "GET" {
					io.WriteString(w, "next")
					return
				}
				buf := make([]byte, 4)
				if _, err := io.ReadFull(r.Body, buf); err != nil {
					readErr <- err
					return
				}
				tc.set(http.NewResponseController(w))
				_, err := io.ReadAll(r.Body)
				readErr <- err
				w.WriteHeader(http.StatusGatewayTimeout)
			}))
			rc := dialRaw(t, ts.addr)
			rc.post(1, "/", "content-length", "100")
			rc.fr.WriteData(1, false, []byte("part"))
			expectDeadlineError(t, "body read", readErr)
			if status, _, _, rst := rc.response(1); status != "504" || rst != nil {
				t.Fatalf("status %q, reset %v", status, rst)
			}
			if e := rc.rst(1); e.code != 0 {
				t.Fatalf("reset %v, want NO_ERROR", e.code)
			}
			rc.get(3, "/")
			if status, body, _, _ := rc.response(3); status != "200" || body != "next" {
				t.Fatalf("next stream: %s %q", status, body)
			}
		})
	}
}

// A deadline already passed fails a Read even with DATA waiting; a zero
// deadline clears it and the body reads on.
func TestSetReadDeadlineZeroClearsStreamDeadline(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		buf := make([]byte, 2)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			t.Error(err)
		}
		if err := rc.SetReadDeadline(time.Now().Add(-time.Second)); err != nil {
			t.Error(err)
		}
		_, expired := r.Body.Read(buf)
		// A later deadline, then none: its timer must not fire.
		_ = rc.SetReadDeadline(time.Now().Add(time.Millisecond))
		_ = rc.SetReadDeadline(time.Time{})
		rest, err := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%v %q %v", errors.Is(expired, os.ErrDeadlineExceeded), rest, err)
	}))
	rc := dialRaw(t, ts.addr)
	rc.post(1, "/")
	rc.fr.WriteData(1, false, []byte("pa"))
	rc.fr.WriteData(1, false, []byte("rt"))
	// The end comes after the cleared deadline would have passed.
	// (A framer of its own: rc.fr is reading meanwhile.)
	wf := http2.NewFramer(rc.nc, nil)
	time.AfterFunc(20*time.Millisecond, func() { wf.WriteData(1, true, []byte("!")) })
	if status, body, _, _ := rc.response(1); status != "200" || body != `true "rt!" <nil>` {
		t.Fatalf("%s %q", status, body)
	}
}

// Once the handler has returned, SetReadDeadline and SetWriteDeadline
// fail.
func TestSetDeadlinesAfterHandlerFailOnStream(t *testing.T) {
	rcs := make(chan *http.ResponseController, 1)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		// Timers left set when the handler returns are stopped.
		_ = rc.SetReadDeadline(time.Now().Add(time.Hour))
		_ = rc.SetWriteDeadline(time.Now().Add(time.Hour))
		rcs <- rc
	}))
	rc := dialRaw(t, ts.addr)
	rc.get(1, "/")
	if status, _, _, _ := rc.response(1); status != "200" {
		t.Fatal(status)
	}
	rc2 := <-rcs
	// The client can have the response (sent when the handler returns)
	// a moment before the handler's goroutine marks the stream ended.
	waitFor(t, "SetReadDeadline to fail once the handler has returned", func() bool {
		return errors.Is(rc2.SetReadDeadline(time.Now()), errHandlerDone)
	})
	if err := rc2.SetWriteDeadline(time.Now()); !errors.Is(err, errHandlerDone) {
		t.Fatalf("SetWriteDeadline after the handler: %v", err)
	}
}

// writeUntilError writes w 16 KiB at a time until a write fails.
func writeUntilError(w http.ResponseWriter) error {
	chunk := make([]byte, 16<<10)
	for {
		if _, err := w.Write(chunk); err != nil {
			return err
		}
	}
}

// A handler's Write blocked on a client that does not let it send (no
// WINDOW_UPDATE for its stream or for the connection, or no reading, so
// that the connection's pending bytes reach their bound) is ended by the
// stream's write deadline, by its timer or set (already passed) from
// another goroutine while the Write waits: the Write fails promptly, the
// client gets RST_STREAM INTERNAL_ERROR, and another stream on the
// connection completes.
func TestSetWriteDeadlineEndsBlockedStreamWrite(t *testing.T) {
	for _, tc := range []struct {
		name     string
		settings []http2.Setting
		connInc  uint32 // a connection WINDOW_UPDATE sent first
		// blocked says what the handler waits for; nil: the deadline
		// is the handler's own timer.
		blocked func(sc *serverConn) bool
	}{
		{name: "stream window", settings: []http2.Setting{{ID: http2.SettingInitialWindowSize, Val: 1000}}, connInc: 1 << 20},
		{name: "connection window", settings: []http2.Setting{{ID: http2.SettingInitialWindowSize, Val: 1 << 30}}},
		{name: "stream window, set from another goroutine",
			settings: []http2.Setting{{ID: http2.SettingInitialWindowSize, Val: 1000}}, connInc: 1 << 20,
			blocked: func(sc *serverConn) bool { return sc.streams[1] != nil && sc.streams[1].sendWindow <= 0 }},
		{name: "connection window, set from another goroutine",
			settings: []http2.Setting{{ID: http2.SettingInitialWindowSize, Val: 1 << 30}},
			blocked:  func(sc *serverConn) bool { return sc.sendWindow <= 0 }},
		// The handler that found maxPending bytes queued is woken when
		// the writer's Write returns, which it never does here: the
		// writer holds what it took, and the queue may be empty again.
		{name: "pending bytes, set from another goroutine",
			settings: []http2.Setting{{ID: http2.SettingInitialWindowSize, Val: 1 << 30}}, connInc: 1 << 30,
			blocked: func(sc *serverConn) bool {
				st := sc.streams[1]
				return sc.writing && st != nil && st.sendWindow > 0 && sc.sendWindow > 0
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			writeErr := make(chan error, 1)
			rcs := make(chan *http.ResponseController, 1)
			ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/small" {
					w.Write(make([]byte, 500))
					return
				}
				rc := http.NewResponseController(w)
				if tc.blocked == nil {
					if err := rc.SetWriteDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
						writeErr <- err
						return
					}
				} else {
					rcs <- rc
				}
				writeErr <- writeUntilError(w)
			}))
			rc := dialRaw(t, ts.addr, tc.settings...)
			if tc.connInc > 0 {
				rc.fr.WriteWindowUpdate(0, tc.connInc)
			}
			rc.get(1, "/big")
			if tc.blocked != nil {
				sc := ts.conn(t)
				waitFor(t, "the handler to wait to send", func() bool {
					return sc.locked(func() bool { return sc.sendWaiters == 1 && tc.blocked(sc) })
				})
				if err := (<-rcs).SetWriteDeadline(time.Now()); err != nil {
					t.Fatal(err)
				}
			}
			expectDeadlineError(t, "write", writeErr)
			if e := rc.rst(1); e.code != http2.ErrCodeInternal {
				t.Fatalf("reset %v, want INTERNAL_ERROR", e.code)
			}
			// The connection's window may be spent: the client opens it.
			rc.fr.WriteWindowUpdate(0, 1000)
			rc.get(3, "/small")
			if status, body, _, rst := rc.response(3); status != "200" || len(body) != 500 || rst != nil {
				t.Fatalf("next stream: %s, %d bytes, reset %v", status, len(body), rst)
			}
		})
	}
}

// The end of the response, sent once the handler has returned, waits
// for window as a Write does and is bounded by the deadline as well:
// the body held back is cut at the window and the stream reset.
func TestSetWriteDeadlineBoundsTheResponseEnd(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The header block and the window's worth of body go out before
		// the deadline: a second, which a loaded machine does not take
		// to run the handler's few lines (with 50 ms the write, or the
		// end, could fail before anything was sent).
		if err := http.NewResponseController(w).SetWriteDeadline(time.Now().Add(time.Second)); err != nil {
			t.Error(err)
		}
		w.Write(make([]byte, 3000)) // held back until the handler returns
	}))
	rc := dialRaw(t, ts.addr, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1000})
	rc.get(1, "/")
	status, body, _, rst := rc.response(1)
	if status != "200" || len(body) != 1000 || rst == nil || *rst != http2.ErrCodeInternal {
		t.Fatalf("%s, %d bytes, reset %v", status, len(body), rst)
	}
	sc := ts.conn(t)
	waitFor(t, "the stream's end", func() bool { return sc.locked(func() bool { return len(sc.streams) == 0 }) })
}

// A deadline already passed fails the next Write, even one the server
// would only have held back, and Flush; the stream is reset. Cleared
// before a write (or moved later), it fails nothing.
func TestSetWriteDeadlinePassedFailsWrites(t *testing.T) {
	errs := make(chan [2]error, 1)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if err := rc.SetWriteDeadline(time.Now().Add(-time.Second)); err != nil {
			t.Error(err)
		}
		if r.URL.Path == "/cleared" {
			_ = rc.SetWriteDeadline(time.Time{})
		}
		_, err := io.WriteString(w, "x")
		errs <- [2]error{err, rc.Flush()}
	}))
	rc := dialRaw(t, ts.addr)
	rc.get(1, "/")
	if status, _, _, rst := rc.response(1); status != "" || rst == nil || *rst != http2.ErrCodeInternal {
		t.Fatalf("past deadline: status %q, reset %v", status, rst)
	}
	if e := <-errs; !errors.Is(e[0], os.ErrDeadlineExceeded) || !errors.Is(e[1], os.ErrDeadlineExceeded) {
		t.Fatalf("past deadline: write %v, flush %v", e[0], e[1])
	}
	rc.get(3, "/cleared")
	if status, body, _, rst := rc.response(3); status != "200" || body != "x" || rst != nil {
		t.Fatalf("cleared deadline: %s %q %v", status, body, rst)
	}
	if e := <-errs; e[0] != nil || e[1] != nil {
		t.Fatalf("cleared deadline: write %v, flush %v", e[0], e[1])
	}
}

// A deadline in the future that passes while the handler sends without
// waiting (its timer is armed only for a wait) still fails the next
// Write and Flush, and resets the stream.
func TestSetWriteDeadlineThatPassesWithoutAWaitFailsWrites(t *testing.T) {
	errs := make(chan [2]error, 1)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		// The write and Flush before it must come first: a second, which
		// a loaded machine does not take between two lines (with 20 ms
		// they failed now and then, and the client got no "before").
		dl := time.Now().Add(time.Second)
		if err := rc.SetWriteDeadline(dl); err != nil {
			t.Error(err)
		}
		_, err := io.WriteString(w, "before")
		if err == nil {
			err = rc.Flush()
		}
		if err != nil {
			errs <- [2]error{err, nil}
			return
		}
		for time.Now().Before(dl) { // bounded by dl
			time.Sleep(time.Millisecond)
		}
		_, err = io.WriteString(w, "after")
		errs <- [2]error{err, rc.Flush()}
	}))
	rc := dialRaw(t, ts.addr)
	rc.get(1, "/")
	status, body, _, rst := rc.response(1)
	if status != "200" || body != "before" || rst == nil || *rst != http2.ErrCodeInternal {
		t.Fatalf("status %q, body %q, reset %v", status, body, rst)
	}
	if e := <-errs; !errors.Is(e[0], os.ErrDeadlineExceeded) || !errors.Is(e[1], os.ErrDeadlineExceeded) {
		t.Fatalf("after the deadline: write %v, flush %v", e[0], e[1])
	}
}

// A zero deadline clears one set: its timer does not fire, and a Write
// waiting for window past the cleared time completes once the client
// opens the window.
func TestSetWriteDeadlineZeroClearsStreamDeadline(t *testing.T) {
	cleared := make(chan time.Time, 1)
	writeErr := make(chan error, 1)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		dl := time.Now().Add(20 * time.Millisecond)
		_ = rc.SetWriteDeadline(dl)
		_ = rc.SetWriteDeadline(time.Time{})
		cleared <- dl
		_, err := w.Write(make([]byte, 100<<10))
		writeErr <- err
	}))
	rc := dialRaw(t, ts.addr)
	rc.get(1, "/")
	sc := ts.conn(t)
	dl := <-cleared
	waitFor(t, "the handler to wait past the cleared deadline", func() bool {
		return time.Now().After(dl.Add(20*time.Millisecond)) && sc.locked(func() bool { return sc.sendWaiters == 1 })
	})
	rc.fr.WriteWindowUpdate(0, 1<<20)
	rc.fr.WriteWindowUpdate(1, 1<<20)
	if status, body, _, rst := rc.response(1); status != "200" || len(body) != 100<<10 || rst != nil {
		t.Fatalf("%s, %d bytes, reset %v", status, len(body), rst)
	}
	if err := <-writeErr; err != nil {
		t.Fatal(err)
	}
}

// The end of a response whose handler set no write deadline (what it
// held back, END_STREAM, the trailers; a response without a body is all
// of it) waits for a client that takes nothing at most the connection's
// idle timeout: the stream is then reset INTERNAL_ERROR and its handler
// goroutine let go. It waited for good, holding the goroutine, while
// the client kept the connection open (an open stream keeps the idle
// timeout from ending the connection).
func TestIdleTimeoutBoundsTheResponseEndWithoutADeadline(t *testing.T) {
	// A second, not less: the idle time runs from the accept, so the
	// request must arrive within it, which a loaded machine could miss.
	const idle = time.Second
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(make([]byte, 3000)) // held back until the handler returns
	}), func(s *Server) { s.IdleTimeout = idle })
	rc := dialRaw(t, ts.addr, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1000})
	start := time.Now()
	rc.get(1, "/")
	status, body, _, rst := rc.response(1)
	if status != "200" || len(body) != 1000 || rst == nil || *rst != http2.ErrCodeInternal {
		t.Fatalf("%s, %d bytes, reset %v", status, len(body), rst)
	}
	if d := time.Since(start); d < idle {
		t.Fatalf("reset after %v, before the idle timeout %v", d, idle)
	}
	sc := ts.conn(t)
	waitFor(t, "the stream's end", func() bool { return sc.locked(func() bool { return len(sc.streams) == 0 }) })
}

// The idle timeout bounds the end of a response while the client takes
// nothing, not the whole end: a client that reads slowly, opening the
// window a little at a time each well within the timeout, gets the whole
// response however long it takes.
func TestIdleTimeoutDoesNotCutTheResponseEndOfAReadingClient(t *testing.T) {
	const idle = time.Second
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(make([]byte, 3000)) // held back until the handler returns
	}), func(s *Server) { s.IdleTimeout = idle })
	rc := dialRaw(t, ts.addr, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 200})
	start := time.Now()
	rc.get(1, "/")
	got := 0
	for {
		e, err := rc.next()
		if err != nil {
			t.Fatal(err)
		}
		if e.id != 1 {
			continue
		}
		if e.typ == http2.FrameRSTStream {
			t.Fatalf("reset %v after %d bytes in %v", e.code, got, time.Since(start))
		}
		if e.typ != http2.FrameData {
			continue
		}
		got += len(e.data)
		if e.end {
			break
		}
		if len(e.data) > 0 {
			// Well within the idle timeout, and 15 of them are
			// longer than it.
			time.Sleep(idle / 10)
			if err := rc.fr.WriteWindowUpdate(1, uint32(len(e.data))); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got != 3000 {
		t.Fatalf("%d bytes", got)
	}
}
