package segment

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
)

// Group commit under the "sync" flush policy.
//
// Append encodes its batch without any lock and queues it; the committer
// goroutine takes everything queued, gives the batches consecutive offsets
// under mu, writes them with one write, releases mu, fdatasyncs once for
// the whole group and then wakes each appender. Batches queued while that
// fsync runs form the next group. One write and one fsync per group keep
// the cost per record far below the disk's fsync latency once producers
// are concurrent; a single producer still pays one fsync per append.

// Request states. An appender whose context ends may take back a queued
// request (queued -> abandoned); once the committer has claimed it
// (queued -> taken) the appender can only report its fate as unknown.
const (
	reqQueued int32 = iota
	reqAbandoned
	reqTaken
)

// appendReq is one queued Append. Requests are pooled: refs counts the
// appender and the committer, and whoever drops the last reference
// recycles it, so an abandoned request is never reused while the
// committer still holds it.
type appendReq struct {
	b     []byte // encoded batch
	epoch int32
	now   int64

	state atomic.Int32
	refs  atomic.Int32

	// Set by the committer before it marks the request taken.
	base     int64
	checkErr error // the batch was refused before getting an offset
	// Set by the committer before it signals done.
	err error

	done chan struct{} // capacity 1; one send per use
}

var reqPool = sync.Pool{New: func() any {
	return &appendReq{b: make([]byte, 0, 512), done: make(chan struct{}, 1)}
}}

// release drops one reference and recycles the request with the last one.
func (r *appendReq) release() {
	if r.refs.Add(-1) != 0 {
		return
	}
	select {
	case <-r.done:
	default:
	}
	r.err, r.checkErr = nil, nil
	if cap(r.b) > 1<<20 {
		r.b = make([]byte, 0, 512) // do not let one large batch pin memory in the pool
	}
	reqPool.Put(r)
}

// appendGroup is Append under the "sync" policy.
func (l *Log) appendGroup(ctx context.Context, epoch int32, now int64, spec batchSpec, recs []Record) (int64, error) {
	r := reqPool.Get().(*appendReq)
	r.b = encodeBatch(r.b[:0], spec, recs)
	if len(r.b) > l.opts.MaxBatchBytes {
		err := fmt.Errorf("%w: %d bytes encoded, limit %d", ErrRecordTooLarge, len(r.b), l.opts.MaxBatchBytes)
		reqPool.Put(r)
		return 0, err
	}
	r.epoch, r.now = epoch, now
	r.state.Store(reqQueued)
	r.refs.Store(2)
	l.qmu.Lock()
	if l.qclosed {
		l.qmu.Unlock()
		reqPool.Put(r)
		return 0, ErrClosed
	}
	l.queue = append(l.queue, r)
	l.qlen.Store(int32(len(l.queue)))
	l.inflight.Add(1)
	l.qmu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
	select {
	case <-r.done:
		base, err := r.base, r.err
		r.release()
		return base, err
	case <-ctx.Done():
	}
	select {
	case <-r.done:
		// Finished as ctx ended: the outcome is known after all.
		base, err := r.base, r.err
		r.release()
		return base, err
	default:
	}
	if r.state.CompareAndSwap(reqQueued, reqAbandoned) {
		// The committer skips it: nothing was written.
		r.release()
		return 0, ctx.Err()
	}
	base, cerr := r.base, r.checkErr
	r.release()
	if cerr != nil {
		return 0, cerr
	}
	return base, fmt.Errorf("%w: %w", ErrDurabilityUnknown, ctx.Err())
}

// runCommitter is the group-commit loop of the "sync" policy. It also
// fsyncs for AppendReplica, whose batches are written directly.
func (l *Log) runCommitter() {
	defer l.wg.Done()
	for {
		select {
		case <-l.stop:
			// Close set closed and qclosed: whatever is still queued is
			// refused with ErrClosed.
			l.commitRound()
			return
		case <-l.kick:
			l.gather()
			l.commitRound()
		}
	}
}

// maxGatherYields bounds how long the committer waits for producers to
// rejoin before a round.
const maxGatherYields = 256

// gather lets producers released by the previous round append again
// before the next round starts, so that they join it instead of forming a
// second cohort that alternates with the first: with N producers one
// cohort of N per fsync beats two of N/2, because the pause is a few
// microseconds of CPU against an fsync of hundreds. It yields until the
// queue holds as many requests as were active in the previous round (the
// ones it released plus the ones that queued during its fsync), or until
// the bound: it never waits for producers that stopped appending.
func (l *Log) gather() {
	want := l.active
	for i := 0; i < maxGatherYields && int(l.qlen.Load()) < want; i++ {
		runtime.Gosched()
	}
}

// commitRound writes every queued batch with one write, fsyncs once and
// releases the appenders.
func (l *Log) commitRound() {
	l.qmu.Lock()
	reqs := l.queue
	l.queue = l.spare[:0]
	l.qlen.Store(0)
	l.qmu.Unlock()

	l.mu.Lock()
	n := 0
	for _, r := range reqs {
		base, err := l.checkLocked(r.epoch, -1)
		r.base, r.checkErr = base, err
		if !r.state.CompareAndSwap(reqQueued, reqTaken) {
			l.inflight.Add(-1)
			r.release() // abandoned before it got an offset
			continue
		}
		reqs[n] = r
		n++
		if err == nil {
			err = l.stageLocked(r.b, r.epoch, base, r.now)
		}
		r.err = err
	}
	reqs = reqs[:n]
	if err := l.flushStagedLocked(); err != nil {
		for _, r := range reqs {
			if r.err == nil {
				r.err = err
			}
		}
	}
	l.mu.Unlock()

	if err := l.syncRound(); err != nil {
		for _, r := range reqs {
			if r.err == nil {
				r.err = fmt.Errorf("%w: %w: %w", ErrDurabilityUnknown, ErrLogFailed, err)
			}
		}
	}
	l.qmu.Lock()
	l.active = n + len(l.queue)
	l.qmu.Unlock()
	l.inflight.Add(-int32(len(reqs)))
	for i, r := range reqs {
		r.done <- struct{}{}
		r.release()
		reqs[i] = nil
	}
	l.spare = reqs[:0]
}
