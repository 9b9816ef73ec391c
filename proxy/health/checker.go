package health

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Transition is an endpoint turning healthy or unhealthy.
type Transition struct {
	Endpoint int
	Addr     string
	Healthy  bool
	// Reason is the last check's failure ("" when Healthy): e.g. "status
	// 503", "connect: connection refused", "timeout", "grpc: NOT_SERVING".
	Reason string
}

// EndpointStatus is one endpoint's health state, for an admin page.
type EndpointStatus struct {
	Addr      string
	Target    string // the address the checks dial: Addr, or its host with Config.Port
	Healthy   bool
	Checked   bool      // at least one check has finished
	LastCheck time.Time // when the last check finished; zero when !Checked
	LastError string    // "" when the last check succeeded
	Successes int       // consecutive
	Failures  int       // consecutive
}

// Option configures a Checker beyond its Config.
type Option func(*options)

type options struct {
	transition func(Transition)
	result     func(int, error)
}

// WithTransitionHook sets a function called after each transition, with no
// lock held, one call at a time and in transition order (possibly on the
// goroutine of another endpoint's check). It may call the Checker's
// methods except Close: Close waits for the goroutine running the hook, so
// calling it from the hook deadlocks. No call starts after Close has
// returned.
func WithTransitionHook(f func(Transition)) Option {
	return func(o *options) { o.transition = f }
}

// WithResultHook sets a function called after every check with the
// endpoint and the check's error (nil for a success; otherwise a
// *CheckError), for metrics. It is called with no lock held, on the
// endpoint's own goroutine, so calls for different endpoints may run at the
// same time. The check is recorded before the call: Healthy(endpoint) in
// the hook is the state this check left the endpoint in. A check cut short
// by Close is not reported.
func WithResultHook(f func(endpoint int, err error)) Option {
	return func(o *options) { o.result = f }
}

// Checker checks the endpoints of one cluster, numbered 0..Len()−1 in the
// order of the addresses given to New. See the package documentation for
// the rules.
type Checker struct {
	cfg          Config
	addrs        []string
	targets      []string // what the checks dial, indexed like addrs
	onTransition func(Transition)
	onResult     func(int, error)
	// prober does the I/O of one check; tests replace it before Start.
	prober prober

	// healthy mirrors each tracker's healthy flag for lock-free reads; it
	// is written under mu, together with the tracker and counts.
	healthy []atomic.Bool
	// unchecked mirrors each tracker's pending state, as healthy does.
	unchecked []atomic.Bool
	// counts holds, in one word so that a reader sees both of one moment,
	// the unhealthy endpoints (low 32 bits) and those of them that are so
	// for want of a check, the pending ones (high 32 bits).
	counts atomic.Uint64
	// due is when each endpoint's next check starts (Unix nanoseconds; 0
	// before Start): written by the endpoint's goroutine as it starts
	// waiting, read by a successor's CarryFrom. While a check runs it is
	// the time that check started, so one cut short by Close is due at
	// once in the successor.
	due []atomic.Int64
	// cutStart is, for each endpoint, when its last check started if that
	// check was cut short by Close (Unix nanoseconds; 0: none). A
	// successor's CarryFrom takes it as carried: that endpoint's first
	// check there runs at once but keeps the cut check's deadline (its
	// start plus Timeout), and carries the same start on if cut again.
	// Reloads that come faster than a check lasts would otherwise cut
	// every check and start it afresh, so that none ever ended: a hung
	// endpoint was never found unhealthy.
	cutStart []atomic.Int64
	// carried is, for each endpoint, the start of a cut check CarryFrom
	// took over (0: none), until the endpoint's goroutine takes it up for
	// its first check. A Checker closed before that (a reload right after
	// the one that started it) passes it on to its own successor: taken
	// as not cut, the check would start again with a full Timeout.
	carried []atomic.Int64

	mu       sync.Mutex // guards the fields below
	trackers []tracker
	pending  []Transition // transitions not yet passed to onTransition
	draining bool         // a goroutine is passing pending to onTransition
	started  bool
	closed   bool
	cancel   context.CancelFunc // ends every check; nil before Start

	wg        sync.WaitGroup // one per endpoint goroutine
	closeOnce sync.Once
}

