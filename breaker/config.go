package breaker

import (
	"fmt"
	"math"
	"time"
)

// Config configures one circuit breaker: a cluster's `circuit_breaker:`
// block. The zero value is a working breaker with the defaults below: trip on
// 5 failures in a row or on a failure rate of 50% over the last 100 calls (at
// least 20 calls), stay open 5s doubling up to 1m, probe with one request at a
// time and close after 3 successful probes.
//
// The trip policies are combinable: the breaker opens when any enabled policy
// says so.
type Config struct {
	// Disabled turns every trip policy off. The breaker then stays closed
	// unless an operator forces it open. Default false.
	Disabled bool `yaml:"disabled" json:"disabled"`

	// ConsecutiveFailures trips the breaker after a run of failures with no
	// success in between.
	ConsecutiveFailures ConsecutiveFailuresConfig `yaml:"consecutive_failures" json:"consecutive_failures"`

	// FailureRate trips the breaker when the share of failed calls in the
	// sliding window reaches a threshold.
	FailureRate FailureRateConfig `yaml:"failure_rate" json:"failure_rate"`

	// SlowCalls trips the breaker when the share of slow calls in the sliding
	// window reaches a threshold. Off unless duration_threshold is set.
	SlowCalls SlowCallsConfig `yaml:"slow_calls" json:"slow_calls"`

	// Window is the sliding window over which failure_rate and slow_calls are
	// computed.
	Window WindowConfig `yaml:"window" json:"window"`

	// Open is how long the breaker stays open before it lets probes through,
	// growing exponentially over successive openings.
	Open BackoffConfig `yaml:"open" json:"open"`

	// HalfOpen is how the breaker probes the upstream after an open period.
	HalfOpen HalfOpenConfig `yaml:"half_open" json:"half_open"`
}

// ConsecutiveFailuresConfig is the consecutive-failures trip policy.
type ConsecutiveFailuresConfig struct {
	// Threshold is the number of failures in a row that trips the breaker.
	// 0 means 5.
	Threshold int `yaml:"threshold" json:"threshold"`
	// Disabled turns this policy off. Default false.
	Disabled bool `yaml:"disabled" json:"disabled"`
}

// FailureRateConfig is the failure-rate trip policy.
type FailureRateConfig struct {
	// Threshold is the share of failed calls in the window, in (0,1], at or
	// above which the breaker trips once the window holds at least
	// window.minimum_calls calls. It is checked whenever a failed or slow
	// call is recorded. 0 means 0.5.
	Threshold float64 `yaml:"threshold" json:"threshold"`
	// Disabled turns this policy off. Default false.
	Disabled bool `yaml:"disabled" json:"disabled"`
}

// SlowCallsConfig is the slow-call-rate trip policy.
type SlowCallsConfig struct {
	// DurationThreshold: a call that takes at least this long is slow,
	// whether it failed or not. 0 means the policy is off (the default).
	DurationThreshold time.Duration `yaml:"duration_threshold" json:"duration_threshold"`
	// RateThreshold is the share of slow calls in the window, in (0,1], at
	// or above which the breaker trips once the window holds at least
	// window.minimum_calls calls. It is checked whenever a failed or slow
	// call is recorded. 0 means 0.5.
	RateThreshold float64 `yaml:"rate_threshold" json:"rate_threshold"`
}

// Window types.
const (
	WindowCount = "count" // the last `size` calls
	WindowTime  = "time"  // the calls of the last `duration`, kept in `buckets`
)

// WindowConfig is the sliding window that the rate policies read.
type WindowConfig struct {
	// Type is "count" (the last size calls) or "time" (the calls of the last
	// duration). Empty means "count".
	Type string `yaml:"type" json:"type"`
	// Size is the number of calls a count window holds, at most 1<<20.
	// 0 means 100.
	Size int `yaml:"size" json:"size"`
	// Duration is the span a time window covers. 0 means 10s.
	Duration time.Duration `yaml:"duration" json:"duration"`
	// Buckets is the number of buckets a time window is kept in, 1 to 1000;
	// the window slides one bucket (duration/buckets) at a time, and each
	// bucket must span at least 1ms. 0 means 10.
	Buckets int `yaml:"buckets" json:"buckets"`
	// MinimumCalls is the number of calls the window must hold before the
	// rate policies are evaluated. For a count window it is at most Size,
	// as the window never holds more. 0 means 20, or Size for a count
	// window of fewer than 20 calls.
	MinimumCalls int `yaml:"minimum_calls" json:"minimum_calls"`
}

