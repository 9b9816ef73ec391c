package segment

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// FlushPolicy says when appended bytes are forced to stable storage, and so
// what an acknowledged Append means. See docs/storage.md.
type FlushPolicy string

const (
	// FlushSync (the zero value's meaning): Append returns only after an fsync
	// that covers its batch. Concurrent appends share one fsync (group commit).
	FlushSync FlushPolicy = "sync"
	// FlushInterval: Append returns once the batch is in the page cache; a
	// background flusher fsyncs every Options.FlushInterval.
	FlushInterval FlushPolicy = "interval"
	// FlushOS: Append returns once the batch is in the page cache; the log
	// never fsyncs on its own except when rolling a segment and on Close.
	FlushOS FlushPolicy = "os"
)

// Timestamp types for Options.TimestampType.
const (
	// TimestampLogAppend stamps every record with the clock at append time.
	TimestampLogAppend = "log_append"
	// TimestampCreate keeps the producer's Record.Timestamp (zero means now).
	TimestampCreate = "create"
)

// Defaults applied for zero-valued Options fields.
const (
	DefaultSegmentBytes       int64         = 1 << 30
	DefaultSegmentAge         time.Duration = 7 * 24 * time.Hour
	DefaultIndexIntervalBytes               = 4096
	DefaultFlushInterval      time.Duration = time.Second
	DefaultTombstoneRetention time.Duration = 24 * time.Hour
	DefaultMaxBatchBytes                    = 1 << 20
)

// maxSegmentBytes bounds segment files so that positions fit the uint32
// fields of the offset index.
const maxSegmentBytes = math.MaxInt32

// Options configures a Log. The zero value of every field means its default,
// so Options{} is a valid, durable configuration. Each field names the
// topic-level config key that eventlog maps onto it, if any; eventlog fills
// in its own topic defaults first, which differ from some of these
// (docs/storage.md, Knobs).
type Options struct {
	// SegmentBytes (segment_bytes): roll to a new segment file when the
	// active one would grow beyond this many bytes. 0 means 1 GiB; at most
	// 2 GiB - 1. A batch larger than SegmentBytes gets a segment of its own.
	SegmentBytes int64
	// SegmentAge (segment_age): roll when the active segment has been taking
	// appends this long (after a restart: since its first batch's timestamp)
	// at the time of the next Append. 0 means 7 days. An idle log does not
	// roll (rolling happens on Append).
	SegmentAge time.Duration
	// IndexIntervalBytes: bytes of log between two sparse index entries.
	// 0 means 4096.
	IndexIntervalBytes int

	// Flush (flush): "sync" (default, also ""), "interval" or "os".
	Flush FlushPolicy
	// FlushInterval (flush_interval): period of the background fsync under
	// Flush "interval". 0 means 1 s.
	FlushInterval time.Duration

	// RetentionAge (retention_age): EnforceRetention deletes a closed segment
	// once its largest timestamp is older than this. 0 means keep forever.
	RetentionAge time.Duration
	// RetentionBytes (retention_bytes): EnforceRetention deletes the oldest
	// closed segments while the log's total size exceeds this. 0 means no
	// size limit.
	RetentionBytes int64

	// Compact (cleanup: compact): Compact keeps only the latest record per
	// key in closed segments. When false, Compact is a no-op.
	Compact bool
	// TombstoneRetention (tombstone_retention): a tombstone (nil Value) that
	// is the latest record for its key is kept by Compact until the largest
	// timestamp of its segment is older than this. 0 means 24 h.
	TombstoneRetention time.Duration

	// MaxBatchBytes: largest encoded batch Append accepts, header
	// included. 0 means 1 MiB. No topic key maps onto it: eventlog
	// appends a publish request's records as one batch, with 64 MiB here,
	// and checks each record against the topic's max_message_bytes
	// itself.
	MaxBatchBytes int

	// TimestampType: "log_append" (default, also "") or "create".
	TimestampType string

	// Now is the clock used for log-append timestamps and segment age.
	// nil means time.Now.
	Now func() time.Time
}

// Validate reports the first invalid field, naming its config key. It does
// not modify o.
func (o Options) Validate() error {
	var errs []error
	if o.SegmentBytes < 0 || o.SegmentBytes > maxSegmentBytes {
		errs = append(errs, fmt.Errorf("segment_bytes: must be in [0, %d], got %d", int64(maxSegmentBytes), o.SegmentBytes))
	}
	if o.SegmentAge < 0 {
		errs = append(errs, fmt.Errorf("segment_age: must be >= 0, got %s", o.SegmentAge))
	}
	if o.IndexIntervalBytes < 0 {
		errs = append(errs, fmt.Errorf("index_interval_bytes: must be >= 0, got %d", o.IndexIntervalBytes))
	}
	switch o.Flush {
	case "", FlushSync, FlushInterval, FlushOS:
	default:
		errs = append(errs, fmt.Errorf("flush: must be one of sync, interval, os; got %q", o.Flush))
	}
	if o.FlushInterval < 0 {
		errs = append(errs, fmt.Errorf("flush_interval: must be >= 0, got %s", o.FlushInterval))
	}
	if o.RetentionAge < 0 {
		errs = append(errs, fmt.Errorf("retention_age: must be >= 0, got %s", o.RetentionAge))
	}
	if o.RetentionBytes < 0 {
		errs = append(errs, fmt.Errorf("retention_bytes: must be >= 0, got %d", o.RetentionBytes))
	}
	if o.TombstoneRetention < 0 {
		errs = append(errs, fmt.Errorf("tombstone_retention: must be >= 0, got %s", o.TombstoneRetention))
	}
	if o.MaxBatchBytes < 0 || (o.MaxBatchBytes > 0 && o.MaxBatchBytes < batchHeaderSize+8) || o.MaxBatchBytes > maxBatchLimit {
		errs = append(errs, fmt.Errorf("max_message_bytes: must be 0 or in [%d, %d], got %d", batchHeaderSize+8, maxBatchLimit, o.MaxBatchBytes))
	}
	switch o.TimestampType {
	case "", TimestampLogAppend, TimestampCreate:
	default:
		errs = append(errs, fmt.Errorf("timestamp_type: must be log_append or create, got %q", o.TimestampType))
	}
	return errors.Join(errs...)
}

// withDefaults returns o with zero fields replaced by their defaults.
func (o Options) withDefaults() Options {
	if o.SegmentBytes == 0 {
		o.SegmentBytes = DefaultSegmentBytes
	}
	if o.SegmentAge == 0 {
		o.SegmentAge = DefaultSegmentAge
	}
	if o.IndexIntervalBytes == 0 {
		o.IndexIntervalBytes = DefaultIndexIntervalBytes
	}
	if o.Flush == "" {
		o.Flush = FlushSync
	}
	if o.FlushInterval == 0 {
		o.FlushInterval = DefaultFlushInterval
	}
	if o.TombstoneRetention == 0 {
		o.TombstoneRetention = DefaultTombstoneRetention
	}
	if o.MaxBatchBytes == 0 {
		o.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if o.TimestampType == "" {
		o.TimestampType = TimestampLogAppend
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}
