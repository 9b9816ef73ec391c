package eventlog

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/eventlog/segment"
)

// Records in the log past the high watermark (appended, not yet committed
// by the in-sync set) are invisible to readers until it moves.
func TestReadersStopAtHighWatermarkNotLogEnd(t *testing.T) {
	tb := openTestBroker(t, t.TempDir(), Config{Topics: map[string]TopicConfig{"t": {}}}, nil, Options{})
	top, _ := tb.Topic("t")
	p := top.Partitions()[0]
	if _, err := p.Append(context.Background(), []segment.Record{{Value: []byte("1")}}, AcksAll); err != nil {
		t.Fatal(err)
	}
	// Append below the partition's write path: the log end moves, the
	// high watermark does not.
	if _, err := p.log.Append(context.Background(), p.LeaderEpoch(), []segment.Record{{Value: []byte("2")}}); err != nil {
		t.Fatal(err)
	}
	if p.LogEndOffset() != 2 || p.HighWatermark() != 1 {
		t.Fatalf("LEO %d HW %d", p.LogEndOffset(), p.HighWatermark())
	}
	res, err := tb.Fetch(context.Background(), "t", 0, 0, 1<<20, 0)
	if err != nil || len(res.Records) != 1 || res.NextOffset != 1 {
		t.Fatalf("fetch: %v %+v", err, res)
	}
	p.advanceHW(2)
	res, _ = tb.Fetch(context.Background(), "t", 0, 1, 1<<20, 0)
	if len(res.Records) != 1 || string(res.Records[0].Value) != "2" {
		t.Fatalf("after HW moved: %+v", res)
	}
}

func TestIdempotencyStoreConflictAndMaxKeys(t *testing.T) {
	cfg := Config{Topics: map[string]TopicConfig{"t": {}}, Idempotency: IdempotencyConfig{MaxKeys: 2}}
	tb := openTestBroker(t, t.TempDir(), cfg, nil, Options{})
	s := tb.idem
	if _, ok, err := s.begin("t/a"); ok || err != nil {
		t.Fatal(ok, err)
	}
	if _, _, err := s.begin("t/a"); !errors.Is(err, ErrIdempotencyConflict) {
		t.Fatalf("concurrent use of a key: %v", err)
	}
	ctx := context.Background()
	if err := s.finish(ctx, "t/a", []ProduceResult{{0, 0}}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"t/b", "t/c"} {
		s.begin(k)
		s.finish(ctx, k, []ProduceResult{{0, 1}})
	}
	if _, ok, _ := s.begin("t/a"); ok {
		t.Fatal("oldest key kept beyond max_keys")
	}
	s.finish(ctx, "t/a", nil)
	if r, ok, _ := s.begin("t/c"); !ok || r[0].Offset != 1 {
		t.Fatalf("newest key lost: %v %v", r, ok)
	}
	var e errorBody
	if st := call(t, "POST", tb.api.URL+"/v1/topics/t/records", `{"value":1}`, http.Header{"Idempotency-Key": {"has space"}}, &e); st != 400 {
		t.Fatalf("bad key: %d %+v", st, e)
	}
}

func TestCloudEventHeaders(t *testing.T) {
	h := http.Header{}
	ts := time.Date(2026, 11, 27, 4, 0, 0, 123e6, time.UTC)
	setCloudEventHeaders(h, "orders", 2, segment.Record{
		Offset: 17, Timestamp: ts, Key: []byte("ключ 1"), Value: []byte{0xff, 0},
		Headers: []segment.Header{
			{Key: "ce-type", Value: []byte("com.example.order.created")},
			{Key: "ce-id", Value: []byte("forged")},
			{Key: "Connection", Value: []byte("close")},
			{Key: "bad header", Value: []byte("x")},
			{Key: "x-note", Value: []byte("line\nbreak")},
		},
	})
	want := map[string]string{
		"Ce-Specversion": "1.0",
		"Ce-Id":          "orders/2/17",
		"Ce-Source":      "/outrigger/eventlog/topics/orders",
		"Ce-Type":        "com.example.order.created",
		"Ce-Time":        "2026-11-27T04:00:00.123Z",
		"Ce-Subject":     "%D0%BA%D0%BB%D1%8E%D1%87%201",
		"Content-Type":   "application/octet-stream",
		"X-Note":         "line%0Abreak",
		"Connection":     "",
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if len(h.Values("Ce-Id")) != 1 || h.Get("Bad Header") != "" {
		t.Errorf("headers %v", h)
	}
}

func TestBackoffDoublesUpToCap(t *testing.T) {
	r := RetryConfig{InitialBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}
	for n, want := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		if got := backoff(r, n+1); got != want*time.Millisecond {
			t.Errorf("backoff after failure %d = %v, want %v", n+1, got, want*time.Millisecond)
		}
	}
}

// Ending Run's context releases parked long polls, so the HTTP server can
// drain without waiting out every poll.
func TestShutdownEndsLongPolls(t *testing.T) {
	tb := openTestBroker(t, t.TempDir(), Config{Topics: map[string]TopicConfig{"t": {}}}, nil, Options{})
	st, err := tb.JoinGroup("g", JoinRequest{Topics: []string{"t"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() { tb.Run(ctx); close(runDone) }()
	done := make(chan struct{}, 2)
	go func() { tb.Fetch(context.Background(), "t", 0, 0, 1<<20, 25*time.Second); done <- struct{}{} }()
	go func() {
		tb.GroupFetch(context.Background(), "g", st.MemberID, 1<<20, 25*time.Second)
		done <- struct{}{}
	}()
	waitParked(t, tb, 2)
	start := time.Now()
	cancel()
	<-runDone
	for range 2 {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("long poll outlived shutdown")
		}
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("long polls took %v to end", el)
	}
}
