package segment

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func TestRetentionByAgeDeletesOldClosedSegmentsOnly(t *testing.T) {
	dir := t.TempDir()
	clk := newTestClock()
	opts := Options{SegmentBytes: 300, RetentionAge: time.Hour, Now: clk.Now, Flush: FlushOS}
	l := mustOpen(t, dir, opts)
	defer func() { l.Close() }()
	for i := 0; i < 40; i++ {
		appendN(t, l, 1, i*2, 2)
		clk.Advance(time.Minute)
	}
	before := len(segmentPaths(t, dir))
	// Now 40 min after the first write: nothing is an hour old.
	if res, err := l.EnforceRetention(clk.Now()); err != nil || len(res.DeletedSegments) != 0 {
		t.Fatalf("early retention = %+v, %v", res, err)
	}
	clk.Advance(30 * time.Minute) // first ~10 minutes of data now older than 1h
	res, err := l.EnforceRetention(clk.Now())
	if err != nil || len(res.DeletedSegments) == 0 {
		t.Fatalf("retention = %+v, %v", res, err)
	}
	start := l.StartOffset()
	if start != res.StartOffset || start == 0 {
		t.Fatalf("start offset %d, result %+v", start, res)
	}
	cutoff := clk.Now().Add(-time.Hour).UnixMilli()
	recs := readAll(t, l, start)
	if recs[0].Offset != start || recs[len(recs)-1].Offset != 79 {
		t.Fatalf("remaining records %d..%d", recs[0].Offset, recs[len(recs)-1].Offset)
	}
	for _, r := range recs[:1] {
		if r.Timestamp.UnixMilli() >= cutoff+int64(time.Minute/time.Millisecond)*5 {
			t.Fatalf("retention deleted too much: first kept record at %v", r.Timestamp)
		}
	}
	if _, err := l.Read(start-1, 100); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("Read below start: %v", err)
	}
	if got := len(segmentPaths(t, dir)); got != before-len(res.DeletedSegments) {
		t.Fatalf("%d segment files, want %d", got, before-len(res.DeletedSegments))
	}
	// Everything old: all but the active segment goes, the active stays.
	clk.Advance(24 * time.Hour)
	if _, err := l.EnforceRetention(clk.Now()); err != nil {
		t.Fatal(err)
	}
	if n := len(segmentPaths(t, dir)); n != 1 {
		t.Fatalf("%d segments left, want only the active one", n)
	}
	if l.EndOffset() != 80 || len(readAll(t, l, l.StartOffset())) == 0 {
		t.Fatal("active segment lost")
	}
	start = l.StartOffset()
	l.Close()
	l = mustOpen(t, dir, opts)
	if l.StartOffset() != start || l.EndOffset() != 80 {
		t.Fatalf("after reopen [%d, %d), want [%d, 80)", l.StartOffset(), l.EndOffset(), start)
	}
	if eh := l.EpochStartOffsets(); len(eh) != 1 || eh[0].StartOffset != start {
		t.Fatalf("epoch history not clamped to log start: %v", eh)
	}
}

