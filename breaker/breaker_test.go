package breaker

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// call is one step of a scripted sequence: at time t, a call taking lat that
// fails or not.
type call struct {
	t      time.Duration
	failed bool
	lat    time.Duration
}

func mustNew(t *testing.T, c Config, opts ...Option) *Breaker {
	t.Helper()
	b, err := New(c, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return b
}

// run feeds calls to b and returns the state after each.
func run(t *testing.T, b *Breaker, calls []call) []State {
	t.Helper()
	var states []State
	for _, c := range calls {
		p, err := b.Allow(at(c.t))
		if err == nil {
			p.Done(at(c.t+c.lat), c.failed)
		}
		states = append(states, b.State())
	}
	return states
}

func fails(n int, from, step time.Duration) []call {
	var cs []call
	for i := range n {
		cs = append(cs, call{t: from + time.Duration(i)*step, failed: true})
	}
	return cs
}

func oks(n int, from, step time.Duration) []call {
	var cs []call
	for i := range n {
		cs = append(cs, call{t: from + time.Duration(i)*step})
	}
	return cs
}

func cat(parts ...[]call) []call {
	var cs []call
	for _, p := range parts {
		cs = append(cs, p...)
	}
	return cs
}

func withMin(c Config, n int) Config {
	c.Window.MinimumCalls = n
	return c
}

func TestTripPolicies(t *testing.T) {
	onlyConsecutive := Config{FailureRate: FailureRateConfig{Disabled: true}, ConsecutiveFailures: ConsecutiveFailuresConfig{Threshold: 3}}
	onlyRate := Config{
		ConsecutiveFailures: ConsecutiveFailuresConfig{Disabled: true},
		FailureRate:         FailureRateConfig{Threshold: 0.5},
		Window:              WindowConfig{Size: 10, MinimumCalls: 6},
	}
	onlyTimeRate := Config{
		ConsecutiveFailures: ConsecutiveFailuresConfig{Disabled: true},
		FailureRate:         FailureRateConfig{Threshold: 0.5},
		Window:              WindowConfig{Type: WindowTime, Duration: 10 * time.Second, Buckets: 10, MinimumCalls: 4},
	}
	onlySlow := Config{
		ConsecutiveFailures: ConsecutiveFailuresConfig{Disabled: true},
		FailureRate:         FailureRateConfig{Disabled: true},
		SlowCalls:           SlowCallsConfig{DurationThreshold: 100 * time.Millisecond, RateThreshold: 0.6},
		Window:              WindowConfig{Size: 5, MinimumCalls: 5},
	}
	slow := func(n int) []call {
		var cs []call
		for i := range n {
			cs = append(cs, call{t: time.Duration(i) * time.Millisecond, lat: 150 * time.Millisecond})
		}
		return cs
	}
	tests := []struct {
		name  string
		cfg   Config
		calls []call
		want  State
		why   string
	}{
		{"consecutive: below threshold stays closed", onlyConsecutive, fails(2, 0, time.Millisecond), StateClosed, ""},
		{"consecutive: threshold trips", onlyConsecutive, fails(3, 0, time.Millisecond), StateOpen, "consecutive_failures"},
		{"consecutive: a success breaks the run", onlyConsecutive,
			cat(fails(2, 0, time.Millisecond), oks(1, 2*time.Millisecond, 0), fails(2, 3*time.Millisecond, time.Millisecond)), StateClosed, ""},
		{"rate: below minimum calls stays closed", onlyRate, fails(5, 0, time.Millisecond), StateClosed, ""},
		{"rate: reaching minimum with rate above threshold trips", onlyRate, fails(6, 0, time.Millisecond), StateOpen, "failure_rate"},
		{"rate: is checked when a failure is recorded, not on a success", onlyRate,
			cat(fails(5, 0, time.Millisecond), oks(1, 5*time.Millisecond, 0)), StateClosed, ""},
		{"rate: the next failure after reaching minimum calls trips", onlyRate,
			cat(fails(5, 0, time.Millisecond), oks(1, 5*time.Millisecond, 0), fails(1, 6*time.Millisecond, 0)), StateOpen, "failure_rate"},
		{"rate: 4 of 10 stays closed", onlyRate,
			cat(oks(6, 0, time.Millisecond), fails(4, 6*time.Millisecond, time.Millisecond)), StateClosed, ""},
		{"rate: exactly the threshold trips", onlyRate,
			cat(oks(5, 0, time.Millisecond), fails(5, 5*time.Millisecond, time.Millisecond)), StateOpen, "failure_rate"},
		{"rate: old successes slide out of a count window", onlyRate,
			cat(oks(20, 0, time.Millisecond), fails(5, 20*time.Millisecond, time.Millisecond)), StateOpen, "failure_rate"},
		{"rate: old failures slide out of a count window",
			// 8 failures of 14 calls, but only 4 of the last 10.
			withMin(onlyRate, 10), cat(fails(4, 0, time.Millisecond), oks(6, 4*time.Millisecond, time.Millisecond), fails(4, 10*time.Millisecond, time.Millisecond)), StateClosed, ""},
		{"time rate: failures in the window trip", onlyTimeRate, fails(4, 0, time.Second), StateOpen, "failure_rate"},
		{"time rate: failures older than the window do not count", onlyTimeRate,
			cat(fails(3, 0, time.Second), oks(3, 12*time.Second, time.Second), fails(2, 20*time.Second, time.Second)), StateClosed, ""},
		{"slow: 3 of 5 slow trips", onlySlow, cat(oks(2, 0, time.Millisecond), slow(3)), StateOpen, "slow_call_rate"},
		{"slow: 2 of 5 slow stays closed", onlySlow, cat(oks(3, 0, time.Millisecond), slow(2)), StateClosed, ""},
		{"slow: disabled config never trips", Config{Disabled: true}, fails(200, 0, time.Millisecond), StateClosed, ""},
		{"default config trips after 5 failures", Config{}, fails(5, 0, time.Millisecond), StateOpen, "consecutive_failures"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := mustNew(t, tc.cfg)
			states := run(t, b, tc.calls)
			if got := states[len(states)-1]; got != tc.want {
				t.Fatalf("state = %v, want %v (states %v)", got, tc.want, states)
			}
			if tc.why != "" {
				if s := b.Snapshot(at(time.Hour)); s.Reason != tc.why {
					t.Errorf("reason = %q, want %q", s.Reason, tc.why)
				}
			}
		})
	}
}

