package segment

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// fuzzSegments returns two valid segment files (base 0 and 30) of 10
// batches of 3 records each, and their correct index files.
func fuzzSegments() (logs [2][]byte, idx [2][]byte, tidx [2][]byte) {
	for s := 0; s < 2; s++ {
		m := newSegMeta(int64(s * 30))
		var b []byte
		for i := 0; i < 10; i++ {
			off := s*30 + i*3
			recs := []Record{{Value: val(off)}, {Value: val(off + 1)}, {Value: val(off + 2)}}
			pos := int64(len(b))
			b = encodeBatch(b, batchSpec{baseOffset: int64(off), leaderEpoch: 1, logAppendTime: true, appendTime: int64(1000 + off), lastOffsetDelta: -1}, recs)
			h, _ := parseBatchHeader(b[pos:])
			m.observe(h, pos, fuzzIndexInterval)
		}
		logs[s] = b
		idx[s], tidx[s] = encodeIndexes(&m)
	}
	return
}

const fuzzIndexInterval = 150

// FuzzIndexRecovery opens a log whose index files and last-segment tail are
// arbitrary bytes. Open must never panic: it either rebuilds the indexes and
// cuts the tail, keeping every valid record, or reports corruption.
func FuzzIndexRecovery(f *testing.F) {
	logs, idx, tidx := fuzzSegments()
	f.Add(idx[0], tidx[1], []byte{})
	f.Add([]byte{}, []byte{}, []byte{0, 0, 0})
	f.Add(idx[0][3:], tidx[1], []byte{0})
	f.Add(idx[1], tidx[0], logs[1][:60])
	f.Add(append(bytes.Clone(idx[0]), 1, 2, 3), tidx[1][:5], bytes.Repeat([]byte{0xff}, 100))
	f.Fuzz(func(t *testing.T, idx0, tidx1, tail []byte) {
		dir := t.TempDir()
		name := func(s int, suffix string) string {
			return filepath.Join(dir, segmentName(int64(s*30))+suffix)
		}
		must := func(err error) {
			if err != nil {
				t.Fatal(err)
			}
		}
		must(os.WriteFile(name(0, logSuffix), logs[0], 0o644))
		must(os.WriteFile(name(1, logSuffix), append(bytes.Clone(logs[1]), tail...), 0o644))
		must(os.WriteFile(name(0, indexSuffix), idx0, 0o644))
		must(os.WriteFile(name(0, timeIndexSuffix), tidx[0], 0o644))
		must(os.WriteFile(name(1, indexSuffix), idx[1], 0o644))
		must(os.WriteFile(name(1, timeIndexSuffix), tidx1, 0o644))
		if len(tail)%2 == 1 {
			// As after a clean shutdown: the older segment is only walked.
			must(os.WriteFile(filepath.Join(dir, cleanShutdownFile), nil, 0o644))
			must(os.WriteFile(filepath.Join(dir, epochFileName), encodeEpochFile(epochHistory{{1, 0}}), 0o644))
		}
		l, err := Open(dir, Options{IndexIntervalBytes: fuzzIndexInterval, Flush: FlushOS})
		if err != nil {
			// Only a tail followed by a valid batch may fail Open.
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open: %v", err)
			}
			return
		}
		defer l.Close()
		for from := int64(0); from < 60; from += 7 {
			recs, err := l.Read(from, 1)
			if err != nil || len(recs) != 1 || recs[0].Offset != from || !bytes.Equal(recs[0].Value, val(int(from))) {
				t.Fatalf("Read(%d) = %v, %v", from, recs, err)
			}
		}
		if got, err := l.OffsetForTime(time.UnixMilli(1000 + 31)); err != nil || got != 33 {
			t.Fatalf("OffsetForTime = %d, %v", got, err)
		}
		if l.EndOffset() < 60 {
			t.Fatalf("valid records lost: end %d", l.EndOffset())
		}
		for s, want := range idx {
			if got, _ := os.ReadFile(name(s, indexSuffix)); l.EndOffset() == 60 && !bytes.Equal(got, want) {
				t.Fatalf("index %d not rebuilt", s)
			}
		}
		if got, _ := os.ReadFile(name(1, timeIndexSuffix)); l.EndOffset() == 60 && !bytes.Equal(got, tidx[1]) {
			t.Fatal("time index not rebuilt")
		}
	})
}

