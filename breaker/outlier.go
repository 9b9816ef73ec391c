package breaker

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Detector ejects misbehaving endpoints of one cluster from load balancing
// for a while: Envoy's outlier detection. Endpoints are numbered 0..n−1 by
// the caller (the proxy's endpoint list for the cluster). It owns no
// goroutine and reads no clock; the proxy calls Evaluate at the configured
// interval. Safe for concurrent use.
//
// Record, Ejected and Panic are lock-free and allocation-free while nothing
// is ejected or returned; ejections take a mutex.
//
// Rules:
//   - An endpoint is ejected at once when its run of consecutive failures
//     reaches consecutive_5xx, or its run of gateway errors reaches
//     consecutive_gateway_failure (and the enforcing_* roll says so). A run
//     that does not lead to an ejection (not enforced, or the cap reached)
//     is tried again each further threshold-many failures.
//   - At each Evaluate, endpoints with at least success_rate_request_volume
//     calls in the interval are compared, if there are at least
//     success_rate_minimum_hosts of them: one whose success rate is below
//     mean − success_rate_stdev_factor × stdev is ejected, worst first.
//   - The n-th ejection lasts min(base_ejection_time × n,
//     max_ejection_time); n drops by one for each base_ejection_time the
//     endpoint spends un-ejected (counted at Evaluate, and at an ejection
//     between two, so that it grows from where the decay has brought it
//     down to), and stops growing
//     once base_ejection_time × n reaches max_ejection_time +
//     base_ejection_time, so that it decays in a bounded time.
//   - An ejected endpoint returns by itself when its time is up; it is
//     checked lazily, by Ejected, Eligible, Panic, Record and Evaluate.
//     While ejected, its outcomes are not counted; on return its runs start
//     from zero.
//   - At most MaxEjected(n) endpoints are ejected at once: floor(n ×
//     max_ejection_percent / 100), at least 1 if n ≥ 2, at most n − 1. So at
//     least one endpoint always stays in, and a pool of one is never
//     ejected.
//   - Panic mode: when the un-ejected share of the endpoints is below
//     panic_threshold percent, Panic reports true and Eligible returns every
//     endpoint — the load balancer spreads load over all of them rather than
//     piling it on the few left. When every endpoint is equally bad, the
//     success-rate rule finds no outlier (each is near the mean); that case
//     is the cluster breaker's to handle.
type Detector struct {
	cfg      OutlierConfig
	n        int
	c5xx     int64
	cgw      int64
	enf5xx   float64
	enfGW    float64
	enfSR    float64
	panicPct float64
	maxEj    int
	off      bool
	rand     func() float64
	hook     func(Ejection)

	// state summarizes the ejections; replaced under mu on every change.
	state atomic.Pointer[ejectionState]

	eps []endpoint

	mu        sync.Mutex // guards the fields below and the guarded fields of eps
	lastEval  time.Time
	ejections uint64 // ejections since New, or since the Detector carried from
	// skipped counts the detections that ejected nothing; CarryFrom
	// shares it with the Detector carried from.
	skipped  *skippedCounts
	pending  []Ejection
	draining bool
}

// skippedCounts are a Detector's detections that ejected nothing: held
// by every Detector carried from the one that made them, so that the
// count of a Detector being replaced (one that calls still in flight
// report to) goes on in its successor and is never read lower there than
// it was in the replaced one. Atomic: the Detectors sharing them hold
// different locks.
type skippedCounts struct {
	refused     atomic.Uint64 // ejections refused by the max_ejection_percent cap
	notEnforced atomic.Uint64 // detections skipped by the enforcing_* roll
}

// ejectionState is an immutable summary: how many endpoints are ejected,
// and the earliest time one of them returns.
type ejectionState struct {
	ejected int
	next    time.Time
}