func TestRetentionBySizeKeepsTotalUnderLimit(t *testing.T) {
	l := mustOpen(t, t.TempDir(), Options{SegmentBytes: 500, RetentionBytes: 2000, Flush: FlushOS})
	defer l.Close()
	for i := 0; i < 100; i++ {
		appendN(t, l, 1, i*2, 2)
	}
	res, err := l.EnforceRetention(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if size := l.Size(); size > 2000 || size+500 < 2000 {
		t.Fatalf("size after retention %d, want in (1500, 2000]", size)
	}
	if res.DeletedBytes == 0 {
		t.Fatalf("result %+v", res)
	}
	checkTail(t, l, 200)
}

func checkTail(t *testing.T, l *Log, end int64) {
	t.Helper()
	recs := readAll(t, l, l.StartOffset())
	for i, r := range recs {
		if r.Offset != l.StartOffset()+int64(i) || string(r.Value) != string(val(int(r.Offset))) {
			t.Fatalf("record %d: offset %d value %q", i, r.Offset, r.Value)
		}
	}
	if len(recs) == 0 || recs[len(recs)-1].Offset != end-1 {
		t.Fatalf("log does not end at %d", end)
	}
}

func TestRetentionZeroKeepsForever(t *testing.T) {
	l := mustOpen(t, t.TempDir(), Options{SegmentBytes: 300, Flush: FlushOS})
	defer l.Close()
	for i := 0; i < 50; i++ {
		appendN(t, l, 1, i, 1)
	}
	if res, err := l.EnforceRetention(time.Now().Add(1000 * time.Hour)); err != nil || len(res.DeletedSegments) != 0 {
		t.Fatalf("retention = %+v, %v", res, err)
	}
}

func TestTruncateMidBatchAndContinueWithNewEpoch(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{SegmentBytes: 600, IndexIntervalBytes: 100})
	defer func() { l.Close() }()
	for i := 0; i < 30; i++ {
		appendN(t, l, int32(1+i/10), i*5, 5) // epochs 1, 2, 3 start at 0, 50, 100
	}
	if got := l.EpochStartOffsets(); !slices.Equal(got, []EpochStart{{1, 0}, {2, 50}, {3, 100}}) {
		t.Fatalf("history %v", got)
	}
	if e, end := l.EndOffsetForEpoch(2); e != 2 || end != 100 {
		t.Fatalf("EndOffsetForEpoch(2) = %d, %d", e, end)
	}
	if err := l.Truncate(72); err != nil { // inside batch 70..74, epoch 2
		t.Fatal(err)
	}
	if l.EndOffset() != 72 {
		t.Fatalf("EndOffset = %d", l.EndOffset())
	}
	if got := l.EpochStartOffsets(); !slices.Equal(got, []EpochStart{{1, 0}, {2, 50}}) {
		t.Fatalf("history after truncate %v", got)
	}
	if e, end := l.EndOffsetForEpoch(5); e != 2 || end != 72 {
		t.Fatalf("EndOffsetForEpoch(5) = %d, %d", e, end)
	}
	checkTail(t, l, 72)
	if _, err := l.Append(context.Background(), 1, []Record{{Value: []byte("x")}}); !errors.Is(err, ErrStaleEpoch) {
		t.Fatalf("append with stale epoch: %v", err)
	}
	if base := appendN(t, l, 4, 72, 3); base != 72 {
		t.Fatalf("append after truncate base %d", base)
	}
	l.Close()
	l = mustOpen(t, dir, Options{SegmentBytes: 600, IndexIntervalBytes: 100})
	if rep := l.Recovery(); len(rep.Truncated) != 0 || len(rep.RebuiltIndexes) != 0 || rep.EpochHistory != "" {
		t.Fatalf("reopen after truncate repaired: %+v", rep)
	}
	checkTail(t, l, 75)
	recs := readAll(t, l, 70)
	if recs[0].LeaderEpoch != 2 || recs[2].LeaderEpoch != 4 {
		t.Fatalf("epochs around the truncation: %+v", recs[:3])
	}
	if got := l.EpochStartOffsets(); !slices.Equal(got, []EpochStart{{1, 0}, {2, 50}, {4, 72}}) {
		t.Fatalf("history after reopen %v", got)
	}
	// Truncating below the start empties the log and restarts it there.
	if err := l.Truncate(0); err != nil {
		t.Fatal(err)
	}
	if l.StartOffset() != 0 || l.EndOffset() != 0 || len(l.EpochStartOffsets()) != 0 {
		t.Fatalf("after Truncate(0): [%d, %d) %v", l.StartOffset(), l.EndOffset(), l.EpochStartOffsets())
	}
	if n := len(segmentPaths(t, dir)); n != 1 {
		t.Fatalf("%d segment files after full truncation", n)
	}
}