// FuzzScanSegment drives the recovery scan (what Open runs on every segment
// to rebuild its indexes and find a torn tail) over arbitrary bytes, in
// memory. The scan must never panic, its index must point at real batches,
// and cutting the file where it stopped must give a clean segment with the
// same index: recovery is idempotent.
func FuzzScanSegment(f *testing.F) {
	logs, _, _ := fuzzSegments()
	f.Add(logs[0], uint16(0))
	f.Add(logs[1], uint16(100))
	f.Add(append(bytes.Clone(logs[0]), logs[0][:70]...), uint16(1))
	f.Add([]byte{}, uint16(7))
	f.Fuzz(func(t *testing.T, data []byte, interval uint16) {
		base := int64(0)
		if len(data) >= 8 {
			base = int64(binary.BigEndian.Uint64(data)) & (1<<40 - 1)
		}
		iv := int(interval) + 1
		m, fault, err := scanSegment(bytes.NewReader(data), int64(len(data)), base, iv)
		if err != nil {
			t.Fatalf("scan of in-memory bytes failed with I/O error: %v", err)
		}
		if m.size > int64(len(data)) || (fault == nil && m.size != int64(len(data))) {
			t.Fatalf("scan size %d of %d bytes, fault %+v", m.size, len(data), fault)
		}
		if fault != nil && fault.pos != m.size {
			t.Fatalf("fault at %d but valid prefix ends at %d", fault.pos, m.size)
		}
		prevPos, prevTs := int64(0), int64(noTimestamp)
		for i, e := range m.index {
			if e.pos <= prevPos || e.pos >= m.size || e.maxTsBefore < prevTs {
				t.Fatalf("index entry %d %+v out of order", i, e)
			}
			h, err := parseBatchHeader(data[e.pos:])
			if err != nil || h.BaseOffset != e.offset {
				t.Fatalf("index entry %d %+v does not point at its batch: %v", i, e, err)
			}
			prevPos, prevTs = e.pos, e.maxTsBefore
		}
		m2, fault2, err := scanSegment(bytes.NewReader(data[:m.size]), m.size, base, iv)
		if err != nil || fault2 != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("rescan of the recovered prefix differs: %+v %v", fault2, err)
		}
		// The header-only walk used after a clean shutdown agrees with the
		// full scan wherever the full scan found nothing wrong.
		m3, fault3, err := walkHeaders(bytes.NewReader(data), int64(len(data)), base, iv)
		if err != nil || m3.size < m.size || (fault == nil && (fault3 != nil || !reflect.DeepEqual(m, m3))) {
			t.Fatalf("walkHeaders disagrees: size %d vs %d, fault %+v, err %v", m3.size, m.size, fault3, err)
		}
		if fault != nil {
			if at, found, err := findValidBatchAfter(bytes.NewReader(data), int64(len(data)), fault.pos, m.lastOffset); err != nil || (found && at <= fault.pos) {
				t.Fatalf("findValidBatchAfter = %d, %v, %v", at, found, err)
			}
		}
	})
}

// FuzzParseEpochCheckpoint: the checkpoint parser never panics, accepts only
// ordered histories, and what it accepts round-trips.
func FuzzParseEpochCheckpoint(f *testing.F) {
	f.Add(encodeEpochFile(epochHistory{{1, 0}, {4, 30}, {9, 1 << 40}}))
	f.Add([]byte("0\n0\n"))
	f.Add([]byte("0\n2\n1 5\n1 6\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := parseEpochFile(data)
		if err != nil {
			return
		}
		for i := 1; i < len(h); i++ {
			if h[i].Epoch <= h[i-1].Epoch || h[i].StartOffset < h[i-1].StartOffset {
				t.Fatalf("accepted unordered history %v", h)
			}
		}
		h2, err := parseEpochFile(encodeEpochFile(h))
		if err != nil || !reflect.DeepEqual(append(epochHistory{}, h...), append(epochHistory{}, h2...)) {
			t.Fatalf("round trip: %v vs %v (%v)", h, h2, err)
		}
	})
}
