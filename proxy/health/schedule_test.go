package health

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// fakeProber stands in for the network in the scheduling tests: fn decides
// each check's outcome, and every call is logged with its times.
type fakeProber struct {
	fn func(ctx context.Context, i, call int) error

	mu     sync.Mutex
	calls  []probeCall
	perEP  map[int]int
	resets int
	closed int
}

type probeCall struct {
	ep         int
	start, end time.Time
	err        error
}

func (p *fakeProber) check(ctx context.Context, i int) error {
	p.mu.Lock()
	n := p.perEP[i]
	p.perEP[i]++
	p.mu.Unlock()
	start := time.Now()
	err := p.fn(ctx, i, n)
	p.mu.Lock()
	p.calls = append(p.calls, probeCall{ep: i, start: start, end: time.Now(), err: err})
	p.mu.Unlock()
	return err
}

func (p *fakeProber) reset(int, error) { p.mu.Lock(); p.resets++; p.mu.Unlock() }
func (p *fakeProber) close()           { p.mu.Lock(); p.closed++; p.mu.Unlock() }

func (p *fakeProber) log() []probeCall {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]probeCall(nil), p.calls...)
}

// fakeChecker builds a Checker for n endpoints whose checks fn decides.
func fakeChecker(t *testing.T, cfg Config, n int, fn func(ctx context.Context, i, call int) error, opts ...Option) (*Checker, *fakeProber) {
	t.Helper()
	cfg.Kind = TCP
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("127.0.0.1:%d", 10000+i)
	}
	c, err := New(cfg, addrs, opts...)
	if err != nil {
		t.Fatal(err)
	}
	p := &fakeProber{fn: fn, perEP: map[int]int{}}
	c.prober = p
	return c, p
}

var errDown = &CheckError{Cause: CauseStatus, Reason: "status 503"}

func okProbe(context.Context, int, int) error { return nil }

func TestFirstChecksSpreadOverMinIntervalOneSecond(t *testing.T) {
	for _, interval := range []time.Duration{200 * time.Millisecond, 10 * time.Second} {
		t.Run(interval.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const n = 200
				c, p := fakeChecker(t, Config{Interval: interval, Timeout: time.Second, HealthyThreshold: 1, UnhealthyThreshold: 1}, n, okProbe)
				spread := min(interval, time.Second)
				start := time.Now()
				c.Start()
				time.Sleep(spread)
				c.Close()
				first := map[int]time.Duration{}
				for _, call := range p.log() {
					if _, ok := first[call.ep]; !ok {
						first[call.ep] = call.start.Sub(start)
					}
				}
				if len(first) != n {
					t.Fatalf("%d endpoints checked within %v, want all %d", len(first), spread, n)
				}
				var latest time.Duration
				for ep, d := range first {
					if d < 0 || d >= spread {
						t.Fatalf("endpoint %d first checked after %v, want within [0, %v)", ep, d, spread)
					}
					latest = max(latest, d)
				}
				if latest < spread/2 {
					t.Fatalf("all %d first checks within %v of %v: not spread", n, latest, spread)
				}
			})
		})
	}
}

func TestWaitsFollowStateAndJitter(t *testing.T) {
	tests := []struct {
		name                   string
		interval, unhealthy, j time.Duration
	}{
		{"jitter", time.Second, 3 * time.Second, 500 * time.Millisecond},
		{"no jitter", time.Second, 3 * time.Second, 0},
		{"unhealthy interval defaults to interval", 2 * time.Second, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := Config{Interval: tt.interval, UnhealthyInterval: tt.unhealthy, Jitter: tt.j, Timeout: time.Second, HealthyThreshold: 1, UnhealthyThreshold: 1}
				// Runs of four successes and four failures.
				fail := func(call int) bool { return call/4%2 == 1 }
				c, p := fakeChecker(t, cfg, 1, func(_ context.Context, _, call int) error {
					if fail(call) {
						return errDown
					}
					return nil
				})
				c.Start()
				time.Sleep(2 * time.Minute)
				c.Close()
				calls := p.log()
				if len(calls) < 20 {
					t.Fatalf("%d checks in 2 minutes", len(calls))
				}
				unhealthy := tt.unhealthy
				if unhealthy == 0 {
					unhealthy = tt.interval
				}
				jitters := map[time.Duration]bool{}
				for k := 0; k+1 < len(calls); k++ {
					base := tt.interval
					if fail(k) { // thresholds of one: the state after check k is its outcome
						base = unhealthy
					}
					gap := calls[k+1].start.Sub(calls[k].end)
					if gap < base || gap > base+tt.j || tt.j > 0 && gap == base+tt.j {
						t.Fatalf("wait after check %d (failed=%v) = %v, want in [%v, %v+%v)", k, fail(k), gap, base, base, tt.j)
					}
					jitters[gap-base] = true
				}
				if tt.j > 0 && len(jitters) < 5 {
					t.Fatalf("only %d distinct jitters over %d waits", len(jitters), len(calls)-1)
				}
			})
		})
	}
}

func TestTimeoutFailsTheCheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var results []error
		var transitions []Transition
		// The first check starts within min(Interval, 1s) = 1s and takes
		// the 100ms timeout; the next one is 10s after it ends.
		cfg := Config{Interval: 10 * time.Second, Timeout: 100 * time.Millisecond, HealthyThreshold: 1, UnhealthyThreshold: 1}
		c, p := fakeChecker(t, cfg, 1, func(ctx context.Context, _, _ int) error {
			<-ctx.Done()
			return ctx.Err()
		}, WithResultHook(func(_ int, err error) { results = append(results, err) }),
			WithTransitionHook(func(tr Transition) { transitions = append(transitions, tr) }))
		c.Start()
		time.Sleep(2 * time.Second)
		synctest.Wait()
		c.Close()
		calls := p.log()
		if len(calls) != 1 {
			t.Fatalf("%d checks in 2s, want 1", len(calls))
		}
		if d := calls[0].end.Sub(calls[0].start); d != cfg.Timeout {
			t.Fatalf("check took %v, want the timeout %v", d, cfg.Timeout)
		}
		var ce *CheckError
		if len(results) == 0 || !errors.As(results[0], &ce) || ce.Cause != CauseTimeout || ce.Reason != "timeout" {
			t.Fatalf("result %v, want a timeout CheckError", results)
		}
		if len(transitions) != 1 || transitions[0] != (Transition{Endpoint: 0, Addr: "127.0.0.1:10000", Healthy: false, Reason: "timeout"}) {
			t.Fatalf("transitions %+v", transitions)
		}
	})
}

func TestCloseCancelsHangingCheckAndJoins(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var results atomic.Int64
		cfg := Config{Interval: 10 * time.Millisecond, Timeout: time.Hour, HealthyThreshold: 1, UnhealthyThreshold: 1}
		entered := make(chan struct{}, 3)
		c, p := fakeChecker(t, cfg, 3, func(ctx context.Context, _, _ int) error {
			entered <- struct{}{}
			<-ctx.Done()
			return ctx.Err()
		}, WithResultHook(func(int, error) { results.Add(1) }))
		c.Start()
		for range 3 {
			<-entered
		}
		synctest.Wait()
		before := time.Now()
		c.Close()
		if d := time.Since(before); d != 0 {
			t.Fatalf("Close took %v with checks hanging", d)
		}
		calls := p.log()
		if len(calls) != 3 {
			t.Fatalf("%d checks ended, want 3", len(calls))
		}
		for _, call := range calls {
			if !errors.Is(call.err, context.Canceled) {
				t.Fatalf("check ended with %v, want context.Canceled", call.err)
			}
		}
		if n := results.Load(); n != 0 {
			t.Fatalf("%d results reported for checks Close cut short", n)
		}
		for i := range 3 {
			if st := c.Status(i); st.Checked || !st.Healthy {
				t.Fatalf("endpoint %d after a cancelled check: %+v", i, st)
			}
		}
		if p.closed != 1 {
			t.Fatalf("prober closed %d times", p.closed)
		}
		c.Close() // idempotent
		if p.closed != 1 {
			t.Fatalf("prober closed %d times after a second Close", p.closed)
		}
	})
}

func TestCloseWithoutStartAndStartAfterClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := Config{Interval: 10 * time.Millisecond, Timeout: time.Second, HealthyThreshold: 1, UnhealthyThreshold: 1}
		c, p := fakeChecker(t, cfg, 2, okProbe)
		c.Close()
		c.Close()
		c.Start()
		time.Sleep(time.Second)
		if n := len(p.log()); n != 0 {
			t.Fatalf("%d checks after Start following Close", n)
		}
		if p.closed != 1 {
			t.Fatalf("prober closed %d times", p.closed)
		}
	})
}

func TestStartTwiceStartsOneGoroutinePerEndpoint(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := Config{Interval: time.Second, Timeout: time.Second, HealthyThreshold: 1, UnhealthyThreshold: 1}
		c, p := fakeChecker(t, cfg, 1, okProbe)
		c.Start()
		c.Start()
		time.Sleep(10*time.Second + time.Millisecond)
		c.Close()
		// First check within 1s, then one a second.
		if n := len(p.log()); n < 10 || n > 11 {
			t.Fatalf("%d checks in 10s at a 1s interval", n)
		}
	})
}

