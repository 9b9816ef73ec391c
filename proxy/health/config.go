package health

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
)

// Kind is what a check does.
type Kind uint8

const (
	HTTP Kind = iota // GET Path; healthy when the status is in Statuses
	GRPC             // grpc.health.v1.Health/Check for Service; healthy when SERVING
	TCP              // healthy when a TCP connection opens within Timeout
)

// String returns "http", "grpc" or "tcp" (the config's key for the kind).
func (k Kind) String() string {
	switch k {
	case HTTP:
		return "http"
	case GRPC:
		return "grpc"
	case TCP:
		return "tcp"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// StatusRange is the statuses Lo..Hi, both included.
type StatusRange struct{ Lo, Hi int }

// Config is one cluster's health check. Unlike the YAML config it has no
// defaults: the config layer fills them in, and New rejects a zero Interval,
// Timeout or threshold. Fields that do not belong to Kind are ignored.
type Config struct {
	Kind               Kind
	Interval           time.Duration // between checks of a healthy endpoint; > 0
	UnhealthyInterval  time.Duration // between checks of an unhealthy endpoint; 0 means Interval
	Timeout            time.Duration // bounds one check (connect included); > 0
	Jitter             time.Duration // each wait is lengthened by a uniformly random [0, Jitter); 0 none
	HealthyThreshold   int           // consecutive successes that make an unhealthy endpoint healthy; >= 1
	UnhealthyThreshold int           // consecutive failures that make a healthy endpoint unhealthy; >= 1

	// HTTP
	Path     string        // request path (and query), "/" when empty
	Host     string        // Host (:authority) header; empty means the endpoint's address. GRPC uses it as the :authority too (empty: TLS's ServerName, else the address).
	Statuses []StatusRange // healthy statuses; empty means 200 only
	HTTP2    bool          // HTTP/2 (h2c prior knowledge, or h2 over TLS with ALPN) instead of HTTP/1.1

	// GRPC
	Service string // the service name asked about; "" is the server as a whole

	// TLS, when non-nil, wraps every probe connection (HTTP, GRPC; TCP only
	// connects). An empty ServerName means the host part of the address for
	// HTTP, and the host part of the :authority (Host when set, else the
	// address) for GRPC.
	TLS *tls.Config
}

// FieldError is one problem Validate found. Field is the key in the YAML
// spelling of a cluster's health_check block ("interval",
// "http.expected_statuses[1]"); a config loader prefixes its own path
// ("clusters.payments.health_check").
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Validate reports every problem in c, each a *FieldError, joined with
// errors.Join (nil when c is usable). It does not change c.
func (c Config) Validate() error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	if c.Kind > TCP {
		add("kind", "unknown kind %d (want http, grpc or tcp)", uint8(c.Kind))
	}
	if c.Interval <= 0 {
		add("interval", "must be > 0, got %v", c.Interval)
	}
	if c.UnhealthyInterval < 0 {
		add("unhealthy_interval", "must not be negative, got %v", c.UnhealthyInterval)
	}
	if c.Timeout <= 0 {
		add("timeout", "must be > 0, got %v", c.Timeout)
	}
	if c.Jitter < 0 {
		add("jitter", "must not be negative, got %v", c.Jitter)
	}
	if c.HealthyThreshold < 1 {
		add("healthy_threshold", "must be >= 1, got %d", c.HealthyThreshold)
	}
	if c.UnhealthyThreshold < 1 {
		add("unhealthy_threshold", "must be >= 1, got %d", c.UnhealthyThreshold)
	}
	switch c.Kind {
	case HTTP:
		if c.Path != "" && (!strings.HasPrefix(c.Path, "/") || !validRequestTarget(c.Path)) {
			add("http.path", "must start with / and hold no spaces or control characters, got %q", c.Path)
		}
		if c.Host != "" && !httpguts.ValidHostHeader(c.Host) {
			add("http.host", "not a valid Host header: %q", c.Host)
		}
		for i, r := range c.Statuses {
			if r.Lo < 100 || r.Hi > 599 || r.Lo > r.Hi {
				add(fmt.Sprintf("http.expected_statuses[%d]", i), "must be a status or range within 100-599 with lo <= hi, got %d-%d", r.Lo, r.Hi)
			}
		}
	case GRPC:
		if c.Host != "" && !httpguts.ValidHostHeader(c.Host) {
			add("grpc.authority", "not a valid :authority: %q", c.Host)
		}
	}
	return errors.Join(errs...)
}

// validRequestTarget reports whether p can go on a request line as it is:
// no spaces, no control characters, no fragment.
func validRequestTarget(p string) bool {
	for i := 0; i < len(p); i++ {
		if b := p[i]; b <= ' ' || b == 0x7f || b == '#' {
			return false
		}
	}
	return true
}

// unhealthyInterval is the wait between checks of an unhealthy endpoint.
func (c *Config) unhealthyInterval() time.Duration {
	if c.UnhealthyInterval > 0 {
		return c.UnhealthyInterval
	}
	return c.Interval
}

// statusOK reports whether an HTTP status passes.
func (c *Config) statusOK(code int) bool {
	if len(c.Statuses) == 0 {
		return code == 200
	}
	for _, r := range c.Statuses {
		if r.Lo <= code && code <= r.Hi {
			return true
		}
	}
	return false
}
