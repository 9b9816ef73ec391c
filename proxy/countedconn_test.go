package proxy

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outrigger-mesh/outrigger/proxy/internal/sockio"
)

// An upstream connection passes a half-close on: after CloseWrite the
// peer reads the end of the stream and can still answer, which a tunnel
// relays when a client ends its direction first.
func TestCountedConnCloseWriteHalfCloses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	answered := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			answered <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(c)
		if err == nil {
			_, err = c.Write(append([]byte("got "), b...))
		}
		answered <- err
	}()
	nc, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cc := &countedConn{Conn: sockio.Wrap(nc), gauge: prometheus.NewGauge(prometheus.GaugeOpts{Name: "g"})}
	defer cc.Close()
	_ = cc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := cc.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if err := cc.CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
	b, err := io.ReadAll(cc)
	if err != nil || string(b) != "got ping" {
		t.Fatalf("%q %v, want the peer's answer after its EOF", b, err)
	}
	if err := <-answered; err != nil {
		t.Fatal(err)
	}
}
