package eventlog

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
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
			&lagCollector{b: b})
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