func TestSyncAppendsShareFsyncs(t *testing.T) {
	l := mustOpen(t, t.TempDir(), Options{})
	defer l.Close()
	const producers, each = 32, 20
	var wg sync.WaitGroup
	bases := make(chan int64, producers*each)
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				b, err := l.Append(context.Background(), 0, []Record{{Value: []byte("x")}})
				if err != nil {
					t.Error(err)
					return
				}
				// Acknowledged means covered by an fsync.
				if d := l.DurableEndOffset(); d <= b {
					t.Errorf("acknowledged offset %d but durable end is %d", b, d)
				}
				bases <- b
			}
		}()
	}
	wg.Wait()
	close(bases)
	var got []int64
	for b := range bases {
		got = append(got, b)
	}
	slices.Sort(got)
	for i, b := range got {
		if b != int64(i) {
			t.Fatalf("offsets not dense: %d at %d", b, i)
		}
	}
	st := l.Stats()
	if st.Batches != producers*each || st.EndOffset != producers*each || st.DurableEndOffset != st.EndOffset || st.Segments != 1 || st.SizeBytes == 0 {
		t.Fatalf("stats %+v", st)
	}
	var timed uint64
	for _, c := range st.FsyncLatency.Counts {
		timed += c
	}
	if int64(timed) != st.Fsyncs || st.FsyncLatency.Sum <= 0 {
		t.Fatalf("fsync histogram holds %d fsyncs (sum %v), counter %d", timed, st.FsyncLatency.Sum, st.Fsyncs)
	}
	if f := st.Fsyncs; f >= producers*each {
		t.Fatalf("%d fsyncs for %d appends: no group commit", f, producers*each)
	} else {
		t.Logf("%d appends, %d fsyncs", producers*each, f)
	}
}

