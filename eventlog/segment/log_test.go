package segment

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// testClock is an injectable clock that moves only when told to.
type testClock struct{ t time.Time }

func newTestClock() *testClock { return &testClock{t: time.UnixMilli(1_700_000_000_000)} }

func (c *testClock) Now() time.Time          { return c.t }
func (c *testClock) Advance(d time.Duration) { c.t = c.t.Add(d) }

func mustOpen(t testing.TB, dir string, o Options) *Log {
	t.Helper()
	l, err := Open(dir, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return l
}

func val(i int) []byte { return []byte(fmt.Sprintf("value-%06d", i)) }

func appendN(t testing.TB, l *Log, epoch int32, first, n int) int64 {
	t.Helper()
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = Record{Key: []byte(fmt.Sprintf("k%d", (first+i)%7)), Value: val(first + i)}
	}
	base, err := l.Append(context.Background(), epoch, recs)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return base
}

func readAll(t testing.TB, l *Log, from int64) []Record {
	t.Helper()
	var out []Record
	for {
		recs, err := l.Read(from, 1<<16)
		if err != nil {
			t.Fatalf("Read(%d): %v", from, err)
		}
		if len(recs) == 0 {
			return out
		}
		out = append(out, recs...)
		from = recs[len(recs)-1].Offset + 1
	}
}

func TestAppendAssignsConsecutiveOffsetsAndSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	clk := newTestClock()
	l := mustOpen(t, dir, Options{Now: clk.Now, SegmentBytes: 1024, IndexIntervalBytes: 100})
	for i := 0; i < 50; i++ {
		base := appendN(t, l, 1, i*3, 3)
		if base != int64(i*3) {
			t.Fatalf("batch %d base = %d, want %d", i, base, i*3)
		}
		clk.Advance(time.Millisecond)
	}
	if got := l.EndOffset(); got != 150 {
		t.Fatalf("EndOffset = %d, want 150", got)
	}
	check := func(l *Log) {
		recs := readAll(t, l, 0)
		if len(recs) != 150 {
			t.Fatalf("read %d records, want 150", len(recs))
		}
		for i, r := range recs {
			if r.Offset != int64(i) || string(r.Value) != string(val(i)) || r.LeaderEpoch != 1 {
				t.Fatalf("record %d = %+v", i, r)
			}
		}
	}
	check(l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, dir, Options{Now: clk.Now, SegmentBytes: 1024, IndexIntervalBytes: 100})
	defer l.Close()
	check(l)
	rep := l.Recovery()
	if len(rep.Truncated) != 0 || len(rep.RebuiltIndexes) != 0 {
		t.Fatalf("clean reopen reported repairs: %+v", rep)
	}
	if rep.Segments < 5 {
		t.Fatalf("expected several segments with SegmentBytes=1024, got %d", rep.Segments)
	}
	if _, err := l.Read(151, 100); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("Read past end: %v", err)
	}
}
