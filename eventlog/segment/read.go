package segment

import (
	"fmt"
	"math"
	"sort"
	"time"
)

// Read returns records with offsets >= from, in offset order, whole, until
// their total size (key + value + header keys and values) would exceed
// maxBytes. It returns at least one record when any exists at or after from,
// however large. Offsets may skip values where compaction removed records.
// Reading at EndOffset returns no records and no error; below StartOffset or
// above EndOffset returns ErrOffsetOutOfRange. Damaged bytes return a
// *CorruptError (ErrCorrupt) naming the file and position.
//
// The returned records do not share memory with the log or with each other's
// later reads; callers may keep and modify them.
func (l *Log) Read(from int64, maxBytes int) ([]Record, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return nil, ErrClosed
	}
	if from < l.start || from > l.next {
		return nil, fmt.Errorf("%w: offset %d, log holds [%d, %d)", ErrOffsetOutOfRange, from, l.start, l.next)
	}
	var out []Record
	sink := &recordSink{from: from, budget: maxBytes, force: true}
	for i := l.segmentForLocked(from); i < len(l.segs); i++ {
		s := l.segs[i]
		if s.meta.lastOffset < from {
			continue
		}
		pos := s.positionFor(from)
		for pos < s.meta.size {
			h, b, err := s.readBatchAt(pos, from)
			if err != nil {
				return nil, err
			}
			if b != nil {
				if out == nil {
					out = make([]Record, 0, min(int(h.RecordCount), 1024))
				}
				out, _, err = decodeBatchRange(out, b, sink)
				if err != nil {
					return nil, &CorruptError{File: s.path, Position: pos, Reason: err.Error()}
				}
				if sink.full || sink.budget <= 0 {
					return out, nil
				}
			}
			pos += h.size()
		}
	}
	return out, nil
}

// segmentForLocked returns the index of the segment that would hold offset.
func (l *Log) segmentForLocked(offset int64) int {
	i := sort.Search(len(l.segs), func(i int) bool { return l.segs[i].meta.base > offset }) - 1
	return max(i, 0)
}

// positionFor returns the position of the last indexed batch starting at
// or before offset (0 when none).
func (s *segment) positionFor(offset int64) int64 {
	idx := s.meta.index
	i := sort.Search(len(idx), func(i int) bool { return idx[i].offset > offset })
	if i == 0 {
		return 0
	}
	return idx[i-1].pos
}

// readBatchAt reads the batch header at pos and, unless the whole batch
// lies below from, the whole batch (b nil when skipped).
func (s *segment) readBatchAt(pos, from int64) (batchHeader, []byte, error) {
	var hb [batchHeaderSize]byte
	if _, err := s.f.ReadAt(hb[:], pos); err != nil {
		return batchHeader{}, nil, fmt.Errorf("segment: read %s at %d: %w", s.path, pos, err)
	}
	h, err := parseBatchHeader(hb[:])
	if err != nil {
		return h, nil, &CorruptError{File: s.path, Position: pos, Reason: err.Error()}
	}
	if h.size() > s.meta.size-pos {
		return h, nil, &CorruptError{File: s.path, Position: pos, Reason: fmt.Sprintf("batch of %d bytes runs past the segment end", h.size())}
	}
	if h.lastOffset() < from {
		return h, nil, nil
	}
	b := make([]byte, h.size())
	copy(b, hb[:])
	if _, err := s.f.ReadAt(b[batchHeaderSize:], pos+batchHeaderSize); err != nil {
		return h, nil, fmt.Errorf("segment: read %s at %d: %w", s.path, pos, err)
	}
	return h, b, nil
}

// OffsetForTime returns the first offset whose record timestamp is >= t
// (timestamps are kept in milliseconds). When no record is that recent it
// returns EndOffset: a consumer seeking there waits for new records.
func (l *Log) OffsetForTime(t time.Time) (int64, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return 0, ErrClosed
	}
	tm := t.UnixMilli()
	if t.After(time.UnixMilli(tm)) {
		tm++ // a record at tm ms is older than t
	}
	for _, s := range l.segs {
		if s.meta.maxTs == noTimestamp || s.meta.maxTs < tm {
			continue
		}
		// The index's maxTsBefore is a running maximum: find the last entry
		// with everything before it older than tm and scan from there.
		idx := s.meta.index
		k := sort.Search(len(idx), func(i int) bool { return idx[i].maxTsBefore >= tm })
		pos := int64(0)
		if k > 0 {
			pos = idx[k-1].pos
		}
		for pos < s.meta.size {
			h, _, err := s.readBatchAt(pos, math.MaxInt64) // header only
			if err != nil {
				return 0, err
			}
			if h.RecordCount > 0 && h.MaxTimestamp >= tm {
				_, b, err := s.readBatchAt(pos, 0)
				if err != nil {
					return 0, err
				}
				recs, _, err := decodeBatch(nil, b)
				if err != nil {
					return 0, &CorruptError{File: s.path, Position: pos, Reason: err.Error()}
				}
				for _, r := range recs {
					if r.Timestamp.UnixMilli() >= tm {
						return r.Offset, nil
					}
				}
			}
			pos += h.size()
		}
	}
	return l.next, nil
}
