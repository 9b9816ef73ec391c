package breaker

import (
	"sync/atomic"
	"time"
)

// A window counts the calls, failures and slow calls recorded while the
// breaker is closed. One window lives for one closed period (one state
// generation); entering the closed state installs a fresh one, so outcomes
// that arrive late from an earlier generation cannot disturb the new counts.
//
// Both kinds are lock-free and allocation-free on record. Under concurrent
// records the totals are exact once the records have returned (quiescent
// exactness); while records race, a reader may see one counter updated
// before another.
type window interface {
	generation() uint64
	// record adds one outcome. For a failed or slow call it returns the
	// window totals and true, for the rate policies to evaluate; for any
	// other call, false (the rate policies look at the window only when a
	// failed or slow call is recorded).
	record(now time.Time, failed, slow bool) (totals windowTotals, eval bool)
	// totals reads the counts as of now.
	totals(now time.Time) windowTotals
	// consecutive is the run of failures with no success in between.
	consecutive() *atomic.Int64
}

type windowTotals struct {
	calls, failures, slow int64
}

type cacheLinePad [64]byte

// countWindow holds the outcomes of the last size calls in a ring of slots.
// Each slot holds one call's outcome bits; the totals are kept equal to the
// sum over the slots by adding, after each slot swap, the difference
// between the new and the old value. A slot is written only when its value
// changes, so in the steady state of all successes the only shared write is
// the sequence counter.
type countWindow struct {
	gen  uint64
	size uint64

	_   cacheLinePad
	seq atomic.Uint64 // number of calls recorded; the next slot is seq % size

	_        cacheLinePad
	calls    atomic.Int64
	failures atomic.Int64
	slow     atomic.Int64

	_      cacheLinePad
	consec atomic.Int64

	_     cacheLinePad
	slots []atomic.Uint32
}

const (
	slotCall    = 1 << 0
	slotFailure = 1 << 1
	slotSlow    = 1 << 2
)

func newCountWindow(gen uint64, size int) *countWindow {
	return &countWindow{gen: gen, size: uint64(size), slots: make([]atomic.Uint32, size)}
}

func (w *countWindow) generation() uint64         { return w.gen }
func (w *countWindow) consecutive() *atomic.Int64 { return &w.consec }

func slotValue(failed, slow bool) uint32 {
	v := uint32(slotCall)
	if failed {
		v |= slotFailure
	}
	if slow {
		v |= slotSlow
	}
	return v
}

func (w *countWindow) record(_ time.Time, failed, slow bool) (windowTotals, bool) {
	v := slotValue(failed, slow)
	s := &w.slots[(w.seq.Add(1)-1)%w.size]
	if old := s.Load(); old != v {
		old = s.Swap(v)
		w.apply(old, v)
	}
	if !failed && !slow {
		return windowTotals{}, false
	}
	return windowTotals{w.calls.Load(), w.failures.Load(), w.slow.Load()}, true
}

// apply moves the totals from a slot's old value to its new one.
func (w *countWindow) apply(old, v uint32) {
	if d := int64(v&slotCall) - int64(old&slotCall); d != 0 {
		w.calls.Add(d)
	}
	if d := int64(v&slotFailure>>1) - int64(old&slotFailure>>1); d != 0 {
		w.failures.Add(d)
	}
	if d := int64(v&slotSlow>>2) - int64(old&slotSlow>>2); d != 0 {
		w.slow.Add(d)
	}
}

func (w *countWindow) totals(time.Time) windowTotals {
	return windowTotals{w.calls.Load(), w.failures.Load(), w.slow.Load()}
}

