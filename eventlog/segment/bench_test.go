package segment

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func benchRecords(n, size int) []Record {
	recs := make([]Record, n)
	for i := range recs {
		v := make([]byte, size)
		for j := range v {
			v[j] = byte(i + j)
		}
		recs[i] = Record{Key: []byte(fmt.Sprintf("key-%04d", i%1000)), Value: v[:size-min(size, 8)]}
	}
	return recs
}

func reportRecords(b *testing.B, records int64) {
	b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkAppendBatched: one producer, batches of 100 or 1000 records of
// 100 B or 1 KiB (key + value), no fsync on the append path.
func BenchmarkAppendBatched(b *testing.B) {
	for _, size := range []int{100, 1024} {
		for _, flush := range []FlushPolicy{FlushOS, FlushInterval} {
			for _, batch := range []int{100, 1000} {
				b.Run(fmt.Sprintf("size=%d/flush=%s/batch=%d", size, flush, batch), func(b *testing.B) {
					l := mustOpen(b, b.TempDir(), Options{Flush: flush, MaxBatchBytes: 4 << 20})
					defer l.Close()
					recs := benchRecords(batch, size)
					b.SetBytes(int64(batch * size))
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						if _, err := l.Append(context.Background(), 0, recs); err != nil {
							b.Fatal(err)
						}
					}
					b.StopTimer() // Close's final fsync is not part of the append path
					reportRecords(b, int64(b.N*batch))
				})
			}
		}
	}
}

// BenchmarkAppendSyncGroupCommit: flush "sync" (fsync before ack) from 1, 8
// and 64 concurrent producers, each appending batches of 1 or 100 records;
// concurrent producers share fsyncs. b.N counts Appends. Each sub-benchmark
// first measures the disk's own rate of 4 KiB append + fdatasync in the same
// directory ("disk-fsyncs/s"), because that rate moves with the load on a
// shared machine and is the ceiling for a single producer.
func BenchmarkAppendSyncGroupCommit(b *testing.B) {
	for _, size := range []int{100, 1024} {
		for _, batch := range []int{1, 100} {
			for _, producers := range []int{1, 8, 64} {
				b.Run(fmt.Sprintf("size=%d/batch=%d/producers=%d", size, batch, producers), func(b *testing.B) {
					dir := b.TempDir()
					disk := probeFsyncRate(b, dir, 200*time.Millisecond)
					l := mustOpen(b, filepath.Join(dir, "log"), Options{Flush: FlushSync, MaxBatchBytes: 4 << 20})
					defer l.Close()
					recs := benchRecords(batch, size)
					b.SetBytes(int64(batch * size))
					b.ReportAllocs()
					var next atomic.Int64
					var wg sync.WaitGroup
					f0 := l.fsyncs.Load()
					b.ResetTimer()
					for p := 0; p < producers; p++ {
						wg.Add(1)
						go func() {
							defer wg.Done()
							for next.Add(1) <= int64(b.N) {
								if _, err := l.Append(context.Background(), 0, recs); err != nil {
									b.Error(err)
									return
								}
							}
						}()
					}
					wg.Wait()
					b.StopTimer()
					reportRecords(b, int64(b.N*batch))
					b.ReportMetric(float64(l.fsyncs.Load()-f0)/b.Elapsed().Seconds(), "fsyncs/s")
					b.ReportMetric(disk, "disk-fsyncs/s")
				})
			}
		}
	}
}

// probeFsyncRate measures how many 4 KiB appends, each followed by an
// fdatasync, a fresh file in dir takes per second during d: the disk's
// own ceiling for one writer that waits for every write.
func probeFsyncRate(b *testing.B, dir string, d time.Duration) float64 {
	b.Helper()
	f, err := os.Create(filepath.Join(dir, "fsync-probe"))
	if err != nil {
		b.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 4096)
	n, start := 0, time.Now()
	for time.Since(start) < d {
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
		if err := syncData(f); err != nil {
			b.Fatal(err)
		}
		n++
	}
	return float64(n) / time.Since(start).Seconds()
}

// BenchmarkRead: sequential consumption of 100 B records in 64 KiB reads.
func BenchmarkRead(b *testing.B) {
	l := mustOpen(b, b.TempDir(), Options{Flush: FlushOS})
	defer l.Close()
	recs := benchRecords(1000, 100)
	for i := 0; i < 200; i++ {
		if _, err := l.Append(context.Background(), 0, recs); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	var n int64
	from := int64(0)
	for i := 0; i < b.N; i++ {
		got, err := l.Read(from, 64<<10)
		if err != nil {
			b.Fatal(err)
		}
		n += int64(len(got))
		from = got[len(got)-1].Offset + 1
		if from == l.EndOffset() {
			from = 0
		}
	}
	b.StopTimer()
	b.SetBytes(int64(64 << 10))
	reportRecords(b, n)
}

// BenchmarkOpenRecovery: opening a 115 MB log of 1000-record batches,
// after a crash (every byte verified) and after a clean Close (older
// segments walked header by header).
func BenchmarkOpenRecovery(b *testing.B) {
	dir := b.TempDir()
	opts := Options{Flush: FlushOS, SegmentBytes: 16 << 20}
	l := mustOpen(b, dir, opts)
	recs := benchRecords(1000, 100)
	for i := 0; i < 1000; i++ {
		if _, err := l.Append(context.Background(), 0, recs); err != nil {
			b.Fatal(err)
		}
	}
	size := l.Size()
	l.Close()
	for _, after := range []string{"crash", "clean"} {
		b.Run("after="+after, func(b *testing.B) {
			b.SetBytes(size)
			for i := 0; i < b.N; i++ {
				if after == "crash" {
					b.StopTimer()
					if err := os.Remove(filepath.Join(dir, cleanShutdownFile)); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
				l := mustOpen(b, dir, opts)
				l.Close()
			}
		})
	}
}
