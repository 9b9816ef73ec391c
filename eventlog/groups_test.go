package eventlog

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/eventlog/group"
)

type memberResp struct {
	MemberState
	Records []jsonRecord `json:"records"`
	Code    string       `json:"code"`
}

func join(t *testing.T, tb *testBroker, g, body string) MemberState {
	t.Helper()
	var m memberResp
	if st := call(t, "POST", tb.api.URL+"/v1/groups/"+g+"/members", body, nil, &m); st != 200 {
		t.Fatalf("join: %d %+v", st, m)
	}
	return m.MemberState
}

// consumer is a group member driven over HTTP: fetch, process, commit.
type consumer struct {
	t      *testing.T
	tb     *testBroker
	group  string
	id     string
	mu     sync.Mutex
	seen   map[string]int  // "p/offset" -> times received
	uncomm map[string]bool // received in a batch whose commit failed or never happened
	stop   chan struct{}
	done   chan struct{}
}

func (c *consumer) fetchAndCommit() (int, error) {
	var m memberResp
	url := fmt.Sprintf("%s/v1/groups/%s/members/%s/fetch", c.tb.api.URL, c.group, c.id)
	st := call(c.t, "POST", url, `{"wait":"50ms","max_bytes":512}`, nil, &m)
	if st != 200 {
		return 0, fmt.Errorf("fetch: %d %s", st, m.Code)
	}
	keys := make([]string, 0, len(m.Records))
	for _, r := range m.Records {
		keys = append(keys, fmt.Sprintf("%d/%d", *r.Partition, *r.Offset))
	}
	c.mu.Lock()
	for _, k := range keys {
		c.seen[k]++
	}
	c.mu.Unlock()
	if len(keys) == 0 {
		return 0, nil
	}
	var cr memberResp
	st = call(c.t, "POST", fmt.Sprintf("%s/v1/groups/%s/members/%s/commit", c.tb.api.URL, c.group, c.id),
		fmt.Sprintf(`{"generation":%d}`, m.Generation), nil, &cr)
	switch {
	case st == 200:
	case cr.Code == "rebalance_in_progress" || cr.Code == "partition_not_assigned":
		// The batch stays uncommitted: the new owner gets it again.
		c.mu.Lock()
		for _, k := range keys {
			c.uncomm[k] = true
		}
		c.mu.Unlock()
	default:
		return 0, fmt.Errorf("commit: %d %s", st, cr.Code)
	}
	return len(keys), nil
}

