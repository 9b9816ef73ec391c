package breaker

import (
	"errors"
	"fmt"
	"math"
	"sync/atomic"
)

// LimitsConfig caps what one sidecar sends to one cluster: a cluster's
// `limits:` block. It maps field for field onto Envoy's
// circuit_breakers.thresholds (default priority). The zero value is Envoy's
// defaults: 1024 connections, 1024 pending requests, 1024 requests, 3
// concurrent retries, no retry budget.
type LimitsConfig struct {
	// MaxConnections caps the connections open to all endpoints of the
	// cluster. 0 means 1024.
	MaxConnections int `yaml:"max_connections" json:"max_connections"`
	// MaxPendingRequests caps the requests waiting for a connection (or an
	// HTTP/2 stream) to become available. 0 means 1024.
	MaxPendingRequests int `yaml:"max_pending_requests" json:"max_pending_requests"`
	// MaxRequests caps the requests in flight to the cluster. 0 means 1024.
	MaxRequests int `yaml:"max_requests" json:"max_requests"`
	// MaxRetries caps the retries in flight to the cluster. Ignored when
	// retry_budget is set. 0 means 3.
	MaxRetries int `yaml:"max_retries" json:"max_retries"`
	// RetryBudget, when present, replaces max_retries with a limit that
	// grows with the load: retries in flight may be at most budget_percent
	// of the active (in-flight plus pending) requests, but never fewer than
	// min_retry_concurrency. An empty block (`retry_budget: {}`) means the
	// defaults 20% and 3. Absent (nil) means max_retries applies.
	RetryBudget *RetryBudgetConfig `yaml:"retry_budget,omitempty" json:"retry_budget,omitempty"`
}

// RetryBudgetConfig is Envoy's circuit_breakers.thresholds.retry_budget.
type RetryBudgetConfig struct {
	// BudgetPercent is the share of active requests that may be retries,
	// in (0,100]. 0 means 20.
	BudgetPercent float64 `yaml:"budget_percent" json:"budget_percent"`
	// MinRetryConcurrency is the number of concurrent retries always
	// allowed, whatever the load. 0 means 3.
	MinRetryConcurrency int `yaml:"min_retry_concurrency" json:"min_retry_concurrency"`
}

// Defaults of LimitsConfig (Envoy's).
const (
	DefaultMaxConnections      = 1024
	DefaultMaxPendingRequests  = 1024
	DefaultMaxRequests         = 1024
	DefaultMaxRetries          = 3
	DefaultBudgetPercent       = 20.0
	DefaultMinRetryConcurrency = 3
)

// WithDefaults returns c with every zero field replaced by its default.
func (c LimitsConfig) WithDefaults() LimitsConfig {
	if c.MaxConnections == 0 {
		c.MaxConnections = DefaultMaxConnections
	}
	if c.MaxPendingRequests == 0 {
		c.MaxPendingRequests = DefaultMaxPendingRequests
	}
	if c.MaxRequests == 0 {
		c.MaxRequests = DefaultMaxRequests
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = DefaultMaxRetries
	}
	if c.RetryBudget != nil {
		rb := *c.RetryBudget
		if rb.BudgetPercent == 0 {
			rb.BudgetPercent = DefaultBudgetPercent
		}
		if rb.MinRetryConcurrency == 0 {
			rb.MinRetryConcurrency = DefaultMinRetryConcurrency
		}
		c.RetryBudget = &rb
	}
	return c
}

// Validate reports every invalid field, with paths relative to LimitsConfig
// ("retry_budget.budget_percent: ...").
func (c LimitsConfig) Validate() error {
	var l errorList
	for _, f := range []struct {
		path string
		v    int
	}{
		{"max_connections", c.MaxConnections},
		{"max_pending_requests", c.MaxPendingRequests},
		{"max_requests", c.MaxRequests},
		{"max_retries", c.MaxRetries},
	} {
		if f.v < 0 || f.v > math.MaxInt32 {
			l.add(f.path, fmt.Sprintf("must be in [0,%d]", math.MaxInt32))
		}
	}
	if rb := c.RetryBudget; rb != nil {
		if !(rb.BudgetPercent >= 0 && rb.BudgetPercent <= 100) {
			l.add("retry_budget.budget_percent", "must be in (0,100]")
		}
		if rb.MinRetryConcurrency < 0 || rb.MinRetryConcurrency > math.MaxInt32 {
			l.add("retry_budget.min_retry_concurrency", fmt.Sprintf("must be in [0,%d]", math.MaxInt32))
		}
	}
	return l.err()
}

// Limit names one resource limit. Its String is the config key, which is
// also the value of the x-outrigger-breaker header on overflow.
type Limit uint8

// The resource limits.
const (
	LimitConnections     Limit = iota // max_connections
	LimitPendingRequests              // max_pending_requests
	LimitRequests                     // max_requests
	LimitRetries                      // max_retries (or the retry budget)
	NumLimits                         // the number of limits, for arrays indexed by Limit
)

var limitNames = [NumLimits]string{"max_connections", "max_pending_requests", "max_requests", "max_retries"}

func (k Limit) String() string {
	if k < NumLimits {
		return limitNames[k]
	}
	return "limit(" + fmt.Sprint(uint8(k)) + ")"
}

// ErrLimit matches (with errors.Is) every *LimitError.
var ErrLimit = errors.New("resource limit reached")

// LimitError is returned when an acquire would exceed a limit. The values
// returned by a Limits are preallocated and shared: do not modify them.
type LimitError struct {
	Limit Limit // which limit
	Max   int   // its configured maximum (for the retry budget: the limit at the time the Limits was built with no load, i.e. min_retry_concurrency)
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("%s reached (%d)", e.Limit, e.Max)
}

