package proxy

import (
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// BenchmarkTokenBucketTake measures a route's rate limit check: a bucket
// that always has a token (allowed), one that never has (refused, the
// wait computed), and the allowed path from every P at once on one
// bucket, where the compare and swap is contended. None allocates.
func BenchmarkTokenBucketTake(b *testing.B) {
	t0 := time.Unix(1e9, 0)
	b.Run("allowed", func(b *testing.B) {
		// A token per nanosecond: the clock moves one per take.
		bk := newTokenBucket(config.RateLimit{MaxTokens: 1 << 20, TokensPerFill: 1e9, FillInterval: time.Second}, t0)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if ok, _ := bk.take(t0.Add(time.Duration(i))); !ok {
				b.Fatal("refused")
			}
		}
	})
	b.Run("refused", func(b *testing.B) {
		bk := newTokenBucket(config.RateLimit{MaxTokens: 1, FillInterval: time.Hour}, t0)
		bk.take(t0)
		b.ReportAllocs()
		for b.Loop() {
			if ok, wait := bk.take(t0); ok || wait <= 0 {
				b.Fatal("let through")
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		bk := newTokenBucket(config.RateLimit{MaxTokens: 1 << 31, FillInterval: time.Hour}, t0)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				bk.take(t0)
			}
		})
	})
}
