package eventlog

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/outrigger-mesh/outrigger/eventlog/segment"
)

// ProduceRecord is one record to publish.
type ProduceRecord struct {
	// Key is nil for a keyless record. Keyed records go to
	// KeyPartition(Key); keyless ones are spread (see partitioner).
	Key []byte
	// Value is nil for a tombstone (deletes the key in compacted topics).
	Value   []byte
	Headers []segment.Header
	// Partition, when set, overrides the partitioner.
	Partition *int32
}

// size is what max_message_bytes bounds: key, value and headers.
func (r *ProduceRecord) size() int {
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// ProduceResult is where one record landed. With acks=0 Offset is -1.
type ProduceResult struct {
	Partition int32 `json:"partition"`
	Offset    int64 `json:"offset"`
}

// Produce appends recs to topic and returns where each landed, in input
// order. Records for the same partition are appended as one batch, in input
// order. Errors: ErrUnknownTopic, ErrReservedTopic, ErrUnknownPartition,
// ErrRecordTooLarge, ErrNotEnoughReplicas, ErrWriteUnknown (appended, fate
// unknown), ErrClosed, ErrStorage. The partitions' batches are appended
// concurrently; on an error, the batches that succeeded stay appended and
// the results say which (Offset >= 0).
func (b *Broker) Produce(ctx context.Context, topic string, recs []ProduceRecord, acks Acks) ([]ProduceResult, error) {
	if strings.HasPrefix(topic, "__") {
		return nil, errf(ErrReservedTopic, "%q", topic)
	}
	return b.produce(ctx, topic, recs, acks)
}

func (b *Broker) produce(ctx context.Context, topic string, recs []ProduceRecord, acks Acks) ([]ProduceResult, error) {
	if b.closed.Load() {
		return nil, ErrClosed
	}
	if acks != AcksNone && acks != AcksLeader && acks != AcksAll {
		return nil, errf(ErrBadRequest, "acks must be 0, 1 or all")
	}
	t, err := b.Topic(topic)
	if err != nil {
		return nil, err
	}
	n := len(t.partitions)
	results := make([]ProduceResult, len(recs))
	// Route every record first, so that a bad record refuses the whole
	// request before anything is written.
	sticky := -1
	batches := make(map[int32][]int, 1)
	var order []int32
	for i := range recs {
		r := &recs[i]
		if sz := r.size(); sz > t.settings.MaxMessageBytes {
			return nil, errf(ErrRecordTooLarge, "record %d is %d bytes; topic %q accepts at most %d (max_message_bytes)", i, sz, topic, t.settings.MaxMessageBytes)
		}
		var p int32
		switch {
		case r.Partition != nil:
			if *r.Partition < 0 || int(*r.Partition) >= n {
				return nil, errf(ErrUnknownPartition, "record %d: topic %q has partitions 0 to %d, not %d", i, topic, n-1, *r.Partition)
			}
			p = *r.Partition
		case r.Key != nil:
			p = int32(KeyPartition(r.Key, n))
		default:
			if sticky < 0 {
				sticky = b.part.stickyPartition(n)
			}
			p = int32(sticky)
		}
		if _, ok := batches[p]; !ok {
			order = append(order, p)
		}
		batches[p] = append(batches[p], i)
		results[i] = ProduceResult{Partition: p, Offset: -1}
	}
	if acks == AcksNone {
		b.bgMu.Lock()
		defer b.bgMu.Unlock()
		if b.closed.Load() {
			return nil, ErrClosed
		}
	}
	// Each partition's batch is appended by its own goroutine, joined
	// before returning, so that a request spanning partitions pays for one
	// fsync round, not one per partition.
	type outcome struct {
		base int64
		err  error
	}
	outcomes := make([]outcome, len(order))
	var wg sync.WaitGroup
	for n, p := range order {
		idx := batches[p]
		batch := make([]segment.Record, len(idx))
		for j, i := range idx {
			batch[j] = segment.Record{Key: recs[i].Key, Value: recs[i].Value, Headers: recs[i].Headers}
		}
		part := t.partitions[p]
		switch {
		case acks == AcksNone:
			// The producer does not wait; the append is bounded by the
			// log's own I/O and Close waits for it.
			b.background.Go(func() { b.appendBatch(context.Background(), t, part, batch, acks) })
		case len(order) == 1:
			outcomes[n].base, outcomes[n].err = b.appendBatch(ctx, t, part, batch, acks)
		default:
			wg.Go(func() { outcomes[n].base, outcomes[n].err = b.appendBatch(ctx, t, part, batch, acks) })
		}
	}
	wg.Wait()
	if acks == AcksNone {
		return results, nil
	}
	var firstErr error
	for n, p := range order {
		o := outcomes[n]
		idx := batches[p]
		switch {
		case o.err == nil, errors.Is(o.err, segment.ErrDurabilityUnknown):
			for j, i := range idx {
				results[i].Offset = o.base + int64(j)
			}
		}
		if o.err != nil && firstErr == nil {
			if errors.Is(o.err, segment.ErrDurabilityUnknown) {
				firstErr = fmt.Errorf("%w: %s/%d offsets %d to %d", ErrWriteUnknown, topic, p, o.base, o.base+int64(len(idx))-1)
			} else {
				firstErr = b.appendError(topic, p, o.err)
			}
		}
	}
	return results, firstErr
}

func (b *Broker) appendBatch(ctx context.Context, t *Topic, p *Partition, batch []segment.Record, acks Acks) (int64, error) {
	start := time.Now()
	base, err := p.Append(ctx, batch, acks)
	b.metrics.appendSeconds.WithLabelValues(t.Name()).Observe(time.Since(start).Seconds())
	if err != nil {
		b.metrics.produceErrors.WithLabelValues(t.Name()).Inc()
		return base, err
	}
	var bytes int
	for i := range batch {
		bytes += len(batch[i].Key) + len(batch[i].Value)
	}
	b.metrics.producedRecords.WithLabelValues(t.Name()).Add(float64(len(batch)))
	b.metrics.producedBytes.WithLabelValues(t.Name()).Add(float64(bytes))
	return base, nil
}

func (b *Broker) appendError(topic string, p int32, err error) error {
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	return fmt.Errorf("%w: append %s/%d: %v", classify(err), topic, p, err)
}

// FetchResult is one partition read.
type FetchResult struct {
	Records []segment.Record
	// NextOffset is the offset to fetch next.
	NextOffset int64
	// HighWatermark is the end of what consumers can read now.
	HighWatermark  int64
	LogStartOffset int64
}

// MaxFetchWait caps a long-poll wait.
const MaxFetchWait = 30 * time.Second

// Fetch reads committed records of topic/partition from offset, about
// maxBytes at most (at least one record when any is available). When
// nothing is available at offset and wait > 0 it waits, up to wait (capped
// at MaxFetchWait) or until ctx ends, for the high watermark to move.
// Errors: ErrUnknownTopic, ErrUnknownPartition, ErrOffsetOutOfRange (an
// *OffsetRangeError with the valid range).
func (b *Broker) Fetch(ctx context.Context, topic string, partition int, offset int64, maxBytes int, wait time.Duration) (FetchResult, error) {
	t, err := b.Topic(topic)
	if err != nil {
		return FetchResult{}, err
	}
	p, err := t.Partition(partition)
	if err != nil {
		return FetchResult{}, err
	}
	res, err := b.read(t, p, offset, maxBytes)
	if err != nil || len(res.Records) > 0 || wait <= 0 || res.NextOffset != offset {
		return res, err
	}
	wctx, cancel := context.WithTimeout(ctx, min(wait, MaxFetchWait))
	defer cancel()
	defer context.AfterFunc(b.waitCtx, cancel)()
	if _, err := p.waitFor(wctx, offset, &b.parked); err != nil {
		// Timed out (or the caller left): an empty answer, not an error.
		return res, nil
	}
	return b.read(t, p, offset, maxBytes)
}

func (b *Broker) read(t *Topic, p *Partition, offset int64, maxBytes int) (FetchResult, error) {
	recs, next, err := p.Read(offset, maxBytes)
	res := FetchResult{Records: recs, NextOffset: next, HighWatermark: p.HighWatermark(), LogStartOffset: p.LogStartOffset()}
	if err != nil {
		var re *OffsetRangeError
		if errors.As(err, &re) {
			return res, err
		}
		return res, fmt.Errorf("%w: %v", classify(err), err)
	}
	var bytes int
	for i := range recs {
		bytes += len(recs[i].Key) + len(recs[i].Value)
	}
	if len(recs) > 0 {
		b.metrics.fetchedRecords.WithLabelValues(t.Name()).Add(float64(len(recs)))
		b.metrics.fetchedBytes.WithLabelValues(t.Name()).Add(float64(bytes))
	}
	return res, nil
}
