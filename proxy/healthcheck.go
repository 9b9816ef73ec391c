package proxy

import (
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/outrigger-mesh/outrigger/breaker"
	"github.com/outrigger-mesh/outrigger/proxy/config"
	"github.com/outrigger-mesh/outrigger/proxy/health"
)

// Active health checking (clusters.*.health_check): a cluster's
// health.Checker outlives snapshots like its outlier detector. A reload
// keeps the running checker when the block, the endpoint addresses and
// what the probes depend on (protocol, TLS) are unchanged; otherwise it
// builds a new one that carries the state of the endpoints it keeps and,
// once the new snapshot is swapped in, closes the old one and starts the
// new one (see startHealth).

// The result label values of outrigger_health_checks_total. A failure's
// reason label is its health.Cause, a success's is empty (so that it has
// no reason label in the exposition).
const healthCheckSuccess, healthCheckFailure = "success", "failure"

// healthKey is what a running checker depends on. The block holds port
// and http.request_headers with the rest: a reload that changes only the
// port (or a header) builds a checker that dials the new port (sends the
// new headers), and the state of the endpoints, known by their own
// addresses, carries over to it.
type healthKey struct {
	block    config.HealthCheck
	protocol config.Protocol
	tls      config.TLS
	tlsFiles [sha256.Size]byte // tls.FilesSum(), as for transportKey
}

// healthMetrics are the health-check collectors.
type healthMetrics struct {
	checks    *prometheus.CounterVec // cluster, result, reason
	unhealthy *prometheus.GaugeVec   // cluster
}

func newHealthMetrics(reg prometheus.Registerer) *healthMetrics {
	m := &healthMetrics{
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_health_checks_total",
			Help: "Active health checks finished, by cluster, result (success, failure) and a failure's reason (timeout, connect, tls, status, grpc, protocol).",
		}, []string{"cluster", "result", "reason"}),
		unhealthy: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "outrigger_health_unhealthy_endpoints",
			Help: "Endpoints that fail their active health check, per cluster.",
		}, []string{"cluster"}),
	}
	if reg != nil {
		reg.MustRegister(m.checks, m.unhealthy)
	}
	return m
}

func (m *healthMetrics) deleteCluster(name string) {
	l := prometheus.Labels{"cluster": name}
	m.checks.DeletePartialMatch(l)
	m.unhealthy.DeletePartialMatch(l)
}

// buildHealth sets r.hc for cluster name: old's checker when nothing it
// depends on changed, else a new one (not started: Apply starts it with
// the snapshot) carrying old's state per endpoint address.
func (p *Proxy) buildHealth(name string, cc config.Cluster, r, old *resilience) error {
	if cc.HealthCheck == nil {
		return nil
	}
	key := healthKey{block: *cc.HealthCheck, protocol: cc.Protocol, tls: cc.TLS, tlsFiles: cc.TLS.FilesSum()}
	r.hcKey = key
	if old != nil && old.hc != nil && reflect.DeepEqual(old.hcKey, key) && slices.Equal(old.endpoints, r.endpoints) {
		r.hc, r.hcUneject = old.hc, old.hcUneject
		return nil
	}
	var tc *tls.Config
	if cc.TLS.Enabled {
		var err error
		if tc, err = clientTLS(cc.TLS); err != nil {
			return fmt.Errorf("tls: %w", err)
		}
	}
	ph := &pendingHealth{gone: r.gone}
	gone := r.gone
	uneject := new(atomic.Pointer[breaker.Detector])
	r.hcUneject = uneject
	hc, err := health.New(healthConfig(*cc.HealthCheck, cc.Protocol, tc), r.endpoints,
		// The hooks run on the checker's goroutines, so after Start, by
		// which time startHealth has bound ph.series. (The nil and gone
		// tests are guards: a started checker's cluster is serving.)
		health.WithResultHook(func(i int, err error) {
			// A passed check returns an ejected endpoint only once the
			// checker has it healthy, as Envoy's does (an ejected host
			// still failing active health checking stays out): an
			// endpoint recovering from failed checks comes back at the
			// pass that reaches healthy_threshold, not at its first.
			// The hook runs after the check is recorded, on the
			// endpoint's goroutine, so Healthy(i) is this check's
			// outcome.
			if err == nil && ph.hc.Healthy(i) {
				if d := uneject.Load(); d != nil {
					d.Uneject(i, p.now())
				}
			}
			s := &ph.series
			if s.unhealthy == nil || gone.Load() {
				return
			}
			if err == nil {
				s.success.Inc()
			} else if c := s.failure[health.CauseOf(err)]; c != nil {
				c.Inc()
			}
		}),
		health.WithTransitionHook(func(t health.Transition) {
			if s := &ph.series; s.unhealthy != nil && !gone.Load() {
				s.unhealthy.Set(float64(ph.hc.UnhealthyCount()))
			}
			if t.Healthy {
				p.log.Info("endpoint passes its health check", zap.String("cluster", name), zap.String("endpoint", t.Addr))
			} else {
				p.log.Warn("endpoint fails its health check", zap.String("cluster", name), zap.String("endpoint", t.Addr),
					zap.String("reason", t.Reason))
			}
		}))
	if err != nil {
		return err
	}
	ph.name, ph.hc = name, hc
	// Checks that never run (Options.NoHealthChecks, or after Shutdown)
	// have nothing to carry, and must not leave the endpoints a reload
	// adds pending for good.
	if old != nil && old.hc != nil && !p.hcStopped {
		oldIdx := make(map[string]int, len(old.endpoints))
		for i, a := range old.endpoints {
			oldIdx[a] = i
		}
		addrs := r.endpoints
		ph.old, ph.oldIndex = old.hc, func(i int) (int, bool) {
			j, ok := oldIdx[addrs[i]]
			return j, ok
		}
		// The snapshot reads the new checker from its swap on: it must
		// not start from "all healthy".
		hc.CarryFrom(ph.old, ph.oldIndex)
	}
	r.hc = hc
	p.hcPending = append(p.hcPending, ph)
	return nil
}