type endpoint struct {
	until     atomic.Pointer[time.Time] // ejected until; nil when not ejected
	consec5xx atomic.Int64
	consecGW  atomic.Int64
	// stats counts this interval's calls (high 32 bits) and successes (low
	// 32 bits), so that one Swap reads and clears both exactly.
	stats atomic.Uint64

	// Guarded by Detector.mu.
	multiplier   int
	timesEjected uint64
	lastEjected  time.Time
	returned     time.Time // when the last ejection ended
	reason       string
	_            cacheLinePad
}

// Ejection describes an endpoint leaving or returning to load balancing,
// for the ejection hook.
type Ejection struct {
	Endpoint int
	// Ejected is true for an ejection, false for a return.
	Ejected bool
	At      time.Time
	// Until is the end of the ejection (ejections only).
	Until time.Time
	// Reason: "consecutive_5xx", "consecutive_gateway_failure",
	// "success_rate"; for a return "ejection_time_over", or
	// "active_health_check_passed" (Uneject).
	Reason string
	// TimesEjected counts this endpoint's ejections since New.
	TimesEjected uint64
}

// DetectorOption configures a Detector beyond its OutlierConfig.
type DetectorOption func(*detectorOptions)

type detectorOptions struct {
	hook func(Ejection)
	rand func() float64
}

// WithEjectionHook sets a function called after every ejection and return,
// with no lock held, one at a time and in order (possibly on a later
// caller's goroutine). It may call the Detector.
func WithEjectionHook(f func(Ejection)) DetectorOption {
	return func(o *detectorOptions) { o.hook = f }
}

// WithEnforcingRand sets the source of the enforcing_* rolls, a function
// returning values in [0,1). The default is math/rand/v2.Float64. It is
// called with the Detector's lock held and must not call the Detector.
func WithEnforcingRand(f func() float64) DetectorOption {
	return func(o *detectorOptions) { o.rand = f }
}

// NewDetector builds a Detector for a cluster of n endpoints, validating
// the config first. When the endpoint set changes, build a new Detector
// (carrying state over with CarryFrom).
func NewDetector(c OutlierConfig, n int, opts ...DetectorOption) (*Detector, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if n < 0 {
		return nil, FieldErrors{{Msg: "endpoint count must not be negative"}}
	}
	c = c.WithDefaults()
	var o detectorOptions
	for _, f := range opts {
		f(&o)
	}
	if o.rand == nil {
		o.rand = rand.Float64
	}
	d := &Detector{
		cfg:      c,
		n:        n,
		c5xx:     int64(c.Consecutive5xx),
		cgw:      int64(c.ConsecutiveGatewayFailure),
		enf5xx:   float64(*c.EnforcingConsecutive5xx),
		enfGW:    float64(*c.EnforcingConsecutiveGatewayFailure),
		enfSR:    float64(*c.EnforcingSuccessRate),
		panicPct: *c.PanicThreshold,
		maxEj:    maxEjected(n, c.MaxEjectionPercent),
		off:      c.Disabled,
		rand:     o.rand,
		hook:     o.hook,
		eps:      make([]endpoint, n),
		skipped:  new(skippedCounts),
	}
	d.state.Store(&ejectionState{})
	return d, nil
}

// Len is the number of endpoints.
func (d *Detector) Len() int { return d.n }

// MaxEjected is the cap on endpoints ejected at once (see Detector).
func (d *Detector) MaxEjected() int { return d.maxEj }

// Config returns the effective config (defaults filled in).
func (d *Detector) Config() OutlierConfig { return d.cfg }

// Record counts the outcome of one call to endpoint i, as classified by the
// shared Classifier, and ejects the endpoint if a consecutive-failure rule
// says so. Lock-free unless it ejects.
func (d *Detector) Record(i int, now time.Time, v Verdict) {
	if d.off || i < 0 || i >= d.n {
		return
	}
	e := &d.eps[i]
	if u := e.until.Load(); u != nil && now.Before(*u) {
		return // ejected: its outcomes do not count
	}
	if !v.Failure {
		e.stats.Add(1<<32 | 1)
		if e.consec5xx.Load() != 0 {
			e.consec5xx.Store(0)
		}
		if e.consecGW.Load() != 0 {
			e.consecGW.Store(0)
		}
		return
	}
	e.stats.Add(1 << 32)
	n5 := e.consec5xx.Add(1)
	var ngw int64
	if v.Gateway {
		ngw = e.consecGW.Add(1)
	} else if e.consecGW.Load() != 0 {
		e.consecGW.Store(0)
	}
	switch {
	case n5 >= d.c5xx && n5%d.c5xx == 0:
		d.eject(i, now, "consecutive_5xx", d.enf5xx, ngw >= d.cgw && ngw%d.cgw == 0)
	case ngw >= d.cgw && ngw%d.cgw == 0:
		d.eject(i, now, "consecutive_gateway_failure", d.enfGW, false)
	}
}

