package h2client

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// zeros is an endless request body.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// A server that stops reading, so that the client's writes block once
// the socket buffers are full, but goes on sending frames (PRIORITY
// here), which keep the keepalive from sending a PING, is found out by
// the keepalive all the same: a write that has not returned between two
// of its checks closes the connection, which leaves the pool and fails
// its streams. Before, the connection stayed in the pool for ever and
// every request placed on it waited for its own deadline.
func TestServerThatStopsReadingIsClosed(t *testing.T) {
	s := startRawForRequest(t, []http2.Setting{{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1}}, func(rc *rawConn, h *http2.MetaHeadersFrame) {
		// All the window there is, then nothing more is read.
		if rc.fr.WriteWindowUpdate(0, 1<<31-1-65535) != nil {
			return
		}
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for range tick.C {
			if rc.fr.WritePriority(h.StreamID, http2.PriorityParam{Weight: 1}) != nil {
				return
			}
		}
	})
	tr := newTransport(t, func(tr *Transport) {
		tr.ReadIdleTimeout = 50 * time.Millisecond
		tr.PingTimeout = 5 * time.Second
	})
	req, _ := http.NewRequestWithContext(ctxTimeout(t, 10*time.Second), "POST", "http://"+s.addr+"/", zeros{})
	_, err := tr.RoundTrip(req)
	if !errors.Is(err, errWriteStalled) {
		t.Fatalf("err = %v, want the stalled write", err)
	}
	eventually(t, "the connection to leave the pool", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		return len(tr.hosts) == 0
	})
}
