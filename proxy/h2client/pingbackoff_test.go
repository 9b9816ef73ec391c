package h2client

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/keepalive"
)

// A server whose keepalive enforcement is stricter than MinPingInterval
// ends the connection with GOAWAY ENHANCE_YOUR_CALM "too_many_pings";
// each time it does, the Transport doubles the spacing of its PINGs (as
// grpc-go's client doubles its keepalive time), so that a later quiet
// call outlives them. With a fixed spacing every quiet call died.
func TestTooManyPingsDoublesThePingSpacing(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 700 * time.Millisecond}))
	svc := &grpcService{cancelled: make(chan struct{}, 8)}
	testpb.RegisterTestServiceServer(gs, svc)
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	tr := newTransport(t, func(tr *Transport) {
		tr.ReadIdleTimeout = 20 * time.Millisecond
		tr.MinPingInterval = 200 * time.Millisecond
	})
	// quietCall holds a call open (x-hang) until it has outlived five
	// answered PINGs, or until its connection ends; it reports which.
	quietCall := func() (outlived bool) {
		ctx, cancel := context.WithCancel(ctxTimeout(t, 20*time.Second))
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+ln.Addr().String()+"/grpc.testing.TestService/UnaryCall",
			strings.NewReader("\x00\x00\x00\x00\x00"))
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("Te", "trailers")
		req.Header.Set("X-Hang", "1")
		errc := make(chan error, 1)
		go func() {
			resp, err := tr.RoundTrip(req)
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			errc <- err
		}()
		var c *conn
		eventually(t, "the call's connection", func() bool {
			tr.mu.Lock()
			defer tr.mu.Unlock()
			if hp := tr.hosts[ln.Addr().String()]; hp != nil {
				for _, hc := range hp.conns {
					hc.mu.Lock()
					if !hc.closed && !hc.goAway && len(hc.streams) > 0 {
						c = hc
					}
					hc.mu.Unlock()
				}
			}
			return c != nil
		})
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			c.mu.Lock()
			pings, answered, ended := c.pingData[0], !c.pingSent, c.goAway || c.closed
			c.mu.Unlock()
			if ended {
				cancel()
				<-errc
				return false
			}
			if pings >= 5 && answered {
				cancel()
				<-errc
				return true
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatal("the call neither ended nor outlived five PINGs")
		return false
	}
	// 200 ms, 400 ms: too close for the server; 800 ms is not.
	for i := 0; i < 3; i++ {
		if quietCall() {
			if i == 0 {
				t.Fatal("the first quiet call outlived PINGs closer than the server's minimum")
			}
			if got := tr.minPingInterval(); got < 700*time.Millisecond {
				t.Errorf("PING spacing %v after %d GOAWAYs", got, i)
			}
			return
		}
	}
	t.Fatalf("three quiet calls ended by too_many_pings; PING spacing still %v", tr.minPingInterval())
}
