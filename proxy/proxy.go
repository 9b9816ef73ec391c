package proxy

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/outrigger-mesh/outrigger/breaker"
	"github.com/outrigger-mesh/outrigger/proxy/config"
	"github.com/outrigger-mesh/outrigger/proxy/h1server"
	"github.com/outrigger-mesh/outrigger/proxy/h2server"
)

// Options are the proxy's dependencies. Every field is optional.
type Options struct {
	// Logger receives config and lifecycle events. Nil means no logs.
	Logger *zap.Logger
	// Registry receives the proxy's metrics. Nil means a private registry
	// (metrics are kept but not exposed).
	Registry *prometheus.Registry
	// Now is the clock for durations in metrics. Nil means time.Now.
	Now func() time.Time
	// Int63n returns a uniform value in [0, n); it draws retry back-off
	// jitter and weighted-cluster choices. Nil means math/rand/v2.Int64N.
	Int63n func(n int64) int64
	// RoundRobinStart returns the first turn of a round_robin cluster the
	// proxy builds (taken modulo its endpoint count). Nil means a random
	// one, so that sidecars started together do not all send their first
	// requests to a cluster's first endpoint.
	RoundRobinStart func() uint64
	// Wrap, when set, wraps the handler Serve serves for each listener
	// (an access log, say). Nil serves Handler(l) as it is.
	Wrap func(l Listener, h http.Handler) http.Handler
	// Refused, when set, is told of each request Serve's server on
	// listener l answered itself before the handler (and so Wrap's
	// handler) ran: a malformed HTTP/1.1 request (400, 431, 501 and the
	// like, the connection closed after it) or HTTP/2 stream (reset
	// PROTOCOL_ERROR, or 431). It is called on the connection's
	// goroutine, once per such request, after the proxy has counted it
	// (see Serve), and must not block.
	Refused func(l Listener, r h1server.Refusal)
	// DefaultMaxConnections is the cap on each listener's open downstream
	// connections when its max_connections is 0 (the command passes a
	// quarter of the process's open-file limit). Zero means no cap.
	DefaultMaxConnections int
	// NoHealthChecks builds the clusters' health checkers (so Apply still
	// checks every health_check block) but never starts one: no probe
	// leaves a proxy that only validates a configuration.
	NoHealthChecks bool
}

// Proxy forwards requests by the routes and clusters of the last applied
// configuration. It is safe for concurrent use.
type Proxy struct {
	log    *zap.Logger
	reg    prometheus.Registerer
	m      *metrics
	bm     *breakerMetrics
	hm     *healthMetrics
	now    func() time.Time
	int63n func(int64) int64
	// rrStart is Options.RoundRobinStart, rand.Uint64 when nil.
	rrStart func() uint64
	wrap    func(Listener, http.Handler) http.Handler
	// onRefused is Options.Refused.
	onRefused func(Listener, h1server.Refusal)

	// beforeHookSeries, when set, is called by a cluster's breaker and
	// detector hooks just before they write its series; tests use it to
	// hold a hook there while a reload removes the cluster. Set before
	// any hook can run.
	beforeHookSeries func(cluster string)

	// wallClock: now is time.Now, so its readings can also serve as
	// real time (deadlines), sparing a clock read.
	wallClock bool

	snap     atomic.Pointer[snapshot]
	inflight atomic.Int64

	// mirrors runs the routes' mirrored requests; Shutdown stops it
	// once the requests in flight are done.
	mirrors *mirrorRunner

	// gates cap each listener's downstream connections, across the
	// servers Serve runs for it; Apply sets their caps.
	gates [numListeners]*connGate
	// defaultMaxConns is Options.DefaultMaxConnections.
	defaultMaxConns int64

	applyMu sync.Mutex
	// tlsDigest is the serving config's TLSFilesDigest, read as the
	// Apply that made it began.
	tlsDigest atomic.Pointer[[sha256.Size]byte]
	// pools are the connection pools of the serving snapshot, by key;
	// guarded by applyMu.
	pools map[transportKey]*pool
	// res are the clusters' breakers, limits and detectors, by cluster
	// name; guarded by applyMu.
	res map[string]*resilience
	gen atomic.Uint64
	// hcPending are the health checkers the running compile built, to be
	// started with its snapshot (or closed if it fails); hcStopped is set
	// by Shutdown (or from the start by Options.NoHealthChecks), after
	// which none starts. Both guarded by applyMu.
	hcPending []*pendingHealth
	hcStopped bool
	// heldFaults are the counts of the requests held by the delays of
	// faults a reload removed, by route, kept while they hold any: a
	// reload that adds the route's fault back counts on from them (see
	// compileFault). Guarded by applyMu.
	heldFaults map[routeKey]*atomic.Int64

	// The outlier evaluator goroutine: started by the first Handler call
	// (Serve calls Handler), stopped and joined by Shutdown.
	evalOnce sync.Once
	evalStop chan struct{}
	evalDone chan struct{}
	applied  chan struct{} // wakes the evaluator after Apply

	srvMu sync.Mutex
	// servers are what Serve runs, by listener, and the listeners being
	// retired until their drain ends (so that Shutdown ends it too);
	// guarded by srvMu.
	servers  map[net.Listener]*served
	shutdown bool
	// noKeepAlive: SetKeepAlivesEnabled(l, false); guarded by srvMu.
	noKeepAlive [numListeners]bool
}

