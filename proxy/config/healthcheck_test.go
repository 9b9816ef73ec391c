package config

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

func TestParseHealthCheck(t *testing.T) {
	src := `clusters:
  a:
    endpoints: [10.0.0.1:80]
    protocol: grpc
    health_check:
      interval: 2s
      unhealthy_interval: 500ms
      timeout: 300ms
      jitter: 100ms
      healthy_threshold: 1
      unhealthy_threshold: 4
      http:
        path: /healthz?full=1
        host: orders.internal
        expected_statuses: [200, "300-399", 204]
  b:
    endpoints: [10.0.0.2:80]
    protocol: http2
    health_check: {grpc: {service: orders.v1.Orders}}
  c:
    endpoints: [10.0.0.3:80]
    health_check: {tcp: {}}
`
	cfg, err := Parse([]byte(src), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := &HealthCheck{
		Interval: 2 * time.Second, UnhealthyInterval: 500 * time.Millisecond, Timeout: 300 * time.Millisecond,
		Jitter: 100 * time.Millisecond, HealthyThreshold: 1, UnhealthyThreshold: 4,
		HTTP: &HTTPHealthCheck{Path: "/healthz?full=1", Host: "orders.internal",
			ExpectedStatuses: []StatusRange{{200, 200}, {300, 399}, {204, 204}}},
	}
	if got := cfg.Clusters["a"].HealthCheck; !reflect.DeepEqual(got, want) {
		t.Errorf("a: got %+v, want %+v", got, want)
	}
	if got := cfg.Clusters["b"].HealthCheck; got == nil || got.GRPC == nil || got.GRPC.Service != "orders.v1.Orders" || got.HTTP != nil || got.TCP != nil {
		t.Errorf("b: got %+v", got)
	}
	if got := cfg.Clusters["c"].HealthCheck; got == nil || got.TCP == nil || got.HTTP != nil || got.GRPC != nil {
		t.Errorf("c: got %+v", got)
	}
	// The effective config (/config) spells ranges as the YAML does and
	// reads back the same.
	b, err := json.Marshal(want.HTTP)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(b); got != `{"path":"/healthz?full=1","host":"orders.internal","expected_statuses":[200,"300-399",204]}` {
		t.Errorf("json: %s", got)
	}
	var back HTTPHealthCheck
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(&back, want.HTTP) {
		t.Errorf("json round trip: %+v, %v", back, err)
	}
	if cfg.Clusters["d"].HealthCheck != nil {
		t.Error("an absent block must stay nil")
	}
}

func TestStatusRangeJSONRejects(t *testing.T) {
	for _, in := range []string{`"200"`, `"a-b"`, `true`, `{}`} {
		var r StatusRange
		if err := json.Unmarshal([]byte(in), &r); err == nil {
			t.Errorf("%s accepted as %+v", in, r)
		}
	}
}

// Parse fills in a health check's defaults (what /config shows), in a
// copy: the config they were filled in from keeps its zero values.
func TestHealthCheckDefaults(t *testing.T) {
	raw := &Config{Clusters: map[string]Cluster{"a": {
		Endpoints:   []Endpoint{{Address: "10.0.0.1:80"}},
		HealthCheck: &HealthCheck{HTTP: &HTTPHealthCheck{}},
	}}}
	want := &HealthCheck{
		Interval: DefaultHealthCheckInterval, UnhealthyInterval: DefaultHealthCheckInterval, Timeout: DefaultHealthCheckTimeout,
		HealthyThreshold: DefaultHealthyThreshold, UnhealthyThreshold: DefaultUnhealthyThreshold,
		HTTP: &HTTPHealthCheck{Path: "/", ExpectedStatuses: []StatusRange{{200, 200}}},
	}
	if got := raw.WithDefaults().Clusters["a"].HealthCheck; !reflect.DeepEqual(got, want) {
		t.Fatalf("defaults: got %+v %+v, want %+v %+v", got, got.HTTP, want, want.HTTP)
	}
	if orig := raw.Clusters["a"].HealthCheck; orig.Interval != 0 || orig.HTTP.Path != "" || orig.HTTP.ExpectedStatuses != nil {
		t.Fatalf("WithDefaults modified the original: %+v %+v", orig, orig.HTTP)
	}
	if again := raw.WithDefaults().WithDefaults().Clusters["a"].HealthCheck; !reflect.DeepEqual(again, want) {
		t.Fatalf("applying twice: %+v", again)
	}
	cfg, err := Parse([]byte("clusters:\n  a:\n    endpoints: [10.0.0.1:80]\n    health_check: {http: {}}\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Clusters["a"].HealthCheck; !reflect.DeepEqual(got, want) {
		t.Fatalf("Parse: got %+v %+v", got, got.HTTP)
	}
}
