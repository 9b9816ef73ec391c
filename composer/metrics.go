package composer

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are shared by every Composition registered on the same registry;
// labels are bounded to composition and call names from config, and reasons
// from the closed Reason set.
//
// A request writes only the children its Composition bound when it was built
// (seriesOf), never one looked up by name: a request of a configuration a
// reload replaced, still running after DeleteSeries removed its
// composition's series, would create them again, exported for good. A child
// deleted is written to in vain, and a name that comes back gets a new one.
type metrics struct {
	requests     *prometheus.CounterVec   // composition, result
	duration     *prometheus.HistogramVec // composition
	callDuration *prometheus.HistogramVec // composition, call
	callFailures *prometheus.CounterVec   // composition, call, reason
	partials     *prometheus.CounterVec   // composition, call
	cache        *prometheus.CounterVec   // composition, call, result
}

// result is a composite request's outcome (label "result" of
// outrigger_composer_requests_total).
type result uint8

const (
	resultOK result = iota
	resultPartial
	resultError
	// resultCanceled: the client went away before the answer, which was
	// not written.
	resultCanceled
	numResults
)

var resultNames = [numResults]string{"ok", "partial", "error", "canceled"}

func (r result) String() string { return resultNames[r] }

// reasons is the closed Reason set, in the order of callSeries.failures.
var reasons = [...]Reason{
	ReasonBreakerOpen, ReasonTimeout, ReasonDeadline, ReasonConnect,
	ReasonUpstreamStatus, ReasonUpstreamError, ReasonTooLarge, ReasonTotalTooLarge,
	ReasonFanOut, ReasonInvalidJSON, ReasonInvalidValue, ReasonDependency, ReasonCanceled,
}

// reasonIndex is the index of r in reasons, or -1.
func reasonIndex(r Reason) int {
	for i, x := range reasons {
		if x == r {
			return i
		}
	}
	return -1
}

// compositionSeries are the children one Composition writes, bound when it
// is built.
type compositionSeries struct {
	requests [numResults]prometheus.Counter
	duration prometheus.Observer
	calls    []callSeries // by call index (callPlan.idx)
}

// callSeries are one call's children. partial exists for an optional call
// only, hit and miss for a call that caches only: no other call writes them.
type callSeries struct {
	duration  prometheus.Observer
	failures  [len(reasons)]prometheus.Counter
	partial   prometheus.Counter
	hit, miss prometheus.Counter
}

// seriesOf binds the children of composition name with plan p. Children of a
// name already bound (the same route rebuilt by a reload) are the same ones,
// so the counts go on.
func (m *metrics) seriesOf(name string, p *plan) *compositionSeries {
	s := &compositionSeries{duration: m.duration.WithLabelValues(name), calls: make([]callSeries, len(p.calls))}
	for r := range s.requests {
		s.requests[r] = m.requests.WithLabelValues(name, result(r).String())
	}
	for i, cp := range p.calls {
		cs := &s.calls[i]
		cs.duration = m.callDuration.WithLabelValues(name, cp.name)
		for k, r := range reasons {
			cs.failures[k] = m.callFailures.WithLabelValues(name, cp.name, string(r))
		}
		if cp.optional {
			cs.partial = m.partials.WithLabelValues(name, cp.name)
		}
		if cp.cacheTTL > 0 {
			cs.hit = m.cache.WithLabelValues(name, cp.name, "hit")
			cs.miss = m.cache.WithLabelValues(name, cp.name, "miss")
		}
	}
	return s
}

// DeleteSeries deletes the outrigger_composer_* series that the compositions
// of old export and none of keep does: all those of a name no composition of
// keep has, those of a call a composition of that name no longer has, and
// the partial_calls and cache_lookups series of a call no longer optional or
// no longer caching. Series that keep shares with old stay, with their
// counts. The compositions are expected to share one registry (a
// composition built without one has its own collectors, exported nowhere).
//
// Call it when a reload has swapped keep in for old (and, with old and keep
// the other way round, when a reload that built compositions failed). A
// request of old still running writes the children its composition bound,
// which a deleted series no longer exports.
func DeleteSeries(old, keep []*Composition) {
	type callKey struct{ composition, call string }
	type callUse struct{ optional, caches bool }
	names := map[string]struct{}{}
	calls := map[callKey]callUse{}
	for _, c := range keep {
		names[c.name] = struct{}{}
		for _, cp := range c.plan.calls {
			// Routes of the same name on both listeners share their
			// series: a call keeps what either of them uses.
			k := callKey{c.name, cp.name}
			u := calls[k]
			u.optional = u.optional || cp.optional
			u.caches = u.caches || cp.cacheTTL > 0
			calls[k] = u
		}
	}
	for _, c := range old {
		m := c.m
		if _, ok := names[c.name]; !ok {
			l := prometheus.Labels{"composition": c.name}
			m.requests.DeletePartialMatch(l)
			m.duration.DeletePartialMatch(l)
			m.callDuration.DeletePartialMatch(l)
			m.callFailures.DeletePartialMatch(l)
			m.partials.DeletePartialMatch(l)
			m.cache.DeletePartialMatch(l)
			continue
		}
		for _, cp := range c.plan.calls {
			l := prometheus.Labels{"composition": c.name, "call": cp.name}
			u, ok := calls[callKey{c.name, cp.name}]
			if !ok {
				m.callDuration.DeletePartialMatch(l)
				m.callFailures.DeletePartialMatch(l)
			}
			if !u.optional {
				m.partials.DeletePartialMatch(l)
			}
			if !u.caches {
				m.cache.DeletePartialMatch(l)
			}
		}
	}
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_composer_requests_total",
			Help: "Composite requests by composition and result (ok, partial, error, canceled).",
		}, []string{"composition", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "outrigger_composer_request_duration_seconds",
			Help:    "Latency of composite requests.",
			Buckets: prometheus.DefBuckets,
		}, []string{"composition"}),
		callDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "outrigger_composer_call_duration_seconds",
			Help:    "Latency of each backend call of a composition (a fan-out call counts once, from its start to the end of its last element).",
			Buckets: prometheus.DefBuckets,
		}, []string{"composition", "call"}),
		callFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_composer_call_failures_total",
			Help: "Failed or skipped backend calls by composition, call and reason.",
		}, []string{"composition", "call", "reason"}),
		partials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_composer_partial_calls_total",
			Help: "Partial responses by composition and the optional call that was missing.",
		}, []string{"composition", "call"}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_composer_cache_lookups_total",
			Help: "Result-cache lookups by composition, call and result (hit, miss).",
		}, []string{"composition", "call", "result"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	m.requests, err = register(reg, m.requests, err)
	m.duration, err = register(reg, m.duration, err)
	m.callDuration, err = register(reg, m.callDuration, err)
	m.callFailures, err = register(reg, m.callFailures, err)
	m.partials, err = register(reg, m.partials, err)
	m.cache, err = register(reg, m.cache, err)
	return m, err
}

// register registers c, or returns the collector already registered under the
// same description (several compositions, or a config reload, share it).
// A collector of the same name with other labels is a wiring bug: an error.
func register[C prometheus.Collector](reg prometheus.Registerer, c C, prev error) (C, error) {
	if prev != nil {
		return c, prev
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, fmt.Errorf("register composer metrics: %w", err)
	}
	return c, nil
}
