package h2client

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/outrigger-mesh/outrigger/proxy/internal/proxytest"
)

// startSilent starts a server that reads each connection's preface and
// then sends nothing at all, reading the client's frames until its
// GOAWAY, whose code it reports on the returned channel.
func startSilent(t *testing.T) (addr string, goAways <-chan http2.ErrCode) {
	t.Helper()
	codes := make(chan http2.ErrCode, 10)
	addr = proxytest.Serve(t, func(c net.Conn, _ int) {
		br := bufio.NewReader(c)
		preface := make([]byte, len(http2.ClientPreface))
		if _, err := io.ReadFull(br, preface); err != nil {
			return
		}
		fr := http2.NewFramer(io.Discard, br)
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			if g, ok := f.(*http2.GoAwayFrame); ok {
				codes <- g.ErrCode
				return
			}
		}
	})
	return addr, codes
}

// A server that accepts the connection and reads the preface but never
// sends its SETTINGS is sent GOAWAY SETTINGS_TIMEOUT once PingTimeout
// has passed (RFC 9113 §6.5.3). The request that dialled, and the one
// that waited for its dial, fail with a HandshakeError (a failure to
// connect: nothing was sent), and nothing stays in the pool.
func TestServerThatNeverSendsSettingsGetsSettingsTimeout(t *testing.T) {
	addr, goAways := startSilent(t)
	tr := newTransport(t, func(tr *Transport) {
		tr.ReadIdleTimeout = -1
		tr.PingTimeout = 200 * time.Millisecond
	})
	errs := make(chan error, 2)
	for range 2 {
		req, _ := http.NewRequestWithContext(ctxTimeout(t, 10*time.Second), "GET", "http://"+addr+"/", nil)
		go func() { errs <- fetch(tr, req).err }()
	}
	for range 2 {
		err := recv(t, errs)
		var he *HandshakeError
		if !errors.As(err, &he) || he.Addr != addr || !errors.Is(err, errSettingsTimeout) {
			t.Fatalf("err = %v, want a HandshakeError for the SETTINGS timeout", err)
		}
	}
	if code := recv(t, goAways); code != http2.ErrCodeSettingsTimeout {
		t.Fatalf("GOAWAY %v, want SETTINGS_TIMEOUT", code)
	}
	tr.mu.Lock()
	n := len(tr.hosts)
	tr.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d hosts left in the pool", n)
	}
}

// A server that sends its SETTINGS and serves requests but never
// acknowledges the client's SETTINGS is served until PingTimeout after
// the preface; then it is sent GOAWAY SETTINGS_TIMEOUT (RFC 9113
// §6.5.3), the request it holds fails with the connection, and the
// connection leaves the pool.
func TestServerThatNeverAcknowledgesSettingsGetsSettingsTimeout(t *testing.T) {
	goAway := make(chan http2.ErrCode, 1)
	held := make(chan struct{}, 1)
	s := startRaw(t, nil, func(rc *rawConn, n int) {
		for {
			f, err := rc.fr.ReadFrame() // no acknowledgement, ever
			if err != nil {
				return
			}
			switch f := f.(type) {
			case *http2.MetaHeadersFrame:
				if f.PseudoValue("path") == "/hold" {
					held <- struct{}{}
					continue
				}
				rc.respond(f.StreamID, "ok")
			case *http2.GoAwayFrame:
				goAway <- f.ErrCode
				return
			}
		}
	})
	// The first request's round trip must end within PingTimeout of the
	// preface: a second, not 300 ms, which a loaded machine could take
	// to dial, hand the server the request and read its answer.
	tr := newTransport(t, func(tr *Transport) {
		tr.ReadIdleTimeout = -1
		tr.PingTimeout = time.Second
	})
	if _, body := get(t, tr, "http://"+s.addr+"/"); body != "ok" {
		t.Fatalf("body %q", body)
	}
	req, _ := http.NewRequestWithContext(ctxTimeout(t, 10*time.Second), "GET", "http://"+s.addr+"/hold", nil)
	_, err := tr.RoundTrip(req)
	var ce *connError
	if !errors.As(err, &ce) || !errors.Is(err, errSettingsTimeout) {
		t.Fatalf("err = %v, want the connection's SETTINGS timeout", err)
	}
	recv(t, held)
	if code := recv(t, goAway); code != http2.ErrCodeSettingsTimeout {
		t.Fatalf("GOAWAY %v, want SETTINGS_TIMEOUT", code)
	}
	eventually(t, "the connection to leave the pool", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		return len(tr.hosts) == 0
	})
}

// A server that acknowledges the client's SETTINGS keeps its connection
// past PingTimeout: the acknowledgement stops the SETTINGS timer.
func TestSettingsAcknowledgedKeepsTheConnection(t *testing.T) {
	s := startRaw(t, nil, func(rc *rawConn, n int) { rc.answerTheRest("ok") })
	// PingTimeout bounds the server's SETTINGS and its acknowledgement
	// of ours, which must come within it: half a second, which a loaded
	// machine slow to run the server's goroutine does not exceed (with
	// 50 ms the handshake could fail with the SETTINGS timeout).
	tr := newTransport(t, func(tr *Transport) {
		tr.ReadIdleTimeout = -1
		tr.PingTimeout = 500 * time.Millisecond
	})
	get(t, tr, "http://"+s.addr+"/")
	c := onlyConn(t, tr, s.addr)
	eventually(t, "the acknowledgement", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.settingsAcked
	})
	// The timer, stopped, never fires: past the timeout the connection
	// still serves.
	deadline := time.Now().Add(3 * tr.PingTimeout)
	for time.Now().Before(deadline) {
		if _, body := get(t, tr, "http://"+s.addr+"/"); body != "ok" {
			t.Fatalf("body %q", body)
		}
		time.Sleep(tr.PingTimeout / 20) // the client's pace
	}
	if n := s.accepted.Load(); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
}