func TestOpenRejectsWithRetryAfterThenHalfOpens(t *testing.T) {
	b := mustNew(t, Config{ConsecutiveFailures: ConsecutiveFailuresConfig{Threshold: 1}, Open: BackoffConfig{Base: 10 * time.Second}})
	p, _ := b.Allow(at(0))
	p.Done(at(0), true)
	_, err := b.Allow(at(3 * time.Second))
	var oe *OpenError
	if !errors.As(err, &oe) || !errors.Is(err, ErrOpen) {
		t.Fatalf("Allow while open: %v, want *OpenError", err)
	}
	if !oe.Until.Equal(at(10 * time.Second)) {
		t.Errorf("Until = %v, want t0+10s", oe.Until.Sub(t0))
	}
	if got := oe.RetryAfter(at(3*time.Second + 500*time.Millisecond)); got != 7*time.Second {
		t.Errorf("RetryAfter = %v, want 7s (rounded up)", got)
	}
	if got := oe.RetryAfter(at(9*time.Second + 900*time.Millisecond)); got != time.Second {
		t.Errorf("RetryAfter near the end = %v, want 1s", got)
	}
	if _, err := b.Allow(at(10 * time.Second)); err != nil {
		t.Fatalf("Allow at end of open period: %v", err)
	}
	if b.State() != StateHalfOpen {
		t.Fatalf("state = %v, want half_open", b.State())
	}
	if s := b.Snapshot(at(10 * time.Second)); s.RejectedOpen != 1 || s.Transitions[StateOpen] != 1 || s.Transitions[StateHalfOpen] != 1 {
		t.Errorf("snapshot counters = %+v", s)
	}
}