// served is the server Serve runs on one listener.
type served struct {
	// srv is nil for a listener retired before its Serve registered it:
	// that Serve returns at once.
	srv *h1server.Server
	// l is the listener the server serves (Shutdown drains the inbound
	// ones first).
	l Listener
	// retiring is set by Retire; guarded by Proxy.srvMu. Serve then leaves
	// the entry to Retire, which removes it when the drain ends.
	retiring bool
	// cancel ends the base context, and with it the requests on the
	// server's hijacked connections (protocol switches).
	cancel context.CancelFunc
	// inflight counts the server's requests in flight, those of
	// hijacked connections included: their handlers return when the
	// tunnel ends. Retire waits for it.
	inflight atomic.Int64
}

// counted counts a server's requests in flight (served.inflight).
type counted struct {
	h http.Handler
	n *atomic.Int64
}

func (c counted) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.n.Add(1)
	defer c.n.Add(-1)
	c.h.ServeHTTP(w, r)
}

// New returns a Proxy with no configuration: until Apply succeeds every
// request is answered 404 no_route.
func New(opts Options) *Proxy {
	p := &Proxy{
		log:       opts.Logger,
		now:       opts.Now,
		int63n:    opts.Int63n,
		rrStart:   opts.RoundRobinStart,
		wrap:      opts.Wrap,
		onRefused: opts.Refused,
		pools:     map[transportKey]*pool{},
		res:       map[string]*resilience{},
		evalStop:  make(chan struct{}),
		evalDone:  make(chan struct{}),
		applied:   make(chan struct{}, 1),
		servers:   map[net.Listener]*served{},
		mirrors:   newMirrorRunner(),
	}
	if p.log == nil {
		p.log = zap.NewNop()
	}
	if p.now == nil {
		p.now = time.Now
		p.wallClock = true
	}
	if p.int63n == nil {
		p.int63n = rand.Int64N
	}
	if p.rrStart == nil {
		p.rrStart = rand.Uint64
	}
	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	p.reg = reg
	p.m = newMetrics(reg)
	p.bm = newBreakerMetrics(reg)
	reg.MustRegister(scrapeCollector{p})
	p.hm = newHealthMetrics(reg)
	p.hcStopped = opts.NoHealthChecks
	p.defaultMaxConns = int64(max(opts.DefaultMaxConnections, 0))
	for l := Listener(0); l < numListeners; l++ {
		g := &connGate{l: l, gauge: p.m.downConns.WithLabelValues(l.String()),
			overflow: p.m.downOverflow.WithLabelValues(l.String()), log: p.log.Named("http"), now: p.now}
		// Until the first Apply.
		g.max.Store(p.defaultMaxConns)
		p.gates[l] = g
	}
	return p
}

func (p *Proxy) intn(n int) int { return int(p.int63n(int64(n))) }

// Generation is the number of configurations applied so far; 0 before the
// first Apply.
func (p *Proxy) Generation() uint64 { return p.gen.Load() }

