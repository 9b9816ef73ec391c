package proxy

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/outrigger-mesh/outrigger/breaker"
	"github.com/outrigger-mesh/outrigger/proxy/config"
	"github.com/outrigger-mesh/outrigger/proxy/health"
)

// resilience is a cluster's circuit breaker, resource limits, outlier
// detector and failure classifier. It outlives snapshots: a reload that
// leaves a cluster's blocks unchanged keeps its breaker state and
// ejections, and every reload that keeps the cluster keeps its limit
// counts (one that changes the limits block puts the new limits on
// them, see breaker.Limits.Reconfigure).
type resilience struct {
	name   string
	cc     resilienceConfig
	br     *breaker.Breaker
	limits *breaker.Limits
	det    *breaker.Detector
	cls    *breaker.Classifier
	// hc is the active health checker (nil without health_check), hcKey
	// what it depends on; panicPct is outlier_detection.panic_threshold.
	hc    *health.Checker
	hcKey healthKey
	// hcUneject is the detector hc's passed checks return ejected
	// endpoints to (outlier_detection.successful_active_health_check_uneject_host),
	// nil for none; shared by the resiliences that keep hc, and set by
	// publish to the serving detector.
	hcUneject *atomic.Pointer[breaker.Detector]
	panicPct  float64
	interval  time.Duration
	endpoints []string
	// gone is set once the cluster is removed by a reload; it is shared
	// by every resilience of the same cluster from its first snapshot on,
	// so that a health checker built for it is not given series (see
	// startHealth). The hooks of its breaker and detector need no such
	// test: they write the series bound when they were built (see
	// breakerSeries).
	gone *atomic.Bool
	// detRetired is set once det is no longer the serving detector of the
	// cluster (a reload built another, which carried its ejections over):
	// det's hook then reports nothing, as calls of the old snapshot that
	// still ask det would report the carried ejections a second time (the
	// ejected gauge dropping twice for one return, "endpoint returned"
	// logged twice).
	detRetired *atomic.Bool
	// brRetired is set once br is no longer the serving breaker of the
	// cluster (a reload changed circuit_breaker and built another): br's
	// hook then reports nothing, as calls of the old snapshot that still
	// report to br may trip it, and the state gauge, the transitions and
	// the log would tell of a breaker that no longer decides anything.
	brRetired *atomic.Bool

	rejected [breaker.NumLimits + 2]prometheus.Counter // by reject reason, see rejectIndex
}

type resilienceConfig struct {
	breaker    breaker.Config
	limits     breaker.LimitsConfig
	outlier    breaker.OutlierConfig
	classifier breaker.ClassifierConfig
}

// breakerMetrics are the breaker-related collectors.
type breakerMetrics struct {
	state       *prometheus.GaugeVec   // cluster
	transitions *prometheus.CounterVec // cluster, to
	rejected    *prometheus.CounterVec // cluster, reason
	ejections   *prometheus.CounterVec // cluster
	ejected     *prometheus.GaugeVec   // cluster
}

func newBreakerMetrics(reg prometheus.Registerer) *breakerMetrics {
	m := &breakerMetrics{
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "outrigger_breaker_state",
			Help: "Circuit breaker state per cluster: 0 closed, 1 open, 2 half_open, 3 forced_open, 4 forced_closed.",
		}, []string{"cluster"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_breaker_transitions_total",
			Help: "Circuit breaker state changes per cluster, by the state entered.",
		}, []string{"cluster", "to"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_breaker_rejected_total",
			Help: "Upstream calls refused before being made, by cluster and reason (open, half_open, max_connections, max_pending_requests, max_requests, max_retries).",
		}, []string{"cluster", "reason"}),
		ejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_breaker_ejections_total",
			Help: "Endpoints ejected by outlier detection, per cluster.",
		}, []string{"cluster"}),
		ejected: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "outrigger_breaker_ejected_endpoints",
			Help: "Endpoints currently ejected by outlier detection, per cluster.",
		}, []string{"cluster"}),
	}
	if reg != nil {
		reg.MustRegister(m.state, m.transitions, m.rejected, m.ejections, m.ejected)
	}
	return m
}

// breakerSeries are the series a cluster's breaker and detector hooks
// write, bound when the breaker or detector is built. A hook never looks
// a series up by its labels: one of a cluster a reload removed, still
// finishing calls of the old snapshot, would create again a series the
// reload deleted (WithLabelValues does), for good. A test of a "removed"
// flag before the lookup leaves the window between the two; a bound
// series, once deleted, is no longer exported, whatever is written to it.
type breakerSeries struct {
	state       prometheus.Gauge
	transitions [breaker.NumStates]prometheus.Counter
	ejections   prometheus.Counter
	ejected     prometheus.Gauge
}

