package breaker

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
)

func mustLimits(t *testing.T, c LimitsConfig) *Limits {
	t.Helper()
	l, err := NewLimits(c)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestLimitsRefuseOverflowNamingTheLimit(t *testing.T) {
	l := mustLimits(t, LimitsConfig{MaxConnections: 2, MaxPendingRequests: 1, MaxRequests: 3, MaxRetries: 1})
	for _, tc := range []struct {
		k    Limit
		max  int
		name string
	}{
		{LimitConnections, 2, "max_connections"},
		{LimitPendingRequests, 1, "max_pending_requests"},
		{LimitRequests, 3, "max_requests"},
		{LimitRetries, 1, "max_retries"},
	} {
		for i := range tc.max {
			if err := l.Acquire(tc.k); err != nil {
				t.Fatalf("%s: acquire %d: %v", tc.name, i, err)
			}
		}
		err := l.Acquire(tc.k)
		var le *LimitError
		if !errors.As(err, &le) || !errors.Is(err, ErrLimit) || le.Limit != tc.k || le.Limit.String() != tc.name || le.Max != tc.max {
			t.Fatalf("%s: overflow error = %#v", tc.name, err)
		}
		l.Release(tc.k)
		if err := l.Acquire(tc.k); err != nil {
			t.Fatalf("%s: acquire after release: %v", tc.name, err)
		}
	}
	s := l.Snapshot()
	if s.InUse != [NumLimits]int64{2, 1, 3, 1} || s.Overflows != [NumLimits]uint64{1, 1, 1, 1} {
		t.Fatalf("snapshot %+v", s)
	}
}

// AcquireOver takes a unit beyond the limit; what is in use then stays
// over it, refusing every Acquire, until enough is released.
func TestAcquireOverGoesBeyondTheLimit(t *testing.T) {
	l := mustLimits(t, LimitsConfig{MaxConnections: 1})
	if err := l.Acquire(LimitConnections); err != nil {
		t.Fatal(err)
	}
	if err := l.Acquire(LimitConnections); err == nil {
		t.Fatal("a second unit under a limit of 1")
	}
	l.AcquireOver(LimitConnections)
	if s := l.Snapshot(); s.InUse[LimitConnections] != 2 || s.Overflows[LimitConnections] != 1 {
		t.Fatalf("snapshot %+v, want 2 in use and 1 overflow", s)
	}
	l.Release(LimitConnections)
	if err := l.Acquire(LimitConnections); err == nil {
		t.Fatal("acquired with the limit still full")
	}
	l.Release(LimitConnections)
	if err := l.Acquire(LimitConnections); err != nil {
		t.Fatalf("after both releases: %v", err)
	}
}

func TestLimitsDefaultsAreEnvoys(t *testing.T) {
	s := mustLimits(t, LimitsConfig{}).Snapshot()
	if s.Max != [NumLimits]int64{1024, 1024, 1024, 3} {
		t.Fatalf("default maxima %v", s.Max)
	}
}

func TestRetryBudgetScalesWithActiveRequests(t *testing.T) {
	l := mustLimits(t, LimitsConfig{RetryBudget: &RetryBudgetConfig{BudgetPercent: 25, MinRetryConcurrency: 2}})
	retries := func() int {
		n := 0
		for l.Acquire(LimitRetries) == nil {
			n++
		}
		for range n {
			l.Release(LimitRetries)
		}
		return n
	}
	if got := retries(); got != 2 {
		t.Fatalf("no load: %d retries allowed, want min_retry_concurrency 2", got)
	}
	for range 40 {
		_ = l.Acquire(LimitRequests)
	}
	// Ten of the calls wait for a connection: they are calls in flight
	// already, not ten more.
	for range 10 {
		_ = l.Acquire(LimitPendingRequests)
	}
	if got := retries(); got != 10 {
		t.Fatalf("40 calls in flight: %d retries allowed, want 25%% = 10", got)
	}
	if s := l.Snapshot(); s.Max[LimitRetries] != 10 {
		t.Fatalf("snapshot retry max %d, want 10", s.Max[LimitRetries])
	}
}

// The retry budget is budget_percent of the calls in flight, rounded
// down, for every whole percent: 29% of 100 calls is 29 retries.
func TestRetryBudgetIsTheExactShareOfCallsInFlight(t *testing.T) {
	for pct := 1; pct <= 100; pct++ {
		l := mustLimits(t, LimitsConfig{MaxRequests: 200, RetryBudget: &RetryBudgetConfig{BudgetPercent: float64(pct), MinRetryConcurrency: 1}})
		for active := 1; active <= 200; active++ {
			if err := l.Acquire(LimitRequests); err != nil {
				t.Fatal(err)
			}
			want := max(1, int64(active*pct/100))
			if got := l.Snapshot().Max[LimitRetries]; got != want {
				t.Errorf("budget_percent %d, %d calls in flight: %d retries allowed, want %d", pct, active, got, want)
			}
		}
	}
}

func TestLimitsValidate(t *testing.T) {
	err := LimitsConfig{MaxRequests: -1, RetryBudget: &RetryBudgetConfig{BudgetPercent: 120}}.Validate()
	want := "max_requests: must be in [0,2147483647]; retry_budget.budget_percent: must be in (0,100]"
	if err == nil || err.Error() != want {
		t.Fatalf("Validate = %v, want %q", err, want)
	}
}

func TestReleaseWithoutAcquirePanics(t *testing.T) {
	l := mustLimits(t, LimitsConfig{})
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	l.Release(LimitRequests)
}

func TestLimitsNeverExceededUnderContention(t *testing.T) {
	const max = 5
	l := mustLimits(t, LimitsConfig{MaxRequests: max})
	var inUse, peak, admitted atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5000 {
				if l.Acquire(LimitRequests) != nil {
					continue
				}
				admitted.Add(1)
				n := inUse.Add(1)
				for m := peak.Load(); n > m && !peak.CompareAndSwap(m, n); m = peak.Load() {
				}
				inUse.Add(-1)
				l.Release(LimitRequests)
			}
		}()
	}
	wg.Wait()
	if p := peak.Load(); p > max || admitted.Load() == 0 {
		t.Fatalf("peak %d in use (max %d), %d admitted", p, max, admitted.Load())
	}
	s := l.Snapshot()
	if s.InUse[LimitRequests] != 0 || int64(s.Overflows[LimitRequests])+admitted.Load() != 8*5000 {
		t.Fatalf("after: in use %d, overflows %d + admitted %d != %d", s.InUse[LimitRequests], s.Overflows[LimitRequests], admitted.Load(), 8*5000)
	}
}

