package segment

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// buildLog writes n batches of 3 records into a log with small segments and
// closes it. It returns the segment paths, oldest first.
func buildLog(t *testing.T, dir string, n int) []string {
	t.Helper()
	l := mustOpen(t, dir, Options{SegmentBytes: 2048, IndexIntervalBytes: 256, Flush: FlushOS})
	for i := 0; i < n; i++ {
		appendN(t, l, 1, i*3, 3)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return segmentPaths(t, dir)
}

func segmentPaths(t *testing.T, dir string) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(paths)
	return paths
}

// simulateCrash removes the marker a clean Close leaves, so that the next
// Open treats the directory as after a crash.
func simulateCrash(t *testing.T, dir string) {
	t.Helper()
	if err := os.Remove(filepath.Join(dir, cleanShutdownFile)); err != nil {
		t.Fatal(err)
	}
}

func flipByte(t *testing.T, path string, pos int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := []byte{0}
	if _, err := f.ReadAt(b, pos); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, pos); err != nil {
		t.Fatal(err)
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// lastBatchPos returns the position of the last batch in a segment file.
func lastBatchPos(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, fault, err := scanSegment(f, fileSize(t, path), 0, 1)
	if err != nil || fault != nil {
		t.Fatalf("scan: %v %+v", err, fault)
	}
	if len(m.index) == 0 {
		return 0
	}
	return m.index[len(m.index)-1].pos
}

func checkPrefix(t *testing.T, l *Log, n int) {
	t.Helper()
	recs := readAll(t, l, l.StartOffset())
	if len(recs) != n {
		t.Fatalf("read %d records, want %d", len(recs), n)
	}
	for i, r := range recs {
		if r.Offset != int64(i) || string(r.Value) != string(val(i)) {
			t.Fatalf("record %d = offset %d value %q", i, r.Offset, r.Value)
		}
	}
}

func TestOpenTruncatesCorruptTailAndReportsIt(t *testing.T) {
	dir := t.TempDir()
	paths := buildLog(t, dir, 100)
	last := paths[len(paths)-1]
	pos := lastBatchPos(t, last)
	size := fileSize(t, last)
	flipByte(t, last, size-3) // inside the last batch's records
	l := mustOpen(t, dir, Options{SegmentBytes: 2048, IndexIntervalBytes: 256})
	defer l.Close()
	rep := l.Recovery()
	if len(rep.Truncated) != 1 {
		t.Fatalf("truncations = %+v", rep.Truncated)
	}
	tr := rep.Truncated[0]
	if tr.File != last || tr.Position != pos || tr.Bytes != size-pos || tr.FirstOffset != 297 || tr.LastOffset != 299 {
		t.Fatalf("truncation = %+v, want file %s pos %d bytes %d offsets 297..299", tr, last, pos, size-pos)
	}
	if !strings.Contains(tr.Reason, "crc") {
		t.Fatalf("reason = %q", tr.Reason)
	}
	if l.EndOffset() != 297 {
		t.Fatalf("EndOffset = %d, want 297", l.EndOffset())
	}
	checkPrefix(t, l, 297)
	// The log keeps working at the truncation point.
	if base := appendN(t, l, 1, 297, 3); base != 297 {
		t.Fatalf("append after recovery got base %d", base)
	}
	checkPrefix(t, l, 300)
}

func TestOpenTruncatesTornWrite(t *testing.T) {
	dir := t.TempDir()
	paths := buildLog(t, dir, 100)
	last := paths[len(paths)-1]
	pos := lastBatchPos(t, last)
	for _, cut := range []int64{pos + 5, pos + batchHeaderSize + 2, fileSize(t, last) - 1} {
		if err := os.Truncate(last, cut); err != nil {
			t.Fatal(err)
		}
		l := mustOpen(t, dir, Options{SegmentBytes: 2048, IndexIntervalBytes: 256})
		rep := l.Recovery()
		if len(rep.Truncated) != 1 || rep.Truncated[0].Position != pos || rep.Truncated[0].Bytes != cut-pos {
			t.Fatalf("cut at %d: truncations = %+v", cut, rep.Truncated)
		}
		checkPrefix(t, l, 297)
		appendN(t, l, 1, 297, 3) // restore for the next round
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOpenTruncatesZeroFilledTail(t *testing.T) {
	dir := t.TempDir()
	paths := buildLog(t, dir, 100)
	last := paths[len(paths)-1]
	size := fileSize(t, last)
	f, err := os.OpenFile(last, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt(make([]byte, 4096), size) // file grew, data never made it
	f.Close()
	l := mustOpen(t, dir, Options{})
	defer l.Close()
	if rep := l.Recovery(); len(rep.Truncated) != 1 || rep.Truncated[0].Position != size || rep.Truncated[0].Bytes != 4096 {
		t.Fatalf("truncations = %+v", rep.Truncated)
	}
	checkPrefix(t, l, 300)
}

func TestOpenFailsOnCorruptionInOlderSegment(t *testing.T) {
	dir := t.TempDir()
	paths := buildLog(t, dir, 100)
	if len(paths) < 3 {
		t.Fatalf("want >= 3 segments, got %d", len(paths))
	}
	victim := paths[1]
	before := fileSize(t, victim)
	flipByte(t, victim, 200)
	simulateCrash(t, dir)
	_, err := Open(dir, Options{})
	var ce *CorruptError
	if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open error = %v, want *CorruptError", err)
	}
	if ce.File != victim || ce.Position < 0 || ce.Position > 200 {
		t.Fatalf("error points at %s:%d, want %s at or before byte 200", ce.File, ce.Position, victim)
	}
	if !strings.Contains(err.Error(), victim) {
		t.Fatalf("message %q does not name the file", err)
	}
	if fileSize(t, victim) != before || len(segmentPaths(t, dir)) != len(paths) {
		t.Fatal("Open modified files despite failing")
	}
}

func TestOpenFailsWhenValidDataFollowsDamageInLastSegment(t *testing.T) {
	dir := t.TempDir()
	paths := buildLog(t, dir, 100)
	last := paths[len(paths)-1]
	// Damage the first batch of the last segment; later batches are fine.
	flipByte(t, last, 30)
	_, err := Open(dir, Options{})
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.File != last || ce.Position != 0 {
		t.Fatalf("Open error = %v, want corruption in %s at 0", err, last)
	}
	if !strings.Contains(err.Error(), "valid batch follows") {
		t.Fatalf("message %q does not say why it is not a torn tail", err)
	}
}

func TestOpenRebuildsMissingAndDamagedIndexes(t *testing.T) {
	dir := t.TempDir()
	paths := buildLog(t, dir, 100)
	idx := strings.TrimSuffix(paths[0], ".log") + ".index"
	tidx := strings.TrimSuffix(paths[1], ".log") + ".timeindex"
	want, err := os.ReadFile(idx)
	if err != nil || len(want) == 0 {
		t.Fatalf("index %s: %v (len %d)", idx, err, len(want))
	}
	os.Remove(idx)
	os.WriteFile(tidx, []byte("garbage!garbage!"), 0o644)
	l := mustOpen(t, dir, Options{SegmentBytes: 2048, IndexIntervalBytes: 256})
	rep := l.Recovery()
	slices.Sort(rep.RebuiltIndexes)
	if !slices.Equal(rep.RebuiltIndexes, []string{idx, tidx}) {
		t.Fatalf("rebuilt = %v, want [%s %s]", rep.RebuiltIndexes, idx, tidx)
	}
	checkPrefix(t, l, 300)
	l.Close()
	got, _ := os.ReadFile(idx)
	if !slices.Equal(got, want) {
		t.Fatal("rebuilt index differs from the original")
	}
}

func TestOpenRemovesLeftovers(t *testing.T) {
	dir := t.TempDir()
	paths := buildLog(t, dir, 100)
	os.WriteFile(paths[0]+cleanedSuffix, []byte("partial"), 0o644)
	os.WriteFile(filepath.Join(dir, epochFileName+tmpSuffix), []byte("x"), 0o644)
	orphan := filepath.Join(dir, segmentName(99999)+indexSuffix)
	os.WriteFile(orphan, nil, 0o644)
	l := mustOpen(t, dir, Options{})
	defer l.Close()
	if got := l.Recovery().RemovedFiles; len(got) != 3 {
		t.Fatalf("removed = %v", got)
	}
	if _, err := os.Stat(orphan); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("orphan index still there")
	}
	checkPrefix(t, l, 300)
}

func TestOpenRebuildsMissingEpochCheckpoint(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{SegmentBytes: 2048})
	appendN(t, l, 1, 0, 3)
	appendN(t, l, 4, 3, 3)
	appendN(t, l, 4, 6, 3)
	appendN(t, l, 6, 9, 3)
	want := l.EpochStartOffsets()
	l.Close()
	if !slices.Equal(want, []EpochStart{{1, 0}, {4, 3}, {6, 9}}) {
		t.Fatalf("history = %v", want)
	}
	for _, damage := range []func(){
		func() { os.Remove(filepath.Join(dir, epochFileName)) },
		func() { os.WriteFile(filepath.Join(dir, epochFileName), []byte("0\n7\n1 0\n"), 0o644) },
	} {
		damage()
		l = mustOpen(t, dir, Options{})
		if got := l.EpochStartOffsets(); !slices.Equal(got, want) {
			t.Fatalf("recovered history = %v, want %v", got, want)
		}
		if l.Recovery().EpochHistory == "" {
			t.Fatal("repair not reported")
		}
		l.Close()
	}
}

func TestSecondOpenOfSameDirectoryIsRefused(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{})
	defer l.Close()
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v", err)
	}
}

