package eventlog

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

type delivery struct {
	header http.Header
	body   string
	at     time.Time
}

// pushApp is a real HTTP app that records every delivery; fail decides the
// status of each.
type pushApp struct {
	srv  *httptest.Server
	mu   sync.Mutex
	got  []delivery
	fail func(body string, attempt int) int
}

func newPushApp(t *testing.T, fail func(body string, attempt int) int) *pushApp {
	a := &pushApp{fail: fail}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		attempt, _ := strconv.Atoi(r.Header.Get("X-Outrigger-Delivery-Attempt"))
		a.mu.Lock()
		a.got = append(a.got, delivery{r.Header.Clone(), string(b), time.Now()})
		a.mu.Unlock()
		status := 204
		if r.URL.Path != "/events/orders" {
			status = 404
		} else if a.fail != nil {
			status = a.fail(string(b), attempt)
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *pushApp) deliveries() []delivery {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]delivery(nil), a.got...)
}

// runBroker runs tb.Run until the test ends (before tb closes) or stop is
// called; stop waits for Run to return.
func runBroker(t *testing.T, tb *testBroker) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tb.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Error("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func pushConfig(retry RetryConfig, dlq string) Config {
	cfg := Config{
		Topics: map[string]TopicConfig{"orders": {Partitions: 3}, "orders.dlq": {}},
		Subscriptions: []SubscriptionConfig{{
			Topic: "orders", Group: "billing", Route: "/events/orders", InFlight: 2,
			Retry: retry, DeadLetterTopic: dlq, Timeout: 5 * time.Second,
		}},
	}
	return cfg
}

func TestPushDeliversCloudEventsInPartitionOrderAndResumes(t *testing.T) {
	app := newPushApp(t, nil)
	dir := t.TempDir()
	cfg := pushConfig(RetryConfig{}, "")
	tb := openTestBroker(t, dir, cfg, nil, Options{AppURL: app.srv.URL})
	stop := runBroker(t, tb)
	const n = 60
	for i := range n {
		body := fmt.Sprintf(`{"key":"cust-%d","value":{"n":%d},"headers":{"traceparent":"00-abc-%d-01"}}`, i%7, i, i)
		if st := call(t, "POST", tb.api.URL+"/v1/topics/orders/records", body, nil, nil); st != 200 {
			t.Fatalf("publish %d: %d", i, st)
		}
	}
	eventually(t, "all deliveries", func() bool { return len(app.deliveries()) >= n })
	last := map[string]int64{}
	for _, d := range app.deliveries() {
		h := d.header
		parts := strings.Split(h.Get("Ce-Id"), "/")
		if len(parts) != 3 || parts[0] != "orders" {
			t.Fatalf("ce-id %q", h.Get("Ce-Id"))
		}
		off, _ := strconv.ParseInt(parts[2], 10, 64)
		if prev, ok := last[parts[1]]; ok && off != prev+1 {
			t.Fatalf("partition %s: offset %d after %d (out of order or skipped)", parts[1], off, prev)
		}
		last[parts[1]] = off
		if h.Get("Ce-Specversion") != "1.0" || h.Get("Ce-Source") != "/outrigger/eventlog/topics/orders" ||
			h.Get("Ce-Type") != "outrigger.eventlog.record" || h.Get("Content-Type") != "application/json" {
			t.Fatalf("CloudEvents headers: %v", h)
		}
		if _, err := time.Parse(time.RFC3339Nano, h.Get("Ce-Time")); err != nil {
			t.Fatalf("ce-time %q: %v", h.Get("Ce-Time"), err)
		}
		var i int
		fmt.Sscanf(d.body, `{"n":%d}`, &i)
		if h.Get("Ce-Subject") != fmt.Sprintf("cust-%d", i%7) || h.Get("Traceparent") != fmt.Sprintf("00-abc-%d-01", i) {
			t.Fatalf("record %d: subject %q traceparent %q", i, h.Get("Ce-Subject"), h.Get("Traceparent"))
		}
		if p, _ := strconv.Atoi(parts[1]); p != KeyPartition([]byte(fmt.Sprintf("cust-%d", i%7)), 3) {
			t.Fatalf("record %d delivered from partition %d", i, p)
		}
	}
	// committedAll reports whether the group has committed want records in
	// all and has no lag.
	committedAll := func(want int64) func() bool {
		return func() bool {
			gi, err := tb.Group("billing")
			if err != nil || len(gi.Offsets) == 0 {
				return false
			}
			var sum int64
			for _, o := range gi.Offsets {
				if o.Lag != 0 {
					return false
				}
				sum += o.Committed
			}
			return sum == want
		}
	}
	// Progress is committed: lag drains to zero.
	eventually(t, "offsets committed", committedAll(n))
	stop()
	tb.close()

	// After a restart only new records are delivered.
	before := len(app.deliveries())
	tb = openTestBroker(t, dir, cfg, nil, Options{AppURL: app.srv.URL})
	runBroker(t, tb)
	call(t, "POST", tb.api.URL+"/v1/topics/orders/records", `{"key":"cust-1","value":{"n":1000}}`, nil, nil)
	eventually(t, "delivery after restart", func() bool { return len(app.deliveries()) > before })
	// Once the new record is committed the subscriber has moved past
	// everything: a wrong redelivery (resuming before the committed offset,
	// or delivering the new record again) would have happened by then.
	eventually(t, "new record committed", committedAll(n+1))
	got := app.deliveries()[before:]
	if len(got) != 1 || got[0].body != `{"n":1000}` {
		t.Fatalf("after restart delivered %d records, first %q", len(got), got[0].body)
	}
}