// A reconfigured Limits enforces its own limits on the counts of the one
// it came from: what was taken through the old one counts towards the
// new limits, and comes back through either, down to zero for both.
func TestReconfiguredLimitsShareTheCounts(t *testing.T) {
	old := mustLimits(t, LimitsConfig{MaxConnections: 2, MaxPendingRequests: 2, MaxRequests: 2, MaxRetries: 2})
	for k := range NumLimits {
		for range 2 {
			if err := old.Acquire(k); err != nil {
				t.Fatalf("%s: %v", k, err)
			}
		}
	}
	nl, err := old.Reconfigure(LimitsConfig{MaxConnections: 3, MaxPendingRequests: 3, MaxRequests: 3, MaxRetries: 3})
	if err != nil {
		t.Fatal(err)
	}
	for k := range NumLimits {
		// One more fits under the new limit of 3, not two.
		if err := nl.Acquire(k); err != nil {
			t.Fatalf("%s: the third: %v", k, err)
		}
		var le *LimitError
		if err := nl.Acquire(k); !errors.As(err, &le) || le.Limit != k || le.Max != 3 {
			t.Fatalf("%s: the fourth: %v, want the new limit of 3 reached", k, err)
		}
		// The old Limits keeps its limits, on the shared counts.
		if err := old.Acquire(k); err == nil {
			t.Fatalf("%s: the old Limits admitted a fourth", k)
		}
	}
	if s := nl.Snapshot(); s.InUse != [NumLimits]int64{3, 3, 3, 3} || s.Max != [NumLimits]int64{3, 3, 3, 3} || s.Overflows != [NumLimits]uint64{2, 2, 2, 2} {
		t.Fatalf("new snapshot %+v", s)
	}
	if s := old.Snapshot(); s.InUse != [NumLimits]int64{3, 3, 3, 3} || s.Max != [NumLimits]int64{2, 2, 2, 2} {
		t.Fatalf("old snapshot %+v", s)
	}
	for k := range NumLimits {
		old.Release(k) // taken through old
		old.Release(k)
		nl.Release(k) // taken through nl
	}
	if s := nl.Snapshot(); s.InUse != [NumLimits]int64{} {
		t.Fatalf("in use after every release: %v", s.InUse)
	}
}

// A retry budget set by a reload is a share of the calls in flight,
// those admitted before it included.
func TestReconfiguredRetryBudgetCountsEarlierRequests(t *testing.T) {
	old := mustLimits(t, LimitsConfig{MaxRequests: 100})
	for range 20 {
		if err := old.Acquire(LimitRequests); err != nil {
			t.Fatal(err)
		}
	}
	nl, err := old.Reconfigure(LimitsConfig{MaxRequests: 100, RetryBudget: &RetryBudgetConfig{BudgetPercent: 50, MinRetryConcurrency: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if m := nl.Snapshot().Max[LimitRetries]; m != 10 {
		t.Fatalf("retry budget %d, want 50%% of the 20 calls in flight", m)
	}
}

func TestReconfigureValidates(t *testing.T) {
	old := mustLimits(t, LimitsConfig{})
	if _, err := old.Reconfigure(LimitsConfig{MaxRequests: -1}); err == nil {
		t.Fatal("a negative max_requests accepted")
	}
}
