package segment

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"time"
)

// CompactResult says what Compact did.
type CompactResult struct {
	SegmentsRewritten int
	RecordsRemoved    int // superseded records dropped
	TombstonesDropped int // tombstones dropped after TombstoneRetention
	BytesBefore       int64
	BytesAfter        int64
}

// Compact keeps, in every closed segment, only the latest record of each key
// among the closed segments (the active segment is neither rewritten nor
// consulted). Records keep their offsets, so offsets get gaps. A tombstone
// (nil Value) that is the latest for its key is kept while its segment's
// largest timestamp is newer than now - TombstoneRetention, so consumers
// have that long to see the delete; then it is dropped too. Records without
// a key are never removed. Each rewritten segment is written to a
// ".cleaned" file, fsynced and renamed over the original, so a crash leaves
// either the old or the new segment. Append is never blocked by the
// copying, only for the pointer swap; Truncate and EnforceRetention wait.
// With Options.Compact false it does nothing.
func (l *Log) Compact(now time.Time) (CompactResult, error) {
	var res CompactResult
	if !l.opts.Compact {
		return res, nil
	}
	l.adminMu.Lock()
	defer l.adminMu.Unlock()
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return res, ErrClosed
	}
	closed := append([]*segment(nil), l.segs[:len(l.segs)-1]...)
	l.mu.RUnlock()
	if len(closed) == 0 {
		return res, nil
	}
	// Closed segments change only under adminMu, which this holds, so they
	// can be read without mu.
	latest := map[string]int64{}
	for _, s := range closed {
		err := s.eachBatch(func(pos int64, h batchHeader, b []byte) error {
			recs, _, err := decodeBatch(nil, b)
			if err != nil {
				return &CorruptError{File: s.path, Position: pos, Reason: err.Error()}
			}
			for _, r := range recs {
				if r.Key != nil {
					latest[string(r.Key)] = r.Offset
				}
			}
			return nil
		})
		if err != nil {
			return res, err
		}
	}
	tombCutoff := now.UnixMilli() - durMs(l.opts.TombstoneRetention)
	for _, s := range closed {
		if l.closing.Load() {
			return res, ErrClosed
		}
		out, removed, tombs, err := l.cleanSegment(s, latest, s.meta.maxTs < tombCutoff)
		if err != nil {
			return res, err
		}
		if out == nil {
			continue
		}
		res.BytesBefore += s.meta.size
		res.BytesAfter += out.meta.size
		if err := l.swapSegment(s, out); err != nil {
			return res, err
		}
		res.SegmentsRewritten++
		res.RecordsRemoved += removed
		res.TombstonesDropped += tombs
	}
	return res, nil
}

// eachBatch calls fn for every batch of a closed segment, in order. The
// batch bytes are only valid during the call.
func (s *segment) eachBatch(fn func(pos int64, h batchHeader, b []byte) error) error {
	br := bufio.NewReaderSize(io.NewSectionReader(s.f, 0, s.meta.size), 256<<10)
	var buf []byte
	for pos := int64(0); pos < s.meta.size; {
		var hb [batchHeaderSize]byte
		if _, err := io.ReadFull(br, hb[:]); err != nil {
			return fmt.Errorf("segment: read %s at %d: %w", s.path, pos, err)
		}
		h, err := parseBatchHeader(hb[:])
		if err != nil {
			return &CorruptError{File: s.path, Position: pos, Reason: err.Error()}
		}
		if h.size() > s.meta.size-pos {
			return &CorruptError{File: s.path, Position: pos, Reason: "batch runs past the segment end"}
		}
		if int64(cap(buf)) < h.size() {
			buf = make([]byte, h.size())
		}
		buf = buf[:h.size()]
		copy(buf, hb[:])
		if _, err := io.ReadFull(br, buf[batchHeaderSize:]); err != nil {
			return fmt.Errorf("segment: read %s at %d: %w", s.path, pos, err)
		}
		if err := fn(pos, h, buf); err != nil {
			return err
		}
		pos += h.size()
	}
	return nil
}