func TestBackoffGrowsAcrossOpeningsAndIsCapped(t *testing.T) {
	b := mustNew(t, Config{
		ConsecutiveFailures: ConsecutiveFailuresConfig{Threshold: 1},
		Open:                BackoffConfig{Base: time.Second, Max: 5 * time.Second, Multiplier: 2},
		HalfOpen:            HalfOpenConfig{SuccessesToClose: 1},
	})
	now := at(0)
	p, _ := b.Allow(now)
	p.Done(now, true)
	var got []time.Duration
	for range 5 {
		s := b.Snapshot(now)
		got = append(got, s.OpenUntil.Sub(now))
		now = s.OpenUntil
		p, err := b.Allow(now) // first probe
		if err != nil {
			t.Fatalf("probe: %v", err)
		}
		p.Done(now, true) // fails: re-open, longer
	}
	want := []time.Duration{1 * time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("open periods = %v, want %v", got, want)
		}
	}
	// A close resets the back-off to its base.
	now = b.Snapshot(now).OpenUntil
	p, _ = b.Allow(now)
	p.Done(now, false)
	if b.State() != StateClosed {
		t.Fatalf("state = %v, want closed", b.State())
	}
	p, _ = b.Allow(now)
	p.Done(now, true)
	if s := b.Snapshot(now); s.OpenUntil.Sub(now) != time.Second || s.Openings != 1 || s.TimesOpened != 7 {
		t.Errorf("after close and re-trip: period %v openings %d times %d, want 1s, 1, 7", s.OpenUntil.Sub(now), s.Openings, s.TimesOpened)
	}
}

func TestJitterShortensWithinBounds(t *testing.T) {
	for _, r := range []float64{0, 0.25, 0.5, 0.999999} {
		b := mustNew(t, Config{
			ConsecutiveFailures: ConsecutiveFailuresConfig{Threshold: 1},
			Open:                BackoffConfig{Base: 10 * time.Second, Jitter: 0.2},
		}, WithRand(seqRand(r)))
		p, _ := b.Allow(at(0))
		p.Done(at(0), true)
		d := b.Snapshot(at(0)).OpenUntil.Sub(at(0))
		want := 10*time.Second - time.Duration(float64(10*time.Second)*0.2*r)
		if d != want || d > 10*time.Second || d <= 8*time.Second {
			t.Errorf("r=%v: open period %v, want %v within (8s,10s]", r, d, want)
		}
	}
}

func TestHalfOpenProbeLimitAndCloseAfterSuccesses(t *testing.T) {
	b := mustNew(t, Config{
		ConsecutiveFailures: ConsecutiveFailuresConfig{Threshold: 1},
		Open:                BackoffConfig{Base: time.Second},
		HalfOpen:            HalfOpenConfig{MaxProbes: 2, SuccessesToClose: 3},
	})
	p, _ := b.Allow(at(0))
	p.Done(at(0), true)
	now := at(time.Second)
	p1, err1 := b.Allow(now)
	p2, err2 := b.Allow(now)
	_, err3 := b.Allow(now)
	if err1 != nil || err2 != nil || !errors.Is(err3, ErrTooManyProbes) {
		t.Fatalf("probes: %v %v %v, want nil nil ErrTooManyProbes", err1, err2, err3)
	}
	if !p1.Probe() || !p2.Probe() {
		t.Fatal("half-open permits must be probes")
	}
	p1.Done(now, false)
	p3, err := b.Allow(now) // a slot is free again
	if err != nil {
		t.Fatalf("probe after one finished: %v", err)
	}
	p2.Done(now, false)
	if b.State() != StateHalfOpen {
		t.Fatalf("closed after 2 successes, want 3")
	}
	p3.Done(now, false)
	if b.State() != StateClosed {
		t.Fatalf("state = %v after 3 successful probes, want closed", b.State())
	}
	s := b.Snapshot(now)
	if s.Calls != 0 || s.RejectedProbes != 1 {
		t.Errorf("fresh window and rejected probes: calls %d rejected %d", s.Calls, s.RejectedProbes)
	}
}

