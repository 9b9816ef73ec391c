package segment

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// modelRec is what the in-memory model remembers of an appended record.
type modelRec struct {
	value []byte
	ts    int64
	epoch int32
}

// TestRandomOperationsMatchModel drives a log with tiny segments through
// random appends, reads, time lookups, retention, truncation and reopens,
// and checks every read against a plain slice of what was appended.
func TestRandomOperationsMatchModel(t *testing.T) {
	seeds, ops := 6, 250
	if testing.Short() {
		seeds = 2
	}
	for seed := 0; seed < seeds; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { runModel(t, uint64(seed), ops) })
	}
}

func runModel(t *testing.T, seed uint64, ops int) {
	rng := rand.New(rand.NewPCG(seed, 99))
	dir := t.TempDir()
	clk := newTestClock()
	opts := Options{
		SegmentBytes:       int64(200 + rng.IntN(800)),
		IndexIntervalBytes: 1 + rng.IntN(300),
		Flush:              []FlushPolicy{FlushSync, FlushOS, FlushInterval}[rng.IntN(3)],
		Now:                clk.Now,
		// Keyless records are never removed by compaction, but it still
		// merges small segments under the other operations.
		Compact: true,
	}
	l := mustOpen(t, dir, opts)
	defer func() { l.Close() }()
	var model []modelRec // model[i] is offset start+i
	merged := 0
	start := int64(0)
	epoch := int32(0)
	end := func() int64 { return start + int64(len(model)) }
	for op := 0; op < ops; op++ {
		clk.Advance(time.Duration(rng.IntN(3)) * time.Millisecond)
		switch k := rng.IntN(100); {
		case k < 45: // append
			n := 1 + rng.IntN(6)
			if rng.IntN(20) == 0 {
				epoch++
			}
			recs := make([]Record, n)
			for i := range recs {
				v := make([]byte, rng.IntN(120))
				for j := range v {
					v[j] = byte(rng.Uint32())
				}
				recs[i] = Record{Value: v}
			}
			base, err := l.Append(context.Background(), epoch, recs)
			if err != nil {
				t.Fatalf("op %d: Append: %v", op, err)
			}
			if base != end() {
				t.Fatalf("op %d: base %d, model end %d", op, base, end())
			}
			for _, r := range recs {
				model = append(model, modelRec{value: r.Value, ts: clk.Now().UnixMilli(), epoch: epoch})
			}
		case k < 72: // read
			from := start + rng.Int64N(int64(len(model))+1)
			maxBytes := rng.IntN(400)
			got, err := l.Read(from, maxBytes)
			if err != nil {
				t.Fatalf("op %d: Read(%d): %v", op, from, err)
			}
			if from < end() && len(got) == 0 {
				t.Fatalf("op %d: Read(%d) returned nothing below end %d", op, from, end())
			}
			size := 0
			for i, r := range got {
				want := model[from-start+int64(i)]
				if r.Offset != from+int64(i) || !bytes.Equal(r.Value, want.value) || r.Timestamp.UnixMilli() != want.ts || r.LeaderEpoch != want.epoch {
					t.Fatalf("op %d: Read(%d)[%d] = offset %d ts %d epoch %d, want offset %d ts %d epoch %d",
						op, from, i, r.Offset, r.Timestamp.UnixMilli(), r.LeaderEpoch, from+int64(i), want.ts, want.epoch)
				}
				size += len(r.Value)
			}
			if len(got) > 1 && size > maxBytes {
				t.Fatalf("op %d: read %d bytes in %d records, budget %d", op, size, len(got), maxBytes)
			}
			if next := from + int64(len(got)); next < end() && size+len(model[next-start].value) <= maxBytes {
				t.Fatalf("op %d: stopped at %d with budget left for the next record", op, next)
			}
		case k < 79: // time lookup, against a linear scan
			q := clk.Now().Add(-time.Duration(rng.IntN(200)) * time.Millisecond)
			want := end()
			for i, m := range model {
				if m.ts >= q.UnixMilli() {
					want = start + int64(i)
					break
				}
			}
			got, err := l.OffsetForTime(q)
			if err != nil || got != want {
				t.Fatalf("op %d: OffsetForTime = %d, %v; want %d", op, got, err, want)
			}
		case k < 85: // retention by size
			l.opts.RetentionBytes = int64(rng.IntN(3000)) + 1
			res, err := l.EnforceRetention(clk.Now())
			if err != nil {
				t.Fatalf("op %d: EnforceRetention: %v", op, err)
			}
			if res.StartOffset < start || res.StartOffset > end() {
				t.Fatalf("op %d: start moved to %d outside [%d, %d]", op, res.StartOffset, start, end())
			}
			model = model[res.StartOffset-start:]
			start = res.StartOffset
			l.opts.RetentionBytes = 0
		case k < 89: // compaction (merges segments)
			res, err := l.Compact(clk.Now())
			if err != nil {
				t.Fatalf("op %d: Compact: %v", op, err)
			}
			merged += res.SegmentsMerged
		case k < 93: // follower truncation
			to := start + rng.Int64N(int64(len(model))+1)
			if err := l.Truncate(to); err != nil {
				t.Fatalf("op %d: Truncate(%d): %v", op, to, err)
			}
			model = model[:to-start]
		default: // reopen after a clean Close or after abandoning the log
			crashed := rng.IntN(2) == 0
			if crashed {
				abandon(t, l)
			} else if err := l.Close(); err != nil {
				t.Fatalf("op %d: Close: %v", op, err)
			}
			l = mustOpen(t, dir, opts)
			if rep := l.Recovery(); len(rep.Truncated) != 0 || rep.CleanShutdown == crashed {
				t.Fatalf("op %d: reopen (crashed=%v) reported %+v", op, crashed, rep)
			}
		}
		if l.StartOffset() != start || l.EndOffset() != end() {
			t.Fatalf("op %d: log [%d, %d), model [%d, %d)", op, l.StartOffset(), l.EndOffset(), start, end())
		}
	}
	t.Logf("%d segments merged by compaction", merged)
	// Finally the whole log reads back as the model, in order, without gaps.
	got := readAll(t, l, start)
	if len(got) != len(model) {
		t.Fatalf("final read %d records, model %d", len(got), len(model))
	}
}

// abandon drops a log the way a killed process would: no final fsync, no
// clean-shutdown marker; only the goroutine and descriptors are released.
func abandon(t *testing.T, l *Log) {
	t.Helper()
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	close(l.stop)
	l.wg.Wait()
	for _, s := range l.segs {
		s.idxPend = nil // entries not yet written are lost
		s.closeFiles()
	}
	l.lockFile.Close()
}
