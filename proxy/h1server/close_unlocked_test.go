package h1server

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/internal/proxytest"
)

// stallingListener hands out connections whose Close stalls (see
// proxytest.StallingClose).
type stallingListener struct {
	net.Listener
	stall *proxytest.StallingClose
}

func (l *stallingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.stall.Wrap(c), nil
}

// Shutdown closes idle connections outside the Server's lock and each
// on its own: one whose Close stalls holds up neither the others' nor
// anything else that takes the lock. It closed them one after the other
// under the lock, so that N stalled TLS clients held a shutdown N times
// five seconds, past any drain timeout. (Close closes a TLS connection's
// socket without its close_notify, which is what stalls.)
func TestShutdownClosesIdleConnectionsWithoutWaitingForEachOther(t *testing.T) {
	s := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stall := proxytest.NewStallingClose(4)
	served := make(chan error, 1)
	go func() { served <- s.Serve(&stallingListener{Listener: inner, stall: stall}) }()
	t.Cleanup(func() {
		stall.Release()
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
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	}()
	for i := range 2 {
		select {
		case <-stall.Closing:
		case <-time.After(5 * time.Second):
			t.Fatalf("%d of the 2 connections closing while the first's Close stalls, want both", i)
		}
	}
	stall.Release()
}

// writeStallingListener hands out connections whose writes, once stall
// is set, wait for release: a client that stopped reading, its socket
// buffers full.
type writeStallingListener struct {
	net.Listener
	stall   atomic.Bool
	release chan struct{}
}

type writeStallingConn struct {
	net.Conn
	l *writeStallingListener
}

func (l *writeStallingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &writeStallingConn{Conn: c, l: l}, nil
}

func (c *writeStallingConn) Write(p []byte) (int, error) {
	if c.l.stall.Load() {
		<-c.l.release
		return 0, net.ErrClosed
	}
	return c.Conn.Write(p)
}

// Close closes a TLS connection's socket at once, without the
// close_notify crypto/tls's Close sends first, which waits (up to five
// seconds) for room in the send buffer of a client that stopped reading:
// Close, which cuts every connection short, does not wait on any.
func TestCloseDoesNotWaitToSendCloseNotify(t *testing.T) {
	certs := httptest.NewTLSServer(http.NotFoundHandler())
	cert, pool := certs.TLS.Certificates, certs.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	certs.Close()
	s := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	s.SetLimits(Limits{TLS: &tls.Config{Certificates: cert, NextProtos: []string{"http/1.1"}}})
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &writeStallingListener{Listener: inner, release: make(chan struct{})}
	var once sync.Once
	release := func() { once.Do(func() { close(ln.release) }) }
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	t.Cleanup(func() {
		release()
		s.Close()
		<-served
	})
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "example.com"}}
	t.Cleanup(tr.CloseIdleConnections)
	resp, err := (&http.Client{Transport: tr}).Get("https://" + inner.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	ln.stall.Store(true)
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waits on a TLS connection whose client stopped reading")
	}
}