// bind returns cluster name's series, creating those it lacks.
func (m *breakerMetrics) bind(name string) *breakerSeries {
	s := &breakerSeries{
		state:     m.state.WithLabelValues(name),
		ejections: m.ejections.WithLabelValues(name),
		ejected:   m.ejected.WithLabelValues(name),
	}
	for st := range breaker.State(breaker.NumStates) {
		s.transitions[st] = m.transitions.WithLabelValues(name, st.String())
	}
	return s
}

// deleteCluster removes every series of cluster name.
func (m *breakerMetrics) deleteCluster(name string) {
	l := prometheus.Labels{"cluster": name}
	m.state.DeletePartialMatch(l)
	m.transitions.DeletePartialMatch(l)
	m.rejected.DeletePartialMatch(l)
	m.ejections.DeletePartialMatch(l)
	m.ejected.DeletePartialMatch(l)
}

// rejectIndex maps a reject reason to a slot of resilience.rejected.
func rejectIndex(reason string) int {
	switch reason {
	case "open":
		return int(breaker.NumLimits)
	case "half_open":
		return int(breaker.NumLimits) + 1
	}
	for k := breaker.Limit(0); k < breaker.NumLimits; k++ {
		if k.String() == reason {
			return int(k)
		}
	}
	return int(breaker.NumLimits)
}

func (r *resilience) countReject(reason string) { r.rejected[rejectIndex(reason)].Inc() }

// buildResilience returns the resilience of cluster name for cc, reusing
// the parts of old (same name, previous snapshot) whose config is
// unchanged. It does not modify old.
func (p *Proxy) buildResilience(name string, cc config.Cluster, old *resilience) (*resilience, error) {
	rc := resilienceConfig{breaker: cc.CircuitBreaker, limits: cc.Limits, outlier: cc.OutlierDetection, classifier: cc.FailureClassifier}
	r := &resilience{name: name, cc: rc, gone: new(atomic.Bool)}
	if old != nil {
		r.gone = old.gone
	}
	for _, e := range cc.Endpoints {
		r.endpoints = append(r.endpoints, e.Address)
	}
	var err error
	if r.cls, err = breaker.NewClassifier(rc.classifier); err != nil {
		return nil, prefixErr("failure_classifier", err)
	}
	if old != nil && reflect.DeepEqual(old.cc.breaker, rc.breaker) {
		r.br, r.brRetired = old.br, old.brRetired
	} else {
		series := p.bm.bind(name)
		retired := new(atomic.Bool)
		r.brRetired = retired
		// An operator's override outlives the breaker it was set on
		// (SetBreaker holds applyMu, so none is set meanwhile).
		var opts []breaker.Option
		if old != nil {
			if st := old.br.Snapshot(p.now()); st.State == breaker.StateForcedOpen || st.State == breaker.StateForcedClosed {
				opts = append(opts, breaker.WithForcedState(st.State, st.Since))
			}
		}
		r.br, err = breaker.New(rc.breaker, append(opts, breaker.WithStateChangeHook(func(sc breaker.StateChange) {
			if retired.Load() {
				return
			}
			if hold := p.beforeHookSeries; hold != nil {
				hold(name)
			}
			series.state.Set(float64(sc.To))
			series.transitions[sc.To].Inc()
			fields := []zap.Field{zap.String("cluster", name), zap.Stringer("from", sc.From), zap.Stringer("to", sc.To), zap.String("reason", sc.Reason)}
			if !sc.OpenUntil.IsZero() {
				fields = append(fields, zap.Time("open_until", sc.OpenUntil), zap.Int("openings", sc.Openings))
			}
			p.log.Warn("circuit breaker state change", fields...)
		}))...)
		if err != nil {
			return nil, prefixErr("circuit_breaker", err)
		}
	}
	switch {
	case old != nil && reflect.DeepEqual(old.cc.limits, rc.limits):
		r.limits = old.limits
	case old != nil:
		// New limits on the old counts: the calls in flight and the
		// connections open (idle ones in a kept pool too) were counted
		// by the old Limits, and give their counts back through it. New
		// counts would let them and as many new ones in as the limits
		// allow, max_connections exceeded for as long as the old
		// connections stay open.
		if r.limits, err = old.limits.Reconfigure(rc.limits); err != nil {
			return nil, prefixErr("limits", err)
		}
	default:
		if r.limits, err = breaker.NewLimits(rc.limits); err != nil {
			return nil, prefixErr("limits", err)
		}
	}
	if old != nil && reflect.DeepEqual(old.cc.outlier, rc.outlier) && slices.Equal(old.endpoints, r.endpoints) {
		r.det, r.detRetired = old.det, old.detRetired
	} else {
		addrs := r.endpoints
		series := p.bm.bind(name)
		retired := new(atomic.Bool)
		r.detRetired = retired
		r.det, err = breaker.NewDetector(rc.outlier, len(addrs), breaker.WithEjectionHook(func(e breaker.Ejection) {
			if retired.Load() {
				return
			}
			ep := ""
			if e.Endpoint >= 0 && e.Endpoint < len(addrs) {
				ep = addrs[e.Endpoint]
			}
			if hold := p.beforeHookSeries; hold != nil {
				hold(name)
			}
			if e.Ejected {
				series.ejections.Inc()
				series.ejected.Inc()
			} else {
				series.ejected.Dec()
			}
			if e.Ejected {
				p.log.Warn("endpoint ejected", zap.String("cluster", name), zap.String("endpoint", ep),
					zap.String("reason", e.Reason), zap.Time("until", e.Until), zap.Uint64("times_ejected", e.TimesEjected))
			} else {
				p.log.Info("endpoint returned", zap.String("cluster", name), zap.String("endpoint", ep), zap.String("reason", e.Reason))
			}
		}))
		if err != nil {
			return nil, prefixErr("outlier_detection", err)
		}
		if old != nil {
			oldIdx := map[string]int{}
			for i, a := range old.endpoints {
				oldIdx[a] = i
			}
			r.det.CarryFrom(old.det, p.now(), func(i int) (int, bool) {
				j, ok := oldIdx[addrs[i]]
				return j, ok
			})
		}
	}
	r.interval = r.det.Config().Interval
	if pt := r.det.Config().PanicThreshold; pt != nil {
		r.panicPct = *pt
	}
	if err := p.buildHealth(name, cc, r, old); err != nil {
		return nil, prefixErr("health_check", err)
	}
	for i := range r.rejected {
		reason := "open"
		switch {
		case i < int(breaker.NumLimits):
			reason = breaker.Limit(i).String()
		case i == int(breaker.NumLimits)+1:
			reason = "half_open"
		}
		r.rejected[i] = p.bm.rejected.WithLabelValues(name, reason)
	}
	return r, nil
}

