package proxy

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"

	"github.com/outrigger-mesh/outrigger/proxy/config"
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
}

// Proxy forwards requests by the routes and clusters of the last applied
// configuration. It is safe for concurrent use.
type Proxy struct {
	log    *zap.Logger
	m      *metrics
	now    func() time.Time
	int63n func(int64) int64

	snap     atomic.Pointer[snapshot]
	inflight atomic.Int64

	applyMu sync.Mutex
	// pools are the connection pools of the serving snapshot, by key;
	// guarded by applyMu.
	pools map[transportKey]*pool
	gen   atomic.Uint64

	srvMu sync.Mutex
	// servers are the http.Servers Serve runs, each with the cancel of
	// its base context; guarded by srvMu.
	servers  map[*http.Server]context.CancelFunc
	shutdown bool
}

// New returns a Proxy with no configuration: until Apply succeeds every
// request is answered 404 no_route.
func New(opts Options) *Proxy {
	p := &Proxy{
		log:     opts.Logger,
		now:     opts.Now,
		int63n:  opts.Int63n,
		pools:   map[transportKey]*pool{},
		servers: map[*http.Server]context.CancelFunc{},
	}
	if p.log == nil {
		p.log = zap.NewNop()
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.int63n == nil {
		p.int63n = rand.Int64N
	}
	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	p.m = newMetrics(reg)
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

	s, used, err := p.compile(cfg)
	if err != nil {
		return err
	}
	s.gen = p.gen.Load() + 1
	old := p.pools
	p.pools = used
	p.snap.Store(s)
	p.gen.Store(s.gen)
	p.m.generation.Set(float64(s.gen))

	var retired []string
	for k, pl := range old {
		if used[k] == pl {
			continue
		}
		pl.retired.Store(true)
		if pl.users.Load() == 0 {
			pl.closeIdle()
		}
		retired = append(retired, k.cluster)
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
}

// EndpointStatus is one endpoint of a cluster.
type EndpointStatus struct {
	Address        string `json:"address"`
	State          string `json:"state"` // "healthy" or "ejected"
	ActiveRequests int64  `json:"active_requests"`
}

// Clusters reports the serving snapshot's clusters, sorted by name.
func (p *Proxy) Clusters() []ClusterStatus {
	s := p.snap.Load()
	if s == nil {
		return nil
	}
	out := make([]ClusterStatus, 0, len(s.clusters))
	for _, c := range s.clusters {
		cs := ClusterStatus{
			Name:           c.name,
			Protocol:       c.protocol.String(),
			LBPolicy:       c.lbPolicy,
			ActiveRequests: c.active.Load(),
		}
		for _, e := range c.endpoints {
			st := "healthy"
			if e.ejected.Load() {
				st = "ejected"
			}
			cs.Endpoints = append(cs.Endpoints, EndpointStatus{Address: e.addr, State: st, ActiveRequests: e.active.Load()})
		}
		out = append(out, cs)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Serve accepts connections on ln for listener l until Shutdown, and
// returns http.ErrServerClosed then (at once, closing ln, when Shutdown
// was already called).
//
// Downstream protocols: HTTP/1.1, and HTTP/2 cleartext both with prior
// knowledge and by "Upgrade: h2c" (RFC 7540 §3.2). net/http's own
// Protocols.UnencryptedHTTP2 speaks prior knowledge only, so the h2c
// handler of golang.org/x/net serves both forms; http2.ConfigureServer ties
// its connections to the http.Server so that Shutdown sends them GOAWAY.
// Header size, read-header and idle timeouts come from the configuration
// applied when Serve is called.
func (p *Proxy) Serve(ln net.Listener, l Listener) error {
	lim := listenerLimits{}
	if s := p.snap.Load(); s != nil {
		lim = s.limits
	}
	lim = lim.withDefaults()
	h2s := &http2.Server{IdleTimeout: lim.idleTimeout}
	srv := &http.Server{
		Handler:           h2c.NewHandler(p.Handler(l), h2s),
		MaxHeaderBytes:    lim.maxHeaderBytes,
		ReadHeaderTimeout: lim.readHeaderTimeout,
		IdleTimeout:       lim.idleTimeout,
		ErrorLog:          zap.NewStdLog(p.log.Named("http")),
	}
	if err := http2.ConfigureServer(srv, h2s); err != nil {
		return err
	}
	// Requests on hijacked h2c connections derive their context from the
	// base context; cancelling it is how a forced shutdown ends them.
	base, cancel := context.WithCancel(context.Background())
	srv.BaseContext = func(net.Listener) context.Context { return base }
	p.srvMu.Lock()
	if p.shutdown {
		p.srvMu.Unlock()
		cancel()
		ln.Close()
		return http.ErrServerClosed
	}
	p.servers[srv] = cancel
	p.srvMu.Unlock()
	defer func() {
		p.srvMu.Lock()
		delete(p.servers, srv)
		p.srvMu.Unlock()
	}()
	return srv.Serve(ln)
}

// Shutdown stops every Serve from accepting, lets requests in flight finish
// until ctx is done, then closes the remaining connections and the idle
// upstream connections. It returns ctx's error if the drain did not finish.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.srvMu.Lock()
	p.shutdown = true
	servers := make([]*http.Server, 0, len(p.servers))
	cancels := make([]context.CancelFunc, 0, len(p.servers))
	for s, c := range p.servers {
		servers = append(servers, s)
		cancels = append(cancels, c)
	}
	p.srvMu.Unlock()

	var err error
	for _, s := range servers {
		if e := s.Shutdown(ctx); e != nil && err == nil {
			err = e
		}
	}
	// HTTP/2 connections served by the h2c handler are hijacked from the
	// http.Server, which therefore does not wait for them: wait for the
	// proxy's own count of requests in flight.
	if e := p.waitIdle(ctx); e != nil && err == nil {
		err = e
	}
	if err != nil {
		for _, s := range servers {
			s.Close()
		}
		for _, c := range cancels {
			c()
		}
		// Give the cancelled requests a moment to unwind so their
		// goroutines are gone when Shutdown returns.
		wctx, wcancel := context.WithTimeout(context.Background(), time.Second)
		_ = p.waitIdle(wctx)
		wcancel()
	} else {
		for _, c := range cancels {
			c()
		}
	}
	p.applyMu.Lock()
	for _, pl := range p.pools {
		pl.closeIdle()
	}
	p.applyMu.Unlock()
	return err
}

func (p *Proxy) waitIdle(ctx context.Context) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for p.inflight.Load() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}