// BackoffConfig is the open period: Base for the first opening, multiplied by
// Multiplier for each further opening without a close in between, capped at
// Max, then shortened by up to Jitter of itself at random.
type BackoffConfig struct {
	// Base is the first open period. 0 means 5s.
	Base time.Duration `yaml:"base" json:"base"`
	// Max caps the open period. 0 means 1m. Must be at least base.
	Max time.Duration `yaml:"max" json:"max"`
	// Multiplier is the growth factor per successive opening, at least 1.
	// 0 means 2.
	Multiplier float64 `yaml:"multiplier" json:"multiplier"`
	// Jitter, in [0,1], shortens each open period by a random share of up
	// to Jitter of itself, so that sidecars that opened together do not
	// probe together. 0 means no jitter.
	Jitter float64 `yaml:"jitter" json:"jitter"`
}

// HalfOpenConfig is the probing after an open period.
type HalfOpenConfig struct {
	// MaxProbes is the number of probe requests allowed in flight at once;
	// further requests are rejected. 0 means 1.
	MaxProbes int `yaml:"max_probes" json:"max_probes"`
	// SuccessesToClose is the number of successful probes that closes the
	// breaker. Any failed (or, with slow_calls on, slow) probe re-opens it
	// for a longer period. 0 means 3.
	SuccessesToClose int `yaml:"successes_to_close" json:"successes_to_close"`
}

// Defaults of Config.
const (
	DefaultConsecutiveFailures = 5
	DefaultFailureRate         = 0.5
	DefaultSlowCallRate        = 0.5
	DefaultWindowSize          = 100
	DefaultWindowDuration      = 10 * time.Second
	DefaultWindowBuckets       = 10
	DefaultMinimumCalls        = 20
	DefaultOpenBase            = 5 * time.Second
	DefaultOpenMax             = time.Minute
	DefaultOpenMultiplier      = 2.0
	DefaultMaxProbes           = 1
	DefaultSuccessesToClose    = 3

	maxWindowSize    = 1 << 20
	maxWindowBuckets = 1000
	minBucketWidth   = time.Millisecond
)

// WithDefaults returns c with every zero field replaced by its default: the
// effective configuration, e.g. for a config dump. It does not validate.
func (c Config) WithDefaults() Config {
	if c.ConsecutiveFailures.Threshold == 0 {
		c.ConsecutiveFailures.Threshold = DefaultConsecutiveFailures
	}
	if c.FailureRate.Threshold == 0 {
		c.FailureRate.Threshold = DefaultFailureRate
	}
	if c.SlowCalls.RateThreshold == 0 {
		c.SlowCalls.RateThreshold = DefaultSlowCallRate
	}
	if c.Window.Type == "" {
		c.Window.Type = WindowCount
	}
	if c.Window.Size == 0 {
		c.Window.Size = DefaultWindowSize
	}
	if c.Window.Duration == 0 {
		c.Window.Duration = DefaultWindowDuration
	}
	if c.Window.Buckets == 0 {
		c.Window.Buckets = DefaultWindowBuckets
	}
	if c.Window.MinimumCalls == 0 {
		c.Window.MinimumCalls = DefaultMinimumCalls
		if c.Window.Type == WindowCount {
			// A count window of fewer calls would never reach the
			// default, and its rate policies would never fire
			// (Resilience4j caps it at the size too).
			c.Window.MinimumCalls = min(DefaultMinimumCalls, c.Window.Size)
		}
	}
	if c.Open.Base == 0 {
		c.Open.Base = DefaultOpenBase
	}
	if c.Open.Max == 0 {
		c.Open.Max = max(DefaultOpenMax, c.Open.Base)
	}
	if c.Open.Multiplier == 0 {
		c.Open.Multiplier = DefaultOpenMultiplier
	}
	if c.HalfOpen.MaxProbes == 0 {
		c.HalfOpen.MaxProbes = DefaultMaxProbes
	}
	if c.HalfOpen.SuccessesToClose == 0 {
		c.HalfOpen.SuccessesToClose = DefaultSuccessesToClose
	}
	return c
}

