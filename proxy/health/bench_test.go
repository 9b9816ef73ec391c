package health

import (
	"fmt"
	"sync/atomic"
	"testing"
)

func benchChecker(b testing.TB, n int) *Checker {
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("10.0.0.%d:80", i)
	}
	c, err := New(fastConfig(TCP), addrs)
	if err != nil {
		b.Fatal(err)
	}
	return c
}

func TestHealthyDoesNotAllocate(t *testing.T) {
	c := benchChecker(t, 8)
	defer c.Close()
	c.record(3, errDown, c.Status(3).LastCheck)
	if a := testing.AllocsPerRun(1000, func() {
		for i := range 8 {
			_ = c.Healthy(i)
		}
		_ = c.UnhealthyCount()
	}); a != 0 {
		t.Fatalf("Healthy allocates %v times per run", a)
	}
}

// sink keeps the compiler from dropping the calls measured.
var (
	sink         int
	parallelSink atomic.Int64
)

func BenchmarkHealthy(b *testing.B) {
	c := benchChecker(b, 16)
	defer c.Close()
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		n := 0
		for i := 0; b.Loop(); i++ {
			if c.Healthy(i & 15) {
				n++
			}
		}
		sink = n
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i, n := 0, 0
			for pb.Next() {
				if c.Healthy(i & 15) {
					n++
				}
				i++
			}
			parallelSink.Add(int64(n))
		})
	})
}
