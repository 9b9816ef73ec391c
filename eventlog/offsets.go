package eventlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/outrigger-mesh/outrigger/eventlog/group"
	"github.com/outrigger-mesh/outrigger/eventlog/segment"
)

// offsetStore keeps consumer groups' committed offsets in the internal
// compacted topic __consumer_offsets (one record per group/topic/partition;
// the latest wins; a tombstone forgets it) and in memory. It enforces that a
// committed offset never moves backwards except through Reset.
type offsetStore struct {
	part *Partition
	now  func() time.Time

	// writeMu orders commits so that the last record appended for a key is
	// also the value in memory. It is held across the append on purpose:
	// commits are serialised per node, reads are not (they take only mu).
	writeMu sync.Mutex

	mu        sync.Mutex
	committed map[offsetKey]int64
}

type offsetKey struct {
	Group     string
	Topic     string
	Partition int32
}

func (k offsetKey) encode() []byte {
	return []byte(k.Group + "/" + k.Topic + "/" + strconv.Itoa(int(k.Partition)))
}

func decodeOffsetKey(b []byte) (offsetKey, bool) {
	parts := strings.Split(string(b), "/")
	if len(parts) != 3 {
		return offsetKey{}, false
	}
	p, err := strconv.Atoi(parts[2])
	if err != nil {
		return offsetKey{}, false
	}
	return offsetKey{parts[0], parts[1], int32(p)}, true
}

type offsetValue struct {
	Offset      int64     `json:"offset"`
	CommittedAt time.Time `json:"committed_at"`
}

// loadOffsets replays __consumer_offsets.
func loadOffsets(p *Partition, now func() time.Time) (*offsetStore, error) {
	s := &offsetStore{part: p, now: now, committed: map[offsetKey]int64{}}
	err := replay(p, func(r segment.Record) {
		k, ok := decodeOffsetKey(r.Key)
		if !ok {
			return
		}
		if r.Value == nil {
			delete(s.committed, k)
			return
		}
		var v offsetValue
		if json.Unmarshal(r.Value, &v) == nil {
			s.committed[k] = v.Offset
		}
	})
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", offsetsTopic, err)
	}
	return s, nil
}

// replay calls fn for every committed record of p, in order.
func replay(p *Partition, fn func(segment.Record)) error {
	off := p.LogStartOffset()
	for off < p.HighWatermark() {
		recs, next, err := p.Read(off, 1<<20)
		if err != nil {
			return err
		}
		for _, r := range recs {
			fn(r)
		}
		if next <= off {
			return fmt.Errorf("no progress reading at offset %d", off)
		}
		off = next
	}
	return nil
}

// Committed returns the committed offset (the next offset to consume).
func (s *offsetStore) get(g string, tp group.TopicPartition) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.committed[offsetKey{g, tp.Topic, tp.Partition}]
	return o, ok
}

// commit stores offset for (g, tp). Unless reset is set, an offset lower
// than the committed one is refused with ErrOffsetRegression; an equal one
// is a no-op.
func (s *offsetStore) commit(ctx context.Context, g string, tp group.TopicPartition, offset int64, reset bool) error {
	k := offsetKey{g, tp.Topic, tp.Partition}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.Lock()
	cur, ok := s.committed[k]
	s.mu.Unlock()
	if ok && !reset {
		if offset < cur {
			return errf(ErrOffsetRegression, "group %q %s/%d is at %d, not moving to %d", g, tp.Topic, tp.Partition, cur, offset)
		}
		if offset == cur {
			return nil
		}
	}
	v, _ := json.Marshal(offsetValue{Offset: offset, CommittedAt: s.now().UTC()})
	_, err := s.part.Append(ctx, []segment.Record{{Key: k.encode(), Value: v}}, AcksAll)
	if err != nil && !errors.Is(err, segment.ErrDurabilityUnknown) {
		return fmt.Errorf("%w: commit offset: %v", classify(err), err)
	}
	// With unknown durability the record is in the log and may be replayed
	// after a restart: memory follows it, so no later commit can go below
	// what a restart might bring back.
	s.mu.Lock()
	s.committed[k] = offset
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%w: commit offset: %v", classify(err), err)
	}
	return nil
}