func TestProbeFailureReopensAndCancelFreesSlot(t *testing.T) {
	b := mustNew(t, Config{
		ConsecutiveFailures: ConsecutiveFailuresConfig{Threshold: 1},
		Open:                BackoffConfig{Base: time.Second, Multiplier: 3},
		HalfOpen:            HalfOpenConfig{MaxProbes: 1},
	})
	p, _ := b.Allow(at(0))
	p.Done(at(0), true)
	now := at(time.Second)
	p, _ = b.Allow(now)
	p.Cancel()
	p, err := b.Allow(now)
	if err != nil {
		t.Fatalf("Allow after Cancel: %v", err)
	}
	p.Done(now, true)
	s := b.Snapshot(now)
	if s.State != StateOpen || s.OpenUntil.Sub(now) != 3*time.Second || s.Reason != "probe_failed" {
		t.Fatalf("after failed probe: %v until +%v reason %q, want open +3s probe_failed", s.State, s.OpenUntil.Sub(now), s.Reason)
	}
}

func TestSlowProbeReopensWhenSlowPolicyOn(t *testing.T) {
	b := mustNew(t, Config{
		ConsecutiveFailures: ConsecutiveFailuresConfig{Threshold: 1},
		SlowCalls:           SlowCallsConfig{DurationThreshold: time.Second},
		Open:                BackoffConfig{Base: time.Second},
	})
	p, _ := b.Allow(at(0))
	p.Done(at(0), true)
	p, _ = b.Allow(at(time.Second))
	p.Done(at(3*time.Second), false)
	if b.State() != StateOpen {
		t.Fatalf("state = %v after a slow probe, want open", b.State())
	}
}

func TestLateOutcomesFromEarlierStateAreIgnored(t *testing.T) {
	b := mustNew(t, Config{
		ConsecutiveFailures: ConsecutiveFailuresConfig{Threshold: 2},
		Open:                BackoffConfig{Base: time.Second},
		HalfOpen:            HalfOpenConfig{SuccessesToClose: 1},
	})
	late1, _ := b.Allow(at(0))
	late2, _ := b.Allow(at(0))
	for range 2 {
		p, _ := b.Allow(at(0))
		p.Done(at(0), true)
	}
	if b.State() != StateOpen {
		t.Fatal("want open")
	}
	probe, _ := b.Allow(at(time.Second))
	late1.Done(at(time.Second), true) // from the closed period: must not fail the probe
	if b.State() != StateHalfOpen {
		t.Fatalf("late closed-state failure moved half_open to %v", b.State())
	}
	probe.Done(at(time.Second), false)
	late2.Done(at(time.Second), true) // must not land in the new window
	if s := b.Snapshot(at(time.Second)); s.State != StateClosed || s.Calls != 0 || s.ConsecutiveFailures != 0 {
		t.Fatalf("after close: %+v, want closed with an empty window", s)
	}
}

