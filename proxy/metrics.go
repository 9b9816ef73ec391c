package proxy

import (
	"github.com/outrigger-mesh/outrigger/composer"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// metrics are the proxy's collectors, registered once on the injected
// registry. Per-request code uses children resolved at Apply time
// (routeStats, clusterMetrics, the endpoints' upstream_connections, the
// outrigger_composer_* children each composer.Composition binds), never
// WithLabelValues: a request still running on a snapshot a reload
// replaced would create again a series the reload deleted, exported for
// good. A child the reload deleted is written to in vain, and a name that
// comes back gets a new child, which the old one's writes leave alone.
type metrics struct {
	requests    *prometheus.CounterVec   // listener, route, cluster, code_class
	duration    *prometheus.HistogramVec // listener, route, cluster
	active      *prometheus.GaugeVec     // cluster
	conns       *prometheus.GaugeVec     // cluster, endpoint
	retries     *prometheus.CounterVec   // cluster
	connectFail *prometheus.CounterVec   // cluster, reason
	localReply  *prometheus.CounterVec   // reason
	fallbacks   *prometheus.CounterVec   // listener, route, reason
	faults      *prometheus.CounterVec   // listener, route, fault
	mirrored    *prometheus.CounterVec   // listener, route, cluster, result
	authzDenied *prometheus.CounterVec   // listener, rule
	// authzAllowed counts the requests a listener's authorization rules
	// let through, by listener; there from the start, at 0.
	authzAllowed [numListeners]prometheus.Counter
	generation   prometheus.Gauge
	localByCode  [numReasons]prometheus.Counter

	// underscores counts the request header and trailer fields dropped
	// for an underscore in their name (headers_with_underscores: drop),
	// by listener; underscoresDropped are its children.
	underscores        *prometheus.CounterVec
	underscoresDropped [numListeners]prometheus.Counter

	// downConns and downOverflow are the listeners' open downstream
	// connections and those closed over max_connections (see connGate),
	// by listener; there from the start, at 0.
	downConns    *prometheus.GaugeVec
	downOverflow *prometheus.CounterVec

	// downTLSFail counts the listeners' failed TLS handshakes, by
	// listener and handshakeReason; downTLSFailed are its children,
	// there from the start, at 0.
	downTLSFail   *prometheus.CounterVec
	downTLSFailed [numListeners][numHandshakeReasons]prometheus.Counter

	// next collects the label sets a compile in progress uses; live holds
	// those of the applied snapshot, and the endpoints it removed that
	// still have connections open (see deleteMissing). Both are guarded
	// by Proxy.applyMu.
	next, live series
}

// series are the label sets of per-route, per-cluster and per-endpoint
// series one snapshot uses, and its compositions, whose series the
// composer package names. An Apply deletes the series of the routes,
// clusters, endpoints and compositions (or composition calls) it removed,
// so that a long-lived sidecar whose configuration churns (xDS) exports
// only what it serves.
type series struct {
	routes       map[[3]string]struct{} // listener, route, cluster
	clusters     map[string]struct{}
	endpoints    map[[2]string]struct{} // cluster, address
	faults       map[[3]string]struct{} // listener, route, fault: the kinds each route's fault injects
	mirrors      map[[3]string]struct{} // listener, route, cluster: a route's mirrors
	authz        map[[2]string]struct{} // listener, rule: the authorization_denied series
	compositions []*composer.Composition
}

func newSeries() series {
	return series{routes: map[[3]string]struct{}{}, clusters: map[string]struct{}{}, endpoints: map[[2]string]struct{}{},
		faults: map[[3]string]struct{}{}, mirrors: map[[3]string]struct{}{}, authz: map[[2]string]struct{}{}}
}

// authzDeniedSeries records that the compile in progress has the
// authorization_denied series of rule on listener, and returns it
// (rule "" counts the requests no allow rule matched).
func (m *metrics) authzDeniedSeries(listener, rule string) prometheus.Counter {
	m.next.authz[[2]string{listener, rule}] = struct{}{}
	return m.authzDenied.WithLabelValues(listener, rule)
}

// endpointConns records that the compile in progress has endpoint addr
// in cluster and returns its upstream_connections series, which the
// connections dialled to it count on (see pool.bindConns).
func (m *metrics) endpointConns(cluster, addr string) prometheus.Gauge {
	m.next.endpoints[[2]string{cluster, addr}] = struct{}{}
	return m.conns.WithLabelValues(cluster, addr)
}

// liveEndpoint reports whether the applied snapshot's label sets hold
// endpoint addr of cluster: one it serves, or one it removed whose
// upstream_connections series stays while connections to it are open.
func (m *metrics) liveEndpoint(cluster, addr string) bool {
	_, ok := m.live.endpoints[[2]string{cluster, addr}]
	return ok
}

// commit makes the compiled label sets the live ones and deletes every
// series the previous snapshot had and the new one does not. A request
// still in flight on the old snapshot records into the detached child,
// which is no longer exported.
func (m *metrics) commit() {
	old := m.live
	m.live, m.next = m.next, newSeries()
	m.deleteMissing(old, m.live)
}

// discard forgets the label sets of a compile that failed, deleting the
// series it created that the live snapshot does not use.
func (m *metrics) discard() {
	m.deleteMissing(m.next, m.live)
	m.next = newSeries()
}

// deleteMissing deletes the series of from's label sets that keep has
// not, except the upstream_connections series of an endpoint removed
// from a cluster that stays while connections to it are open: keep takes
// those on, so that a later call deletes them once they are closed.
func (m *metrics) deleteMissing(from, keep series) {
	keepRoutes := make(map[[2]string]struct{}, len(keep.routes))
	for k := range keep.routes {
		keepRoutes[[2]string{k[0], k[1]}] = struct{}{}
	}
	for k := range from.routes {
		if _, ok := keep.routes[k]; ok {
			continue
		}
		l := prometheus.Labels{"listener": k[0], "route": k[1], "cluster": k[2]}
		m.requests.DeletePartialMatch(l)
		m.duration.Delete(l)
		if _, ok := keepRoutes[[2]string{k[0], k[1]}]; !ok {
			m.fallbacks.DeletePartialMatch(prometheus.Labels{"listener": k[0], "route": k[1]})
		}
	}
	for k := range from.faults {
		if _, ok := keep.faults[k]; !ok {
			m.faults.DeleteLabelValues(k[0], k[1], k[2])
		}
	}
	for k := range from.mirrors {
		if _, ok := keep.mirrors[k]; !ok {
			m.mirrored.DeletePartialMatch(prometheus.Labels{"listener": k[0], "route": k[1], "cluster": k[2]})
		}
	}
	for k := range from.authz {
		if _, ok := keep.authz[k]; !ok {
			m.authzDenied.DeleteLabelValues(k[0], k[1])
		}
	}
	for c := range from.clusters {
		if _, ok := keep.clusters[c]; !ok {
			m.active.DeleteLabelValues(c)
			m.retries.DeleteLabelValues(c)
			m.connectFail.DeletePartialMatch(prometheus.Labels{"cluster": c})
		}
	}
	for e := range from.endpoints {
		if _, ok := keep.endpoints[e]; ok {
			continue
		}
		// A cluster's pool, kept by a reload that leaves its connection
		// settings alone, holds its idle connections to a removed endpoint
		// until its idle timeout, and uses them again if a reload adds the
		// endpoint back: deleted, the series would count them from zero.
		// (A removed cluster's pool is never used again.)
		if _, ok := keep.clusters[e[0]]; ok && m.connsOpen(e[0], e[1]) {
			keep.endpoints[e] = struct{}{}
			continue
		}
		m.conns.DeleteLabelValues(e[0], e[1])
	}
	// Every Apply builds its compositions again; one of a name (and
	// calls) from keeps its series, bound again to the same children.
	composer.DeleteSeries(from.compositions, keep.compositions)
}

// connsOpen reports whether the upstream_connections series of endpoint
// addr of cluster counts open connections.
func (m *metrics) connsOpen(cluster, addr string) bool {
	g, err := m.conns.GetMetricWithLabelValues(cluster, addr)
	if err != nil {
		return false
	}
	var d dto.Metric
	return g.Write(&d) == nil && d.GetGauge().GetValue() > 0
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		next: newSeries(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_proxy_requests_total",
			Help: "Requests completed by the proxy, by listener, route, cluster and response status class (1xx..5xx).",
		}, []string{"listener", "route", "cluster", "code_class"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "outrigger_proxy_request_duration_seconds",
			Help:    "Time from request arrival to the end of the response, by listener, route and cluster.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"listener", "route", "cluster"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "outrigger_proxy_active_requests",
			Help: "Requests in flight to each cluster.",
		}, []string{"cluster"}),
		conns: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "outrigger_proxy_upstream_connections",
			Help: "Open upstream connections by cluster and endpoint (endpoints come from config, so the set is bounded).",
		}, []string{"cluster", "endpoint"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_proxy_retries_total",
			Help: "Upstream attempts made after the first one, by cluster.",
		}, []string{"cluster"}),
		connectFail: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_proxy_upstream_connect_failures_total",
			Help: "Upstream connections a request could not make, by cluster and reason (refused, timeout, tls_untrusted, tls_expired, tls_name_mismatch, tls_handshake, protocol, other).",
		}, []string{"cluster", "reason"}),
		localReply: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_proxy_local_replies_total",
			Help: "Responses written by the proxy itself, by reason (the x-outrigger-error value).",
		}, []string{"reason"}),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_proxy_fallbacks_total",
			Help: "Requests answered by their route's fallback, by listener, route and the reason the primary cluster could not take them.",
		}, []string{"listener", "route", "reason"}),
		faults: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_proxy_faults_injected_total",
			Help: "Requests a route's fault injection delayed or aborted, by listener, route and fault (delay, abort).",
		}, []string{"listener", "route", "fault"}),
		mirrored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_proxy_mirrored_requests_total",
			Help: "Copies of a route's requests for its mirror clusters, by listener, route, mirror cluster and result (sent, failed, dropped_body, dropped_overflow).",
		}, []string{"listener", "route", "cluster", "result"}),
		authzDenied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_proxy_authorization_denied_total",
			Help: "Requests refused by the authorization rules (403 rbac_denied), by listener and rule: the deny rule that matched, or \"\" when the listener has allow rules and none matched.",
		}, []string{"listener", "rule"}),
		underscores: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_proxy_dropped_headers_with_underscores_total",
			Help: "Request header and trailer fields dropped for an underscore in their name (headers_with_underscores: drop), by listener.",
		}, []string{"listener"}),
		downConns: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "outrigger_proxy_downstream_connections",
			Help: "Open client connections by listener (HTTP/1.1 and HTTP/2; an upgraded one while its tunnel lasts), which listeners.<listener>.max_connections caps.",
		}, []string{"listener"}),
		downOverflow: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_proxy_downstream_connections_overflow_total",
			Help: "Client connections closed as soon as accepted because their listener had max_connections open, by listener.",
		}, []string{"listener"}),
		downTLSFail: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_proxy_downstream_tls_handshake_failures_total",
			Help: "Client connections a listener with tls closed because their TLS handshake failed, by listener and reason (no_client_cert, bad_client_cert, timeout, closed, protocol, other).",
		}, []string{"listener", "reason"}),
		generation: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "outrigger_proxy_config_generation",
			Help: "Generation of the configuration the proxy serves; increases by one per successful Apply.",
		}),
	}
	for r := Reason(0); r < numReasons; r++ {
		m.localByCode[r] = m.localReply.WithLabelValues(r.String())
	}
	allowed := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "outrigger_proxy_authorization_allowed_total",
		Help: "Requests a listener's authorization rules let through, by listener (counted on a listener with rules only).",
	}, []string{"listener"})
	for l := Listener(0); l < numListeners; l++ {
		m.authzAllowed[l] = allowed.WithLabelValues(l.String())
		m.underscoresDropped[l] = m.underscores.WithLabelValues(l.String())
		m.downConns.WithLabelValues(l.String())
		m.downOverflow.WithLabelValues(l.String())
		for r := handshakeReason(0); r < numHandshakeReasons; r++ {
			m.downTLSFailed[l][r] = m.downTLSFail.WithLabelValues(l.String(), r.String())
		}
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, m.active, m.conns, m.retries, m.connectFail, m.localReply, m.fallbacks, m.faults, m.mirrored, m.authzDenied, allowed, m.underscores, m.downConns, m.downOverflow, m.downTLSFail, m.generation)
	}
	return m
}

