package breaker

import (
	"errors"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"
)

// The closed-state fast path (admit a call, report its outcome), next to
// sony/gobreaker's two-step and Execute forms doing the same work. Every
// 1000th call fails, so that the failure paths are exercised but nothing
// trips. "_now" variants read time.Now twice per call, as gobreaker does
// internally and as the proxy does to time the call.

var errBench = errors.New("upstream failed")

func benchBreaker(b *testing.B, w WindowConfig) *Breaker {
	br, err := New(Config{Window: w, SlowCalls: SlowCallsConfig{DurationThreshold: time.Second}})
	if err != nil {
		b.Fatal(err)
	}
	return br
}

type fastPath struct {
	name string
	// op returns a function making one call; i numbers the call.
	op func(b *testing.B) func(i int)
}

func fastPaths() []fastPath {
	outrigger := func(w WindowConfig, readClock bool) func(b *testing.B) func(int) {
		return func(b *testing.B) func(int) {
			br := benchBreaker(b, w)
			fixed := time.Now()
			return func(i int) {
				now := fixed
				if readClock {
					now = time.Now()
				}
				p, err := br.Allow(now)
				if err != nil {
					b.Fatal(err)
				}
				if readClock {
					now = time.Now()
				}
				p.Done(now, i%1000 == 999)
			}
		}
	}
	count := WindowConfig{Size: 100}
	timed := WindowConfig{Type: WindowTime, Duration: 10 * time.Second, Buckets: 10}
	return []fastPath{
		{"outrigger_count", outrigger(count, false)},
		{"outrigger_count_now", outrigger(count, true)},
		{"outrigger_time_now", outrigger(timed, true)},
		{"gobreaker_twostep", func(b *testing.B) func(int) {
			cb := gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{Name: "bench"})
			return func(i int) {
				done, err := cb.Allow()
				if err != nil {
					b.Fatal(err)
				}
				if i%1000 == 999 {
					done(errBench)
				} else {
					done(nil)
				}
			}
		}},
		{"gobreaker_execute", func(b *testing.B) func(int) {
			cb := gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{Name: "bench"})
			return func(i int) {
				_, _ = cb.Execute(func() (struct{}, error) {
					if i%1000 == 999 {
						return struct{}{}, errBench
					}
					return struct{}{}, nil
				})
			}
		}},
	}
}

func BenchmarkFastPath(b *testing.B) {
	for _, fp := range fastPaths() {
		b.Run("serial/"+fp.name, func(b *testing.B) {
			op := fp.op(b)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				op(i)
				i++
			}
		})
	}
	for _, fp := range fastPaths() {
		b.Run("parallel/"+fp.name, func(b *testing.B) {
			op := fp.op(b)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					op(i)
					i++
				}
			})
		})
	}
}

// BenchmarkOpenReject is the cost of refusing a call while open.
func BenchmarkOpenReject(b *testing.B) {
	br := benchBreaker(b, WindowConfig{})
	now := time.Now()
	br.ForceOpen(now)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := br.Allow(now); err == nil {
				b.Fatal("admitted while open")
			}
		}
	})
}

func BenchmarkLimits(b *testing.B) {
	l, err := NewLimits(LimitsConfig{MaxRequests: 1 << 20, RetryBudget: &RetryBudgetConfig{}})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("request/serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := l.Acquire(LimitRequests); err != nil {
				b.Fatal(err)
			}
			l.Release(LimitRequests)
		}
	})
	b.Run("request/parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := l.Acquire(LimitRequests); err != nil {
					b.Fatal(err)
				}
				l.Release(LimitRequests)
			}
		})
	})
	b.Run("retry_budget/parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := l.Acquire(LimitRetries); err == nil {
					l.Release(LimitRetries)
				}
			}
		})
	})
}

func BenchmarkOutlierRecord(b *testing.B) {
	const n = 16
	d, err := NewDetector(OutlierConfig{}, n)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	ok := Verdict{Reason: "ok"}
	bad := Verdict{Failure: true, Gateway: true, Reason: "http_503"}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			v := ok
			if i%100 == 99 {
				v = bad
			}
			d.Record(i%n, now, v)
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				v := ok
				if i%100 == 99 {
					v = bad
				}
				d.Record(i%n, now, v)
				i++
			}
		})
	})
	b.Run("eligible", func(b *testing.B) {
		b.ReportAllocs()
		dst := make([]int, 0, n)
		for b.Loop() {
			dst = d.Eligible(now, dst[:0])
		}
	})
}

func BenchmarkClassify(b *testing.B) {
	c, err := NewClassifier(ClassifierConfig{})
	if err != nil {
		b.Fatal(err)
	}
	o := Outcome{HTTPStatus: 200, GRPCStatus: 14}
	b.ReportAllocs()
	for b.Loop() {
		if !c.Classify(o).Failure {
			b.Fatal("UNAVAILABLE is a failure")
		}
	}
}
