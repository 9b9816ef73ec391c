package proxy

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the proxy's collectors, registered once on the injected
// registry. Per-request code uses children resolved at Apply time
// (routeStats, clusterMetrics), never WithLabelValues.
type metrics struct {
	requests    *prometheus.CounterVec   // listener, route, cluster, code_class
	duration    *prometheus.HistogramVec // listener, route, cluster
	active      *prometheus.GaugeVec     // cluster
	conns       *prometheus.GaugeVec     // cluster, endpoint
	retries     *prometheus.CounterVec   // cluster
	localReply  *prometheus.CounterVec   // reason
	fallbacks   *prometheus.CounterVec   // listener, route, reason
	generation  prometheus.Gauge
	localByCode [numReasons]prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
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
		localReply: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_proxy_local_replies_total",
			Help: "Responses written by the proxy itself, by reason (the x-outrigger-error value).",
		}, []string{"reason"}),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_proxy_fallbacks_total",
			Help: "Requests answered by their route's fallback, by listener, route and the reason the primary cluster could not take them.",
		}, []string{"listener", "route", "reason"}),
		generation: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "outrigger_proxy_config_generation",
			Help: "Generation of the configuration the proxy serves; increases by one per successful Apply.",
		}),
	}
	for r := Reason(0); r < numReasons; r++ {
		m.localByCode[r] = m.localReply.WithLabelValues(r.String())
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, m.active, m.conns, m.retries, m.localReply, m.fallbacks, m.generation)
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
}

func (m *metrics) clusterMetrics(name string) clusterMetrics {
	return clusterMetrics{
		active:  m.active.WithLabelValues(name),
		retries: m.retries.WithLabelValues(name),
	}
}