// A breaker made forced (replacing one an operator forced) starts so,
// with no transition for the hook, and leaves it as one forced by
// ForceOpen or ForceClosed does.
func TestWithForcedState(t *testing.T) {
	var seen []string
	hook := WithStateChangeHook(func(c StateChange) { seen = append(seen, c.From.String()+">"+c.To.String()) })
	cfg := Config{ConsecutiveFailures: ConsecutiveFailuresConfig{Threshold: 1}}

	b := mustNew(t, cfg, hook, WithForcedState(StateForcedOpen, at(-time.Minute)))
	var oe *OpenError
	if _, err := b.Allow(at(time.Hour)); !errors.As(err, &oe) || !oe.Forced {
		t.Fatalf("made forced open: Allow = %v, want a forced *OpenError", err)
	}
	if s := b.Snapshot(at(0)); s.State != StateForcedOpen || s.Reason != "forced_open" || !s.Since.Equal(at(-time.Minute)) || s.Transitions[StateForcedOpen] != 0 {
		t.Fatalf("made forced open: %+v", s)
	}
	if len(seen) != 0 {
		t.Fatalf("the hook saw %v for a breaker made forced", seen)
	}
	b.Reset(at(time.Second))
	if p, err := b.Allow(at(time.Second)); err != nil {
		t.Fatalf("reset: %v", err)
	} else {
		p.Done(at(time.Second), true)
	}
	if b.State() != StateOpen || strings.Join(seen, " ") != "forced_open>closed closed>open" {
		t.Fatalf("after reset and a failure: %v, hook saw %v", b.State(), seen)
	}

	b = mustNew(t, cfg, WithForcedState(StateForcedClosed, at(0)))
	for i := range 5 {
		p, err := b.Allow(at(0))
		if err != nil {
			t.Fatalf("made forced closed: call %d refused: %v", i, err)
		}
		p.Done(at(0), true)
	}
	if s := b.Snapshot(at(0)); s.State != StateForcedClosed || s.Failures != 5 {
		t.Fatalf("made forced closed: %v with %d failures, want forced_closed with 5 counted", s.State, s.Failures)
	}

	b = mustNew(t, cfg, WithForcedState(StateOpen, at(0)))
	if b.State() != StateClosed {
		t.Fatalf("WithForcedState(open) made %v, want it ignored", b.State())
	}
}

func TestForcedStatesAndReset(t *testing.T) {
	b := mustNew(t, Config{ConsecutiveFailures: ConsecutiveFailuresConfig{Threshold: 1}})
	b.ForceOpen(at(0))
	_, err := b.Allow(at(time.Hour))
	var oe *OpenError
	if !errors.As(err, &oe) || !oe.Forced || oe.RetryAfter(at(0)) != 0 {
		t.Fatalf("forced open Allow = %v, want forced *OpenError", err)
	}
	b.ForceClosed(at(time.Hour))
	for i := range 10 {
		p, err := b.Allow(at(time.Hour))
		if err != nil {
			t.Fatalf("forced closed rejected call %d: %v", i, err)
		}
		p.Done(at(time.Hour), true)
	}
	if s := b.Snapshot(at(time.Hour)); s.State != StateForcedClosed || s.Failures != 10 {
		t.Fatalf("forced closed: %v with %d failures counted, want forced_closed with 10", s.State, s.Failures)
	}
	b.Reset(at(2 * time.Hour))
	if s := b.Snapshot(at(2 * time.Hour)); s.State != StateClosed || s.Calls != 0 || !s.Since.Equal(at(2*time.Hour)) || s.Reason != "reset" {
		t.Fatalf("after reset: %+v", s)
	}
	p, _ := b.Allow(at(2 * time.Hour))
	p.Done(at(2*time.Hour), true)
	if b.State() != StateOpen {
		t.Fatalf("reset breaker does not trip again: %v", b.State())
	}
}

func TestHookSeesTransitionsInOrderAndMayCallTheBreaker(t *testing.T) {
	var b *Breaker
	var got []string
	var reentered atomic.Bool
	hook := func(c StateChange) {
		// Reading state from the hook must not deadlock (no lock is held).
		s := b.Snapshot(c.At)
		got = append(got, c.From.String()+">"+c.To.String()+":"+c.Reason+"/"+s.State.String())
		if c.To == StateOpen && reentered.CompareAndSwap(false, true) {
			// A transition made from inside the hook is delivered after
			// this call returns, in order.
			b.ForceOpen(c.At)
		}
	}
	b = mustNew(t, Config{ConsecutiveFailures: ConsecutiveFailuresConfig{Threshold: 1}}, WithStateChangeHook(hook))
	p, _ := b.Allow(at(0))
	p.Done(at(0), true)
	b.Reset(at(time.Second))
	want := []string{
		"closed>open:consecutive_failures/open",
		"open>forced_open:forced_open/forced_open",
		"forced_open>closed:reset/closed",
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("hook saw\n %v\nwant\n %v", got, want)
	}
}