// publish sets the gauges of a resilience the serving snapshot just took
// on: a new breaker's state and a new detector's ejections (with what it
// carried over), after which the ones they replace report nothing more;
// and points the health checker's returns at the serving detector. A
// compile that fails never gets here, so the gauges keep describing the
// serving breaker and detector. Caller holds applyMu.
func (p *Proxy) publish(name string, r, old *resilience) {
	if old == nil || old.br != r.br {
		if old != nil && old.brRetired != nil {
			old.brRetired.Store(true)
		}
		p.bm.state.WithLabelValues(name).Set(float64(r.br.State()))
	}
	if old == nil || old.det != r.det {
		if old != nil && old.detRetired != nil {
			old.detRetired.Store(true)
		}
		p.bm.ejected.WithLabelValues(name).Set(float64(r.det.Snapshot(p.now()).Ejected))
	}
	if r.hcUneject != nil {
		var d *breaker.Detector
		if *r.det.Config().SuccessfulActiveHealthCheckUnejectHost {
			d = r.det
		}
		r.hcUneject.Store(d)
	}
}

func prefixErr(key string, err error) error {
	var fe breaker.FieldErrors
	if errors.As(err, &fe) {
		return fe.WithPrefix(key)
	}
	return fmt.Errorf("%s: %w", key, err)
}

// breakerReply is the local reply for a call the breaker or a limit
// refused.
func (f *forwarding) breakerReply(err error) localReply {
	reason := breaker.RejectReason(err)
	f.c.res.countReject(reason)
	lr := localReply{extra: [][2]string{{hdrBreaker, reason}}}
	var oe *breaker.OpenError
	switch {
	case errors.As(err, &oe) || errors.Is(err, breaker.ErrTooManyProbes):
		lr.reason = ReasonBreakerOpen
		lr.detail = "circuit breaker open for cluster " + f.c.name
		if oe != nil {
			if ra := oe.RetryAfter(f.p.now()); ra > 0 {
				lr.extra = append(lr.extra, [2]string{"Retry-After", strconv.FormatInt(int64(ra/time.Second), 10)})
			}
		}
	default:
		lr.reason = ReasonOverflow
		lr.detail = reason + " reached for cluster " + f.c.name
	}
	return lr
}

// outcome builds the classifier input for one attempt.
func outcome(kind failKind, status, grpcStatus int) breaker.Outcome {
	o := breaker.Outcome{HTTPStatus: status, GRPCStatus: grpcStatus}
	switch kind {
	case failConnect:
		o.Transport = breaker.TransportConnectFailure
	case failReset, failRefused:
		o.Transport = breaker.TransportReset
	case failTimeout:
		o.Transport = breaker.TransportTimeout
	}
	return o
}
