package proxy

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outrigger-mesh/outrigger/breaker"
	"github.com/outrigger-mesh/outrigger/proxy/config"
	"github.com/outrigger-mesh/outrigger/proxy/h1client"
	"github.com/outrigger-mesh/outrigger/proxy/h2client"
	"github.com/outrigger-mesh/outrigger/proxy/internal/roundtrip"
	"github.com/outrigger-mesh/outrigger/proxy/internal/sockio"
	"github.com/outrigger-mesh/outrigger/proxy/lb"
)

// upstreamProtocol is how the proxy talks to a cluster's endpoints.
type upstreamProtocol uint8

const (
	protoHTTP1 upstreamProtocol = iota // HTTP/1.1 with keep-alive
	protoH2C                           // HTTP/2 over cleartext, prior knowledge
	protoH2TLS                         // HTTP/2 over TLS, negotiated by ALPN
)

func (p upstreamProtocol) String() string {
	switch p {
	case protoH2C:
		return "h2c"
	case protoH2TLS:
		return "h2"
	}
	return "http1"
}

// transportKey identifies the settings a connection pool depends on. A
// reload that keeps a cluster's key keeps its pool (and warm connections).
type transportKey struct {
	cluster         string
	protocol        upstreamProtocol
	connectTimeout  time.Duration
	idleTimeout     time.Duration
	maxIdlePerHost  int
	maxConnsPerHost int
	maxRequests     int           // pool.max_requests_per_connection
	maxAge          time.Duration // pool.max_connection_duration
	tls             config.TLS
	// tlsFiles is tls.FilesSum() when the key was made: a file rewritten
	// in place (a rotated certificate) makes a new pool.
	tlsFiles [sha256.Size]byte
}

// pool is a cluster's connection pool: one RoundTripper whose idle
// connections are keyed by endpoint address. It outlives snapshots while
// its cluster's transportKey stays the same.
type pool struct {
	key transportKey
	rt  http.RoundTripper
	// closeIdle closes the pool's idle connections.
	closeIdle func()
	// retain is the transport's Retain: it keeps pooling the
	// connections to the hosts its argument reports true for, and
	// closes the others once idle (see retainEndpoints).
	retain func(keep func(addr string) bool)
	// retryOverflowed is the transport's RetryOverflowed: the calls
	// waiting at max_connections dial again (see setLimits).
	retryOverflowed func()

	// users counts snapshots referencing the pool plus requests in flight;
	// when it reaches zero after retirement the idle conns are closed.
	users   atomic.Int64
	retired atomic.Bool

	// limits is the cluster's resource limits (max_connections is
	// enforced at dial time); set at Apply, shared with the resilience.
	// A connection releases its count through the Limits it was dialled
	// under, which shares its counts with the ones reloads put here
	// since (breaker.Limits.Reconfigure).
	limits atomic.Pointer[breaker.Limits]

	// conns maps an endpoint address to the
	// outrigger_proxy_upstream_connections series a connection dialled
	// to it counts on, bound when the snapshot was compiled (see
	// bindConns). A dial never looks the series up by name: a request
	// still running on a snapshot a reload replaced would create again
	// the series of an endpoint or cluster the reload removed. An address
	// the map lacks counts on nothing.
	conns atomic.Pointer[map[string]prometheus.Gauge]
}

// connectError marks a failure to establish a connection to an endpoint,
// so that the forwarder can tell "connect failure" from "reset".
type connectError struct {
	addr string
	err  error
	// tls: the TLS handshake failed (or chose no h2), after the TCP
	// connection was made.
	tls bool
}

func (e *connectError) Error() string { return fmt.Sprintf("connect to %s: %v", e.addr, e.err) }
func (e *connectError) Unwrap() error { return e.err }

// isConnectionsOverflow reports whether err is the cluster's
// max_connections refusing a dial.
func isConnectionsOverflow(err error) bool {
	var le *breaker.LimitError
	return errors.As(err, &le) && le.Limit == breaker.LimitConnections
}

