package segment

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
	"time"
)

func sampleRecords() []Record {
	return []Record{
		{Key: []byte("k1"), Value: []byte("v1"), Timestamp: time.UnixMilli(1000)},
		{Key: nil, Value: []byte{}, Timestamp: time.UnixMilli(999)},
		{Key: []byte{}, Value: nil, Timestamp: time.UnixMilli(2000),
			Headers: []Header{{Key: "a", Value: []byte("x")}, {Key: "", Value: nil}, {Key: "b", Value: []byte{}}}},
	}
}

func TestBatchRoundTripKeepsNilEmptyAndHeaders(t *testing.T) {
	for _, logAppend := range []bool{false, true} {
		b := encodeBatch(nil, batchSpec{baseOffset: 42, leaderEpoch: 7, logAppendTime: logAppend, appendTime: 5000, lastOffsetDelta: -1}, sampleRecords())
		recs, h, err := decodeBatch(nil, b)
		if err != nil {
			t.Fatalf("logAppend=%v: decode: %v", logAppend, err)
		}
		if h.BaseOffset != 42 || h.LeaderEpoch != 7 || h.RecordCount != 3 || h.LastOffsetDelta != 2 {
			t.Fatalf("header = %+v", h)
		}
		want := sampleRecords()
		for i := range want {
			want[i].Offset = 42 + int64(i)
			want[i].LeaderEpoch = 7
			if logAppend {
				want[i].Timestamp = time.UnixMilli(5000)
			}
			got := recs[i]
			if got.Offset != want[i].Offset || !got.Timestamp.Equal(want[i].Timestamp) || got.LeaderEpoch != 7 {
				t.Fatalf("record %d = %+v, want %+v", i, got, want[i])
			}
			if (got.Key == nil) != (want[i].Key == nil) || !bytes.Equal(got.Key, want[i].Key) {
				t.Fatalf("record %d key = %#v, want %#v", i, got.Key, want[i].Key)
			}
			if (got.Value == nil) != (want[i].Value == nil) || !bytes.Equal(got.Value, want[i].Value) {
				t.Fatalf("record %d value = %#v, want %#v", i, got.Value, want[i].Value)
			}
			if len(got.Headers) != len(want[i].Headers) {
				t.Fatalf("record %d headers = %#v", i, got.Headers)
			}
			for j := range got.Headers {
				g, w := got.Headers[j], want[i].Headers[j]
				if g.Key != w.Key || (g.Value == nil) != (w.Value == nil) || !bytes.Equal(g.Value, w.Value) {
					t.Fatalf("record %d header %d = %#v, want %#v", i, j, g, w)
				}
			}
		}
		if !logAppend && h.FirstTimestamp != 1000 || !logAppend && h.MaxTimestamp != 2000 {
			t.Fatalf("timestamps first=%d max=%d", h.FirstTimestamp, h.MaxTimestamp)
		}
	}
}

func TestBatchBaseOffsetAndEpochAreOutsideCRC(t *testing.T) {
	b := encodeBatch(nil, batchSpec{lastOffsetDelta: -1}, sampleRecords())
	setBaseAndEpoch(b, 1000, 3)
	recs, _, err := decodeBatch(nil, b)
	if err != nil {
		t.Fatal(err)
	}
	if recs[0].Offset != 1000 || recs[2].Offset != 1002 || recs[0].LeaderEpoch != 3 {
		t.Fatalf("got %+v", recs)
	}
}

func TestDecodeBatchRejectsEveryFlippedByte(t *testing.T) {
	b := encodeBatch(nil, batchSpec{baseOffset: 5, lastOffsetDelta: -1}, sampleRecords())
	for i := offMagic; i < len(b); i++ {
		c := bytes.Clone(b)
		c[i] ^= 0x40
		if _, _, err := decodeBatch(nil, c); err == nil {
			t.Fatalf("flipping byte %d went unnoticed", i)
		}
	}
}

func TestDecodeBatchRejectsLengthMismatch(t *testing.T) {
	b := encodeBatch(nil, batchSpec{lastOffsetDelta: -1}, sampleRecords())
	if _, _, err := decodeBatch(nil, b[:len(b)-1]); err == nil {
		t.Fatal("short batch accepted")
	}
	if _, _, err := decodeBatch(nil, append(bytes.Clone(b), 0)); err == nil {
		t.Fatal("long batch accepted")
	}
}