func TestCleanShutdownSkipsVerifyingOlderSegmentsButNotTheirStructure(t *testing.T) {
	dir := t.TempDir()
	paths := buildLog(t, dir, 100)
	var total int64
	for _, p := range paths {
		total += fileSize(t, p)
	}
	l := mustOpen(t, dir, Options{SegmentBytes: 2048, IndexIntervalBytes: 256})
	rep := l.Recovery()
	if !rep.CleanShutdown || rep.VerifiedBytes != fileSize(t, paths[len(paths)-1]) {
		t.Fatalf("clean open: %+v, last segment %d bytes", rep, fileSize(t, paths[len(paths)-1]))
	}
	checkPrefix(t, l, 300)
	if _, err := os.Stat(filepath.Join(dir, cleanShutdownFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("marker still present while the log is open")
	}
	l.Close()
	simulateCrash(t, dir)
	l = mustOpen(t, dir, Options{SegmentBytes: 2048, IndexIntervalBytes: 256})
	if rep := l.Recovery(); rep.CleanShutdown || rep.VerifiedBytes != total {
		t.Fatalf("open after crash verified %d of %d bytes: %+v", rep.VerifiedBytes, total, rep)
	}
	l.Close()

	// A damaged length in an older segment breaks the header chain: found
	// even after a clean shutdown.
	flipByte(t, paths[1], offLength+2)
	_, err := Open(dir, Options{})
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.File != paths[1] || ce.Position != 0 {
		t.Fatalf("Open = %v, want corruption in %s at 0", err, paths[1])
	}
	flipByte(t, paths[1], offLength+2) // repair
	// Damaged record bytes are found by Read, which checks every CRC.
	flipByte(t, paths[1], 200)
	l = mustOpen(t, dir, Options{})
	defer l.Close()
	_, err = l.Read(l.segs[1].meta.base, 1<<20)
	if !errors.As(err, &ce) || ce.File != paths[1] {
		t.Fatalf("Read = %v, want corruption in %s", err, paths[1])
	}
}
