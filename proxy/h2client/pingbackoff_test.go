package h2client

import (
	"testing"
	"time"
)

// A server whose keepalive enforcement is stricter than MinPingInterval
// ends the connection with GOAWAY ENHANCE_YOUR_CALM "too_many_pings";
// each time it does, the Transport doubles the spacing of its PINGs (as
// grpc-go's client doubles its keepalive time), so that a later quiet
// call outlives them. With a fixed spacing every quiet call died.
func TestTooManyPingsDoublesThePingSpacing(t *testing.T) {
	addr, _ := keepaliveServer(t, 700*time.Millisecond)
	tr := newTransport(t, func(tr *Transport) {
		tr.ReadIdleTimeout = 20 * time.Millisecond
		tr.MinPingInterval = 200 * time.Millisecond
	})
	// quietCall holds a call open (x-hang) until it has outlived five
	// answered PINGs, or until its connection ends; it reports which.
	quietCall := func() (outlived bool) {
		cancel, errc := hangingCall(t, tr, addr)
		defer cancel()
		var c *conn
		eventually(t, "the call's connection", func() bool {
			tr.mu.Lock()
			defer tr.mu.Unlock()
			if hp := tr.hosts[addr]; hp != nil {
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