// Members join and leave while a producer keeps publishing: every record is
// consumed, and a record is consumed twice only if some member received it
// without committing it (at-least-once, never a skip).
func TestGroupMembersJoinAndLeaveWhileRecordsFlow(t *testing.T) {
	clock := newFakeClock()
	cfg := Config{Topics: map[string]TopicConfig{"events": {Partitions: 4}}, DefaultFlush: "os"}
	tb := openTestBroker(t, t.TempDir(), cfg, clock.Now, Options{})
	const total = 400

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range total {
			call(t, "POST", tb.api.URL+"/v1/topics/events/records",
				fmt.Sprintf(`{"key":"k%d","value":%d}`, i%37, i), nil, nil)
		}
	})

	newConsumer := func(body string) *consumer {
		st := join(t, tb, "workers", body)
		return &consumer{t: t, tb: tb, group: "workers", id: st.MemberID, seen: map[string]int{}, uncomm: map[string]bool{},
			stop: make(chan struct{}), done: make(chan struct{})}
	}
	var (
		cmu       sync.Mutex
		consumers []*consumer
	)
	runConsumer := func(c *consumer) {
		cmu.Lock()
		consumers = append(consumers, c)
		cmu.Unlock()
		wg.Go(func() {
			defer close(c.done)
			for {
				select {
				case <-c.stop:
					return
				case <-ctx.Done():
					return
				default:
				}
				if _, err := c.fetchAndCommit(); err != nil {
					t.Errorf("%s: %v", c.id, err)
					return
				}
			}
		})
	}
	long := `{"topics":["events"],"session_timeout":"60s"}`
	a := newConsumer(long)
	runConsumer(a)
	committed := func() int64 {
		var n int64
		for p := range int32(4) {
			o, _ := tb.CommittedOffset("workers", "events", p)
			n += o
		}
		return n
	}
	eventually(t, "first records committed", func() bool { return committed() >= 50 })
	b := newConsumer(long)
	runConsumer(b)
	eventually(t, "more records committed", func() bool { return committed() >= 150 })
	// a leaves cleanly mid-stream.
	close(a.stop)
	<-a.done
	if st := call(t, "DELETE", tb.api.URL+"/v1/groups/workers/members/"+a.id, nil, nil, nil); st != 204 {
		t.Fatalf("leave: %d", st)
	}
	// c joins with a short session, fetches once without committing, and
	// goes silent; its session expires on the injected clock.
	c := newConsumer(`{"topics":["events"],"session_timeout":"2s"}`)
	var m memberResp
	call(t, "POST", tb.api.URL+"/v1/groups/workers/members/"+c.id+"/fetch", `{}`, nil, &m)
	for _, r := range m.Records {
		c.seen[fmt.Sprintf("%d/%d", *r.Partition, *r.Offset)]++
		c.uncomm[fmt.Sprintf("%d/%d", *r.Partition, *r.Offset)] = true
	}
	consumers = append(consumers, c)
	clock.Advance(3 * time.Second)
	d := newConsumer(long)
	runConsumer(d)
	var gi GroupInfo
	call(t, "GET", tb.admin.URL+"/groups/workers", nil, nil, &gi)
	if len(gi.Members) != 2 {
		t.Fatalf("members after expiry: %+v", gi.Members)
	}
	eventually(t, "all records committed", func() bool { return committed() == total })
	cancel()
	wg.Wait()

	seen := map[string]int{}
	uncommitted := map[string]bool{}
	for _, c := range consumers {
		for k, n := range c.seen {
			seen[k] += n
		}
		for k := range c.uncomm {
			uncommitted[k] = true
		}
	}
	top, _ := tb.Topic("events")
	var want int
	for _, p := range top.Partitions() {
		for o := range p.HighWatermark() {
			want++
			k := fmt.Sprintf("%d/%d", p.ID(), o)
			if seen[k] == 0 {
				t.Errorf("record %s never consumed", k)
			}
			if seen[k] > 1 && !uncommitted[k] {
				var who []string
				for _, c := range consumers {
					if c.seen[k] > 0 {
						who = append(who, fmt.Sprintf("%s:%d", c.id, c.seen[k]))
					}
				}
				t.Errorf("record %s consumed %d times without a failed commit (%v)", k, seen[k], who)
			}
		}
	}
	if want != total {
		t.Fatalf("log holds %d records, want %d", want, total)
	}
	// Lag is zero everywhere.
	for _, l := range tb.lag("workers") {
		if l.Lag != 0 {
			t.Errorf("lag %+v", l)
		}
	}
}

