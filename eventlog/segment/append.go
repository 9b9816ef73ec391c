package segment

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"sync"
	"time"
)

var encPool = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// Append writes recs as one batch with consecutive offsets base..base+len-1
// and leader epoch epoch, and returns once the batch is durable per the
// flush policy:
//   - "sync": an fsync covering the batch has completed (group commit:
//     concurrent appends are written together and share one fsync);
//   - "interval", "os": the batch is in the operating system's page cache.
//
// Record offsets and (under "log_append") timestamps are assigned here; the
// input records are not modified. An epoch lower than the latest epoch in
// the log is refused with ErrStaleEpoch; a higher one starts a new entry in
// the epoch history, persisted before the batch is written.
//
// If ctx ends before the batch was given an offset, Append returns ctx's
// error and nothing is written. If it ends later, while the batch is being
// written or waits for its fsync, Append returns the base offset and an
// error wrapping ErrDurabilityUnknown: the records are (or are about to be)
// in the log. After a failed write or fsync, Append returns ErrLogFailed.
func (l *Log) Append(ctx context.Context, epoch int32, recs []Record) (int64, error) {
	if len(recs) == 0 {
		return 0, errors.New("segment: append of an empty batch")
	}
	if epoch < 0 {
		return 0, fmt.Errorf("segment: negative leader epoch %d", epoch)
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if len(recs)-1 > math.MaxInt32 {
		return 0, fmt.Errorf("%w: %d records in one batch", ErrRecordTooLarge, len(recs))
	}
	now := l.nowMs()
	spec := batchSpec{
		logAppendTime:   l.opts.TimestampType == TimestampLogAppend,
		appendTime:      now,
		lastOffsetDelta: -1,
	}
	if l.opts.Flush == FlushSync {
		return l.appendGroup(ctx, epoch, now, spec, recs)
	}
	bp := encPool.Get().(*[]byte)
	defer encPool.Put(bp)
	b := encodeBatch((*bp)[:0], spec, recs)
	*bp = b
	if len(b) > l.opts.MaxBatchBytes {
		return 0, fmt.Errorf("%w: %d bytes encoded, limit %d", ErrRecordTooLarge, len(b), l.opts.MaxBatchBytes)
	}
	base, _, err := l.write(b, epoch, -1, now)
	return base, err
}

// write stamps and writes one encoded batch under the lock and returns its
// base offset and write sequence number. With base -1 the batch gets the
// next offset; otherwise base is kept and must not be below it.
func (l *Log) write(b []byte, epoch int32, base int64, now int64) (int64, uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	base, err := l.checkLocked(epoch, base)
	if err != nil {
		return 0, 0, err
	}
	if err := l.stageLocked(b, epoch, base, now); err != nil {
		return 0, 0, err
	}
	if err := l.flushStagedLocked(); err != nil {
		return 0, 0, err
	}
	return base, l.writeSeq, nil
}

// checkLocked decides whether a batch with this epoch may be appended and
// returns its base offset: the next offset for base -1, else base, which
// must not be below it. It changes nothing.
func (l *Log) checkLocked(epoch int32, base int64) (int64, error) {
	if l.closed {
		return 0, ErrClosed
	}
	if l.failed != nil {
		return 0, fmt.Errorf("%w: %w", ErrLogFailed, l.failed)
	}
	if latest := l.epochs.latest(); epoch < latest {
		return 0, fmt.Errorf("%w: append with epoch %d, log is at epoch %d", ErrStaleEpoch, epoch, latest)
	}
	if base < 0 {
		return l.next, nil
	}
	if base < l.next {
		return 0, fmt.Errorf("%w: replica batch at offset %d, log ends at %d", ErrOffsetOrder, base, l.next)
	}
	return base, nil
}

// staged is what has been given offsets under mu but not yet written: the
// bytes of one or more batches that follow each other in the active
// segment. Every holder of mu flushes it (flushStagedLocked) before
// unlocking, so that readers never see offsets without bytes.
type staged struct {
	// one is the only staged batch, written from the caller's buffer;
	// with two or more they are copied into buf and written at once.
	one  []byte
	buf  []byte
	hdrs []batchHeader
	// next and seq are l.next and l.writeSeq before the first staged
	// batch, restored if the write fails.
	next int64
	seq  uint64
}

// stageLocked stamps b with base and epoch and queues it for the next
// flushStagedLocked, after rolling the segment or persisting a new epoch
// if the batch needs it (both flush what is staged first). b must stay
// unchanged until then. The caller has run checkLocked.
func (l *Log) stageLocked(b []byte, epoch int32, base int64, now int64) error {
	setBaseAndEpoch(b, base, epoch)
	h, err := parseBatchHeader(b)
	if err != nil {
		// Also catches offsets that would overflow int64.
		return fmt.Errorf("segment: batch at offset %d: %w", base, err)
	}
	g := &l.stage
	act := l.segs[len(l.segs)-1]
	size := act.meta.size + int64(g.len())
	if h.lastOffset()-act.meta.base > math.MaxUint32 || size > 0 &&
		(size+int64(len(b)) > l.opts.SegmentBytes || now-act.activeSince >= durMs(l.opts.SegmentAge)) {
		if err := l.flushStagedLocked(); err != nil {
			return err
		}
		if err := l.rollLocked(now, base); err != nil {
			return err
		}
	}
	if l.epochs.latest() < epoch {
		if err := l.flushStagedLocked(); err != nil {
			return err
		}
		next := append(epochHistory(nil), l.epochs...)
		next.assign(epoch, base)
		if err := writeFileAtomic(filepath.Join(l.dir, epochFileName), encodeEpochFile(next)); err != nil {
			return fmt.Errorf("segment: write epoch checkpoint: %w", err)
		}
		l.epochs = next
	}
	switch {
	case len(g.hdrs) == 0:
		g.next, g.seq = l.next, l.writeSeq
		g.one = b
	case g.one != nil:
		g.buf = append(append(g.buf[:0], g.one...), b...)
		g.one = nil
	default:
		g.buf = append(g.buf, b...)
	}
	g.hdrs = append(g.hdrs, h)
	l.next = h.lastOffset() + 1
	l.writeSeq++
	return nil
}

func (g *staged) len() int {
	if g.one != nil {
		return len(g.one)
	}
	return len(g.buf)
}

// flushStagedLocked writes the staged batches to the active segment with
// one write and records them in the segment's metadata and index.
func (l *Log) flushStagedLocked() error {
	g := &l.stage
	if len(g.hdrs) == 0 {
		return nil
	}
	data := g.buf
	if g.one != nil {
		data = g.one
	}
	defer func() {
		g.one, g.hdrs = nil, g.hdrs[:0]
		if cap(g.buf) > 8<<20 {
			g.buf = nil // one burst of large batches should not pin memory
		} else {
			g.buf = g.buf[:0]
		}
	}()
	act := l.segs[len(l.segs)-1]
	pos := act.meta.size
	if _, err := act.f.WriteAt(data, pos); err != nil {
		// The file may now hold part of the batches beyond act.meta.size;
		// cut it off so the page cache matches what the log believes.
		_ = act.f.Truncate(pos)
		l.failed = err
		l.next, l.writeSeq = g.next, g.seq
		return fmt.Errorf("%w: write %s: %w", ErrLogFailed, act.path, err)
	}
	for _, h := range g.hdrs {
		if act.meta.observe(h, pos, l.opts.IndexIntervalBytes) {
			// Index files are rebuilt on Open when they disagree with the
			// log, so a failed index write only costs a rebuild.
			e := act.meta.index[len(act.meta.index)-1]
			act.idxPend = appendOffsetEntry(act.idxPend, act.meta.base, e)
			act.tidxPend = appendTimeEntry(act.tidxPend, act.meta.base, e)
			if len(act.idxPend) >= 8<<10 {
				_ = act.flushIndex()
			}
		}
		pos += h.size()
	}
	return nil
}

// rollLocked fsyncs the active segment and starts a new one at base (the
// next batch's base offset).
// Syncing on roll keeps every non-last segment complete on disk, so that
// recovery only ever has to cut a torn tail from the last one.
func (l *Log) rollLocked(now, base int64) error {
	old := l.segs[len(l.segs)-1]
	if err := syncData(old.f); err != nil {
		l.failed = err
		return fmt.Errorf("%w: sync %s: %w", ErrLogFailed, old.path, err)
	}
	s, err := createSegment(l.dir, base, now)
	if err != nil {
		return err
	}
	_ = old.flushIndex()
	old.idxF.Close()
	old.tidxF.Close()
	old.idxF, old.tidxF = nil, nil
	l.segs = append(l.segs, s)
	l.markDurable(l.writeSeq, l.next)
	return nil
}

// AppendReplica appends records copied from a leader (a follower's fetch),
// keeping their Offset, Timestamp and LeaderEpoch, so that the follower's
// log is the leader's byte for byte in content. Offsets must increase, the
// first must be >= EndOffset, and gaps (left by the leader's compaction)
// are kept. Runs of records with the same epoch are written as batches of
// up to MaxBatchBytes; epochs must not decrease (ErrStaleEpoch). It
// returns the new EndOffset once durable per the flush policy, like Append;
// on error a prefix of recs may have been appended (see EndOffset).
//
// The follower's EndOffset is its last record's offset + 1. If the leader's
// compaction removed the records at the very end of its closed segments
// while its active segment is still empty, the leader's EndOffset is larger
// than its last record + 1 and a follower cannot reach it this way: compare
// last offsets, not log ends, in that case.
func (l *Log) AppendReplica(ctx context.Context, recs []Record) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	for i := range recs {
		if recs[i].LeaderEpoch < 0 || recs[i].Offset < 0 || (i > 0 && recs[i].Offset <= recs[i-1].Offset) {
			return 0, fmt.Errorf("%w: record %d has offset %d epoch %d", ErrOffsetOrder, i, recs[i].Offset, recs[i].LeaderEpoch)
		}
	}
	now := l.nowMs()
	var seq uint64
	var enc []byte
	for len(recs) > 0 {
		// A batch: same epoch, offsets within an int32 delta, estimated
		// size within MaxBatchBytes (at least one record).
		n, size := 1, batchHeaderSize+recordEstimate(&recs[0])
		for n < len(recs) && recs[n].LeaderEpoch == recs[0].LeaderEpoch &&
			recs[n].Offset-recs[0].Offset <= math.MaxInt32 &&
			size+recordEstimate(&recs[n]) <= l.opts.MaxBatchBytes {
			size += recordEstimate(&recs[n])
			n++
		}
		batch := recs[:n]
		enc = encodeBatch(enc[:0], batchSpec{
			baseOffset:      batch[0].Offset,
			appendTime:      now,
			lastOffsetDelta: int32(batch[n-1].Offset - batch[0].Offset),
		}, batch)
		if len(enc) > maxBatchLimit {
			return 0, fmt.Errorf("%w: record at offset %d encodes to %d bytes", ErrRecordTooLarge, batch[0].Offset, len(enc))
		}
		var err error
		if _, seq, err = l.write(enc, batch[0].LeaderEpoch, batch[0].Offset, now); err != nil {
			return 0, err
		}
		recs = recs[n:]
	}
	end := l.EndOffset()
	if l.opts.Flush != FlushSync || seq == 0 {
		return end, nil
	}
	return end, l.waitDurable(ctx, seq)
}

