package segment

import (
	"sync/atomic"
	"time"
)

// FsyncBucketBounds are the upper bounds of the buckets of
// Stats.FsyncLatency: 50 µs doubling up to about 1.6 s. A last, unbounded
// bucket holds slower fsyncs.
var FsyncBucketBounds = func() [16]time.Duration {
	var b [16]time.Duration
	for i := range b {
		b[i] = 50 * time.Microsecond << i
	}
	return b
}()

// LatencyHistogram counts durations in the buckets of FsyncBucketBounds.
type LatencyHistogram struct {
	// Counts[i] is the number of durations <= FsyncBucketBounds[i] and
	// greater than the bound before it; Counts[16] the ones above every
	// bound. Not cumulative.
	Counts [17]uint64
	Sum    time.Duration
}

// latencies is the lock-free recording side of a LatencyHistogram.
type latencies struct {
	counts [17]atomic.Uint64
	sum    atomic.Int64
}

func (h *latencies) observe(d time.Duration) {
	i := 0
	for i < len(FsyncBucketBounds) && d > FsyncBucketBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
}

func (h *latencies) snapshot() LatencyHistogram {
	var s LatencyHistogram
	for i := range h.counts {
		s.Counts[i] = h.counts[i].Load()
	}
	s.Sum = time.Duration(h.sum.Load())
	return s
}
