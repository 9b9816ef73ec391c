package segment

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// swapSuffix names a merged compaction output that is complete and waiting
// to replace the segments it covers: "<first base>-<end>.swap" replaces
// every segment whose base offset is in [first base, end). Open finishes an
// interrupted swap.
const swapSuffix = ".swap"

// CompactResult says what Compact did.
type CompactResult struct {
	SegmentsRewritten int // segments replaced (a merge of n segments counts n)
	SegmentsMerged    int // segments that disappeared into a neighbour
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
// a key are never removed.
//
// Consecutive closed segments whose sizes add up to at most SegmentBytes are
// merged into one, so that compaction does not leave many small files.
// A single rewritten segment is written to "<segment>.log.cleaned", fsynced
// and renamed over the original; a merge is written the same way, renamed to
// "<first>-<end>.swap", and then replaces its segments (Open completes a
// swap interrupted by a crash). Either way a crash leaves the old or the new
// data, never a mix. Append is never blocked by the copying, only for the
// pointer swap; Truncate and EnforceRetention wait. With Options.Compact
// false it does nothing.
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
	end := l.segs[len(l.segs)-1].meta.base // where the closed segments end
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
	for len(closed) > 0 {
		if l.closing.Load() {
			return res, ErrClosed
		}
		// Group: consecutive segments within SegmentBytes in total whose
		// offsets fit one segment's 32-bit relative offsets.
		n, size := 1, closed[0].meta.size
		for n < len(closed) && size+closed[n].meta.size <= l.opts.SegmentBytes &&
			segEnd(closed, n, end)-1-closed[0].meta.base <= math.MaxUint32 {
			size += closed[n].meta.size
			n++
		}
		group, groupEnd := closed[:n], segEnd(closed, n-1, end)
		closed = closed[n:]
		if len(group) == 1 {
			// Reading is cheaper than writing and syncing a copy that would
			// be thrown away: rewrite a lone segment only if it shrinks.
			n, err := countRemovable(group[0], latest, tombCutoff)
			if err != nil {
				return res, err
			}
			if n == 0 {
				continue
			}
		}
		out, removed, tombs, err := l.cleanGroup(group, latest, tombCutoff)
		if err != nil {
			return res, err
		}
		for _, s := range group {
			res.BytesBefore += s.meta.size
		}
		res.BytesAfter += out.meta.size
		if len(group) == 1 {
			err = l.swapSegment(group[0], out)
		} else {
			err = l.swapGroup(group, groupEnd, out)
		}
		if err != nil {
			return res, err
		}
		res.SegmentsRewritten += len(group)
		res.SegmentsMerged += len(group) - 1
		res.RecordsRemoved += removed
		res.TombstonesDropped += tombs
	}
	return res, nil
}

// segEnd is the offset where closed[i] ends: the next segment's base.
func segEnd(closed []*segment, i int, end int64) int64 {
	if i+1 < len(closed) {
		return closed[i+1].meta.base
	}
	return end
}

// eachBatch calls fn for every batch of a closed segment, in order. The
// batch bytes are only valid during the call.
func (s *segment) eachBatch(fn func(pos int64, h batchHeader, b []byte) error) error {
	br := bufio.NewReaderSize(io.NewSectionReader(s.f, 0, s.meta.size), int(min(max(s.meta.size, 16), 256<<10)))
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

// keepRecord says whether compaction keeps r, and if not whether it is a
// dropped tombstone.
func keepRecord(r *Record, latest map[string]int64, dropTombstones bool) (keep, tombstone bool) {
	switch {
	case r.Key == nil:
		return true, false
	case latest[string(r.Key)] != r.Offset:
		return false, false
	case r.Value == nil && dropTombstones:
		return false, true
	}
	return true, false
}

// countRemovable counts the records of s that compaction would drop.
func countRemovable(s *segment, latest map[string]int64, tombCutoff int64) (int, error) {
	n := 0
	var recs []Record
	err := s.eachBatch(func(pos int64, h batchHeader, b []byte) error {
		var err error
		recs, _, err = decodeBatch(recs[:0], b)
		if err != nil {
			return &CorruptError{File: s.path, Position: pos, Reason: err.Error()}
		}
		for i := range recs {
			if keep, _ := keepRecord(&recs[i], latest, s.meta.maxTs < tombCutoff); !keep {
				n++
			}
		}
		return nil
	})
	return n, err
}

// cleanGroup writes the compacted contents of the consecutive segments in
// group, as one segment based at group[0]'s base offset, to
// "<group[0]>.log.cleaned" and returns it, fsynced.
func (l *Log) cleanGroup(group []*segment, latest map[string]int64, tombCutoff int64) (_ *segment, removed, tombs int, err error) {
	first := group[0]
	path := first.path + cleanedSuffix
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("segment: create %s: %w", path, err)
	}
	out := &segment{meta: newSegMeta(first.meta.base), path: first.path, f: f}
	fail := func(err error) (*segment, int, int, error) {
		f.Close()
		os.Remove(path)
		return nil, 0, 0, err
	}
	w := bufio.NewWriterSize(f, 256<<10)
	var enc []byte
	var kept []Record
	for _, s := range group {
		dropTombstones := s.meta.maxTs < tombCutoff
		err = s.eachBatch(func(pos int64, h batchHeader, b []byte) error {
			recs, _, err := decodeBatch(kept[:0], b)
			if err != nil {
				return &CorruptError{File: s.path, Position: pos, Reason: err.Error()}
			}
			n := 0
			for _, r := range recs {
				if keep, tomb := keepRecord(&r, latest, dropTombstones); !keep {
					if tomb {
						tombs++
					} else {
						removed++
					}
					continue
				}
				recs[n] = r
				n++
			}
			kept = recs[:n]
			if n == 0 {
				return nil
			}
			data := b
			if n < len(recs) {
				enc = encodeBatch(enc[:0], batchSpec{
					baseOffset:      kept[0].Offset,
					leaderEpoch:     h.LeaderEpoch,
					logAppendTime:   h.Attributes&attrLogAppendTime != 0,
					appendTime:      h.MaxTimestamp,
					lastOffsetDelta: int32(h.lastOffset() - kept[0].Offset),
				}, kept)
				data = enc
			}
			nh, err := parseBatchHeader(data)
			if err != nil {
				return fmt.Errorf("segment: re-encoded a bad batch: %w", err)
			}
			if _, err := w.Write(data); err != nil {
				return err
			}
			out.meta.observe(nh, out.meta.size, l.opts.IndexIntervalBytes)
			return nil
		})
		if err != nil {
			return fail(err)
		}
	}
	if err := w.Flush(); err != nil {
		return fail(fmt.Errorf("segment: write %s: %w", path, err))
	}
	if err := f.Sync(); err != nil {
		return fail(fmt.Errorf("segment: sync %s: %w", path, err))
	}
	return out, removed, tombs, nil
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
	return writeIndexes(s)
}