// routeStats are the pre-resolved children for one (listener, route,
// cluster) triple.
type routeStats struct {
	byClass  [6]prometheus.Counter // index status/100; 0 for anything else
	duration prometheus.Observer
}

func (m *metrics) routeStats(listener, route, cluster string) *routeStats {
	m.next.routes[[3]string{listener, route, cluster}] = struct{}{}
	s := &routeStats{duration: m.duration.WithLabelValues(listener, route, cluster)}
	classes := [6]string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"}
	for i, c := range classes {
		s.byClass[i] = m.requests.WithLabelValues(listener, route, cluster, c)
	}
	return s
}

func (s *routeStats) record(status int, seconds float64) {
	i := status / 100
	if i < 1 || i > 5 {
		i = 0
	}
	s.byClass[i].Inc()
	s.duration.Observe(seconds)
}

type clusterMetrics struct {
	active  prometheus.Gauge
	retries prometheus.Counter
	// connectFail counts by connectReason; every reason's series is
	// there from the start, so that a request of a snapshot a reload
	// replaced never creates one for a cluster the reload removed.
	connectFail [numConnectReasons]prometheus.Counter
}

func (m *metrics) clusterMetrics(name string) clusterMetrics {
	m.next.clusters[name] = struct{}{}
	cm := clusterMetrics{
		active:  m.active.WithLabelValues(name),
		retries: m.retries.WithLabelValues(name),
	}
	for r := range connectReason(numConnectReasons) {
		cm.connectFail[r] = m.connectFail.WithLabelValues(name, r.String())
	}
	return cm
}

