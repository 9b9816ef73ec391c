package health

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
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

// BenchmarkHTTPCheck is one HTTP/1.1 check on a kept connection to a
// loopback server, without and with request headers (each check sends a
// copy of the prober's header).
func BenchmarkHTTPCheck(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	for _, bc := range []struct {
		name   string
		header http.Header
	}{
		{"no headers", nil},
		{"three headers", http.Header{"Authorization": {"Bearer abc"}, "X-Health-Token": {"s3cret"}, "Accept": {"application/json"}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			cfg := fastConfig(HTTP)
			cfg.Headers = bc.header
			c, err := New(cfg, []string{srv.Listener.Addr().String()})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if err := c.check(ctx, 0, time.Now()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
