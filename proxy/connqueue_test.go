package proxy

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/breaker"
	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// oneAtATime sends n calls at once through h to up, which holds each,
// and checks that up gets them one at a time, the others waiting for a
// connection, and that each is answered 200 once let go.
func oneAtATime(t *testing.T, h *harness, up *heldUpstream, n int) {
	t.Helper()
	res := send(h, n)
	for i := range n {
		eventually(t, 5*time.Second, "one call upstream, the others waiting", func() bool {
			return up.entered.Load() == int64(i+1) && limitsInUse(h)[breaker.LimitPendingRequests] == int64(n-1-i)
		})
		up.release <- struct{}{}
	}
	for range n {
		if r := <-res; r[0] != "200 OK" {
			t.Fatalf("a call: %v, want 200", r)
		}
	}
}

// At the cluster's max_connections an HTTP/1.1 call waits for one of its
// endpoint's connections, as in Envoy's pools: five calls at once over
// max_connections 1 all succeed, one after the other on one connection;
// the overflows are counted (Envoy's upstream_cx_overflow) but no call
// is refused.
func TestMaxConnectionsQueuesForTheEndpointsConnection(t *testing.T) {
	up := newHeldUpstream(t)
	cl := config.Cluster{Endpoints: eps(up.addr), Limits: breaker.LimitsConfig{MaxConnections: 1}}
	h := startProxy(t, simpleConfig(cl))
	up.unblockOnCleanup(t)

	oneAtATime(t, h, up, 5)
	if m := up.maxOpenConns(); m != 1 {
		t.Fatalf("%d connections open at once, max_connections 1", m)
	}
	snap := h.p.snap.Load().clusters["svc"].res.limits.Snapshot()
	if snap.Overflows[breaker.LimitConnections] == 0 {
		t.Error("no max_connections overflow counted")
	}
	if n := gathered(t, h, "outrigger_breaker_rejected_total", "reason", "max_connections"); n != 0 {
		t.Errorf("%v calls counted refused by max_connections, want 0", n)
	}
}

// At max_connections an HTTP/2 call that finds every stream of its
// endpoint's connections taken (the upstream allows one at a time) waits
// for one, as in Envoy's pools, instead of being refused: three calls at
// once over max_connections 1 all succeed, one after the other on one
// connection.
func TestMaxConnectionsQueuesForAStreamOverHTTP2(t *testing.T) {
	up := newHeldUpstream(t, func(s *httptest.Server) {
		s.Config.Protocols = new(http.Protocols)
		s.Config.Protocols.SetUnencryptedHTTP2(true)
		s.Config.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: 1}
	})
	cl := config.Cluster{Endpoints: eps(up.addr), Protocol: config.ProtocolHTTP2, Limits: breaker.LimitsConfig{MaxConnections: 1}}
	h := startProxy(t, simpleConfig(cl))
	up.unblockOnCleanup(t)

	oneAtATime(t, h, up, 3)
	if n := up.accepted.Load(); n != 1 {
		t.Fatalf("%d connections made, want 1", n)
	}
	if n := gathered(t, h, "outrigger_breaker_rejected_total", "reason", "max_connections"); n != 0 {
		t.Errorf("%v calls counted refused by max_connections, want 0", n)
	}
}

// The calls waiting at max_connections hold max_pending_requests slots:
// one over it is refused at once, as in Envoy.
func TestMaxConnectionsQueueBoundedByMaxPendingRequests(t *testing.T) {
	up := newHeldUpstream(t)
	cl := config.Cluster{Endpoints: eps(up.addr), Limits: breaker.LimitsConfig{MaxConnections: 1, MaxPendingRequests: 1}}
	h := startProxy(t, simpleConfig(cl))
	up.unblockOnCleanup(t)

	first := send(h, 1)
	eventually(t, 5*time.Second, "a call upstream", func() bool { return up.entered.Load() == 1 })
	second := send(h, 1)
	eventually(t, 5*time.Second, "a call waiting", func() bool {
		return limitsInUse(h)[breaker.LimitPendingRequests] == 1
	})
	resp, _ := do(t, h.h1, http.MethodGet, h.url("/"), nil)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("X-Outrigger-Breaker") != "max_pending_requests" {
		t.Fatalf("a third call: %d %q, want 503 max_pending_requests", resp.StatusCode, resp.Header.Get("X-Outrigger-Breaker"))
	}
	up.release <- struct{}{}
	eventually(t, 5*time.Second, "the waiting call upstream", func() bool { return up.entered.Load() == 2 })
	up.release <- struct{}{}
	for _, ch := range []<-chan [2]string{first, second} {
		if r := <-ch; r[0] != "200 OK" {
			t.Fatalf("a call: %v, want 200", r)
		}
	}
}

