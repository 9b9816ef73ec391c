package breaker

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestConfigValidateNamesKeyPaths(t *testing.T) {
	tests := []struct {
		name string
		c    Config
		want string
	}{
		{"zero is valid", Config{}, ""},
		{"rate above one", Config{FailureRate: FailureRateConfig{Threshold: 1.5}}, "failure_rate.threshold: must be in (0,1]"},
		{"rate NaN", Config{FailureRate: FailureRateConfig{Threshold: math.NaN()}}, "failure_rate.threshold: must be in (0,1]"},
		{"negative consecutive", Config{ConsecutiveFailures: ConsecutiveFailuresConfig{Threshold: -1}}, "consecutive_failures.threshold: must not be negative"},
		{"slow rate", Config{SlowCalls: SlowCallsConfig{RateThreshold: -0.1}}, "slow_calls.rate_threshold: must be in (0,1]"},
		{"window type", Config{Window: WindowConfig{Type: "sliding"}}, `window.type: must be "count" or "time", not "sliding"`},
		{"window size", Config{Window: WindowConfig{Size: 1 << 21}}, "window.size: must be in [1,1048576]"},
		{"bucket too narrow", Config{Window: WindowConfig{Type: WindowTime, Duration: 5 * time.Millisecond, Buckets: 10}}, "window.buckets: each bucket (duration/buckets = 500µs) must span at least 1ms"},
		{"max below base", Config{Open: BackoffConfig{Base: time.Minute, Max: time.Second}}, "open.max: must be at least base (1m0s)"},
		{"max below default base", Config{Open: BackoffConfig{Max: time.Second}}, "open.max: must be at least base (default 5s)"},
		{"multiplier", Config{Open: BackoffConfig{Multiplier: 0.5}}, "open.multiplier: must be at least 1"},
		{"jitter", Config{Open: BackoffConfig{Jitter: 2}}, "open.jitter: must be in [0,1]"},
		{"probes", Config{HalfOpen: HalfOpenConfig{MaxProbes: -1, SuccessesToClose: -2}}, "half_open.max_probes: must not be negative; half_open.successes_to_close: must not be negative"},
	}
	for _, tc := range tests {
		err := tc.c.Validate()
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("%s: Validate = %q, want %q", tc.name, got, tc.want)
		}
		if _, nerr := New(tc.c); (nerr == nil) != (tc.want == "") {
			t.Errorf("%s: New error %v disagrees with Validate", tc.name, nerr)
		}
	}
}