func TestPushRetriesWithBackoffThenDeadLettersAndMovesOn(t *testing.T) {
	app := newPushApp(t, func(body string, attempt int) int {
		switch {
		case strings.Contains(body, "poison"):
			return 500
		case strings.Contains(body, "flaky") && attempt == 1:
			return 503
		}
		return 200
	})
	retry := RetryConfig{MaxAttempts: 3, InitialBackoff: 20 * time.Millisecond, MaxBackoff: 40 * time.Millisecond}
	tb := openTestBroker(t, t.TempDir(), pushConfig(retry, "orders.dlq"), nil, Options{AppURL: app.srv.URL})
	runBroker(t, tb)
	// All on one key: one partition, so order is observable.
	for _, v := range []string{"first", "poison", "flaky", "last"} {
		call(t, "POST", tb.api.URL+"/v1/topics/orders/records", fmt.Sprintf(`{"key":"k","value":%q}`, v), nil, nil)
	}
	eventually(t, "last delivered", func() bool {
		for _, d := range app.deliveries() {
			if d.body == `"last"` {
				return true
			}
		}
		return false
	})
	var order []string
	var poisonAt []time.Time
	for _, d := range app.deliveries() {
		order = append(order, d.body+"#"+d.header.Get("X-Outrigger-Delivery-Attempt"))
		if d.body == `"poison"` {
			poisonAt = append(poisonAt, d.at)
		}
	}
	want := `"first"#1 "poison"#1 "poison"#2 "poison"#3 "flaky"#1 "flaky"#2 "last"#1`
	if strings.Join(order, " ") != want {
		t.Fatalf("deliveries:\n got %s\nwant %s", strings.Join(order, " "), want)
	}
	// Back-off: 20ms after the first failure, 40ms after the second.
	if g := poisonAt[1].Sub(poisonAt[0]); g < 20*time.Millisecond {
		t.Fatalf("second attempt after %v", g)
	}
	if g := poisonAt[2].Sub(poisonAt[1]); g < 40*time.Millisecond {
		t.Fatalf("third attempt after %v", g)
	}
	// The poison record is in the dead-letter topic, saying why.
	res, err := tb.Fetch(context.Background(), "orders.dlq", 0, 0, 1<<20, 5*time.Second)
	if err != nil || len(res.Records) != 1 {
		t.Fatalf("dlq: %v %+v", err, res)
	}
	h := map[string]string{}
	for _, x := range res.Records[0].Headers {
		h[x.Key] = string(x.Value)
	}
	if string(res.Records[0].Value) != `"poison"` || string(res.Records[0].Key) != "k" ||
		h[DLQHeaderReason] != "app answered 500" || h[DLQHeaderTopic] != "orders" || h[DLQHeaderOffset] != "1" ||
		h[DLQHeaderAttempts] != "3" || h[DLQHeaderSubscription] != "orders.billing" {
		t.Fatalf("dlq record %q headers %v", res.Records[0].Value, h)
	}
	// Everything is committed past the poison record.
	p := int32(KeyPartition([]byte("k"), 3))
	eventually(t, "commit past poison", func() bool {
		o, _ := tb.CommittedOffset("billing", "orders", p)
		return o == 4
	})
	mfs, _ := tb.reg.Gather()
	counts := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" {
					key += "/" + l.GetValue()
				}
			}
			counts[key] += m.GetCounter().GetValue()
		}
	}
	if counts["outrigger_eventlog_deliveries_total/success"] != 3 || counts["outrigger_eventlog_deliveries_total/failure"] != 4 ||
		counts["outrigger_eventlog_dead_lettered_total"] != 1 {
		t.Fatalf("delivery metrics: %v", counts)
	}
}

func TestPushStartFromLatestSkipsOldRecordsAndKeepsItsPlaceAcrossRestart(t *testing.T) {
	app := newPushApp(t, nil)
	dir := t.TempDir()
	cfg := pushConfig(RetryConfig{}, "")
	cfg.Subscriptions[0].StartFrom = "latest"
	cfg.Topics["orders"] = TopicConfig{Partitions: 1}
	tb := openTestBroker(t, dir, cfg, nil, Options{AppURL: app.srv.URL})
	for i := range 3 {
		call(t, "POST", tb.api.URL+"/v1/topics/orders/records", fmt.Sprintf(`{"value":"old-%d"}`, i), nil, nil)
	}
	stop := runBroker(t, tb)
	eventually(t, "starting point committed", func() bool {
		o, ok := tb.CommittedOffset("billing", "orders", 0)
		return ok && o == 3
	})
	stop()
	// Published while the subscription is stopped: delivered after restart.
	call(t, "POST", tb.api.URL+"/v1/topics/orders/records", `{"value":"while-down"}`, nil, nil)
	tb.close()
	tb = openTestBroker(t, dir, cfg, nil, Options{AppURL: app.srv.URL})
	runBroker(t, tb)
	eventually(t, "delivery", func() bool { return len(app.deliveries()) == 1 })
	if d := app.deliveries(); d[0].body != `"while-down"` {
		t.Fatalf("delivered %q", d[0].body)
	}
}
