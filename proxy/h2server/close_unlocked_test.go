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

	"github.com/outrigger-mesh/outrigger/proxy/internal/proxytest"
)

// Close closes the connections each on its own: one whose Close stalls
// does not hold up the others'. It closed them one after the other.
func TestCloseDoesNotWaitForOneConnectionsClose(t *testing.T) {
	s := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stall := proxytest.NewStallingClose(4)
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
				s.ServeConn(stall.Wrap(c), nil)
			}()
		}
	}()
	t.Cleanup(func() {
		stall.Release()
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
		case <-stall.Closing:
		case <-time.After(5 * time.Second):
			t.Fatalf("%d of the 2 connections closing while the first's Close stalls, want both", i)
		}
	}
	stall.Release()
}
