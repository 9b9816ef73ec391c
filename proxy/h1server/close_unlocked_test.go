package h1server

import (
	"context"
	"io"
	"net"
	"net/http"
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
				if how == "Close" {
					s.Close()
					return
				}
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
		})
	}
}
