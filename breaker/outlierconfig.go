package breaker

import (
	"fmt"
	"math"
	"time"
)

// OutlierConfig configures per-endpoint outlier ejection: a cluster's
// `outlier_detection:` block. It maps field for field onto Envoy's
// outlier_detection (and panic_threshold onto
// common_lb_config.healthy_panic_threshold); the zero value is Envoy's
// defaults. The enforcing_* fields and panic_threshold are pointers because,
// as in Envoy, 0 is a meaningful value (never enforce; no panic mode) that
// differs from the default.
type OutlierConfig struct {
	// Disabled turns outlier ejection off: no endpoint is ever ejected.
	// Default false.
	Disabled bool `yaml:"disabled" json:"disabled"`

	// Consecutive5xx ejects an endpoint after this many failed calls in a
	// row — every outcome the failure classifier calls a failure, which by
	// default is HTTP 5xx, transport errors and failing gRPC statuses.
	// 0 means 5.
	Consecutive5xx int `yaml:"consecutive_5xx" json:"consecutive_5xx"`
	// ConsecutiveGatewayFailure ejects an endpoint after this many gateway
	// errors in a row (HTTP 502/503/504, gRPC UNAVAILABLE/DEADLINE_EXCEEDED,
	// connect failure, reset, timeout). 0 means 5.
	ConsecutiveGatewayFailure int `yaml:"consecutive_gateway_failure" json:"consecutive_gateway_failure"`

	// Interval is the period of the success-rate evaluation; the proxy
	// calls Detector.Evaluate at this interval. 0 means 10s.
	Interval time.Duration `yaml:"interval" json:"interval"`
	// BaseEjectionTime is the first ejection's length; the n-th ejection of
	// an endpoint lasts n times as long (n decays by one per
	// base_ejection_time the endpoint spends un-ejected). 0 means 30s.
	BaseEjectionTime time.Duration `yaml:"base_ejection_time" json:"base_ejection_time"`
	// MaxEjectionTime caps the ejection length. 0 means 300s; must be at
	// least base_ejection_time.
	MaxEjectionTime time.Duration `yaml:"max_ejection_time" json:"max_ejection_time"`
	// MaxEjectionPercent caps the share of the cluster's endpoints ejected
	// at once, in [1,100]. The cap in endpoints is floor(n × percent / 100),
	// raised to 1 if that is 0 and n ≥ 2, and lowered to n − 1: at least one
	// endpoint always stays, and a pool of one is never ejected. 0 means 10.
	MaxEjectionPercent int `yaml:"max_ejection_percent" json:"max_ejection_percent"`

	// EnforcingConsecutive5xx is the chance, in percent, that a detected
	// consecutive_5xx outlier is actually ejected. Absent means 100.
	EnforcingConsecutive5xx *int `yaml:"enforcing_consecutive_5xx,omitempty" json:"enforcing_consecutive_5xx,omitempty"`
	// EnforcingConsecutiveGatewayFailure is the same for
	// consecutive_gateway_failure. Absent means 0 (detected, not enforced),
	// as in Envoy.
	EnforcingConsecutiveGatewayFailure *int `yaml:"enforcing_consecutive_gateway_failure,omitempty" json:"enforcing_consecutive_gateway_failure,omitempty"`
	// EnforcingSuccessRate is the same for success-rate outliers. Absent
	// means 100.
	EnforcingSuccessRate *int `yaml:"enforcing_success_rate,omitempty" json:"enforcing_success_rate,omitempty"`

	// SuccessRateMinimumHosts is the number of endpoints with enough
	// requests (success_rate_request_volume) in an interval needed for the
	// success-rate evaluation to run at all. 0 means 5.
	SuccessRateMinimumHosts int `yaml:"success_rate_minimum_hosts" json:"success_rate_minimum_hosts"`
	// SuccessRateRequestVolume is the number of requests an endpoint needs
	// in an interval to take part in the success-rate evaluation. 0 means
	// 100.
	SuccessRateRequestVolume int `yaml:"success_rate_request_volume" json:"success_rate_request_volume"`
	// SuccessRateStdevFactor: an endpoint whose success rate is below
	// mean − factor × stdev of the participating endpoints is an outlier.
	// 0 means 1.9. (Envoy spells this as an integer × 1000: 1900.)
	SuccessRateStdevFactor float64 `yaml:"success_rate_stdev_factor" json:"success_rate_stdev_factor"`

	// PanicThreshold, in percent [0,100]: when fewer than this share of the
	// endpoints are un-ejected, the load balancer ignores ejections and
	// balances over all endpoints (panic mode). Absent means 50; 0 turns
	// panic mode off.
	PanicThreshold *float64 `yaml:"panic_threshold,omitempty" json:"panic_threshold,omitempty"`

	// SuccessfulActiveHealthCheckUnejectHost returns an ejected endpoint
	// to load balancing as soon as it passes an active health check (the
	// cluster's health_check) and the checker has it healthy, before its
	// ejection time is up, as Envoy's field of that name does: a pass
	// short of healthy_threshold by an endpoint failing its checks
	// returns nothing. Absent means true.
	SuccessfulActiveHealthCheckUnejectHost *bool `yaml:"successful_active_health_check_uneject_host,omitempty" json:"successful_active_health_check_uneject_host,omitempty"`
}