// Is makes errors.Is(err, ErrLimit) true.
func (e *LimitError) Is(target error) bool { return target == ErrLimit }

// Limits counts the resources in use toward one cluster and refuses what
// would exceed the configured limits. Acquire and release are lock-free and
// do not allocate; every successful Acquire must be paired with exactly one
// Release of the same kind. Safe for concurrent use.
//
// The counts live apart from the limits: Reconfigure returns a Limits with
// other limits on the same counts, so that a config reload that changes
// the limits goes on counting what is in use (calls in flight, open
// connections) and what is released through the Limits it was acquired
// from counts down where it counted up.
type Limits struct {
	max    [NumLimits]int64
	errs   [NumLimits]LimitError
	budget bool    // retries limited by the budget, not max[LimitRetries]
	pct    float64 // budget percent
	minRet int64

	n *limitCounts // shared with the Limits Reconfigure makes
}

// limitCounts are the counters of a Limits and its reconfigurations.
type limitCounts struct {
	cur      [NumLimits]paddedInt64
	overflow [NumLimits]paddedInt64
}

type paddedInt64 struct {
	atomic.Int64
	_ [56]byte // keep each counter on its own cache line
}

// NewLimits builds a Limits from a config, validating it first.
func NewLimits(c LimitsConfig) (*Limits, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return newLimits(c, new(limitCounts)), nil
}

// Reconfigure returns a Limits that enforces c on l's counts, validating c
// first. The two count as one: a resource acquired through either is in
// use for both until it is released through either, so that resources
// taken under the old limits count towards the new ones, and give their
// count back when released through the Limits they were acquired from.
// A limit lowered below what is in use refuses every Acquire until enough
// is released. Overflows carry on too. l is not modified.
func (l *Limits) Reconfigure(c LimitsConfig) (*Limits, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return newLimits(c, l.n), nil
}

func newLimits(c LimitsConfig, n *limitCounts) *Limits {
	c = c.WithDefaults()
	l := &Limits{n: n}
	l.max = [NumLimits]int64{int64(c.MaxConnections), int64(c.MaxPendingRequests), int64(c.MaxRequests), int64(c.MaxRetries)}
	if rb := c.RetryBudget; rb != nil {
		l.budget = true
		l.pct = rb.BudgetPercent
		l.minRet = int64(rb.MinRetryConcurrency)
	}
	for k := range NumLimits {
		l.errs[k] = LimitError{Limit: k, Max: int(l.max[k])}
	}
	if l.budget {
		l.errs[LimitRetries].Max = int(l.minRet)
	}
	return l
}

// Acquire takes one unit of resource k, or returns a *LimitError naming k if
// that would exceed its limit. For LimitRetries with a retry budget, the
// limit is max(min_retry_concurrency, budget_percent × (requests + pending
// requests in flight)).
func (l *Limits) Acquire(k Limit) error {
	limit := l.limit(k)
	c := &l.n.cur[k].Int64
	for {
		n := c.Load()
		if n >= limit {
			l.n.overflow[k].Add(1)
			return &l.errs[k]
		}
		if c.CompareAndSwap(n, n+1) {
			return nil
		}
	}
}

// AcquireOver takes one unit of resource k even beyond its limit, after
// an Acquire refused it (which counted the overflow): for what must go
// ahead regardless, as Envoy's connection pools make a host's first
// connection whatever the cluster's max_connections. It is released as
// an Acquire's is.
func (l *Limits) AcquireOver(k Limit) {
	l.n.cur[k].Add(1)
}

// Release returns one unit of resource k taken by Acquire.
func (l *Limits) Release(k Limit) {
	if l.n.cur[k].Add(-1) < 0 {
		panic("breaker: Limits.Release of " + k.String() + " without Acquire")
	}
}

func (l *Limits) limit(k Limit) int64 {
	if k != LimitRetries || !l.budget {
		return l.max[k]
	}
	// A call holds its max_requests unit from start to end, and a
	// max_pending_requests unit only within that while it waits for a
	// connection (see the package example): the calls in flight are the
	// max_requests units alone, which is what Envoy's "active plus
	// pending requests" counts. Adding the pending ones counted a call
	// that waits for a connection twice, and let a storm of retries
	// against endpoints that hang on connect twice the budget.
	//
	// The product with the percent comes before the division by 100:
	// it is exact for a whole percent, so the quotient rounds down
	// right, where active × (percent/100) went below a whole result
	// (100 × 0.29 = 28.999999999999996, 28 retries where 29 are due).
	active := l.n.cur[LimitRequests].Load()
	return max(l.minRet, int64(float64(active)*l.pct/100))
}

// LimitsSnapshot is the state of a Limits at one moment.
type LimitsSnapshot struct {
	// InUse and Max per limit, indexed by Limit. Max of LimitRetries is the
	// current retry budget when one is configured.
	InUse [NumLimits]int64
	Max   [NumLimits]int64
	// Overflows counts the refused Acquires per limit since NewLimits
	// (through it and its reconfigurations).
	Overflows [NumLimits]uint64
}

// Snapshot reads the counters. Each is read atomically; the set is not a
// single atomic view.
func (l *Limits) Snapshot() LimitsSnapshot {
	var s LimitsSnapshot
	for k := range NumLimits {
		s.InUse[k] = l.n.cur[k].Load()
		s.Max[k] = l.limit(k)
		s.Overflows[k] = uint64(l.n.overflow[k].Load())
	}
	return s
}