// prober does the I/O of checks. check is called by endpoint i's goroutine
// only, never twice at once for one i; reset is called on the same
// goroutine after a failed check, with its error as the result hook sees
// it (a time out as CauseTimeout); close is called once, after every
// endpoint goroutine has ended (or none was started).
type prober interface {
	check(ctx context.Context, i int) error
	reset(i int, err error)
	close()
}

// New validates cfg and builds a Checker for the endpoints at addrs
// ("host:port" each). Nothing runs until Start.
func New(cfg Config, addrs []string, opts ...Option) (*Checker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var o options
	for _, f := range opts {
		f(&o)
	}
	for i, a := range addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("endpoint %d: %w", i, err)
		}
	}
	cfg.Statuses = append([]StatusRange(nil), cfg.Statuses...)
	cfg.RetriableStatuses = append([]StatusRange(nil), cfg.RetriableStatuses...)
	cfg.Headers = cfg.Headers.Clone()
	c := &Checker{
		cfg:          cfg,
		addrs:        append([]string(nil), addrs...),
		onTransition: o.transition,
		onResult:     o.result,
		healthy:      make([]atomic.Bool, len(addrs)),
		unchecked:    make([]atomic.Bool, len(addrs)),
		due:          make([]atomic.Int64, len(addrs)),
		cutStart:     make([]atomic.Int64, len(addrs)),
		carried:      make([]atomic.Int64, len(addrs)),
		trackers:     make([]tracker, len(addrs)),
	}
	for i := range c.trackers {
		c.trackers[i] = newTracker()
		c.healthy[i].Store(true)
	}
	// The probers see only what they dial; the Checker keeps the
	// endpoints' own addresses for transitions and statuses.
	targets := probeTargets(c.addrs, cfg.Port)
	c.targets = targets
	var err error
	switch cfg.Kind {
	case HTTP:
		c.prober, err = newHTTPProber(&c.cfg, targets)
	case GRPC:
		c.prober = newGRPCProber(&c.cfg, targets)
	case TCP:
		c.prober = newTCPProber(&c.cfg, targets)
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// probeTargets are the addresses a check dials: addrs themselves, or, when
// port is not 0, each address's host with port. addrs are valid
// "host:port"s (New checked them).
func probeTargets(addrs []string, port int) []string {
	if port == 0 {
		return addrs
	}
	p := strconv.Itoa(port)
	out := make([]string, len(addrs))
	for i, a := range addrs {
		host, _, _ := net.SplitHostPort(a)
		out[i] = net.JoinHostPort(host, p)
	}
	return out
}

// Config returns the Config the Checker was built with.
func (c *Checker) Config() Config {
	cfg := c.cfg
	cfg.Statuses = append([]StatusRange(nil), cfg.Statuses...)
	cfg.RetriableStatuses = append([]StatusRange(nil), cfg.RetriableStatuses...)
	cfg.Headers = cfg.Headers.Clone()
	return cfg
}

// Len is the number of endpoints.
func (c *Checker) Len() int { return len(c.addrs) }

// Start starts one goroutine per endpoint. Each endpoint's first check
// comes after a random delay in [0, min(Interval, 1s)), so that a large
// cluster is not probed all at once; an endpoint that CarryFrom gave a
// schedule is checked when it was due instead (at once if overdue), but
// no later than Interval from now (UnhealthyInterval if it is unhealthy).
// Start after Start or Close does nothing.
func (c *Checker) Start() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started || c.closed {
		return
	}
	c.started = true
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	spread := min(c.cfg.Interval, time.Second)
	now := time.Now()
	for i := range c.addrs {
		first := rand.N(spread)
		if due := c.due[i].Load(); due != 0 {
			most := c.cfg.Interval
			if !c.trackers[i].healthy {
				most = c.cfg.unhealthyInterval()
			}
			first = min(max(time.Unix(0, due).Sub(now), 0), most)
		}
		if c.carried[i].Load() != 0 {
			first = 0 // a check cut short goes on at once
		}
		c.due[i].Store(now.Add(first).UnixNano())
		c.wg.Add(1)
		go c.run(ctx, i, first)
	}
}