func TestDecodeBatchRejectsCRCValidGarbageRecords(t *testing.T) {
	// A record section that checksums fine but lies about lengths must be
	// refused by the structure checks, not trusted because of the CRC.
	b := encodeBatch(nil, batchSpec{lastOffsetDelta: -1}, []Record{{Key: []byte("k"), Value: []byte("v")}})
	body := b[batchHeaderSize:]
	body[0] = byte(binary.AppendVarint(nil, 100)[0]) // record length beyond the batch
	binary.BigEndian.PutUint32(b[offCRC:], batchCRC(b))
	if _, _, err := decodeBatch(nil, b); err == nil {
		t.Fatal("record length past batch end accepted")
	}
}

func FuzzDecodeBatch(f *testing.F) {
	f.Add(encodeBatch(nil, batchSpec{baseOffset: 0, lastOffsetDelta: -1}, sampleRecords()))
	f.Add(encodeBatch(nil, batchSpec{baseOffset: 1 << 40, leaderEpoch: 9, logAppendTime: true, appendTime: 77, lastOffsetDelta: -1}, sampleRecords()[:1]))
	f.Add(encodeBatch(nil, batchSpec{baseOffset: 10, lastOffsetDelta: 20}, []Record{{Offset: 12, Key: []byte("a")}, {Offset: 30, Value: []byte("b")}}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		// Half the inputs get a correct CRC so that the fuzzer can reach the
		// record parser instead of stopping at the checksum.
		if len(data) >= batchHeaderSize && data[offMagic+1]&1 == 1 {
			binary.BigEndian.PutUint32(data[offCRC:], batchCRC(data))
		}
		recs, h, err := decodeBatch(nil, data)
		if err != nil {
			if len(recs) != 0 {
				t.Fatalf("error %v with %d records", err, len(recs))
			}
			return
		}
		if int64(len(recs)) != int64(h.RecordCount) {
			t.Fatalf("%d records, header says %d", len(recs), h.RecordCount)
		}
		for i, r := range recs {
			if r.Offset < h.BaseOffset || r.Offset > h.lastOffset() || (i > 0 && r.Offset <= recs[i-1].Offset) {
				t.Fatalf("record %d offset %d outside [%d,%d] or out of order", i, r.Offset, h.BaseOffset, h.lastOffset())
			}
		}
		if err := validateRecords(h, data[batchHeaderSize:]); err != nil {
			t.Fatalf("decoded but validateRecords says %v", err)
		}
		// What decodes re-encodes to a batch that decodes to the same records.
		re := encodeBatch(nil, batchSpec{
			baseOffset: h.BaseOffset, leaderEpoch: h.LeaderEpoch,
			logAppendTime: h.Attributes&attrLogAppendTime != 0, appendTime: h.MaxTimestamp,
			lastOffsetDelta: h.LastOffsetDelta,
		}, recs)
		recs2, _, err := decodeBatch(nil, re)
		if err != nil {
			t.Fatalf("re-encoded batch does not decode: %v", err)
		}
		if len(recs2) != len(recs) {
			t.Fatalf("re-encode changed record count")
		}
		for i := range recs {
			a, b := recs[i], recs2[i]
			if a.Offset != b.Offset || !bytes.Equal(a.Key, b.Key) || (a.Key == nil) != (b.Key == nil) ||
				!bytes.Equal(a.Value, b.Value) || (a.Value == nil) != (b.Value == nil) || !reflect.DeepEqual(normHeaders(a.Headers), normHeaders(b.Headers)) {
				t.Fatalf("record %d changed: %+v vs %+v", i, a, b)
			}
			if h.Attributes&attrLogAppendTime == 0 && !a.Timestamp.IsZero() && !a.Timestamp.Equal(b.Timestamp) {
				t.Fatalf("record %d timestamp changed", i)
			}
		}
	})
}

func normHeaders(h []Header) []Header {
	if len(h) == 0 {
		return nil
	}
	return h
}

func TestParseBatchHeaderErrors(t *testing.T) {
	if _, err := parseBatchHeader(make([]byte, 10)); !errors.Is(err, errShort) {
		t.Fatalf("short header: %v", err)
	}
	b := encodeBatch(nil, batchSpec{lastOffsetDelta: -1}, sampleRecords())
	binary.BigEndian.PutUint32(b[offLength:], uint32(maxBatchLimit))
	if _, err := parseBatchHeader(b); err == nil {
		t.Fatal("huge length accepted")
	}
}
