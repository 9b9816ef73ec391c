package eventlog

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/outrigger-mesh/outrigger/eventlog/group"
	"github.com/outrigger-mesh/outrigger/eventlog/segment"
)

// Subscriber delivers one push subscription: every record of its topic is
// POSTed to the app route as a CloudEvent in HTTP binary mode, partition by
// partition in offset order. A 2xx acknowledges; anything else (or no answer
// within the timeout) is retried with capped exponential back-off, and after
// max_attempts the record goes to the dead-letter topic and delivery moves
// on. Progress is the group's committed offset, so a restart resumes after
// the last acknowledged record (at-least-once).
type Subscriber struct {
	b       *Broker
	cfg     SubscriptionConfig // defaults applied
	name    string
	client  *http.Client
	ownTran *http.Transport
}

func newSubscriber(b *Broker, sc SubscriptionConfig) *Subscriber {
	s := &Subscriber{b: b, name: sc.EffectiveName()}
	sc.InFlight = cmpOr(sc.InFlight, DefaultInFlight)
	sc.StartFrom = cmpOr(sc.StartFrom, "earliest")
	sc.Timeout = cmpOr(sc.Timeout, DefaultDeliveryTimeout)
	sc.Retry.MaxAttempts = cmpOr(sc.Retry.MaxAttempts, DefaultMaxAttempts)
	sc.Retry.InitialBackoff = cmpOr(sc.Retry.InitialBackoff, DefaultInitialBackoff)
	sc.Retry.MaxBackoff = cmpOr(sc.Retry.MaxBackoff, DefaultMaxBackoff)
	s.cfg = sc
	if b.opts.HTTPClient != nil {
		s.client = b.opts.HTTPClient
	} else {
		// A transport of our own, so that Run can close its idle
		// connections (and their goroutines) when it returns.
		s.ownTran = &http.Transport{
			MaxIdleConnsPerHost: sc.InFlight,
			IdleConnTimeout:     90 * time.Second,
		}
		s.client = &http.Client{Transport: s.ownTran}
	}
	return s
}

// Name is the subscription's name.
func (s *Subscriber) Name() string { return s.name }

// Run delivers until ctx ends, then waits for every partition's loop.
func (s *Subscriber) Run(ctx context.Context) {
	defer func() {
		if s.ownTran != nil {
			s.ownTran.CloseIdleConnections()
		}
	}()
	t, err := s.b.Topic(s.cfg.Topic)
	if err != nil {
		return
	}
	sem := make(chan struct{}, s.cfg.InFlight)
	var wg sync.WaitGroup
	for _, p := range t.partitions {
		wg.Go(func() { s.runPartition(ctx, t, p, sem) })
	}
	wg.Wait()
}

func (s *Subscriber) runPartition(ctx context.Context, t *Topic, p *Partition, sem chan struct{}) {
	tp := group.TopicPartition{Topic: t.Name(), Partition: p.ID()}
	pos, ok := s.b.offsets.get(s.cfg.Group, tp)
	committed := pos
	if !ok {
		if s.cfg.StartFrom == "latest" {
			pos = p.HighWatermark()
		} else {
			pos = p.LogStartOffset()
		}
		// Commit the starting point at once, so that a restart before the
		// first delivery resumes here instead of choosing "latest" anew.
		committed = -1
	}
	commit := func() {
		if pos == committed {
			return
		}
		// Commit even while stopping: the records were acknowledged.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		err := s.b.offsets.commit(cctx, s.cfg.Group, tp, pos, false)
		if err == nil {
			committed = pos
		}
	}
	defer commit()
	failures := 0
	for ctx.Err() == nil {
		if start := p.LogStartOffset(); pos < start {
			pos = start // retention removed records never delivered
		}
		if pos >= p.HighWatermark() {
			commit()
			if _, err := p.WaitFor(ctx, pos); err != nil {
				return
			}
			continue
		}
		recs, next, err := p.Read(pos, 1<<20)
		if err != nil {
			failures++
			if !sleepCtx(ctx, backoff(s.cfg.Retry, failures)) {
				return
			}
			continue
		}
		failures = 0
		s.b.metrics.fetchedRecords.WithLabelValues(t.Name()).Add(float64(len(recs)))
		for _, r := range recs {
			if !s.deliver(ctx, t.Name(), p.ID(), r, sem) {
				return
			}
			pos = r.Offset + 1
		}
		pos = max(pos, next)
		commit()
	}
}

// deliver POSTs r until it is acknowledged or dead-lettered. It returns
// false only when ctx ended first (the record is then not committed and is
// delivered again later).
func (s *Subscriber) deliver(ctx context.Context, topic string, partition int32, r segment.Record, sem chan struct{}) bool {
	var reason string
	for attempt := 1; attempt <= s.cfg.Retry.MaxAttempts; attempt++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return false
		}
		var ok bool
		ok, reason = s.post(ctx, topic, partition, r, attempt)
		<-sem
		if ok {
			s.b.metrics.deliveries.WithLabelValues(s.name, "success").Inc()
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		s.b.metrics.deliveries.WithLabelValues(s.name, "failure").Inc()
		if attempt < s.cfg.Retry.MaxAttempts && !sleepCtx(ctx, backoff(s.cfg.Retry, attempt)) {
			return false
		}
	}
	return s.deadLetter(ctx, topic, partition, r, reason)
}