func newPool(key transportKey, tc *tls.Config) *pool {
	p := &pool{key: key}
	// The TLS sessions of the pool's connections, for resumption; nil
	// without TLS or with disable_session_resumption.
	var sessions func(addr string) tls.ClientSessionCache
	if tc != nil && !key.tls.DisableSessionResumption {
		sessions = new(tlsSessions).forAddr
	}
	dialer := &net.Dialer{Timeout: key.connectTimeout, KeepAlive: 30 * time.Second}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		lim := p.limits.Load()
		if lim != nil {
			if err := lim.Acquire(breaker.LimitConnections); err != nil {
				if !roundtrip.FirstConn(ctx) {
					return nil, err
				}
				// The endpoint has no connection: it gets one whatever
				// the limit (as Envoy's pools), else its calls could
				// neither be sent nor queued.
				lim.AcquireOver(breaker.LimitConnections)
			}
		}
		c, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			if lim != nil {
				lim.Release(breaker.LimitConnections)
			}
			return nil, &connectError{addr: addr, err: err}
		}
		var g prometheus.Gauge
		if m := p.conns.Load(); m != nil {
			g = (*m)[addr]
		}
		if g != nil {
			g.Inc()
		}
		cc := &countedConn{Conn: sockio.Wrap(c), gauge: g, limits: lim}
		cc.input, _ = cc.Conn.(h1client.InputPender)
		return cc, nil
	}
	idle := key.idleTimeout
	if idle == 0 {
		idle = 90 * time.Second
	}
	switch key.protocol {
	case protoH2C, protoH2TLS:
		// h2client writes the frames of many streams in one system call
		// and adds no compression: upstream gRPC relies on trailers and
		// on the proxy passing compressed bodies through untouched.
		h2dial := dial
		if key.protocol == protoH2TLS {
			tc = tc.Clone()
			tc.NextProtos = []string{"h2"}
			h2dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
				// connect_timeout bounds the TCP connect and the
				// handshake together, as the HTTP/1.1 pool's
				// ConnectTimeout does.
				if key.connectTimeout > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, key.connectTimeout)
					defer cancel()
				}
				raw, err := dial(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				c := tc.Clone()
				if c.ServerName == "" {
					host, _, _ := net.SplitHostPort(addr)
					c.ServerName = host
				}
				if sessions != nil {
					c.ClientSessionCache = sessions(addr)
				}
				tc := tls.Client(raw, c)
				if err := tc.HandshakeContext(ctx); err != nil {
					raw.Close()
					return nil, &connectError{addr: addr, err: err, tls: true}
				}
				if tc.ConnectionState().NegotiatedProtocol != "h2" {
					tc.Close()
					return nil, &connectError{addr: addr, err: errors.New("server did not negotiate h2 via ALPN"), tls: true}
				}
				return tc, nil
			}
		}
		t := &h2client.Transport{
			Dial:        h2dial,
			IdleTimeout: idle,
			// A dead HTTP/2 connection must be noticed: ping after 30s of
			// silence, give up 15s later. While the silence lasts, pings
			// are MinPingInterval (5 minutes) apart, which gRPC servers'
			// keepalive enforcement allows.
			ReadIdleTimeout:   30 * time.Second,
			PingTimeout:       15 * time.Second,
			MaxStreamsPerConn: key.maxRequests,
			MaxConnAge:        key.maxAge,
			// At the cluster's max_connections, with every stream of
			// the endpoint's connections taken, a request waits for
			// one, as in Envoy's pools.
			DialOverflow: isConnectionsOverflow,
			// A body announced with "Expect: 100-continue" waits for
			// the upstream's 100 (or its refusal) this long, as HTTP/1.1
			// clusters' do.
			ExpectContinueTimeout: time.Second,
		}
		p.rt = t
		p.closeIdle = t.CloseIdleConnections
		p.retain = t.Retain
		p.retryOverflowed = t.RetryOverflowed
	default:
		// HTTP/1.1 (and HTTP/1.1 over TLS): h1client does each exchange
		// on the forwarding goroutine, without http.Transport's
		// read/write goroutines and their hand-offs per request. It
		// never uses HTTP_PROXY and never adds compression.
		t := &h1client.Transport{
			Dial:            dial,
			TLSClientConfig: tc,
			TLSSessionCache: sessions,
			ConnectTimeout:  key.connectTimeout,
			MaxConnsPerHost: key.maxConnsPerHost,
			// At the cluster's max_connections a request waits for one
			// of its endpoint's connections, as in Envoy's pools.
			DialOverflow:       isConnectionsOverflow,
			MaxIdlePerHost:     key.maxIdlePerHost,
			IdleTimeout:        idle,
			MaxRequestsPerConn: key.maxRequests,
			MaxConnAge:         key.maxAge,
			// The proxy's own timeouts (route, per-try) bound the wait
			// for headers; the transport adds none.
			ExpectContinueTimeout: time.Second,
		}
		p.rt = t
		p.closeIdle = t.CloseIdleConnections
		p.retain = t.Retain
		p.retryOverflowed = t.RetryOverflowed
	}
	return p
}

