package proxy

import (
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/breaker"
	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// heldUpstream is an upstream whose calls wait for a token on release,
// and which tracks how many connections are open to it at once.
type heldUpstream struct {
	addr    string
	entered atomic.Int64
	release chan struct{}
	done    chan struct{} // closed by unblockOnCleanup's cleanup
	// closing has every answer close its connection; accepted counts
	// the connections made.
	closing  atomic.Bool
	accepted atomic.Int64

	mu            sync.Mutex // guards the fields below
	open, maxOpen int
}

func newHeldUpstream(t *testing.T, mod ...func(*httptest.Server)) *heldUpstream {
	u := &heldUpstream{release: make(chan struct{}), done: make(chan struct{})}
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.entered.Add(1)
		if u.closing.Load() {
			w.Header().Set("Connection", "close")
		}
		select {
		case <-u.release:
		case <-u.done:
		case <-r.Context().Done():
		}
	}))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		u.mu.Lock()
		defer u.mu.Unlock()
		switch st {
		case http.StateNew:
			u.accepted.Add(1)
			u.open++
			u.maxOpen = max(u.maxOpen, u.open)
		case http.StateClosed, http.StateHijacked:
			u.open--
		}
	}
	for _, f := range mod {
		f(s)
	}
	s.Start()
	t.Cleanup(s.Close)
	u.addr = addr(s)
	return u
}

// unblockOnCleanup lets every call still held go at t's cleanup, which
// must run before the proxy's (so call it after startProxy): its
// Shutdown waits for them.
func (u *heldUpstream) unblockOnCleanup(t *testing.T) {
	t.Cleanup(func() { close(u.done) })
}

func (u *heldUpstream) maxOpenConns() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.maxOpen
}

// send makes n concurrent GETs through h and returns a channel that
// gets each one's status (0 for a transport error) and
// X-Outrigger-Breaker header.
func send(h *harness, n int) <-chan [2]string {
	out := make(chan [2]string, n)
	for range n {
		go func() {
			resp, err := h.h1.Get(h.url("/"))
			if err != nil {
				out <- [2]string{"error: " + err.Error(), ""}
				return
			}
			resp.Body.Close()
			out <- [2]string{resp.Status, resp.Header.Get("X-Outrigger-Breaker")}
		}()
	}
	return out
}

// limitsInUse is what the serving snapshot's limits of cluster svc count.
func limitsInUse(h *harness) [breaker.NumLimits]int64 {
	return h.p.snap.Load().clusters["svc"].res.limits.Snapshot().InUse
}

// A reload that changes a cluster's limits keeps counting the
// connections its pool holds: idle connections dialled before it count
// towards max_connections after it, so that they and the new ones never
// exceed it; and they give their count back when closed.
func TestMaxConnectionsHoldsAcrossALimitsReload(t *testing.T) {
	up := newHeldUpstream(t)
	cl := config.Cluster{Endpoints: eps(up.addr), Limits: breaker.LimitsConfig{MaxConnections: 2}}
	h := startProxy(t, simpleConfig(cl))
	up.unblockOnCleanup(t)

	// Two calls at once leave two idle connections in the pool.
	res := send(h, 2)
	eventually(t, 5*time.Second, "two calls upstream", func() bool { return up.entered.Load() == 2 })
	up.release <- struct{}{}
	up.release <- struct{}{}
	for range 2 {
		if r := <-res; r[0] != "200 OK" {
			t.Fatalf("before the reload: %v", r)
		}
	}
	eventually(t, 5*time.Second, "two connections counted", func() bool {
		return limitsInUse(h)[breaker.LimitConnections] == 2
	})

	// The reload changes the block (not the pool's settings): the pool
	// and its idle connections are kept.
	pool := h.p.snap.Load().clusters["svc"].pool
	cl.Limits.MaxRequests = 100
	if err := h.p.Apply(simpleConfig(cl)); err != nil {
		t.Fatal(err)
	}
	if h.p.snap.Load().clusters["svc"].pool != pool {
		t.Fatal("the reload made a new pool")
	}
	if n := limitsInUse(h)[breaker.LimitConnections]; n != 2 {
		t.Errorf("after the reload max_connections counts %d connections, want the 2 idle ones", n)
	}

	// Four calls at once: two on the idle connections, two waiting for
	// those connections (at max_connections a call queues for its
	// endpoint's connections, as in Envoy's pools), none on a third.
	entered := up.entered.Load()
	res = send(h, 4)
	eventually(t, 5*time.Second, "two calls upstream, two waiting", func() bool {
		return up.entered.Load()-entered == 2 && limitsInUse(h)[breaker.LimitPendingRequests] == 2
	})
	for range 4 {
		up.release <- struct{}{}
	}
	for range 4 {
		if r := <-res; r[0] != "200 OK" {
			t.Fatalf("after the reload: %v", r)
		}
	}
	if m := up.maxOpenConns(); m > 2 {
		t.Fatalf("%d connections open at once, max_connections 2", m)
	}

	// Every connection, dialled before or after the reload, gives its
	// count back.
	eventually(t, 5*time.Second, "every count back at zero", func() bool {
		pool.closeIdle()
		return limitsInUse(h) == [breaker.NumLimits]int64{}
	})
}

// A reload that changes a cluster's limits keeps counting the calls in
// flight: those that started before it count towards max_requests after
// it, and give their count back when they end.
func TestMaxRequestsHoldsAcrossALimitsReload(t *testing.T) {
	up := newHeldUpstream(t)
	cl := config.Cluster{Endpoints: eps(up.addr), Limits: breaker.LimitsConfig{MaxRequests: 2}}
	h := startProxy(t, simpleConfig(cl))
	up.unblockOnCleanup(t)

	res := send(h, 2)
	eventually(t, 5*time.Second, "two calls upstream", func() bool { return up.entered.Load() == 2 })
	cl.Limits.MaxConnections = 100
	if err := h.p.Apply(simpleConfig(cl)); err != nil {
		t.Fatal(err)
	}
	if n := limitsInUse(h)[breaker.LimitRequests]; n != 2 {
		t.Errorf("after the reload max_requests counts %d calls, want the 2 in flight", n)
	}
	resp, _ := do(t, h.h1, http.MethodGet, h.url("/"), nil)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("X-Outrigger-Breaker") != "max_requests" {
		t.Fatalf("a third call: %d %q, want 503 max_requests", resp.StatusCode, resp.Header.Get("X-Outrigger-Breaker"))
	}
	up.release <- struct{}{}
	up.release <- struct{}{}
	for range 2 {
		if r := <-res; r[0] != "200 OK" {
			t.Fatalf("a call from before the reload: %v", r)
		}
	}
	if n := limitsInUse(h)[breaker.LimitRequests]; n != 0 {
		t.Fatalf("max_requests counts %d calls after every call ended", n)
	}
	// The limit is the new config's: two calls are admitted again.
	res = send(h, 2)
	eventually(t, 5*time.Second, "two more calls upstream", func() bool { return up.entered.Load() == 4 })
	up.release <- struct{}{}
	up.release <- struct{}{}
	for range 2 {
		if r := <-res; r[0] != "200 OK" {
			t.Fatalf("a call after the reload: %v", r)
		}
	}
}