// An endpoint with no connection gets one whatever the cluster's
// max_connections (as Envoy's pools make a host's first connection), so
// that a limit under the number of endpoints leaves none of them
// unreachable: over HTTP/1.1 and HTTP/2, two endpoints under
// max_connections 1 each serve a call, the overflow counted.
func TestMaxConnectionsLetsEachEndpointHaveAConnection(t *testing.T) {
	for _, proto := range []config.Protocol{config.ProtocolHTTP1, config.ProtocolHTTP2} {
		t.Run(string(proto), func(t *testing.T) {
			release := make(chan struct{})
			var entered atomic.Int64
			var ups []string
			for range 2 {
				up := upstream(t, proto == config.ProtocolHTTP2, func(w http.ResponseWriter, r *http.Request) {
					entered.Add(1)
					w.Header().Set("X-Proto", r.Proto)
					select {
					case <-release:
					case <-r.Context().Done():
					}
				})
				ups = append(ups, addr(up))
			}
			cl := config.Cluster{Endpoints: eps(ups...), Protocol: proto, LBPolicy: config.LBRoundRobin,
				Limits: breaker.LimitsConfig{MaxConnections: 1}}
			h := startProxy(t, simpleConfig(cl))
			t.Cleanup(func() { close(release) })

			res := send(h, 2)
			// Upstream, not only admitted: both calls count towards
			// max_requests before either has asked for a connection.
			eventually(t, 5*time.Second, "both calls upstream", func() bool { return entered.Load() == 2 })
			if in := limitsInUse(h); in[breaker.LimitConnections] != 2 || in[breaker.LimitPendingRequests] != 0 {
				t.Fatalf("%d connections counted and %d calls waiting, want one per endpoint and none", in[breaker.LimitConnections], in[breaker.LimitPendingRequests])
			}
			release <- struct{}{}
			release <- struct{}{}
			for range 2 {
				if r := <-res; r[0] != "200 OK" {
					t.Fatalf("a call: %v, want 200", r)
				}
			}
			snap := h.p.snap.Load().clusters["svc"].res.limits.Snapshot()
			if snap.Overflows[breaker.LimitConnections] == 0 {
				t.Error("the connection over the limit is not counted an overflow")
			}
		})
	}
}

// A call waiting at max_connections waits no longer than its route
// timeout (504), and gives its max_pending_requests slot back. The call
// it waits behind has a route of its own whose timeout outlasts the
// test: with one timeout for both, a waiting call that came in after
// the held one had timed out (300 ms after it began, on a loaded
// machine) took the connection that call left and never waited.
func TestMaxConnectionsWaitEndsWithTheRouteTimeout(t *testing.T) {
	up := newHeldUpstream(t)
	h := startProxy(t, heldAndShortRoutes(up.addr, config.Cluster{}))
	up.unblockOnCleanup(t)

	held := getStatus(h, "/held")
	eventually(t, 5*time.Second, "a call upstream", func() bool { return up.entered.Load() == 1 })
	if code := <-getStatus(h, "/"); code != http.StatusGatewayTimeout {
		t.Fatalf("the waiting call: %d, want 504", code)
	}
	// It never reached the endpoint, and met max_connections: its wait
	// for the held call's connection is what ran out.
	if n := up.entered.Load(); n != 1 {
		t.Fatalf("%d calls reached the upstream, want the held one", n)
	}
	if n := h.p.snap.Load().clusters["svc"].res.limits.Snapshot().Overflows[breaker.LimitConnections]; n == 0 {
		t.Fatal("the waiting call met no max_connections overflow")
	}
	eventually(t, 5*time.Second, "nothing pending", func() bool {
		return limitsInUse(h)[breaker.LimitPendingRequests] == 0
	})
	up.release <- struct{}{}
	if code := <-held; code != http.StatusOK {
		t.Fatalf("the held call: %d, want 200", code)
	}
}

