package proxy

import (
	"bytes"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/outrigger-mesh/outrigger/composer"
	"github.com/outrigger-mesh/outrigger/proxy/config"
	"github.com/outrigger-mesh/outrigger/proxy/h1server"
	"github.com/outrigger-mesh/outrigger/proxy/lb"
)

// snapshot is one applied configuration, compiled. It is never mutated
// after Apply publishes it; per-request state lives in atomics of the
// clusters and endpoints.
type snapshot struct {
	gen      uint64
	tables   [numListeners]*routeTable
	clusters map[string]*cluster
	noRoute  [numListeners]*routeStats

	maxRequestBody int64
	limits         listenerLimits
	// maxConns is each listener's max_connections, the default filled
	// in; 0 means no cap.
	maxConns [numListeners]int64

	// normalizePath: request paths are normalized before routing (see
	// proxy/internal/normpath); mergeSlashes: runs of slashes too.
	normalizePath, mergeSlashes bool
	// escapedSlashes is listeners.path_with_escaped_slashes.
	escapedSlashes escapedSlashAction

	// envoyHeaders: the outbound listener honors Envoy's request
	// headers (see envoyOverrides).
	envoyHeaders bool
	// underscores is each listener's headers_with_underscores.
	underscores [numListeners]underscoreAction

	// authz is each listener's authorization rules (see authz.go); nil
	// for a listener no rule names.
	authz [numListeners]*authzPolicy
}

// listenerLimits are the downstream server settings.
type listenerLimits struct {
	maxHeaderBytes    int
	readHeaderTimeout time.Duration
	idleTimeout       time.Duration
	// tls is each listener's TLS configuration (see serverTLS), nil for
	// plaintext; handshakeTimeout its tls.handshake_timeout.
	tls              [numListeners]*tls.Config
	handshakeTimeout [numListeners]time.Duration
}

// h1 is l as the server of listener ln takes it. Call it on
// l.withDefaults(): a zero in h1server.Limits is not the configuration's
// default (a zero timeout means none, a zero header limit 1 MiB).
func (l listenerLimits) h1(ln Listener) h1server.Limits {
	return h1server.Limits{MaxHeaderBytes: l.maxHeaderBytes, ReadHeaderTimeout: l.readHeaderTimeout, IdleTimeout: l.idleTimeout,
		TLS: l.tls[ln], HandshakeTimeout: l.handshakeTimeout[ln]}
}

func (l listenerLimits) withDefaults() listenerLimits {
	if l.maxHeaderBytes == 0 {
		l.maxHeaderBytes = 64 << 10
	}
	if l.readHeaderTimeout == 0 {
		l.readHeaderTimeout = 10 * time.Second
	}
	if l.idleTimeout == 0 {
		l.idleTimeout = 5 * time.Minute
	}
	for i, d := range l.handshakeTimeout {
		if d == 0 {
			l.handshakeTimeout[i] = config.DefaultTLSHandshakeTimeout
		}
	}
	return l
}

// maxConns is the cap a listener's max_connections of n puts on its
// downstream connections: n, or Options.DefaultMaxConnections for 0.
func (p *Proxy) maxConns(n int) int64 {
	if n > 0 {
		return int64(n)
	}
	return p.defaultMaxConns
}

// Defaults the config package documents; applied here as well so that a
// Config built by hand (zero fields) behaves as a loaded one.
const (
	defaultRouteTimeout   = 15 * time.Second
	defaultConnectTimeout = time.Second
	defaultMaxBuffered    = 64 << 10
	defaultBackoffBase    = 25 * time.Millisecond
	defaultMaxIdle        = 32
)

