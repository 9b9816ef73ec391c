package eventlog

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/outrigger-mesh/outrigger/eventlog/segment"
)

// topicMeta is DataDir/topics/<name>/meta.json. Partitions live beside it in
// subdirectories named by number.
type topicMeta struct {
	Name string `json:"name"`
	// Config is the topic's settings as given (zero = default), with
	// Partitions set to the effective count.
	Config TopicConfig `json:"config"`
	// LeaderEpochs holds each partition's current leader epoch. It is
	// bumped on every open: this node becomes leader anew, and a batch from
	// an earlier incarnation can be told apart.
	LeaderEpochs []int32   `json:"leader_epochs"`
	Internal     bool      `json:"internal,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
}

// Topic is a named set of partitions.
type Topic struct {
	meta       topicMeta
	dir        string
	settings   TopicConfig // Config with every default applied
	partitions []*Partition
	// notify is woken whenever any partition's high watermark advances.
	notify notifier
}

// Name is the topic's name.
func (t *Topic) Name() string { return t.meta.Name }

// Partitions returns the topic's partitions, indexed by number.
func (t *Topic) Partitions() []*Partition { return t.partitions }

// Partition returns partition p, or ErrUnknownPartition.
func (t *Topic) Partition(p int) (*Partition, error) {
	if p < 0 || p >= len(t.partitions) {
		return nil, errf(ErrUnknownPartition, "topic %q has partitions 0 to %d, not %d", t.meta.Name, len(t.partitions)-1, p)
	}
	return t.partitions[p], nil
}

// effective fills in defaults.
func (c Config) effective(tc TopicConfig) TopicConfig {
	tc.Partitions = max(tc.Partitions, 1)
	tc.ReplicationFactor = max(tc.ReplicationFactor, 1)
	tc.MinInsyncReplicas = max(tc.MinInsyncReplicas, 1)
	if tc.Cleanup == "" {
		tc.Cleanup = "delete"
	}
	if tc.RetentionAge == 0 {
		tc.RetentionAge = DefaultRetentionAge
	}
	if tc.SegmentBytes == 0 {
		tc.SegmentBytes = DefaultSegmentBytes
	}
	if tc.SegmentAge == 0 {
		tc.SegmentAge = DefaultSegmentAge
	}
	if tc.Flush == "" {
		tc.Flush = cmpOr(c.DefaultFlush, DefaultFlushPolicy)
	}
	if tc.FlushInterval == 0 {
		tc.FlushInterval = cmpOr(c.DefaultFlushInterval, DefaultFlushInterval)
	}
	if tc.MaxMessageBytes == 0 {
		tc.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if tc.TombstoneRetention == 0 {
		tc.TombstoneRetention = DefaultTombstoneRetention
	}
	return tc
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// maxLogBatchBytes is the largest batch handed to segment in one Append:
// one publish request's records (each at most max_message_bytes) go as
// one batch, and the request body is bounded well below this.
const maxLogBatchBytes = 64 << 20

// segmentOptions maps effective topic settings onto the log's options.
func segmentOptions(s TopicConfig, now func() time.Time) segment.Options {
	o := segment.Options{
		SegmentBytes:       s.SegmentBytes,
		SegmentAge:         s.SegmentAge,
		Flush:              segment.FlushPolicy(s.Flush),
		FlushInterval:      s.FlushInterval,
		RetentionBytes:     s.RetentionBytes,
		Compact:            s.Cleanup == "compact",
		TombstoneRetention: s.TombstoneRetention,
		MaxBatchBytes:      maxLogBatchBytes,
		Now:                now,
	}
	if s.RetentionAge > 0 {
		o.RetentionAge = s.RetentionAge
	}
	return o
}

// openTopic opens (creating when create is set) the topic in dir. On any
// error every partition opened so far is closed.
func openTopic(dir string, meta topicMeta, settings TopicConfig, now func() time.Time) (_ *Topic, err error) {
	// t is not the named result: an error return sets that to nil before
	// the deferred close runs, which must close the partitions t holds.
	t := &Topic{meta: meta, dir: dir, settings: settings}
	defer func() {
		if err != nil {
			t.close()
		}
	}()
	for len(t.meta.LeaderEpochs) < settings.Partitions {
		t.meta.LeaderEpochs = append(t.meta.LeaderEpochs, 0)
	}
	for i := range settings.Partitions {
		t.meta.LeaderEpochs[i]++
	}
	t.meta.Config.Partitions = settings.Partitions
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("topic %s: %w", meta.Name, err)
	}
	// The epochs are persisted before any append uses them.
	if err := writeMeta(dir, t.meta); err != nil {
		return nil, err
	}
	opts := segmentOptions(settings, now)
	for i := range settings.Partitions {
		log, err := openLog(filepath.Join(dir, strconv.Itoa(i)), opts)
		if err != nil {
			return nil, fmt.Errorf("topic %s partition %d: %w", meta.Name, i, err)
		}
		t.partitions = append(t.partitions, newPartition(meta.Name, int32(i), log, t.meta.LeaderEpochs[i], settings.MinInsyncReplicas, &t.notify))
	}
	return t, nil
}

func (t *Topic) close() error {
	var errs []error
	for _, p := range t.partitions {
		if err := p.log.Close(); err != nil && !errors.Is(err, segment.ErrClosed) {
			errs = append(errs, fmt.Errorf("topic %s partition %d: %w", t.meta.Name, p.id, err))
		}
	}
	return errors.Join(errs...)
}

func readMeta(dir string) (topicMeta, error) {
	var m topicMeta
	b, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("%s: %w", filepath.Join(dir, "meta.json"), err)
	}
	return m, nil
}

// writeMeta replaces meta.json atomically: write a temporary file, fsync,
// rename, fsync the directory.
func writeMeta(dir string, m topicMeta) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, "meta.json.tmp")
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, "meta.json"))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", filepath.Join(dir, "meta.json"), err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