// setLimits makes lim the limits the pool's dials are held to. A
// max_connections raised above the one before applies to the calls
// waiting at it at once, as Envoy's circuit breakers apply new limits:
// they dial again, instead of waiting for a stream or connection of
// their endpoint to end, which a long call may put off beyond their
// deadlines. Caller holds Proxy.applyMu.
func (p *pool) setLimits(lim *breaker.Limits) {
	prev := p.limits.Swap(lim)
	if prev != nil && prev.Snapshot().Max[breaker.LimitConnections] < lim.Snapshot().Max[breaker.LimitConnections] {
		p.retryOverflowed()
	}
}

// retainEndpoints keeps the pool's connections to c's endpoints and
// lets those to any other address go: idle ones close at once, those in
// use when their requests (of an earlier snapshot) end, as Envoy drains
// the connection pools of a host removed from a cluster. Kept idle
// until the pool's idle timeout, they held max_connections slots that
// the cluster's endpoints then could not dial in. Caller holds
// Proxy.applyMu, after c's snapshot is published.
func (p *pool) retainEndpoints(c *cluster) {
	live := make(map[string]struct{}, len(c.endpoints))
	for _, e := range c.endpoints {
		live[e.addr] = struct{}{}
	}
	p.retain(func(addr string) bool {
		_, ok := live[addr]
		return ok
	})
}

// bindConns makes the series of c's endpoints the ones the pool's dials
// count on, keeping those of the addresses c lacks: until the reload
// applying c has decided which series of removed endpoints stay (see
// pruneConns), a dial to one still counts where it did. Caller holds
// Proxy.applyMu, before c's snapshot is published.
func (p *pool) bindConns(c *cluster) {
	m := make(map[string]prometheus.Gauge, len(c.endpoints))
	if old := p.conns.Load(); old != nil {
		for a, g := range *old {
			m[a] = g
		}
	}
	for _, e := range c.endpoints {
		m[e.addr] = e.conns
	}
	p.conns.Store(&m)
}

// pruneConns drops the series of the addresses keep refuses: those of
// endpoints removed whose series the reload deleted. A connection a
// request of an older snapshot dials to one afterwards counts on none;
// should a later reload add the endpoint back while the pool still holds
// it idle, the new series does not count it. Caller holds
// Proxy.applyMu.
func (p *pool) pruneConns(keep func(addr string) bool) {
	old := p.conns.Load()
	if old == nil {
		return
	}
	m := make(map[string]prometheus.Gauge, len(*old))
	for a, g := range *old {
		if keep(a) {
			m[a] = g
		}
	}
	p.conns.Store(&m)
}

// release drops one user; the last user of a retired pool closes it.
func (p *pool) release() {
	if p.users.Add(-1) == 0 && p.retired.Load() {
		p.closeIdle()
	}
}

// countedConn decrements its gauge exactly once on Close: the one its
// dial incremented, whatever a reload bound since.
type countedConn struct {
	net.Conn
	input  h1client.InputPender // Conn's, when it has one
	gauge  prometheus.Gauge     // nil: the connection counts on none
	limits *breaker.Limits      // released on close, when max_connections was taken
	closed atomic.Bool
}

// SyscallConn exposes the socket, through which h1client checks that a
// long-idle connection was not closed by the server before reusing it.
func (c *countedConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}

// InputPending passes on the socket's answer (sockio.Conn.InputPending),
// with which h1client finds bytes an upstream sent on a connection while
// it was idle; true (so h1client looks at the socket) when the socket
// cannot tell.
func (c *countedConn) InputPending() bool {
	if c.input != nil {
		return c.input.InputPending()
	}
	return true
}

// CloseWrite ends the sending direction alone (TCP half-close), for a
// tunnel that passes a peer's end on (see relay).
func (c *countedConn) CloseWrite() error {
	if cw, ok := c.Conn.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

func (c *countedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		if c.gauge != nil {
			c.gauge.Dec()
		}
		if c.limits != nil {
			c.limits.Release(breaker.LimitConnections)
		}
	}
	return c.Conn.Close()
}

