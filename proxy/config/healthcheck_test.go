package config

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
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
        retriable_statuses: [429, "502-504"]
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
			ExpectedStatuses:  []StatusRange{{200, 200}, {300, 399}, {204, 204}},
			RetriableStatuses: []StatusRange{{429, 429}, {502, 504}}},
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
	if got := string(b); got != `{"path":"/healthz?full=1","host":"orders.internal","expected_statuses":[200,"300-399",204],"retriable_statuses":[429,"502-504"]}` {
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

// port and http.request_headers parse in both header spellings, are left
// alone by the defaults (zero port: each endpoint's own), and show in the
// effective config.
func TestParseHealthCheckPortAndHeaders(t *testing.T) {
	src := `clusters:
  a:
    endpoints: [10.0.0.1:8080]
    health_check:
      port: 9901
      http:
        path: /healthz
        request_headers: {x-token: s3cret, authorization: "Bearer abc"}
  b:
    endpoints: [10.0.0.2:8080]
    protocol: grpc
    health_check:
      port: 8081
      http:
        request_headers:
          - {name: x-probe, value: one}
          - {name: x-probe, value: two, append: true}
          - {name: user-agent, value: kube-probe/1.31}
  c:
    endpoints: [10.0.0.3:8080]
    health_check: {port: 1, tcp: {}}
  d:
    endpoints: [10.0.0.4:8080]
    health_check: {http: {}}
`
	cfg, err := Parse([]byte(src), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Clusters["a"].HealthCheck
	if a.Port != 9901 || !reflect.DeepEqual(a.HTTP.RequestHeaders, HeaderValues{
		{Name: "authorization", Value: "Bearer abc"}, {Name: "x-token", Value: "s3cret"}}) {
		t.Errorf("a: port %d, headers %+v", a.Port, a.HTTP.RequestHeaders)
	}
	b := cfg.Clusters["b"].HealthCheck
	if b.Port != 8081 || !reflect.DeepEqual(b.HTTP.RequestHeaders, HeaderValues{
		{Name: "x-probe", Value: "one"}, {Name: "x-probe", Value: "two", Append: true}, {Name: "user-agent", Value: "kube-probe/1.31"}}) {
		t.Errorf("b: port %d, headers %+v", b.Port, b.HTTP.RequestHeaders)
	}
	if c := cfg.Clusters["c"].HealthCheck; c.Port != 1 || c.TCP == nil {
		t.Errorf("c: %+v", c)
	}
	if d := cfg.Clusters["d"].HealthCheck; d.Port != 0 || d.HTTP.RequestHeaders != nil {
		t.Errorf("d: defaults set port %d, headers %+v", d.Port, d.HTTP.RequestHeaders)
	}

	eff, err := EffectiveJSON(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"port": 9901`, `"port": 0`, `"name": "x-token"`, `"value": "kube-probe/1.31"`} {
		if !strings.Contains(string(eff), want) {
			t.Errorf("effective config lacks %s", want)
		}
	}
	// The effective form of the HTTP block reads back the same.
	js, err := json.Marshal(b.HTTP)
	if err != nil {
		t.Fatal(err)
	}
	var back HTTPHealthCheck
	if err := json.Unmarshal(js, &back); err != nil || !reflect.DeepEqual(&back, b.HTTP) {
		t.Errorf("json round trip: %+v, %v", back, err)
	}
	// Without headers the block's JSON is as it was.
	if js, _ := json.Marshal(cfg.Clusters["d"].HealthCheck.HTTP); strings.Contains(string(js), "request_headers") {
		t.Errorf("empty request_headers rendered: %s", js)
	}
}

// Every refused request header says which entry and why; the names and
// values a check may send are accepted.
func TestHealthCheckRequestHeaderRules(t *testing.T) {
	for _, tc := range []struct {
		hv   HeaderValue
		path string // after clusters.a.health_check.http.request_headers[0]
		msg  string
	}{
		{HeaderValue{Name: "", Value: "x"}, ".name", "header name is required"},
		{HeaderValue{Name: "x y", Value: "x"}, ".name", `invalid header name "x y"`},
		{HeaderValue{Name: ":authority", Value: "x"}, ".name", `header ":authority": pseudo-headers are made by the client from the check's path and host`},
		{HeaderValue{Name: "Host", Value: "x"}, ".name", `header "Host" cannot be set: the Host of a check is set by http.host`},
		{HeaderValue{Name: "connection", Value: "close"}, ".name", `header "connection" cannot be set: connection-specific (hop-by-hop)`},
		{HeaderValue{Name: "Keep-Alive", Value: "1"}, ".name", `header "Keep-Alive" cannot be set: connection-specific (hop-by-hop)`},
		{HeaderValue{Name: "proxy-connection", Value: "1"}, ".name", `header "proxy-connection" cannot be set: connection-specific (hop-by-hop)`},
		{HeaderValue{Name: "transfer-encoding", Value: "chunked"}, ".name", `header "transfer-encoding" cannot be set: connection-specific (hop-by-hop)`},
		{HeaderValue{Name: "upgrade", Value: "h2c"}, ".name", `header "upgrade" cannot be set: connection-specific (hop-by-hop)`},
		{HeaderValue{Name: "TE", Value: "trailers"}, ".name", `header "TE" cannot be set: connection-specific (hop-by-hop)`},
		{HeaderValue{Name: "trailer", Value: "x"}, ".name", `header "trailer" cannot be set: a check has no body`},
		{HeaderValue{Name: "content-length", Value: "0"}, ".name", `header "content-length" cannot be set: a check has no body`},
		{HeaderValue{Name: "x-a", Value: "a\r\nb"}, ".value", `invalid header value "a\r\nb" (no control characters)`},
		{HeaderValue{Name: "User-Agent", Value: "x", Append: true}, ".append", "a request has one User-Agent: set it without append to replace outrigger-health-check"},
	} {
		cfg := Config{Clusters: map[string]Cluster{"a": {Endpoints: []Endpoint{{Address: "10.0.0.1:80"}},
			HealthCheck: &HealthCheck{HTTP: &HTTPHealthCheck{RequestHeaders: HeaderValues{tc.hv}}}}}}
		want := "clusters.a.health_check.http.request_headers[0]" + tc.path + ": " + tc.msg
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%+v: Validate() = %v, want %s", tc.hv, err, want)
		}
	}
	ok := Config{Clusters: map[string]Cluster{"a": {Endpoints: []Endpoint{{Address: "10.0.0.1:80"}},
		HealthCheck: &HealthCheck{Port: 65535, HTTP: &HTTPHealthCheck{RequestHeaders: HeaderValues{
			{Name: "Authorization", Value: "Bearer x"}, {Name: "user-agent", Value: "probe"},
			{Name: "x-empty", Value: ""}, {Name: "x-a", Value: "1"}, {Name: "x-a", Value: "2", Append: true}}}}}}}
	if err := ok.Validate(); err != nil {
		t.Errorf("valid headers refused: %v", err)
	}
}

// A config written back to YAML spells statuses as it reads them (the
// fuzz test's round trip relies on it).
func TestStatusRangeYAMLRoundTrip(t *testing.T) {
	in := HTTPHealthCheck{ExpectedStatuses: []StatusRange{{200, 200}, {300, 399}}}
	out, err := yaml.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "- 200\n") || !strings.Contains(string(out), "- 300-399\n") {
		t.Fatalf("yaml:\n%s", out)
	}
	var back HTTPHealthCheck
	if err := yaml.Unmarshal(out, &back); err != nil || !reflect.DeepEqual(back.ExpectedStatuses, in.ExpectedStatuses) {
		t.Fatalf("round trip: %+v, %v", back.ExpectedStatuses, err)
	}
}
