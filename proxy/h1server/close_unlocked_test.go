package h1server

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// stallingListener hands out connections whose Close reports itself on
// closing and then waits for release, as a TLS connection's does while
// its close_notify waits for room in a send buffer its client stopped
// reading (up to crypto/tls's five seconds).
type stallingListener struct {
	net.Listener
	closing chan struct{}
	release chan struct{}
}

type stallingConn struct {
	net.Conn
	l    *stallingListener
	once sync.Once
}

func (l *stallingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &stallingConn{Conn: c, l: l}, nil
}

func (c *stallingConn) Close() error {
	c.once.Do(func() {
		c.l.closing <- struct{}{}
		<-c.l.release
	})
	return c.Conn.Close()
}

// Close and Shutdown close connections outside the Server's lock and
// each on its own: one whose Close stalls holds up neither the others'
// nor anything else that takes the lock. They closed them one after the
// other under the lock, so that N stalled TLS clients held a shutdown
// N times five seconds, past any drain timeout.
func TestConnectionsCloseWithoutWaitingForEachOther(t *testing.T) {
	for _, how := range []string{"Close", "Shutdown"} {
		t.Run(how, func(t *testing.T) {
			s := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
			inner, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ln := &stallingListener{Listener: inner, closing: make(chan struct{}, 4), release: make(chan struct{})}
			served := make(chan error, 1)
			go func() { served <- s.Serve(ln) }()
			var once sync.Once
			open := func() { once.Do(func() { close(ln.release) }) }
			t.Cleanup(func() {
				open()
				s.Close()
				<-served
			})
			// Two idle keep-alive connections, one client each.
			for range 2 {
				tr := &http.Transport{DisableCompression: true}
				t.Cleanup(tr.CloseIdleConnections)
				resp, err := (&http.Client{Transport: tr}).Get("http://" + inner.Addr().String() + "/")
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			go func() {
				if how == "Close" {
					s.Close()
				} else {
					ctx, cancel := contextWithTimeout(10 * time.Second)
					defer cancel()
					s.Shutdown(ctx)
				}
			}()
			for i := range 2 {
				select {
				case <-ln.closing:
				case <-time.After(5 * time.Second):
					t.Fatalf("%d of the 2 connections closing while the first's Close stalls, want both", i)
				}
			}
			open()
		})
	}
}

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