// eject tries to eject endpoint i for reason, enforced with the given
// percent chance; alsoGateway tries the gateway rule too if the first is not
// enforced.
func (d *Detector) eject(i int, now time.Time, reason string, enforcing float64, alsoGateway bool) {
	d.mu.Lock()
	d.refreshLocked(now)
	if d.rollLocked(enforcing) {
		d.ejectLocked(i, now, reason)
	} else if alsoGateway && d.rollLocked(d.enfGW) {
		d.ejectLocked(i, now, "consecutive_gateway_failure")
	}
	drain := d.claimDrainLocked()
	d.mu.Unlock()
	if drain {
		d.drain()
	}
}

// rollLocked decides whether a detection is enforced, pct percent of the
// time.
func (d *Detector) rollLocked(pct float64) bool {
	if pct >= 100 {
		return true
	}
	if pct > 0 && d.rand()*100 < pct {
		return true
	}
	d.skipped.notEnforced.Add(1)
	return false
}

// ejectLocked ejects endpoint i unless it is ejected already or the cap is
// reached. The summary must be fresh (refreshLocked).
func (d *Detector) ejectLocked(i int, now time.Time, reason string) {
	e := &d.eps[i]
	if u := e.until.Load(); u != nil && now.Before(*u) {
		return
	}
	st := d.state.Load()
	if st.ejected >= d.maxEj {
		d.skipped.refused.Add(1)
		return
	}
	// The steps of decay due since the last Evaluate come first: an
	// ejection between two evaluations would otherwise grow from a
	// multiplier the time spent in has already lowered.
	d.decayLocked(e, now)
	// The multiplier stops growing once its ejection would reach
	// max_ejection_time (as Envoy's does): a long run of ejections
	// would otherwise take as many base_ejection_times to decay.
	if time.Duration(e.multiplier)*d.cfg.BaseEjectionTime < d.cfg.MaxEjectionTime+d.cfg.BaseEjectionTime {
		e.multiplier++
	}
	e.timesEjected++
	d.ejections++
	dur := d.cfg.MaxEjectionTime
	if m := time.Duration(e.multiplier); d.cfg.BaseEjectionTime <= dur/m {
		dur = d.cfg.BaseEjectionTime * m
	}
	until := now.Add(dur)
	e.until.Store(&until)
	e.consec5xx.Store(0)
	e.consecGW.Store(0)
	e.stats.Store(0)
	e.lastEjected, e.reason = now, reason
	next := until
	if st.ejected > 0 && st.next.Before(next) {
		next = st.next
	}
	d.state.Store(&ejectionState{ejected: st.ejected + 1, next: next})
	d.queueLocked(Ejection{Endpoint: i, Ejected: true, At: now, Until: until, Reason: reason, TimesEjected: e.timesEjected})
}

// decayLocked lowers the multiplier of e, an endpoint not ejected, by one
// step per whole base_ejection_time it has spent in since its last
// return or step, counted from when that step was due: counting from the
// call would stretch each step to a multiple of the interval (with
// interval 30s and base 20s, one step per 30s instead of three per 60s).
func (d *Detector) decayLocked(e *endpoint, now time.Time) {
	if e.multiplier == 0 || e.returned.IsZero() {
		return
	}
	if k := int(now.Sub(e.returned) / d.cfg.BaseEjectionTime); k > 0 {
		k = min(k, e.multiplier)
		e.multiplier -= k
		e.returned = e.returned.Add(time.Duration(k) * d.cfg.BaseEjectionTime)
	}
}

