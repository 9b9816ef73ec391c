package segment

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// File name suffixes inside a partition directory.
const (
	logSuffix       = ".log"
	indexSuffix     = ".index"
	timeIndexSuffix = ".timeindex"
	cleanedSuffix   = ".cleaned"
	tmpSuffix       = ".tmp"

	offsetIndexEntrySize = 8  // relative offset uint32, position uint32
	timeIndexEntrySize   = 12 // timestamp int64, relative offset uint32

	// noTimestamp marks "no record yet" for max timestamps.
	noTimestamp = math.MinInt64
)

// segmentName is the zero-padded base offset used for a segment's files.
func segmentName(base int64) string { return fmt.Sprintf("%020d", base) }

// parseSegmentName returns the base offset of a "<20 digits>.log" name.
func parseSegmentName(name string) (int64, bool) {
	stem, ok := strings.CutSuffix(name, logSuffix)
	if !ok || len(stem) != 20 {
		return 0, false
	}
	v, err := strconv.ParseInt(stem, 10, 64)
	if err != nil || v < 0 {
		return 0, false
	}
	return v, true
}

// indexEntry is one sparse index point: the batch starting at pos has base
// offset offset, and every batch of the segment before pos has timestamps
// at most maxTsBefore.
type indexEntry struct {
	offset      int64
	pos         int64
	maxTsBefore int64
}

// segMeta is what the log knows about one segment's contents. It is built
// by scanning the file on Open and kept up to date by Append.
type segMeta struct {
	base       int64
	size       int64 // bytes of valid batches
	lastOffset int64 // last offset spanned by a batch; base-1 when empty
	firstTs    int64 // first batch's first timestamp (ms); noTimestamp when empty
	maxTs      int64 // largest timestamp (ms); noTimestamp when empty
	batches    int
	lastEpoch  int32 // epoch of the last batch; -1 when empty
	index      []indexEntry
	sinceIndex int64 // bytes appended since the last index entry
	// epochStarts lists (epoch, offset) at every increase of the batch epoch
	// seen while scanning.
	epochStarts []EpochStart
}

func newSegMeta(base int64) segMeta {
	return segMeta{base: base, lastOffset: base - 1, firstTs: noTimestamp, maxTs: noTimestamp, lastEpoch: -1}
}

// observe accounts for a batch written at pos; it returns true when the
// batch got an index entry.
func (m *segMeta) observe(h batchHeader, pos int64, interval int) bool {
	indexed := false
	if pos > 0 && m.sinceIndex >= int64(interval) {
		m.index = append(m.index, indexEntry{offset: h.BaseOffset, pos: pos, maxTsBefore: m.maxTs})
		m.sinceIndex = 0
		indexed = true
	}
	m.sinceIndex += h.size()
	if h.RecordCount > 0 {
		if m.firstTs == noTimestamp {
			m.firstTs = h.FirstTimestamp
		}
		if h.MaxTimestamp > m.maxTs {
			m.maxTs = h.MaxTimestamp
		}
	}
	if h.LeaderEpoch > m.lastEpoch {
		m.epochStarts = append(m.epochStarts, EpochStart{Epoch: h.LeaderEpoch, StartOffset: h.BaseOffset})
	}
	m.lastEpoch = h.LeaderEpoch
	m.lastOffset = h.lastOffset()
	m.size = pos + h.size()
	m.batches++
	return indexed
}

// checkNext verifies that h can follow what m already holds.
func (m *segMeta) checkNext(h batchHeader) error {
	if h.BaseOffset <= m.lastOffset || h.BaseOffset < m.base {
		return fmt.Errorf("batch base offset %d not after previous offset %d", h.BaseOffset, m.lastOffset)
	}
	if h.lastOffset()-m.base > math.MaxUint32 {
		return fmt.Errorf("batch last offset %d too far from segment base %d", h.lastOffset(), m.base)
	}
	return nil
}

// scanFault describes the first bad batch found by scanSegment.
type scanFault struct {
	pos    int64
	reason string
	hdr    *batchHeader // decoded header when it was readable
}

// scanSegment reads every batch of a segment file from the start, checking
// lengths, CRCs, record structure and offset order, and rebuilds the
// segment's metadata and sparse index. It stops at the first bad batch and
// describes it; I/O errors are returned as err.
func scanSegment(r io.ReaderAt, fileSize, base int64, interval int) (segMeta, *scanFault, error) {
	m := newSegMeta(base)
	br := bufio.NewReaderSize(io.NewSectionReader(r, 0, fileSize), int(min(fileSize, 256<<10)))
	var buf []byte
	pos := int64(0)
	for pos < fileSize {
		if fileSize-pos < batchHeaderSize {
			return m, &scanFault{pos: pos, reason: fmt.Sprintf("%d trailing bytes, shorter than a batch header", fileSize-pos)}, nil
		}
		if cap(buf) < batchHeaderSize {
			buf = make([]byte, batchHeaderSize, min(fileSize, 64<<10))
		}
		buf = buf[:batchHeaderSize]
		if _, err := io.ReadFull(br, buf); err != nil {
			return m, nil, err
		}
		h, err := parseBatchHeader(buf)
		if err != nil {
			return m, &scanFault{pos: pos, reason: "bad batch header: " + err.Error()}, nil
		}
		if h.size() > fileSize-pos {
			return m, &scanFault{pos: pos, reason: fmt.Sprintf("batch of %d bytes runs past end of file (%d bytes left)", h.size(), fileSize-pos), hdr: &h}, nil
		}
		if int64(cap(buf)) < h.size() {
			nb := make([]byte, h.size())
			copy(nb, buf)
			buf = nb
		}
		buf = buf[:h.size()]
		if _, err := io.ReadFull(br, buf[batchHeaderSize:]); err != nil {
			return m, nil, err
		}
		if _, err := checkBatch(buf); err != nil {
			return m, &scanFault{pos: pos, reason: err.Error(), hdr: &h}, nil
		}
		if err := validateRecords(h, buf[batchHeaderSize:]); err != nil {
			return m, &scanFault{pos: pos, reason: err.Error(), hdr: &h}, nil
		}
		if err := m.checkNext(h); err != nil {
			return m, &scanFault{pos: pos, reason: err.Error(), hdr: &h}, nil
		}
		m.observe(h, pos, interval)
		pos += h.size()
	}
	return m, nil, nil
}