func TestHookEventsCarryOpenPeriod(t *testing.T) {
	var evs []StateChange
	b := mustNew(t, Config{ConsecutiveFailures: ConsecutiveFailuresConfig{Threshold: 1}, Open: BackoffConfig{Base: 2 * time.Second}},
		WithStateChangeHook(func(c StateChange) { evs = append(evs, c) }))
	p, _ := b.Allow(at(0))
	p.Done(at(0), true)
	if len(evs) != 1 || !evs[0].OpenUntil.Equal(at(2*time.Second)) || evs[0].Openings != 1 {
		t.Fatalf("events %+v", evs)
	}
}

func TestHalfOpenNeverAdmitsMoreThanMaxProbes(t *testing.T) {
	const k = 3
	b := mustNew(t, Config{
		ConsecutiveFailures: ConsecutiveFailuresConfig{Threshold: 1},
		Open:                BackoffConfig{Base: time.Second},
		HalfOpen:            HalfOpenConfig{MaxProbes: k, SuccessesToClose: 1 << 30},
	}, WithRand(func() float64 { return 0 }))
	p, _ := b.Allow(at(0))
	p.Done(at(0), true)
	now := at(time.Second)
	var inFlight, peak, admitted atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				p, err := b.Allow(now)
				if err != nil {
					continue
				}
				admitted.Add(1)
				n := inFlight.Add(1)
				for {
					m := peak.Load()
					if n <= m || peak.CompareAndSwap(m, n) {
						break
					}
				}
				inFlight.Add(-1)
				if (g+i)%2 == 0 {
					p.Done(now, false)
				} else {
					p.Cancel()
				}
			}
		}()
	}
	wg.Wait()
	if peak.Load() > k {
		t.Fatalf("%d probes in flight at once, max %d", peak.Load(), k)
	}
	if admitted.Load() == 0 {
		t.Fatal("no probe admitted")
	}
	if s := b.Snapshot(now); s.ProbesInFlight != 0 || s.State != StateHalfOpen {
		t.Fatalf("after all probes: %+v", s)
	}
}

func TestCountersExactUnderParallelCalls(t *testing.T) {
	for _, w := range []WindowConfig{{Size: 1 << 16}, {Type: WindowTime, Duration: time.Minute, Buckets: 6}} {
		t.Run(w.Type, func(t *testing.T) {
			b := mustNew(t, Config{Disabled: true, Window: w, SlowCalls: SlowCallsConfig{DurationThreshold: time.Second}})
			const goroutines, per = 8, 3000
			var wg sync.WaitGroup
			for g := range goroutines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range per {
						now := at(time.Duration(i) * time.Millisecond) // all within one minute
						p, err := b.Allow(now)
						if err != nil {
							t.Error(err)
							return
						}
						lat := time.Duration(0)
						if i%5 == 0 {
							lat = 2 * time.Second
						}
						p.Done(now.Add(lat), (g+i)%3 == 0)
					}
				}()
			}
			wg.Wait()
			var wantFail int64
			for g := range goroutines {
				for i := range per {
					if (g+i)%3 == 0 {
						wantFail++
					}
				}
			}
			s := b.Snapshot(at(per * time.Millisecond))
			if s.Calls != goroutines*per || s.Failures != wantFail || s.Slow != goroutines*per/5 {
				t.Fatalf("calls %d failures %d slow %d, want %d %d %d", s.Calls, s.Failures, s.Slow, goroutines*per, wantFail, goroutines*per/5)
			}
		})
	}
}

func TestParallelTripOpensExactlyOnce(t *testing.T) {
	var opened atomic.Int64
	b := mustNew(t, Config{ConsecutiveFailures: ConsecutiveFailuresConfig{Threshold: 10}, Open: BackoffConfig{Base: time.Hour}},
		WithStateChangeHook(func(c StateChange) {
			if c.To == StateOpen {
				opened.Add(1)
			}
		}))
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 500 {
				if p, err := b.Allow(at(0)); err == nil {
					p.Done(at(0), true)
				}
			}
		}()
	}
	wg.Wait()
	if opened.Load() != 1 || b.State() != StateOpen {
		t.Fatalf("opened %d times, state %v; want once, open", opened.Load(), b.State())
	}
}