// Close stops every check (cancelling those in flight), waits for the
// endpoint goroutines to end, and for every dial and TLS handshake of an
// HTTP check, and closes the connections kept for checks. It must not be
// called from a hook.
// It may be called more than once, and without Start; every call returns
// once the first has finished.
func (c *Checker) Close() {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		cancel := c.cancel
		c.mu.Unlock()
		if cancel != nil {
			cancel()
		}
		c.wg.Wait()
		c.prober.close()
	})
}

// Healthy reports whether endpoint i may take traffic. It is lock-free and
// allocation-free. An i out of range reports true, so that a balancer whose
// endpoint list is newer than the Checker does not lose endpoints.
func (c *Checker) Healthy(i int) bool {
	if uint(i) >= uint(len(c.healthy)) {
		return true
	}
	return c.healthy[i].Load()
}

// Pending reports whether endpoint i is pending: added by CarryFrom and
// not yet checked. It is lock-free and allocation-free; an i out of range
// reports false.
func (c *Checker) Pending(i int) bool {
	if uint(i) >= uint(len(c.unchecked)) {
		return false
	}
	return c.unchecked[i].Load()
}

// UnhealthyCount is the number of unhealthy endpoints, pending ones
// included. Lock-free.
func (c *Checker) UnhealthyCount() int { return int(uint32(c.counts.Load())) }

// PendingCount is the number of pending endpoints: added by CarryFrom
// and not yet checked. They count as unhealthy too. Lock-free.
func (c *Checker) PendingCount() int { return int(c.counts.Load() >> 32) }

// Counts returns UnhealthyCount and PendingCount as of one moment.
// Lock-free.
func (c *Checker) Counts() (unhealthy, pending int) {
	n := c.counts.Load()
	return int(uint32(n)), int(n >> 32)
}

// Status returns endpoint i's state. An i out of range reports a healthy,
// unchecked endpoint with no address.
func (c *Checker) Status(i int) EndpointStatus {
	if uint(i) >= uint(len(c.addrs)) {
		return EndpointStatus{Healthy: true}
	}
	c.mu.Lock()
	t := c.trackers[i]
	c.mu.Unlock()
	return c.status(i, t)
}

// EndpointStatuses returns every endpoint's state, indexed like the endpoints.
func (c *Checker) EndpointStatuses() []EndpointStatus {
	c.mu.Lock()
	ts := append([]tracker(nil), c.trackers...)
	c.mu.Unlock()
	out := make([]EndpointStatus, len(ts))
	for i, t := range ts {
		out[i] = c.status(i, t)
	}
	return out
}

func (c *Checker) status(i int, t tracker) EndpointStatus {
	return EndpointStatus{
		Addr:      c.addrs[i],
		Target:    c.targets[i],
		Healthy:   t.healthy,
		Checked:   t.checked,
		LastCheck: t.lastCheck,
		LastError: t.lastError,
		Successes: t.successes,
		Failures:  t.failures,
	}
}