func TestFailedChecksResetTheProber(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := Config{Interval: 100 * time.Millisecond, Timeout: time.Second, HealthyThreshold: 2, UnhealthyThreshold: 2}
		c, p := fakeChecker(t, cfg, 4, func(_ context.Context, i, call int) error {
			if (i+call)%3 == 0 {
				return errDown
			}
			return nil
		})
		c.Start()
		time.Sleep(5 * time.Second)
		c.Close()
		failed := 0
		for _, call := range p.log() {
			if call.err != nil {
				failed++
			}
		}
		// A failed check that Close cut short (at most one per endpoint)
		// is no outcome and resets nothing.
		if failed == 0 || p.resets > failed || p.resets < failed-4 {
			t.Fatalf("%d resets after %d failed checks", p.resets, failed)
		}
	})
}

func TestUnhealthyCountAndStatusFollowChecks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := Config{Interval: 100 * time.Millisecond, Timeout: time.Second, HealthyThreshold: 1, UnhealthyThreshold: 1}
		c, _ := fakeChecker(t, cfg, 10, func(_ context.Context, i, _ int) error {
			if i%3 == 0 {
				return errDown
			}
			return nil
		})
		if c.UnhealthyCount() != 0 || !c.Healthy(0) {
			t.Fatal("a new Checker has unhealthy endpoints")
		}
		start := time.Now()
		c.Start()
		time.Sleep(2 * time.Second)
		c.Close()
		if n := c.UnhealthyCount(); n != 4 {
			t.Fatalf("UnhealthyCount = %d, want 4", n)
		}
		for i, st := range c.EndpointStatuses() {
			down := i%3 == 0
			if c.Healthy(i) == down || st.Healthy == down || !st.Checked || st.LastCheck.Before(start) {
				t.Fatalf("endpoint %d: Healthy=%v status %+v", i, c.Healthy(i), st)
			}
			if down && (st.LastError != "status 503" || st.Failures < 10 || st.Successes != 0) {
				t.Fatalf("endpoint %d: %+v", i, st)
			}
			if !down && (st.LastError != "" || st.Successes < 10 || st.Failures != 0) {
				t.Fatalf("endpoint %d: %+v", i, st)
			}
			if st.Addr != fmt.Sprintf("127.0.0.1:%d", 10000+i) || c.Status(i) != st {
				t.Fatalf("endpoint %d: Status %+v, Statuses %+v", i, c.Status(i), st)
			}
		}
		if !c.Healthy(-1) || !c.Healthy(10) || !c.Status(10).Healthy {
			t.Fatal("an index out of range is not reported healthy")
		}
	})
}

func TestTransitionHookIsSerializedOrderedAndLockFree(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 20
		var (
			inHook  atomic.Int32
			overlap atomic.Bool
			seen    [n][]bool
			c       *Checker
			results atomic.Int64
		)
		hook := func(tr Transition) {
			if inHook.Add(1) > 1 {
				overlap.Store(true)
			}
			_ = c.Status(tr.Endpoint) // would deadlock if a lock were held
			_ = c.UnhealthyCount()
			seen[tr.Endpoint] = append(seen[tr.Endpoint], tr.Healthy)
			if tr.Healthy != (tr.Reason == "") {
				t.Errorf("transition %+v: reason must be set exactly when unhealthy", tr)
			}
			time.Sleep(time.Millisecond) // let other endpoints transition meanwhile
			inHook.Add(-1)
		}
		r := rand.New(rand.NewPCG(3, 4))
		var rmu sync.Mutex
		cfg := Config{Interval: 5 * time.Millisecond, Timeout: time.Second, HealthyThreshold: 1, UnhealthyThreshold: 2}
		c, p := fakeChecker(t, cfg, n, func(context.Context, int, int) error {
			rmu.Lock()
			defer rmu.Unlock()
			if r.IntN(2) == 0 {
				return errDown
			}
			return nil
		}, WithTransitionHook(hook), WithResultHook(func(int, error) { results.Add(1) }))
		c.Start()
		time.Sleep(3 * time.Second)
		c.Close()
		if overlap.Load() {
			t.Fatal("transition hook calls overlapped")
		}
		total := 0
		for i := range n {
			for k, h := range seen[i] {
				if want := k%2 == 1; h != want { // starts healthy: first transition is to unhealthy
					t.Fatalf("endpoint %d: transition %d to healthy=%v, want %v (%v)", i, k, h, want, seen[i])
				}
			}
			total += len(seen[i])
			final := true
			if len(seen[i]) > 0 {
				final = seen[i][len(seen[i])-1]
			}
			if final != c.Healthy(i) {
				t.Fatalf("endpoint %d: last transition says healthy=%v, Healthy says %v", i, final, c.Healthy(i))
			}
		}
		if total < n {
			t.Fatalf("only %d transitions", total)
		}
		// Every check is reported except one per endpoint at most, cut
		// short by Close.
		if got, reported := int64(len(p.log())), results.Load(); reported > got || reported < got-n {
			t.Fatalf("%d checks, %d results reported", got, reported)
		}
	})
}
