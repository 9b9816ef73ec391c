package breaker

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// TransportError is what went wrong below HTTP, if anything.
type TransportError uint8

// Transport error kinds.
const (
	TransportNone           TransportError = iota // a response arrived
	TransportConnectFailure                       // no connection to the endpoint (refused, unreachable, TLS handshake)
	TransportReset                                // the connection or stream was reset before the response completed
	TransportTimeout                              // the upstream did not answer in time
	TransportOther                                // any other error talking to the upstream
)

var transportNames = [...]string{"none", "connect_failure", "reset", "timeout", "transport_error"}

func (k TransportError) String() string {
	if int(k) < len(transportNames) {
		return transportNames[k]
	}
	return "transport_error"
}

// Outcome is what happened to one upstream call, as the proxy saw it.
type Outcome struct {
	// Transport is the transport error kind; TransportNone if a response
	// (possibly an error response) arrived.
	Transport TransportError
	// HTTPStatus is the response status code; 0 if there was no response.
	HTTPStatus int
	// GRPCStatus is the grpc-status code from the response's trailers (or
	// headers, for a trailers-only response); -1 if unknown or not gRPC.
	// ParseGRPCStatus reads it. 0 (OK) and -1 never make a failure.
	GRPCStatus int
}

// Verdict is the classification of an Outcome.
type Verdict struct {
	// Failure: the call counts as failed for breakers, retries and outlier
	// ejection (consecutive_5xx and success rate).
	Failure bool
	// Gateway: the failure is a gateway error (connect failure, reset,
	// timeout, HTTP 502/503/504, gRPC UNAVAILABLE or DEADLINE_EXCEEDED), as
	// counted by outlier ejection's consecutive_gateway_failure. A gateway
	// error is a failure even if the configured lists leave its status out.
	Gateway bool
	// Reason is a short constant token for logs and metrics labels:
	// "ok", "connect_failure", "reset", "timeout", "transport_error",
	// "http_503", "grpc_unavailable", ...
	Reason string
}

// gRPC status codes, https://grpc.github.io/grpc/core/md_doc_statuscodes.html.
var grpcCodeNames = [...]string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
	"NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
	"FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
	"INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
}

const (
	grpcDeadlineExceeded = 4
	grpcUnavailable      = 14
)

// Reason strings, built once so that Classify never allocates.
var (
	httpReasons [600]string
	grpcReasons [len(grpcCodeNames)]string
)

func init() {
	for c := 100; c < len(httpReasons); c++ {
		httpReasons[c] = "http_" + strconv.Itoa(c)
	}
	for c, n := range grpcCodeNames {
		grpcReasons[c] = "grpc_" + strings.ToLower(n)
	}
}

// ClassifierConfig decides which outcomes are failures: a cluster's
// `failure_classifier:` block. Transport errors (connect failure, reset,
// timeout, other) are always failures. The zero value is the default: HTTP
// 500-599 and gRPC UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL and
// RESOURCE_EXHAUSTED are failures.
type ClassifierConfig struct {
	// HTTPStatuses lists the HTTP status codes that are failures. Each entry
	// is a code ("503"), a range ("500-599") or a class ("5xx"); the single
	// entry "none" means no status is a failure by itself. Empty means
	// ["5xx"]. HTTP 502, 503 and 504 are gateway errors and count as
	// failures whatever this list says.
	HTTPStatuses []string `yaml:"http_statuses" json:"http_statuses"`
	// GRPCStatuses lists the gRPC status codes that are failures, by name
	// ("UNAVAILABLE", case-insensitive) or number ("14"); the single entry
	// "none" means no status is a failure by itself. Empty means
	// [UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL, RESOURCE_EXHAUSTED].
	// UNAVAILABLE and DEADLINE_EXCEEDED are gateway errors and count as
	// failures whatever this list says.
	GRPCStatuses []string `yaml:"grpc_statuses" json:"grpc_statuses"`
}

// defaultGRPCFailures are the gRPC codes that are failures by default.
var defaultGRPCFailures = []string{"UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL", "RESOURCE_EXHAUSTED"}

// Validate reports every entry that does not parse, with paths relative to
// the struct ("http_statuses[2]: ...").
func (c ClassifierConfig) Validate() error {
	var l errorList
	var hs httpSet
	for i, s := range c.HTTPStatuses {
		if err := hs.add(s); err != nil {
			l.add(fmt.Sprintf("http_statuses[%d]", i), err.Error())
		} else if strings.EqualFold(strings.TrimSpace(s), "none") && len(c.HTTPStatuses) > 1 {
			l.add(fmt.Sprintf("http_statuses[%d]", i), `"none" must be the only entry`)
		}
	}
	var gs uint32
	for i, s := range c.GRPCStatuses {
		if err := addGRPC(&gs, s); err != nil {
			l.add(fmt.Sprintf("grpc_statuses[%d]", i), err.Error())
		} else if strings.EqualFold(strings.TrimSpace(s), "none") && len(c.GRPCStatuses) > 1 {
			l.add(fmt.Sprintf("grpc_statuses[%d]", i), `"none" must be the only entry`)
		}
	}
	return l.err()
}

// Classifier turns an Outcome into a Verdict. It is immutable and safe for
// concurrent use; Classify does not allocate. The zero Classifier (and a nil
// *Classifier) classifies with the defaults.
type Classifier struct {
	http httpSet // statuses that are failures
	grpc uint32  // bit c set: gRPC code c is a failure
	set  bool    // false: use the defaults
}

