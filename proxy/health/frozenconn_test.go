package health

import (
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// freezingRelay forwards the connections it accepts to a backend. freeze
// stops the traffic of the connections open at that moment, both ways,
// without closing them: a flow that a NAT or a firewall forgot, or a peer
// gone without a reset. The connections accepted after it are forwarded
// as before.
type freezingRelay struct {
	ln       net.Listener
	backend  string
	accepted atomic.Int64

	mu     sync.Mutex
	conns  []net.Conn
	frozen []chan struct{} // one per pair of connections, closed by freeze
	wg     sync.WaitGroup
}

// newFreezingRelay relays to backend until the test ends.
func newFreezingRelay(t *testing.T, backend string) *freezingRelay {
	t.Helper()
	r := &freezingRelay{ln: listen(t), backend: backend}
	r.wg.Add(1)
	go r.accept()
	t.Cleanup(func() {
		r.ln.Close()
		r.mu.Lock()
		for _, c := range r.conns {
			c.Close()
		}
		r.mu.Unlock()
		r.wg.Wait()
	})
	return r
}

func (r *freezingRelay) addr() string { return r.ln.Addr().String() }

func (r *freezingRelay) accept() {
	defer r.wg.Done()
	for {
		in, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.accepted.Add(1)
		out, err := net.Dial("tcp", r.backend)
		if err != nil {
			in.Close()
			continue
		}
		stop := make(chan struct{})
		r.mu.Lock()
		r.conns = append(r.conns, in, out)
		r.frozen = append(r.frozen, stop)
		r.mu.Unlock()
		r.wg.Add(2)
		go r.pipe(out, in, stop)
		go r.pipe(in, out, stop)
	}
}

// pipe copies src to dst until src ends, then closes dst; once the pair
// is frozen it reads and drops what src sends, so that the peer's writes
// do not block, and leaves dst open.
func (r *freezingRelay) pipe(dst, src net.Conn, stop chan struct{}) {
	defer r.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		select {
		case <-stop:
			if err != nil {
				return
			}
			continue
		default:
		}
		if n > 0 {
			dst.Write(buf[:n])
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

// freeze silences every connection open now.
func (r *freezingRelay) freeze() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.frozen {
		select {
		case <-s:
		default:
			close(s)
		}
	}
}

// A connection that goes silent fails the check at its timeout; the next
// check dials afresh and passes, as the endpoint still answers on new
// connections. A gRPC check kept asking on the silent connection: grpc-go
// has no keepalive unless asked, so the endpoint stayed unhealthy until
// the kernel gave up on the connection (about 15 minutes of
// retransmissions).
func TestSilentConnectionIsReplacedAfterATimedOutCheck(t *testing.T) {
	for _, kind := range []Kind{HTTP, GRPC} {
		t.Run(kind.String(), func(t *testing.T) {
			var backend string
			switch kind {
			case HTTP:
				backend = newStatusServer(t, nil).addr()
			case GRPC:
				ln := listen(t)
				serveHealth(t, ln).health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
				backend = ln.Addr().String()
			}
			relay := newFreezingRelay(t, backend)
			cfg := fastConfig(kind)
			cfg.Interval = 20 * time.Millisecond
			cfg.Timeout = 200 * time.Millisecond
			c := startChecker(t, cfg, []string{relay.addr()})
			waitFor(t, "the first check passes", func() bool { return c.Status(0).Checked && c.Healthy(0) })

			relay.freeze()
			// The status is taken as the failure is seen: the next check,
			// on a new connection, comes an interval later and passes.
			var st EndpointStatus
			waitFor(t, "a check on the silent connection fails", func() bool {
				st = c.Status(0)
				return !st.Healthy
			})
			if st.LastError != "timeout" {
				t.Fatalf("on the silent connection: %+v, want a timeout", st)
			}
			waitFor(t, "a check on a new connection passes", func() bool { return c.Healthy(0) })
			if n := relay.accepted.Load(); n < 2 {
				t.Fatalf("%d connections, want a new one after the timeout", n)
			}
		})
	}
}

// Over HTTP/2 too, the check after one that timed out on a silent
// connection dials afresh. net/http let go of the timed-out stream on a
// goroutine of its own, often after the failed check had closed the
// endpoint's idle connections, so that the silent connection was not yet
// idle, was kept, and the next check was sent on it to time out again (up
// to ten times in a row).
func TestHTTP2CheckAfterATimeoutDialsAfresh(t *testing.T) {
	backend := newH2CServer(t, func(w http.ResponseWriter, r *http.Request) {})
	relay := newFreezingRelay(t, backend)
	cfg := fastConfig(HTTP)
	cfg.HTTP2 = true
	c := newChecker(t, cfg, []string{relay.addr()})
	// Each round makes the race that lost the connection again.
	for round := range 10 {
		// The check that must pass has a timeout a loaded machine
		// cannot run out, dial and all; sent on the silent connection
		// it would still time out, later. The one on the silent
		// connection times out soon.
		c.cfg.Timeout = 5 * time.Second
		if err := checkNow(t, c, 0); err != nil {
			t.Fatalf("round %d: the check after a timeout: %v (%d connections)", round, err, relay.accepted.Load())
		}
		relay.freeze()
		c.cfg.Timeout = 100 * time.Millisecond
		if cause, reason := causeOf(t, checkNow(t, c, 0)); cause != CauseTimeout {
			t.Fatalf("round %d: on the silent connection: %q (cause %q), want a timeout", round, reason, cause)
		}
	}
}
