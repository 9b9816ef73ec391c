package h1server

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// capGate admits up to max connections at once.
type capGate struct {
	max              int64
	open, refused    atomic.Int64
	admits, releases atomic.Int64
}

func (g *capGate) Admit() bool {
	g.admits.Add(1)
	if g.open.Add(1) > g.max {
		g.open.Add(-1)
		g.refused.Add(1)
		return false
	}
	return true
}

func (g *capGate) Release() {
	g.releases.Add(1)
	if g.open.Add(-1) < 0 {
		panic("capGate: more releases than admits")
	}
}

// refusedUnserved dials addr, sends a request and fails the test unless
// the server closes the connection without a byte of answer.
func refusedUnserved(t *testing.T, addr string) {
	t.Helper()
	c := dial(t, addr)
	c.send(t, "GET /third HTTP/1.1\r\nHost: x\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c.br)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection over the cap left open (read %q)", b)
	}
	if len(b) != 0 {
		t.Fatalf("connection over the cap answered %q", b)
	}
}

// A connection the Gate refuses is closed unread and unanswered, and the
// listener goes on accepting: once an admitted one closes, the next is
// served. Every admitted connection is released once.
func TestGateRefusedConnectionClosedUnserved(t *testing.T) {
	g := &capGate{max: 2}
	var served atomic.Int64
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		io.WriteString(w, "ok")
	}), func(s *Server) { s.Gate = g })

	var open []*rawConn
	for range 2 {
		c := dial(t, ts.addr)
		c.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if _, body := c.response(t, "GET"); body != "ok" {
			t.Fatalf("body %q", body)
		}
		open = append(open, c)
	}
	refusedUnserved(t, ts.addr)
	if n := served.Load(); n != 2 {
		t.Fatalf("handler ran %d times, want 2", n)
	}
	if g.refused.Load() != 1 {
		t.Fatalf("refused %d, want 1", g.refused.Load())
	}
	// The two admitted ones still work.
	for _, c := range open {
		c.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if _, body := c.response(t, "GET"); body != "ok" {
			t.Fatalf("body %q", body)
		}
	}
	open[0].Close()
	waitFor(t, func() bool { return g.open.Load() == 1 })
	c := dial(t, ts.addr)
	c.send(t, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if _, body := c.response(t, "GET"); body != "ok" {
		t.Fatalf("body %q", body)
	}
	open[1].Close()
	waitFor(t, func() bool { return g.open.Load() == 0 })
	if a, r := g.admits.Load()-g.refused.Load(), g.releases.Load(); a != r {
		t.Fatalf("%d admitted, %d released", a, r)
	}
}

// HTTP/2 connections, with prior knowledge or by an h2c upgrade, hold
// their admission until they close, as HTTP/1.1 ones do; a hijacked one
// until its handler returns.
func TestGateHoldsHTTP2AndHijackedConnections(t *testing.T) {
	release := make(chan struct{})
	hijacked := make(chan struct{}, 1)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hijack" {
			c, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			hijacked <- struct{}{}
			<-release
			c.Close()
			return
		}
		io.WriteString(w, "ok")
	}), func(s *Server) { s.Gate = &capGate{max: 1} })
	g := ts.Gate.(*capGate)

	for _, kind := range []string{"prior knowledge", "h2c upgrade", "hijacked"} {
		t.Run(kind, func(t *testing.T) {
			var closeIt func()
			switch kind {
			case "prior knowledge":
				tr := &http2.Transport{AllowHTTP: true,
					DialTLSContext: func(ctx context.Context, n, a string, _ *tls.Config) (net.Conn, error) {
						var d net.Dialer
						return d.DialContext(ctx, n, a)
					}}
				resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(ts.url("/"))
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.ProtoMajor != 2 {
					t.Fatalf("served as %s", resp.Proto)
				}
				closeIt = tr.CloseIdleConnections
			case "h2c upgrade":
				code, status, body, _, c := h2cUpgrade(t, ts.addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: \r\n\r\n")
				if code != 101 || status != "200" || body != "ok" {
					t.Fatalf("%d %s %q", code, status, body)
				}
				closeIt = func() { c.Close() }
			case "hijacked":
				c := dial(t, ts.addr)
				c.send(t, "GET /hijack HTTP/1.1\r\nHost: x\r\n\r\n")
				within(t, 5*time.Second, "the hijack", hijacked)
				closeIt = func() { release <- struct{}{} }
			}
			if g.open.Load() != 1 {
				t.Fatalf("%d admitted connections open, want 1", g.open.Load())
			}
			refusedUnserved(t, ts.addr)
			closeIt()
			waitFor(t, func() bool { return g.open.Load() == 0 })
			// Room again.
			c := dial(t, ts.addr)
			c.send(t, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			if _, body := c.response(t, "GET"); body != "ok" {
				t.Fatalf("body %q", body)
			}
			waitFor(t, func() bool { return g.open.Load() == 0 })
		})
	}
}