// Apply compiles cfg into a new immutable snapshot and swaps it in
// atomically. Requests in flight finish on the snapshot they started with.
// Clusters whose connection settings are unchanged keep their pools (and
// warm connections); pools no longer used close their idle connections
// once their last request ends. On error nothing changes.
func (p *Proxy) Apply(cfg *config.Config) error {
	if cfg == nil {
		return errors.New("proxy: nil config")
	}
	p.applyMu.Lock()
	defer p.applyMu.Unlock()

	// Before anything reads the files, so that a file changed while
	// this Apply reads it differs from the digest kept (see
	// TLSFilesDigest).
	tlsDigest := cfg.TLSFilesDigest()
	s, used, res, err := p.compile(cfg)
	if err != nil {
		p.m.discard()
		p.startHealth(false)
		// Clusters the failed config would have added may have created
		// breaker and health series while compiling: the build goes on
		// past a cluster with a problem, so every one of them, the
		// inbound app's (which cfg.Clusters need not list) included.
		drop := func(name string) {
			if _, ok := p.res[name]; !ok {
				p.bm.deleteCluster(name)
				p.hm.deleteCluster(name)
			}
		}
		for name := range cfg.Clusters {
			drop(name)
		}
		if cfg.Listeners.Inbound.App != "" {
			drop(config.InboundAppCluster)
		}
		return err
	}
	for _, c := range s.clusters {
		c.pool.bindConns(c)
		c.pool.setLimits(c.res.limits)
	}
	s.gen = p.gen.Load() + 1
	old := p.pools
	p.pools = used
	for name, r := range p.res {
		if _, ok := res[name]; !ok {
			// Calls of the old snapshot may still finish: no hook of
			// the removed cluster exports anything from here on.
			r.gone.Store(true)
			p.bm.deleteCluster(name)
			p.hm.deleteCluster(name)
		}
	}
	oldRes := p.res
	p.res = res
	p.keepHeldFaults(p.snap.Swap(s), s)
	// Before the series are committed, so that those of the endpoints
	// removed whose connections this closes go with this reload.
	for _, c := range s.clusters {
		c.pool.retainEndpoints(c)
	}
	for name, r := range res {
		p.publish(name, r, oldRes[name])
	}
	// Checkers the snapshot no longer reads stop; then those it reads
	// for the first time start.
	p.retireHealth(oldRes, res)
	p.startHealth(true)
	// Connections accepted from here on get the new listener limits;
	// those open keep theirs (see Serve for the one registering now).
	p.srvMu.Lock()
	lim := s.limits.withDefaults()
	for _, sv := range p.servers {
		if sv.srv != nil {
			sv.srv.SetLimits(lim.h1(sv.l))
		}
	}
	p.srvMu.Unlock()
	for l, g := range p.gates {
		g.max.Store(s.maxConns[l])
	}
	p.gen.Store(s.gen)
	p.tlsDigest.Store(&tlsDigest)
	p.m.generation.Set(float64(s.gen))
	p.m.commit()
	for name, c := range s.clusters {
		c.pool.pruneConns(func(addr string) bool { return p.m.liveEndpoint(name, addr) })
	}

	var retired []string
	for k, pl := range old {
		if used[k] == pl {
			continue
		}
		if r := res[k.cluster]; r != nil {
			// The calls of the cluster still waiting for a connection
			// in the pool its new settings retired are held to its new
			// limits, as those of the pool that replaces it.
			pl.setLimits(r.limits)
		}
		pl.retired.Store(true)
		if pl.users.Load() == 0 {
			pl.closeIdle()
		}
		retired = append(retired, k.cluster)
	}
	select {
	case p.applied <- struct{}{}:
	default:
	}
	p.log.Info("proxy configuration applied",
		zap.Uint64("generation", s.gen),
		zap.Int("clusters", len(s.clusters)),
		zap.Int("routes", len(s.tables[Outbound].routes)+len(s.tables[Inbound].routes)),
		zap.Strings("retired_pools", retired))
	return nil
}

// ClusterStatus is one cluster as /clusters shows it.
type ClusterStatus struct {
	Name           string           `json:"name"`
	Protocol       string           `json:"protocol"`
	LBPolicy       string           `json:"lb_policy"`
	ActiveRequests int64            `json:"active_requests"`
	Endpoints      []EndpointStatus `json:"endpoints"`
	// Panic: so few endpoints are neither ejected nor failing their
	// active health check (below outlier_detection.panic_threshold) that
	// the load balancer picks among all of them; for a zone-aware
	// cluster, that a level does so among its own (see levelSplit).
	Panic   bool                   `json:"panic"`
	Breaker BreakerStatus          `json:"breaker"`
	Limits  map[string]LimitStatus `json:"limits"`
	Outlier OutlierStatus          `json:"outlier"`
	// ZoneAware is the zone-aware balancing of a cluster with
	// zone_aware enabled; absent otherwise.
	ZoneAware *ZoneAwareStatus `json:"zone_aware,omitempty"`
}