// timeWindow holds the outcomes of the last n buckets of width ns each;
// bucket i covers [origin + i·width, origin + (i+1)·width), where origin is
// one window length before the time of the window's first record. Bucket i lives in slot i % n.
//
// Each slot has three counters (calls, failures, slow). A counter packs the
// bucket number it counts for (low 32 bits of it) above a 32-bit count, so
// that moving a slot on to a new bucket is one compare-and-swap of each
// counter from (old bucket, count) to (new bucket, 1), and counting within
// a bucket is one atomic add. Readers add only counters whose bucket lies in
// the window. Counters are moved on independently; that is sound because
// each one states which bucket it counts.
//
// Limits that follow from the packing: at most 2³²−1 calls per bucket; and
// a slot left untouched for exactly k·2³² buckets (49 days of 1ms buckets
// with not a single call) would be read as current once.
type timeWindow struct {
	gen   uint64
	width int64 // bucket width in nanoseconds
	n     int64 // number of buckets

	origin atomic.Pointer[time.Time] // set by the first record

	_ cacheLinePad
	// latest is the highest bucket recorded into; a record for a bucket
	// at or below latest−n is older than the window and dropped.
	latest atomic.Int64

	_      cacheLinePad
	consec atomic.Int64

	_     cacheLinePad
	slots []timeSlot
}

type timeSlot struct {
	calls, failures, slow atomic.Uint64
	_                     [40]byte
}

func newTimeWindow(gen uint64, d time.Duration, buckets int) *timeWindow {
	w := &timeWindow{gen: gen, width: int64(d) / int64(buckets), n: int64(buckets), slots: make([]timeSlot, buckets)}
	w.latest.Store(-1)
	return w
}

func (w *timeWindow) generation() uint64         { return w.gen }
func (w *timeWindow) consecutive() *atomic.Int64 { return &w.consec }

// bucket returns the bucket number of now, or -1 before the origin.
func (w *timeWindow) bucket(now time.Time, set bool) int64 {
	o := w.origin.Load()
	if o == nil {
		if !set {
			return -1
		}
		// The origin goes one window before the first record, so that
		// records racing with it that carry a slightly earlier now still
		// count.
		t := now.Add(-time.Duration(w.width * w.n))
		if !w.origin.CompareAndSwap(nil, &t) {
			o = w.origin.Load()
		} else {
			o = &t
		}
	}
	d := now.Sub(*o)
	if d < 0 {
		return -1
	}
	return int64(d) / w.width
}

func (w *timeWindow) record(now time.Time, failed, slow bool) (windowTotals, bool) {
	b := w.bucket(now, true)
	if b < 0 {
		return windowTotals{}, false
	}
	latest := w.latest.Load()
	if b <= latest-w.n {
		return windowTotals{}, false // older than the window
	}
	for b > latest && !w.latest.CompareAndSwap(latest, b) {
		latest = w.latest.Load()
	}
	s := &w.slots[b%w.n]
	w.bump(&s.calls, b)
	if failed {
		w.bump(&s.failures, b)
	}
	if slow {
		w.bump(&s.slow, b)
	}
	if !failed && !slow {
		return windowTotals{}, false
	}
	return w.sum(b), true
}

// bump counts one event of bucket b in counter c.
func (w *timeWindow) bump(c *atomic.Uint64, b int64) {
	e := uint64(uint32(b))
	for {
		x := c.Load()
		if x>>32 == e {
			// Same bucket: count. (Should another record move the
			// counter on between the Load and the Add, that record is a
			// whole window ahead of this one, and this event lands in
			// its bucket: a bounded inaccuracy for an outcome that is
			// already older than the window.)
			c.Add(1)
			return
		}
		// Moving the slot on. Only an older bucket may be replaced: if
		// the window has advanced a whole window past b, the slot may
		// hold a newer bucket, and this event is too old to count.
		// (latest only grows, so a CAS that succeeds after this check
		// replaced an older bucket; one that fails retries the check.)
		if w.latest.Load() >= b+w.n {
			return
		}
		if c.CompareAndSwap(x, e<<32|1) {
			return
		}
	}
}

func (w *timeWindow) totals(now time.Time) windowTotals {
	b := w.bucket(now, false)
	if b < 0 {
		return windowTotals{}
	}
	return w.sum(b)
}

// sum adds the counters whose bucket lies in (b−n, b].
func (w *timeWindow) sum(b int64) windowTotals {
	cur := uint32(b)
	n := uint32(w.n)
	read := func(c *atomic.Uint64) int64 {
		x := c.Load()
		if cur-uint32(x>>32) < n {
			return int64(x & 0xffffffff)
		}
		return 0
	}
	var t windowTotals
	for i := range w.slots {
		s := &w.slots[i]
		t.calls += read(&s.calls)
		t.failures += read(&s.failures)
		t.slow += read(&s.slow)
	}
	return t
}
