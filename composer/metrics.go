package composer

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are shared by every Composition registered on the same registry;
// labels are bounded to composition and call names from config, and reasons
// from the closed Reason set.
type metrics struct {
	requests     *prometheus.CounterVec   // composition, result
	duration     *prometheus.HistogramVec // composition
	callDuration *prometheus.HistogramVec // composition, call
	callFailures *prometheus.CounterVec   // composition, call, reason
	partials     *prometheus.CounterVec   // composition, call
	cache        *prometheus.CounterVec   // composition, call, result
}

// Request results (label "result" of outrigger_composer_requests_total).
const (
	resultOK      = "ok"
	resultPartial = "partial"
	resultError   = "error"
	// resultCanceled: the client went away before the answer, which was
	// not written.
	resultCanceled = "canceled"
)

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
