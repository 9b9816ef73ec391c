package eventlog

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTopicsPersistAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	tb := openTestBroker(t, dir, ordersConfig(), nil, Options{})
	// Create one at run time through the admin API.
	var ti TopicInfo
	st := call(t, "POST", tb.admin.URL+"/topics", `{"name":"audit","partitions":2,"cleanup":"compact","retention_age":"72h"}`, nil, &ti)
	if st != 201 || len(ti.Partitions) != 2 || ti.Settings.Cleanup != "compact" || ti.Settings.RetentionAge != "72h0m0s" || ti.Declared {
		t.Fatalf("create: %d %+v", st, ti)
	}
	var e errorBody
	if st := call(t, "POST", tb.admin.URL+"/topics", `{"name":"audit"}`, nil, &e); st != 409 || e.Code != "topic_exists" {
		t.Fatalf("duplicate create: %d %+v", st, e)
	}
	if st := call(t, "POST", tb.admin.URL+"/topics", `{"name":"bad/name"}`, nil, &e); st != 400 {
		t.Fatalf("bad name: %d %+v", st, e)
	}
	if st := call(t, "POST", tb.admin.URL+"/topics", `{"name":"x","replication_factor":3}`, nil, &e); st != 400 || !strings.Contains(e.Error, "replication_factor") {
		t.Fatalf("rf 3: %d %+v", st, e)
	}
	call(t, "POST", tb.api.URL+"/v1/topics/audit/records", `{"key":"k","value":"v1"}`, nil, nil)
	call(t, "POST", tb.api.URL+"/v1/topics/orders/records", `{"key":"k","value":"v1"}`, nil, nil)
	epochBefore := ti.Partitions[0].LeaderEpoch
	tb.close()

	// meta.json is where the design says it is.
	raw, err := os.ReadFile(filepath.Join(dir, "topics", "audit", "meta.json"))
	if err != nil {
		t.Fatal(err)
	}
	var meta topicMeta
	if err := json.Unmarshal(raw, &meta); err != nil || meta.Config.Partitions != 2 || meta.Config.Cleanup != "compact" {
		t.Fatalf("meta.json: %v %+v", err, meta)
	}

	// Reopen with orders grown to 4 partitions.
	cfg := ordersConfig()
	cfg.Topics["orders"] = TopicConfig{Partitions: 4, MaxMessageBytes: 1024}
	tb = openTestBroker(t, dir, cfg, nil, Options{})
	var list struct{ Topics []TopicInfo }
	call(t, "GET", tb.admin.URL+"/topics", nil, nil, &list)
	byName := map[string]TopicInfo{}
	for _, ti := range list.Topics {
		byName[ti.Name] = ti
	}
	if a := byName["audit"]; len(a.Partitions) != 2 || a.Settings.Cleanup != "compact" || a.Partitions[KeyPartition([]byte("k"), 2)].HighWatermark != 1 {
		t.Fatalf("audit after restart: %+v", a)
	}
	if a := byName["audit"]; a.Partitions[0].LeaderEpoch <= epochBefore {
		t.Fatalf("leader epoch not bumped on reopen: %d -> %d", epochBefore, a.Partitions[0].LeaderEpoch)
	}
	if o := byName["orders"]; len(o.Partitions) != 4 || !o.Declared {
		t.Fatalf("orders after growing: %+v", o)
	}
	if !byName[offsetsTopic].Internal || !byName[idempotencyTopic].Internal {
		t.Fatalf("internal topics missing: %v", list.Topics)
	}
	// Declared topics cannot be deleted; run-time ones can.
	if st := call(t, "DELETE", tb.admin.URL+"/topics/orders", nil, nil, &e); st != 409 || e.Code != "topic_declared" {
		t.Fatalf("delete declared: %d %+v", st, e)
	}
	if st := call(t, "DELETE", tb.admin.URL+"/topics/"+offsetsTopic, nil, nil, &e); st != 403 {
		t.Fatalf("delete internal: %d %+v", st, e)
	}
	if st := call(t, "DELETE", tb.admin.URL+"/topics/audit", nil, nil, nil); st != 204 {
		t.Fatalf("delete audit: %d", st)
	}
	if st := call(t, "GET", tb.admin.URL+"/topics/audit", nil, nil, &e); st != 404 || e.Code != "unknown_topic" {
		t.Fatalf("deleted topic: %d %+v", st, e)
	}
	if _, err := os.Stat(filepath.Join(dir, "topics", "audit")); !os.IsNotExist(err) {
		t.Fatalf("topic directory left behind: %v", err)
	}
	tb.close()

	// Shrinking a declared topic is refused, naming the key.
	cfg.Topics["orders"] = TopicConfig{Partitions: 2}
	cfg.DataDir = dir
	if _, err := Open(cfg, nil, nil, Options{}); err == nil || !strings.Contains(err.Error(), "topics.orders.partitions") {
		t.Fatalf("shrink: %v", err)
	}
}

func TestOpenRejectsInvalidConfig(t *testing.T) {
	cfg := Config{DataDir: t.TempDir(), Topics: map[string]TopicConfig{"t": {Partitions: -1}}}
	if _, err := Open(cfg, nil, nil, Options{}); err == nil || !strings.Contains(err.Error(), "topics.t.partitions") {
		t.Fatalf("got %v", err)
	}
	cfg = Config{DataDir: t.TempDir(), Topics: map[string]TopicConfig{"t": {}},
		Subscriptions: []SubscriptionConfig{{Topic: "t", Group: "g", Route: "/x"}}}
	if _, err := Open(cfg, nil, nil, Options{}); err == nil || !strings.Contains(err.Error(), "AppURL") {
		t.Fatalf("missing AppURL: %v", err)
	}
}

// A data directory that another event log holds is refused with an
// error, not a crash: the partition that cannot be locked fails the
// topic's open, which closes the partitions it opened before it.
func TestOpenOfADataDirInUseIsAnError(t *testing.T) {
	dir := t.TempDir()
	openTestBroker(t, dir, ordersConfig(), nil, Options{})
	cfg := ordersConfig()
	cfg.DataDir = dir
	b, err := Open(cfg, nil, nil, Options{})
	if err == nil {
		b.Close()
		t.Fatal("a second Open of a data directory in use succeeded")
	}
	if !strings.Contains(err.Error(), "partition") {
		t.Fatalf("error %q does not name the partition it could not open", err)
	}
}
