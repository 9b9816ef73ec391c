package health

import (
	"testing"
	"time"
)

func TestCarryFromKeepsStateOfKeptEndpoints(t *testing.T) {
	cfg := fastConfig(TCP)
	cfg.HealthyThreshold, cfg.UnhealthyThreshold = 2, 3
	now := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
	down := &CheckError{Cause: CauseConnect, Reason: "connect: connection refused"}

	old := newChecker(t, cfg, []string{"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"})
	old.record(0, down, now) // first check failed: unhealthy
	old.record(0, nil, now)  // one success of the two needed
	old.record(1, nil, now)  // healthy, checked
	old.record(1, down, now) // one failure of three

	var log transitions
	next := newChecker(t, cfg, []string{"10.0.0.3:80", "10.0.0.9:80", "10.0.0.1:80", "10.0.0.2:80"}, log.option())
	byAddr := map[string]int{"10.0.0.1:80": 0, "10.0.0.2:80": 1, "10.0.0.3:80": 2}
	next.CarryFrom(old, func(i int) (int, bool) {
		j, ok := byAddr[next.Status(i).Addr]
		return j, ok
	})

	want := []EndpointStatus{
		{Addr: "10.0.0.3:80", Healthy: true},
		{Addr: "10.0.0.9:80", Healthy: false}, // new to the cluster: pending
		{Addr: "10.0.0.1:80", Healthy: false, Checked: true, LastCheck: now, Successes: 1},
		{Addr: "10.0.0.2:80", Healthy: true, Checked: true, LastCheck: now, LastError: "connect: connection refused", Failures: 1},
	}
	for i, w := range want {
		w.Target = w.Addr // no Port: the checks dial the endpoint
		if got := next.Status(i); got != w {
			t.Errorf("endpoint %d: %+v, want %+v", i, got, w)
		}
		if next.Healthy(i) != w.Healthy {
			t.Errorf("endpoint %d: Healthy() = %v, want %v", i, next.Healthy(i), w.Healthy)
		}
	}
	if n := next.UnhealthyCount(); n != 2 {
		t.Fatalf("UnhealthyCount = %d, want 2", n)
	}
	if got := log.list(); len(got) != 0 {
		t.Fatalf("CarryFrom reported transitions %+v", got)
	}

	// The carried counts go on: one more success makes 10.0.0.1 healthy,
	// two more failures make 10.0.0.2 unhealthy; the unchecked endpoints'
	// first check still decides alone.
	next.record(2, nil, now)
	next.record(3, down, now)
	next.record(3, down, now)
	next.record(0, down, now)
	if !next.Healthy(2) || next.Healthy(3) || next.Healthy(0) || next.Healthy(1) || next.UnhealthyCount() != 3 {
		t.Fatalf("after more checks: %+v", next.EndpointStatuses())
	}
	// The pending endpoint's first pass lets it in at once, whatever
	// HealthyThreshold, and says so.
	next.record(1, nil, now)
	if !next.Healthy(1) || next.UnhealthyCount() != 2 {
		t.Fatalf("after the pending endpoint's first pass: %+v", next.EndpointStatuses())
	}
	got := log.list()
	if len(got) == 0 || got[len(got)-1] != (Transition{Endpoint: 1, Addr: "10.0.0.9:80", Healthy: true}) {
		t.Fatalf("transitions %+v, want the last to let 10.0.0.9 in", got)
	}
}

func TestCarryFromNothing(t *testing.T) {
	c := newChecker(t, fastConfig(TCP), []string{"10.0.0.1:80"})
	c.record(0, errDown, time.Now())
	c.CarryFrom(nil, func(int) (int, bool) { return 0, true })
	c.CarryFrom(c, func(int) (int, bool) { return 0, true })
	old := newChecker(t, fastConfig(TCP), []string{"10.0.0.1:80"})
	c.CarryFrom(old, func(int) (int, bool) { return 5, true }) // out of range: ignored
	if c.Healthy(0) || c.UnhealthyCount() != 1 {
		t.Fatalf("state changed: %+v", c.Status(0))
	}
}

// Pending(i) mirrors the pending state lock-free: set for an endpoint
// CarryFrom adds, cleared by its first check, false out of range.
func TestPendingMirrorsTheTracker(t *testing.T) {
	cfg := fastConfig(TCP)
	now := time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)
	old := newChecker(t, cfg, []string{"10.0.0.1:80"})
	next := newChecker(t, cfg, []string{"10.0.0.1:80", "10.0.0.2:80"})
	next.CarryFrom(old, func(i int) (int, bool) { return 0, i == 0 })
	if next.Pending(0) || !next.Pending(1) || next.Pending(2) || next.Pending(-1) {
		t.Fatalf("Pending: %v %v %v %v", next.Pending(0), next.Pending(1), next.Pending(2), next.Pending(-1))
	}
	next.record(1, &CheckError{Cause: CauseConnect, Reason: "connect: refused"}, now)
	if next.Pending(1) || next.Healthy(1) {
		t.Fatal("a failed first check left the endpoint pending, or let it in")
	}
	if u, p := next.Counts(); u != 1 || p != 0 {
		t.Fatalf("Counts = %d, %d; want 1 unhealthy, 0 pending", u, p)
	}
}