// compile builds a snapshot from cfg, reusing the pools of p whose key is
// unchanged. It returns the pools the snapshot uses. Caller holds applyMu.
func (p *Proxy) compile(cfg *config.Config) (*snapshot, map[transportKey]*pool, map[string]*resilience, error) {
	s := &snapshot{
		clusters:       map[string]*cluster{},
		maxRequestBody: cfg.Listeners.MaxRequestBodyBytes,
		normalizePath:  cfg.Listeners.PathNormalization != config.PathNormalizationNone,
		mergeSlashes:   cfg.Listeners.PathNormalization == config.PathNormalizationMergeSlashes,
		escapedSlashes: compileEscapedSlashes(cfg.Listeners.PathWithEscapedSlashes),
		envoyHeaders:   cfg.Listeners.Outbound.EnvoyRequestHeaders != config.EnvoyRequestHeadersIgnore,
		underscores: [numListeners]underscoreAction{
			Outbound: compileUnderscores(cfg.Listeners.Outbound.HeadersWithUnderscores),
			Inbound:  compileUnderscores(cfg.Listeners.Inbound.HeadersWithUnderscores),
		},
		maxConns: [numListeners]int64{
			Outbound: p.maxConns(cfg.Listeners.Outbound.MaxConnections),
			Inbound:  p.maxConns(cfg.Listeners.Inbound.MaxConnections),
		},
		limits: listenerLimits{
			maxHeaderBytes:    cfg.Listeners.MaxRequestHeaderBytes,
			readHeaderTimeout: cfg.Listeners.ReadHeaderTimeout,
			idleTimeout:       cfg.Listeners.IdleTimeout,
		},
	}
	// The listeners' and clusters' problems (files that cannot be read,
	// for one) are listed together, as validation's are, so that a
	// config is not fixed one problem per try.
	var errs []error
	for l, lt := range [numListeners]config.ListenerTLS{Outbound: cfg.Listeners.Outbound.TLS, Inbound: cfg.Listeners.Inbound.TLS} {
		if !lt.Enabled {
			continue
		}
		tc, err := serverTLS(lt)
		if err != nil {
			errs = append(errs, fmt.Errorf("listeners.%s.tls: %w", Listener(l), err))
			continue
		}
		s.limits.tls[l], s.limits.handshakeTimeout[l] = tc, lt.HandshakeTimeout
	}
	used := map[transportKey]*pool{}
	res := map[string]*resilience{}

	clusters := cfg.Clusters
	inbound := cfg.Listeners.Inbound
	if inbound.App != "" {
		if _, ok := clusters[config.InboundAppCluster]; !ok {
			clusters = make(map[string]config.Cluster, len(cfg.Clusters)+1)
			for k, v := range cfg.Clusters {
				clusters[k] = v
			}
			clusters[config.InboundAppCluster] = inbound.AppCluster()
		}
	}
	names := make([]string, 0, len(clusters))
	for n := range clusters {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		c, err := p.compileCluster(name, clusters[name], cfg.Node.Zone, used)
		if err != nil {
			errs = append(errs, fmt.Errorf("clusters.%s: %w", name, err))
			continue
		}
		if c.res, err = p.buildResilience(name, clusters[name], p.res[name]); err != nil {
			errs = append(errs, fmt.Errorf("clusters.%s.%w", name, err))
			continue
		}
		s.clusters[name] = c
	}
	if len(errs) > 0 {
		// The routes are not built: those of a cluster left out would
		// add problems of their own that are not.
		return nil, nil, nil, errors.Join(errs...)
	}

	routes := cfg.Routes
	if inbound.App != "" {
		found := false
		for _, r := range routes {
			if r.Name == config.InboundDefaultRoute {
				found = true
			}
		}
		if !found {
			routes = append(append([]config.Route(nil), routes...), config.Route{
				Name:            config.InboundDefaultRoute,
				Listener:        config.Inbound,
				Cluster:         config.InboundAppCluster,
				TimeoutDisabled: true,
			})
		}
	}
	// The serving snapshot's routes with state a reload carries over,
	// indexed once for all the routes (see compileRateLimit and
	// compileFault); only when a route has a rate limit or a fault.
	var prev map[routeKey]*route
	for _, rc := range routes {
		if rc.RateLimit != nil || rc.Fault != nil {
			prev = p.prevRoutes()
			break
		}
	}
	for l := range s.tables {
		s.tables[l] = &routeTable{}
		s.noRoute[l] = p.m.routeStats(Listener(l).String(), "", "")
	}
	for l := range s.authz {
		var err error
		if s.authz[l], err = p.compileAuthorization(Listener(l), cfg.Authorization, s.normalizePath, s.mergeSlashes); err != nil {
			return nil, nil, nil, err
		}
	}
	for i, rc := range routes {
		l := Outbound
		switch rc.Listener {
		case "", config.Outbound:
		case config.Inbound:
			l = Inbound
		default:
			return nil, nil, nil, fmt.Errorf("routes[%d].listener: unknown listener %q", i, rc.Listener)
		}
		name := rc.Name
		if name == "" {
			name = "route[" + strconv.Itoa(i) + "]"
		}
		rt, err := p.compileRoute(l, name, rc, s, prev)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("routes[%d]: %w", i, err)
		}
		s.tables[l].routes = append(s.tables[l].routes, rt)
	}
	for name, c := range s.clusters {
		res[name] = c.res
	}
	return s, used, res, nil
}