// refreshLocked returns the endpoints whose ejection is over and recomputes
// the summary, if any ejection may be over.
func (d *Detector) refreshLocked(now time.Time) {
	st := d.state.Load()
	if st.ejected == 0 || now.Before(st.next) {
		return
	}
	ns := ejectionState{}
	for i := range d.eps {
		e := &d.eps[i]
		u := e.until.Load()
		if u == nil {
			continue
		}
		if now.Before(*u) {
			if ns.ejected == 0 || u.Before(ns.next) {
				ns.next = *u
			}
			ns.ejected++
			continue
		}
		e.until.Store(nil)
		e.returned = *u
		d.queueLocked(Ejection{Endpoint: i, At: *u, Reason: "ejection_time_over", TimesEjected: e.timesEjected})
	}
	d.state.Store(&ns)
}

// Uneject returns endpoint i to load balancing at now, before its
// ejection time is up, because an active health check it passed says it
// is well (Envoy's successful_active_health_check_uneject_host); the
// caller checks that the config asks for it and that the checker has i
// healthy. It reports whether i was
// ejected; its return is reported to the hook with the reason
// "active_health_check_passed". The ejection still counts towards the
// length of the next one (the multiplier decays as after any return).
func (d *Detector) Uneject(i int, now time.Time) bool {
	if !d.Ejected(i, now) {
		return false // lock-free while nothing is ejected
	}
	d.mu.Lock()
	d.refreshLocked(now)
	e := &d.eps[i]
	u := e.until.Load()
	ok := u != nil && now.Before(*u)
	if ok {
		e.until.Store(nil)
		e.returned = now
		// The summary's next return may have been i's: too early a
		// next costs one refresh at that time, which recomputes it.
		st := d.state.Load()
		d.state.Store(&ejectionState{ejected: st.ejected - 1, next: st.next})
		d.queueLocked(Ejection{Endpoint: i, At: now, Reason: "active_health_check_passed", TimesEjected: e.timesEjected})
	}
	drain := d.claimDrainLocked()
	d.mu.Unlock()
	if drain {
		d.drain()
	}
	return ok
}

// current returns the ejection summary as of now, returning endpoints
// whose time is up first.
func (d *Detector) current(now time.Time) *ejectionState {
	st := d.state.Load()
	if st.ejected == 0 || now.Before(st.next) {
		return st
	}
	d.mu.Lock()
	d.refreshLocked(now)
	st = d.state.Load()
	drain := d.claimDrainLocked()
	d.mu.Unlock()
	if drain {
		d.drain()
	}
	return st
}

// Ejected reports whether endpoint i is ejected at now. Lock-free.
func (d *Detector) Ejected(i int, now time.Time) bool {
	if i < 0 || i >= d.n {
		return false
	}
	u := d.eps[i].until.Load()
	return u != nil && now.Before(*u)
}

// EjectedCount is the number of endpoints ejected at now, returning
// endpoints whose time is up first. Lock-free while none is ejected.
func (d *Detector) EjectedCount(now time.Time) int { return d.current(now).ejected }

// Panic reports whether the cluster is in panic mode at now: the
// un-ejected share of the endpoints is below panic_threshold percent. The
// load balancer then ignores ejections.
func (d *Detector) Panic(now time.Time) bool {
	return d.panic(d.current(now))
}

func (d *Detector) panic(st *ejectionState) bool {
	if d.panicPct <= 0 || d.n == 0 || st.ejected == 0 {
		return false
	}
	return float64(d.n-st.ejected)*100 < d.panicPct*float64(d.n)
}

