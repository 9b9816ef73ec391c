package segment

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// appendKV appends one record per key/value pair ("" value = tombstone)
// and returns the base offset.
func appendKV(t testing.TB, l *Log, kv ...string) int64 {
	t.Helper()
	recs := make([]Record, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		r := Record{Key: []byte(kv[i])}
		if kv[i+1] != "" {
			r.Value = []byte(kv[i+1])
		}
		recs = append(recs, r)
	}
	base, err := l.Append(context.Background(), 1, recs)
	if err != nil {
		t.Fatal(err)
	}
	return base
}

func TestCompactKeepsLatestPerKeyWithOffsetsAndTombstoneDelay(t *testing.T) {
	dir := t.TempDir()
	clk := newTestClock()
	opts := Options{Compact: true, SegmentBytes: 400, IndexIntervalBytes: 64, TombstoneRetention: time.Hour, Now: clk.Now, Flush: FlushOS}
	l := mustOpen(t, dir, opts)
	defer func() { l.Close() }()
	// value = "<key>@<offset>" so reads can check that offsets were kept.
	type rec struct {
		key  string
		tomb bool
	}
	var all []rec
	for i := 0; i < 120; i++ {
		key := fmt.Sprintf("k%d", i%9)
		tomb := i%9 == 3 && i > 100 // k3's last write is a delete
		v := fmt.Sprintf("%s@%d", key, i)
		if tomb {
			v = ""
		}
		if off := appendKV(t, l, key, v); off != int64(i) {
			t.Fatalf("offset %d, want %d", off, i)
		}
		all = append(all, rec{key, tomb})
		clk.Advance(time.Millisecond)
	}
	// Unkeyed records are never compacted.
	unkeyed, _ := l.Append(context.Background(), 1, []Record{{Value: []byte("nokey")}})
	all = append(all, rec{"", false})
	l.mu.RLock()
	activeBase := l.segs[len(l.segs)-1].meta.base
	l.mu.RUnlock()
	if activeBase < 50 {
		t.Fatalf("active segment starts at %d; want most data in closed segments", activeBase)
	}
	expect := func(dropTombs bool) map[int64]bool {
		latest := map[string]int64{}
		for off, r := range all {
			if int64(off) < activeBase && r.key != "" {
				latest[r.key] = int64(off)
			}
		}
		keep := map[int64]bool{}
		for off, r := range all {
			o := int64(off)
			switch {
			case o >= activeBase || r.key == "":
				keep[o] = true
			case latest[r.key] == o && !(r.tomb && dropTombs):
				keep[o] = true
			}
		}
		return keep
	}
	check := func(keep map[int64]bool) {
		t.Helper()
		got := readAll(t, l, 0)
		seen := map[int64]bool{}
		prev := int64(-1)
		for _, r := range got {
			if r.Offset <= prev {
				t.Fatalf("offsets out of order: %d after %d", r.Offset, prev)
			}
			prev = r.Offset
			if !keep[r.Offset] {
				t.Fatalf("offset %d (%s) should have been compacted away", r.Offset, r.Key)
			}
			seen[r.Offset] = true
			switch {
			case r.Key == nil:
				if string(r.Value) != "nokey" || r.Offset != unkeyed {
					t.Fatalf("unkeyed record at %d = %q", r.Offset, r.Value)
				}
			case r.Value == nil:
				if !all[r.Offset].tomb {
					t.Fatalf("offset %d is a tombstone but was written with a value", r.Offset)
				}
			default:
				key, off, _ := strings.Cut(string(r.Value), "@")
				if key != string(r.Key) || off != strconv.FormatInt(r.Offset, 10) {
					t.Fatalf("offset %d holds %q: offsets not preserved", r.Offset, r.Value)
				}
			}
		}
		for off := range keep {
			if !seen[off] {
				t.Fatalf("offset %d should have been kept", off)
			}
		}
	}
	res, err := l.Compact(clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	if res.SegmentsRewritten == 0 || res.RecordsRemoved == 0 || res.TombstonesDropped != 0 || res.BytesAfter >= res.BytesBefore {
		t.Fatalf("first compaction result %+v", res)
	}
	check(expect(false))
	// Reading from inside a gap returns the next kept record.
	for from := int64(0); from < activeBase; from++ {
		got, err := l.Read(from, 1)
		if err != nil || len(got) != 1 || got[0].Offset < from {
			t.Fatalf("Read(%d) = %v, %v", from, got, err)
		}
	}
	// Past TombstoneRetention the tombstone goes too.
	clk.Advance(2 * time.Hour)
	res, err = l.Compact(clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	if res.TombstonesDropped != 1 {
		t.Fatalf("second compaction result %+v, want 1 tombstone dropped", res)
	}
	check(expect(true))
	// Compaction is idempotent and survives reopen.
	if res, err := l.Compact(clk.Now()); err != nil || res.SegmentsRewritten != 0 {
		t.Fatalf("third compaction %+v, %v", res, err)
	}
	l.Close()
	l = mustOpen(t, dir, opts)
	if rep := l.Recovery(); len(rep.Truncated) != 0 || len(rep.RebuiltIndexes) != 0 {
		t.Fatalf("reopen after compaction repaired something: %+v", rep)
	}
	check(expect(true))
	if base := appendKV(t, l, "k0", "k0@"+strconv.Itoa(len(all))); base != int64(len(all)) {
		t.Fatalf("append after compaction got offset %d, want %d", base, len(all))
	}
}

func TestCompactRunsConcurrentlyWithAppends(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{Compact: true, SegmentBytes: 4096, Flush: FlushOS})
	defer l.Close()
	for i := 0; i < 2000; i++ {
		appendKV(t, l, fmt.Sprintf("k%d", i%50), fmt.Sprintf("v%d", i))
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var bases []int64
	var appended atomic.Int64
	// The appender goes on until the first compaction has returned, then
	// makes 3000 more appends at most. It made 3000 from its start: had
	// this test's goroutine been held up a few hundred milliseconds before
	// its first compaction, the appender had made them all, and none
	// completed during one. The deadline bounds it should the test fail
	// first.
	firstDone := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		deadline, left := time.Now().Add(30*time.Second), 3000
		for i := 0; time.Now().Before(deadline); i++ {
			select {
			case <-stop:
				return
			default:
			}
			b, err := l.Append(context.Background(), 1, []Record{{Key: []byte("live"), Value: []byte(fmt.Sprintf("live%d", i))}})
			if err != nil {
				t.Error(err)
				return
			}
			bases = append(bases, b)
			appended.Add(1)
			select {
			case <-firstDone:
				if left--; left == 0 {
					return
				}
			default:
			}
		}
	}()
	// Wait until the appender runs, then check it keeps going while
	// compaction copies segments.
	for deadline := time.Now().Add(5 * time.Second); appended.Load() == 0 && time.Now().Before(deadline); {
		runtime.Gosched()
	}
	during := int64(0)
	for i := 0; i < 3; i++ {
		before := appended.Load()
		res, err := l.Compact(time.Now())
		if err != nil {
			t.Error(err)
		}
		if res.SegmentsRewritten > 0 {
			during += appended.Load() - before
		}
		if i == 0 {
			close(firstDone)
		}
	}
	if during == 0 {
		t.Error("no append completed while compaction was rewriting segments")
	}
	close(stop)
	wg.Wait()
	if len(bases) == 0 {
		t.Fatal("no concurrent appends happened")
	}
	for i := 1; i < len(bases); i++ {
		if bases[i] != bases[i-1]+1 {
			t.Fatalf("concurrent append offsets %d then %d", bases[i-1], bases[i])
		}
	}
	got := readAll(t, l, 0)
	live := 0
	for _, r := range got {
		if string(r.Key) == "live" {
			live++
		}
	}
	if live == 0 || got[len(got)-1].Offset != bases[len(bases)-1] {
		t.Fatalf("last record %d, last append %d", got[len(got)-1].Offset, bases[len(bases)-1])
	}
	if n := len(got) - live; n >= 2000 {
		t.Fatalf("compaction removed nothing: %d of the 2000 records written before it", n)
	}
}

func TestCompactIsNoOpWithoutCompactOption(t *testing.T) {
	l := mustOpen(t, t.TempDir(), Options{SegmentBytes: 300, Flush: FlushOS})
	defer l.Close()
	for i := 0; i < 100; i++ {
		appendKV(t, l, "same", fmt.Sprint(i))
	}
	if res, err := l.Compact(time.Now()); err != nil || res.SegmentsRewritten != 0 {
		t.Fatalf("Compact = %+v, %v", res, err)
	}
	if n := len(readAll(t, l, 0)); n != 100 {
		t.Fatalf("%d records left", n)
	}
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == ".lock" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func sameRecords(t *testing.T, a, b []Record) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%d records vs %d", len(a), len(b))
	}
	for i := range a {
		if a[i].Offset != b[i].Offset || string(a[i].Key) != string(b[i].Key) || string(a[i].Value) != string(b[i].Value) {
			t.Fatalf("record %d: %d %s=%s vs %d %s=%s", i, a[i].Offset, a[i].Key, a[i].Value, b[i].Offset, b[i].Key, b[i].Value)
		}
	}
}