// heldAndShortRoutes routes /held to cluster svc (cl, with endpoint ep and
// max_connections 1) under a route timeout the tests outlast, and
// everything else to it under a 1 s route timeout. A second, not less:
// the timeout runs from the call's start, and one that passes before
// the call has asked for a connection (a loaded machine can hold it up
// that long) ends it before it waits, as a timeout of the endpoint's
// that meets no max_connections overflow.
func heldAndShortRoutes(ep string, cl config.Cluster) *config.Config {
	cl.Endpoints = eps(ep)
	cl.Limits.MaxConnections = 1
	return &config.Config{
		Clusters: map[string]config.Cluster{"svc": cl},
		Routes: []config.Route{
			{Name: "held", Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/held"}}, Cluster: "svc", Timeout: 10 * time.Second},
			{Name: "short", Cluster: "svc", Timeout: time.Second},
		},
	}
}

// getStatus GETs path through h and returns a channel that gets the
// response's status (0 for a transport error).
func getStatus(h *harness, path string) <-chan int {
	out := make(chan int, 1)
	go func() {
		resp, err := h.h1.Get(h.url(path))
		if err != nil {
			out <- 0
			return
		}
		resp.Body.Close()
		out <- resp.StatusCode
	}()
	return out
}

// A call waiting at max_connections is served when the connection it
// waits for closes instead of coming back (the upstream closed it): it
// dials in the place the closed one left.
func TestMaxConnectionsWaiterDialsWhenTheConnectionCloses(t *testing.T) {
	up := newHeldUpstream(t)
	cl := config.Cluster{Endpoints: eps(up.addr), Limits: breaker.LimitsConfig{MaxConnections: 1}}
	up.closing.Store(true) // its answers close their connections
	h := startProxy(t, simpleConfig(cl))
	up.unblockOnCleanup(t)

	oneAtATime(t, h, up, 3)
	// (The upstream may see the next connection before it has seen the
	// last one closed: its count of connections open at once is not the
	// proxy's.)
	if n := up.accepted.Load(); n != 3 {
		t.Fatalf("%d connections made, want one per call", n)
	}
}

// A call whose wait at max_connections runs out never reached its
// endpoint: it is answered 504 but counted neither by the breaker nor by
// the outlier detector, as Envoy's router tells outlier detection
// nothing of a request still pending in the pool. Three waits that run
// out behind a held call leave a breaker that trips after three
// failures in a row closed, with no failure. (The three are not looked
// for waiting all at once: each waits its route timeout from its own
// start, and on a loaded machine the first could be over before the
// last began.)
func TestMaxConnectionsWaitRunningOutIsNotTheEndpointsFailure(t *testing.T) {
	up := newHeldUpstream(t)
	h := startProxy(t, heldAndShortRoutes(up.addr, config.Cluster{CircuitBreaker: tripsAfter(3)}))
	up.unblockOnCleanup(t)

	held := getStatus(h, "/held")
	eventually(t, 5*time.Second, "a call upstream", func() bool { return up.entered.Load() == 1 })
	var waiting []<-chan int
	for range 3 {
		waiting = append(waiting, getStatus(h, "/"))
	}
	for _, ch := range waiting {
		if code := <-ch; code != http.StatusGatewayTimeout {
			t.Fatalf("a waiting call: %d, want 504", code)
		}
	}
	if n := up.entered.Load(); n != 1 {
		t.Fatalf("%d calls reached the upstream, want the held one", n)
	}
	if n := h.p.snap.Load().clusters["svc"].res.limits.Snapshot().Overflows[breaker.LimitConnections]; n < 3 {
		t.Fatalf("%d max_connections overflows, want one for each waiting call", n)
	}
	if s := svcBreaker(h); s.State != breaker.StateClosed || s.Failures != 0 {
		t.Fatalf("breaker %v with %d failures, want closed with none", s.State, s.Failures)
	}
	up.release <- struct{}{}
	if code := <-held; code != http.StatusOK {
		t.Fatalf("the held call: %d, want 200", code)
	}
	if n := up.entered.Load(); n != 1 {
		t.Fatalf("%d calls reached the upstream, want the held one", n)
	}
}

// A reload that raises max_connections applies to the HTTP/1.1 calls
// waiting at the old limit at once, as Envoy's circuit breakers do: the
// calls waiting behind a held one dial connections of their own under
// the new limit, without waiting for it to end.
func TestMaxConnectionsRaisedByAReloadServesTheCallsWaiting(t *testing.T) {
	up := newHeldUpstream(t)
	cl := config.Cluster{Endpoints: eps(up.addr), Limits: breaker.LimitsConfig{MaxConnections: 1}}
	h := startProxy(t, simpleConfig(cl))
	up.unblockOnCleanup(t)

	res := send(h, 3)
	eventually(t, 5*time.Second, "a call upstream, two waiting", func() bool {
		return up.entered.Load() == 1 && limitsInUse(h)[breaker.LimitPendingRequests] == 2
	})
	cl.Limits.MaxConnections = 3
	if err := h.p.Apply(simpleConfig(cl)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the waiting calls upstream", func() bool { return up.entered.Load() == 3 })
	if n := limitsInUse(h)[breaker.LimitConnections]; n != 3 {
		t.Fatalf("%d connections, want 3", n)
	}
	for range 3 {
		up.release <- struct{}{}
	}
	for range 3 {
		if r := <-res; r[0] != "200 OK" {
			t.Fatalf("a call: %v, want 200", r)
		}
	}
}