// Series read at the scrape, per serving cluster.
var (
	skippedDesc = prometheus.NewDesc("outrigger_breaker_ejections_skipped_total",
		"Outlier detections that ejected no endpoint, per cluster and reason: overflow (the max_ejection_percent cap), not_enforced (an enforcing_* percentage below 100).",
		[]string{"cluster", "reason"}, nil)
	zoneShareDesc = prometheus.NewDesc("outrigger_proxy_zone_local_share",
		"Share of picks (0 to 1) a zone-aware cluster sends to the endpoints of the sidecar's own zone, by cluster.",
		[]string{"cluster"}, nil)
	rateLimitTokensDesc = prometheus.NewDesc("outrigger_proxy_rate_limit_tokens",
		"Tokens left in a route's rate limit bucket (routes[].rate_limit), by listener and route.",
		[]string{"listener", "route"}, nil)
)

// scrapeCollector exports what the serving snapshot's clusters hold as
// it is at the scrape: each detector's skipped ejections (the detector
// keeps the counts and shares them with the one a reload builds), and
// each zone-aware cluster's local share (which follows health checks,
// ejections and their expiry, so a gauge set on a change would need a
// hook on each); and each route's rate limit tokens, which requests take
// without a metric to update and time gives back. Such series have
// nothing to bind or delete: a cluster a reload removed, or turned
// zone_aware off for, and a route without a rate limit, are no longer
// exported.
type scrapeCollector struct{ p *Proxy }

func (c scrapeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- skippedDesc
	ch <- zoneShareDesc
	ch <- rateLimitTokensDesc
}

func (c scrapeCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.p.snap.Load()
	if s == nil {
		return
	}
	now := c.p.now()
	for name, cl := range s.clusters {
		refused, notEnforced := cl.res.det.Skipped()
		ch <- prometheus.MustNewConstMetric(skippedDesc, prometheus.CounterValue, float64(refused), name, "overflow")
		ch <- prometheus.MustNewConstMetric(skippedDesc, prometheus.CounterValue, float64(notEnforced), name, "not_enforced")
		if cl.zone != nil {
			ch <- prometheus.MustNewConstMetric(zoneShareDesc, prometheus.GaugeValue, float64(cl.localShare(now))/shareUnit, name)
		}
	}
	for l, t := range s.tables {
		for _, rt := range t.routes {
			if rt.rateLimit != nil {
				ch <- prometheus.MustNewConstMetric(rateLimitTokensDesc, prometheus.GaugeValue,
					float64(rt.rateLimit.tokens(now)), Listener(l).String(), rt.name)
			}
		}
	}
}