// ZoneAwareStatus is a zone-aware cluster's split at one moment.
type ZoneAwareStatus struct {
	// Zone is node.zone, the sidecar's: the local level's zone.
	Zone string `json:"zone"`
	// LocalEndpoints and RemoteEndpoints count the endpoints of each
	// level.
	LocalEndpoints  int `json:"local_endpoints"`
	RemoteEndpoints int `json:"remote_endpoints"`
	// LocalSharePercent is the percentage of picks the local level
	// takes now: by the levels' health, or its part of the endpoints'
	// weights in panic mode.
	LocalSharePercent float64 `json:"local_share_percent"`
}

// OutlierStatus is a cluster's outlier detection at one moment. Its
// counts run from the cluster's start, across reloads.
type OutlierStatus struct {
	Ejected    int `json:"ejected"`     // endpoints ejected now
	MaxEjected int `json:"max_ejected"` // the cap max_ejection_percent puts on ejected
	// Ejections counts the ejections; Overflows the ejections the cap
	// refused (Envoy's ejections_overflow); NotEnforced the detections
	// an enforcing_* percentage left unacted on (by default every
	// consecutive_gateway_failure detection).
	Ejections   uint64 `json:"ejections"`
	Overflows   uint64 `json:"overflows"`
	NotEnforced uint64 `json:"not_enforced"`
}

// EndpointStatus is one endpoint of a cluster.
type EndpointStatus struct {
	Address string `json:"address"`
	// Zone is the endpoint's zone as configured; absent when unknown.
	Zone string `json:"zone,omitempty"`
	// State is "healthy", "ejected" (by outlier detection),
	// "unhealthy" (failing its active health check, and not ejected) or
	// "pending" (added by a reload to a checked cluster, and not yet
	// checked).
	State          string    `json:"state"`
	ActiveRequests int64     `json:"active_requests"`
	EjectedUntil   time.Time `json:"ejected_until,omitzero"`
	TimesEjected   uint64    `json:"times_ejected"`
	// HealthCheck is the active health check's view; absent without one.
	HealthCheck *HealthCheckStatus `json:"health_check,omitempty"`
}

// HealthCheckStatus is one endpoint's active health check at one moment.
type HealthCheckStatus struct {
	// Target is the address the checks dial: the endpoint's, or its
	// host with health_check.port.
	Target    string    `json:"target"`
	Healthy   bool      `json:"healthy"`
	Checked   bool      `json:"checked"` // at least one check finished
	LastCheck time.Time `json:"last_check,omitzero"`
	LastError string    `json:"last_error,omitempty"`
	Successes int       `json:"consecutive_successes"`
	Failures  int       `json:"consecutive_failures"`
}

// BreakerStatus is a cluster's circuit breaker at one moment.
type BreakerStatus struct {
	State               string    `json:"state"` // closed, open, half_open, forced_open, forced_closed
	Since               time.Time `json:"since,omitzero"`
	Reason              string    `json:"reason"`
	OpenUntil           time.Time `json:"open_until,omitzero"`
	Calls               int64     `json:"calls"`
	Failures            int64     `json:"failures"`
	FailureRate         float64   `json:"failure_rate"`
	SlowRate            float64   `json:"slow_rate"`
	ConsecutiveFailures int64     `json:"consecutive_failures"`
	TimesOpened         uint64    `json:"times_opened"`
	RejectedOpen        uint64    `json:"rejected_open"`
	RejectedProbes      uint64    `json:"rejected_probes"`
}

// LimitStatus is one resource limit of a cluster.
type LimitStatus struct {
	InUse     int64  `json:"in_use"`
	Max       int64  `json:"max"`
	Overflows uint64 `json:"overflows"`
}

