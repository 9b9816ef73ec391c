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
	var drop []*segment
	if to <= l.start {
		for _, s := range l.segs {
			s.closeFiles()
			removeSegmentFiles(s)
		}
		l.segs = nil
		s, err := createSegment(l.dir, to, l.nowMs())
		if err != nil {
			l.failed = err
			return fmt.Errorf("%w: %w", ErrLogFailed, err)
		}
		l.segs = []*segment{s}
		l.start = to
		l.next = to
	} else {
		i := l.segmentForLocked(to)
		drop = append(drop, l.segs[i+1:]...)
		s := l.segs[i]
		if err := l.truncateSegmentLocked(s, to); err != nil {
			l.failed = err
			return fmt.Errorf("%w: truncate %s: %w", ErrLogFailed, s.path, err)
		}
		l.segs = l.segs[:i+1]
		if s.idxF == nil {
			if err := s.openIndexAppenders(); err != nil {
				return fmt.Errorf("segment: open index: %w", err)
			}
		}
		l.next = min(to, s.meta.lastOffset+1)
		if l.next < s.meta.base {
			l.next = s.meta.base
		}
	}
	for _, s := range drop {
		s.closeFiles()
		removeSegmentFiles(s)
	}
	if err := syncDir(l.dir); err != nil {
		return fmt.Errorf("segment: sync dir: %w", err)
	}
	if l.epochs.truncateEnd(l.next) {
		if err := writeFileAtomic(filepath.Join(l.dir, epochFileName), encodeEpochFile(l.epochs)); err != nil {
			return fmt.Errorf("segment: write epoch checkpoint: %w", err)
		}
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
	if err := s.f.Truncate(pos); err != nil {
		return err
	}
	if rewrite != nil {
		if _, err := s.f.WriteAt(rewrite, pos); err != nil {
			return err
		}
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