// Eligible appends to dst the endpoints the load balancer may pick at now,
// in index order, and returns the extended slice: the un-ejected ones, or
// all of them in panic mode. It does not allocate if dst has room for Len
// indexes.
func (d *Detector) Eligible(now time.Time, dst []int) []int {
	st := d.current(now)
	if st.ejected == 0 || d.panic(st) {
		for i := range d.n {
			dst = append(dst, i)
		}
		return dst
	}
	for i := range d.n {
		if !d.Ejected(i, now) {
			dst = append(dst, i)
		}
	}
	return dst
}

// Evaluate runs the interval's work at now: it returns endpoints whose
// ejection is over, lowers the ejection multiplier of endpoints that have
// stayed in for a base_ejection_time since their return, ejects
// success-rate outliers, and starts a new interval. The proxy calls it
// every `interval`; it depends only on the recorded outcomes and now.
func (d *Detector) Evaluate(now time.Time) {
	if d.off {
		return
	}
	d.mu.Lock()
	d.refreshLocked(now)
	type candidate struct {
		i    int
		rate float64
	}
	var cands []candidate
	vol := uint64(d.cfg.SuccessRateRequestVolume)
	for i := range d.eps {
		e := &d.eps[i]
		x := e.stats.Swap(0)
		if u := e.until.Load(); u != nil {
			continue // ejected
		}
		d.decayLocked(e, now)
		if req := x >> 32; req >= vol && req > 0 {
			cands = append(cands, candidate{i, min(float64(x&0xffffffff)/float64(req), 1)})
		}
	}
	if len(cands) > 0 && len(cands) >= d.cfg.SuccessRateMinimumHosts {
		var sum float64
		for _, c := range cands {
			sum += c.rate
		}
		mean := sum / float64(len(cands))
		var sq float64
		for _, c := range cands {
			sq += (c.rate - mean) * (c.rate - mean)
		}
		limit := mean - d.cfg.SuccessRateStdevFactor*math.Sqrt(sq/float64(len(cands)))
		slices.SortStableFunc(cands, func(a, b candidate) int {
			switch {
			case a.rate < b.rate:
				return -1
			case a.rate > b.rate:
				return 1
			}
			return 0
		})
		for _, c := range cands {
			if c.rate >= limit {
				break
			}
			if d.rollLocked(d.enfSR) {
				d.ejectLocked(c.i, now, "success_rate")
			}
		}
	}
	d.lastEval = now
	drain := d.claimDrainLocked()
	d.mu.Unlock()
	if drain {
		d.drain()
	}
}

func (d *Detector) queueLocked(e Ejection) {
	if d.hook != nil {
		d.pending = append(d.pending, e)
	}
}

func (d *Detector) claimDrainLocked() bool {
	if len(d.pending) == 0 || d.draining {
		return false
	}
	d.draining = true
	return true
}

func (d *Detector) drain() {
	done := false
	defer func() {
		if !done { // the hook panicked: let the next transition deliver
			d.mu.Lock()
			d.draining = false
			d.mu.Unlock()
		}
	}()
	for {
		d.mu.Lock()
		if len(d.pending) == 0 {
			// Cleared in the same critical section that sees the queue
			// empty, so that an event queued after it is delivered by
			// its own caller.
			d.pending = nil
			d.draining = false
			d.mu.Unlock()
			done = true
			return
		}
		ev := d.pending[0]
		d.pending = d.pending[1:]
		d.mu.Unlock()
		d.hook(ev)
	}
}

