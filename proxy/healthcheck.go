package proxy

import (
	"crypto/tls"
	"fmt"
	"reflect"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/outrigger-mesh/outrigger/proxy/config"
	"github.com/outrigger-mesh/outrigger/proxy/health"
)

// Active health checking (clusters.*.health_check): a cluster's
// health.Checker outlives snapshots like its outlier detector. A reload
// keeps the running checker when the block, the endpoints and what the
// probes depend on (protocol, TLS) are unchanged; otherwise it builds a
// new one that carries the state of the endpoints it keeps, starts it once
// the new snapshot is swapped in, and closes the old one.

// The result label values of outrigger_health_checks_total.
const healthCheckSuccess, healthCheckFailure = "success", "failure"

// healthKey is what a running checker depends on.
type healthKey struct {
	block    config.HealthCheck
	protocol config.Protocol
	tls      config.TLS
}

// healthMetrics are the health-check collectors.
type healthMetrics struct {
	checks    *prometheus.CounterVec // cluster, result
	unhealthy *prometheus.GaugeVec   // cluster
}

func newHealthMetrics(reg prometheus.Registerer) *healthMetrics {
	m := &healthMetrics{
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_health_checks_total",
			Help: "Active health checks finished, by cluster and result (success, failure).",
		}, []string{"cluster", "result"}),
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
	key := healthKey{block: *cc.HealthCheck, protocol: cc.Protocol, tls: cc.TLS}
	r.hcKey = key
	if old != nil && old.hc != nil && reflect.DeepEqual(old.hcKey, key) && slices.Equal(old.endpoints, r.endpoints) {
		r.hc = old.hc
		return nil
	}
	var tc *tls.Config
	if cc.TLS.Enabled {
		var err error
		if tc, err = clientTLS(cc.TLS); err != nil {
			return fmt.Errorf("tls: %w", err)
		}
	}
	hcfg := healthConfig(*cc.HealthCheck, cc.Protocol, tc)
	gone, hm, addrs := r.gone, p.hm, r.endpoints
	checks := [2]prometheus.Counter{
		hm.checks.WithLabelValues(name, healthCheckSuccess),
		hm.checks.WithLabelValues(name, healthCheckFailure),
	}
	unhealthy := hm.unhealthy.WithLabelValues(name)
	var hc *health.Checker // set before Start, so before any hook runs
	hc, err := health.New(hcfg, addrs,
		health.WithResultHook(func(_ int, err error) {
			if gone.Load() {
				return
			}
			if err == nil {
				checks[0].Inc()
			} else {
				checks[1].Inc()
			}
		}),
		health.WithTransitionHook(func(t health.Transition) {
			if !gone.Load() {
				unhealthy.Set(float64(hc.UnhealthyCount()))
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
	if old != nil && old.hc != nil {
		oldIdx := make(map[string]int, len(old.endpoints))
		for i, a := range old.endpoints {
			oldIdx[a] = i
		}
		hc.CarryFrom(old.hc, func(i int) (int, bool) {
			j, ok := oldIdx[addrs[i]]
			return j, ok
		})
	}
	r.hc = hc
	p.hcPending = append(p.hcPending, pendingHealth{hc, unhealthy, gone})
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
		c.HTTP2 = proto == config.ProtocolHTTP2 || proto == config.ProtocolGRPC
	case b.GRPC != nil:
		c.Kind = health.GRPC
		c.Service = b.GRPC.Service
	default:
		c.Kind = health.TCP
	}
	return c
}

// pendingHealth is a checker built by a compile, not yet started.
type pendingHealth struct {
	hc        *health.Checker
	unhealthy prometheus.Gauge
	gone      *atomic.Bool
}

// startHealth starts the checkers the last compile built, or closes them
// when the compile failed (ok false) or the proxy was shut down. Caller
// holds applyMu.
func (p *Proxy) startHealth(ok bool) {
	for _, ph := range p.hcPending {
		if !ok || p.hcStopped {
			ph.hc.Close()
			continue
		}
		if !ph.gone.Load() {
			// The state carried over from the checker it replaces.
			ph.unhealthy.Set(float64(ph.hc.UnhealthyCount()))
		}
		ph.hc.Start()
	}
	p.hcPending = nil
}

// retireHealth closes the checkers of old that the serving resilience res
// no longer uses. Caller holds applyMu.
func retireHealth(old, res map[string]*resilience) {
	for name, o := range old {
		if o.hc == nil {
			continue
		}
		if n, ok := res[name]; ok && n.hc == o.hc {
			continue
		}
		o.hc.Close()
	}
}

// panic reports whether the cluster balances over all its endpoints: when
// fewer than outlier_detection.panic_threshold percent are neither ejected
// nor failing their health check (Envoy's healthy panic threshold). Two
// atomic loads while every endpoint passes its check.
func (r *resilience) panic(now time.Time) bool {
	if r.hc == nil || r.hc.UnhealthyCount() == 0 {
		return r.det.Panic(now)
	}
	if r.panicPct <= 0 {
		return false
	}
	n, ok := r.hc.Len(), 0
	for i := range n {
		if r.hc.Healthy(i) && !r.det.Ejected(i, now) {
			ok++
		}
	}
	return float64(ok)*100 < r.panicPct*float64(n)
}

// eligible reports whether endpoint i may take an attempt outside panic
// mode: not ejected, and passing its health check if it has one.
func (r *resilience) eligible(i int, now time.Time) bool {
	return !r.det.Ejected(i, now) && (r.hc == nil || r.hc.Healthy(i))
}
