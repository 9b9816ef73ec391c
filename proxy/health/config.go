package health

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"slices"
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

	// Port, when not 0, is the port every endpoint is probed on in place
	// of its own (Envoy's health_check_config.port_value), for an app that
	// answers checks on a management port. Only what is dialed changes:
	// the host stays the endpoint's, and the endpoint is still known by
	// its address (Transition.Addr, EndpointStatus.Addr). Where this
	// package's documentation says "the address" of a probe (the default
	// Host and :authority), it means the address dialed. 1-65535; 0 means
	// each endpoint's own port. All kinds.
	Port int

	// HTTP
	Path     string        // request path (and query), "/" when empty
	Host     string        // Host (:authority) header; empty means the address dialed. GRPC uses it as the :authority too (empty: TLS's ServerName, else the address dialed).
	Statuses []StatusRange // healthy statuses; empty means 200 only. A 101 fails all the same.
	// RetriableStatuses fail the check without ejecting the endpoint at
	// once: they count toward UnhealthyThreshold, as timeouts do (Envoy's
	// retriable_statuses). Any other status not in Statuses ejects at
	// once. Statuses wins where the two overlap. Nil means none.
	RetriableStatuses []StatusRange
	HTTP2             bool // HTTP/2 (h2c prior knowledge, or h2 over TLS with ALPN) instead of HTTP/1.1
	// Headers are sent with every HTTP check, over HTTP/1.1 and HTTP/2
	// alike (Envoy's request_headers_to_add); a User-Agent among them
	// replaces outrigger-health-check. Nil means none. Refused: Host (see
	// Host), pseudo-headers, the connection-specific headers (Connection,
	// Keep-Alive, Proxy-Connection, Transfer-Encoding, Upgrade, TE) and
	// those of a body (Trailer, Content-Length), which net/http would
	// drop or fail the request for over HTTP/2, and more than one
	// User-Agent value.
	Headers http.Header

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
	if c.Port < 0 || c.Port > 65535 {
		add("port", "must be from 1 to 65535 (0: each endpoint's own port), got %d", c.Port)
	}
	switch c.Kind {
	case HTTP:
		if c.Path != "" && (!strings.HasPrefix(c.Path, "/") || !validRequestTarget(c.Path)) {
			add("http.path", "must start with / and hold no spaces or control characters, got %q", c.Path)
		}
		if c.Host != "" && !httpguts.ValidHostHeader(c.Host) {
			add("http.host", "not a valid Host header: %q", c.Host)
		}
		for _, l := range []struct {
			key string
			rs  []StatusRange
		}{{"http.expected_statuses", c.Statuses}, {"http.retriable_statuses", c.RetriableStatuses}} {
			for i, r := range l.rs {
				if r.Lo < 100 || r.Hi > 599 || r.Lo > r.Hi {
					add(fmt.Sprintf("%s[%d]", l.key, i), "must be a status or range within 100-599 with lo <= hi, got %d-%d", r.Lo, r.Hi)
				}
			}
		}
		agents := 0
		for _, name := range sortedNames(c.Headers) {
			if msg := HeaderProblem(name); msg != "" {
				add("http.request_headers", "%s", msg)
				continue
			}
			vs := c.Headers[name]
			for _, v := range vs {
				if !httpguts.ValidHeaderFieldValue(v) {
					add("http.request_headers", "header %q: invalid value %q (no control characters)", name, v)
				}
			}
			if http.CanonicalHeaderKey(name) == "User-Agent" {
				agents += len(vs)
			}
		}
		if agents > 1 {
			// net/http sends the first and drops the others.
			add("http.request_headers", "a request has one User-Agent, got %d values", agents)
		}
	case GRPC:
		if c.Host != "" && !httpguts.ValidHostHeader(c.Host) {
			add("grpc.authority", "not a valid :authority: %q", c.Host)
		}
	}
	return errors.Join(errs...)
}

// forbiddenHeaders are the header names, in lower case, a check may not
// be given, each with the reason. Host has a setting of its own. The
// others describe a connection (RFC 9110 section 7.6.1, RFC 9113 section
// 8.2.2: an HTTP/2 request that carries them is malformed, and net/http
// fails it) or a body, which a check's GET has none of (net/http leaves
// them out of an HTTP/1.1 request).
var forbiddenHeaders = map[string]string{
	"host":              "the Host of a check is set by http.host",
	"connection":        "connection-specific (hop-by-hop): the check's connection is the prober's to manage",
	"keep-alive":        "connection-specific (hop-by-hop): the check's connection is the prober's to manage",
	"proxy-connection":  "connection-specific (hop-by-hop): the check's connection is the prober's to manage",
	"transfer-encoding": "connection-specific (hop-by-hop), and a check has no body",
	"upgrade":           "connection-specific (hop-by-hop): a check does not switch protocols",
	"te":                "connection-specific (hop-by-hop): a check reads no trailers",
	"trailer":           "a check has no body and so no trailers",
	"content-length":    "a check has no body; the length is the client's to send",
}

// HeaderProblem says why a header called name cannot be sent with a
// check ("" when it can): an invalid name, a pseudo-header, or one of the
// names a check may not be given (Host, the connection-specific headers,
// and those of a body).
func HeaderProblem(name string) string {
	switch {
	case name == "":
		return "header name is required"
	case strings.HasPrefix(name, ":"):
		return fmt.Sprintf("header %q: pseudo-headers are made by the client from the check's path and host", name)
	case !httpguts.ValidHeaderFieldName(name):
		return fmt.Sprintf("invalid header name %q", name)
	}
	if why, ok := forbiddenHeaders[strings.ToLower(name)]; ok {
		return fmt.Sprintf("header %q cannot be set: %s", name, why)
	}
	return ""
}

// sortedNames returns the names of h in order, so that Validate reports
// its problems in a stable order.
func sortedNames(h http.Header) []string {
	names := make([]string, 0, len(h))
	for k := range h {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
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
	return inRanges(c.Statuses, code)
}

// statusRetriable reports whether an HTTP status that does not pass
// counts toward UnhealthyThreshold rather than ejecting at once.
func (c *Config) statusRetriable(code int) bool { return inRanges(c.RetriableStatuses, code) }

func inRanges(rs []StatusRange, code int) bool {
	for _, r := range rs {
		if r.Lo <= code && code <= r.Hi {
			return true
		}
	}
	return false
}