// TestCompactMergesSmallSegmentsAndOpenCompletesAnInterruptedMerge checks
// that compacted segments are merged, and that a crash after the merge's
// commit point (the .swap rename), whatever was removed by then, is
// completed by Open with the same result.
func TestCompactMergesSmallSegmentsAndOpenCompletesAnInterruptedMerge(t *testing.T) {
	opts := Options{Compact: true, SegmentBytes: 600, Flush: FlushOS}
	dirA := t.TempDir()
	l := mustOpen(t, dirA, opts)
	for i := 0; i < 300; i++ {
		appendKV(t, l, fmt.Sprintf("k%d", i%6), fmt.Sprintf("v%d", i))
	}
	if _, err := l.Compact(time.Now()); err != nil { // shrinks each segment
		t.Fatal(err)
	}
	before := len(segmentPaths(t, dirA))
	l.Close()
	dirB := t.TempDir()
	copyDir(t, dirA, dirB)
	baseSet := func(dir string) []int64 {
		var out []int64
		for _, p := range segmentPaths(t, dir) {
			b, _ := parseSegmentName(filepath.Base(p))
			out = append(out, b)
		}
		return out
	}
	oldBases := baseSet(dirB)

	l = mustOpen(t, dirA, opts)
	want := readAll(t, l, 0)
	res, err := l.Compact(time.Now()) // merges the shrunk segments
	if err != nil {
		t.Fatal(err)
	}
	after := len(segmentPaths(t, dirA))
	if res.SegmentsMerged == 0 || after != before-res.SegmentsMerged || after >= before/2 {
		t.Fatalf("merge result %+v: %d segments before, %d after", res, before, after)
	}
	sameRecords(t, readAll(t, l, 0), want)
	l.Close()
	newBases := baseSet(dirA)

	// Rebuild in B the state right after each merge's commit point: the
	// merged file under its .swap name, with some of the replaced segments
	// already gone.
	for i, base := range newBases[:len(newBases)-1] {
		end := newBases[i+1]
		var covered []int64
		for _, b := range oldBases {
			if b >= base && b < end {
				covered = append(covered, b)
			}
		}
		if len(covered) < 2 {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dirA, segmentName(base)+logSuffix))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dirB, swapName(base, end)), data, 0o644); err != nil {
			t.Fatal(err)
		}
		// The newest replaced segment was already removed before the crash.
		os.Remove(filepath.Join(dirB, segmentName(covered[len(covered)-1])+logSuffix))
	}
	os.Remove(filepath.Join(dirB, cleanShutdownFile))
	l = mustOpen(t, dirB, opts)
	defer l.Close()
	if got := baseSet(dirB); fmt.Sprint(got) != fmt.Sprint(newBases) {
		t.Fatalf("segments after completing swaps %v, want %v", got, newBases)
	}
	if len(l.Recovery().RemovedFiles) == 0 {
		t.Fatal("completed swaps not reported")
	}
	sameRecords(t, readAll(t, l, 0), want)
	if matches, _ := filepath.Glob(filepath.Join(dirB, "*"+swapSuffix)); len(matches) != 0 {
		t.Fatalf("swap files left: %v", matches)
	}
}