// healthConfig is the checker config of a health_check block with its
// defaults filled in. HTTP checks speak HTTP/2 to http2 and grpc clusters.
func healthConfig(b config.HealthCheck, proto config.Protocol, tc *tls.Config) health.Config {
	c := health.Config{
		Interval:           b.Interval,
		UnhealthyInterval:  b.UnhealthyInterval,
		Timeout:            b.Timeout,
		Jitter:             b.Jitter,
		HealthyThreshold:   b.HealthyThreshold,
		UnhealthyThreshold: b.UnhealthyThreshold,
		Port:               b.Port,
		TLS:                tc,
	}
	if c.Interval == 0 {
		c.Interval = config.DefaultHealthCheckInterval
	}
	if c.Timeout == 0 {
		c.Timeout = config.DefaultHealthCheckTimeout
	}
	if c.HealthyThreshold == 0 {
		c.HealthyThreshold = config.DefaultHealthyThreshold
	}
	if c.UnhealthyThreshold == 0 {
		c.UnhealthyThreshold = config.DefaultUnhealthyThreshold
	}
	switch {
	case b.HTTP != nil:
		c.Kind = health.HTTP
		c.Path, c.Host = b.HTTP.Path, b.HTTP.Host
		for _, s := range b.HTTP.ExpectedStatuses {
			c.Statuses = append(c.Statuses, health.StatusRange{Lo: s.Lo, Hi: s.Hi})
		}
		for _, s := range b.HTTP.RetriableStatuses {
			c.RetriableStatuses = append(c.RetriableStatuses, health.StatusRange{Lo: s.Lo, Hi: s.Hi})
		}
		c.HTTP2 = proto == config.ProtocolHTTP2 || proto == config.ProtocolGRPC
		c.Headers = checkHeaders(b.HTTP.RequestHeaders)
	case b.GRPC != nil:
		c.Kind = health.GRPC
		c.Service, c.Host = b.GRPC.Service, b.GRPC.Authority
	default:
		c.Kind = health.TCP
	}
	return c
}

// checkHeaders is the header an HTTP check adds: the entries in order, each
// replacing the values of its name, or added next to them with append.
// Nil when there is none.
func checkHeaders(hs config.HeaderValues) http.Header {
	if len(hs) == 0 {
		return nil
	}
	h := make(http.Header, len(hs))
	for _, hv := range hs {
		if hv.Append {
			h.Add(hv.Name, hv.Value)
		} else {
			h.Set(hv.Name, hv.Value)
		}
	}
	return h
}