// endpoint is one member of a cluster.
type endpoint struct {
	addr string
	// authority is the Host auto_host_rewrite sends it (see
	// endpointAuthority).
	authority string
	zone      string // as configured; empty: unknown
	idx       int    // index in the cluster, as the outlier detector numbers it
	// active counts the requests in flight. The same endpoint (cluster
	// and address) of every snapshot shares it (see carryState), so that
	// least_request and /clusters count the requests still running on
	// an earlier snapshot.
	active *atomic.Int64
	// conns is the endpoint's outrigger_proxy_upstream_connections
	// series, bound at compile (see pool.bindConns).
	conns prometheus.Gauge
}

// cluster is the compiled, immutable view of one upstream cluster inside a
// snapshot. Mutable run-time state lives in atomics (endpoint counters) or
// in objects shared across snapshots (pool, resilience).
type cluster struct {
	name      string
	endpoints []*endpoint
	picker    lb.Picker
	// zone is the cluster's levels when zone_aware is enabled, else nil.
	// It sits by picker, on the cache line every pick reads.
	zone     *zoneAware
	pool     *pool
	res      *resilience
	scheme   string // "http" or "https"
	protocol upstreamProtocol
	lbPolicy string
	// slots maps the balancer's positions to endpoint indexes when
	// endpoint weights differ: each endpoint appears weight/gcd times,
	// interleaved (see weightSlots). nil means one position per endpoint.
	slots []int
	// weights holds each endpoint's number of positions in slots, its
	// weight as the balancer sees it; nil when slots is.
	weights []int64

	active *atomic.Int64 // requests in flight, shared as endpoint.active is
	m      clusterMetrics
}

// attemptSet implements lb.Candidates for one attempt: endpoints that
// outlier detection ejected, that fail their active health check, or that
// this request already tried, are not eligible.
type attemptSet struct {
	c *cluster
	// tried marks the endpoints the request tried once it has tried two;
	// until then first is the one it tried, plus one (0: none), which
	// spares a request that makes one attempt the slice.
	tried []bool
	now   time.Time
	// ignoreEjection is the panic rule: when too few endpoints remain
	// (neither ejected nor failing their health check), balance over all
	// of them rather than overload the rest.
	ignoreEjection bool
	// level is the level of a zone-aware cluster that levelSet, the
	// same memory, shows the picker (see zoneAware.pick).
	level uint8
	first int32
}

func (s *attemptSet) Len() int {
	if s.c.slots != nil {
		return len(s.c.slots)
	}
	return len(s.c.endpoints)
}

func (s *attemptSet) index(i int) int {
	if s.c.slots != nil {
		return s.c.slots[i]
	}
	return i
}

func (s *attemptSet) Eligible(i int) bool {
	i = s.index(i)
	if s.tried != nil && s.tried[i] || int(s.first) == i+1 {
		return false
	}
	return s.ignoreEjection || s.c.res.eligible(i, s.now)
}
func (s *attemptSet) Active(i int) int64 { return s.c.endpoints[s.index(i)].active.Load() }

func (s *attemptSet) Weight(i int) int64 {
	if s.c.weights == nil {
		return 1
	}
	return s.c.weights[s.index(i)]
}

var _ lb.Candidates = (*attemptSet)(nil)

// hashKey is a request's hash key for a maglev cluster (see
// route.hashKey); ok false: the request has none. It is passed to each
// pick rather than kept in attemptSet, which would take forwarding out
// of its size class.
type hashKey struct {
	v  uint64
	ok bool
}

// pick chooses an endpoint for the next attempt, preferring endpoints this
// request has not tried; when all were tried it falls back to any eligible.
// A maglev cluster picks by key when the request has one.
func (c *cluster) pick(s *attemptSet, now time.Time, key hashKey) *endpoint {
	if len(c.endpoints) == 0 {
		return nil
	}
	s.now = now
	if c.zone == nil {
		s.ignoreEjection = c.res.panic(now)
	} else {
		e, whole := c.zone.pick(c, s)
		if !whole {
			return e
		}
		// Every level in panic: balance over every endpoint.
		s.ignoreEjection = true
	}
	if i := c.pickOne(s, key); i >= 0 {
		return c.endpoints[s.index(i)]
	}
	if s.tried != nil || s.first != 0 {
		saved, savedFirst := s.tried, s.first
		s.tried, s.first = nil, 0
		i := c.pickOne(s, key)
		s.tried, s.first = saved, savedFirst
		if i >= 0 {
			return c.endpoints[s.index(i)]
		}
	}
	return nil
}