func TestHookGetsEveryTransitionOnceUnderConcurrency(t *testing.T) {
	var delivered atomic.Uint64
	var last atomic.Int64 // the hook is never called concurrently with itself
	var overlap atomic.Bool
	b := mustNew(t, Config{ConsecutiveFailures: ConsecutiveFailuresConfig{Threshold: 1}},
		WithStateChangeHook(func(StateChange) {
			if last.Add(1) != 1 {
				overlap.Store(true)
			}
			delivered.Add(1)
			last.Add(-1)
		}))
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				switch (g + i) % 3 {
				case 0:
					b.ForceOpen(at(0))
				case 1:
					b.Reset(at(0))
				default:
					if p, err := b.Allow(at(0)); err == nil {
						p.Done(at(0), true)
					}
				}
			}
		}()
	}
	wg.Wait()
	var total uint64
	for _, n := range b.Snapshot(at(0)).Transitions {
		total += n
	}
	if delivered.Load() != total || overlap.Load() {
		t.Fatalf("hook got %d events for %d transitions (overlap %v)", delivered.Load(), total, overlap.Load())
	}
}

func TestClosedFastPathDoesNotAllocate(t *testing.T) {
	for _, w := range []WindowConfig{{}, {Type: WindowTime}} {
		b := mustNew(t, Config{Window: w, SlowCalls: SlowCallsConfig{DurationThreshold: time.Second}})
		i := 0
		if n := testing.AllocsPerRun(1000, func() {
			now := at(time.Duration(i) * time.Millisecond)
			p, err := b.Allow(now)
			if err != nil {
				t.Fatal(err)
			}
			p.Done(now, i%50 == 0)
			i++
		}); n != 0 {
			t.Errorf("%s window: %v allocs per call", w.Type, n)
		}
	}
}

func TestOpenRejectionDoesNotAllocate(t *testing.T) {
	b := mustNew(t, Config{ConsecutiveFailures: ConsecutiveFailuresConfig{Threshold: 1}})
	p, _ := b.Allow(at(0))
	p.Done(at(0), true)
	if n := testing.AllocsPerRun(1000, func() {
		if _, err := b.Allow(at(time.Second)); err == nil {
			t.Fatal("admitted while open")
		}
	}); n != 0 {
		t.Errorf("%v allocs per rejection", n)
	}
}

