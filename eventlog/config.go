package eventlog

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Config is the eventlog section of the sidecar config (`eventlog:` in
// outrigger.yaml). Every field's zero value means the default named in its
// comment. Validate checks it without changing it.
type Config struct {
	// DataDir is the directory that holds every topic (DataDir/topics/<name>/
	// with meta.json and one subdirectory per partition) and the internal
	// topics. Zero: "data/eventlog", relative to the working directory.
	DataDir string `yaml:"data_dir" json:"data_dir"`

	// Topics declares topics by name. A declared topic is created on Open
	// when missing; its settings are re-applied from config on every Open
	// (partitions may grow, never shrink). Topics can also be created and
	// deleted through the admin API (see docs/messaging.md); declared topics
	// cannot be deleted there. Names: 1-249 characters of [a-zA-Z0-9._-],
	// not starting with "__" (reserved for internal topics).
	Topics map[string]TopicConfig `yaml:"topics" json:"topics"`

	// Subscriptions are push subscriptions: the sidecar POSTs each record of
	// a topic to a route on the local app, in partition order.
	Subscriptions []SubscriptionConfig `yaml:"subscriptions" json:"subscriptions"`

	// Idempotency bounds how long a publish's Idempotency-Key is remembered.
	Idempotency IdempotencyConfig `yaml:"idempotency" json:"idempotency"`

	// Groups holds the consumer-group defaults.
	Groups GroupsConfig `yaml:"groups" json:"groups"`

	// DefaultFlush is the flush policy of topics that set none: "sync"
	// (fsync before a write is acknowledged, with group commit), "interval"
	// (fsync every flush_interval) or "os" (leave it to the kernel).
	// Zero: "sync".
	DefaultFlush string `yaml:"default_flush" json:"default_flush"`

	// DefaultFlushInterval is the fsync period of topics with flush
	// "interval" that set no flush_interval. Zero: 1s.
	DefaultFlushInterval time.Duration `yaml:"default_flush_interval" json:"default_flush_interval"`

	// MaintenanceInterval is how often retention and compaction run over
	// every partition. Zero: 30s.
	MaintenanceInterval time.Duration `yaml:"maintenance_interval" json:"maintenance_interval"`

	// MaxRequestBytes bounds the body of one publish request. Zero: 8 MiB.
	MaxRequestBytes int64 `yaml:"max_request_bytes" json:"max_request_bytes"`
}

// TopicConfig describes one topic. Zero values mean the defaults below.
type TopicConfig struct {
	// Partitions is the number of partitions. Zero: 1.
	Partitions int `yaml:"partitions" json:"partitions"`

	// ReplicationFactor is the number of copies of each partition. Only 1
	// is supported: the log lives on this node alone until replication
	// lands. Zero: 1.
	ReplicationFactor int `yaml:"replication_factor" json:"replication_factor"`

	// MinInsyncReplicas is how many in-sync replicas an acks=all write
	// needs. It must not exceed replication_factor. Zero: 1.
	MinInsyncReplicas int `yaml:"min_insync_replicas" json:"min_insync_replicas"`

	// Cleanup is "delete" (drop whole segments past retention) or
	// "compact" (keep the latest record per key). Zero: "delete".
	Cleanup string `yaml:"cleanup" json:"cleanup"`

	// RetentionAge drops segments whose newest record is older. Zero: 168h
	// (7 days); negative: keep forever.
	RetentionAge time.Duration `yaml:"retention_age" json:"retention_age"`

	// RetentionBytes drops the oldest segments while a partition is larger.
	// Zero: unlimited.
	RetentionBytes int64 `yaml:"retention_bytes" json:"retention_bytes"`

	// SegmentBytes rolls a new segment once the active one is this large.
	// At most 2 GiB - 1. Zero: 64 MiB.
	SegmentBytes int64 `yaml:"segment_bytes" json:"segment_bytes"`

	// SegmentAge rolls a new segment once the active one is this old.
	// Zero: 24h.
	SegmentAge time.Duration `yaml:"segment_age" json:"segment_age"`

	// Flush is "sync", "interval" or "os" (see Config.DefaultFlush).
	// Zero: Config.DefaultFlush.
	Flush string `yaml:"flush" json:"flush"`

	// FlushInterval is the fsync period when Flush is "interval".
	// Zero: Config.DefaultFlushInterval.
	FlushInterval time.Duration `yaml:"flush_interval" json:"flush_interval"`

	// MaxMessageBytes is the largest record (key + value + headers) the
	// topic accepts; larger ones are refused with 413. At most 32 MiB.
	// Zero: 1 MiB.
	MaxMessageBytes int `yaml:"max_message_bytes" json:"max_message_bytes"`

	// TombstoneRetention is how long compaction keeps a record with an empty
	// value (a tombstone) before removing it. Zero: 24h.
	TombstoneRetention time.Duration `yaml:"tombstone_retention" json:"tombstone_retention"`
}

// SubscriptionConfig is one push subscription.
type SubscriptionConfig struct {
	// Name identifies the subscription in metrics and the admin API.
	// Zero: "<topic>.<group>".
	Name string `yaml:"name" json:"name"`

	// Topic is the topic delivered. Required; must be declared in topics.
	Topic string `yaml:"topic" json:"topic"`

	// Group is the consumer group whose committed offsets track delivery.
	// Required.
	Group string `yaml:"group" json:"group"`

	// Route is the path on the local app that receives each record as an
	// HTTP POST, e.g. "/events/orders". Required; must start with "/".
	Route string `yaml:"route" json:"route"`

	// InFlight is how many partitions may have a delivery outstanding at
	// once. Within a partition deliveries are strictly sequential so that
	// order holds. Zero: 16.
	InFlight int `yaml:"in_flight" json:"in_flight"`

	// StartFrom is where a group with no committed offset begins:
	// "earliest" or "latest". Zero: "earliest".
	StartFrom string `yaml:"start_from" json:"start_from"`

	// Timeout bounds one delivery attempt. Zero: 10s.
	Timeout time.Duration `yaml:"timeout" json:"timeout"`

	// Retry is the retry policy of failed deliveries.
	Retry RetryConfig `yaml:"retry" json:"retry"`

	// DeadLetterTopic receives records that failed MaxAttempts times, with
	// headers saying why. It must be declared in topics. Zero: failed
	// records are skipped after MaxAttempts (and counted in metrics).
	DeadLetterTopic string `yaml:"dead_letter_topic" json:"dead_letter_topic"`
}

// RetryConfig is a capped exponential back-off.
type RetryConfig struct {
	// MaxAttempts is the number of delivery attempts before a record is
	// dead-lettered. Zero: 5.
	MaxAttempts int `yaml:"max_attempts" json:"max_attempts"`

	// InitialBackoff is the wait after the first failure; each further
	// failure doubles it, up to MaxBackoff. Zero: 100ms.
	InitialBackoff time.Duration `yaml:"initial_backoff" json:"initial_backoff"`

	// MaxBackoff caps the wait between attempts. Zero: 10s.
	MaxBackoff time.Duration `yaml:"max_backoff" json:"max_backoff"`
}

// IdempotencyConfig bounds the memory of Idempotency-Key publishes.
type IdempotencyConfig struct {
	// Window is how long a key's first result is returned to retries.
	// Zero: 24h.
	Window time.Duration `yaml:"window" json:"window"`

	// MaxKeys is the most keys remembered; the oldest are forgotten first.
	// Zero: 100000.
	MaxKeys int `yaml:"max_keys" json:"max_keys"`
}

// GroupsConfig holds consumer-group defaults.
type GroupsConfig struct {
	// SessionTimeout is how long a member may go without a heartbeat (or
	// any other call) before it is removed and the group rebalances. A
	// member may ask for another in its join request, between 1s and
	// MaxSessionTimeout. Zero: 30s. At least 1s and at most
	// MaxSessionTimeout, defaults included.
	SessionTimeout time.Duration `yaml:"session_timeout" json:"session_timeout"`

	// MaxSessionTimeout caps what a member may ask for. Zero: 5m. At
	// least 1s.
	MaxSessionTimeout time.Duration `yaml:"max_session_timeout" json:"max_session_timeout"`

	// Assignor is the partition assignor of groups whose first member names
	// none: "range", "roundrobin" or "sticky". Zero: "range".
	Assignor string `yaml:"assignor" json:"assignor"`
}

// Defaults. They are applied by the Broker, never written into a Config.
const (
	DefaultDataDir             = "data/eventlog"
	DefaultFlushPolicy         = "sync"
	DefaultFlushInterval       = time.Second
	DefaultMaintenanceInterval = 30 * time.Second
	DefaultMaxRequestBytes     = 8 << 20
	DefaultRetentionAge        = 7 * 24 * time.Hour
	DefaultSegmentBytes        = 64 << 20
	DefaultSegmentAge          = 24 * time.Hour
	DefaultMaxMessageBytes     = 1 << 20
	DefaultTombstoneRetention  = 24 * time.Hour
	DefaultInFlight            = 16
	DefaultDeliveryTimeout     = 10 * time.Second
	DefaultMaxAttempts         = 5
	DefaultInitialBackoff      = 100 * time.Millisecond
	DefaultMaxBackoff          = 10 * time.Second
	DefaultIdempotencyWindow   = 24 * time.Hour
	DefaultIdempotencyMaxKeys  = 100000
	DefaultSessionTimeout      = 30 * time.Second
	DefaultMaxSessionTimeout   = 5 * time.Minute
	DefaultAssignor            = "range"

	// minSessionTimeout is the shortest session timeout a join may ask
	// for.
	minSessionTimeout = time.Second
)

var topicNameRE = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)