// compileCluster builds cluster name from cc; zone is node.zone, the
// sidecar's own, which a zone-aware cluster keeps its traffic in.
func (p *Proxy) compileCluster(name string, cc config.Cluster, zone string, used map[transportKey]*pool) (*cluster, error) {
	if len(cc.Endpoints) == 0 {
		return nil, fmt.Errorf("endpoints: at least one endpoint is required")
	}
	c := &cluster{name: name, m: p.m.clusterMetrics(name)}
	switch cc.Protocol {
	case "", config.ProtocolHTTP1:
		c.protocol = protoHTTP1
	case config.ProtocolHTTP2, config.ProtocolGRPC:
		c.protocol = protoH2C
		if cc.TLS.Enabled {
			c.protocol = protoH2TLS
		}
	default:
		return nil, fmt.Errorf("protocol: unknown protocol %q", cc.Protocol)
	}
	c.scheme = "http"
	if cc.TLS.Enabled {
		c.scheme = "https"
	}
	switch cc.LBPolicy {
	case "":
		c.lbPolicy = string(config.LBRoundRobin)
	case config.LBRoundRobin, config.LBLeastRequest, config.LBRandom, config.LBMaglev:
		c.lbPolicy = string(cc.LBPolicy)
	default:
		return nil, fmt.Errorf("lb_policy: unknown policy %q", cc.LBPolicy)
	}
	weights := make([]uint32, 0, len(cc.Endpoints))
	for i, e := range cc.Endpoints {
		c.endpoints = append(c.endpoints, &endpoint{addr: e.Address, authority: endpointAuthority(e.Address, c.scheme),
			zone: e.Zone, idx: i, conns: p.m.endpointConns(name, e.Address)})
		weights = append(weights, e.Weight)
	}
	if cc.LBPolicy == config.LBMaglev {
		if cc.ZoneAware.Enabled {
			return nil, fmt.Errorf("zone_aware.enabled: not supported with lb_policy maglev")
		}
		// The table holds the weights: one position per endpoint.
		addrs := make([]string, len(c.endpoints))
		for i, e := range c.endpoints {
			addrs[i] = e.addr
		}
		// A reload that leaves the endpoints as they were keeps the
		// table: the same list builds the same table, and building it
		// takes milliseconds and 256 KiB, for every maglev cluster at
		// every reload, whatever else the reload changed.
		var prev *lb.Maglev
		if s := p.snap.Load(); s != nil {
			if pc := s.clusters[name]; pc != nil {
				prev, _ = pc.picker.(*lb.Maglev)
			}
		}
		if prev != nil && prev.Same(addrs, weights) {
			c.picker = prev
		} else {
			c.picker = lb.NewMaglev(addrs, weights, nil)
		}
	} else {
		c.picker = newPicker(c.lbPolicy, p.rrStart)
		if c.slots = weightSlots(weights); c.slots != nil {
			c.weights = slotCounts(c.slots, len(c.endpoints))
		}
	}
	c.zone = compileZoneAware(c, cc, zone, p.rrStart)
	var prev *cluster
	if s := p.snap.Load(); s != nil {
		prev = s.clusters[name]
	}
	c.carryState(prev)

	key := transportKey{
		cluster:         name,
		protocol:        c.protocol,
		connectTimeout:  cc.ConnectTimeout,
		idleTimeout:     cc.Pool.IdleTimeout,
		maxIdlePerHost:  cc.Pool.MaxIdlePerEndpoint,
		maxConnsPerHost: cc.Pool.MaxConnectionsPerEndpoint,
		maxRequests:     cc.Pool.MaxRequestsPerConnection,
		maxAge:          cc.Pool.MaxConnectionDuration,
		tls:             cc.TLS,
		tlsFiles:        cc.TLS.FilesSum(),
	}
	if key.connectTimeout == 0 {
		key.connectTimeout = defaultConnectTimeout
	}
	if key.maxIdlePerHost == 0 {
		key.maxIdlePerHost = defaultMaxIdle
	}
	if pl, ok := p.pools[key]; ok {
		c.pool = pl
	} else {
		var tc *tls.Config
		if cc.TLS.Enabled {
			var err error
			if tc, err = clientTLS(cc.TLS); err != nil {
				return nil, fmt.Errorf("tls: %w", err)
			}
		}
		c.pool = newPool(key, tc)
	}
	used[key] = c.pool
	return c, nil
}

