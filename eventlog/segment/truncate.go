package segment

import (
	"fmt"
	"os"
	"path/filepath"
)

// Truncate removes every record with offset >= to, so that the next Append
// gets offset to (follower truncation to the leader's epoch history). A
// batch that straddles to is rewritten to keep its records below to. When
// to <= StartOffset the log is emptied and restarts at to. Truncating at or
// beyond EndOffset does nothing. The result is fsynced before Truncate
// returns.
func (l *Log) Truncate(to int64) error {
	if to < 0 {
		return fmt.Errorf("segment: truncate to negative offset %d", to)
	}
	l.adminMu.Lock()
	defer l.adminMu.Unlock()
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if l.failed != nil {
		return fmt.Errorf("%w: %w", ErrLogFailed, l.failed)
	}
	if to >= l.next {
		return nil
	}
	// Whole segments go first, newest first, and the directory is synced
	// before the straddling segment is cut: a crash at any point leaves a
	// prefix of the old log, never one with a hole that would bring later
	// records back.
	cut := 0
	if to > l.start {
		cut = l.segmentForLocked(to) + 1
	}
	for j := len(l.segs) - 1; j >= cut; j-- {
		l.segs[j].closeFiles()
		removeSegmentFiles(l.segs[j])
	}
	l.segs = l.segs[:cut]
	if err := syncDir(l.dir); err != nil {
		l.failed = err
		return fmt.Errorf("%w: sync dir: %w", ErrLogFailed, err)
	}
	if cut == 0 {
		s, err := createSegment(l.dir, to, l.nowMs())
		if err != nil {
			l.failed = err
			return fmt.Errorf("%w: %w", ErrLogFailed, err)
		}
		l.segs = []*segment{s}
		l.start = to
		l.next = to
		l.epochs.truncateStart(to)
	} else {
		s := l.segs[cut-1]
		if err := l.truncateSegmentLocked(s, to); err != nil {
			l.failed = err
			return fmt.Errorf("%w: truncate %s: %w", ErrLogFailed, s.path, err)
		}
		if s.idxF == nil {
			if err := s.openIndexAppenders(); err != nil {
				l.failed = err
				return fmt.Errorf("%w: open index: %w", ErrLogFailed, err)
			}
		}
		// After compaction the segment may end below to; the log end must
		// be what a reopen would find.
		l.next = max(min(to, s.meta.lastOffset+1), s.meta.base)
	}
	// Rewritten on every truncation (rare): drop epochs that now start at
	// or after the end.
	l.epochs.truncateEnd(l.next)
	if err := writeFileAtomic(filepath.Join(l.dir, epochFileName), encodeEpochFile(l.epochs)); err != nil {
		return fmt.Errorf("segment: write epoch checkpoint: %w", err)
	}
	l.cmu.Lock()
	l.durableOff = min(l.durableOff, l.next)
	l.cmu.Unlock()
	return nil
}

// truncateSegmentLocked cuts s so that it holds no offset >= to, rewriting
// a straddling batch, fsyncs it and rebuilds its metadata and indexes.
func (l *Log) truncateSegmentLocked(s *segment, to int64) error {
	pos := s.positionFor(to)
	var rewrite []byte
	for pos < s.meta.size {
		h, b, err := s.readBatchAt(pos, to)
		if err != nil {
			return err
		}
		if h.lastOffset() < to {
			pos += h.size()
			continue
		}
		if h.BaseOffset < to {
			recs, _, err := decodeBatch(nil, b)
			if err != nil {
				return &CorruptError{File: s.path, Position: pos, Reason: err.Error()}
			}
			n := 0
			for n < len(recs) && recs[n].Offset < to {
				n++
			}
			if n > 0 {
				rewrite = encodeBatch(nil, batchSpec{
					baseOffset:      recs[0].Offset,
					leaderEpoch:     h.LeaderEpoch,
					logAppendTime:   h.Attributes&attrLogAppendTime != 0,
					appendTime:      h.MaxTimestamp,
					lastOffsetDelta: int32(recs[n-1].Offset - recs[0].Offset),
				}, recs[:n])
			}
		}
		break
	}
	// The shorter rewritten batch goes over the old one before the file is
	// cut: a crash in between leaves a valid batch followed by a torn tail,
	// which recovery cuts. (A crash during the write itself can lose the
	// straddling batch's kept records; a follower fetches them again.)
	if rewrite != nil {
		if _, err := s.f.WriteAt(rewrite, pos); err != nil {
			return err
		}
	}
	if err := s.f.Truncate(pos + int64(len(rewrite))); err != nil {
		return err
	}
	if err := s.f.Sync(); err != nil {
		return err
	}
	size := pos + int64(len(rewrite))
	meta, fault, err := scanSegment(s.f, size, s.meta.base, l.opts.IndexIntervalBytes)
	if err != nil {
		return err
	}
	if fault != nil {
		return &CorruptError{File: s.path, Position: fault.pos, Reason: fault.reason}
	}
	s.meta = meta
	s.idxPend, s.tidxPend = nil, nil // rewritten whole below
	if s.idxF != nil {
		s.idxF.Close()
		s.tidxF.Close()
		s.idxF, s.tidxF = nil, nil
	}
	offIdx, timeIdx := encodeIndexes(&s.meta)
	if err := writeIndexFile(s.indexPath(), offIdx); err != nil {
		return err
	}
	return writeIndexFile(s.timeIndexPath(), timeIdx)
}

// removeSegmentFiles deletes a segment's files, the log first: an index
// without its log is removed on the next Open.
func removeSegmentFiles(s *segment) {
	_ = os.Remove(s.path)
	_ = os.Remove(s.indexPath())
	_ = os.Remove(s.timeIndexPath())
}