// pickOne is c's picker's choice among s: by key for a maglev
// cluster, when the request has one.
func (c *cluster) pickOne(s *attemptSet, key hashKey) int {
	if key.ok {
		if m, ok := c.picker.(*lb.Maglev); ok {
			return m.PickKey(s, key.v)
		}
	}
	return c.picker.Pick(s)
}

// panic reports whether some of c's picks at now ignore the endpoints'
// health: the cluster's panic mode, or for a zone-aware cluster a
// level's (see levelSplit).
func (c *cluster) panic(now time.Time) bool {
	if c.zone == nil {
		return c.res.panic(now)
	}
	sp := c.zone.split(c.res, now)
	return sp.whole || sp.panic[0] || sp.panic[1]
}

// slotCounts is how many of slots (balancer positions, see weightSlots)
// each of n endpoints holds: its weight as the balancer sees it.
func slotCounts(slots []int, n int) []int64 {
	w := make([]int64, n)
	for _, i := range slots {
		w[i]++
	}
	return w
}

// maxSlots bounds the balancer positions weights expand to.
const maxSlots = 4096

// weightSlots returns the balancer positions for endpoint weights (0 means
// 1), or nil when all weights are equal. Weights are divided by their gcd
// and, if their sum still exceeds maxSlots, scaled down (keeping each at
// least 1). Positions are interleaved by smooth weighted round robin (as
// nginx does), so round robin over them does not send bursts to one
// endpoint.
func weightSlots(weights []uint32) []int {
	if len(weights) == 0 {
		return nil
	}
	w := make([]int, len(weights))
	equal := true
	for i, x := range weights {
		w[i] = max(int(x), 1)
		if w[i] != w[0] {
			equal = false
		}
	}
	if equal {
		return nil
	}
	g := w[0]
	for _, x := range w[1:] {
		for b := x; b != 0; {
			g, b = b, g%b
		}
	}
	total := 0
	for i := range w {
		w[i] /= g
		total += w[i]
	}
	if total > maxSlots {
		scaled := 0
		for i := range w {
			w[i] = max(w[i]*maxSlots/total, 1)
			scaled += w[i]
		}
		total = scaled
	}
	slots := make([]int, 0, total)
	cur := make([]int, len(w))
	for range total {
		best := 0
		for i := range w {
			cur[i] += w[i]
			if cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= total
		slots = append(slots, best)
	}
	return slots
}

func (c *cluster) markTried(s *attemptSet, e *endpoint) {
	if s.tried == nil {
		if s.first == 0 {
			s.first = int32(e.idx) + 1
			return
		}
		s.tried = make([]bool, len(c.endpoints))
		s.tried[s.first-1] = true
	}
	s.tried[e.idx] = true
}

// carryState gives c, new in a snapshot being compiled, the run-time
// state of prev, the cluster of the same name serving now (nil: none),
// which its requests in flight go on updating: the counts of requests in
// flight, the cluster's and each endpoint's that stays (by address, in
// order when an address is listed more than once), and, for the same
// load-balancing policy other than maglev, the balancer itself, so that
// round robin goes on from its turn instead of starting every reload at
// the first endpoint (every sidecar in step), and a zone-aware cluster's
// level balancers and draws. A fresh counter starts at zero.
func (c *cluster) carryState(prev *cluster) {
	if prev == nil {
		c.active = new(atomic.Int64)
		for _, e := range c.endpoints {
			e.active = new(atomic.Int64)
		}
		return
	}
	c.active = prev.active
	// A Maglev table belongs to its endpoint list: compileCluster gave
	// c the one of its own list, prev's when the list is prev's (see
	// Maglev.Same).
	if prev.lbPolicy == c.lbPolicy && c.lbPolicy != string(config.LBMaglev) {
		c.picker = prev.picker
	}
	if c.zone != nil {
		c.zone.carryState(prev.zone, prev.lbPolicy == c.lbPolicy)
	}
	kept := make(map[string][]*atomic.Int64, len(prev.endpoints))
	for _, e := range prev.endpoints {
		kept[e.addr] = append(kept[e.addr], e.active)
	}
	for _, e := range c.endpoints {
		if k := kept[e.addr]; len(k) > 0 {
			e.active, kept[e.addr] = k[0], k[1:]
		} else {
			e.active = new(atomic.Int64)
		}
	}
}