// ValidTopicName reports whether name is acceptable for a user topic.
func ValidTopicName(name string) error {
	switch {
	case !topicNameRE.MatchString(name) || name == "." || name == "..":
		return errors.New("must be 1-249 characters of [a-zA-Z0-9._-] and not \".\" or \"..\"")
	case strings.HasPrefix(name, "__"):
		return errors.New("names starting with \"__\" are reserved for internal topics")
	}
	return nil
}

// Validate reports every problem in c, each prefixed with the key path
// relative to the eventlog section. It does not change c.
func (c Config) Validate() error {
	var errs []error
	add := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	}
	if err := validFlush(c.DefaultFlush); err != nil {
		add("default_flush", "%v", err)
	}
	if c.DefaultFlushInterval < 0 {
		add("default_flush_interval", "must be >= 0")
	}
	if c.MaintenanceInterval < 0 {
		add("maintenance_interval", "must be >= 0")
	}
	if c.MaxRequestBytes < 0 {
		add("max_request_bytes", "must be >= 0")
	}
	names := make([]string, 0, len(c.Topics))
	for n := range c.Topics {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := ValidTopicName(n); err != nil {
			add("topics."+n, "%v", err)
			continue
		}
		for _, e := range c.Topics[n].validate() {
			errs = append(errs, fmt.Errorf("topics.%s.%w", n, e))
		}
	}
	if c.Idempotency.Window < 0 {
		add("idempotency.window", "must be >= 0")
	}
	if c.Idempotency.MaxKeys < 0 {
		add("idempotency.max_keys", "must be >= 0")
	}
	if c.Groups.SessionTimeout < 0 {
		add("groups.session_timeout", "must be >= 0")
	}
	if c.Groups.MaxSessionTimeout < 0 {
		add("groups.max_session_timeout", "must be >= 0")
	}
	// A join that names no session timeout gets session_timeout, and a
	// join is refused outside [minSessionTimeout, max_session_timeout]:
	// checked with the defaults filled in, or a configuration that sets
	// only one of the two could have every such join refused.
	if st, mx := c.Groups.SessionTimeout, c.Groups.MaxSessionTimeout; st >= 0 && mx >= 0 {
		est, emx := cmpOr(st, DefaultSessionTimeout), cmpOr(mx, DefaultMaxSessionTimeout)
		switch {
		case mx > 0 && mx < minSessionTimeout:
			add("groups.max_session_timeout", "must be at least %s", minSessionTimeout)
		case st > 0 && st < minSessionTimeout:
			add("groups.session_timeout", "must be at least %s", minSessionTimeout)
		case est > emx && mx == 0:
			add("groups.session_timeout", "must be at most groups.max_session_timeout (%s, its default)", emx)
		case est > emx && st == 0:
			add("groups.session_timeout", "must be at most groups.max_session_timeout (%s); its default is %s", emx, est)
		case est > emx:
			add("groups.session_timeout", "must be at most groups.max_session_timeout (%s)", emx)
		}
	}
	if c.Groups.Assignor != "" && !validAssignor(c.Groups.Assignor) {
		add("groups.assignor", "must be range, roundrobin or sticky, not %q", c.Groups.Assignor)
	}
	seen := map[string]int{}
	for i, s := range c.Subscriptions {
		p := fmt.Sprintf("subscriptions[%d]", i)
		name := s.EffectiveName()
		if j, dup := seen[name]; dup {
			add(p+".name", "%q is also used by subscriptions[%d]", name, j)
		}
		seen[name] = i
		if s.Topic == "" {
			add(p+".topic", "required")
		} else if _, ok := c.Topics[s.Topic]; !ok {
			add(p+".topic", "%q is not declared in topics", s.Topic)
		}
		if s.Group == "" {
			add(p+".group", "required")
		} else if err := validGroupName(s.Group); err != nil {
			add(p+".group", "%v", err)
		}
		if !strings.HasPrefix(s.Route, "/") {
			add(p+".route", "must be a path starting with \"/\"")
		} else if _, err := url.ParseRequestURI(s.Route); err != nil {
			add(p+".route", "%v", err)
		}
		if s.InFlight < 0 {
			add(p+".in_flight", "must be >= 0")
		}
		switch s.StartFrom {
		case "", "earliest", "latest":
		default:
			add(p+".start_from", "must be earliest or latest, not %q", s.StartFrom)
		}
		if s.Timeout < 0 {
			add(p+".timeout", "must be >= 0")
		}
		if s.Retry.MaxAttempts < 0 {
			add(p+".retry.max_attempts", "must be >= 0")
		}
		if s.Retry.InitialBackoff < 0 {
			add(p+".retry.initial_backoff", "must be >= 0")
		}
		if s.Retry.MaxBackoff < 0 {
			add(p+".retry.max_backoff", "must be >= 0")
		}
		if s.DeadLetterTopic != "" {
			if _, ok := c.Topics[s.DeadLetterTopic]; !ok {
				add(p+".dead_letter_topic", "%q is not declared in topics", s.DeadLetterTopic)
			} else if s.DeadLetterTopic == s.Topic {
				add(p+".dead_letter_topic", "must differ from topic")
			}
		}
	}
	return errors.Join(errs...)
}

