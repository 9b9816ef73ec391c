package eventlog

import (
	"fmt"
	"net/http"
	"time"
)

// AdminHandler serves the topic and group admin API under /topics and
// /groups (the admin listener mounts it at both prefixes, unchanged paths):
//
//	GET    /topics                        list topics with partitions and offsets
//	POST   /topics                        create a topic
//	GET    /topics/{topic}                describe one topic
//	DELETE /topics/{topic}                delete a topic created at run time
//	GET    /groups                        list groups with members, offsets, lag
//	GET    /groups/{group}                describe one group
//	POST   /groups/{group}/offsets/reset  reset committed offsets
func (b *Broker) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /topics", func(w http.ResponseWriter, r *http.Request) {
		out := []TopicInfo{}
		for _, n := range b.TopicNames() {
			if ti, err := b.DescribeTopic(n); err == nil {
				out = append(out, ti)
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{"topics": out})
	})
	mux.HandleFunc("POST /topics", b.handleCreateTopic)
	mux.HandleFunc("GET /topics/{topic}", func(w http.ResponseWriter, r *http.Request) {
		ti, err := b.DescribeTopic(r.PathValue("topic"))
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, ti)
	})
	mux.HandleFunc("DELETE /topics/{topic}", func(w http.ResponseWriter, r *http.Request) {
		if err := b.DeleteTopic(r.Context(), r.PathValue("topic")); err != nil {
			writeError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /groups", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"groups": b.Groups()})
	})
	mux.HandleFunc("GET /groups/{group}", b.handleGroup)
	mux.HandleFunc("POST /groups/{group}/offsets/reset", b.handleReset)
	mux.HandleFunc("/", noRoute(mux))
	return mux
}

// PartitionInfo describes one partition.
type PartitionInfo struct {
	Partition      int32    `json:"partition"`
	LeaderEpoch    int32    `json:"leader_epoch"`
	LogStartOffset int64    `json:"log_start_offset"`
	LogEndOffset   int64    `json:"log_end_offset"`
	HighWatermark  int64    `json:"high_watermark"`
	InSyncReplicas []string `json:"isr"`
}

// TopicInfo describes one topic with its effective settings.
type TopicInfo struct {
	Name       string          `json:"name"`
	Internal   bool            `json:"internal"`
	Declared   bool            `json:"declared"`
	CreatedAt  time.Time       `json:"created_at"`
	Settings   TopicSettings   `json:"settings"`
	Partitions []PartitionInfo `json:"partitions"`
}

// TopicSettings is TopicConfig with defaults applied and durations as text,
// as the admin API shows and accepts it.
type TopicSettings struct {
	Partitions         int    `json:"partitions"`
	ReplicationFactor  int    `json:"replication_factor"`
	MinInsyncReplicas  int    `json:"min_insync_replicas"`
	Cleanup            string `json:"cleanup"`
	RetentionAge       string `json:"retention_age"`
	RetentionBytes     int64  `json:"retention_bytes"`
	SegmentBytes       int64  `json:"segment_bytes"`
	SegmentAge         string `json:"segment_age"`
	Flush              string `json:"flush"`
	FlushInterval      string `json:"flush_interval"`
	MaxMessageBytes    int    `json:"max_message_bytes"`
	TombstoneRetention string `json:"tombstone_retention"`
}

func settingsView(s TopicConfig) TopicSettings {
	ret := s.RetentionAge.String()
	if s.RetentionAge < 0 {
		ret = "forever"
	}
	return TopicSettings{s.Partitions, s.ReplicationFactor, s.MinInsyncReplicas, s.Cleanup, ret,
		s.RetentionBytes, s.SegmentBytes, s.SegmentAge.String(), s.Flush, s.FlushInterval.String(),
		s.MaxMessageBytes, s.TombstoneRetention.String()}
}

// DescribeTopic returns a topic's settings and per-partition offsets.
func (b *Broker) DescribeTopic(name string) (TopicInfo, error) {
	t, err := b.Topic(name)
	if err != nil {
		return TopicInfo{}, err
	}
	_, declared := b.cfg.Topics[name]
	ti := TopicInfo{Name: name, Internal: t.meta.Internal, Declared: declared, CreatedAt: t.meta.CreatedAt,
		Settings: settingsView(t.settings)}
	for _, p := range t.partitions {
		ti.Partitions = append(ti.Partitions, PartitionInfo{p.ID(), p.LeaderEpoch(), p.LogStartOffset(),
			p.LogEndOffset(), p.HighWatermark(), p.inSyncReplicas()})
	}
	return ti, nil
}

// createTopicBody is POST /topics. Durations are Go duration text ("72h").
type createTopicBody struct {
	Name               string `json:"name"`
	Partitions         int    `json:"partitions"`
	ReplicationFactor  int    `json:"replication_factor"`
	MinInsyncReplicas  int    `json:"min_insync_replicas"`
	Cleanup            string `json:"cleanup"`
	RetentionAge       string `json:"retention_age"`
	RetentionBytes     int64  `json:"retention_bytes"`
	SegmentBytes       int64  `json:"segment_bytes"`
	SegmentAge         string `json:"segment_age"`
	Flush              string `json:"flush"`
	FlushInterval      string `json:"flush_interval"`
	MaxMessageBytes    int    `json:"max_message_bytes"`
	TombstoneRetention string `json:"tombstone_retention"`
}

func (c createTopicBody) config() (TopicConfig, error) {
	tc := TopicConfig{
		Partitions: c.Partitions, ReplicationFactor: c.ReplicationFactor, MinInsyncReplicas: c.MinInsyncReplicas,
		Cleanup: c.Cleanup, RetentionBytes: c.RetentionBytes, SegmentBytes: c.SegmentBytes, Flush: c.Flush,
		MaxMessageBytes: c.MaxMessageBytes,
	}
	for _, d := range []struct {
		key string
		in  string
		out *time.Duration
	}{
		{"retention_age", c.RetentionAge, &tc.RetentionAge},
		{"segment_age", c.SegmentAge, &tc.SegmentAge},
		{"flush_interval", c.FlushInterval, &tc.FlushInterval},
		{"tombstone_retention", c.TombstoneRetention, &tc.TombstoneRetention},
	} {
		if d.in == "" {
			continue
		}
		v, err := time.ParseDuration(d.in)
		if err != nil {
			return tc, fmt.Errorf("%s: %v", d.key, err)
		}
		*d.out = v
	}
	return tc, nil
}

func (b *Broker) handleCreateTopic(w http.ResponseWriter, r *http.Request) {
	var req createTopicBody
	if err := decodeBody(w, r, 1<<20, &req, false); err != nil {
		writeError(w, err)
		return
	}
	tc, err := req.config()
	if err != nil {
		writeError(w, errf(ErrBadRequest, "%v", err))
		return
	}
	if err := b.CreateTopic(req.Name, tc); err != nil {
		writeError(w, err)
		return
	}
	ti, err := b.DescribeTopic(req.Name)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, ti)
}
