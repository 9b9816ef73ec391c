package breaker

import (
	"math/rand/v2"
	"testing"
	"testing/quick"
	"time"
)

// event is one recorded outcome, for the naive models.
type event struct {
	t            time.Time
	failed, slow bool
}

// naiveCount is the obvious model of a count window: the last size events.
func naiveCount(evs []event, size int) windowTotals {
	var t windowTotals
	for _, e := range evs[max(0, len(evs)-size):] {
		t.add(e)
	}
	return t
}

// naiveTime is the obvious model of a time window: the events whose bucket
// (whole widths since origin) is within the last n buckets of now's.
func naiveTime(evs []event, origin, now time.Time, width time.Duration, n int64) windowTotals {
	cur := int64(now.Sub(origin) / width)
	var t windowTotals
	for _, e := range evs {
		b := int64(e.t.Sub(origin) / width)
		if b > cur-n && b <= cur {
			t.add(e)
		}
	}
	return t
}

func (t *windowTotals) add(e event) {
	t.calls++
	if e.failed {
		t.failures++
	}
	if e.slow {
		t.slow++
	}
}

// TestCountWindowMatchesModel: after every record, the ring's totals equal
// a recount of the last size events.
func TestCountWindowMatchesModel(t *testing.T) {
	check := func(size uint8, outcomes []uint8) bool {
		n := int(size%64) + 1
		w := newCountWindow(0, n)
		var evs []event
		for _, o := range outcomes {
			e := event{failed: o&1 != 0, slow: o&2 != 0}
			evs = append(evs, e)
			got, eval := w.record(t0, e.failed, e.slow)
			if !eval {
				got = w.totals(t0)
			}
			if want := naiveCount(evs, n); got != want || w.totals(t0) != want {
				t.Logf("size %d after %d events: got %+v want %+v", n, len(evs), got, want)
				return false
			}
		}
		return true
	}
	if err := quick.Check(check, &quick.Config{MaxCount: 500, Rand: nil}); err != nil {
		t.Fatal(err)
	}
}

// TestTimeWindowMatchesModel: for seeded random event sequences with gaps
// of every size (inside a bucket, across buckets, longer than the window),
// the bucketed totals equal a recount of the events in the window.
func TestTimeWindowMatchesModel(t *testing.T) {
	for seed := range uint64(60) {
		r := rand.New(rand.NewPCG(seed, 42))
		buckets := 1 + r.IntN(12)
		width := time.Duration(1+r.IntN(1000)) * time.Millisecond
		w := newTimeWindow(0, width*time.Duration(buckets), buckets)
		now := t0
		var evs []event
		var origin time.Time
		for i := range 250 {
			switch r.IntN(10) {
			case 0: // a long idle gap
				now = now.Add(time.Duration(r.Int64N(int64(3 * width * time.Duration(buckets)))))
			case 1, 2: // next bucket or so
				now = now.Add(time.Duration(r.Int64N(int64(2 * width))))
			default: // same bucket, usually
				now = now.Add(time.Duration(r.Int64N(int64(width / 4))))
			}
			e := event{t: now, failed: r.IntN(3) == 0, slow: r.IntN(4) == 0}
			evs = append(evs, e)
			w.record(now, e.failed, e.slow)
			if i == 0 {
				origin = *w.origin.Load()
			}
			want := naiveTime(evs, origin, now, width, int64(buckets))
			if got := w.totals(now); got != want {
				t.Fatalf("seed %d, %d buckets of %v, event %d: got %+v want %+v", seed, buckets, width, i, got, want)
			}
			// Reading later (no new events) slides the window too.
			later := now.Add(time.Duration(r.Int64N(int64(2 * width * time.Duration(buckets)))))
			if got, want := w.totals(later), naiveTime(evs, origin, later, width, int64(buckets)); got != want {
				t.Fatalf("seed %d, event %d, read %v later: got %+v want %+v", seed, i, later.Sub(now), got, want)
			}
		}
	}
}

// TestTimeWindowDropsOutcomesOlderThanTheWindow: an outcome reported with
// a time a whole window behind the newest is not counted (and does not
// corrupt the slot the newer bucket uses).
func TestTimeWindowDropsOutcomesOlderThanTheWindow(t *testing.T) {
	w := newTimeWindow(0, 10*time.Second, 10)
	w.record(at(0), false, false)
	w.record(at(30*time.Second), true, false)
	w.record(at(15*time.Second), true, false) // 15s behind: outside the 10s window
	if got := w.totals(at(30 * time.Second)); got != (windowTotals{calls: 1, failures: 1}) {
		t.Fatalf("totals = %+v, want 1 call 1 failure", got)
	}
}

// TestWindowsAskForEvaluationOnFailedOrSlowCalls pins the rule that the
// rate policies look at the window only when a failed or slow call is
// recorded, which spares successes the bucket sum.
func TestWindowsAskForEvaluationOnFailedOrSlowCalls(t *testing.T) {
	for _, w := range []window{newCountWindow(0, 10), newTimeWindow(0, 10*time.Second, 10)} {
		if _, eval := w.record(at(0), false, false); eval {
			t.Errorf("%T: success asked for evaluation", w)
		}
		if tot, eval := w.record(at(time.Second), true, false); !eval || tot != (windowTotals{calls: 2, failures: 1}) {
			t.Errorf("%T: failure: eval %v totals %+v", w, eval, tot)
		}
		if tot, eval := w.record(at(2*time.Second), false, true); !eval || tot != (windowTotals{calls: 3, failures: 1, slow: 1}) {
			t.Errorf("%T: slow call: eval %v totals %+v", w, eval, tot)
		}
	}
}
