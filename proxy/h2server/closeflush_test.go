package h2server

import (
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// A client that stops reading while a response is written to it, and
// then says nothing, must not hold the connection past the idle
// timeout. Its handler is let go by its write deadline (the stream is
// reset), the connection is left without streams, and the idle timeout
// queues GOAWAY behind the write the writer is blocked in: that last
// flush, which the client does not take, was waited for without end,
// and the connection (its reader and writer goroutines, the bytes
// pending for it) stayed until the client closed it.
func TestIdleTimeoutEndsAConnectionWhoseClientStoppedReading(t *testing.T) {
	// A second, not less: the idle time runs from the accept, so the
	// request must arrive within it, which a loaded machine could miss.
	const idle = time.Second
	writeEnded, checked := make(chan struct{}), make(chan struct{})
	release := sync.OnceFunc(func() { close(checked) })
	defer release()
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		chunk := make([]byte, 64<<10)
		for i := 0; i < 1024; i++ { // 64 MiB at most
			// Each write gets a second to find room, so the handler is
			// let go once the writes have stopped moving, not at a fixed
			// time from its start: a loaded machine had not always filled
			// the sockets by then, and the writer was found between two
			// writes, not blocked in one. A shorter time could pass while
			// the writer goroutine waited to run, with the same result.
			_ = rc.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := w.Write(chunk); err != nil {
				break
			}
		}
		// The handler stays until the writer has been looked at: while
		// its stream lasts the connection has no idle time, and the
		// writer stays as the client left it. Once the handler had
		// returned, the idle timeout and its last write's deadline could
		// end the writer's write before the test looked.
		close(writeEnded)
		<-checked
	}), func(s *Server) { s.IdleTimeout = idle })
	// Windows so large that only the socket holds the writes back.
	rc := dialRaw(t, ts.addr, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1})
	if tc, ok := rc.nc.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(16 << 10)
	}
	rc.fr.WriteWindowUpdate(0, 1<<31-1-65535)
	rc.get(1, "/")
	sc := ts.conn(t)
	select {
	case <-writeEnded:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler was not let go by its write deadline")
	}
	if sc.locked(func() bool { return !sc.writing }) {
		t.Fatal("the writer is not blocked: the client took everything")
	}
	release()
	// The client reads nothing more, and keeps the connection open.
	waitFor(t, "the connection to end", func() bool {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		return len(ts.conns) == 0
	})
}
