package segment

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestAppendReplicaCopiesCompactedLeaderExactly(t *testing.T) {
	clk := newTestClock()
	leader := mustOpen(t, t.TempDir(), Options{Compact: true, SegmentBytes: 500, Now: clk.Now, Flush: FlushOS})
	defer leader.Close()
	for i := 0; i < 90; i++ {
		epoch := int32(1 + i/30)
		recs := []Record{{Key: []byte(fmt.Sprintf("k%d", i%5)), Value: []byte(fmt.Sprint(i)),
			Headers: []Header{{Key: "h", Value: []byte{byte(i)}}}}}
		if _, err := leader.Append(context.Background(), epoch, recs); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Millisecond)
	}
	if res, err := leader.Compact(clk.Now()); err != nil || res.RecordsRemoved == 0 {
		t.Fatalf("compaction %+v, %v", res, err)
	}
	follower := mustOpen(t, t.TempDir(), Options{SegmentBytes: 300, MaxBatchBytes: 200})
	defer follower.Close()
	// Fetch loop: read from the leader at the follower's end, append as is.
	for follower.EndOffset() < leader.EndOffset() {
		recs, err := leader.Read(follower.EndOffset(), 120)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			t.Fatalf("leader returned nothing at %d below its end %d", follower.EndOffset(), leader.EndOffset())
		}
		end, err := follower.AppendReplica(context.Background(), recs)
		if err != nil {
			t.Fatal(err)
		}
		if want := recs[len(recs)-1].Offset + 1; end != want {
			t.Fatalf("end %d after appending up to %d", end, want-1)
		}
	}
	want, got := readAll(t, leader, 0), readAll(t, follower, 0)
	if len(got) != len(want) || len(want) == 90 {
		t.Fatalf("follower has %d records, leader %d", len(got), len(want))
	}
	for i := range want {
		w, g := want[i], got[i]
		if g.Offset != w.Offset || !bytes.Equal(g.Key, w.Key) || !bytes.Equal(g.Value, w.Value) ||
			!g.Timestamp.Equal(w.Timestamp) || g.LeaderEpoch != w.LeaderEpoch || !bytes.Equal(g.Headers[0].Value, w.Headers[0].Value) {
			t.Fatalf("record %d: follower %+v, leader %+v", i, g, w)
		}
	}
	if e, end := follower.EndOffsetForEpoch(3); e != 3 || end != leader.EndOffset() {
		t.Fatalf("follower EndOffsetForEpoch(3) = %d, %d", e, end)
	}
	if _, err := follower.AppendReplica(context.Background(), want[len(want)-1:]); !errors.Is(err, ErrOffsetOrder) {
		t.Fatalf("re-appending an old offset: %v", err)
	}
	bad := []Record{{Offset: 200, LeaderEpoch: 3}, {Offset: 200, LeaderEpoch: 3}}
	if _, err := follower.AppendReplica(context.Background(), bad); !errors.Is(err, ErrOffsetOrder) {
		t.Fatalf("duplicate offsets: %v", err)
	}
}

func TestFollowerTruncatesDivergentTailByEpoch(t *testing.T) {
	leader := mustOpen(t, t.TempDir(), Options{Flush: FlushOS})
	defer leader.Close()
	follower := mustOpen(t, t.TempDir(), Options{Flush: FlushOS})
	defer follower.Close()
	// Both got offsets 0..9 in epoch 1.
	for _, l := range []*Log{leader, follower} {
		appendN(t, l, 1, 0, 10)
	}
	// The old leader (now follower) appended 5 more in epoch 1 that never
	// replicated; the new leader wrote 3 in epoch 2.
	appendN(t, follower, 1, 10, 5)
	appendN(t, leader, 2, 10, 3)
	// KIP-101: ask the leader where epoch 1 ends, truncate there, refetch.
	epoch, end := leader.EndOffsetForEpoch(follower.EpochStartOffsets()[len(follower.EpochStartOffsets())-1].Epoch)
	if epoch != 1 || end != 10 {
		t.Fatalf("leader EndOffsetForEpoch = %d, %d", epoch, end)
	}
	if err := follower.Truncate(end); err != nil {
		t.Fatal(err)
	}
	recs, err := leader.Read(follower.EndOffset(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := follower.AppendReplica(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	w, g := readAll(t, leader, 0), readAll(t, follower, 0)
	if len(g) != 13 || len(w) != 13 {
		t.Fatalf("leader %d, follower %d records", len(w), len(g))
	}
	for i := range w {
		if g[i].Offset != w[i].Offset || !bytes.Equal(g[i].Value, w[i].Value) || g[i].LeaderEpoch != w[i].LeaderEpoch {
			t.Fatalf("record %d differs: %+v vs %+v", i, g[i], w[i])
		}
	}
	if fe, le := follower.EpochStartOffsets(), leader.EpochStartOffsets(); fmt.Sprint(fe) != fmt.Sprint(le) {
		t.Fatalf("epoch histories differ: follower %v, leader %v", fe, le)
	}
}
