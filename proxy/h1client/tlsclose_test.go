package h1client

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestRequestThatCannotBeResentSkipsConnectionClosedUnderTLS(t *testing.T) {
	var closed atomic.Int32
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateClosed {
			closed.Add(1)
		}
	}
	s.StartTLS()
	t.Cleanup(s.Close)
	tr := newTransport(t, func(tr *Transport) {
		tr.noSweep = true // the closed connection must stay idle
		tr.TLSClientConfig = s.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	})
	get(t, tr, s.URL)
	// The server closes the idle connection (a TLS server sends
	// close_notify first, as Go's and nginx's do).
	s.Config.SetKeepAlivesEnabled(false)
	eventually(t, "the server to close the idle connection", func() bool { return closed.Load() == 1 })
	eventually(t, "the server's close to reach the idle connection", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		for _, hp := range tr.hosts {
			return len(hp.idle) == 1 && !peekAlive(hp.idle[0].raw, false)
		}
		return false
	})
	s.Config.SetKeepAlivesEnabled(true)
	resp, err := tr.RoundTrip(mustRequest(t, "POST", s.URL, nil).WithContext(ctxTimeout(t, 5*time.Second)))
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
}

func TestIdleTLSConnectionClosedByServerIsSwept(t *testing.T) {
	s := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	t.Cleanup(s.Close)
	tr := newTransport(t, func(tr *Transport) {
		tr.MaxConnsPerHost = 1
		tr.TLSClientConfig = s.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	})
	get(t, tr, s.URL)
	s.Config.SetKeepAlivesEnabled(false) // closes the idle connection
	// No request comes: the sweep finds the closed connection, its
	// close_notify unread, and frees its socket and its slot.
	eventually(t, "idle connection swept", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		return len(tr.hosts) == 0
	})
}
