package health

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// restart replaces c by a Checker for the same endpoints that carries its
// state and schedule, as a reload does: build, carry, close the old one,
// carry again, start.
func restart(t *testing.T, c *Checker, mk func() *Checker) *Checker {
	t.Helper()
	next := mk()
	same := func(i int) (int, bool) { return i, true }
	next.CarryFrom(c, same)
	c.Close()
	next.CarryFrom(c, same)
	next.Start()
	return next
}

// Reloads that come faster than the interval (endpoints churning under a
// control plane) neither delay a kept endpoint's checks nor add any: each
// is checked at its own interval. Each restart used to draw a new first
// check within a second, so a 10 s interval became about one check a
// second under churn.
func TestReloadsKeepEachEndpointsSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 10
		cfg := Config{Interval: 10 * time.Second, Timeout: time.Second, HealthyThreshold: 1, UnhealthyThreshold: 1}
		var mu sync.Mutex
		checks := make([]int, n) // recorded: a check cut short is not
		count := WithResultHook(func(i int, err error) {
			mu.Lock()
			checks[i]++
			mu.Unlock()
		})
		mk := func() *Checker {
			c, _ := fakeChecker(t, cfg, n, func(ctx context.Context, i, call int) error {
				select { // a check takes time; a reload may cut it short
				case <-time.After(50 * time.Millisecond):
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			}, count)
			return c
		}
		c := mk()
		c.Start()
		for range 300 { // 30 s of a reload every 100 ms
			time.Sleep(100 * time.Millisecond)
			c = restart(t, c, mk)
		}
		c.Close()
		// The first check within a second, then one every 10 s (plus
		// the time a check takes, and a check cut short by a reload done
		// again at once): 3 or 4 finished in 30 s, each endpoint.
		for ep, k := range checks {
			if k < 3 || k > 4 {
				t.Fatalf("endpoint %d checked %d times in 30 s at a 10 s interval across 300 reloads, want 3 or 4 (all: %v)", ep, k, checks)
			}
		}
	})
}

// A check that a reload cuts short is due at once in the new checker, and
// a shorter interval takes effect at once.
func TestReloadChecksAnInterruptedEndpointAtOnceAndHonoursANewInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := Config{Interval: time.Hour, Timeout: time.Minute, HealthyThreshold: 1, UnhealthyThreshold: 1}
		hang := func(ctx context.Context, i, call int) error { <-ctx.Done(); return ctx.Err() }
		c, _ := fakeChecker(t, cfg, 1, hang)
		c.Start()
		time.Sleep(time.Second) // the first check is under way
		var p *fakeProber
		start := time.Now()
		c = restart(t, c, func() *Checker {
			var next *Checker
			next, p = fakeChecker(t, cfg, 1, okProbe)
			return next
		})
		synctest.Wait()
		if calls := p.log(); len(calls) != 1 || calls[0].start != start {
			c.Close()
			t.Fatalf("checks after the reload: %+v, want one at once", calls)
		}

		// Next due in an hour; a reload to a 1 s interval checks within 1 s.
		cfg.Interval = time.Second
		start = time.Now()
		c = restart(t, c, func() *Checker {
			var next *Checker
			next, p = fakeChecker(t, cfg, 1, okProbe)
			return next
		})
		time.Sleep(time.Second)
		synctest.Wait()
		c.Close()
		if calls := p.log(); len(calls) == 0 || calls[0].start.Sub(start) > time.Second {
			t.Fatalf("checks after the reload to a 1 s interval: %+v", calls)
		}
	})
}

// Over a real connection: a reload right after an endpoint's check does
// not check it again before its interval.
func TestHTTPReloadDoesNotRecheckBeforeTheInterval(t *testing.T) {
	var requests atomic.Int64
	srv := newStatusServer(t, func(w http.ResponseWriter, r *http.Request) { requests.Add(1) })
	cfg := fastConfig(HTTP)
	cfg.Interval = time.Minute // first check within 1 s, then in a minute
	mk := func() *Checker { return newChecker(t, cfg, []string{srv.addr()}) }
	c := mk()
	c.Start()
	waitFor(t, "the first check", func() bool { return c.Status(0).Checked })
	c = restart(t, c, mk)
	defer c.Close()
	// A restart used to check again within a second: watch for a second
	// request a little longer than that.
	for end := time.Now().Add(1200 * time.Millisecond); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if n := requests.Load(); n != 1 {
			t.Fatalf("a reload after the first check: %d checks within 1.2 s at a one-minute interval, want 1", n)
		}
	}
}

// A check that reloads keep cutting short still ends within Timeout of
// its start: the successor goes on with it at once, with the cut
// check's deadline, so a hung endpoint (it accepts and never answers) is
// found unhealthy however often reloads come. Each reload used to start
// the check afresh, with a full Timeout: under reloads faster than
// Timeout no check ever ended, and the endpoint stayed in service.
func TestCheckCutByReloadsKeepsItsDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := Config{Interval: 5 * time.Second, Timeout: time.Second, HealthyThreshold: 1, UnhealthyThreshold: 1}
		hang := func(ctx context.Context, i, call int) error { <-ctx.Done(); return ctx.Err() }
		mk := func() *Checker { c, _ := fakeChecker(t, cfg, 1, hang); return c }
		c := mk()
		c.Start()
		// The first check starts within min(Interval, 1 s) and times out
		// a Timeout later: by 2 s, with a reload every 300 ms throughout.
		for range 7 {
			time.Sleep(300 * time.Millisecond)
			c = restart(t, c, mk)
		}
		st := c.Status(0)
		c.Close()
		if st.Healthy || !st.Checked || st.LastError != "timeout" {
			t.Fatalf("after 2.1 s of reloads every 300 ms: healthy=%v checked=%v last error %q, want unhealthy by timeout",
				st.Healthy, st.Checked, st.LastError)
		}
	})
}

// Reloads that come back to back, each before the checker the last one
// started has begun its first check, still carry a cut check's deadline
// on: a checker closed that early passes on the check it was given. It
// used to pass on nothing, so the next checker started the check afresh
// with a full Timeout, and bursts of reloads (a control plane pushing
// several updates at once) kept a hung endpoint in service.
func TestBackToBackReloadsKeepACutChecksDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := Config{Interval: 5 * time.Second, Timeout: time.Second, HealthyThreshold: 1, UnhealthyThreshold: 1}
		hang := func(ctx context.Context, i, call int) error { <-ctx.Done(); return ctx.Err() }
		mk := func() *Checker { c, _ := fakeChecker(t, cfg, 1, hang); return c }
		c := mk()
		c.Start()
		// The first check starts within 1 s and times out a Timeout
		// later: by 2 s, with a burst of reloads every 300 ms.
		for range 7 {
			time.Sleep(300 * time.Millisecond)
			for range 20 {
				c = restart(t, c, mk)
			}
		}
		st := c.Status(0)
		c.Close()
		if st.Healthy || !st.Checked || st.LastError != "timeout" {
			t.Fatalf("after 2.1 s of bursts of reloads: healthy=%v checked=%v last error %q, want unhealthy by timeout",
				st.Healthy, st.Checked, st.LastError)
		}
	})
}
