package h2server

import (
	"bytes"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// goroutineID is the id of the calling goroutine, from its stack trace.
func goroutineID() string {
	var buf [64]byte
	s := string(buf[:runtime.Stack(buf[:], false)])
	s = strings.TrimPrefix(s, "goroutine ")
	return s[:strings.IndexByte(s, ' ')]
}

// TestSequentialStreamsShareAHandlerGoroutine: a connection's streams
// that follow one another run on the goroutine of the first, whose
// stack is already grown.
func TestSequentialStreamsShareAHandlerGoroutine(t *testing.T) {
	ids := make(chan string, 1)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ids <- goroutineID()
	}))
	rc := dialRaw(t, ts.addr)
	var first string
	for id := uint32(1); id <= 9; id += 2 {
		rc.get(id, "/")
		rc.response(id)
		g := <-ids
		if first == "" {
			first = g
		} else if g != first {
			t.Fatalf("stream %d on goroutine %s, not %s", id, g, first)
		}
		// The response leaves before its goroutine waits again.
		waitFor(t, "the handler's goroutine to wait", func() bool { return idleWorkers() == 1 })
	}
}

// idleWorkers counts the goroutines waiting for a stream in this process.
func idleWorkers() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return bytes.Count(buf, []byte("h2server.(*serverConn).nextStream("))
}

// blocker serves "ok" and holds each /block request until release is
// closed, which its caller does once n have started.
type blocker struct {
	started sync.WaitGroup
	release chan struct{}
}

func newBlocker(n int) *blocker {
	b := &blocker{release: make(chan struct{})}
	b.started.Add(n)
	return b
}

func (b *blocker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/block" {
		b.started.Done()
		<-b.release
	}
	w.Write([]byte("ok"))
}

// unblock waits for the n /block requests, then lets them answer.
func (b *blocker) unblock() {
	b.started.Wait()
	close(b.release)
}

// burst sends GETs for path on streams [from, to) of rc, calls wait, and
// reads their responses; a reset stream fails the test.
func burst(t *testing.T, rc *rawConn, from, to int, path string, wait func()) {
	t.Helper()
	for i := from; i < to; i++ {
		rc.get(uint32(2*i+1), path)
	}
	wait()
	ended := map[uint32]bool{}
	for len(ended) < to-from {
		e, err := rc.next()
		if err != nil {
			t.Fatal(err)
		}
		if e.typ == http2.FrameRSTStream {
			t.Fatalf("stream %d reset", e.id)
		}
		if e.end {
			ended[e.id] = true
		}
	}
}

// TestIdleHandlerGoroutinesAreBounded: after a burst of streams, at most
// maxIdleWorkers goroutines wait for the connection's next one; they
// end with the connection (goleak in TestMain).
func TestIdleHandlerGoroutinesAreBounded(t *testing.T) {
	const n = 3 * maxIdleWorkers
	b := newBlocker(n)
	ts := start(t, b)
	rc := dialRaw(t, ts.addr)
	burst(t, rc, 0, n, "/block", b.unblock)
	waitFor(t, "idle handler goroutines to settle", func() bool { return idleWorkers() == maxIdleWorkers })
	// They serve the next burst, and settle again.
	burst(t, rc, n, n+2*maxIdleWorkers, "/", func() {})
	waitFor(t, "idle handler goroutines to settle", func() bool { return idleWorkers() == maxIdleWorkers })
}

// TestHandlerGoexitEndsOnlyItsStream: a handler that ends its goroutine
// (runtime.Goexit, as t.FailNow does) has its stream reset as after a
// panic; the connection's other streams are served. It is not logged as
// a panic: there was none.
func TestHandlerGoexitEndsOnlyItsStream(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/exit" {
			runtime.Goexit()
		}
		w.Write([]byte("ok"))
	}))
	rc := dialRaw(t, ts.addr)
	for id := uint32(1); id <= 13; id += 4 {
		rc.get(id, "/exit")
		if e := rc.rst(id); e.code != http2.ErrCodeInternal {
			t.Fatalf("stream %d: RST %v", id, e.code)
		}
		rc.get(id+2, "/")
		if status, body, _, _ := rc.response(id + 2); status != "200" || body != "ok" {
			t.Fatalf("after Goexit: %s %q", status, body)
		}
	}
	if logs := ts.logs.String(); strings.Contains(logs, "panic") {
		t.Fatalf("Goexit logged as a panic:\n%s", logs)
	}
}

// TestQuietConnectionEndsItsIdleHandlerGoroutines: after a burst, a
// connection that stays without streams for workerTrim ends the
// goroutines waiting for its next stream, keeps serving (a new stream
// starts a new goroutine), and is closed only at its idle timeout.
func TestQuietConnectionEndsItsIdleHandlerGoroutines(t *testing.T) {
	const n = 8
	b := newBlocker(n)
	// The trim comes a second into a quiet spell. A handler goroutine
	// must be waiting by then for the trim to reach it (one about to wait
	// is left to the next), and the test must see it wait first: with
	// 100 ms, a loaded machine let the trim go by before either, and the
	// goroutine was never seen waiting, or waited until the idle timeout.
	ts := start(t, b, func(s *Server) {
		s.workerTrim = time.Second
		s.IdleTimeout = 30 * time.Second
	})
	rc := dialRaw(t, ts.addr)
	burst(t, rc, 0, n, "/block", b.unblock)
	// Each of the n goroutines waits for a stream, then the quiet spell
	// ends them all.
	waitFor(t, "the idle handler goroutines to end", func() bool { return idleWorkers() == 0 })

	// The connection still serves, on a new goroutine that then waits.
	id := uint32(2*n + 1)
	rc.get(id, "/")
	if status, body, _, rst := rc.response(id); status != "200" || body != "ok" || rst != nil {
		t.Fatalf("after the trim: %s %q %v", status, body, rst)
	}
	waitFor(t, "the new handler goroutine to wait", func() bool { return idleWorkers() == 1 })
	// And it too ends after a quiet spell, with the connection open: no
	// GOAWAY before the idle timeout.
	waitFor(t, "the new handler goroutine to end", func() bool { return idleWorkers() == 0 })
	id += 2
	rc.get(id, "/")
	if status, body, _, rst := rc.response(id); status != "200" || body != "ok" || rst != nil {
		t.Fatalf("after the second trim: %s %q %v", status, body, rst)
	}
}