// Clusters reports the serving snapshot's clusters, sorted by name.
func (p *Proxy) Clusters() []ClusterStatus {
	s := p.snap.Load()
	if s == nil {
		return nil
	}
	now := p.now()
	out := make([]ClusterStatus, 0, len(s.clusters))
	for _, c := range s.clusters {
		bs := c.res.br.Snapshot(now)
		ds := c.res.det.Snapshot(now)
		ls := c.res.limits.Snapshot()
		cs := ClusterStatus{
			Name:           c.name,
			Protocol:       c.protocol.String(),
			LBPolicy:       c.lbPolicy,
			ActiveRequests: c.active.Load(),
			Panic:          c.panic(now),
			Breaker: BreakerStatus{
				State: bs.State.String(), Since: bs.Since, Reason: bs.Reason, OpenUntil: bs.OpenUntil,
				Calls: bs.Calls, Failures: bs.Failures, FailureRate: bs.FailureRate, SlowRate: bs.SlowRate,
				ConsecutiveFailures: bs.ConsecutiveFailures, TimesOpened: bs.TimesOpened,
				RejectedOpen: bs.RejectedOpen, RejectedProbes: bs.RejectedProbes,
			},
			Limits: map[string]LimitStatus{},
			Outlier: OutlierStatus{Ejected: ds.Ejected, MaxEjected: ds.MaxEjected,
				Ejections: ds.Ejections, Overflows: ds.Refused, NotEnforced: ds.NotEnforced},
		}
		for k := breaker.Limit(0); k < breaker.NumLimits; k++ {
			cs.Limits[k.String()] = LimitStatus{InUse: ls.InUse[k], Max: ls.Max[k], Overflows: ls.Overflows[k]}
		}
		if z := c.zone; z != nil {
			cs.ZoneAware = &ZoneAwareStatus{Zone: z.zone, LocalEndpoints: z.levels[0].n, RemoteEndpoints: z.levels[1].n,
				LocalSharePercent: float64(c.localShare(now)) * 100 / shareUnit}
		}
		for i, e := range c.endpoints {
			es := EndpointStatus{Address: e.addr, Zone: e.zone, State: "healthy", ActiveRequests: e.active.Load()}
			if i < len(ds.Endpoints) {
				d := ds.Endpoints[i]
				es.TimesEjected = d.TimesEjected
				if d.Ejected {
					es.State, es.EjectedUntil = "ejected", d.EjectedUntil
				}
			}
			if hc := c.res.hc; hc != nil && i < hc.Len() {
				h := hc.Status(i)
				es.HealthCheck = &HealthCheckStatus{Target: h.Target, Healthy: h.Healthy, Checked: h.Checked, LastCheck: h.LastCheck,
					LastError: h.LastError, Successes: h.Successes, Failures: h.Failures}
				if !h.Healthy && es.State == "healthy" {
					es.State = "unhealthy"
					if !h.Checked {
						es.State = "pending"
					}
				}
			}
			cs.Endpoints = append(cs.Endpoints, es)
		}
		out = append(out, cs)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// ErrUnknownCluster is returned by SetBreaker for a cluster the serving
// configuration does not have.
var ErrUnknownCluster = errors.New("unknown cluster")

// SetBreaker applies an operator override to a cluster's breaker: "open"
// forces it open, "closed" forces it closed, "reset" clears any override
// and restarts it closed. The override survives reloads, including one
// that changes the cluster's circuit_breaker block: the new breaker is
// forced as the old one was.
func (p *Proxy) SetBreaker(cluster, action string) error {
	// Not while an Apply builds breakers: one replacing this cluster's
	// takes its override (see buildResilience).
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	s := p.snap.Load()
	if s == nil {
		return ErrUnknownCluster
	}
	c, ok := s.clusters[cluster]
	if !ok {
		return ErrUnknownCluster
	}
	now := p.now()
	switch action {
	case "open":
		c.res.br.ForceOpen(now)
	case "closed":
		c.res.br.ForceClosed(now)
	case "reset":
		c.res.br.Reset(now)
	default:
		return fmt.Errorf("unknown breaker action %q (want open, closed or reset)", action)
	}
	return nil
}

// Serve accepts connections on ln for listener l until Shutdown or
// Retire(ln), and returns http.ErrServerClosed then (at once, closing ln,
// when Shutdown or Retire(ln) was already called). Several listeners may
// serve the same l, as while a listener moves to a new address; a
// listener Serve is serving already is refused with an error.
//
// Downstream protocols: HTTP/1.1, served by h1server, and HTTP/2
// cleartext both with prior knowledge and by "Upgrade: h2c" (RFC 7540
// §3.2), which h1server hands to proxy/h2server; Shutdown sends
// those connections GOAWAY. Header size, read-header and idle timeouts
// come from the applied configuration: a connection takes those applied
// when it is accepted and keeps them (Apply changes them for the
// connections accepted after it). The listener's max_connections caps
// the connections open on all the listeners serving l together; one
// over it is closed as soon as it is accepted (see connGate), and a cap
// Apply lowers closes none of those open. A request the server answers itself,
// before the handler runs, is counted as the proxy's own answer without
// a route (downstream_protocol_error) and passed to Options.Refused.
func (p *Proxy) Serve(ln net.Listener, l Listener) error {
	// Requests on hijacked connections (protocol switches) derive their
	// context from the base context; cancelling it is how a forced
	// shutdown ends them.
	base, cancel := context.WithCancel(context.Background())
	log := p.log.Named("http")
	h := p.Handler(l)
	if p.wrap != nil {
		h = p.wrap(l, h)
	}
	sv := &served{cancel: cancel, l: l}
	srv := &h1server.Server{
		Handler:     counted{h, &sv.inflight},
		H2:          &h2server.Server{},
		BaseContext: base,
		ErrorLog:    func(msg string, err error) { log.Warn(msg, zap.Error(err)) },
		Refused:     func(r h1server.Refusal) { p.refused(l, r) },
		HandshakeFailed: func(err error) {
			p.m.downTLSFailed[l][classifyHandshake(err)].Inc()
		},
		Gate: p.gates[l],
		// The header size, read-header and idle limits: SetLimits below,
		// before Serve, under srvMu.
	}
	sv.srv = srv
	p.srvMu.Lock()
	prev := p.servers[ln]
	switch {
	case prev != nil && prev.srv == nil:
		// Retired before this Serve came (Retire closed ln).
		delete(p.servers, ln)
		p.srvMu.Unlock()
		cancel()
		return http.ErrServerClosed
	case prev != nil:
		p.srvMu.Unlock()
		cancel()
		return fmt.Errorf("proxy: %s is served already", ln.Addr())
	case p.shutdown:
		p.srvMu.Unlock()
		cancel()
		ln.Close()
		return http.ErrServerClosed
	}
	p.servers[ln] = sv
	srv.SetKeepAlivesEnabled(!p.noKeepAlive[l])
	// The limits of the snapshot serving now: an Apply that comes later
	// sets them again, since this server is registered (Apply stores its
	// snapshot before it takes srvMu).
	srv.SetLimits(p.listenerLimits().h1(l))
	p.srvMu.Unlock()
	defer func() {
		p.srvMu.Lock()
		if p.servers[ln] == sv && !sv.retiring {
			delete(p.servers, ln)
		}
		p.srvMu.Unlock()
	}()
	return srv.Serve(ln)
}

// refused counts a request the server of listener l answered itself
// before the handler ran as the proxy's own answer to a request that
// matched no route, as Envoy counts its codec errors: in
// requests_total and request_duration_seconds with route and cluster
// "" (status 0, an HTTP/2 reset, is code_class "other"), and in
// local_replies_total as downstream_protocol_error. Then it passes it
// to Options.Refused.
func (p *Proxy) refused(l Listener, r h1server.Refusal) {
	p.m.localByCode[ReasonDownstreamProtocolError].Inc()
	if s := p.snap.Load(); s != nil {
		s.noRoute[l].record(r.Status, r.Duration.Seconds())
	}
	if p.onRefused != nil {
		p.onRefused(l, r)
	}
}

// SetKeepAlivesEnabled(l, false) has the HTTP/1.1 responses of
// listener l say Connection: close, and their connections close after
// them, while l goes on accepting and serving (see
// h1server.Server.SetKeepAlivesEnabled): so that its keep-alive clients
// reconnect, and find their way elsewhere, before it stops accepting.
// It holds for the servers Serve starts later too; true undoes it.
func (p *Proxy) SetKeepAlivesEnabled(l Listener, v bool) {
	p.srvMu.Lock()
	defer p.srvMu.Unlock()
	p.noKeepAlive[l] = !v
	for _, sv := range p.servers {
		if sv.l == l && sv.srv != nil {
			sv.srv.SetKeepAlivesEnabled(v)
		}
	}
}

// listenerLimits are the serving snapshot's listener limits, defaults
// filled in.
func (p *Proxy) listenerLimits() listenerLimits {
	lim := listenerLimits{}
	if s := p.snap.Load(); s != nil {
		lim = s.limits
	}
	return lim.withDefaults()
}

// Retire stops serving ln while the other listeners go on, as Shutdown
// stops them all: ln stops accepting at once (Serve(ln) returns
// http.ErrServerClosed), idle connections close, HTTP/2 connections are
// sent GOAWAY, and the requests in flight on ln's connections, those of
// upgraded connections included, may finish until ctx is done, or until
// Shutdown's deadline if that comes first; then what is left of them is
// closed. It returns ctx's error if the drain did not finish.
//
// A listener that Serve has not registered yet (a caller that starts
// Serve on a goroutine cannot tell when it has) is closed at once, and
// the Serve(ln) that follows returns http.ErrServerClosed without
// serving; until it comes, or until Shutdown, the Proxy keeps a mark of
// ln. Retire of a listener being retired waits for the same drain.
func (p *Proxy) Retire(ctx context.Context, ln net.Listener) error {
	return p.BeginRetire(ln)(ctx)
}

// BeginRetire is Retire in two steps, for a caller that drains on a
// goroutine of its own but must know that ln no longer accepts (a
// reload that may bind ln's address again next): ln has stopped
// accepting when BeginRetire returns, and drain, called once, is the
// rest of Retire.
func (p *Proxy) BeginRetire(ln net.Listener) (drain func(ctx context.Context) error) {
	p.srvMu.Lock()
	sv := p.servers[ln]
	switch {
	case sv == nil:
		if !p.shutdown {
			p.servers[ln] = &served{}
		}
		p.srvMu.Unlock()
		ln.Close()
		return func(context.Context) error { return nil }
	case sv.srv == nil:
		p.srvMu.Unlock()
		return func(context.Context) error { return nil }
	}
	sv.retiring = true
	p.srvMu.Unlock()
	sv.srv.StopAccepting()
	// StopAccepting closes the listeners the server accepts on; Serve may
	// have registered ln and not yet handed it to the server, which then
	// refuses it, but only once its goroutine runs.
	ln.Close()
	return func(ctx context.Context) error {
		defer func() {
			p.srvMu.Lock()
			if p.servers[ln] == sv {
				delete(p.servers, ln)
			}
			p.srvMu.Unlock()
		}()
		err := sv.srv.Shutdown(ctx)
		if err == nil {
			err = waitZero(ctx, &sv.inflight)
		}
		finishDrain(err, &sv.inflight, sv)
		return err
	}
}

// finishDrain ends the drain of servers whose outcome is err, n counting
// their requests in flight: after a drain cut short the servers are
// closed; then their base contexts are cancelled, which ends the
// requests of hijacked connections; and cancelled requests get a moment
// to unwind, so that their goroutines are gone when the drain returns.
// The moment covers the servers' own counts too, which fall after n
// when n is the proxy's: a handler Options.Wrap put around the proxy's
// has work left once the proxy's returns (an access log writes the
// line of the tunnel that just ended, into a file its caller closes
// once Shutdown returns).
func finishDrain(err error, n *atomic.Int64, servers ...*served) {
	if err != nil {
		for _, sv := range servers {
			sv.srv.Close()
		}
	}
	for _, sv := range servers {
		sv.cancel()
	}
	if err != nil {
		wctx, wcancel := context.WithTimeout(context.Background(), time.Second)
		_ = waitZero(wctx, n)
		for _, sv := range servers {
			_ = waitZero(wctx, &sv.inflight)
		}
		wcancel()
	}
}

// drainServers stops servers from accepting, all at once, and waits until
// each has finished its connections and its requests in flight, those of
// hijacked connections included, or until ctx is done. It returns ctx's
// error if the drain did not finish; it closes nothing (finishDrain does).
func drainServers(ctx context.Context, servers []*served) error {
	errs := make([]error, len(servers))
	var wg sync.WaitGroup
	for i, sv := range servers {
		wg.Go(func() {
			errs[i] = sv.srv.Shutdown(ctx)
			if errs[i] == nil {
				errs[i] = waitZero(ctx, &sv.inflight)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// Shutdown stops every Serve from accepting, lets requests in flight finish
// until ctx is done, then closes the remaining connections and the idle
// upstream connections. It returns ctx's error if the drain did not finish.
// Mirrored requests (routes[].mirror) still in flight once the requests
// are done are cancelled, not waited for, and Shutdown returns once their
// goroutines have.
//
// The inbound listeners drain first: the outbound ones go on accepting
// and serving until the inbound requests in flight (upgraded connections
// included) are done, for the local app may have to call out through
// them to answer those requests (Istio drains only Envoy's inbound
// listeners when a pod stops, for the same reason). Then the outbound
// listeners stop accepting and drain, within what is left of ctx.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.srvMu.Lock()
	p.shutdown = true
	servers := make([]*served, 0, len(p.servers))
	var inbound, outbound []*served
	for ln, sv := range p.servers {
		if sv.srv == nil {
			// A mark for a Serve that now returns at once anyway.
			delete(p.servers, ln)
			continue
		}
		// Listeners being retired are drained (and, at ctx's end,
		// closed) with the others.
		servers = append(servers, sv)
		if sv.l == Inbound {
			inbound = append(inbound, sv)
		} else {
			outbound = append(outbound, sv)
		}
	}
	p.srvMu.Unlock()

	err := drainServers(ctx, inbound)
	if e := drainServers(ctx, outbound); e != nil && err == nil {
		err = e
	}
	// Hijacked connections (protocol switches) are not the servers' to
	// wait for: wait for the proxy's own count of requests in flight.
	if e := p.waitIdle(ctx); e != nil && err == nil {
		err = e
	}
	finishDrain(err, &p.inflight, servers...)
	// No request is left to start a mirrored one: those in flight are
	// cancelled rather than waited for (a copy's answer matters to no
	// one), before the pools close their idle connections.
	p.mirrors.stop()
	p.applyMu.Lock()
	for _, pl := range p.pools {
		pl.closeIdle()
	}
	// Health checks stop (and none starts after this).
	p.hcStopped = true
	for _, r := range p.res {
		if r.hc != nil {
			r.hc.Close()
		}
	}
	p.applyMu.Unlock()

	// Stop the outlier evaluator (or keep it from ever starting) and join it.
	started := true
	p.evalOnce.Do(func() { started = false })
	p.srvMu.Lock()
	select {
	case <-p.evalStop:
	default:
		close(p.evalStop)
	}
	p.srvMu.Unlock()
	if started {
		<-p.evalDone
	}
	return err
}

// evaluateOutliers runs each cluster's outlier detector Evaluate at its
// configured interval until Shutdown.
func (p *Proxy) evaluateOutliers() {
	defer close(p.evalDone)
	next := map[*breaker.Detector]time.Time{}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		wait := time.Minute
		if s := p.snap.Load(); s != nil {
			now := p.now()
			live := make(map[*breaker.Detector]bool, len(s.clusters))
			for _, c := range s.clusters {
				d := c.res.det
				live[d] = true
				due, ok := next[d]
				if !ok {
					due = now.Add(c.res.interval)
				} else if !now.Before(due) {
					d.Evaluate(now)
					due = now.Add(c.res.interval)
				}
				next[d] = due
				wait = min(wait, due.Sub(now))
			}
			for d := range next {
				if !live[d] {
					delete(next, d)
				}
			}
		}
		timer.Reset(max(wait, time.Millisecond))
		select {
		case <-p.evalStop:
			return
		case <-p.applied:
		case <-timer.C:
		}
	}
}

func (p *Proxy) waitIdle(ctx context.Context) error {
	return waitZero(ctx, &p.inflight)
}

// waitZero polls n until it is 0 or ctx is done.
func waitZero(ctx context.Context, n *atomic.Int64) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for n.Load() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// TLSFilesDigest is the config.TLSFilesDigest of the serving config, as
// read when the Apply that made it began (zero before the first). A
// caller that finds the files' digest now differs from it knows that a
// file a cluster's tls names has changed since (a certificate rotated in
// place): applying the config again builds that cluster's connection
// pool and health checks anew from the files.
func (p *Proxy) TLSFilesDigest() [sha256.Size]byte {
	if d := p.tlsDigest.Load(); d != nil {
		return *d
	}
	return [sha256.Size]byte{}
}
