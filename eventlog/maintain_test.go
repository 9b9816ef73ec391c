package eventlog

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestRetentionMovesLogStartAndOldOffsetsAnswer416(t *testing.T) {
	clock := newFakeClock()
	cfg := Config{Topics: map[string]TopicConfig{"events": {Partitions: 1, RetentionAge: time.Hour, SegmentBytes: 1024}}}
	tb := openTestBroker(t, t.TempDir(), cfg, clock.Now, Options{})
	ctx := context.Background()
	for i := range 50 {
		v := fmt.Sprintf(`"%s-%d"`, strings.Repeat("v", 100), i)
		if _, err := tb.Produce(ctx, "events", []ProduceRecord{{Value: []byte(v)}}, AcksAll); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(2 * time.Hour)
	// One more record in a fresh segment keeps the log non-empty.
	if _, err := tb.Produce(ctx, "events", []ProduceRecord{{Value: []byte(`"new"`)}}, AcksAll); err != nil {
		t.Fatal(err)
	}
	if err := tb.Maintain(); err != nil {
		t.Fatal(err)
	}
	top, _ := tb.Topic("events")
	p := top.Partitions()[0]
	if p.LogStartOffset() == 0 {
		t.Fatal("retention removed nothing")
	}
	_, err := tb.Fetch(ctx, "events", 0, 0, 1<<20, 0)
	var re *OffsetRangeError
	if !errors.As(err, &re) || re.Start != p.LogStartOffset() || re.End != 51 {
		t.Fatalf("fetch below log start: %v", err)
	}
	var e errorBody
	if st := call(t, "GET", tb.api.URL+"/v1/topics/events/partitions/0/records?offset=0", nil, nil, &e); st != 416 || *e.LogStartOffset != p.LogStartOffset() {
		t.Fatalf("HTTP fetch below log start: %d %+v", st, e)
	}
	res, err := tb.Fetch(ctx, "events", 0, p.LogStartOffset(), 1<<20, 0)
	if err != nil || len(res.Records) == 0 || res.Records[len(res.Records)-1].Offset != 50 {
		t.Fatalf("fetch from log start: %v %d", err, len(res.Records))
	}
}

func TestCompactedTopicKeepsLatestPerKey(t *testing.T) {
	cfg := Config{Topics: map[string]TopicConfig{"state": {Partitions: 1, Cleanup: "compact", SegmentBytes: 512}}}
	tb := openTestBroker(t, t.TempDir(), cfg, nil, Options{})
	ctx := context.Background()
	for i := range 40 {
		k := fmt.Sprintf("k%d", i%4)
		if _, err := tb.Produce(ctx, "state", []ProduceRecord{{Key: []byte(k), Value: []byte(fmt.Sprintf(`"%s-%d-%s"`, k, i, strings.Repeat("x", 40)))}}, AcksAll); err != nil {
			t.Fatal(err)
		}
	}
	if err := tb.Maintain(); err != nil {
		t.Fatal(err)
	}
	// Read everything from the start, following next_offset over gaps.
	latest := map[string]string{}
	var n int
	for off := int64(0); off < 40; {
		res, err := tb.Fetch(ctx, "state", 0, off, 256, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res.Records {
			latest[string(r.Key)] = string(r.Value)
			n++
		}
		if res.NextOffset <= off {
			t.Fatalf("no progress at %d", off)
		}
		off = res.NextOffset
	}
	if n >= 40 {
		t.Fatalf("compaction removed nothing (%d records)", n)
	}
	for i := 36; i < 40; i++ {
		k := fmt.Sprintf("k%d", i%4)
		if !strings.HasPrefix(latest[k], fmt.Sprintf(`"%s-%d-`, k, i)) {
			t.Fatalf("latest %s = %s", k, latest[k])
		}
	}
}