func TestCommittedOffsetsSurviveRestartAndNeverMoveBackwards(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Topics: map[string]TopicConfig{"events": {Partitions: 1}}}
	tb := openTestBroker(t, dir, cfg, nil, Options{})
	for i := range 10 {
		call(t, "POST", tb.api.URL+"/v1/topics/events/records", fmt.Sprintf(`{"value":%d}`, i), nil, nil)
	}
	st := join(t, tb, "g", `{"topics":["events"]}`)
	commit := func(off int64) (int, string) {
		var e errorBody
		code := call(t, "POST", tb.api.URL+"/v1/groups/g/members/"+st.MemberID+"/commit",
			fmt.Sprintf(`{"generation":%d,"offsets":[{"topic":"events","partition":0,"offset":%d}]}`, st.Generation, off), nil, &e)
		return code, e.Code
	}
	if code, _ := commit(7); code != 200 {
		t.Fatalf("commit 7: %d", code)
	}
	if code, c := commit(3); code != 409 || c != "offset_regression" {
		t.Fatalf("commit backwards: %d %s", code, c)
	}
	if code, c := commit(11); code != 416 || c != "offset_out_of_range" {
		t.Fatalf("commit past HW: %d %s", code, c)
	}
	if code, c := func() (int, string) {
		var e errorBody
		code := call(t, "POST", tb.api.URL+"/v1/groups/g/members/"+st.MemberID+"/commit",
			fmt.Sprintf(`{"generation":%d,"offsets":[{"topic":"events","partition":0,"offset":8}]}`, st.Generation+1), nil, &e)
		return code, e.Code
	}(); code != 409 || c != "rebalance_in_progress" {
		t.Fatalf("commit with a future generation: %d %s", code, c)
	}
	tb.close()

	tb = openTestBroker(t, dir, cfg, nil, Options{})
	if o, ok := tb.CommittedOffset("g", "events", 0); !ok || o != 7 {
		t.Fatalf("after restart committed = %d %v, want 7", o, ok)
	}
	// A new member resumes from the committed offset.
	st = join(t, tb, "g", `{"topics":["events"]}`)
	var m memberResp
	call(t, "POST", tb.api.URL+"/v1/groups/g/members/"+st.MemberID+"/fetch", `{}`, nil, &m)
	if len(m.Records) != 3 || *m.Records[0].Offset != 7 {
		t.Fatalf("resume: %+v", m.Records)
	}
	// Explicit reset is the one way back, and it is durable too.
	var reset struct{ Committed []CommitOffset }
	if code := call(t, "POST", tb.api.URL+"/v1/groups/g/offsets/reset", `{"topic":"events","to":"earliest"}`, nil, &reset); code != 200 || reset.Committed[0].Offset != 0 {
		t.Fatalf("reset: %d %+v", code, reset)
	}
	call(t, "POST", tb.api.URL+"/v1/groups/g/members/"+st.MemberID+"/fetch", `{}`, nil, &m)
	if len(m.Records) != 10 || *m.Records[0].Offset != 0 {
		t.Fatalf("after reset: %d records", len(m.Records))
	}
	if code := call(t, "POST", tb.admin.URL+"/groups/g/offsets/reset", `{"topic":"events","partition":0,"to":"latest"}`, nil, &reset); code != 200 || reset.Committed[0].Offset != 10 {
		t.Fatalf("reset latest: %d %+v", code, reset)
	}
	var e errorBody
	if code := call(t, "POST", tb.admin.URL+"/groups/g/offsets/reset", `{"topic":"events","to":"99"}`, nil, &e); code != 416 {
		t.Fatalf("reset out of range: %d %+v", code, e)
	}
	tb.close()
	tb = openTestBroker(t, dir, cfg, nil, Options{})
	if o, _ := tb.CommittedOffset("g", "events", 0); o != 10 {
		t.Fatalf("reset not durable: %d", o)
	}
}

func TestSessionTimeoutExpiresMemberOnInjectedClock(t *testing.T) {
	clock := newFakeClock()
	cfg := Config{Topics: map[string]TopicConfig{"events": {Partitions: 4}}, Groups: GroupsConfig{Assignor: "sticky"}}
	tb := openTestBroker(t, t.TempDir(), cfg, clock.Now, Options{})
	a := join(t, tb, "g", `{"topics":["events"],"session_timeout":"5s"}`)
	b := join(t, tb, "g", `{"topics":["events"],"session_timeout":"30s"}`)
	if b.Generation != 2 || len(b.Assignment) != 2 || b.Assignor != "sticky" {
		t.Fatalf("b joined: %+v", b)
	}
	clock.Advance(4 * time.Second)
	var hb memberResp
	if code := call(t, "POST", tb.api.URL+"/v1/groups/g/members/"+a.MemberID+"/heartbeat", nil, nil, &hb); code != 200 || hb.Generation != 2 {
		t.Fatalf("a heartbeat in time: %d %+v", code, hb)
	}
	clock.Advance(5*time.Second + time.Millisecond)
	if code := call(t, "POST", tb.api.URL+"/v1/groups/g/members/"+a.MemberID+"/heartbeat", nil, nil, &hb); code != 404 || hb.Code != "unknown_member" {
		t.Fatalf("a heartbeat late: %d %+v", code, hb)
	}
	hb = memberResp{}
	call(t, "POST", tb.api.URL+"/v1/groups/g/members/"+b.MemberID+"/heartbeat", nil, nil, &hb)
	if hb.Generation != 3 || len(hb.Assignment) != 4 {
		t.Fatalf("b after a expired: %+v", hb)
	}
	// Sticky: b kept what it had.
	for _, tp := range b.Assignment {
		found := false
		for _, now := range hb.Assignment {
			found = found || now == tp
		}
		if !found {
			t.Fatalf("sticky assignor moved %v away from b", tp)
		}
	}
}