// swapGroup replaces the segments of group (covering offsets up to end) by
// the merged segment. The merged file is first renamed to its ".swap" name,
// the commit point that Open completes after a crash; then the old files go,
// newest first, and the swap file takes the first segment's name.
func (l *Log) swapGroup(group []*segment, end int64, merged *segment) error {
	first := group[0]
	swapPath := filepath.Join(l.dir, swapName(first.meta.base, end))
	if err := os.Rename(first.path+cleanedSuffix, swapPath); err != nil {
		merged.f.Close()
		os.Remove(first.path + cleanedSuffix)
		return fmt.Errorf("segment: swap %s: %w", first.path, err)
	}
	if err := syncDir(l.dir); err != nil {
		return fmt.Errorf("segment: sync dir: %w", err)
	}
	l.syncMu.Lock()
	l.mu.Lock()
	i := 0
	for i < len(l.segs) && l.segs[i] != first {
		i++
	}
	if i+len(group) > len(l.segs)-1 {
		// Cannot happen while adminMu is held; refuse rather than guess.
		l.mu.Unlock()
		l.syncMu.Unlock()
		return fmt.Errorf("segment: compaction group of %s no longer in the log", first.path)
	}
	l.segs = append(l.segs[:i+1], l.segs[i+len(group):]...)
	l.segs[i] = merged
	l.mu.Unlock()
	l.syncMu.Unlock()
	for j := len(group) - 1; j >= 0; j-- {
		group[j].closeFiles()
		if j > 0 {
			removeSegmentFiles(group[j])
		}
	}
	if err := os.Rename(swapPath, first.path); err != nil {
		return fmt.Errorf("segment: swap %s: %w", first.path, err)
	}
	if err := syncDir(l.dir); err != nil {
		return fmt.Errorf("segment: sync dir: %w", err)
	}
	return writeIndexes(merged)
}

// writeIndexes rewrites a segment's index files from its metadata. They are
// checked and rebuilt on Open if a crash lands before this.
func writeIndexes(s *segment) error {
	offIdx, timeIdx := encodeIndexes(&s.meta)
	if err := writeIndexFile(s.indexPath(), offIdx); err != nil {
		return fmt.Errorf("segment: write index: %w", err)
	}
	if err := writeIndexFile(s.timeIndexPath(), timeIdx); err != nil {
		return fmt.Errorf("segment: write index: %w", err)
	}
	return nil
}

func swapName(base, end int64) string {
	return segmentName(base) + "-" + segmentName(end) + swapSuffix
}

// parseSwapName parses "<base>-<end>.swap".
func parseSwapName(name string) (base, end int64, ok bool) {
	stem, ok := strings.CutSuffix(name, swapSuffix)
	if !ok || len(stem) != 41 || stem[20] != '-' {
		return 0, 0, false
	}
	b, err1 := strconv.ParseInt(stem[:20], 10, 64)
	e, err2 := strconv.ParseInt(stem[21:], 10, 64)
	if err1 != nil || err2 != nil || b < 0 || e <= b {
		return 0, 0, false
	}
	return b, e, true
}

// completeSwaps finishes merges interrupted by a crash: for each
// "<base>-<end>.swap" it removes the segments it replaces (newest first)
// and renames it to "<base>.log". It returns the names it removed.
func completeSwaps(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, e := range entries {
		base, end, ok := parseSwapName(e.Name())
		if !ok {
			continue
		}
		var old []int64
		for _, o := range entries {
			if b, ok := parseSegmentName(o.Name()); ok && b >= base && b < end {
				old = append(old, b)
			}
		}
		for j := len(old) - 1; j >= 0; j-- {
			stem := filepath.Join(dir, segmentName(old[j]))
			for _, suffix := range []string{logSuffix, indexSuffix, timeIndexSuffix} {
				if err := os.Remove(stem + suffix); err != nil && !os.IsNotExist(err) {
					return removed, err
				}
			}
			removed = append(removed, segmentName(old[j])+logSuffix)
		}
		if err := os.Rename(filepath.Join(dir, e.Name()), filepath.Join(dir, segmentName(base)+logSuffix)); err != nil {
			return removed, err
		}
		if err := syncDir(dir); err != nil {
			return removed, err
		}
	}
	return removed, nil
}