func TestIntervalPolicyFlushesInBackground(t *testing.T) {
	dir := t.TempDir()
	// The flusher's ticker runs on the bubble's fake clock: no real waiting.
	synctest.Test(t, func(t *testing.T) {
		l := mustOpen(t, dir, Options{Flush: FlushInterval, FlushInterval: time.Hour})
		defer l.Close()
		appendN(t, l, 0, 0, 10)
		if d := l.DurableEndOffset(); d != 0 {
			t.Fatalf("durable end %d right after append under interval", d)
		}
		time.Sleep(59 * time.Minute)
		synctest.Wait()
		if d := l.DurableEndOffset(); d != 0 {
			t.Fatalf("durable end %d before the interval passed", d)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		if d := l.DurableEndOffset(); d != 10 {
			t.Fatalf("durable end %d after the interval, want 10", d)
		}
	})
}

func TestOSPolicyDoesNotFsyncOnAppend(t *testing.T) {
	l := mustOpen(t, t.TempDir(), Options{Flush: FlushOS})
	appendN(t, l, 0, 0, 10)
	if d := l.DurableEndOffset(); d != 0 || l.fsyncs.Load() != 0 {
		t.Fatalf("durable end %d, fsyncs %d", d, l.fsyncs.Load())
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if l.DurableEndOffset() != 10 {
		t.Fatalf("Close did not flush: durable end %d", l.DurableEndOffset())
	}
}

func TestAppendErrors(t *testing.T) {
	l := mustOpen(t, t.TempDir(), Options{MaxBatchBytes: 200})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Append(ctx, 0, []Record{{Value: []byte("x")}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled ctx: %v", err)
	}
	if _, err := l.Append(context.Background(), 0, []Record{{Value: make([]byte, 300)}}); !errors.Is(err, ErrRecordTooLarge) {
		t.Fatalf("large record: %v", err)
	}
	if _, err := l.Append(context.Background(), 0, nil); err == nil {
		t.Fatal("empty batch accepted")
	}
	if l.EndOffset() != 0 {
		t.Fatalf("failed appends moved the end to %d", l.EndOffset())
	}
	l.Close()
	if _, err := l.Append(context.Background(), 0, []Record{{}}); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
	if _, err := l.Read(0, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}
	if err := l.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second close: %v", err)
	}
}

func TestCreateTimestampsAndOffsetForTimeMatchLinearScan(t *testing.T) {
	clk := newTestClock()
	l := mustOpen(t, t.TempDir(), Options{TimestampType: TimestampCreate, SegmentBytes: 700, IndexIntervalBytes: 80, Now: clk.Now, Flush: FlushOS})
	defer l.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	base := clk.Now()
	var ts []int64
	for i := 0; i < 150; i++ {
		n := 1 + rng.IntN(3)
		recs := make([]Record, n)
		for j := range recs {
			if rng.IntN(10) == 0 {
				// No producer time: stamped with the clock.
				ts = append(ts, clk.Now().UnixMilli())
			} else {
				// Mostly increasing, sometimes late.
				at := base.Add(time.Duration(len(ts)*10-rng.IntN(50)) * time.Millisecond)
				recs[j].Timestamp = at
				ts = append(ts, at.UnixMilli())
			}
			recs[j].Value = []byte(fmt.Sprint(len(ts) - 1))
		}
		if _, err := l.Append(context.Background(), 0, recs); err != nil {
			t.Fatal(err)
		}
	}
	for i, r := range readAll(t, l, 0) {
		if r.Timestamp.UnixMilli() != ts[i] {
			t.Fatalf("record %d timestamp %d, want %d", i, r.Timestamp.UnixMilli(), ts[i])
		}
	}
	for q := base.Add(-100 * time.Millisecond); q.Before(base.Add(1600 * time.Millisecond)); q = q.Add(7*time.Millisecond + 300*time.Microsecond) {
		want := int64(len(ts))
		for i, x := range ts {
			if time.UnixMilli(x).Compare(q) >= 0 {
				want = int64(i)
				break
			}
		}
		got, err := l.OffsetForTime(q)
		if err != nil || got != want {
			t.Fatalf("OffsetForTime(%v) = %d, %v; want %d", q.Sub(base), got, err, want)
		}
	}
}

func TestRollsByAge(t *testing.T) {
	clk := newTestClock()
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{SegmentAge: time.Hour, Now: clk.Now, Flush: FlushOS})
	defer l.Close()
	appendN(t, l, 0, 0, 1)
	clk.Advance(59 * time.Minute)
	appendN(t, l, 0, 1, 1)
	if n := len(segmentPaths(t, dir)); n != 1 {
		t.Fatalf("%d segments before the age limit", n)
	}
	clk.Advance(time.Minute)
	appendN(t, l, 0, 2, 1)
	if n := len(segmentPaths(t, dir)); n != 2 {
		t.Fatalf("%d segments after the age limit, want 2", n)
	}
	checkTail(t, l, 3)
}

func TestOptionsValidateNamesTheKey(t *testing.T) {
	cases := map[string]Options{
		"segment_bytes":       {SegmentBytes: -1},
		"flush":               {Flush: "sometimes"},
		"retention_age":       {RetentionAge: -time.Second},
		"max_message_bytes":   {MaxBatchBytes: 10},
		"timestamp_type":      {TimestampType: "wall"},
		"tombstone_retention": {TombstoneRetention: -1},
	}
	for key, o := range cases {
		err := o.Validate()
		if err == nil || !strings.Contains(err.Error(), key+":") {
			t.Errorf("%s: Validate() = %v", key, err)
		}
		if _, err := Open(t.TempDir(), o); err == nil {
			t.Errorf("%s: Open accepted invalid options", key)
		}
	}
	if err := (Options{}).Validate(); err != nil {
		t.Fatalf("zero Options invalid: %v", err)
	}
}

func TestReadOnCorruptOlderSegmentNamesFileAndPosition(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{SegmentBytes: 2048, Flush: FlushOS})
	defer l.Close()
	for i := 0; i < 100; i++ {
		appendN(t, l, 1, i*3, 3)
	}
	paths := segmentPaths(t, dir)
	// Damage after Open (bit rot): Read must refuse, not return garbage.
	flipByte(t, paths[0], 60)
	_, err := l.Read(0, 1<<20)
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.File != paths[0] || ce.Position != 0 {
		t.Fatalf("Read = %v, want corruption in %s at 0", err, paths[0])
	}
	if _, statErr := os.Stat(paths[0]); statErr != nil {
		t.Fatal(statErr)
	}
}
