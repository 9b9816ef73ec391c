package eventlog

import (
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestConfigZeroValueIsValid(t *testing.T) {
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("zero config: %v", err)
	}
}

func TestConfigValidateNamesKeyPaths(t *testing.T) {
	cfg := Config{
		DefaultFlush: "always",
		Topics: map[string]TopicConfig{
			"orders":   {Partitions: -1, ReplicationFactor: 3, Cleanup: "zap", Flush: "never", MaxMessageBytes: -1},
			"__hidden": {},
			"dlq":      {},
		},
		Groups: GroupsConfig{Assignor: "random"},
		Subscriptions: []SubscriptionConfig{
			{Topic: "missing", Group: "g", Route: "x", DeadLetterTopic: "nope"},
			{Topic: "orders", Group: "", Route: "/ok", StartFrom: "middle"},
		},
	}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("want errors")
	}
	for _, want := range []string{
		"default_flush: must be sync, interval or os",
		"topics.orders.partitions: must be >= 1",
		"topics.orders.replication_factor: must be 1",
		"topics.orders.cleanup: must be delete or compact",
		"topics.orders.flush: must be sync, interval or os",
		"topics.orders.max_message_bytes: must be between 0 and 33554432",
		"topics.__hidden: names starting with \"__\" are reserved",
		"groups.assignor: must be range, roundrobin or sticky",
		"subscriptions[0].topic: \"missing\" is not declared in topics",
		"subscriptions[0].route: must be a path",
		"subscriptions[0].dead_letter_topic: \"nope\" is not declared",
		"subscriptions[1].group: required",
		"subscriptions[1].start_from: must be earliest or latest",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}

func TestConfigValidateAcceptsFullConfig(t *testing.T) {
	cfg := Config{
		DataDir: "/var/lib/outrigger",
		Topics: map[string]TopicConfig{
			"orders":     {Partitions: 6, ReplicationFactor: 1, MinInsyncReplicas: 1, Cleanup: "delete", Flush: "interval", FlushInterval: 1},
			"orders.dlq": {Cleanup: "compact"},
		},
		Subscriptions: []SubscriptionConfig{{Topic: "orders", Group: "billing", Route: "/events/orders", DeadLetterTopic: "orders.dlq"}},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}

// The example in docs/messaging.md decodes with the YAML library the
// sidecar's loader uses, durations included, and validates.
func TestConfigDecodesFromDocumentedYAML(t *testing.T) {
	doc := `
data_dir: /var/lib/outrigger/eventlog
default_flush: sync
topics:
  orders:
    partitions: 6
    retention_age: 72h
  orders.dlq: {}
  customers:
    cleanup: compact
subscriptions:
  - topic: orders
    group: billing
    route: /events/orders
    in_flight: 16
    retry: {max_attempts: 5, initial_backoff: 100ms, max_backoff: 10s}
    dead_letter_topic: orders.dlq
idempotency: {window: 24h, max_keys: 100000}
groups: {session_timeout: 30s, assignor: range}
`
	var cfg Config
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Topics["orders"].RetentionAge != 72*time.Hour || cfg.Subscriptions[0].Retry.InitialBackoff != 100*time.Millisecond ||
		cfg.Groups.SessionTimeout != 30*time.Second || cfg.Topics["customers"].Cleanup != "compact" {
		t.Fatalf("decoded %+v", cfg)
	}
}

// A join that asks for no session timeout gets groups.session_timeout,
// and a join is refused unless its timeout is from 1s to
// groups.max_session_timeout: a configuration whose session timeout,
// defaults included, lies outside that range would have every such join
// refused, so it is refused itself.
func TestConfigValidateRefusesASessionTimeoutNoJoinCanUse(t *testing.T) {
	for _, tc := range []struct {
		session, max time.Duration
		want         string // "" when valid
	}{
		{0, 0, ""},
		{time.Second, 0, ""},
		{10 * time.Minute, 10 * time.Minute, ""},
		{5 * time.Minute, 0, ""},
		{0, 30 * time.Second, ""},
		{10 * time.Minute, 0, "groups.session_timeout: must be at most groups.max_session_timeout (5m0s, its default)"},
		{0, 10 * time.Second, "groups.session_timeout: must be at most groups.max_session_timeout (10s); its default is 30s"},
		{time.Minute, 10 * time.Second, "groups.session_timeout: must be at most groups.max_session_timeout (10s)"},
		{500 * time.Millisecond, 0, "groups.session_timeout: must be at least 1s"},
		{0, 500 * time.Millisecond, "groups.max_session_timeout: must be at least 1s"},
	} {
		err := Config{Groups: GroupsConfig{SessionTimeout: tc.session, MaxSessionTimeout: tc.max}}.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("session_timeout %v, max_session_timeout %v: %v", tc.session, tc.max, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("session_timeout %v, max_session_timeout %v: got %v, want %q", tc.session, tc.max, err, tc.want)
		}
	}
}