// forgetTopic drops (with tombstones) every committed offset of topic.
func (s *offsetStore) forgetTopic(ctx context.Context, topic string) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.Lock()
	var recs []segment.Record
	var keys []offsetKey
	for k := range s.committed {
		if k.Topic == topic {
			recs = append(recs, segment.Record{Key: k.encode()})
			keys = append(keys, k)
		}
	}
	s.mu.Unlock()
	if len(recs) == 0 {
		return nil
	}
	if _, err := s.part.Append(ctx, recs, AcksAll); err != nil {
		return err
	}
	s.mu.Lock()
	for _, k := range keys {
		delete(s.committed, k)
	}
	s.mu.Unlock()
	return nil
}

// groups lists every group with a committed offset, sorted.
func (s *offsetStore) groups() []string {
	s.mu.Lock()
	var gs []string
	for k := range s.committed {
		gs = append(gs, k.Group)
	}
	s.mu.Unlock()
	slices.Sort(gs)
	return slices.Compact(gs)
}

// ofGroup returns the group's committed offsets.
func (s *offsetStore) ofGroup(g string) map[group.TopicPartition]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[group.TopicPartition]int64{}
	for k, o := range s.committed {
		if k.Group == g {
			out[group.TopicPartition{Topic: k.Topic, Partition: k.Partition}] = o
		}
	}
	return out
}

// PartitionLag is one partition's position for a group.
type PartitionLag struct {
	Topic         string `json:"topic"`
	Partition     int32  `json:"partition"`
	Committed     int64  `json:"committed"`
	HighWatermark int64  `json:"high_watermark"`
	Lag           int64  `json:"lag"`
}

// lag is HW - committed for every partition the group committed on, sorted.
func (b *Broker) lag(g string) []PartitionLag {
	var out []PartitionLag
	for tp, off := range b.offsets.ofGroup(g) {
		t, err := b.Topic(tp.Topic)
		if err != nil {
			continue
		}
		p, err := t.Partition(int(tp.Partition))
		if err != nil {
			continue
		}
		hw := p.HighWatermark()
		out = append(out, PartitionLag{tp.Topic, tp.Partition, off, hw, max(hw-off, 0)})
	}
	slices.SortFunc(out, func(a, b PartitionLag) int {
		if a.Topic != b.Topic {
			return strings.Compare(a.Topic, b.Topic)
		}
		return int(a.Partition - b.Partition)
	})
	return out
}

// CommittedOffset returns group's committed offset for topic/partition.
func (b *Broker) CommittedOffset(g, topic string, partition int32) (int64, bool) {
	return b.offsets.get(g, group.TopicPartition{Topic: topic, Partition: partition})
}

// ResetOffset sets group's committed offset for topic/partition to
// "earliest" (the log start), "latest" (the high watermark) or an explicit
// offset in [log start, high watermark]. It is the one way to move an offset
// backwards. Members of the group restart from the new offset on their next
// fetch.
func (b *Broker) ResetOffset(ctx context.Context, g, topic string, partition int32, to string) (int64, error) {
	if err := validGroupName(g); err != nil {
		return 0, errf(ErrBadRequest, "group %q: %v", g, err)
	}
	t, err := b.Topic(topic)
	if err != nil {
		return 0, err
	}
	p, err := t.Partition(int(partition))
	if err != nil {
		return 0, err
	}
	var off int64
	switch to {
	case "earliest":
		off = p.LogStartOffset()
	case "latest":
		off = p.HighWatermark()
	default:
		off, err = strconv.ParseInt(to, 10, 64)
		if err != nil {
			return 0, errf(ErrBadRequest, "to must be earliest, latest or an offset, not %q", to)
		}
		if off < p.LogStartOffset() || off > p.HighWatermark() {
			return 0, &OffsetRangeError{Offset: off, Start: p.LogStartOffset(), End: p.HighWatermark()}
		}
	}
	tp := group.TopicPartition{Topic: topic, Partition: partition}
	if err := b.offsets.commit(ctx, g, tp, off, true); err != nil {
		return 0, err
	}
	b.groups.resetPositions(g, tp)
	return off, nil
}