// recordEstimate bounds a record's encoded size from above.
func recordEstimate(r *Record) int {
	n := 6*binary.MaxVarintLen64 + 1 + len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += 2*binary.MaxVarintLen64 + len(h.Key) + len(h.Value)
	}
	return n
}

// markDurable records that writes up to seq (offsets below off) are on
// stable storage and wakes waiters.
func (l *Log) markDurable(seq uint64, off int64) {
	l.cmu.Lock()
	defer l.cmu.Unlock()
	if seq > l.durableSeq {
		l.durableSeq = seq
	}
	if off > l.durableOff {
		l.durableOff = off
	}
	close(l.synced)
	l.synced = make(chan struct{})
}

// waitDurable blocks until write seq is covered by an fsync.
func (l *Log) waitDurable(ctx context.Context, seq uint64) error {
	for {
		l.cmu.Lock()
		done, serr, ch := l.durableSeq >= seq, l.syncErr, l.synced
		l.cmu.Unlock()
		if done {
			return nil
		}
		if serr != nil {
			return fmt.Errorf("%w: %w: %w", ErrDurabilityUnknown, ErrLogFailed, serr)
		}
		select {
		case l.kick <- struct{}{}:
		default:
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrDurabilityUnknown, ctx.Err())
		}
	}
}

