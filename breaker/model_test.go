package breaker

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// model is a deliberately plain breaker: the state machine written out with
// a list of events for the window, to check Breaker against.
type model struct {
	cfg      Config
	state    State
	events   []event
	consec   int
	openings int
	until    time.Time
	probes   int
	succ     int
}

func (m *model) window() []event { return m.events[max(0, len(m.events)-m.cfg.Window.Size):] }

func (m *model) open(now time.Time) {
	m.openings++
	d := float64(m.cfg.Open.Base) * math.Pow(m.cfg.Open.Multiplier, float64(m.openings-1))
	m.until = now.Add(time.Duration(min(d, float64(m.cfg.Open.Max))))
	m.state = StateOpen
}

func (m *model) close(s State) {
	m.state, m.events, m.consec, m.openings, m.probes, m.succ = s, nil, 0, 0, 0, 0
}

func (m *model) call(start, end time.Time, failed bool) bool {
	switch m.state {
	case StateForcedOpen:
		return false
	case StateOpen:
		if start.Before(m.until) {
			return false
		}
		m.state, m.probes, m.succ = StateHalfOpen, 0, 0
	case StateHalfOpen:
		if m.probes >= m.cfg.HalfOpen.MaxProbes {
			return false
		}
	}
	slow := m.cfg.SlowCalls.DurationThreshold > 0 && end.Sub(start) >= m.cfg.SlowCalls.DurationThreshold
	switch m.state {
	case StateClosed, StateForcedClosed:
		m.events = append(m.events, event{failed: failed, slow: slow})
		if failed {
			m.consec++
		} else {
			m.consec = 0
		}
		if m.state == StateForcedClosed {
			return true
		}
		var calls, fails, slows int
		for _, e := range m.window() {
			calls++
			if e.failed {
				fails++
			}
			if e.slow {
				slows++
			}
		}
		c := m.cfg
		if !failed && !slow {
			return true // the rate policies are checked on failed or slow calls
		}
		switch {
		case !c.ConsecutiveFailures.Disabled && failed && m.consec >= c.ConsecutiveFailures.Threshold,
			calls >= c.Window.MinimumCalls && !c.FailureRate.Disabled && float64(fails)/float64(calls) >= c.FailureRate.Threshold,
			calls >= c.Window.MinimumCalls && c.SlowCalls.DurationThreshold > 0 && float64(slows)/float64(calls) >= c.SlowCalls.RateThreshold:
			m.open(end)
		}
	case StateHalfOpen:
		if failed || slow && m.cfg.SlowCalls.DurationThreshold > 0 {
			m.open(end)
		} else if m.succ++; m.succ >= m.cfg.HalfOpen.SuccessesToClose {
			m.close(StateClosed)
		}
	}
	return true
}

// TestBreakerMatchesModel runs seeded random sequences of calls (failing or
// not, slow or not, spaced from microseconds to minutes) and operator
// actions against Breaker and the model, comparing admission, state, open
// period and window counts after every step.
func TestBreakerMatchesModel(t *testing.T) {
	for seed := range uint64(150) {
		r := rand.New(rand.NewPCG(seed, 7))
		cfg := Config{
			ConsecutiveFailures: ConsecutiveFailuresConfig{Threshold: 1 + r.IntN(6), Disabled: r.IntN(4) == 0},
			FailureRate:         FailureRateConfig{Threshold: []float64{0.25, 0.5, 0.75, 1, 0.2 + 0.8*r.Float64()}[r.IntN(5)], Disabled: r.IntN(4) == 0},
			Window:              WindowConfig{Size: 1 + r.IntN(30), MinimumCalls: 1 + r.IntN(20)},
			Open:                BackoffConfig{Base: time.Duration(1+r.IntN(5)) * time.Second, Max: time.Duration(5+r.IntN(60)) * time.Second, Multiplier: 1 + 2*r.Float64()},
			HalfOpen:            HalfOpenConfig{MaxProbes: 1 + r.IntN(3), SuccessesToClose: 1 + r.IntN(4)},
		}
		// A count window never holds more than its size.
		cfg.Window.MinimumCalls = min(cfg.Window.MinimumCalls, cfg.Window.Size)
		if r.IntN(2) == 0 {
			cfg.SlowCalls = SlowCallsConfig{DurationThreshold: 100 * time.Millisecond, RateThreshold: 0.3 + 0.7*r.Float64()}
		}
		cfg = cfg.WithDefaults()
		b := mustNew(t, cfg)
		m := &model{cfg: cfg}
		failP := r.Float64()
		now := t0
		for step := range 400 {
			now = now.Add(time.Duration(r.Int64N(int64([]time.Duration{time.Millisecond, time.Second, 20 * time.Second}[r.IntN(3)]))))
			switch op := r.IntN(100); {
			case op == 0:
				b.ForceOpen(now)
				m.state = StateForcedOpen
			case op == 1:
				b.ForceClosed(now)
				m.close(StateForcedClosed)
			case op == 2:
				b.Reset(now)
				m.close(StateClosed)
			default:
				failed := r.Float64() < failP
				lat := time.Duration(r.Int64N(int64(200 * time.Millisecond)))
				p, err := b.Allow(now)
				if got, want := err == nil, m.call(now, now.Add(lat), failed); got != want {
					t.Fatalf("seed %d step %d: admitted=%v, model says %v (state %v)", seed, step, got, want, b.State())
				}
				if err == nil {
					p.Done(now.Add(lat), failed)
				}
				now = now.Add(lat)
			}
			s := b.Snapshot(now)
			if s.State != m.state {
				t.Fatalf("seed %d step %d: state %v, model %v", seed, step, s.State, m.state)
			}
			if m.state == StateOpen && !s.OpenUntil.Equal(m.until) {
				t.Fatalf("seed %d step %d: open until +%v, model +%v", seed, step, s.OpenUntil.Sub(now), m.until.Sub(now))
			}
			if m.state == StateClosed || m.state == StateForcedClosed {
				var want windowTotals
				for _, e := range m.window() {
					want.add(e)
				}
				if got := (windowTotals{s.Calls, s.Failures, s.Slow}); got != want {
					t.Fatalf("seed %d step %d: window %+v, model %+v", seed, step, got, want)
				}
			}
		}
	}
}
