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