// runFlusher fsyncs every FlushInterval under the "interval" policy.
func (l *Log) runFlusher() {
	defer l.wg.Done()
	t := time.NewTicker(l.opts.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			_ = l.syncRound()
		}
	}
}

// syncRound fsyncs the active segment if anything was written since the
// last round, then publishes the new durable point.
func (l *Log) syncRound() error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.mu.RLock()
	seq, off := l.writeSeq, l.next
	f := l.segs[len(l.segs)-1].f
	l.mu.RUnlock()
	l.cmu.Lock()
	need := seq > l.durableSeq
	l.cmu.Unlock()
	if !need {
		return nil
	}
	l.fsyncs.Add(1)
	// Real elapsed time of real I/O, for the latency histogram only; the
	// injected clock (Options.Now) stamps records and is not meant for this.
	t0 := time.Now()
	err := syncData(f)
	l.fsyncLatency.observe(time.Since(t0))
	if err != nil {
		// After a failed fsync the kernel may have dropped the dirty pages
		// (fsyncgate): nothing written since the last good fsync can be
		// trusted, so the log stops taking writes.
		l.mu.Lock()
		if l.failed == nil {
			l.failed = err
		}
		l.mu.Unlock()
		l.cmu.Lock()
		l.syncErr = err
		close(l.synced)
		l.synced = make(chan struct{})
		l.cmu.Unlock()
		return err
	}
	l.markDurable(seq, off)
	return nil
}