// NewClassifier builds a Classifier from a validated config.
func NewClassifier(c ClassifierConfig) (*Classifier, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	cl := &Classifier{set: true}
	statuses := c.HTTPStatuses
	if len(statuses) == 0 {
		statuses = []string{"5xx"}
	}
	for _, s := range statuses {
		_ = cl.http.add(s) // validated above
	}
	codes := c.GRPCStatuses
	if len(codes) == 0 {
		codes = defaultGRPCFailures
	}
	for _, s := range codes {
		_ = addGRPC(&cl.grpc, s)
	}
	return cl, nil
}

var defaultClassifier = func() *Classifier {
	c, err := NewClassifier(ClassifierConfig{})
	if err != nil {
		panic(err)
	}
	return c
}()

// Classify returns the verdict on o. Precedence: a transport error decides;
// else a known gRPC status other than OK decides; else the HTTP status.
func (c *Classifier) Classify(o Outcome) Verdict {
	if c == nil || !c.set {
		c = defaultClassifier
	}
	switch o.Transport {
	case TransportNone:
	case TransportConnectFailure, TransportReset, TransportTimeout:
		return Verdict{Failure: true, Gateway: true, Reason: o.Transport.String()}
	default:
		return Verdict{Failure: true, Reason: TransportOther.String()}
	}
	if g := o.GRPCStatus; g > 0 && g < len(grpcCodeNames) {
		gw := g == grpcUnavailable || g == grpcDeadlineExceeded
		return Verdict{Failure: gw || c.grpc&(1<<g) != 0, Gateway: gw, Reason: grpcReasons[g]}
	} else if g >= len(grpcCodeNames) {
		// An unknown code is UNKNOWN (gRPC spec: clients map unknown codes
		// to UNKNOWN).
		return Verdict{Failure: c.grpc&(1<<2) != 0, Reason: grpcReasons[2]}
	}
	s := o.HTTPStatus
	if s == 0 {
		return Verdict{Reason: "ok"}
	}
	if s < 100 || s >= len(httpReasons) {
		// Not a status an HTTP peer may send: a protocol error.
		return Verdict{Failure: true, Reason: "http_invalid"}
	}
	gw := s == 502 || s == 503 || s == 504
	return Verdict{Failure: gw || c.http.has(s), Gateway: gw, Reason: httpReasons[s]}
}

// ParseGRPCStatus returns the grpc-status of a response: from the trailers
// if present there, else from the headers (a trailers-only response carries
// it in the headers), else -1. A malformed value is UNKNOWN (2), as grpc-go
// treats it.
func ParseGRPCStatus(header, trailer http.Header) int {
	v, ok := firstValue(trailer, "Grpc-Status")
	if !ok {
		v, ok = firstValue(header, "Grpc-Status")
	}
	if !ok {
		return -1
	}
	v = strings.TrimSpace(v)
	if v == "" || len(v) > 10 {
		return 2
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 2
	}
	return n
}

func firstValue(h http.Header, key string) (string, bool) {
	if h == nil {
		return "", false
	}
	vs, ok := h[key]
	if !ok {
		// Trailers announced by HTTP/2 arrive canonicalized; tolerate a
		// lowercase key set by hand.
		vs, ok = h[strings.ToLower(key)]
	}
	if !ok || len(vs) == 0 {
		return "", false
	}
	return vs[0], true
}

// httpSet is a bitmap of HTTP status codes 0..599.
type httpSet [10]uint64

func (s *httpSet) has(code int) bool {
	return code >= 0 && code < 640 && s[code>>6]&(1<<(code&63)) != 0
}

func (s *httpSet) addRange(lo, hi int) {
	for c := lo; c <= hi; c++ {
		s[c>>6] |= 1 << (c & 63)
	}
}

func (s *httpSet) add(entry string) error {
	e := strings.ToLower(strings.TrimSpace(entry))
	if e == "none" {
		return nil
	}
	if len(e) == 3 && e[1:] == "xx" && e[0] >= '1' && e[0] <= '5' {
		lo := int(e[0]-'0') * 100
		s.addRange(lo, lo+99)
		return nil
	}
	lo, hi, isRange := strings.Cut(e, "-")
	a, err := parseStatus(lo)
	if err != nil {
		return err
	}
	b := a
	if isRange {
		if b, err = parseStatus(hi); err != nil {
			return err
		}
		if b < a {
			return fmt.Errorf("range %q is empty", entry)
		}
	}
	s.addRange(a, b)
	return nil
}

func parseStatus(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 100 || n > 599 {
		return 0, fmt.Errorf("%q is not an HTTP status code (100-599), range (500-599), class (5xx) or none", s)
	}
	return n, nil
}

func addGRPC(set *uint32, entry string) error {
	e := strings.TrimSpace(entry)
	if strings.EqualFold(e, "none") {
		return nil
	}
	if n, err := strconv.Atoi(e); err == nil {
		if n < 1 || n >= len(grpcCodeNames) {
			return fmt.Errorf("%d is not a gRPC status code (1-16)", n)
		}
		*set |= 1 << n
		return nil
	}
	for c, name := range grpcCodeNames {
		if c > 0 && strings.EqualFold(e, name) {
			*set |= 1 << c
			return nil
		}
	}
	return fmt.Errorf("%q is not a gRPC status name (e.g. UNAVAILABLE) or code (1-16)", entry)
}

// GRPCCodeName returns the canonical name of a gRPC status code
// ("UNAVAILABLE"), or "" if c is not one.
func GRPCCodeName(c int) string {
	if c < 0 || c >= len(grpcCodeNames) {
		return ""
	}
	return grpcCodeNames[c]
}
