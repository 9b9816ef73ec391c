package eventlog

import (
	"context"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// metricByLabels finds the series of name whose labels include want.
func metricByLabels(t *testing.T, tb *testBroker, name string, want map[string]string) *dto.Metric {
	t.Helper()
	mfs, err := tb.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue next
				}
			}
			return m
		}
	}
	t.Fatalf("no %s series with labels %v", name, want)
	return nil
}

func TestLogStatsAreExportedPerTopicPartition(t *testing.T) {
	tb := openTestBroker(t, t.TempDir(), Config{Topics: map[string]TopicConfig{"events": {Partitions: 2}}, DefaultFlush: "sync"}, nil, Options{})
	ctx := context.Background()
	p1 := int32(1)
	for range 3 {
		if _, err := tb.Produce(ctx, "events", []ProduceRecord{{Value: []byte("v"), Partition: &p1}}, AcksLeader); err != nil {
			t.Fatal(err)
		}
	}
	l1 := map[string]string{"topic": "events", "partition": "1"}
	l0 := map[string]string{"topic": "events", "partition": "0"}
	if v := metricByLabels(t, tb, "outrigger_eventlog_log_appended_batches_total", l1).GetCounter().GetValue(); v != 3 {
		t.Fatalf("appended batches of partition 1 = %v, want 3", v)
	}
	if v := metricByLabels(t, tb, "outrigger_eventlog_log_appended_batches_total", l0).GetCounter().GetValue(); v != 0 {
		t.Fatalf("appended batches of partition 0 = %v, want 0", v)
	}
	fsyncs := metricByLabels(t, tb, "outrigger_eventlog_log_fsyncs_total", l1).GetCounter().GetValue()
	if fsyncs < 1 || fsyncs > 3 {
		t.Fatalf("fsyncs of partition 1 = %v, want 1 to 3 for 3 sync appends", fsyncs)
	}
	h := metricByLabels(t, tb, "outrigger_eventlog_log_fsync_duration_seconds", l1).GetHistogram()
	if float64(h.GetSampleCount()) != fsyncs || h.GetSampleSum() <= 0 || len(h.GetBucket()) != 16 {
		t.Fatalf("fsync histogram count %d sum %v buckets %d, fsyncs %v", h.GetSampleCount(), h.GetSampleSum(), len(h.GetBucket()), fsyncs)
	}
	if v := metricByLabels(t, tb, "outrigger_eventlog_log_segments", l1).GetGauge().GetValue(); v != 1 {
		t.Fatalf("segments = %v", v)
	}
	if v := metricByLabels(t, tb, "outrigger_eventlog_log_bytes", l1).GetGauge().GetValue(); v <= 0 {
		t.Fatalf("log bytes = %v", v)
	}
}