func TestRejectReason(t *testing.T) {
	l := mustLimits(t, LimitsConfig{MaxPendingRequests: 1})
	_ = l.Acquire(LimitPendingRequests)
	limitErr := l.Acquire(LimitPendingRequests)
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{&OpenError{Until: t0}, "open"},
		{fmt.Errorf("calling payments: %w", &OpenError{Forced: true}), "open"},
		{ErrTooManyProbes, "half_open"},
		{fmt.Errorf("wrapped: %w", ErrTooManyProbes), "half_open"},
		{limitErr, "max_pending_requests"},
		{fmt.Errorf("wrapped: %w", limitErr), "max_pending_requests"},
		{errors.New("other"), ""},
	} {
		if got := RejectReason(tc.err); got != tc.want {
			t.Errorf("RejectReason(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

// A rate threshold is met by a window whose share equals it exactly, for
// every threshold written with two decimals: 7 failed calls of 100 trip
// failure_rate 0.07, as 7 slow calls of 100 trip slow_calls 0.07, and 6
// trip neither.
func TestRateThresholdIsMetByAnEqualShare(t *testing.T) {
	// state returns the breaker's state and reason after 100 calls of
	// which the last bad ones failed (or were slow).
	state := func(policy string, th float64, bad int) (State, string) {
		cfg := Config{
			ConsecutiveFailures: ConsecutiveFailuresConfig{Disabled: true},
			FailureRate:         FailureRateConfig{Threshold: th},
			Window:              WindowConfig{Size: 100, MinimumCalls: 100},
		}
		if policy == "slow_call_rate" {
			cfg.FailureRate.Disabled = true
			cfg.SlowCalls = SlowCallsConfig{DurationThreshold: time.Second, RateThreshold: th}
		}
		b := mustNew(t, cfg)
		for i := range 100 {
			p, err := b.Allow(at(0))
			if err != nil {
				t.Fatalf("%s %v: call %d refused: %v", policy, th, i, err)
			}
			switch {
			case i < 100-bad:
				p.Done(at(0), false)
			case policy == "slow_call_rate":
				p.Done(at(time.Second), false)
			default:
				p.Done(at(0), true)
			}
		}
		s := b.Snapshot(at(0))
		return s.State, s.Reason
	}
	for pct := 1; pct < 100; pct++ {
		th := float64(pct) / 100
		for _, policy := range []string{"failure_rate", "slow_call_rate"} {
			if st, why := state(policy, th, pct); st != StateOpen || why != policy {
				t.Errorf("%s %v: %d bad calls of 100 left it %v (%s)", policy, th, pct, st, why)
			}
			if st, _ := state(policy, th, pct-1); st != StateClosed {
				t.Errorf("%s %v: %d bad calls of 100 tripped it", policy, th, pct-1)
			}
		}
	}
}

// A count window smaller than the default minimum_calls (20) still lets
// the failure-rate policy trip: minimum_calls defaults to the window's
// size then. A minimum above the size, which no count window could ever
// reach, is refused.
func TestCountWindowBelowDefaultMinimumCallsTrips(t *testing.T) {
	cfg := Config{
		ConsecutiveFailures: ConsecutiveFailuresConfig{Disabled: true},
		Window:              WindowConfig{Size: 10},
	}
	if got := cfg.WithDefaults().Window.MinimumCalls; got != 10 {
		t.Errorf("effective minimum_calls %d, want the size 10", got)
	}
	b := mustNew(t, cfg)
	states := run(t, b, cat(oks(5, 0, time.Millisecond), fails(5, 5*time.Millisecond, time.Millisecond)))
	if s := b.Snapshot(at(time.Second)); s.State != StateOpen || s.Reason != "failure_rate" {
		t.Fatalf("5 failures of 10 in a window of 10: %v (%s), states %v", s.State, s.Reason, states)
	}
	// A time window's count is not bounded by a size: its default stays.
	if got := (Config{Window: WindowConfig{Type: WindowTime, Size: 10}}).WithDefaults().Window.MinimumCalls; got != DefaultMinimumCalls {
		t.Errorf("time window: effective minimum_calls %d, want %d", got, DefaultMinimumCalls)
	}
	err := Config{Window: WindowConfig{Size: 10, MinimumCalls: 11}}.Validate()
	if want := "window.minimum_calls: must be at most window.size (10), which a count window never exceeds"; err == nil || err.Error() != want {
		t.Fatalf("Validate = %v, want %q", err, want)
	}
	if err := (Config{Window: WindowConfig{MinimumCalls: 101}}).Validate(); err == nil || !strings.Contains(err.Error(), "window.size (default 100)") {
		t.Fatalf("minimum_calls 101 with the default size: Validate = %v", err)
	}
}

// A forced-closed breaker counts its run of failures as it counts its
// window, for the admin page, though the run trips nothing.
func TestForcedClosedCountsConsecutiveFailures(t *testing.T) {
	b := mustNew(t, Config{ConsecutiveFailures: ConsecutiveFailuresConfig{Threshold: 2}})
	b.ForceClosed(at(0))
	for i, failed := range []bool{true, true, true, false, true} {
		p, err := b.Allow(at(0))
		if err != nil {
			t.Fatalf("forced closed refused call %d: %v", i, err)
		}
		p.Done(at(0), failed)
		want := int64(i + 1)
		if i >= 3 {
			want = int64(i - 3)
		}
		if s := b.Snapshot(at(0)); s.State != StateForcedClosed || s.ConsecutiveFailures != want {
			t.Fatalf("after call %d: %v with a run of %d failures, want forced_closed with %d", i, s.State, s.ConsecutiveFailures, want)
		}
	}
}