// CarryFrom copies the ejection state of endpoints from old, a Detector of
// the previous endpoint set: oldIndex maps a new index to the old index of
// the same endpoint (false for a new endpoint). Ejections carried over still
// respect the new cap; one the cap leaves out returns at now, and one whose
// time is up returns at its time, the multiplier decaying from there. The
// count of ejections goes on from old's; the counts of refusals and
// detections not enforced are shared with old, so that those old makes
// after the call (for calls still in flight) count in both. Call it
// before the Detector is in use.
func (d *Detector) CarryFrom(old *Detector, now time.Time, oldIndex func(i int) (int, bool)) {
	old.mu.Lock()
	defer old.mu.Unlock()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ejections, d.skipped = old.ejections, old.skipped
	st := ejectionState{}
	for i := range d.eps {
		j, ok := oldIndex(i)
		if !ok || j < 0 || j >= old.n {
			continue
		}
		o, e := &old.eps[j], &d.eps[i]
		e.multiplier, e.timesEjected, e.lastEjected, e.reason, e.returned = o.multiplier, o.timesEjected, o.lastEjected, o.reason, o.returned
		e.consec5xx.Store(o.consec5xx.Load())
		e.consecGW.Store(o.consecGW.Load())
		u := o.until.Load()
		switch {
		case u == nil:
		case !now.Before(*u):
			// Over, though old has not returned it yet (no call or
			// Evaluate since): it returned at its time, from which
			// the multiplier decays, as refreshLocked would have
			// recorded.
			e.returned = *u
		case st.ejected >= d.maxEj:
			e.returned = now // the new cap returns it now
		default:
			t := *u
			e.until.Store(&t)
			if st.ejected == 0 || t.Before(st.next) {
				st.next = t
			}
			st.ejected++
		}
	}
	d.state.Store(&st)
}

// DetectorSnapshot is a Detector's state at one moment, for an admin page.
type DetectorSnapshot struct {
	Endpoints  []EndpointSnapshot // indexed like the endpoints
	Ejected    int                // endpoints ejected now
	MaxEjected int                // the cap on Ejected
	Panic      bool               // panic mode now
	// Ejections counts ejections since New (or since the New of the
	// Detector it carried from, see CarryFrom); Refused the ejections the
	// cap prevented; NotEnforced the detections the enforcing_* rolls
	// skipped (both counted with the Detectors it carried from, and those
	// carried from it).
	Ejections, Refused, NotEnforced uint64
	LastEvaluation                  time.Time
}

// EndpointSnapshot is one endpoint's outlier state.
type EndpointSnapshot struct {
	Ejected      bool
	EjectedUntil time.Time // when Ejected
	TimesEjected uint64
	Multiplier   int    // the next ejection lasts base_ejection_time × (Multiplier+1), capped
	Reason       string // reason of the last ejection
	// Consecutive5xx and ConsecutiveGatewayFailure are the current runs.
	Consecutive5xx, ConsecutiveGatewayFailure int64
	// IntervalRequests and IntervalSuccesses count this interval's calls.
	IntervalRequests, IntervalSuccesses uint64
}

// Skipped returns the ejections the max_ejection_percent cap refused and
// the detections the enforcing_* rolls did not enforce, as Snapshot's
// Refused and NotEnforced, without building a snapshot.
func (d *Detector) Skipped() (refused, notEnforced uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.skipped.refused.Load(), d.skipped.notEnforced.Load()
}

// Snapshot reads the Detector's state at now.
func (d *Detector) Snapshot(now time.Time) DetectorSnapshot {
	st := d.current(now)
	d.mu.Lock()
	defer d.mu.Unlock()
	s := DetectorSnapshot{
		Endpoints:      make([]EndpointSnapshot, d.n),
		Ejected:        st.ejected,
		MaxEjected:     d.maxEj,
		Panic:          d.panic(st),
		Ejections:      d.ejections,
		Refused:        d.skipped.refused.Load(),
		NotEnforced:    d.skipped.notEnforced.Load(),
		LastEvaluation: d.lastEval,
	}
	for i := range d.eps {
		e := &d.eps[i]
		if e.until.Load() == nil {
			d.decayLocked(e, now) // as the next ejection would see it
		}
		x := e.stats.Load()
		es := EndpointSnapshot{
			TimesEjected:              e.timesEjected,
			Multiplier:                e.multiplier,
			Reason:                    e.reason,
			Consecutive5xx:            e.consec5xx.Load(),
			ConsecutiveGatewayFailure: e.consecGW.Load(),
			IntervalRequests:          x >> 32,
			IntervalSuccesses:         x & 0xffffffff,
		}
		if u := e.until.Load(); u != nil && now.Before(*u) {
			es.Ejected, es.EjectedUntil = true, *u
		}
		s.Endpoints[i] = es
	}
	return s
}