// CarryFrom gives the endpoints that were in old the state they had there
// (healthy or not, checked or not, counters, last result) and their
// schedule (when their next check is due), so that a config reload which
// keeps a cluster's health check does not start its endpoints over, nor
// check them more often than Interval however often it comes. oldIndex maps an endpoint of c to its index in old, or
// false for an endpoint old did not have; those are pending: unhealthy
// until their first check, which decides alone, so that an endpoint added
// to a checked cluster takes no traffic before it has passed one (as in
// Envoy). oldIndex is called with no lock held and
// may call either Checker. Call CarryFrom before Start; it reports no
// transitions.
func (c *Checker) CarryFrom(old *Checker, oldIndex func(i int) (int, bool)) {
	if old == nil || old == c {
		return
	}
	// Ask oldIndex before taking any lock: it may call either Checker.
	from := make([]int, len(c.addrs))
	for i := range from {
		j, ok := oldIndex(i)
		if !ok || j < 0 || j >= len(old.addrs) {
			j = -1
		}
		from[i] = j
	}
	old.mu.Lock()
	kept := append([]tracker(nil), old.trackers...)
	old.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, j := range from {
		if j < 0 {
			c.setLocked(i, pendingTracker())
		} else {
			c.setLocked(i, kept[j])
			c.due[i].Store(old.due[j].Load())
			cut := old.cutStart[j].Load()
			if cut == 0 {
				// A check old was given to go on with, and closed
				// before it could.
				cut = old.carried[j].Load()
			}
			c.carried[i].Store(cut)
		}
	}
}

// setLocked replaces endpoint i's tracker and keeps the lock-free mirrors
// in step.
func (c *Checker) setLocked(i int, t tracker) {
	var delta int64 // to counts: ±1 unhealthy, ±1<<32 pending
	if was, now := c.trackers[i].pending(), t.pending(); was != now {
		c.unchecked[i].Store(now)
		delta += 1 << 32
		if was {
			delta -= 2 << 32
		}
	}
	was := c.trackers[i].healthy
	c.trackers[i] = t
	if was != t.healthy {
		c.healthy[i].Store(t.healthy)
		delta--
		if was {
			delta += 2
		}
	}
	if delta != 0 {
		// Neither half goes below zero, so the sum never borrows
		// across them.
		c.counts.Add(uint64(delta))
	}
}

// run is endpoint i's goroutine: wait, check, record, until ctx ends.
func (c *Checker) run(ctx context.Context, i int, first time.Duration) {
	defer c.wg.Done()
	timer := time.NewTimer(first)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		start := time.Now()
		if cut := c.carried[i].Swap(0); cut != 0 {
			start = time.Unix(0, cut)
		}
		healthy, ok, _ := c.step(ctx, i, start)
		if !ok {
			return
		}
		d := c.wait(healthy)
		c.due[i].Store(time.Now().Add(d).UnixNano())
		timer.Reset(d)
	}
}

// step checks endpoint i once and records the outcome. It returns whether
// the endpoint is healthy now and the check's error, or ok false when ctx
// ended (Close): a check cut short says nothing about the endpoint.
func (c *Checker) step(ctx context.Context, i int, start time.Time) (healthy, ok bool, err error) {
	err = c.check(ctx, i, start)
	if ctx.Err() != nil {
		c.cutStart[i].Store(start.UnixNano())
		return false, false, err
	}
	if err != nil {
		c.prober.reset(i, err)
	}
	return c.record(i, err, time.Now()), true, err
}

// check runs one check of endpoint i bounded by Timeout from start (now,
// or the start of a check a reload cut short, see cutStart). A check
// whose time ran out fails with the reason "timeout", whatever error the
// probe saw first.
func (c *Checker) check(ctx context.Context, i int, start time.Time) error {
	cctx, cancel := context.WithDeadline(ctx, start.Add(c.cfg.Timeout))
	defer cancel()
	err := c.prober.check(cctx, i)
	if err != nil && ctx.Err() == nil && cctx.Err() != nil {
		return &CheckError{Cause: CauseTimeout, Reason: "timeout", Err: err}
	}
	return err
}