// pendingHealth is a checker built by a compile, not yet started.
type pendingHealth struct {
	name string
	hc   *health.Checker
	gone *atomic.Bool
	// old is the checker hc replaces (nil: none), oldIndex maps hc's
	// endpoints to old's.
	old      *health.Checker
	oldIndex func(int) (int, bool)
	// series are hc's metric children, bound by startHealth before Start
	// and never written after: a compile that fails leaves no series.
	series struct {
		success   prometheus.Counter
		failure   map[health.Cause]prometheus.Counter // every cause's, read-only once bound
		unhealthy prometheus.Gauge
	}
}

// startHealth starts the checkers the last compile built, or closes them
// when the compile failed (ok false), the proxy was shut down or health
// checks are off. On success it runs after retireHealth: a replaced
// checker has stopped, so what it saw last is carried over once more and
// its hooks can no longer write the gauge the new one sets. Caller holds
// applyMu.
func (p *Proxy) startHealth(ok bool) {
	for _, ph := range p.hcPending {
		if !ok || p.hcStopped {
			ph.hc.Close()
			continue
		}
		if ph.old != nil {
			ph.hc.CarryFrom(ph.old, ph.oldIndex)
			ph.old, ph.oldIndex = nil, nil
		}
		if !ph.gone.Load() {
			// Every cause's series exists from the start, at 0, so that
			// the label set is fixed and a rate over it needs no absent().
			ph.series.success = p.hm.checks.WithLabelValues(ph.name, healthCheckSuccess, "")
			ph.series.failure = make(map[health.Cause]prometheus.Counter, len(health.Causes()))
			for _, c := range health.Causes() {
				ph.series.failure[c] = p.hm.checks.WithLabelValues(ph.name, healthCheckFailure, string(c))
			}
			ph.series.unhealthy = p.hm.unhealthy.WithLabelValues(ph.name)
			ph.series.unhealthy.Set(float64(ph.hc.UnhealthyCount()))
		}
		ph.hc.Start()
	}
	p.hcPending = nil
}

// retireHealth closes the checkers of old that the serving resilience res
// no longer uses, and drops the series of a cluster that kept its name but
// lost its health_check block. Caller holds applyMu.
func (p *Proxy) retireHealth(old, res map[string]*resilience) {
	for name, o := range old {
		if o.hc == nil {
			continue
		}
		n, kept := res[name]
		if kept && n.hc == o.hc {
			continue
		}
		o.hc.Close() // joins its hooks
		if kept && n.hc == nil {
			p.hm.deleteCluster(name)
		}
	}
}

// panic reports whether the cluster balances over all its endpoints: when
// fewer than outlier_detection.panic_threshold percent are neither ejected
// nor failing their health check (Envoy's healthy panic threshold).
// Pending endpoints (a reload added them, and they have not been checked
// yet) count on neither side, as with Envoy's
// ignore_new_hosts_until_first_hc; when every endpoint is pending, the
// cluster is as new and balances over all of them whatever the threshold.
// Two atomic loads while every endpoint passes its check; a few more
// while some fail and none is ejected.
func (r *resilience) panic(now time.Time) bool {
	if r.hc == nil {
		return r.det.Panic(now)
	}
	unhealthy, pending := r.hc.Counts()
	if unhealthy == 0 {
		return r.det.Panic(now)
	}
	n := r.hc.Len() - pending
	if n <= 0 {
		return true
	}
	if r.panicPct <= 0 {
		return false
	}
	ok := n - (unhealthy - pending)
	if r.det.EjectedCount(now) > 0 {
		// Both kinds: count endpoints that are neither (O(n), and only
		// while some endpoint is ejected and another fails its check).
		ok = 0
		for i := range r.hc.Len() {
			if r.hc.Healthy(i) && !r.det.Ejected(i, now) {
				ok++
			}
		}
	}
	return float64(ok)*100 < r.panicPct*float64(n)
}

// eligible reports whether endpoint i may take an attempt outside panic
// mode: not ejected, and passing its health check if it has one.
func (r *resilience) eligible(i int, now time.Time) bool {
	return !r.det.Ejected(i, now) && (r.hc == nil || r.hc.Healthy(i))
}
