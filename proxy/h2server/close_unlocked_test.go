package h2server

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// stallingConn's Close reports itself on closing and then waits for
// release, as a TLS connection's does while its close_notify waits for
// room in a send buffer its client stopped reading (up to crypto/tls's
// five seconds).
type stallingConn struct {
	net.Conn
	closing chan<- struct{}
	release <-chan struct{}
	once    sync.Once
}

func (c *stallingConn) Close() error {
	c.once.Do(func() {
		c.closing <- struct{}{}
		<-c.release
	})
	return c.Conn.Close()
}

// Close closes the connections each on its own: one whose Close stalls
// does not hold up the others'. It closed them one after the other.
func TestCloseDoesNotWaitForOneConnectionsClose(t *testing.T) {
	s := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closing, release := make(chan struct{}, 4), make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(release) }) }
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.ServeConn(&stallingConn{Conn: c, closing: closing, release: release}, nil)
			}()
		}
	}()
	t.Cleanup(func() {
		open()
		ln.Close()
		s.Close()
		wg.Wait()
	})
	for range 2 {
		tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}}
		t.Cleanup(tr.CloseIdleConnections)
		resp, err := (&http.Client{Transport: tr}).Get("http://" + ln.Addr().String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	go s.Close()
	for i := range 2 {
		select {
		case <-closing:
		case <-time.After(5 * time.Second):
			t.Fatalf("%d of the 2 connections closing while the first's Close stalls, want both", i)
		}
	}
	open()
}