// record feeds a check's outcome to endpoint i's tracker, then calls the
// hooks with no lock held. It returns whether the endpoint is healthy now.
func (c *Checker) record(i int, err error, now time.Time) bool {
	reason := ""
	if err != nil {
		reason = reasonOf(err)
	}
	c.mu.Lock()
	t := c.trackers[i]
	changed := t.record(outcomeOf(err), reason, now, c.cfg.HealthyThreshold, c.cfg.UnhealthyThreshold)
	c.setLocked(i, t)
	drain := false
	if changed && c.onTransition != nil {
		c.pending = append(c.pending, Transition{Endpoint: i, Addr: c.addrs[i], Healthy: t.healthy, Reason: t.lastError})
		if !c.draining {
			c.draining, drain = true, true
		}
	}
	c.mu.Unlock()
	if c.onResult != nil {
		c.onResult(i, err)
	}
	if drain {
		c.drain()
	}
	return t.healthy
}

// drain passes pending transitions to the hook until none is left. Only
// the goroutine that set draining runs it, so hook calls never overlap and
// keep their order.
func (c *Checker) drain() {
	for {
		c.mu.Lock()
		batch := c.pending
		c.pending = nil
		if len(batch) == 0 {
			c.draining = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		for _, t := range batch {
			c.onTransition(t)
		}
	}
}

// wait is the time until an endpoint's next check: Interval while healthy,
// UnhealthyInterval while not, plus a random part of Jitter. It counts from
// the end of a check, so that a slow endpoint is never checked twice at
// once.
func (c *Checker) wait(healthy bool) time.Duration {
	d := c.cfg.Interval
	if !healthy {
		d = c.cfg.unhealthyInterval()
	}
	if c.cfg.Jitter > 0 {
		d += rand.N(c.cfg.Jitter)
	}
	return d
}

// reasonOf is the Transition reason of a check error.
func reasonOf(err error) string {
	if ce, ok := err.(*CheckError); ok {
		return ce.Reason
	}
	return err.Error()
}

// Cause is the kind of a check failure: a small fixed set, fit for a
// metric label.
type Cause string

const (
	CauseTimeout  Cause = "timeout"  // the check took longer than Timeout
	CauseConnect  Cause = "connect"  // the connection could not be opened
	CauseTLS      Cause = "tls"      // the TLS handshake failed
	CauseStatus   Cause = "status"   // HTTP: a status not in Statuses
	CauseGRPC     Cause = "grpc"     // gRPC: an RPC error or a status other than SERVING
	CauseProtocol Cause = "protocol" // the connection broke or the answer was malformed
)

// Causes are every Cause a check can fail with, in a fixed order: the
// values a metric label of causes takes.
func Causes() []Cause {
	return []Cause{CauseTimeout, CauseConnect, CauseTLS, CauseStatus, CauseGRPC, CauseProtocol}
}

// CauseOf is the Cause of a failed check's error: its CheckError's, or
// CauseProtocol for an error of another type (the result hook is given a
// *CheckError for every failure).
func CauseOf(err error) Cause {
	var ce *CheckError
	if errors.As(err, &ce) {
		return ce.Cause
	}
	return CauseProtocol
}

// CheckError is why a check failed: the error the result hook is given.
type CheckError struct {
	Cause  Cause
	Reason string // short and stable, without the address: "status 503", "connect: connection refused"
	Err    error  // the underlying error, if any
	// Immediate marks an answer that says the endpoint is unhealthy: an
	// HTTP response read whole whose status is in neither Statuses nor
	// RetriableStatuses, or a gRPC answer other than SERVING. It turns a
	// healthy endpoint unhealthy at once, whatever UnhealthyThreshold, as
	// Envoy's "active" failures do: an app that answers 503 to be drained
	// is out at the next check. Every other failure counts toward the
	// threshold (Envoy's "network" failures).
	Immediate bool
}

func (e *CheckError) Error() string { return e.Reason }
func (e *CheckError) Unwrap() error { return e.Err }