// endpointAuthority is the Host a client calling the endpoint at addr
// ("host:port") itself would send: addr, without the port when it is
// the scheme's default (RFC 9110 §4.2.1, §4.2.2), as curl and browsers
// leave it out and some virtual hosts only know the name without it.
func endpointAuthority(addr, scheme string) string {
	_, port := splitHostPort(addr)
	if port == "" || !(scheme == "http" && port == "80" || scheme == "https" && port == "443") {
		return addr
	}
	return addr[:len(addr)-len(port)-1] // "[::1]:80" keeps its brackets
}

func clientTLS(t config.TLS) (*tls.Config, error) {
	tc := &tls.Config{ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify} //nolint:gosec // explicit opt-in, documented as test-only
	// Validate has checked the names; empty leaves crypto/tls's bounds
	// (1.2 to 1.3 for a client).
	tc.MinVersion, _ = config.TLSVersion(t.MinVersion)
	tc.MaxVersion, _ = config.TLSVersion(t.MaxVersion)
	if t.CAFile != "" {
		pool, err := loadCAPool("ca_file", t.CAFile)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" || t.KeyFile != "" {
		cert, err := loadKeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, err
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// pemWhole reports an error when b has a PEM block that does not decode:
// begun and cut off before its end, as a file rewritten in place reads
// while half written, or damaged. x509.CertPool.AppendCertsFromPEM and
// tls.X509KeyPair stop at such a block and keep the ones before it, so a
// CA bundle or certificate chain read half written would apply with
// only part of its certificates, and the handshakes that need the rest
// fail until the files are next read.
func pemWhole(b []byte) error {
	begun := bytes.Count(b, []byte("-----BEGIN"))
	n := 0
	for rest := b; ; n++ {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
	}
	if n < begun {
		return errors.New("a PEM block is cut short or malformed")
	}
	return nil
}

// compileRoute builds route name of listener l from rc over the clusters
// of s; prev indexes the serving snapshot's routes with state a reload
// carries over (see prevRoutes).
func (p *Proxy) compileRoute(l Listener, name string, rc config.Route, s *snapshot, prev map[routeKey]*route) (*route, error) {
	rt := &route{name: name, key: newRouteKey(l, name, &rc), inbound: l == Inbound}
	m, err := compileMatch(rc.Match)
	if err != nil {
		return nil, err
	}
	rt.match = m
	lname := l.String()

	// The route's cluster="" series count the proxy's own answers on it:
	// made for the actions that give them (and a direct-response
	// fallback, below), so that a cluster route exports only series of
	// its clusters.
	switch {
	case rc.DirectResponse != nil:
		rt.direct = compileDirect(rc.DirectResponse)
		rt.localStats = p.m.routeStats(lname, name, "")
	case rc.Cluster != "":
		c, ok := s.clusters[rc.Cluster]
		if !ok {
			return nil, fmt.Errorf("cluster: unknown cluster %q", rc.Cluster)
		}
		rt.clusters = []weightedCluster{{c: c, weight: 1, stats: p.m.routeStats(lname, name, c.name)}}
		rt.total = 1
	case len(rc.WeightedClusters) > 0:
		for j, wc := range rc.WeightedClusters {
			c, ok := s.clusters[wc.Cluster]
			if !ok {
				return nil, fmt.Errorf("weighted_clusters[%d].cluster: unknown cluster %q", j, wc.Cluster)
			}
			if wc.Weight == 0 {
				continue
			}
			rt.clusters = append(rt.clusters, weightedCluster{c: c, weight: wc.Weight, stats: p.m.routeStats(lname, name, c.name)})
			rt.total += wc.Weight
		}
		if rt.total == 0 {
			return nil, fmt.Errorf("weighted_clusters: all weights are zero")
		}
	case rc.Composition != nil:
		// Built below, once the route's timeouts and retry policy are.
		rt.localStats = p.m.routeStats(lname, name, "")
	default:
		return nil, fmt.Errorf("no action: set cluster, weighted_clusters, composition or direct_response")
	}

	rt.prefixRewrite = rc.PrefixRewrite
	rt.prefixRewriteEscaped = (&url.URL{Path: rc.PrefixRewrite}).EscapedPath()
	if rc.PrefixRewrite != "" && rt.match.path == pathExact {
		// Exact matches rewrite the whole path.
		rt.match.path, rt.match.exactRewrite = pathExact, true
	}
	if rr := rc.RegexRewrite; rr != nil {
		// "." matches a newline decoded from "%0A" too, as in
		// match.path.regex.
		re, err := regexp.Compile("(?s:" + rr.Pattern + ")")
		if err != nil {
			return nil, fmt.Errorf("regex_rewrite.pattern: %w", err)
		}
		sub, err := compileSubstitution(rr.Substitution, re.NumSubexp())
		if err != nil {
			return nil, fmt.Errorf("regex_rewrite.%w", err)
		}
		rt.regexRewrite = &regexRewrite{re: re, sub: sub}
	}
	rt.hostRewrite, rt.autoHost = rc.HostRewrite, rc.AutoHostRewrite && rc.HostRewrite == ""
	rt.appendXFH = rc.AppendXForwardedHost && (rt.hostRewrite != "" || rt.autoHost)
	rt.reqHeaders = compileMutation(rc.RequestHeaders)
	rt.respHeaders = compileMutation(rc.ResponseHeaders)
	rt.hash = compileHashPolicy(rc.HashPolicy)

	switch {
	case rc.TimeoutDisabled:
	case rc.Timeout > 0:
		rt.timeout = rc.Timeout
	default:
		rt.timeout = defaultRouteTimeout
	}
	rt.perTryTimeout = rc.PerTryTimeout
	rt.idleTimeout = rc.IdleTimeout
	rt.attemptCount = rc.IncludeRequestAttemptCount
	rt.grpcPerTry = rc.GRPCTimeoutPerTry && rc.PerTryTimeout > 0
	if rc.Retry != nil {
		rp, err := compileRetry(*rc.Retry)
		if err != nil {
			return nil, fmt.Errorf("retry: %w", err)
		}
		rt.retry = rp
	}
	if rc.Fallback != nil {
		fb, err := p.compileFallback(lname, rt, rc.Fallback, s)
		if err != nil {
			return nil, fmt.Errorf("fallback: %w", err)
		}
		rt.fallback = fb
	}
	if rc.Fault != nil {
		rt.fault = p.compileFault(rt.key, rc.Fault, prev)
		if rt.localStats == nil {
			// The requests it answers, or whose client left during its
			// delay, have no cluster.
			rt.localStats = p.m.routeStats(lname, name, "")
		}
	}
	if rc.RateLimit != nil {
		rt.rateLimit = p.compileRateLimit(rt.key, *rc.RateLimit, prev)
		if rt.localStats == nil {
			// The requests it refuses have no cluster.
			rt.localStats = p.m.routeStats(lname, name, "")
		}
	}
	if len(rc.Mirror) > 0 {
		// After the fallback, whose copy of the route has none.
		ms, err := p.compileMirrors(lname, rt, rc.Mirror, s)
		if err != nil {
			return nil, err
		}
		rt.mirrors = ms
	}
	if rc.Composition != nil {
		if err := p.compileComposition(rt, rc.Composition, s); err != nil {
			return nil, fmt.Errorf("composition: %w", err)
		}
	}
	return rt, nil
}

// compileComposition builds rt's composition over the clusters of s. Its
// calls use the route's per-try timeout, retry policy and attempt count
// header; the route timeout bounds the whole composite request
// (serveComposite).
func (p *Proxy) compileComposition(rt *route, spec *composer.Spec, s *snapshot) error {
	for i, c := range spec.Calls {
		if _, ok := s.clusters[c.Cluster]; !ok {
			return fmt.Errorf("calls[%d].cluster: unknown cluster %q", i, c.Cluster)
		}
	}
	callRoute := &route{
		name:          rt.name,
		localStats:    rt.localStats,
		perTryTimeout: rt.perTryTimeout,
		retry:         rt.retry,
		attemptCount:  rt.attemptCount,
		grpcPerTry:    rt.grpcPerTry,
	}
	b := &composeBackend{p: p, s: s, rt: callRoute}
	comp, err := composer.New(*spec, b, composer.Options{Name: rt.name, Registry: p.reg, Now: p.now})
	if err != nil {
		return err
	}
	rt.compose = comp
	p.m.next.compositions = append(p.m.next.compositions, comp)
	return nil
}

// compileFallback compiles a route's fallback; rt is otherwise complete.
func (p *Proxy) compileFallback(lname string, rt *route, fc *config.Fallback, s *snapshot) (*routeFallback, error) {
	if rt.compose != nil || rt.direct != nil || len(rt.clusters) == 0 {
		return nil, fmt.Errorf("only routes with cluster or weighted_clusters have a fallback")
	}
	fb := &routeFallback{}
	for r := Reason(0); r < numReasons; r++ {
		if fallbackReason(r) {
			fb.used[r] = p.m.fallbacks.WithLabelValues(lname, rt.name, r.String())
		}
	}
	switch {
	case fc.DirectResponse != nil && fc.Cluster != "":
		return nil, fmt.Errorf("set only one of direct_response and cluster")
	case fc.DirectResponse != nil:
		fb.direct = compileDirect(fc.DirectResponse)
		rt.localStats = p.m.routeStats(lname, rt.name, "")
		fb.stats = rt.localStats
	case fc.Cluster != "":
		c, ok := s.clusters[fc.Cluster]
		if !ok {
			return nil, fmt.Errorf("cluster: unknown cluster %q", fc.Cluster)
		}
		for _, wc := range rt.clusters {
			if wc.c == c {
				return nil, fmt.Errorf("cluster: %q is the route's own cluster", fc.Cluster)
			}
		}
		frt := *rt // a copy: the same timeouts, retry policy and header edits
		fb.stats = p.m.routeStats(lname, rt.name, c.name)
		frt.clusters = []weightedCluster{{c: c, weight: 1, stats: fb.stats}}
		frt.total = 1
		frt.fallback = nil // no chains
		fb.rt = &frt
	default:
		return nil, fmt.Errorf("set direct_response or cluster")
	}
	return fb, nil
}

func compileDirect(d *config.DirectResponse) *directResponse {
	dr := &directResponse{status: d.Status, body: []byte(d.Body), header: http.Header{}}
	// The headers are a response_headers add list, applied to none.
	add := compileMutation(config.HeaderMutation{Add: d.Headers})
	add.apply(dr.header)
	if dr.status == 0 {
		dr.status = http.StatusOK
	}
	if dr.status == http.StatusNoContent || dr.status == http.StatusNotModified {
		// No content (RFC 9110 §15.3.5, §15.4.5), hence no
		// Content-Length: a 204 must not have one (§8.6), and a 304's
		// would be that of a 200 the proxy does not know. Validate
		// refuses a body with these; one built by hand is not sent.
		dr.body = nil
		return dr
	}
	if d.Body != "" && dr.header.Get("Content-Type") == "" {
		dr.header.Set("Content-Type", "text/plain; charset=utf-8")
	}
	dr.header.Set("Content-Length", strconv.Itoa(len(d.Body)))
	return dr
}

func compileMutation(m config.HeaderMutation) headerEdit {
	var e headerEdit
	for _, k := range m.Remove {
		e.remove = append(e.remove, http.CanonicalHeaderKey(k))
	}
	for _, hv := range m.Add {
		e.add = append(e.add, headerValue{name: http.CanonicalHeaderKey(hv.Name), value: hv.Value, append: hv.Append})
	}
	return e
}

func compileRetry(rc config.RetryPolicy) (retryPolicy, error) {
	rp := retryPolicy{
		maxRetries:     rc.Attempts,
		base:           rc.Backoff.Base,
		max:            rc.Backoff.Max,
		allowAnyMethod: rc.AllowNonIdempotent,
		maxBuffered:    rc.MaxBufferedBodyBytes,
		statuses:       rc.RetriableStatusCodes,
	}
	if rp.maxRetries == 0 {
		rp.maxRetries = 1
	}
	if rp.base == 0 {
		rp.base = defaultBackoffBase
	}
	if rp.max == 0 {
		rp.max = 10 * rp.base
	}
	if rp.maxBuffered == 0 {
		rp.maxBuffered = defaultMaxBuffered
	}
	if rl := rc.RateLimitedBackoff; rl != nil {
		rp.resetMax = rl.MaxInterval
		if rp.resetMax == 0 {
			rp.resetMax = config.DefaultRateLimitedMaxInterval
		}
		for i, h := range rl.ResetHeaders {
			switch h.Format {
			case "", config.ResetHeaderSeconds, config.ResetHeaderUnixTimestamp:
			default:
				return rp, fmt.Errorf("rate_limited_backoff.reset_headers[%d].format: unknown format %q", i, h.Format)
			}
			rp.resetHeaders = append(rp.resetHeaders, resetHeader{
				key:       http.CanonicalHeaderKey(h.Name),
				timestamp: h.Format == config.ResetHeaderUnixTimestamp,
			})
		}
	}
	for i, hc := range rc.RetriableHeaders {
		hm := headerMatcher{name: http.CanonicalHeaderKey(hc.Name), invert: hc.Invert}
		var err error
		if hm.kind, hm.value, hm.re, err = compileValueMatch(hc.Present, hc.Exact, hc.Prefix, hc.Regex, ""); err != nil {
			return rp, fmt.Errorf("retriable_headers[%d].regex: %w", i, err)
		}
		rp.headers = append(rp.headers, hm)
	}
	on := rc.RetryOn
	if len(on) == 0 {
		on = []config.RetryCondition{config.RetryOnConnectFailure, config.RetryOnRefusedStream,
			config.RetryOnGatewayError, config.RetryOnUnavailable}
	}
	for i, c := range on {
		bit, ok := retryOnNames[string(c)]
		if !ok {
			return rp, fmt.Errorf("retry_on[%d]: unknown condition %q", i, c)
		}
		rp.on |= bit
	}
	return rp, nil
}

func compileMatch(mc config.RouteMatch) (routeMatch, error) {
	var m routeMatch
	for _, a := range mc.Authority {
		m.authorities = append(m.authorities, compileAuthority(a))
	}
	switch {
	case mc.Path.Exact != "":
		m.path, m.pathValue = pathExact, mc.Path.Exact
	case mc.Path.Prefix != "" && mc.Path.Prefix != "/":
		m.path, m.pathValue = pathPrefix, mc.Path.Prefix
	case mc.Path.Regex != "":
		// The path is matched decoded, so it may hold a line feed
		// ("%0A"): with the s flag "." matches it too, and ".*" is
		// every rest of a path, as the pattern's author reads it.
		re, err := regexp.Compile("^(?s:" + mc.Path.Regex + ")$")
		if err != nil {
			return m, fmt.Errorf("match.path.regex: %w", err)
		}
		m.path, m.pathRe = pathRegex, re
	case mc.Path.Prefix == "/":
		m.path, m.pathValue = pathPrefix, "/"
	}
	m.methods = append(m.methods, mc.Methods...)
	hm, err := compileHeaderMatchers(mc.Headers)
	if err != nil {
		return m, fmt.Errorf("match.%w", err)
	}
	m.headers = hm
	for i, qc := range mc.QueryParameters {
		// present: false is present: true inverted.
		qm := queryMatcher{name: qc.Name, invert: qc.Invert || qc.Present != nil && !*qc.Present}
		var err error
		// A decoded value may hold a line feed ("%0A"), as a path may:
		// "." matches it too.
		if qm.kind, qm.value, qm.re, err = compileValueMatch(qc.Present != nil, qc.Exact, qc.Prefix, qc.Regex, "s"); err != nil {
			return m, fmt.Errorf("match.query_parameters[%d].regex: %w", i, err)
		}
		m.queries = append(m.queries, qm)
	}
	return m, nil
}

// compileHeaderMatchers compiles request header matchers (a route's
// match.headers, an authorization rule's when.headers); nil for none.
// Its error's path begins with "headers".
func compileHeaderMatchers(hs []config.HeaderMatch) ([]headerMatcher, error) {
	var out []headerMatcher
	for i, hc := range hs {
		hm := headerMatcher{name: http.CanonicalHeaderKey(hc.Name), invert: hc.Invert}
		if strings.HasPrefix(hc.Name, ":") {
			hm.pseudo = strings.ToLower(hc.Name)
		} else if hm.name == "Host" {
			// The servers keep Host as the request's authority, out of
			// the header map (HTTP/1.1 Host and HTTP/2 :authority
			// alike): a matcher on host matches that, as on :authority.
			hm.pseudo = ":authority"
		}
		var err error
		if hm.kind, hm.value, hm.re, err = compileValueMatch(hc.Present, hc.Exact, hc.Prefix, hc.Regex, ""); err != nil {
			return nil, fmt.Errorf("headers[%d].regex: %w", i, err)
		}
		out = append(out, hm)
	}
	return out, nil
}

// compileValueMatch compiles the one test of a header's or a query
// parameter's value that validation let through: present, a prefix, a
// regex (anchored at both ends, with the regexp flags given), or else
// exact. Its error is the regex's.
func compileValueMatch(present bool, exact, prefix, regex, flags string) (headerKind, string, *regexp.Regexp, error) {
	switch {
	case present:
		return headerPresent, "", nil, nil
	case prefix != "":
		return headerPrefix, prefix, nil, nil
	case regex != "":
		re, err := regexp.Compile("^(?" + flags + ":" + regex + ")$")
		if err != nil {
			return 0, "", nil, err
		}
		return headerRegex, "", re, nil
	}
	return headerExact, exact, nil, nil
}
