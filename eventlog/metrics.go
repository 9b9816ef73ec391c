package eventlog

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outrigger-mesh/outrigger/eventlog/segment"
)

// metrics are the outrigger_eventlog_* series. Labels are bounded: topic,
// group and subscription names come from config or the admin API, and
// partitions are capped per topic (maxPartitions).
type metrics struct {
	producedRecords   *prometheus.CounterVec
	producedBytes     *prometheus.CounterVec
	produceErrors     *prometheus.CounterVec
	fetchedRecords    *prometheus.CounterVec
	fetchedBytes      *prometheus.CounterVec
	appendSeconds     *prometheus.HistogramVec
	deliveries        *prometheus.CounterVec
	deadLettered      *prometheus.CounterVec
	maintenanceErrors prometheus.Counter
}

func newMetrics(reg *prometheus.Registry, b *Broker) *metrics {
	m := &metrics{
		producedRecords: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_eventlog_produced_records_total",
			Help: "Records appended, by topic.",
		}, []string{"topic"}),
		producedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_eventlog_produced_bytes_total",
			Help: "Key and value bytes appended, by topic.",
		}, []string{"topic"}),
		produceErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_eventlog_produce_errors_total",
			Help: "Appends that failed or whose durability is unknown, by topic.",
		}, []string{"topic"}),
		fetchedRecords: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_eventlog_fetched_records_total",
			Help: "Records read by consumers and push deliveries, by topic.",
		}, []string{"topic"}),
		fetchedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_eventlog_fetched_bytes_total",
			Help: "Key and value bytes read, by topic.",
		}, []string{"topic"}),
		appendSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "outrigger_eventlog_append_duration_seconds",
			Help:    "Time to append one batch, including the fsync the flush policy asks for, by topic.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16),
		}, []string{"topic"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_eventlog_deliveries_total",
			Help: "Push delivery attempts by subscription and result (success, failure).",
		}, []string{"subscription", "result"}),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_eventlog_dead_lettered_total",
			Help: "Records given up after max_attempts, by subscription (appended to the dead-letter topic, or dropped when none is set).",
		}, []string{"subscription"}),
		maintenanceErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outrigger_eventlog_maintenance_errors_total",
			Help: "Retention and compaction runs that failed.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.producedRecords, m.producedBytes, m.produceErrors, m.fetchedRecords,
			m.fetchedBytes, m.appendSeconds, m.deliveries, m.deadLettered, m.maintenanceErrors,
			&lagCollector{b: b}, &logCollector{b: b})
	}
	return m
}

var lagDesc = prometheus.NewDesc("outrigger_eventlog_consumer_lag",
	"High watermark minus the group's committed offset, by topic, group and partition.",
	[]string{"topic", "group", "partition"}, nil)

// lagCollector computes consumer lag at scrape time from committed offsets
// and high watermarks, so it is never stale and needs no updating loop.
type lagCollector struct{ b *Broker }

func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- lagDesc }

func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	for _, g := range c.b.offsets.groups() {
		for _, l := range c.b.lag(g) {
			ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, float64(l.Lag),
				l.Topic, g, strconv.Itoa(int(l.Partition)))
		}
	}
}

var (
	logSegmentsDesc = prometheus.NewDesc("outrigger_eventlog_log_segments",
		"Segment files of the partition's log, by topic and partition.",
		[]string{"topic", "partition"}, nil)
	logBytesDesc = prometheus.NewDesc("outrigger_eventlog_log_bytes",
		"Size of the partition's segment files in bytes, by topic and partition.",
		[]string{"topic", "partition"}, nil)
	logBatchesDesc = prometheus.NewDesc("outrigger_eventlog_log_appended_batches_total",
		"Batches appended to the partition's log since it was opened, by topic and partition; divided by fsyncs it is the group-commit size.",
		[]string{"topic", "partition"}, nil)
	logFsyncsDesc = prometheus.NewDesc("outrigger_eventlog_log_fsyncs_total",
		"Flush rounds (group commits under flush sync) of the partition's log since it was opened, by topic and partition.",
		[]string{"topic", "partition"}, nil)
	logFsyncSecondsDesc = prometheus.NewDesc("outrigger_eventlog_log_fsync_duration_seconds",
		"Duration of the fdatasync of each flush round of the partition's log, by topic and partition.",
		[]string{"topic", "partition"}, nil)
)

// fsyncBucketSeconds are segment.FsyncBucketBounds in seconds.
var fsyncBucketSeconds = func() []float64 {
	out := make([]float64, len(segment.FsyncBucketBounds))
	for i, d := range segment.FsyncBucketBounds {
		out[i] = d.Seconds()
	}
	return out
}()

// logCollector exports each partition log's segment.Stats at scrape time:
// the counters live in the logs, so there is nothing to keep in step.
// Labels are topic and partition, both bounded.
type logCollector struct{ b *Broker }

func (c *logCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{logSegmentsDesc, logBytesDesc, logBatchesDesc, logFsyncsDesc, logFsyncSecondsDesc} {
		ch <- d
	}
}

func (c *logCollector) Collect(ch chan<- prometheus.Metric) {
	for _, name := range c.b.TopicNames() {
		t, err := c.b.Topic(name)
		if err != nil {
			continue // deleted since the listing
		}
		for _, p := range t.Partitions() {
			st := p.log.Stats()
			part := strconv.Itoa(int(p.ID()))
			ch <- prometheus.MustNewConstMetric(logSegmentsDesc, prometheus.GaugeValue, float64(st.Segments), name, part)
			ch <- prometheus.MustNewConstMetric(logBytesDesc, prometheus.GaugeValue, float64(st.SizeBytes), name, part)
			ch <- prometheus.MustNewConstMetric(logBatchesDesc, prometheus.CounterValue, float64(st.Batches), name, part)
			ch <- prometheus.MustNewConstMetric(logFsyncsDesc, prometheus.CounterValue, float64(st.Fsyncs), name, part)
			buckets := make(map[float64]uint64, len(fsyncBucketSeconds))
			var cum uint64
			for i, ub := range fsyncBucketSeconds {
				cum += st.FsyncLatency.Counts[i]
				buckets[ub] = cum
			}
			cum += st.FsyncLatency.Counts[len(fsyncBucketSeconds)]
			ch <- prometheus.MustNewConstHistogram(logFsyncSecondsDesc, cum, st.FsyncLatency.Sum.Seconds(), buckets, name, part)
		}
	}
}
