package segment

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// waitUntil polls cond until it holds or the deadline passes.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestGroupCommitKeepsEachProducersRecordsAtItsOffsetsAcrossRolls(t *testing.T) {
	dir := t.TempDir()
	// Small segments: groups are cut by rolls in the middle.
	l := mustOpen(t, dir, Options{SegmentBytes: 2048})
	const producers, each = 16, 25
	type ack struct {
		base int64
		val  string
	}
	acks := make(chan ack, producers*each*3)
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range each {
				v := fmt.Sprintf("p%02d-%03d", p, i)
				n := 1 + i%3 // 1 to 3 records per append
				recs := make([]Record, n)
				for j := range recs {
					recs[j] = Record{Key: []byte(v), Value: []byte(fmt.Sprintf("%s/%d", v, j))}
				}
				base, err := l.Append(context.Background(), 0, recs)
				if err != nil {
					t.Error(err)
					return
				}
				for j := range recs {
					acks <- ack{base + int64(j), string(recs[j].Value)}
				}
			}
		})
	}
	wg.Wait()
	close(acks)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, dir, Options{SegmentBytes: 2048})
	defer l.Close()
	got := readAll(t, l, 0)
	if st := l.Stats(); st.Segments < 3 {
		t.Fatalf("only %d segments: the test did not roll", st.Segments)
	}
	want := map[int64]string{}
	for a := range acks {
		if _, dup := want[a.base]; dup {
			t.Fatalf("offset %d acknowledged twice", a.base)
		}
		want[a.base] = a.val
	}
	if len(got) != len(want) {
		t.Fatalf("read %d records, %d acknowledged", len(got), len(want))
	}
	for i, r := range got {
		if r.Offset != int64(i) {
			t.Fatalf("record %d has offset %d: gap or reorder", i, r.Offset)
		}
		if want[r.Offset] != string(r.Value) {
			t.Fatalf("offset %d holds %q, acknowledged %q", r.Offset, r.Value, want[r.Offset])
		}
	}
}

func TestGroupCommitFencesAStaleEpochWithoutFailingItsGroup(t *testing.T) {
	l := mustOpen(t, t.TempDir(), Options{})
	defer l.Close()
	appendN(t, l, 5, 0, 1)
	// Hold the log so that stale and current appends queue into one group.
	l.mu.Lock()
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = l.Append(context.Background(), int32(4+i%2), []Record{{Value: val(i)}})
		})
	}
	waitUntil(t, "8 waiting appends", func() bool { return l.inflight.Load() == 8 })
	l.mu.Unlock()
	wg.Wait()
	for i, err := range errs {
		if stale := i%2 == 0; stale != errors.Is(err, ErrStaleEpoch) || !stale && err != nil {
			t.Fatalf("append %d (epoch %d): %v", i, 4+i%2, err)
		}
	}
	if end := l.EndOffset(); end != 5 {
		t.Fatalf("end offset %d, want 5 (1 + 4 current-epoch appends)", end)
	}
}

func TestAppendCancelledBeforeItsGroupIsWrittenWritesNothing(t *testing.T) {
	l := mustOpen(t, t.TempDir(), Options{})
	defer l.Close()
	l.mu.Lock() // the committer cannot give the queued batch an offset
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := l.Append(ctx, 0, []Record{{Value: []byte("x")}})
		done <- err
	}()
	waitUntil(t, "a waiting append", func() bool { return l.inflight.Load() == 1 })
	cancel()
	err := <-done
	l.mu.Unlock()
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrDurabilityUnknown) {
		t.Fatalf("got %v, want a plain context.Canceled", err)
	}
	appendN(t, l, 0, 0, 1)
	if end := l.EndOffset(); end != 1 {
		t.Fatalf("end offset %d: the cancelled batch was written", end)
	}
}

func TestAppendCancelledWhileWaitingForFsyncReportsUnknownWithItsOffset(t *testing.T) {
	l := mustOpen(t, t.TempDir(), Options{})
	defer l.Close()
	appendN(t, l, 0, 0, 3)
	l.syncMu.Lock() // the batch is written, its fsync cannot start
	ctx, cancel := context.WithCancel(context.Background())
	type result struct {
		base int64
		err  error
	}
	done := make(chan result, 1)
	go func() {
		b, err := l.Append(ctx, 0, []Record{{Value: []byte("x")}})
		done <- result{b, err}
	}()
	waitUntil(t, "the batch written", func() bool { return l.EndOffset() == 4 })
	cancel()
	r := <-done
	l.syncMu.Unlock()
	if r.base != 3 || !errors.Is(r.err, ErrDurabilityUnknown) || !errors.Is(r.err, context.Canceled) {
		t.Fatalf("got base %d, %v; want 3 and ErrDurabilityUnknown", r.base, r.err)
	}
	waitUntil(t, "the next flush", func() bool { return l.DurableEndOffset() == 4 })
}

func TestCloseReleasesEveryQueuedAppend(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{})
	l.mu.Lock()
	const n = 20
	var wg sync.WaitGroup
	var okMu sync.Mutex
	ok := map[int64]bool{}
	for i := range n {
		wg.Go(func() {
			b, err := l.Append(context.Background(), 0, []Record{{Value: val(i)}})
			switch {
			case err == nil:
				okMu.Lock()
				ok[b] = true
				okMu.Unlock()
			case !errors.Is(err, ErrClosed):
				t.Errorf("append %d: %v", i, err)
			}
		})
	}
	waitUntil(t, "waiting appends", func() bool { return l.inflight.Load() == n })
	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	l.mu.Unlock()
	wg.Wait()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, dir, Options{})
	defer l.Close()
	if end := l.EndOffset(); end != int64(len(ok)) {
		t.Fatalf("log ends at %d after %d acknowledged appends", end, len(ok))
	}
}