func TestFieldErrorsWithPrefix(t *testing.T) {
	err := Config{FailureRate: FailureRateConfig{Threshold: 2}, Open: BackoffConfig{Jitter: -1}}.Validate()
	var fe FieldErrors
	if !errors.As(err, &fe) || len(fe) != 2 {
		t.Fatalf("Validate error %#v is not two FieldErrors", err)
	}
	got := fe.WithPrefix("clusters.payments.circuit_breaker").Error()
	want := "clusters.payments.circuit_breaker.failure_rate.threshold: must be in (0,1]; clusters.payments.circuit_breaker.open.jitter: must be in [0,1]"
	if got != want {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	if fe[0].Path != "failure_rate.threshold" {
		t.Fatalf("WithPrefix modified the original: %v", fe[0].Path)
	}
}

func TestOutlierConfigValidate(t *testing.T) {
	bad := -5
	over := 101.0
	err := OutlierConfig{
		Consecutive5xx:          -1,
		MaxEjectionPercent:      150,
		BaseEjectionTime:        time.Minute,
		MaxEjectionTime:         time.Second,
		EnforcingSuccessRate:    &bad,
		SuccessRateStdevFactor:  math.Inf(1),
		PanicThreshold:          &over,
		SuccessRateMinimumHosts: -2,
	}.Validate()
	want := []string{
		"consecutive_5xx: must not be negative",
		"max_ejection_time: must be at least base_ejection_time (1m0s)",
		"max_ejection_percent: must be in [1,100]",
		"enforcing_success_rate: must be in [0,100]",
		"success_rate_minimum_hosts: must not be negative",
		"success_rate_stdev_factor: must be a non-negative number",
		"panic_threshold: must be in [0,100]",
	}
	if err == nil || err.Error() != strings.Join(want, "; ") {
		t.Fatalf("Validate =\n %v\nwant\n %v", err, strings.Join(want, "; "))
	}
	if err := (OutlierConfig{}).Validate(); err != nil {
		t.Fatalf("zero OutlierConfig: %v", err)
	}
}

func TestWithDefaultsDoesNotAliasPointers(t *testing.T) {
	p := 7
	c := OutlierConfig{EnforcingSuccessRate: &p}
	d := c.WithDefaults()
	*d.EnforcingSuccessRate = 9
	if p != 7 {
		t.Fatal("WithDefaults result aliases the input's pointer")
	}
	if *d.EnforcingConsecutive5xx != 100 || *d.EnforcingConsecutiveGatewayFailure != 0 || *d.PanicThreshold != 50 {
		t.Fatalf("defaults %+v", d)
	}
}

// TestConfigTagsAreSnakeCase keeps the yaml and json keys of every config
// struct identical and snake_case, as the config loader and the docs rely
// on.
func TestConfigTagsAreSnakeCase(t *testing.T) {
	seen := map[reflect.Type]bool{}
	var walk func(reflect.Type)
	walk = func(ty reflect.Type) {
		for ty.Kind() == reflect.Pointer || ty.Kind() == reflect.Slice {
			ty = ty.Elem()
		}
		if ty.Kind() != reflect.Struct || seen[ty] || ty.PkgPath() != reflect.TypeFor[Config]().PkgPath() {
			return
		}
		seen[ty] = true
		for f := range ty.Fields() {
			y, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			j, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if y == "" || y != j || strings.ToLower(y) != y || strings.ContainsAny(y, "- ") {
				t.Errorf("%s.%s: yaml %q json %q", ty.Name(), f.Name, y, j)
			}
			walk(f.Type)
		}
	}
	for _, c := range []any{Config{}, LimitsConfig{}, OutlierConfig{}, ClassifierConfig{}} {
		walk(reflect.TypeOf(c))
	}
}

// TestConfigDecodesFromYAML decodes the documented example (the cluster
// blocks of docs/circuit-breaking.md) and validates it.
func TestConfigDecodesFromYAML(t *testing.T) {
	const doc = `
circuit_breaker:
  consecutive_failures: {threshold: 5}
  failure_rate: {threshold: 0.5}
  slow_calls: {duration_threshold: 2s, rate_threshold: 0.8}
  window: {type: time, duration: 30s, buckets: 10, minimum_calls: 20}
  open: {base: 5s, max: 1m, multiplier: 2, jitter: 0.2}
  half_open: {max_probes: 2, successes_to_close: 3}
limits:
  max_connections: 512
  max_pending_requests: 256
  max_requests: 1024
  retry_budget: {budget_percent: 20, min_retry_concurrency: 3}
outlier_detection:
  consecutive_5xx: 5
  consecutive_gateway_failure: 3
  enforcing_consecutive_gateway_failure: 100
  interval: 10s
  base_ejection_time: 30s
  max_ejection_time: 5m
  max_ejection_percent: 50
  success_rate_minimum_hosts: 3
  success_rate_request_volume: 50
  success_rate_stdev_factor: 1.9
  panic_threshold: 50
failure_classifier:
  http_statuses: ["5xx", "429"]
  grpc_statuses: [UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL]
`
	var c struct {
		Breaker    Config           `yaml:"circuit_breaker"`
		Limits     LimitsConfig     `yaml:"limits"`
		Outlier    OutlierConfig    `yaml:"outlier_detection"`
		Classifier ClassifierConfig `yaml:"failure_classifier"`
	}
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"circuit_breaker": c.Breaker.Validate(), "limits": c.Limits.Validate(),
		"outlier_detection": c.Outlier.Validate(), "failure_classifier": c.Classifier.Validate(),
	} {
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if c.Breaker.SlowCalls.DurationThreshold != 2*time.Second || c.Breaker.Window.Type != WindowTime || c.Limits.RetryBudget.BudgetPercent != 20 ||
		*c.Outlier.EnforcingConsecutiveGatewayFailure != 100 || *c.Outlier.PanicThreshold != 50 || len(c.Classifier.HTTPStatuses) != 2 {
		t.Fatalf("decoded %+v", c)
	}
	if _, err := json.Marshal(c); err != nil {
		t.Fatal(err)
	}
}
