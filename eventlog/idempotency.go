package eventlog

import (
	"container/list"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/outrigger-mesh/outrigger/eventlog/segment"
)

// idempotencyStore remembers, per topic and Idempotency-Key, the result of
// the first successful publish, for a window of time and up to a number of
// keys. Results are appended to the internal compacted topic __idempotency
// (fsynced before the publish is answered) and replayed on open, so a retry
// after a restart still gets the first result.
//
// The key is recorded after the records are appended: a crash between the
// two (or a failed key append) leaves the records published without the
// key, and a retry appends them again. That gap is documented.
type idempotencyStore struct {
	part    *Partition
	window  time.Duration
	maxKeys int
	now     func() time.Time

	mu       sync.Mutex
	entries  map[string]*list.Element // of *idemEntry, oldest first in byAge
	byAge    *list.List
	inflight map[string]bool
}

type idemEntry struct {
	Key     string          `json:"key"`
	Results []ProduceResult `json:"results"`
	At      time.Time       `json:"at"`
}

func loadIdempotency(p *Partition, window time.Duration, maxKeys int, now func() time.Time) (*idempotencyStore, error) {
	s := &idempotencyStore{
		part: p, window: window, maxKeys: maxKeys, now: now,
		entries: map[string]*list.Element{}, byAge: list.New(), inflight: map[string]bool{},
	}
	err := replay(p, func(r segment.Record) {
		var e idemEntry
		if r.Value == nil || json.Unmarshal(r.Value, &e) != nil {
			return
		}
		s.putLocked(&e)
	})
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", idempotencyTopic, err)
	}
	s.mu.Lock()
	s.evictLocked()
	s.mu.Unlock()
	return s, nil
}

func (s *idempotencyStore) putLocked(e *idemEntry) {
	if el, ok := s.entries[e.Key]; ok {
		s.byAge.Remove(el)
	}
	s.entries[e.Key] = s.byAge.PushBack(e)
}

// evictLocked forgets entries past the window and beyond maxKeys.
func (s *idempotencyStore) evictLocked() {
	cutoff := s.now().Add(-s.window)
	for el := s.byAge.Front(); el != nil; el = s.byAge.Front() {
		e := el.Value.(*idemEntry)
		if s.byAge.Len() <= s.maxKeys && !e.At.Before(cutoff) {
			break
		}
		s.byAge.Remove(el)
		delete(s.entries, e.Key)
	}
}

// begin returns the remembered results of key, or reserves key for the
// caller, who must call finish. A key reserved by a request still running
// gives ErrIdempotencyConflict.
func (s *idempotencyStore) begin(key string) ([]ProduceResult, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.evictLocked()
	if el, ok := s.entries[key]; ok {
		return el.Value.(*idemEntry).Results, true, nil
	}
	if s.inflight[key] {
		return nil, false, ErrIdempotencyConflict
	}
	s.inflight[key] = true
	return nil, false, nil
}

// finish releases key; with results it records them durably first.
func (s *idempotencyStore) finish(ctx context.Context, key string, results []ProduceResult) error {
	var err error
	if results != nil {
		e := &idemEntry{Key: key, Results: results, At: s.now().UTC()}
		v, _ := json.Marshal(e)
		_, err = s.part.Append(ctx, []segment.Record{{Key: []byte(key), Value: v}}, AcksAll)
		if err == nil {
			s.mu.Lock()
			s.putLocked(e)
			s.evictLocked()
			s.mu.Unlock()
		}
	}
	s.mu.Lock()
	delete(s.inflight, key)
	s.mu.Unlock()
	return err
}

// ProduceIdempotent is Produce with an idempotency key: the first
// successful call's results are returned to every later call with the same
// topic and key within the configured window (replayed reports that), and
// nothing is appended again. Concurrent calls with the same key: all but
// one get ErrIdempotencyConflict.
func (b *Broker) ProduceIdempotent(ctx context.Context, topic, key string, recs []ProduceRecord, acks Acks) (results []ProduceResult, replayed bool, err error) {
	if len(key) == 0 || len(key) > 255 {
		return nil, false, errf(ErrBadRequest, "Idempotency-Key must be 1 to 255 characters")
	}
	for _, c := range []byte(key) {
		if c < 0x21 || c > 0x7e {
			return nil, false, errf(ErrBadRequest, "Idempotency-Key must be printable ASCII without spaces")
		}
	}
	if _, err := b.Topic(topic); err != nil {
		return nil, false, err
	}
	k := topic + "/" + key
	prev, ok, err := b.idem.begin(k)
	if err != nil || ok {
		return prev, ok, err
	}
	results, err = b.Produce(ctx, topic, recs, acks)
	if err != nil {
		b.idem.finish(ctx, k, nil)
		return results, false, err
	}
	// The records are in: record the key even if the caller has gone, or a
	// retry would append them again.
	if err := b.idem.finish(context.WithoutCancel(ctx), k, results); err != nil {
		// The records are published; only the key is lost. Report success:
		// failing here would invite a retry that duplicates them anyway.
		b.metrics.produceErrors.WithLabelValues(idempotencyTopic).Inc()
	}
	return results, false, nil
}
