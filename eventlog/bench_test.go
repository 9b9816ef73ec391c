package eventlog

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkPublish100B measures in-process publish throughput of 100-byte
// records through Broker.Produce (acks=1) under each flush policy, one
// record per call from one or many goroutines, and 100 records per call.
func BenchmarkPublish100B(b *testing.B) {
	value := bytes.Repeat([]byte("x"), 100)
	for _, c := range []struct {
		name     string
		flush    string
		parallel bool
		batch    int
	}{
		{"sync/serial", "sync", false, 1},
		{"sync/parallel", "sync", true, 1},
		{"sync/batch100", "sync", false, 100},
		{"os/serial", "os", false, 1},
		{"os/parallel", "os", true, 1},
	} {
		b.Run(c.name, func(b *testing.B) {
			cfg := Config{Topics: map[string]TopicConfig{"bench": {Partitions: 4}}, DefaultFlush: c.flush}
			tb := openTestBroker(b, b.TempDir(), cfg, nil, Options{})
			ctx := context.Background()
			recs := make([]ProduceRecord, c.batch)
			for i := range recs {
				recs[i] = ProduceRecord{Key: []byte(fmt.Sprintf("key-%d", i%16)), Value: value}
			}
			b.SetBytes(int64(100 * c.batch))
			b.ResetTimer()
			start := time.Now()
			if c.parallel {
				b.SetParallelism(8)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := tb.Produce(ctx, "bench", recs, AcksLeader); err != nil {
							b.Error(err)
							return
						}
					}
				})
			} else {
				for b.Loop() {
					if _, err := tb.Produce(ctx, "bench", recs, AcksLeader); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.N*c.batch)/time.Since(start).Seconds(), "records/s")
		})
	}
}

// BenchmarkPublishSync: 64 goroutines publish one 100-byte record per call
// through Broker.Produce (acks=1, flush sync) to a one-partition topic, so
// that every call meets the same log: the figure shows whether the broker
// lets concurrent callers share the log's group commit.
func BenchmarkPublishSync(b *testing.B) {
	for _, callers := range []int{1, 64} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			cfg := Config{Topics: map[string]TopicConfig{"bench": {Partitions: 1}}, DefaultFlush: "sync"}
			tb := openTestBroker(b, b.TempDir(), cfg, nil, Options{})
			ctx := context.Background()
			recs := []ProduceRecord{{Key: []byte("key"), Value: bytes.Repeat([]byte("x"), 97)}}
			b.SetBytes(100)
			b.ReportAllocs()
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for range callers {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						if _, err := tb.Produce(ctx, "bench", recs, AcksLeader); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkPublishToDeliveryLatency publishes one record at a time through
// the HTTP API (acks=all, flush sync) and measures the time until the push
// subscription delivers it to a real HTTP app; it reports p50 and p99.
func BenchmarkPublishToDeliveryLatency(b *testing.B) {
	got := make(chan time.Time, 1)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(204)
		got <- time.Now()
	}))
	defer app.Close()
	cfg := Config{
		Topics:        map[string]TopicConfig{"orders": {Partitions: 1}},
		Subscriptions: []SubscriptionConfig{{Topic: "orders", Group: "bench", Route: "/events/orders"}},
	}
	tb := openTestBroker(b, b.TempDir(), cfg, nil, Options{AppURL: app.URL})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tb.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	body := []byte(`{"key":"k","value":{"payload":"` + string(bytes.Repeat([]byte("x"), 80)) + `"}}`)
	lat := make([]time.Duration, 0, 1024)
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		resp, err := client.Post(tb.api.URL+"/v1/topics/orders/records", "application/json", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("publish: %d", resp.StatusCode)
		}
		select {
		case at := <-got:
			lat = append(lat, at.Sub(start))
		case <-time.After(10 * time.Second):
			b.Fatal("no delivery")
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	}
}