// validate returns errors whose text starts with the key relative to the
// topic ("partitions: must be >= 1").
func (t TopicConfig) validate() []error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if t.Partitions < 0 {
		add("partitions", "must be >= 1")
	}
	if t.Partitions > maxPartitions {
		add("partitions", "must be <= %d", maxPartitions)
	}
	if t.ReplicationFactor < 0 || t.ReplicationFactor > 1 {
		add("replication_factor", "must be 1 (replication is not supported yet)")
	}
	rf := max(t.ReplicationFactor, 1)
	if t.MinInsyncReplicas < 0 || t.MinInsyncReplicas > rf {
		add("min_insync_replicas", "must be between 1 and replication_factor (%d)", rf)
	}
	switch t.Cleanup {
	case "", "delete", "compact":
	default:
		add("cleanup", "must be delete or compact, not %q", t.Cleanup)
	}
	if t.RetentionBytes < 0 {
		add("retention_bytes", "must be >= 0")
	}
	if t.SegmentBytes < 0 || t.SegmentBytes > maxSegmentBytes {
		add("segment_bytes", "must be between 0 and %d", maxSegmentBytes)
	}
	if t.SegmentAge < 0 {
		add("segment_age", "must be >= 0")
	}
	if err := validFlush(t.Flush); err != nil {
		add("flush", "%v", err)
	}
	if t.FlushInterval < 0 {
		add("flush_interval", "must be >= 0")
	}
	if t.MaxMessageBytes < 0 || t.MaxMessageBytes > maxMessageBytes {
		add("max_message_bytes", "must be between 0 and %d", maxMessageBytes)
	}
	if t.TombstoneRetention < 0 {
		add("tombstone_retention", "must be >= 0")
	}
	return errs
}

// Upper bounds that the segment store imposes: segment files are addressed
// with 32-bit positions, and one batch (one request's records for one
// partition) is at most 64 MiB.
const (
	maxSegmentBytes = 1<<31 - 1
	maxMessageBytes = 32 << 20
)

// maxPartitions bounds a topic's partitions so that per-partition metric
// labels and goroutines stay bounded.
const maxPartitions = 1024

func validFlush(s string) error {
	switch s {
	case "", "sync", "interval", "os":
		return nil
	}
	return fmt.Errorf("must be sync, interval or os, not %q", s)
}

func validAssignor(s string) bool {
	switch s {
	case "range", "roundrobin", "sticky":
		return true
	}
	return false
}

var groupNameRE = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)

func validGroupName(s string) error {
	if !groupNameRE.MatchString(s) {
		return errors.New("must be 1-249 characters of [a-zA-Z0-9._-]")
	}
	return nil
}

// EffectiveName is the subscription's name, defaulted.
func (s SubscriptionConfig) EffectiveName() string {
	if s.Name != "" {
		return s.Name
	}
	return s.Topic + "." + s.Group
}
