package eventlog

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outrigger-mesh/outrigger/eventlog/segment"
)

// partitionLog is what a Partition needs from its storage; *segment.Log
// provides it.
type partitionLog interface {
	Append(ctx context.Context, epoch int32, recs []segment.Record) (int64, error)
	Read(from int64, maxBytes int) ([]segment.Record, error)
	StartOffset() int64
	EndOffset() int64
	EnforceRetention(now time.Time) (segment.RetentionResult, error)
	Compact(now time.Time) (segment.CompactResult, error)
	EpochStartOffsets() []segment.EpochStart
	Stats() segment.Stats
	Close() error
}

// Acks is how much of the write path a producer waits for.
type Acks int

const (
	// AcksNone: the reply does not wait for the append (offsets unknown).
	AcksNone Acks = 0
	// AcksLeader: the reply waits until the leader appended the records
	// under the topic's flush policy (with "sync": fsynced).
	AcksLeader Acks = 1
	// AcksAll: the reply waits until every in-sync replica has the records
	// and the high watermark covers them. Fails fast when the in-sync set is
	// smaller than min_insync_replicas. On one node the in-sync set is this
	// node alone, so it waits for exactly what AcksLeader waits for.
	AcksAll Acks = -1
)

// localReplica names this node in an in-sync replica set.
const localReplica = "local"

// Partition is one partition of a topic: its log plus the leader's view of
// what is committed. The write path is Append -> log end offset advances ->
// the in-sync replicas have it -> high watermark advances -> readers see it.
type Partition struct {
	topic  string
	id     int32
	log    partitionLog
	minISR int
	// topicNotify is the owning topic's notifier, woken with ours.
	topicNotify *notifier
	hwNotify    notifier

	mu sync.Mutex
	// epoch is the leader epoch stamped on every batch this node appends.
	epoch int32
	// hw is the high watermark: the first offset not yet committed.
	hw int64
}

func newPartition(topic string, id int32, log partitionLog, epoch int32, minISR int, topicNotify *notifier) *Partition {
	// The log's epoch history wins over meta.json should they disagree: an
	// epoch must never go backwards.
	if h := log.EpochStartOffsets(); len(h) > 0 && h[len(h)-1].Epoch >= epoch {
		epoch = h[len(h)-1].Epoch + 1
	}
	return &Partition{
		topic: topic, id: id, log: log, epoch: epoch, minISR: max(minISR, 1),
		topicNotify: topicNotify,
		hw:          log.EndOffset(),
	}
}

// ID is the partition number.
func (p *Partition) ID() int32 { return p.id }

// LeaderEpoch is the epoch this node appends with.
func (p *Partition) LeaderEpoch() int32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.epoch
}

// HighWatermark is the first offset consumers cannot read yet.
func (p *Partition) HighWatermark() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hw
}

// LogEndOffset is the next offset to be assigned.
func (p *Partition) LogEndOffset() int64 { return p.log.EndOffset() }

// LogStartOffset is the first offset still in the log.
func (p *Partition) LogStartOffset() int64 { return p.log.StartOffset() }

// inSyncReplicas is the set of replicas that have every committed record.
// On one node it is this node alone; replication replaces it with the
// controller's view.
func (p *Partition) inSyncReplicas() []string { return []string{localReplica} }

// Append writes recs as one batch and returns the first offset. With
// AcksAll it refuses up front when the in-sync set is smaller than
// min_insync_replicas. The high watermark advances when the append returned
// under the flush policy (and, with replicas, when every in-sync replica
// has fetched it).
func (p *Partition) Append(ctx context.Context, recs []segment.Record, acks Acks) (int64, error) {
	if acks == AcksAll && len(p.inSyncReplicas()) < p.minISR {
		return -1, errf(ErrNotEnoughReplicas, "%s/%d has %d in-sync replicas, needs %d", p.topic, p.id, len(p.inSyncReplicas()), p.minISR)
	}
	p.mu.Lock()
	epoch := p.epoch
	p.mu.Unlock()
	base, err := p.log.Append(ctx, epoch, recs)
	if err != nil {
		// On ErrDurabilityUnknown the records are in the log but not known
		// to be durable: the high watermark stays; a later successful
		// append (whose flush covers them) moves it past them.
		return base, err
	}
	p.advanceHW(base + int64(len(recs)))
	return base, nil
}

// advanceHW moves the high watermark forward to end (never back) and wakes
// waiting readers.
func (p *Partition) advanceHW(end int64) {
	p.mu.Lock()
	moved := end > p.hw
	if moved {
		p.hw = end
	}
	p.mu.Unlock()
	if moved {
		p.hwNotify.Broadcast()
		if p.topicNotify != nil {
			p.topicNotify.Broadcast()
		}
	}
}

// Read returns committed records from offset `from`, at most about
// maxBytes (at least one record when one is available), and the offset to
// read next. from must lie in [LogStartOffset, HighWatermark]; from ==
// HighWatermark returns nothing. In a compacted partition offsets have gaps,
// so next is not always from+len(recs).
func (p *Partition) Read(from int64, maxBytes int) (recs []segment.Record, next int64, err error) {
	hw := p.HighWatermark()
	start := p.log.StartOffset()
	if from < start || from > hw {
		return nil, from, &OffsetRangeError{Offset: from, Start: start, End: hw}
	}
	if from == hw {
		return nil, from, nil
	}
	recs, err = p.log.Read(from, maxBytes)
	if err != nil {
		if errors.Is(err, segment.ErrOffsetOutOfRange) {
			// Retention may have removed the segment since we looked.
			return nil, from, &OffsetRangeError{Offset: from, Start: p.log.StartOffset(), End: hw}
		}
		return nil, from, fmt.Errorf("read %s/%d at %d: %w", p.topic, p.id, from, err)
	}
	// The log may hold records past the high watermark (appended, not yet
	// committed), and may start a batch before `from`: trim both ends.
	lo, hi := 0, len(recs)
	for lo < hi && recs[lo].Offset < from {
		lo++
	}
	beyond := false
	for hi > lo && recs[hi-1].Offset >= hw {
		hi--
		beyond = true
	}
	switch {
	case hi > lo:
		next = recs[hi-1].Offset + 1
	case beyond:
		// Everything in [from, hw) was compacted away.
		next = hw
	default:
		// Nothing returned: stay put rather than risk skipping a record.
		next = from
	}
	return recs[lo:hi], next, nil
}

// WaitFor blocks until the high watermark exceeds offset or ctx ends, and
// returns the high watermark.
func (p *Partition) WaitFor(ctx context.Context, offset int64) (int64, error) {
	return p.waitFor(ctx, offset, nil)
}

// waitFor is WaitFor that, when parked is not nil, counts itself in parked
// while it blocks: from after it took the wake-up channel, so that a
// watermark advance seen by whoever reads parked as non-zero wakes it.
func (p *Partition) waitFor(ctx context.Context, offset int64, parked *atomic.Int64) (int64, error) {
	for {
		ch := p.hwNotify.Wait()
		if hw := p.HighWatermark(); hw > offset {
			return hw, nil
		}
		if parked != nil {
			parked.Add(1)
		}
		var err error
		select {
		case <-ch:
		case <-ctx.Done():
			err = ctx.Err()
		}
		if parked != nil {
			parked.Add(-1)
		}
		if err != nil {
			return p.HighWatermark(), err
		}
	}
}
