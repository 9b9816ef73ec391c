package health

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func validConfig(k Kind) Config {
	return Config{Kind: k, Interval: time.Second, Timeout: time.Second, HealthyThreshold: 1, UnhealthyThreshold: 1}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{HTTP: "http", GRPC: "grpc", TCP: "tcp", Kind(9): "kind(9)"} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", k, got, want)
		}
	}
}

func TestValidateAcceptsMinimalConfigs(t *testing.T) {
	for _, k := range []Kind{HTTP, GRPC, TCP} {
		if err := validConfig(k).Validate(); err != nil {
			t.Errorf("%v: %v", k, err)
		}
	}
	c := validConfig(HTTP)
	c.Path, c.Host = "/healthz?deep=1", "svc.internal:8080"
	c.Statuses = []StatusRange{{200, 299}, {404, 404}}
	c.UnhealthyInterval, c.Jitter = 5*time.Second, time.Second
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
}

func TestValidateNamesEachBadField(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*Config)
		field string
	}{
		{"unknown kind", func(c *Config) { c.Kind = 7 }, "kind"},
		{"zero interval", func(c *Config) { c.Interval = 0 }, "interval"},
		{"negative unhealthy interval", func(c *Config) { c.UnhealthyInterval = -1 }, "unhealthy_interval"},
		{"zero timeout", func(c *Config) { c.Timeout = 0 }, "timeout"},
		{"negative jitter", func(c *Config) { c.Jitter = -time.Second }, "jitter"},
		{"zero healthy threshold", func(c *Config) { c.HealthyThreshold = 0 }, "healthy_threshold"},
		{"zero unhealthy threshold", func(c *Config) { c.UnhealthyThreshold = 0 }, "unhealthy_threshold"},
		{"relative path", func(c *Config) { c.Path = "healthz" }, "http.path"},
		{"path with space", func(c *Config) { c.Path = "/a b" }, "http.path"},
		{"path with fragment", func(c *Config) { c.Path = "/a#b" }, "http.path"},
		{"bad host", func(c *Config) { c.Host = "a b" }, "http.host"},
		{"status below 100", func(c *Config) { c.Statuses = []StatusRange{{200, 200}, {99, 200}} }, "http.expected_statuses[1]"},
		{"status above 599", func(c *Config) { c.Statuses = []StatusRange{{200, 600}} }, "http.expected_statuses[0]"},
		{"inverted range", func(c *Config) { c.Statuses = []StatusRange{{300, 200}} }, "http.expected_statuses[0]"},
		{"retriable status above 599", func(c *Config) { c.RetriableStatuses = []StatusRange{{503, 503}, {500, 600}} }, "http.retriable_statuses[1]"},
		{"inverted retriable range", func(c *Config) { c.RetriableStatuses = []StatusRange{{504, 500}} }, "http.retriable_statuses[0]"},
		{"negative port", func(c *Config) { c.Port = -1 }, "port"},
		{"port above 65535", func(c *Config) { c.Port = 65536 }, "port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig(HTTP)
			tt.edit(&c)
			err := c.Validate()
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field {
				t.Fatalf("Validate() = %v, want a FieldError for %q", err, tt.field)
			}
			if _, nerr := New(c, []string{"127.0.0.1:1"}); nerr == nil || nerr.Error() != err.Error() {
				t.Fatalf("New error = %v, want %v", nerr, err)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	err := Config{Kind: HTTP}.Validate()
	for _, f := range []string{"interval:", "timeout:", "healthy_threshold:", "unhealthy_threshold:"} {
		if err == nil || !strings.Contains(err.Error(), f) {
			t.Errorf("Validate() = %v, want it to name %s", err, f)
		}
	}
}

func TestValidateIgnoresOtherKindsFields(t *testing.T) {
	c := validConfig(TCP)
	c.Path, c.Statuses = "no slash", []StatusRange{{1, 2}}
	if err := c.Validate(); err != nil {
		t.Fatalf("TCP config with HTTP fields: %v", err)
	}
}

func TestNewRejectsAddressWithoutPort(t *testing.T) {
	for _, k := range []Kind{HTTP, GRPC, TCP} {
		if _, err := New(validConfig(k), []string{"127.0.0.1:80", "127.0.0.1"}); err == nil || !strings.Contains(err.Error(), "endpoint 1") {
			t.Errorf("%v: New error = %v, want one about endpoint 1", k, err)
		}
	}
}

func TestConfigIsCopied(t *testing.T) {
	c := validConfig(HTTP)
	c.Statuses = []StatusRange{{200, 204}}
	c.RetriableStatuses = []StatusRange{{503, 503}}
	ch, err := New(c, []string{"127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	c.Statuses[0].Hi = 599
	c.RetriableStatuses[0].Hi = 599
	got := ch.Config()
	if got.Statuses[0].Hi != 204 || got.RetriableStatuses[0].Hi != 503 {
		t.Fatalf("Checker's config changed with the caller's slice: %+v %+v", got.Statuses, got.RetriableStatuses)
	}
	got.Statuses[0].Hi = 599
	got.RetriableStatuses[0].Hi = 599
	if ch.Config().Statuses[0].Hi != 204 || ch.Config().RetriableStatuses[0].Hi != 503 {
		t.Fatal("Config() returned the Checker's own slice")
	}
}