// Validate reports every invalid field, with paths relative to Config
// (e.g. "failure_rate.threshold: must be in (0,1]"). The error is a
// FieldErrors. Validate does not modify c.
func (c Config) Validate() error {
	var l errorList
	if c.ConsecutiveFailures.Threshold < 0 {
		l.add("consecutive_failures.threshold", "must not be negative")
	}
	checkRatio(&l, "failure_rate.threshold", c.FailureRate.Threshold)
	if c.SlowCalls.DurationThreshold < 0 {
		l.add("slow_calls.duration_threshold", "must not be negative")
	}
	checkRatio(&l, "slow_calls.rate_threshold", c.SlowCalls.RateThreshold)
	l.nest("window", c.Window.Validate())
	l.nest("open", c.Open.Validate())
	if c.HalfOpen.MaxProbes < 0 {
		l.add("half_open.max_probes", "must not be negative")
	}
	if c.HalfOpen.SuccessesToClose < 0 {
		l.add("half_open.successes_to_close", "must not be negative")
	}
	return l.err()
}

// Validate reports every invalid field of the window, with paths relative to
// it ("size: ...").
func (w WindowConfig) Validate() error {
	var l errorList
	switch w.Type {
	case "", WindowCount, WindowTime:
	default:
		l.add("type", fmt.Sprintf("must be %q or %q, not %q", WindowCount, WindowTime, w.Type))
	}
	if w.Size < 0 || w.Size > maxWindowSize {
		l.add("size", fmt.Sprintf("must be in [1,%d]", maxWindowSize))
	}
	if w.Duration < 0 {
		l.add("duration", "must not be negative")
	}
	if w.Buckets < 0 || w.Buckets > maxWindowBuckets {
		l.add("buckets", fmt.Sprintf("must be in [1,%d]", maxWindowBuckets))
	}
	if w.Type == WindowTime && w.Duration >= 0 && w.Buckets >= 0 && w.Buckets <= maxWindowBuckets {
		d := w.Duration
		if d == 0 {
			d = DefaultWindowDuration
		}
		n := w.Buckets
		if n == 0 {
			n = DefaultWindowBuckets
		}
		if d/time.Duration(n) < minBucketWidth {
			l.add("buckets", fmt.Sprintf("each bucket (duration/buckets = %v) must span at least %v", d/time.Duration(n), minBucketWidth))
		}
	}
	if w.MinimumCalls < 0 {
		l.add("minimum_calls", "must not be negative")
	} else if (w.Type == "" || w.Type == WindowCount) && w.Size >= 0 && w.Size <= maxWindowSize {
		size, def := w.Size, ""
		if size == 0 {
			size, def = DefaultWindowSize, "default "
		}
		if w.MinimumCalls > size {
			l.add("minimum_calls", fmt.Sprintf("must be at most window.size (%s%d), which a count window never exceeds", def, size))
		}
	}
	return l.err()
}

// Validate reports every invalid field of the back-off, with paths relative
// to it ("max: ...").
func (o BackoffConfig) Validate() error {
	var l errorList
	if o.Base < 0 {
		l.add("base", "must not be negative")
	}
	if o.Max < 0 {
		l.add("max", "must not be negative")
	} else if o.Max > 0 && o.Max < o.Base {
		l.add("max", fmt.Sprintf("must be at least base (%v)", o.Base))
	} else if o.Max > 0 && o.Base == 0 && o.Max < DefaultOpenBase {
		l.add("max", fmt.Sprintf("must be at least base (default %v)", DefaultOpenBase))
	}
	if o.Multiplier != 0 && (o.Multiplier < 1 || math.IsNaN(o.Multiplier) || math.IsInf(o.Multiplier, 0)) {
		l.add("multiplier", "must be at least 1")
	}
	if o.Jitter < 0 || o.Jitter > 1 || math.IsNaN(o.Jitter) {
		l.add("jitter", "must be in [0,1]")
	}
	return l.err()
}

func checkRatio(l *errorList, path string, v float64) {
	if v == 0 {
		return
	}
	if !(v > 0 && v <= 1) { // also catches NaN
		l.add(path, "must be in (0,1]")
	}
}
