package segment

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"time"
)

// Header is an application header carried by a record.
type Header struct {
	Key   string
	Value []byte
}

// Record is one entry of the log.
type Record struct {
	// Offset is assigned by Append; it is ignored on input.
	Offset int64
	// Timestamp is the log-append time (assigned by Append) by default, or the
	// producer's time when Options.TimestampType is "create" (zero = now).
	// Stored with millisecond precision.
	Timestamp time.Time
	// Key is nil when the record has no key.
	Key []byte
	// Value is nil for a tombstone (meaningful in compacted logs).
	Value []byte
	// Headers are kept in order.
	Headers []Header
	// LeaderEpoch is the epoch of the leader that appended the record's batch
	// (stored once per batch). Set by Append from its epoch argument.
	LeaderEpoch int32
}

// On-disk batch layout (all integers big-endian). See doc.go.
const (
	offBaseOffset      = 0  // int64
	offLength          = 8  // int32: bytes that follow this field
	offLeaderEpoch     = 12 // int32
	offMagic           = 16 // int8
	offCRC             = 17 // uint32 CRC32C of bytes [offAttributes, end)
	offAttributes      = 21 // int16
	offLastOffsetDelta = 23 // int32
	offFirstTimestamp  = 27 // int64 ms since epoch
	offMaxTimestamp    = 35 // int64 ms since epoch
	offRecordCount     = 43 // int32
	batchHeaderSize    = 47

	// batchPrefixSize is what must be read to know a batch's total size.
	batchPrefixSize = offLength + 4

	magicV1 = 1

	// attrLogAppendTime marks a batch whose timestamps are log-append times.
	attrLogAppendTime = 1 << 3
	// attrKnown is the set of attribute bits this version understands.
	attrKnown = attrLogAppendTime

	// maxBatchLimit is the hard upper bound on one batch's size, whatever the
	// options say, so that a corrupt length can never make a reader allocate
	// more than this.
	maxBatchLimit = 64 << 20

	// minRecordSize is the smallest encoded record: length, attributes,
	// timestamp delta, offset delta, key length, value length, header count.
	minRecordSize = 7
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// batchHeader is the decoded fixed part of a batch.
type batchHeader struct {
	BaseOffset      int64
	Length          int32
	LeaderEpoch     int32
	Magic           int8
	CRC             uint32
	Attributes      int16
	LastOffsetDelta int32
	FirstTimestamp  int64
	MaxTimestamp    int64
	RecordCount     int32
}

// size is the batch's total size in bytes.
func (h batchHeader) size() int64 { return int64(h.Length) + batchPrefixSize }

// lastOffset is the offset of the batch's last record (as written; after
// compaction the last record may be gone but the batch still spans it).
func (h batchHeader) lastOffset() int64 { return h.BaseOffset + int64(h.LastOffsetDelta) }

// errShort means the buffer ends before the structure it should hold.
var errShort = errors.New("truncated")

// parseBatchHeader decodes and sanity-checks the fixed header in b, which
// must hold at least batchHeaderSize bytes. It does not check the CRC.
func parseBatchHeader(b []byte) (batchHeader, error) {
	if len(b) < batchHeaderSize {
		return batchHeader{}, errShort
	}
	h := batchHeader{
		BaseOffset:      int64(binary.BigEndian.Uint64(b[offBaseOffset:])),
		Length:          int32(binary.BigEndian.Uint32(b[offLength:])),
		LeaderEpoch:     int32(binary.BigEndian.Uint32(b[offLeaderEpoch:])),
		Magic:           int8(b[offMagic]),
		CRC:             binary.BigEndian.Uint32(b[offCRC:]),
		Attributes:      int16(binary.BigEndian.Uint16(b[offAttributes:])),
		LastOffsetDelta: int32(binary.BigEndian.Uint32(b[offLastOffsetDelta:])),
		FirstTimestamp:  int64(binary.BigEndian.Uint64(b[offFirstTimestamp:])),
		MaxTimestamp:    int64(binary.BigEndian.Uint64(b[offMaxTimestamp:])),
		RecordCount:     int32(binary.BigEndian.Uint32(b[offRecordCount:])),
	}
	switch {
	case h.Magic != magicV1:
		return h, fmt.Errorf("unknown magic %d", h.Magic)
	case h.Length < batchHeaderSize-batchPrefixSize || int64(h.Length)+batchPrefixSize > maxBatchLimit:
		return h, fmt.Errorf("batch length %d out of range", h.Length)
	case h.BaseOffset < 0:
		return h, fmt.Errorf("negative base offset %d", h.BaseOffset)
	case h.LastOffsetDelta < 0 || h.BaseOffset > math.MaxInt64-int64(h.LastOffsetDelta):
		return h, fmt.Errorf("last offset delta %d out of range", h.LastOffsetDelta)
	case h.RecordCount < 0 || int64(h.RecordCount) > int64(h.LastOffsetDelta)+1:
		return h, fmt.Errorf("record count %d out of range for last offset delta %d", h.RecordCount, h.LastOffsetDelta)
	case int64(h.RecordCount)*minRecordSize > int64(h.Length)-(batchHeaderSize-batchPrefixSize):
		return h, fmt.Errorf("record count %d does not fit in %d bytes", h.RecordCount, h.Length)
	case h.Attributes&^attrKnown != 0:
		return h, fmt.Errorf("unknown attributes %#x", h.Attributes)
	case h.RecordCount > 0 && h.MaxTimestamp < h.FirstTimestamp:
		return h, fmt.Errorf("max timestamp %d before first timestamp %d", h.MaxTimestamp, h.FirstTimestamp)
	}
	return h, nil
}

// batchCRC computes the checksum stored in a batch.
func batchCRC(b []byte) uint32 { return crc32.Checksum(b[offAttributes:], castagnoli) }

// checkBatch verifies that b holds exactly one batch: header, length and CRC.
func checkBatch(b []byte) (batchHeader, error) {
	h, err := parseBatchHeader(b)
	if err != nil {
		return h, err
	}
	if int64(len(b)) != h.size() {
		return h, fmt.Errorf("batch length %d does not match %d bytes", h.size(), len(b))
	}
	if c := batchCRC(b); c != h.CRC {
		return h, fmt.Errorf("crc mismatch: stored %#08x, computed %#08x", h.CRC, c)
	}
	return h, nil
}

// decodeBatch verifies b (exactly one batch) and appends its records to dst.
// The records' Key, Value and header values alias b; callers hand out b only
// if they do not reuse it. Every length is bounds-checked: any input either
// decodes or returns an error, never panics.
func decodeBatch(dst []Record, b []byte) ([]Record, batchHeader, error) {
	return decodeBatchRange(dst, b, &recordSink{from: math.MinInt64, budget: math.MaxInt})
}

// decodeBatchRange is decodeBatch keeping only the records sink accepts.
func decodeBatchRange(dst []Record, b []byte, sink *recordSink) ([]Record, batchHeader, error) {
	h, err := checkBatch(b)
	if err != nil {
		return dst, h, err
	}
	n0 := len(dst)
	dst, err = walkRecords(dst, h, b[batchHeaderSize:], sink)
	if err != nil {
		return dst[:n0], h, err
	}
	return dst, h, nil
}

// recordSink selects which decoded records are kept: those at or after
// from, while their sizes (key + value + header keys and values) fit in
// budget. When force is set
// the first record is kept whatever its size (Read returns at least one).
type recordSink struct {
	from   int64
	budget int
	force  bool
	full   bool // set when a record did not fit: stop reading
}

// validateRecords checks the record section of a batch without allocating.
func validateRecords(h batchHeader, body []byte) error {
	_, err := walkRecords(nil, h, body, nil)
	return err
}

// walkRecords parses the record section body of a batch with header h and
// appends the records sink accepts to dst. With a nil sink it only checks
// the structure. Once the sink is full the remaining records are not
// parsed (the batch CRC has already been checked).
func walkRecords(dst []Record, h batchHeader, body []byte, sink *recordSink) ([]Record, error) {
	r := reader{b: body}
	lastDelta := int64(-1)
	for i := int32(0); i < h.RecordCount; i++ {
		n, err := r.varint()
		if err != nil {
			return dst, fmt.Errorf("record %d length: %w", i, err)
		}
		if n < minRecordSize-1 || n > int64(len(r.b)-r.p) {
			return dst, fmt.Errorf("record %d length %d out of range", i, n)
		}
		rr := reader{b: r.b[r.p : r.p+int(n)]}
		r.p += int(n)
		attrs, err := rr.byte()
		if err != nil || attrs != 0 {
			return dst, fmt.Errorf("record %d: bad attributes", i)
		}
		tsDelta, err := rr.varint()
		if err != nil {
			return dst, fmt.Errorf("record %d timestamp: %w", i, err)
		}
		offDelta, err := rr.varint()
		if err != nil {
			return dst, fmt.Errorf("record %d offset delta: %w", i, err)
		}
		if offDelta <= lastDelta || offDelta > int64(h.LastOffsetDelta) {
			return dst, fmt.Errorf("record %d offset delta %d out of order", i, offDelta)
		}
		lastDelta = offDelta
		key, err := rr.bytes()
		if err != nil {
			return dst, fmt.Errorf("record %d key: %w", i, err)
		}
		val, err := rr.bytes()
		if err != nil {
			return dst, fmt.Errorf("record %d value: %w", i, err)
		}
		hc, err := rr.varint()
		if err != nil {
			return dst, fmt.Errorf("record %d header count: %w", i, err)
		}
		if hc < 0 || hc > int64(len(rr.b)-rr.p)/2 {
			return dst, fmt.Errorf("record %d header count %d out of range", i, hc)
		}
		keep := sink != nil && h.BaseOffset+offDelta >= sink.from
		size := len(key) + len(val)
		var hdrs []Header
		if keep && hc > 0 {
			hdrs = make([]Header, 0, hc)
		}
		for j := int64(0); j < hc; j++ {
			hk, err := rr.bytes()
			if err != nil || hk == nil {
				return dst, fmt.Errorf("record %d header %d key: bad length", i, j)
			}
			hv, err := rr.bytes()
			if err != nil {
				return dst, fmt.Errorf("record %d header %d value: %w", i, j, err)
			}
			size += len(hk) + len(hv)
			if keep {
				hdrs = append(hdrs, Header{Key: string(hk), Value: hv})
			}
		}
		if rr.p != len(rr.b) {
			return dst, fmt.Errorf("record %d has %d trailing bytes", i, len(rr.b)-rr.p)
		}
		if !keep {
			continue
		}
		if !sink.force && size > sink.budget {
			sink.full = true
			return dst, nil
		}
		sink.force = false
		sink.budget -= size
		ts := h.FirstTimestamp + tsDelta
		if h.Attributes&attrLogAppendTime != 0 {
			ts = h.MaxTimestamp
		}
		dst = append(dst, Record{
			Offset:      h.BaseOffset + offDelta,
			Timestamp:   time.UnixMilli(ts),
			Key:         key,
			Value:       val,
			Headers:     hdrs,
			LeaderEpoch: h.LeaderEpoch,
		})
	}
	if r.p != len(r.b) {
		return dst, fmt.Errorf("%d trailing bytes after %d records", len(r.b)-r.p, h.RecordCount)
	}
	return dst, nil
}

// reader is a bounds-checked cursor over a byte slice.
type reader struct {
	b []byte
	p int
}

func (r *reader) byte() (byte, error) {
	if r.p >= len(r.b) {
		return 0, errShort
	}
	c := r.b[r.p]
	r.p++
	return c, nil
}

func (r *reader) varint() (int64, error) {
	v, n := binary.Varint(r.b[r.p:])
	if n <= 0 {
		if n == 0 {
			return 0, errShort
		}
		return 0, errors.New("varint overflow")
	}
	r.p += n
	return v, nil
}

// bytes reads a varint length (-1 = nil) and that many bytes.
func (r *reader) bytes() ([]byte, error) {
	n, err := r.varint()
	if err != nil {
		return nil, err
	}
	if n == -1 {
		return nil, nil
	}
	if n < -1 || n > int64(len(r.b)-r.p) {
		return nil, fmt.Errorf("length %d out of range", n)
	}
	s := r.b[r.p : r.p+int(n) : r.p+int(n)]
	r.p += int(n)
	return s, nil
}

// batchSpec describes a batch to encode.
type batchSpec struct {
	baseOffset  int64
	leaderEpoch int32
	// logAppendTime: all records carry appendTime (ms); otherwise each
	// record's own Timestamp (ms) is written.
	logAppendTime bool
	appendTime    int64
	// lastOffsetDelta, when >= 0, overrides the default (last record's
	// delta); compaction uses it to keep a batch's offset span.
	lastOffsetDelta int32
}

// recordTime is the timestamp (ms) written for rec under create time: its
// own, or appendTime when it has none.
func (s *batchSpec) recordTime(rec *Record) int64 {
	if rec.Timestamp.IsZero() {
		return s.appendTime
	}
	return rec.Timestamp.UnixMilli()
}

// encodeBatch appends one batch holding recs to dst. Records' offsets are
// taken from rec.Offset relative to spec.baseOffset when spec.lastOffsetDelta
// >= 0 (rewrite), else assigned consecutively from spec.baseOffset.
func encodeBatch(dst []byte, spec batchSpec, recs []Record) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, batchHeaderSize)...)
	rewrite := spec.lastOffsetDelta >= 0
	var firstTs, maxTs int64
	if spec.logAppendTime {
		firstTs, maxTs = spec.appendTime, spec.appendTime
	} else if len(recs) > 0 {
		firstTs = spec.recordTime(&recs[0])
		maxTs = firstTs
		for i := range recs {
			if t := spec.recordTime(&recs[i]); t > maxTs {
				maxTs = t
			}
		}
	}
	var lastDelta int64
	var tmp [3 * binary.MaxVarintLen64]byte
	for i := range recs {
		rec := &recs[i]
		delta := int64(i)
		if rewrite {
			delta = rec.Offset - spec.baseOffset
		}
		lastDelta = delta
		var tsDelta int64
		if !spec.logAppendTime {
			tsDelta = spec.recordTime(rec) - firstTs
		}
		// Body size first, so the length prefix can be written in place.
		body := 1 + varintLen(tsDelta) + varintLen(delta) + bytesLen(rec.Key) + bytesLen(rec.Value) + varintLen(int64(len(rec.Headers)))
		for _, hd := range rec.Headers {
			body += varintLen(int64(len(hd.Key))) + len(hd.Key) + bytesLen(hd.Value)
		}
		dst = binary.AppendVarint(dst, int64(body))
		dst = append(dst, 0)
		t := binary.AppendVarint(tmp[:0], tsDelta)
		t = binary.AppendVarint(t, delta)
		dst = append(dst, t...)
		dst = appendBytes(dst, rec.Key)
		dst = appendBytes(dst, rec.Value)
		dst = binary.AppendVarint(dst, int64(len(rec.Headers)))
		for _, hd := range rec.Headers {
			dst = binary.AppendVarint(dst, int64(len(hd.Key)))
			dst = append(dst, hd.Key...)
			dst = appendBytes(dst, hd.Value)
		}
	}
	if rewrite {
		lastDelta = int64(spec.lastOffsetDelta)
	}
	b := dst[start:]
	binary.BigEndian.PutUint64(b[offBaseOffset:], uint64(spec.baseOffset))
	binary.BigEndian.PutUint32(b[offLength:], uint32(len(b)-batchPrefixSize))
	binary.BigEndian.PutUint32(b[offLeaderEpoch:], uint32(spec.leaderEpoch))
	b[offMagic] = magicV1
	var attrs uint16
	if spec.logAppendTime {
		attrs |= attrLogAppendTime
	}
	binary.BigEndian.PutUint16(b[offAttributes:], attrs)
	binary.BigEndian.PutUint32(b[offLastOffsetDelta:], uint32(lastDelta))
	binary.BigEndian.PutUint64(b[offFirstTimestamp:], uint64(firstTs))
	binary.BigEndian.PutUint64(b[offMaxTimestamp:], uint64(maxTs))
	binary.BigEndian.PutUint32(b[offRecordCount:], uint32(len(recs)))
	binary.BigEndian.PutUint32(b[offCRC:], batchCRC(b))
	return dst
}

// setBaseAndEpoch patches the fields outside the CRC: a batch can be
// encoded before its offset is known and stamped under the log's lock.
func setBaseAndEpoch(b []byte, base int64, epoch int32) {
	binary.BigEndian.PutUint64(b[offBaseOffset:], uint64(base))
	binary.BigEndian.PutUint32(b[offLeaderEpoch:], uint32(epoch))
}

func appendBytes(dst, v []byte) []byte {
	if v == nil {
		return binary.AppendVarint(dst, -1)
	}
	dst = binary.AppendVarint(dst, int64(len(v)))
	return append(dst, v...)
}

func bytesLen(v []byte) int {
	if v == nil {
		return 1
	}
	return varintLen(int64(len(v))) + len(v)
}

func varintLen(v int64) int {
	u := uint64(v<<1) ^ uint64(v>>63)
	n := 1
	for u >= 0x80 {
		u >>= 7
		n++
	}
	return n
}