// walkHeaders rebuilds a segment's metadata and index from batch headers
// alone: it follows the length fields with one small read per batch and
// checks header sanity, lengths and offset order, but not CRCs or records.
// Open uses it for segments that a clean shutdown left complete, where
// reading every byte would only slow the restart down; Read still checks
// each batch's CRC.
func walkHeaders(r io.ReaderAt, fileSize, base int64, interval int) (segMeta, *scanFault, error) {
	m := newSegMeta(base)
	var hb [batchHeaderSize]byte
	for pos := int64(0); pos < fileSize; {
		if fileSize-pos < batchHeaderSize {
			return m, &scanFault{pos: pos, reason: fmt.Sprintf("%d trailing bytes, shorter than a batch header", fileSize-pos)}, nil
		}
		if _, err := r.ReadAt(hb[:], pos); err != nil {
			return m, nil, err
		}
		h, err := parseBatchHeader(hb[:])
		if err != nil {
			return m, &scanFault{pos: pos, reason: "bad batch header: " + err.Error()}, nil
		}
		if h.size() > fileSize-pos {
			return m, &scanFault{pos: pos, reason: fmt.Sprintf("batch of %d bytes runs past end of file (%d bytes left)", h.size(), fileSize-pos), hdr: &h}, nil
		}
		if err := m.checkNext(h); err != nil {
			return m, &scanFault{pos: pos, reason: err.Error(), hdr: &h}, nil
		}
		m.observe(h, pos, interval)
		pos += h.size()
	}
	return m, nil, nil
}

// findValidBatchAfter looks for any well-formed batch (header, length, CRC)
// starting after pos whose offsets could follow prevLast. Finding one means
// the damage at pos is not a torn tail: valid data follows it.
func findValidBatchAfter(r io.ReaderAt, fileSize, pos, prevLast int64) (int64, bool, error) {
	const chunk = 1 << 20
	buf := make([]byte, min(chunk+batchHeaderSize, max(fileSize-pos, 0)))
	for start := pos + 1; start+batchHeaderSize <= fileSize; start += chunk {
		n := min(int64(len(buf)), fileSize-start)
		if _, err := r.ReadAt(buf[:n], start); err != nil && !errors.Is(err, io.EOF) {
			return 0, false, err
		}
		for i := int64(0); i+batchHeaderSize <= n && i < chunk; i++ {
			if buf[i+offMagic] != magicV1 {
				continue
			}
			h, err := parseBatchHeader(buf[i : i+batchHeaderSize])
			if err != nil || h.BaseOffset <= prevLast || h.size() > fileSize-(start+i) {
				continue
			}
			b := make([]byte, h.size())
			if _, err := r.ReadAt(b, start+i); err != nil {
				return 0, false, err
			}
			if _, err := checkBatch(b); err == nil {
				return start + i, true, nil
			}
		}
	}
	return 0, false, nil
}

// encodeIndexes renders the offset index and time index files of m.
func encodeIndexes(m *segMeta) (offIdx, timeIdx []byte) {
	offIdx = make([]byte, 0, len(m.index)*offsetIndexEntrySize)
	timeIdx = make([]byte, 0, len(m.index)*timeIndexEntrySize)
	for _, e := range m.index {
		offIdx = appendOffsetEntry(offIdx, m.base, e)
		timeIdx = appendTimeEntry(timeIdx, m.base, e)
	}
	return offIdx, timeIdx
}

func appendOffsetEntry(b []byte, base int64, e indexEntry) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(e.offset-base))
	return binary.BigEndian.AppendUint32(b, uint32(e.pos))
}

func appendTimeEntry(b []byte, base int64, e indexEntry) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(e.maxTsBefore))
	return binary.BigEndian.AppendUint32(b, uint32(e.offset-base))
}

// syncIndexFile makes path hold exactly want, rewriting it atomically when
// it is missing or differs. It reports whether it rewrote the file.
func syncIndexFile(path string, want []byte) (bool, error) {
	have, err := os.ReadFile(path)
	if err == nil && bytes.Equal(have, want) {
		return false, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		// Unreadable: fall through and replace it.
		_ = err
	}
	return true, writeIndexFile(path, want)
}

// writeIndexFile replaces an index file via a temporary file and rename,
// without fsync: indexes are checked against the log and rebuilt on every
// Open, so a lost or torn index only costs a rebuild.
func writeIndexFile(path string, data []byte) error {
	tmp := path + tmpSuffix
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// writeFileAtomic writes data to path via a temporary file, fsync and
// rename, then fsyncs the directory, so that path holds either the old or
// the new contents after a crash.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + tmpSuffix
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// syncDir fsyncs a directory so that created, renamed and removed entries
// are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