// Defaults of OutlierConfig (Envoy's).
const (
	DefaultConsecutive5xx                     = 5
	DefaultConsecutiveGatewayFailure          = 5
	DefaultOutlierInterval                    = 10 * time.Second
	DefaultBaseEjectionTime                   = 30 * time.Second
	DefaultMaxEjectionTime                    = 300 * time.Second
	DefaultMaxEjectionPercent                 = 10
	DefaultEnforcingConsecutive5xx            = 100
	DefaultEnforcingConsecutiveGatewayFailure = 0
	DefaultEnforcingSuccessRate               = 100
	DefaultSuccessRateMinimumHosts            = 5
	DefaultSuccessRateRequestVolume           = 100
	DefaultSuccessRateStdevFactor             = 1.9
	DefaultPanicThreshold                     = 50.0
)

// WithDefaults returns c with every zero (or absent) field replaced by its
// default. The pointers in the result are fresh.
func (c OutlierConfig) WithDefaults() OutlierConfig {
	def := func(v *int, d int) *int {
		if v == nil {
			return &d
		}
		x := *v
		return &x
	}
	if c.Consecutive5xx == 0 {
		c.Consecutive5xx = DefaultConsecutive5xx
	}
	if c.ConsecutiveGatewayFailure == 0 {
		c.ConsecutiveGatewayFailure = DefaultConsecutiveGatewayFailure
	}
	if c.Interval == 0 {
		c.Interval = DefaultOutlierInterval
	}
	if c.BaseEjectionTime == 0 {
		c.BaseEjectionTime = DefaultBaseEjectionTime
	}
	if c.MaxEjectionTime == 0 {
		c.MaxEjectionTime = max(DefaultMaxEjectionTime, c.BaseEjectionTime)
	}
	if c.MaxEjectionPercent == 0 {
		c.MaxEjectionPercent = DefaultMaxEjectionPercent
	}
	c.EnforcingConsecutive5xx = def(c.EnforcingConsecutive5xx, DefaultEnforcingConsecutive5xx)
	c.EnforcingConsecutiveGatewayFailure = def(c.EnforcingConsecutiveGatewayFailure, DefaultEnforcingConsecutiveGatewayFailure)
	c.EnforcingSuccessRate = def(c.EnforcingSuccessRate, DefaultEnforcingSuccessRate)
	if c.SuccessRateMinimumHosts == 0 {
		c.SuccessRateMinimumHosts = DefaultSuccessRateMinimumHosts
	}
	if c.SuccessRateRequestVolume == 0 {
		c.SuccessRateRequestVolume = DefaultSuccessRateRequestVolume
	}
	if c.SuccessRateStdevFactor == 0 {
		c.SuccessRateStdevFactor = DefaultSuccessRateStdevFactor
	}
	p := DefaultPanicThreshold
	if c.PanicThreshold != nil {
		p = *c.PanicThreshold
	}
	c.PanicThreshold = &p
	uneject := c.SuccessfulActiveHealthCheckUnejectHost == nil || *c.SuccessfulActiveHealthCheckUnejectHost
	c.SuccessfulActiveHealthCheckUnejectHost = &uneject
	return c
}

// Validate reports every invalid field, with paths relative to
// OutlierConfig ("max_ejection_percent: ...").
func (c OutlierConfig) Validate() error {
	var l errorList
	nonNeg := func(path string, v int) {
		if v < 0 {
			l.add(path, "must not be negative")
		}
	}
	nonNeg("consecutive_5xx", c.Consecutive5xx)
	nonNeg("consecutive_gateway_failure", c.ConsecutiveGatewayFailure)
	if c.Interval < 0 {
		l.add("interval", "must not be negative")
	}
	if c.BaseEjectionTime < 0 {
		l.add("base_ejection_time", "must not be negative")
	}
	base := c.BaseEjectionTime
	if base == 0 {
		base = DefaultBaseEjectionTime
	}
	if c.MaxEjectionTime < 0 {
		l.add("max_ejection_time", "must not be negative")
	} else if c.MaxEjectionTime > 0 && c.MaxEjectionTime < base {
		l.add("max_ejection_time", fmt.Sprintf("must be at least base_ejection_time (%v)", base))
	}
	if c.MaxEjectionPercent < 0 || c.MaxEjectionPercent > 100 {
		l.add("max_ejection_percent", "must be in [1,100]")
	}
	pct := func(path string, v *int) {
		if v != nil && (*v < 0 || *v > 100) {
			l.add(path, "must be in [0,100]")
		}
	}
	pct("enforcing_consecutive_5xx", c.EnforcingConsecutive5xx)
	pct("enforcing_consecutive_gateway_failure", c.EnforcingConsecutiveGatewayFailure)
	pct("enforcing_success_rate", c.EnforcingSuccessRate)
	nonNeg("success_rate_minimum_hosts", c.SuccessRateMinimumHosts)
	nonNeg("success_rate_request_volume", c.SuccessRateRequestVolume)
	if !(c.SuccessRateStdevFactor >= 0) || math.IsInf(c.SuccessRateStdevFactor, 0) {
		l.add("success_rate_stdev_factor", "must be a non-negative number")
	}
	if p := c.PanicThreshold; p != nil && !(*p >= 0 && *p <= 100) {
		l.add("panic_threshold", "must be in [0,100]")
	}
	return l.err()
}

// maxEjected is the cap on ejected endpoints in a pool of n: floor(n × pct /
// 100), at least 1 when n ≥ 2, at most n − 1.
func maxEjected(n, pct int) int {
	m := n * pct / 100
	if m < 1 && n >= 2 {
		m = 1
	}
	return min(m, max(n-1, 0))
}