// post makes one delivery attempt and says whether the app acknowledged it,
// and if not, why.
func (s *Subscriber) post(ctx context.Context, topic string, partition int32, r segment.Record, attempt int) (bool, string) {
	actx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	url := strings.TrimSuffix(*s.b.appURL.Load(), "/") + s.cfg.Route
	req, err := http.NewRequestWithContext(actx, http.MethodPost, url, bytes.NewReader(r.Value))
	if err != nil {
		return false, err.Error()
	}
	setCloudEventHeaders(req.Header, topic, partition, r)
	req.Header.Set("X-Outrigger-Delivery-Attempt", strconv.Itoa(attempt))
	req.Header.Set("X-Outrigger-Subscription", s.name)
	resp, err := s.client.Do(req)
	if err != nil {
		return false, "request failed: " + err.Error()
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		return true, ""
	}
	return false, "app answered " + strconv.Itoa(resp.StatusCode)
}

// CloudEvents HTTP binary mode (CloudEvents spec v1.0, HTTP protocol
// binding section 3.1): the record value is the body, attributes are
// ce-* headers. ce-source is the topic as a URI reference.
const (
	ceSourcePrefix = "/outrigger/eventlog/topics/"
	ceDefaultType  = "outrigger.eventlog.record"
)

func setCloudEventHeaders(h http.Header, topic string, partition int32, r segment.Record) {
	// Record headers first, so that the attributes below cannot be
	// overridden, except ce-type and content-type which the producer may set.
	for _, rh := range r.Headers {
		if !httpguts.ValidHeaderFieldName(rh.Key) {
			continue
		}
		switch strings.ToLower(rh.Key) {
		case "ce-specversion", "ce-id", "ce-source", "ce-time", "ce-subject", "content-length", "host",
			"connection", "transfer-encoding", "te", "upgrade", "keep-alive", "trailer", "proxy-connection":
			continue
		}
		h.Add(rh.Key, headerValue(string(rh.Value)))
	}
	h.Set("Ce-Specversion", "1.0")
	h.Set("Ce-Id", topic+"/"+strconv.Itoa(int(partition))+"/"+strconv.FormatInt(r.Offset, 10))
	h.Set("Ce-Source", ceSourcePrefix+topic)
	if h.Get("Ce-Type") == "" {
		h.Set("Ce-Type", ceDefaultType)
	}
	h.Set("Ce-Time", r.Timestamp.UTC().Format(time.RFC3339Nano))
	if r.Key != nil {
		h.Set("Ce-Subject", percentEncode(string(r.Key)))
	}
	if h.Get("Content-Type") == "" {
		if json.Valid(r.Value) {
			h.Set("Content-Type", "application/json")
		} else {
			h.Set("Content-Type", "application/octet-stream")
		}
	}
}

func headerValue(v string) string {
	if httpguts.ValidHeaderFieldValue(v) {
		return v
	}
	return percentEncode(v)
}

// percentEncode encodes what the CloudEvents HTTP binding says must be
// percent-encoded in a ce-* header value: bytes outside printable ASCII,
// space, '"' and '%' (section 3.1.3.2).
func percentEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= 0x20 || c >= 0x7f || c == '"' || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// Dead-letter headers.
const (
	DLQHeaderReason       = "x-outrigger-dlq-reason"
	DLQHeaderSubscription = "x-outrigger-dlq-subscription"
	DLQHeaderTopic        = "x-outrigger-dlq-topic"
	DLQHeaderPartition    = "x-outrigger-dlq-partition"
	DLQHeaderOffset       = "x-outrigger-dlq-offset"
	DLQHeaderAttempts     = "x-outrigger-dlq-attempts"
)

// deadLetter appends r to the dead-letter topic (retrying the append until
// it succeeds or ctx ends, so the record is never lost) or, with no
// dead-letter topic, drops it. It returns false when ctx ended first.
func (s *Subscriber) deadLetter(ctx context.Context, topic string, partition int32, r segment.Record, reason string) bool {
	if s.cfg.DeadLetterTopic == "" {
		s.b.metrics.deadLettered.WithLabelValues(s.name).Inc()
		return true
	}
	headers := append([]segment.Header(nil), r.Headers...)
	headers = append(headers,
		segment.Header{Key: DLQHeaderReason, Value: []byte(reason)},
		segment.Header{Key: DLQHeaderSubscription, Value: []byte(s.name)},
		segment.Header{Key: DLQHeaderTopic, Value: []byte(topic)},
		segment.Header{Key: DLQHeaderPartition, Value: []byte(strconv.Itoa(int(partition)))},
		segment.Header{Key: DLQHeaderOffset, Value: []byte(strconv.FormatInt(r.Offset, 10))},
		segment.Header{Key: DLQHeaderAttempts, Value: []byte(strconv.Itoa(s.cfg.Retry.MaxAttempts))},
	)
	rec := []ProduceRecord{{Key: r.Key, Value: r.Value, Headers: headers}}
	for n := 1; ; n++ {
		_, err := s.b.produce(ctx, s.cfg.DeadLetterTopic, rec, AcksAll)
		if err == nil {
			s.b.metrics.deadLettered.WithLabelValues(s.name).Inc()
			return true
		}
		if !sleepCtx(ctx, backoff(s.cfg.Retry, n)) {
			return false
		}
	}
}

// backoff is the wait after the n-th failure: initial * 2^(n-1), capped.
func backoff(r RetryConfig, n int) time.Duration {
	d := r.InitialBackoff
	for i := 1; i < n && d < r.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, r.MaxBackoff)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