func TestGroupFetchLongPollWakesOnPublish(t *testing.T) {
	tb := openTestBroker(t, t.TempDir(), Config{Topics: map[string]TopicConfig{"events": {Partitions: 2}}}, nil, Options{})
	st := join(t, tb, "g", `{"topics":["events"]}`)
	done := make(chan GroupFetchResult, 1)
	go func() {
		res, err := tb.GroupFetch(context.Background(), "g", st.MemberID, 1<<20, 20*time.Second)
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	waitParked(t, tb, 1)
	p := int32(1)
	if _, err := tb.Produce(context.Background(), "events", []ProduceRecord{{Value: []byte("1"), Partition: &p}}, AcksAll); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-done:
		if len(res.Records) != 1 || res.Records[0].Partition != 1 {
			t.Fatalf("woken group fetch: %+v", res.Records)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("group fetch not woken")
	}
	// A caller that goes away ends the wait.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		res GroupFetchResult
		err error
	}
	got := make(chan result, 1)
	start := time.Now()
	go func() {
		res, err := tb.GroupFetch(ctx, "g", st.MemberID, 1<<20, 20*time.Second)
		got <- result{res, err}
	}()
	// The first fetch has returned, so the one parked is this one.
	waitParked(t, tb, 1)
	cancel()
	select {
	case r := <-got:
		if r.err != nil || len(r.res.Records) != 0 || time.Since(start) > 10*time.Second {
			t.Fatalf("cancelled fetch: %v %+v after %v", r.err, r.res, time.Since(start))
		}
	case <-time.After(15 * time.Second):
		t.Fatal("cancelled group fetch did not return")
	}
}

func TestLagGaugePerTopicGroupPartition(t *testing.T) {
	tb := openTestBroker(t, t.TempDir(), Config{Topics: map[string]TopicConfig{"events": {Partitions: 2}}}, nil, Options{})
	ctx := context.Background()
	for i := range 5 {
		p := int32(i % 2)
		tb.Produce(ctx, "events", []ProduceRecord{{Value: []byte(strconv.Itoa(i)), Partition: &p}}, AcksAll)
	}
	if err := tb.offsets.commit(ctx, "g", group.TopicPartition{Topic: "events", Partition: 0}, 1, false); err != nil {
		t.Fatal(err)
	}
	mfs, err := tb.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() != "outrigger_eventlog_consumer_lag" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["group"] == "g" && labels["topic"] == "events" && labels["partition"] == "0" {
				found = true
				if m.GetGauge().GetValue() != 2 {
					t.Fatalf("lag = %v, want 2 (HW 3 - committed 1)", m.GetGauge().GetValue())
				}
			}
		}
	}
	if !found {
		t.Fatal("lag gauge missing")
	}
	var produced float64
	for _, mf := range mfs {
		if mf.GetName() == "outrigger_eventlog_produced_records_total" {
			for _, m := range mf.GetMetric() {
				produced += m.GetCounter().GetValue()
			}
		}
	}
	if produced != 5 {
		t.Fatalf("produced_records_total = %v", produced)
	}
}
