package breaker

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// State is a breaker's state.
type State uint8

// Breaker states. Open and half-open are reached by the trip policies; the
// forced states only by an operator (ForceOpen, ForceClosed), and they last
// until Reset.
const (
	StateClosed       State = iota // calls flow; outcomes are counted
	StateOpen                      // calls fail fast until the open period ends
	StateHalfOpen                  // a limited number of probe calls flow
	StateForcedOpen                // calls fail fast until Reset
	StateForcedClosed              // calls flow and are counted, but nothing trips
	numStates
)

var stateNames = [numStates]string{"closed", "open", "half_open", "forced_open", "forced_closed"}

func (s State) String() string {
	if s < numStates {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Sentinel errors returned by Allow. Test with errors.Is.
var (
	// ErrOpen: the breaker is open (or forced open). The error Allow
	// returns is an *OpenError, which says until when.
	ErrOpen = errors.New("circuit breaker is open")
	// ErrTooManyProbes: the breaker is half-open and all its probes are in
	// flight.
	ErrTooManyProbes = errors.New("circuit breaker is half-open and its probes are in flight")
)

// OpenError is the error Allow returns while the breaker is open. The same
// value is returned to every call rejected during one open period (so that
// rejecting does not allocate): do not modify it.
type OpenError struct {
	// Until is the end of the open period; zero when forced open.
	Until time.Time
	// Forced: an operator forced the breaker open; it stays open until Reset.
	Forced bool
}

func (e *OpenError) Error() string {
	if e.Forced {
		return "circuit breaker is forced open"
	}
	return "circuit breaker is open until " + e.Until.Format(time.RFC3339Nano)
}

// Is makes errors.Is(err, ErrOpen) true.
func (e *OpenError) Is(target error) bool { return target == ErrOpen }

// RetryAfter is how long from now the caller should wait before trying
// again: the rest of the open period, at least 1s (the Retry-After header
// counts whole seconds), rounded up to whole seconds. For a forced-open
// breaker it is 0: unknown.
func (e *OpenError) RetryAfter(now time.Time) time.Duration {
	if e.Forced {
		return 0
	}
	d := e.Until.Sub(now)
	if d <= time.Second {
		return time.Second
	}
	return (d + time.Second - 1).Truncate(time.Second)
}

// StateChange describes one transition, for the state-change hook.
type StateChange struct {
	From, To State
	At       time.Time
	// Reason is a short token: "consecutive_failures", "failure_rate",
	// "slow_call_rate", "open_period_over", "probe_failed",
	// "probes_succeeded", "forced_open", "forced_closed", "reset".
	Reason string
	// OpenUntil is the end of the open period when To is StateOpen.
	OpenUntil time.Time
	// Openings is the number of successive openings without a close in
	// between (the back-off exponent + 1) when To is StateOpen.
	Openings int
}

// Option configures a Breaker beyond its Config.
type Option func(*options)

type options struct {
	hook        func(StateChange)
	rand        func() float64
	forced      State
	forcedSince time.Time
}

// WithStateChangeHook sets a function called after every transition, with
// no lock held: it may call any method of the breaker. Calls are made one
// at a time, in transition order, possibly on the goroutine of a later
// caller than the one whose call caused the transition. The hook must not
// block for long: requests that transition the breaker wait for it.
func WithStateChangeHook(f func(StateChange)) Option {
	return func(o *options) { o.hook = f }
}

// WithRand sets the jitter source, a function returning values in [0,1).
// The default is math/rand/v2.Float64. It is called without any lock held,
// possibly from several goroutines at once, so it must be safe for
// concurrent use (a *rand.Rand is not; wrap it with a mutex).
func WithRand(f func() float64) Option {
	return func(o *options) { o.rand = f }
}

// WithForcedState makes the breaker start in s, StateForcedOpen or
// StateForcedClosed, as if forced so at since, without a transition (the
// hook is not called, and Snapshot counts no entry into s): for a
// breaker that replaces one an operator forced, so that the override
// outlives the replacement. Any other s is ignored.
func WithForcedState(s State, since time.Time) Option {
	return func(o *options) { o.forced, o.forcedSince = s, since }
}

// Breaker is a circuit breaker for one upstream cluster. It owns no
// goroutine and reads no clock: every method that needs the time takes
// now. Safe for concurrent use.
//
// In the closed state, Allow and Permit.Done take no lock and do not
// allocate; the mutex serializes transitions and the half-open state.
type Breaker struct {
	cfg      Config
	consecN  int64   // consecutive failures that trip; 0: off
	rate     float64 // failure rate that trips; 0: off
	slowRate float64 // slow-call rate that trips; 0: off
	slowDur  time.Duration
	minCalls int64
	rand     func() float64
	hook     func(StateChange)

	_ cacheLinePad
	// word is the state in the low 3 bits and the generation above: every
	// transition bumps the generation, so a Permit knows whether the state
	// it was issued in still holds.
	word atomic.Uint64
	// win is the window of the current (or last) closed generation.
	win atomic.Pointer[windowBox]
	// openErr is what Allow returns in the open states.
	openErr atomic.Pointer[OpenError]

	_              cacheLinePad
	rejectedOpen   atomic.Uint64
	_              cacheLinePad
	rejectedProbes atomic.Uint64
	_              cacheLinePad

	mu             sync.Mutex // guards the fields below and transitions of word
	since          time.Time
	reason         string
	openings       int    // successive openings since the last close
	timesOpened    uint64 // all openings ever
	probes         int    // probes in flight (half-open)
	probeSuccesses int
	transitions    [numStates]uint64
	pending        []StateChange // transitions not yet given to the hook
	draining       bool          // a goroutine is giving pending to the hook
}

// windowBox lets an interface value sit behind an atomic pointer.
type windowBox struct{ w window }

const stateBits = 3

func packWord(s State, gen uint64) uint64 { return gen<<stateBits | uint64(s) }
func wordState(w uint64) State            { return State(w & (1<<stateBits - 1)) }
func wordGen(w uint64) uint64             { return w >> stateBits }

// New builds a closed breaker from a config, validating it first.
func New(c Config, opts ...Option) (*Breaker, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c = c.WithDefaults()
	var o options
	for _, f := range opts {
		f(&o)
	}
	if o.rand == nil {
		o.rand = rand.Float64
	}
	b := &Breaker{cfg: c, rand: o.rand, hook: o.hook, minCalls: int64(c.Window.MinimumCalls), reason: "new"}
	if !c.Disabled {
		if !c.ConsecutiveFailures.Disabled {
			b.consecN = int64(c.ConsecutiveFailures.Threshold)
		}
		if !c.FailureRate.Disabled {
			b.rate = c.FailureRate.Threshold
		}
		if c.SlowCalls.DurationThreshold > 0 {
			b.slowRate = c.SlowCalls.RateThreshold
		}
	}
	b.slowDur = c.SlowCalls.DurationThreshold
	b.win.Store(&windowBox{b.newWindow(0)})
	b.word.Store(packWord(StateClosed, 0))
	switch o.forced {
	case StateForcedOpen:
		b.openErr.Store(&OpenError{Forced: true})
		b.word.Store(packWord(StateForcedOpen, 0))
		b.since, b.reason = o.forcedSince, "forced_open"
	case StateForcedClosed:
		b.word.Store(packWord(StateForcedClosed, 0))
		b.since, b.reason = o.forcedSince, "forced_closed"
	}
	return b, nil
}

// Config returns the breaker's effective config (defaults filled in).
func (b *Breaker) Config() Config { return b.cfg }

func (b *Breaker) newWindow(gen uint64) window {
	if b.cfg.Window.Type == WindowTime {
		return newTimeWindow(gen, b.cfg.Window.Duration, b.cfg.Window.Buckets)
	}
	return newCountWindow(gen, b.cfg.Window.Size)
}

// State returns the current state. An open breaker whose open period is
// over still reports StateOpen until the next Allow moves it to half-open.
func (b *Breaker) State() State { return wordState(b.word.Load()) }

// Permit is the admission of one call by Allow. Report the call's outcome
// with exactly one Done, or give the admission back with Cancel if the call
// was never made. A Permit is a small value; copying it is fine, reporting
// twice is not. The zero Permit's methods do nothing.
type Permit struct {
	b     *Breaker
	start time.Time
	word  uint64
}

// Probe reports whether the permit is one of the half-open state's probes.
func (p Permit) Probe() bool { return p.b != nil && wordState(p.word) == StateHalfOpen }

// Allow decides whether a call may go to the upstream now. On success the
// call must be followed by Permit.Done or Permit.Cancel. Otherwise the error
// is an *OpenError (errors.Is ErrOpen), carrying the end of the open
// period, or ErrTooManyProbes.
func (b *Breaker) Allow(now time.Time) (Permit, error) {
	w := b.word.Load()
	switch wordState(w) {
	case StateClosed, StateForcedClosed:
		return Permit{b: b, start: now, word: w}, nil
	case StateOpen:
		if e := b.openErr.Load(); now.Before(e.Until) {
			b.rejectedOpen.Add(1)
			return Permit{}, e
		}
	case StateForcedOpen:
		b.rejectedOpen.Add(1)
		return Permit{}, b.openErr.Load()
	}
	return b.allowLocked(now)
}

// allowLocked handles the open state after its period and the half-open
// state, under the mutex.
func (b *Breaker) allowLocked(now time.Time) (Permit, error) {
	b.mu.Lock()
	w := b.word.Load()
	var err error
	switch wordState(w) {
	case StateClosed, StateForcedClosed:
	case StateOpen, StateForcedOpen:
		if e := b.openErr.Load(); e.Forced || now.Before(e.Until) {
			err = e
			break
		}
		w = b.setStateLocked(StateHalfOpen, now, "open_period_over")
		b.probes, b.probeSuccesses = 1, 0
	case StateHalfOpen:
		if b.probes >= b.cfg.HalfOpen.MaxProbes {
			err = ErrTooManyProbes
			break
		}
		b.probes++
	}
	drain := b.claimDrainLocked()
	b.mu.Unlock()
	if drain {
		b.drain()
	}
	if err != nil {
		if err == ErrTooManyProbes {
			b.rejectedProbes.Add(1)
		} else {
			b.rejectedOpen.Add(1)
		}
		return Permit{}, err
	}
	return Permit{b: b, start: now, word: w}, nil
}

// Done reports the outcome of the permitted call: failed as the failure
// classifier decided, and its latency as now minus the time passed to
// Allow (a call is slow when the latency reaches
// slow_calls.duration_threshold). Outcomes of calls admitted in an earlier
// state (before a transition) are ignored.
func (p Permit) Done(now time.Time, failed bool) {
	b := p.b
	if b == nil {
		return
	}
	slow := b.slowDur > 0 && now.Sub(p.start) >= b.slowDur
	switch wordState(p.word) {
	case StateClosed, StateForcedClosed:
		b.record(p.word, now, failed, slow)
	case StateHalfOpen:
		b.probeDone(p.word, now, failed || (slow && b.slowRate > 0))
	}
}

// Cancel gives back a permit whose call was never made (for example, a
// resource limit refused it afterwards). It frees a half-open probe slot.
func (p Permit) Cancel() {
	if b := p.b; b != nil && wordState(p.word) == StateHalfOpen {
		b.mu.Lock()
		if b.word.Load() == p.word {
			b.probes--
		}
		b.mu.Unlock()
	}
}

// record is the closed-state path: lock-free, allocation-free.
func (b *Breaker) record(w uint64, now time.Time, failed, slow bool) {
	win := b.win.Load().w
	if win.generation() != wordGen(w) {
		return // the closed period this call was admitted in is over
	}
	t, eval := win.record(now, failed, slow)
	var reason string
	if b.consecN > 0 {
		c := win.consecutive()
		if failed {
			if c.Add(1) >= b.consecN {
				reason = "consecutive_failures"
			}
		} else if c.Load() != 0 {
			c.Store(0)
		}
	}
	if wordState(w) != StateClosed {
		return // forced closed: count, never trip
	}
	if reason == "" && eval && t.calls >= b.minCalls && t.calls > 0 {
		// The share is compared, not the count with threshold × calls:
		// a division rounds failures/calls to the same float64 as the
		// threshold written as that share, where the product rounds
		// 0.07 × 100 up to 7.000000000000001, above 7 failures.
		switch {
		case b.rate > 0 && float64(t.failures)/float64(t.calls) >= b.rate:
			reason = "failure_rate"
		case b.slowRate > 0 && float64(t.slow)/float64(t.calls) >= b.slowRate:
			reason = "slow_call_rate"
		}
	}
	if reason != "" {
		b.trip(w, now, reason)
	}
}

// trip opens the breaker if it is still in the closed generation w.
func (b *Breaker) trip(w uint64, now time.Time, reason string) {
	r := b.rand()
	b.mu.Lock()
	if b.word.Load() != w {
		b.mu.Unlock()
		return // another call tripped it first
	}
	b.openLocked(now, reason, r)
	drain := b.claimDrainLocked()
	b.mu.Unlock()
	if drain {
		b.drain()
	}
}

func (b *Breaker) probeDone(w uint64, now time.Time, bad bool) {
	var r float64
	if bad {
		r = b.rand()
	}
	b.mu.Lock()
	if b.word.Load() != w {
		b.mu.Unlock()
		return
	}
	b.probes--
	if bad {
		b.openLocked(now, "probe_failed", r)
	} else if b.probeSuccesses++; b.probeSuccesses >= b.cfg.HalfOpen.SuccessesToClose {
		b.closeLocked(StateClosed, now, "probes_succeeded")
	}
	drain := b.claimDrainLocked()
	b.mu.Unlock()
	if drain {
		b.drain()
	}
}

// openLocked moves to StateOpen for the next back-off period; r in [0,1)
// draws the jitter.
func (b *Breaker) openLocked(now time.Time, reason string, r float64) {
	b.openings++
	b.timesOpened++
	until := now.Add(b.openPeriod(b.openings, r))
	b.openErr.Store(&OpenError{Until: until})
	b.setStateLocked(StateOpen, now, reason)
	ev := &b.pending[len(b.pending)-1]
	ev.OpenUntil, ev.Openings = until, b.openings
}

// openPeriod is the length of the n-th successive open period:
// base × multiplier^(n−1), capped at max, then shortened by jitter × r of
// itself.
func (b *Breaker) openPeriod(n int, r float64) time.Duration {
	o := b.cfg.Open
	d := o.Max
	if f := float64(o.Base) * math.Pow(o.Multiplier, float64(n-1)); f < float64(o.Max) {
		d = time.Duration(f)
	}
	if o.Jitter > 0 && r > 0 {
		d -= time.Duration(float64(d) * o.Jitter * min(r, 1))
	}
	return d
}

// closeLocked moves to a closed state (s is StateClosed or
// StateForcedClosed) with a fresh window.
func (b *Breaker) closeLocked(s State, now time.Time, reason string) {
	b.openings = 0
	b.probes, b.probeSuccesses = 0, 0
	gen := wordGen(b.word.Load()) + 1
	// The window goes in before the word: a Permit issued in the new
	// generation must find its window.
	b.win.Store(&windowBox{b.newWindow(gen)})
	b.setStateLocked(s, now, reason)
}

// setStateLocked stores the new state with the next generation and queues
// the hook event. It returns the new word.
func (b *Breaker) setStateLocked(s State, now time.Time, reason string) uint64 {
	old := b.word.Load()
	w := packWord(s, wordGen(old)+1)
	b.word.Store(w)
	b.since, b.reason = now, reason
	b.transitions[s]++
	b.pending = append(b.pending, StateChange{From: wordState(old), To: s, At: now, Reason: reason})
	return w
}

// claimDrainLocked reports whether the caller must deliver the pending
// events (after unlocking): true if there are some and nobody else is.
func (b *Breaker) claimDrainLocked() bool {
	if b.hook == nil {
		b.pending = b.pending[:0]
		return false
	}
	if len(b.pending) == 0 || b.draining {
		return false
	}
	b.draining = true
	return true
}

// drain gives the pending events to the hook, in order, without the lock.
func (b *Breaker) drain() {
	done := false
	defer func() {
		if !done { // the hook panicked: let the next transition deliver
			b.mu.Lock()
			b.draining = false
			b.mu.Unlock()
		}
	}()
	for {
		b.mu.Lock()
		if len(b.pending) == 0 {
			// Cleared in the same critical section that sees the queue
			// empty, so that an event queued after it is delivered by
			// its own caller.
			b.pending = nil
			b.draining = false
			b.mu.Unlock()
			done = true
			return
		}
		ev := b.pending[0]
		b.pending = b.pending[1:]
		b.mu.Unlock()
		b.hook(ev)
	}
}

// ForceOpen makes the breaker reject every call until Reset.
func (b *Breaker) ForceOpen(now time.Time) {
	b.operate(func() {
		b.openErr.Store(&OpenError{Forced: true})
		b.setStateLocked(StateForcedOpen, now, "forced_open")
	})
}

// ForceClosed makes the breaker admit every call until Reset. Outcomes are
// still counted (visible in Snapshot) but never trip it.
func (b *Breaker) ForceClosed(now time.Time) {
	b.operate(func() { b.closeLocked(StateForcedClosed, now, "forced_closed") })
}

// Reset returns the breaker to closed with an empty window and the back-off
// at its base, from any state.
func (b *Breaker) Reset(now time.Time) {
	b.operate(func() { b.closeLocked(StateClosed, now, "reset") })
}

func (b *Breaker) operate(f func()) {
	b.mu.Lock()
	f()
	drain := b.claimDrainLocked()
	b.mu.Unlock()
	if drain {
		b.drain()
	}
}

// Snapshot is a breaker's state at one moment, for an admin page.
type Snapshot struct {
	State  State
	Since  time.Time // when the current state began (zero: since New)
	Reason string    // the reason of the last transition ("new" if none)

	// Window figures of the current closed period (while open or
	// half-open: of the closed period that ended).
	Calls, Failures, Slow int64
	FailureRate, SlowRate float64 // 0 when Calls is 0
	ConsecutiveFailures   int64

	OpenUntil      time.Time // end of the open period (StateOpen only)
	Openings       int       // successive openings since the last close
	TimesOpened    uint64    // openings since New
	ProbesInFlight int       // StateHalfOpen only
	ProbeSuccesses int       // StateHalfOpen only

	// Transitions counts the entries into each state since New, indexed
	// by State.
	Transitions [numStates]uint64
	// RejectedOpen and RejectedProbes count the calls refused with
	// ErrOpen and ErrTooManyProbes since New.
	RejectedOpen, RejectedProbes uint64
}

// Snapshot reads the breaker's state; now positions a time window.
func (b *Breaker) Snapshot(now time.Time) Snapshot {
	b.mu.Lock()
	w := b.word.Load()
	s := Snapshot{
		State:          wordState(w),
		Since:          b.since,
		Reason:         b.reason,
		Openings:       b.openings,
		TimesOpened:    b.timesOpened,
		Transitions:    b.transitions,
		RejectedOpen:   b.rejectedOpen.Load(),
		RejectedProbes: b.rejectedProbes.Load(),
	}
	if s.State == StateOpen {
		s.OpenUntil = b.openErr.Load().Until
	}
	if s.State == StateHalfOpen {
		s.ProbesInFlight, s.ProbeSuccesses = b.probes, b.probeSuccesses
	}
	win := b.win.Load().w
	b.mu.Unlock()
	t := win.totals(now)
	s.Calls, s.Failures, s.Slow = t.calls, t.failures, t.slow
	if t.calls > 0 {
		s.FailureRate = float64(t.failures) / float64(t.calls)
		s.SlowRate = float64(t.slow) / float64(t.calls)
	}
	s.ConsecutiveFailures = win.consecutive().Load()
	return s
}

// NumStates is the number of States, for arrays indexed by State.
const NumStates = int(numStates)