// cleanSegment writes the compacted copy of s to "<segment>.cleaned" and
// returns it (nil when nothing would change).
func (l *Log) cleanSegment(s *segment, latest map[string]int64, dropTombstones bool) (_ *segment, removed, tombs int, err error) {
	path := s.path + cleanedSuffix
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("segment: create %s: %w", path, err)
	}
	seg := &segment{meta: newSegMeta(s.meta.base), path: s.path, f: f}
	fail := func(err error) (*segment, int, int, error) {
		f.Close()
		os.Remove(path)
		return nil, 0, 0, err
	}
	w := bufio.NewWriterSize(f, 256<<10)
	var enc []byte
	var kept []Record
	err = s.eachBatch(func(pos int64, h batchHeader, b []byte) error {
		recs, _, err := decodeBatch(kept[:0], b)
		if err != nil {
			return &CorruptError{File: s.path, Position: pos, Reason: err.Error()}
		}
		n := 0
		for _, r := range recs {
			switch {
			case r.Key == nil:
			case latest[string(r.Key)] != r.Offset:
				removed++
				continue
			case r.Value == nil && dropTombstones:
				tombs++
				continue
			}
			recs[n] = r
			n++
		}
		kept = recs[:n]
		if n == 0 {
			return nil
		}
		out := b
		if n < len(recs) {
			enc = encodeBatch(enc[:0], batchSpec{
				baseOffset:      kept[0].Offset,
				leaderEpoch:     h.LeaderEpoch,
				logAppendTime:   h.Attributes&attrLogAppendTime != 0,
				appendTime:      h.MaxTimestamp,
				lastOffsetDelta: int32(h.lastOffset() - kept[0].Offset),
			}, kept)
			out = enc
		}
		nh, err := parseBatchHeader(out)
		if err != nil {
			return fmt.Errorf("segment: re-encoded a bad batch: %w", err)
		}
		if _, err := w.Write(out); err != nil {
			return err
		}
		seg.meta.observe(nh, seg.meta.size, l.opts.IndexIntervalBytes)
		return nil
	})
	if err != nil {
		return fail(err)
	}
	if removed == 0 && tombs == 0 {
		f.Close()
		os.Remove(path)
		return nil, 0, 0, nil
	}
	if err := w.Flush(); err != nil {
		return fail(fmt.Errorf("segment: write %s: %w", path, err))
	}
	if err := f.Sync(); err != nil {
		return fail(fmt.Errorf("segment: sync %s: %w", path, err))
	}
	return seg, removed, tombs, nil
}

// swapSegment renames the cleaned copy over s and switches readers to it.
func (l *Log) swapSegment(s, cleaned *segment) error {
	// The rename does not disturb readers: open descriptors keep reading
	// the old file until the swap below.
	if err := os.Rename(s.path+cleanedSuffix, s.path); err != nil {
		cleaned.f.Close()
		os.Remove(s.path + cleanedSuffix)
		return fmt.Errorf("segment: swap %s: %w", s.path, err)
	}
	if err := syncDir(l.dir); err != nil {
		return fmt.Errorf("segment: sync dir: %w", err)
	}
	l.syncMu.Lock()
	l.mu.Lock()
	oldF := s.f
	s.f = cleaned.f
	s.meta = cleaned.meta
	l.mu.Unlock()
	l.syncMu.Unlock()
	oldF.Close()
	// Indexes are rebuilt from the log on Open if a crash lands between the
	// rename and these writes.
	offIdx, timeIdx := encodeIndexes(&s.meta)
	if err := writeIndexFile(s.indexPath(), offIdx); err != nil {
		return fmt.Errorf("segment: write index: %w", err)
	}
	if err := writeIndexFile(s.timeIndexPath(), timeIdx); err != nil {
		return fmt.Errorf("segment: write index: %w", err)
	}
	return nil
}
