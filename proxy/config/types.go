package config

import (
	"strconv"
	"strings"
	"time"

	"github.com/outrigger-mesh/outrigger/breaker"
	"github.com/outrigger-mesh/outrigger/composer"
	"github.com/outrigger-mesh/outrigger/eventlog"
)

// Config is a whole Outrigger configuration: the YAML file's top level.
//
// Every field's zero value means "the default", which the field's comment
// names. [Parse] and [Load] return a Config with defaults already applied
// (see [Config.WithDefaults]).
type Config struct {
	// Node identifies this sidecar (to operators, in logs and to an xDS
	// control plane).
	Node Node `yaml:"node" json:"node"`

	// Admin is the operator endpoint (/ready, /metrics, /config, /clusters).
	Admin Admin `yaml:"admin" json:"admin"`

	// Listeners are the sockets the sidecar accepts traffic on, and the limits
	// shared by all of them.
	Listeners Listeners `yaml:"listeners" json:"listeners"`

	// Clusters are the upstream services, by name. A name is 1-255
	// characters of letters, digits and any of _ - . | : (so that names from
	// Envoy control planes fit). The name "inbound|app" belongs to the local
	// app (see [InboundAppCluster]); defining it explicitly overrides the
	// implicit one.
	Clusters map[string]Cluster `yaml:"clusters" json:"clusters"`

	// Routes is the ordered route table of both listeners; for each request
	// the first route of the request's listener whose match accepts it wins.
	// A request no route matches is answered 404 (outbound) or goes to the
	// local app (inbound, see [InboundDefaultRoute]).
	Routes []Route `yaml:"routes" json:"routes"`

	// Logging configures the process's logs and the access log.
	Logging Logging `yaml:"logging" json:"logging"`

	// EventLog is the embedded partitioned log behind the app API's
	// publish/subscribe (package eventlog documents every key). The zero
	// value means its defaults.
	EventLog eventlog.Config `yaml:"eventlog" json:"eventlog"`

	// Authorization refuses requests by the caller's verified identity
	// and what they ask for (Istio's AuthorizationPolicy). The zero
	// value means every request is allowed.
	Authorization Authorization `yaml:"authorization,omitempty" json:"authorization,omitempty"`
}

// Node identifies this sidecar.
type Node struct {
	// ID is this sidecar instance's unique id (the xDS node id). Empty means
	// the host name (in Kubernetes, the pod name); "outrigger" if the host
	// name cannot be read.
	ID string `yaml:"id" json:"id"`

	// Service is the name of the service this sidecar runs next to (the xDS
	// node cluster). Empty means none: it is then left out of logs and xDS.
	Service string `yaml:"service" json:"service"`

	// Zone is the locality (e.g. "eu-west-1a"). Empty means unknown.
	// Clusters with zone_aware enabled keep their traffic on the
	// endpoints of this zone while enough of them are healthy.
	Zone string `yaml:"zone,omitempty" json:"zone,omitempty"`

	// Labels are free-form metadata sent to an xDS control plane. Empty means
	// none.
	Labels map[string]string `yaml:"labels,omitempty" json:"labels,omitempty"`
}

// Admin is the operator endpoint.
type Admin struct {
	// Address is the host:port the admin endpoint listens on. Empty means
	// "127.0.0.1:15000". Keep it on loopback: it can change breaker states.
	// Port 0 picks a free port.
	Address string `yaml:"address" json:"address"`
}

// Listeners are the sidecar's sockets and the limits they share.
type Listeners struct {
	// Outbound takes the local app's calls to other services.
	Outbound OutboundListener `yaml:"outbound" json:"outbound"`

	// Inbound takes traffic for the local app and forwards it there.
	Inbound InboundListener `yaml:"inbound" json:"inbound"`

	// AppAPI is the app-facing messaging API (publish, subscribe, sagas,
	// event store).
	AppAPI AppAPIListener `yaml:"app_api" json:"app_api"`

	// MaxRequestHeaderBytes caps the size of a request's header block
	// (HTTP/1.1 header bytes; HTTP/2 SETTINGS_MAX_HEADER_LIST_SIZE). Zero
	// means 65536 (64 KiB). Must be between 1024 and 8388608 when set.
	MaxRequestHeaderBytes int `yaml:"max_request_header_bytes" json:"max_request_header_bytes"`

	// MaxRequestBodyBytes caps the body of a request forwarded by a listener;
	// a longer body is answered 413 (or, once streaming has started, the
	// stream is reset). Zero means unlimited, which streaming and gRPC
	// streams need. Bodies the sidecar must hold in memory (for retries,
	// composition) have their own, smaller limits.
	MaxRequestBodyBytes int64 `yaml:"max_request_body_bytes" json:"max_request_body_bytes"`

	// ReadHeaderTimeout is how long a client has to send a request's headers
	// once the connection is accepted or the previous request ended. Zero
	// means 10s.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout" json:"read_header_timeout"`

	// IdleTimeout closes a client connection that has had no request in
	// flight for this long. Zero means 5m.
	IdleTimeout time.Duration `yaml:"idle_timeout" json:"idle_timeout"`

	// DrainTimeout is how long a shutdown waits for requests in flight to
	// finish before closing their connections. Zero means 15s.
	DrainTimeout time.Duration `yaml:"drain_timeout" json:"drain_timeout"`

	// ShutdownDelay is how long, after SIGTERM or SIGINT, every listener
	// goes on accepting and serving as before while /ready answers 503
	// (the inbound listener's HTTP/1.1 responses then say Connection:
	// close, so that its keep-alive clients reconnect), before the drain
	// starts (drain_timeout counts from its end): the
	// time the clients of an endpoint being removed (kube-proxy, other
	// sidecars, load balancers) take to stop opening connections to it.
	// The value serving when the signal arrives applies. Zero means none:
	// the drain starts at once. At most 5m.
	ShutdownDelay time.Duration `yaml:"shutdown_delay" json:"shutdown_delay"`

	// PathNormalization is how a request's path is normalized before it
	// is routed and forwarded, on the outbound and inbound listeners:
	// "base" (RFC 3986: escapes of unreserved characters decoded, dot
	// segments removed), "merge_slashes" (base, and runs of slashes
	// merged) or "none". Empty means "base".
	PathNormalization PathNormalization `yaml:"path_normalization" json:"path_normalization"`

	// PathWithEscapedSlashes is what becomes of a request, on the
	// outbound and inbound listeners, whose path has an escaped slash or
	// backslash ("%2F", "%5C", either case): "keep", "reject",
	// "unescape_and_forward" or "unescape_and_redirect" (see
	// [PathWithEscapedSlashes]). Empty means "keep".
	PathWithEscapedSlashes PathWithEscapedSlashes `yaml:"path_with_escaped_slashes" json:"path_with_escaped_slashes"`
}

// PathWithEscapedSlashes is what a listener does with a request whose
// path has an escaped slash or backslash (Envoy's
// path_with_escaped_slashes_action). Path normalization leaves "%2F" in
// its segment, so "/public%2F..%2Fadmin" is routed as written and passes
// a route that denies "/admin", while an upstream that decodes "%2F"
// before it resolves dot segments serves "/admin".
type PathWithEscapedSlashes string

// The actions on paths with escaped slashes.
const (
	// PathWithEscapedSlashesKeep routes and forwards the path as it came
	// (Envoy's KEEP_UNCHANGED).
	PathWithEscapedSlashesKeep PathWithEscapedSlashes = "keep"
	// PathWithEscapedSlashesReject answers the request 400 (a gRPC
	// request, INTERNAL) with x-outrigger-error: path_with_escaped_slash.
	PathWithEscapedSlashesReject PathWithEscapedSlashes = "reject"
	// PathWithEscapedSlashesUnescapeAndForward makes each "%2F" a "/",
	// normalizes the path again and routes and forwards the result.
	PathWithEscapedSlashesUnescapeAndForward PathWithEscapedSlashes = "unescape_and_forward"
	// PathWithEscapedSlashesUnescapeAndRedirect answers 307 with the
	// path PathWithEscapedSlashesUnescapeAndForward would forward as the
	// Location (a gRPC request, which cannot follow it, gets what
	// PathWithEscapedSlashesReject answers).
	PathWithEscapedSlashesUnescapeAndRedirect PathWithEscapedSlashes = "unescape_and_redirect"
)

// PathNormalization is how a request's path is normalized before routing.
type PathNormalization string

// The path normalizations.
const (
	// PathNormalizationBase decodes escapes of unreserved characters,
	// upper-cases the hex of the others and removes dot segments
	// (RFC 3986 §6.2.2).
	PathNormalizationBase PathNormalization = "base"
	// PathNormalizationMergeSlashes is base, and merges runs of slashes.
	PathNormalizationMergeSlashes PathNormalization = "merge_slashes"
	// PathNormalizationNone routes and forwards the path as it came.
	PathNormalizationNone PathNormalization = "none"
)

// OutboundListener takes the local app's calls to other services.
type OutboundListener struct {
	// Address is the host:port to listen on. Empty means "127.0.0.1:15001".
	// Port 0 picks a free port.
	Address string `yaml:"address" json:"address"`

	// Disabled turns the outbound listener off. False (the default) means on.
	Disabled bool `yaml:"disabled" json:"disabled"`

	// HeadersWithUnderscores is what the listener does with a request
	// header or trailer field whose name has an underscore: "allow",
	// "drop" or "reject" (see [HeadersWithUnderscores]). Empty means
	// "allow".
	HeadersWithUnderscores HeadersWithUnderscores `yaml:"headers_with_underscores" json:"headers_with_underscores"`

	// MaxConnections caps the client connections the listener has open
	// at once, HTTP/1.1 and HTTP/2 alike (an upgraded one, such as a
	// WebSocket, counts while its tunnel lasts). A connection over it is
	// closed as soon as it is accepted, unanswered, and counted in
	// outrigger_proxy_downstream_connections_overflow_total; the listener
	// goes on accepting. A reload applies a new value to the connections
	// accepted after it: lowering it closes none of those open. Zero
	// means a quarter of the process's open-file limit (RLIMIT_NOFILE,
	// as the process starts), so that the two proxy listeners' clients
	// hold at most half the descriptors and the upstream connections,
	// the admin and app API listeners and files always find one; no cap
	// where the limit cannot be read. Must not be negative.
	MaxConnections int `yaml:"max_connections" json:"max_connections"`

	// TLS, when enabled, has the listener terminate TLS, and verify its
	// clients' certificates when it names a client_ca_file (mutual
	// TLS). Off (the default) means plaintext.
	TLS ListenerTLS `yaml:"tls" json:"tls"`

	// EnvoyRequestHeaders is what the listener does with the request
	// headers of Envoy's router by which an app sets one request's
	// timeouts and retries (x-envoy-upstream-rq-timeout-ms,
	// x-envoy-upstream-rq-per-try-timeout-ms, x-envoy-max-retries,
	// x-envoy-retry-on, x-envoy-retry-grpc-on,
	// x-envoy-retriable-status-codes, x-envoy-retriable-header-names):
	// "honor" them and remove them from the request, with
	// x-envoy-hedge-on-per-try-timeout (removed, not honored), as Envoy
	// does for its internal callers, or "ignore"
	// them (they are forwarded as any other header). Empty means
	// "honor". The inbound listener never honors them: its callers are
	// other services.
	EnvoyRequestHeaders EnvoyRequestHeaders `yaml:"envoy_request_headers" json:"envoy_request_headers"`
}

// EnvoyRequestHeaders is listeners.outbound.envoy_request_headers.
type EnvoyRequestHeaders string

// The values of listeners.outbound.envoy_request_headers.
const (
	EnvoyRequestHeadersHonor  EnvoyRequestHeaders = "honor"
	EnvoyRequestHeadersIgnore EnvoyRequestHeaders = "ignore"
)

// InboundListener takes traffic for the local app. It runs only when App is
// set.
type InboundListener struct {
	// Address is the host:port to listen on. Empty means "0.0.0.0:15006".
	// Port 0 picks a free port.
	Address string `yaml:"address" json:"address"`

	// App is the local app's host:port (e.g. "127.0.0.1:8080"). Empty means
	// there is no inbound listener; routes with listener "inbound" then are
	// an error. When set, the implicit cluster [InboundAppCluster] and the
	// implicit last inbound route [InboundDefaultRoute] forward to it.
	App string `yaml:"app" json:"app"`

	// AppProtocol is the protocol the local app speaks: "http1", "http2"
	// (h2c, prior knowledge) or "grpc" (h2c). Empty means "http1".
	AppProtocol Protocol `yaml:"app_protocol" json:"app_protocol"`

	// HeadersWithUnderscores is what the listener does with a request
	// header or trailer field whose name has an underscore: "allow",
	// "drop" or "reject" (see [HeadersWithUnderscores]). Empty means
	// "allow".
	HeadersWithUnderscores HeadersWithUnderscores `yaml:"headers_with_underscores" json:"headers_with_underscores"`

	// MaxConnections caps the client connections the listener has open
	// at once, HTTP/1.1 and HTTP/2 alike (an upgraded one, such as a
	// WebSocket, counts while its tunnel lasts). A connection over it is
	// closed as soon as it is accepted, unanswered, and counted in
	// outrigger_proxy_downstream_connections_overflow_total; the listener
	// goes on accepting. A reload applies a new value to the connections
	// accepted after it: lowering it closes none of those open. Zero
	// means a quarter of the process's open-file limit (RLIMIT_NOFILE,
	// as the process starts), so that the two proxy listeners' clients
	// hold at most half the descriptors and the upstream connections,
	// the admin and app API listeners and files always find one; no cap
	// where the limit cannot be read. Must not be negative.
	MaxConnections int `yaml:"max_connections" json:"max_connections"`

	// TLS, when enabled, has the listener terminate TLS, and verify its
	// clients' certificates when it names a client_ca_file (mutual
	// TLS). Off (the default) means plaintext.
	TLS ListenerTLS `yaml:"tls" json:"tls"`
}

// HeadersWithUnderscores is what a listener does with a request field
// whose name has an underscore (Envoy's headers_with_underscores_action).
// RFC 9110 allows "_" in a field name, but upstreams that fold "_" and
// "-" together (CGI and WSGI stacks, nginx with underscores_in_headers)
// read X_Forwarded_For as X-Forwarded-For: a client can spoof a header
// the sidecar set or checked by sending its underscore twin.
type HeadersWithUnderscores string

// The actions on request fields with an underscore in their name.
const (
	// HeadersWithUnderscoresAllow forwards them as they came.
	HeadersWithUnderscoresAllow HeadersWithUnderscores = "allow"
	// HeadersWithUnderscoresDrop removes them before the request is
	// routed and forwarded, and counts each.
	HeadersWithUnderscoresDrop HeadersWithUnderscores = "drop"
	// HeadersWithUnderscoresReject answers the request 400 (a gRPC
	// request, INTERNAL) with x-outrigger-error: header_with_underscore.
	HeadersWithUnderscoresReject HeadersWithUnderscores = "reject"
)

// AppAPIListener is the app-facing messaging API.
type AppAPIListener struct {
	// Address is the host:port to listen on. Empty means "127.0.0.1:15002".
	// Port 0 picks a free port.
	Address string `yaml:"address" json:"address"`

	// Disabled turns the app API off. False (the default) means on.
	Disabled bool `yaml:"disabled" json:"disabled"`
}

// Protocol is how the sidecar speaks to an upstream (or to the local app).
type Protocol string

// The protocols.
const (
	// ProtocolHTTP1 is HTTP/1.1 (with TLS when the cluster's tls is enabled).
	ProtocolHTTP1 Protocol = "http1"
	// ProtocolHTTP2 is HTTP/2: h2c with prior knowledge, or TLS with ALPN "h2"
	// when the cluster's tls is enabled.
	ProtocolHTTP2 Protocol = "http2"
	// ProtocolGRPC is gRPC, over HTTP/2 as ProtocolHTTP2; failures are also
	// read from grpc-status.
	ProtocolGRPC Protocol = "grpc"
)

// LBPolicy chooses an endpoint of a cluster for each request.
type LBPolicy string

// The load-balancing policies.
const (
	LBRoundRobin   LBPolicy = "round_robin"
	LBLeastRequest LBPolicy = "least_request"
	LBRandom       LBPolicy = "random"
	// LBMaglev is consistent hashing by a Maglev lookup table (Envoy's
	// maglev): a request's key (the route's hash_policy) picks the
	// endpoint, the same one for the same key from every sidecar.
	LBMaglev LBPolicy = "maglev"
)

// Cluster is an upstream service: a set of endpoints and how to talk to them.
type Cluster struct {
	// Endpoints are the instances of the service. Each is either a string
	// "host:port" or a mapping {address: "host:port", weight: N, zone: Z}. A host is an
	// IP address or a DNS name (resolved by the system resolver when a
	// connection is made). At least one is required; addresses are unique
	// within a cluster.
	Endpoints []Endpoint `yaml:"endpoints" json:"endpoints"`

	// Protocol is how to speak to the endpoints: "http1", "http2" or "grpc".
	// Empty means "http1".
	Protocol Protocol `yaml:"protocol" json:"protocol"`

	// TLS, when enabled, makes connections to the endpoints use TLS (with
	// ALPN "h2" for http2 and grpc). The zero value means plaintext.
	TLS TLS `yaml:"tls" json:"tls"`

	// ConnectTimeout bounds establishing a connection (TCP and TLS
	// handshake). Zero means 1s.
	ConnectTimeout time.Duration `yaml:"connect_timeout" json:"connect_timeout"`

	// LBPolicy is "round_robin", "least_request" (power of two choices),
	// "random" or "maglev" (consistent hashing on the key a route's
	// hash_policy takes from the request; not with zone_aware). Empty
	// means "round_robin".
	LBPolicy LBPolicy `yaml:"lb_policy" json:"lb_policy"`

	// Pool tunes the connection pool to each endpoint.
	Pool Pool `yaml:"pool" json:"pool"`

	// CircuitBreaker trips on consecutive failures, failure rate or slow
	// calls and then fails fast (package breaker documents every key). The
	// zero value means a breaker with breaker's defaults.
	CircuitBreaker breaker.Config `yaml:"circuit_breaker" json:"circuit_breaker"`

	// Limits caps connections, pending requests, requests and retries to the
	// cluster (Envoy's circuit_breakers.thresholds). The zero value means
	// Envoy's defaults (1024, 1024, 1024, 3).
	Limits breaker.LimitsConfig `yaml:"limits" json:"limits"`

	// OutlierDetection ejects misbehaving endpoints for a while (Envoy's
	// outlier_detection). The zero value means Envoy's defaults.
	OutlierDetection breaker.OutlierConfig `yaml:"outlier_detection" json:"outlier_detection"`

	// FailureClassifier says which HTTP and gRPC statuses count as failures
	// for the breaker and outlier detection. The zero value means 5xx and
	// gRPC UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL, RESOURCE_EXHAUSTED.
	FailureClassifier breaker.ClassifierConfig `yaml:"failure_classifier" json:"failure_classifier"`

	// HealthCheck, when present, probes every endpoint on an interval and
	// keeps the load balancer off the endpoints that fail (Envoy's
	// health_checks, HAProxy's check). Absent means no active checking:
	// only outlier detection takes endpoints out.
	HealthCheck *HealthCheck `yaml:"health_check" json:"health_check,omitempty"`

	// ZoneAware keeps traffic on the endpoints of the sidecar's own zone
	// (node.zone) while enough of them are eligible, and spills it over
	// to the other endpoints as they fail (Envoy's priority levels, as
	// Istio's locality failover sets them). The zero value means off.
	ZoneAware ZoneAware `yaml:"zone_aware" json:"zone_aware"`
}

// ZoneAware is a cluster's zone-aware load balancing. The endpoints whose
// zone is node.zone are the local level, all others the remote one. The
// local level takes min(100%, its eligible share of endpoints ×
// OverprovisioningFactor / 100) of the picks, the remote level the rest;
// when both levels are short of that, the two shares are scaled to sum to
// 100% (Envoy's normalized total health). Panic mode is decided per
// level, and only then (Envoy's per-priority panic): while one level can
// take what the other lacks, none is in panic.
type ZoneAware struct {
	// Enabled turns zone-aware balancing on; it needs node.zone. False
	// (the default) balances over every endpoint whatever its zone.
	Enabled bool `yaml:"enabled" json:"enabled"`

	// OverprovisioningFactor, in percent, is how much load a level is
	// taken to bear beyond its share of healthy endpoints (Envoy's
	// overprovisioning_factor): at 140, the local level keeps all the
	// traffic until fewer than 100/140 (about 71%) of its endpoints are
	// eligible. 100 to 1000; zero means 140.
	OverprovisioningFactor int `yaml:"overprovisioning_factor" json:"overprovisioning_factor"`
}

// HealthCheck is a cluster's active health check. Exactly one of HTTP,
// GRPC and TCP says what a check is.
//
// An endpoint starts healthy and unchecked, so a new cluster takes traffic
// at once; an endpoint a reload adds to a checked cluster is pending
// (takes no traffic) until its first check. The first check alone decides
// (one failure makes the endpoint unhealthy, one pass healthy).
// After that a healthy endpoint turns unhealthy at once on an answer that
// says so (an HTTP status in neither ExpectedStatuses nor
// RetriableStatuses, a gRPC answer other than SERVING), as in Envoy, and
// after UnhealthyThreshold failures in a row otherwise (timeouts,
// connection, TLS and protocol failures, retriable statuses, gRPC error
// statuses); an unhealthy one turns healthy after HealthyThreshold
// successes in a row.
type HealthCheck struct {
	// Interval is the time between two checks of a healthy endpoint.
	// Zero means 5s.
	Interval time.Duration `yaml:"interval" json:"interval"`

	// UnhealthyInterval is the time between two checks of an unhealthy
	// endpoint. Zero means Interval.
	UnhealthyInterval time.Duration `yaml:"unhealthy_interval" json:"unhealthy_interval"`

	// Timeout bounds one check, connecting included; a check that takes
	// longer fails. Zero means 1s.
	Timeout time.Duration `yaml:"timeout" json:"timeout"`

	// Jitter lengthens every wait between checks by a random time in
	// [0, jitter), so that sidecars started together do not probe in step.
	// Zero means none.
	Jitter time.Duration `yaml:"jitter" json:"jitter"`

	// HealthyThreshold is how many successes in a row make an unhealthy
	// endpoint healthy again. Zero means 2.
	HealthyThreshold int `yaml:"healthy_threshold" json:"healthy_threshold"`

	// UnhealthyThreshold is how many failures in a row make a healthy
	// endpoint unhealthy; an answer that says it is unhealthy (see
	// HealthCheck) makes it so at once. Zero means 3.
	UnhealthyThreshold int `yaml:"unhealthy_threshold" json:"unhealthy_threshold"`

	// Port is the port every endpoint is checked on in place of its own
	// (Envoy's health_check_config.port_value), for an app that answers
	// checks on a management port: each check dials the endpoint's host
	// on this port, for http, grpc and tcp checks alike. The endpoint is
	// still known by its own address (in /clusters, metrics and logs, and
	// when a reload carries its state over). 1-65535; zero means each
	// endpoint's own port.
	Port int `yaml:"port" json:"port"`

	// HTTP checks with a GET over the cluster's protocol (HTTP/1.1, or
	// HTTP/2 for http2 and grpc clusters) and its TLS settings.
	HTTP *HTTPHealthCheck `yaml:"http" json:"http,omitempty"`

	// GRPC checks with grpc.health.v1.Health/Check over HTTP/2 and the
	// cluster's TLS settings.
	GRPC *GRPCHealthCheck `yaml:"grpc" json:"grpc,omitempty"`

	// TCP checks that a connection opens (no TLS handshake). `tcp: {}`.
	TCP *TCPHealthCheck `yaml:"tcp" json:"tcp,omitempty"`
}

// HTTPHealthCheck is an HTTP health check.
type HTTPHealthCheck struct {
	// Path is the request's path (and query). Empty means "/".
	Path string `yaml:"path" json:"path"`

	// Host is the Host (:authority) header. Empty means the endpoint's
	// "host:port".
	Host string `yaml:"host" json:"host"`

	// ExpectedStatuses are the statuses that pass: each is a status
	// (200) or an inclusive range ("200-299"). Empty means 200 only.
	ExpectedStatuses []StatusRange `yaml:"expected_statuses" json:"expected_statuses,omitempty"`

	// RetriableStatuses are statuses that fail the check but count
	// toward UnhealthyThreshold, as timeouts do, instead of making the
	// endpoint unhealthy at once as any other status not in
	// ExpectedStatuses does (Envoy's retriable_statuses): a 429 or 503
	// an app gives under a passing overload, say. Spelled as
	// ExpectedStatuses, which wins where the two overlap. Empty means
	// none.
	RetriableStatuses []StatusRange `yaml:"retriable_statuses" json:"retriable_statuses,omitempty"`

	// RequestHeaders are added to every check's request, over HTTP/1.1
	// and HTTP/2 alike (Envoy's request_headers_to_add): a token the
	// health endpoint asks for, say. Spelled as a route's
	// request_headers.add: a mapping {name: value}, or a list of {name,
	// value, append} where append adds a value next to one an earlier
	// entry set. A user-agent entry replaces outrigger-health-check
	// (without append: a request has one User-Agent). Host (set by Host),
	// pseudo-headers, and the headers of a connection or of a body
	// (connection, keep-alive, proxy-connection, transfer-encoding,
	// upgrade, te, trailer, content-length) are refused. Empty means
	// none.
	RequestHeaders HeaderValues `yaml:"request_headers" json:"request_headers,omitempty"`
}

// StatusRange is the HTTP statuses Lo to Hi, both included. In YAML it is
// a number (one status) or a string "lo-hi".
type StatusRange struct {
	Lo, Hi int
}

// MarshalYAML writes a range as the YAML spells it, 200 or "200-299",
// so that a config written back to YAML parses again (UnmarshalYAML, in
// yaml.go, reads no other form).
func (r StatusRange) MarshalYAML() (any, error) {
	if r.Lo == r.Hi {
		return r.Lo, nil
	}
	return r.String(), nil
}

// GRPCHealthCheck is a gRPC health check (the grpc.health.v1 protocol): it
// passes when the server answers SERVING.
type GRPCHealthCheck struct {
	// Service is the service name asked about. Empty means the server as
	// a whole.
	Service string `yaml:"service" json:"service"`

	// Authority is the call's :authority (Envoy's
	// grpc_health_check.authority), for a server that routes or
	// authorizes by it. Empty means TLS's server_name when set, else the
	// host:port dialed.
	Authority string `yaml:"authority" json:"authority"`
}

// TCPHealthCheck is a TCP connect check; it has no settings.
type TCPHealthCheck struct{}

// Endpoint is one instance of a cluster.
//
// In YAML it is either the string "host:port" or a mapping with address and
// weight.
type Endpoint struct {
	// Address is "host:port"; an IPv6 host is bracketed ("[::1]:8080").
	Address string `yaml:"address" json:"address"`

	// Weight is the endpoint's share of requests relative to the others'
	// (for round_robin and random). Zero (absent) means 1; at most 10000.
	// An explicit 0 in YAML is refused.
	Weight uint32 `yaml:"weight" json:"weight"`

	// Zone is the endpoint's locality (e.g. "eu-west-1a"), compared with
	// node.zone by a zone-aware cluster. Empty means unknown: never the
	// local zone.
	Zone string `yaml:"zone,omitempty" json:"zone,omitempty"`
}

// TLS configures TLS to a cluster's endpoints.
type TLS struct {
	// Enabled turns TLS on. False (the default) means plaintext, and then no
	// other TLS field may be set.
	Enabled bool `yaml:"enabled" json:"enabled"`

	// ServerName is the name to send in SNI and verify the certificate for.
	// Empty means the endpoint's host.
	ServerName string `yaml:"server_name" json:"server_name"`

	// CAFile is a PEM file of the CAs to trust. Empty means the system roots.
	CAFile string `yaml:"ca_file" json:"ca_file"`

	// CertFile and KeyFile are the PEM client certificate and key for mutual
	// TLS; both or neither. Empty means no client certificate.
	CertFile string `yaml:"cert_file" json:"cert_file"`
	KeyFile  string `yaml:"key_file" json:"key_file"`

	// InsecureSkipVerify disables certificate verification. For tests only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify" json:"insecure_skip_verify"`

	// MinVersion and MaxVersion bound the TLS versions offered: "1.2" or
	// "1.3" (Envoy's tls_minimum_protocol_version and
	// tls_maximum_protocol_version). Empty means 1.2 and 1.3, which
	// [Config.WithDefaults] writes in when TLS is enabled, so that /config
	// shows the versions offered.
	MinVersion string `yaml:"min_version" json:"min_version"`
	MaxVersion string `yaml:"max_version" json:"max_version"`

	// DisableSessionResumption makes every new connection do a full
	// handshake. False (the default) resumes, on a new connection to an
	// endpoint, the last TLS session made with that endpoint, as Envoy
	// does (its max_session_keys: 0 turns it off).
	DisableSessionResumption bool `yaml:"disable_session_resumption" json:"disable_session_resumption"`
}

// ListenerTLS configures TLS on a listener (downstream TLS): Envoy's
// DownstreamTlsContext.
type ListenerTLS struct {
	// Enabled turns TLS on. False (the default) means plaintext, and then
	// no other field may be set.
	Enabled bool `yaml:"enabled" json:"enabled"`

	// CertFile and KeyFile are the PEM certificate (chain) and key the
	// listener presents. Required when TLS is enabled.
	CertFile string `yaml:"cert_file" json:"cert_file"`
	KeyFile  string `yaml:"key_file" json:"key_file"`

	// ClientCAFile is a PEM file of the CAs a client certificate must
	// chain to. Empty means client certificates are neither asked for
	// nor verified.
	ClientCAFile string `yaml:"client_ca_file" json:"client_ca_file"`

	// RequireClientCert refuses the handshake of a client that sends no
	// certificate. False (the default) asks for one and verifies it if
	// sent, and lets a client without one in. Needs ClientCAFile.
	RequireClientCert bool `yaml:"require_client_cert" json:"require_client_cert"`

	// MinVersion and MaxVersion bound the TLS versions accepted: "1.2"
	// or "1.3". Empty means 1.2 and 1.3, which [Config.WithDefaults]
	// writes in when TLS is enabled.
	MinVersion string `yaml:"min_version" json:"min_version"`
	MaxVersion string `yaml:"max_version" json:"max_version"`

	// HandshakeTimeout bounds the TLS handshake, from the connection's
	// accept (Envoy's transport_socket_connect_timeout): a client that
	// has not finished it by then is disconnected. Zero means 10s.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout" json:"handshake_timeout"`
}

// NamesFiles reports whether t is enabled and names a file.
func (t ListenerTLS) NamesFiles() bool {
	return t.Enabled && (t.CertFile != "" || t.KeyFile != "" || t.ClientCAFile != "")
}

// TLSVersion is the crypto/tls version a MinVersion or MaxVersion names,
// or false for a name that is none of them. Empty names none: 0, true.
func TLSVersion(name string) (uint16, bool) {
	switch name {
	case "":
		return 0, true
	case "1.2":
		return 0x0303, true // tls.VersionTLS12
	case "1.3":
		return 0x0304, true // tls.VersionTLS13
	}
	return 0, false
}

// Pool tunes the connection pool to each endpoint of a cluster.
type Pool struct {
	// MaxIdlePerEndpoint is how many idle HTTP/1.1 connections to keep per
	// endpoint. Zero means 32.
	MaxIdlePerEndpoint int `yaml:"max_idle_per_endpoint" json:"max_idle_per_endpoint"`

	// IdleTimeout closes a pooled connection idle for this long. Zero means
	// 90s.
	IdleTimeout time.Duration `yaml:"idle_timeout" json:"idle_timeout"`

	// MaxConnectionsPerEndpoint caps the connections (idle and busy) to one
	// endpoint; a request that would need one more waits for a free one.
	// Zero means unlimited.
	MaxConnectionsPerEndpoint int `yaml:"max_connections_per_endpoint" json:"max_connections_per_endpoint"`

	// MaxRequestsPerConnection is how many requests one connection
	// carries (HTTP/1.1 exchanges, HTTP/2 streams) before it is closed,
	// once they have ended (Envoy's max_requests_per_connection); 1 uses
	// each connection once. Zero means unlimited.
	MaxRequestsPerConnection int `yaml:"max_requests_per_connection" json:"max_requests_per_connection"`

	// MaxConnectionDuration is how long a connection takes new requests
	// from its dial (Envoy's max_connection_duration); past it, it is
	// closed once its requests have ended (an idle one within a second,
	// whatever IdleTimeout), so that traffic to an endpoint
	// that is a load-balanced address (a Kubernetes Service) spreads again
	// over what is behind it. Zero means unlimited.
	MaxConnectionDuration time.Duration `yaml:"max_connection_duration" json:"max_connection_duration"`
}

// Direction says which listener a route belongs to.
type Direction string

// The directions.
const (
	// Outbound routes serve the local app's calls to other services.
	Outbound Direction = "outbound"
	// Inbound routes serve traffic for the local app.
	Inbound Direction = "inbound"
)

// Names of the implicit parts that [Config.WithDefaults] adds when
// listeners.inbound.app is set.
const (
	// InboundAppCluster is the implicit cluster of the local app: one endpoint,
	// listeners.inbound.app, speaking listeners.inbound.app_protocol. A cluster
	// of this name in the config replaces it.
	InboundAppCluster = "inbound|app"

	// InboundDefaultRoute is the implicit last inbound route: every request
	// (path prefix "/") to InboundAppCluster, with no route timeout (the
	// caller's own timeouts apply). Inbound routes in the config come before
	// it and so take precedence; a route of this name in the config replaces
	// it.
	InboundDefaultRoute = "inbound|default"
)

// Route matches requests and says what to do with them. A route has exactly
// one action: Cluster, WeightedClusters, Composition or DirectResponse.
type Route struct {
	// Name identifies the route in logs, metrics and errors: 1-255
	// printable ASCII characters without spaces. Empty means "route[i]" (i
	// its index in routes). Names are unique.
	Name string `yaml:"name" json:"name"`

	// Listener is "outbound" or "inbound". Empty means "outbound".
	Listener Direction `yaml:"listener" json:"listener"`

	// Match selects the requests this route takes. The zero value matches
	// every request.
	Match RouteMatch `yaml:"match" json:"match"`

	// Cluster sends the request to this cluster. One action only.
	Cluster string `yaml:"cluster,omitempty" json:"cluster,omitempty"`

	// WeightedClusters splits requests among clusters by weight. One action
	// only.
	WeightedClusters []WeightedCluster `yaml:"weighted_clusters,omitempty" json:"weighted_clusters,omitempty"`

	// Composition answers the request by calling several clusters and
	// joining their JSON (package composer documents every key). Path
	// parameters its templates use ({id}) are the named groups of
	// match.path.regex, e.g. "^/orders/(?P<id>[^/]+)$". One action only.
	Composition *composer.Spec `yaml:"composition,omitempty" json:"composition,omitempty"`

	// DirectResponse answers the request from the sidecar itself. One action
	// only.
	DirectResponse *DirectResponse `yaml:"direct_response,omitempty" json:"direct_response,omitempty"`

	// Timeout bounds the whole request, retries included, from the request's
	// arrival until the response is complete. Zero means 15s. Not allowed
	// with direct_response.
	Timeout time.Duration `yaml:"timeout" json:"timeout"`

	// TimeoutDisabled, when true, removes the route timeout (for long-lived
	// streams); Timeout must then be zero. False (the default) means Timeout
	// applies.
	TimeoutDisabled bool `yaml:"timeout_disabled" json:"timeout_disabled"`

	// IdleTimeout ends the request when no bytes have moved for this long
	// in either direction: the client's body read (or a retry's, replayed
	// from memory), the response's header block read from the upstream,
	// its body read from the upstream or written to the client (Envoy's
	// route idle_timeout). Waiting for the response headers counts as
	// idle. A
	// request it ends before the response started is answered 408
	// stream_idle_timeout; one whose response had started is cut (a gRPC
	// call gets DEADLINE_EXCEEDED trailers). A protocol-upgrade tunnel
	// the route switches uses it in place of listeners.idle_timeout.
	// Zero (the default) means none. Not allowed with direct_response or
	// composition.
	IdleTimeout time.Duration `yaml:"idle_timeout" json:"idle_timeout"`

	// PerTryTimeout bounds each attempt (the first try and each retry). Zero
	// means no per-try bound: only Timeout applies. Must not exceed Timeout.
	// On a composition route it bounds each attempt of each backend call.
	PerTryTimeout time.Duration `yaml:"per_try_timeout" json:"per_try_timeout"`

	// GRPCTimeoutPerTry, when true, caps the grpc-timeout sent with a gRPC
	// attempt at PerTryTimeout when the attempt's request body is whole
	// as it goes out (no body, one the client has sent to its end, or a
	// retry's body replayed whole from memory), so that the upstream
	// gives up on the attempt when the proxy does. The upstream then ends
	// the whole call at that bound, its response included, while the
	// proxy's per-try timer stops at the response headers: for routes
	// whose calls answer whole (unary), not server streams that outlive
	// PerTryTimeout. False (the default) means grpc-timeout is the time
	// to the route deadline. Requires PerTryTimeout.
	GRPCTimeoutPerTry bool `yaml:"grpc_timeout_per_try" json:"grpc_timeout_per_try"`

	// Retry, when present, retries failed attempts. Absent (nil) means no
	// retries. On a composition route it is the policy of each backend call.
	Retry *RetryPolicy `yaml:"retry,omitempty" json:"retry,omitempty"`

	// IncludeRequestAttemptCount, when true, sets x-outrigger-attempt-count
	// on every attempt sent upstream: 1 on the first, 2 on the first
	// retry, and so on; a fallback cluster's attempts go on counting from
	// the primary's. A value the client sent is replaced. False (the
	// default) means the proxy neither sets nor removes the header. On a
	// composition route it applies to each backend call, counted per
	// call. Not allowed with direct_response. Envoy's
	// include_request_attempt_count.
	IncludeRequestAttemptCount bool `yaml:"include_request_attempt_count" json:"include_request_attempt_count"`

	// PrefixRewrite replaces the matched path prefix (match.path.prefix or
	// match.path.exact) before forwarding; it starts with "/" and is
	// written decoded, without "%", "?" or "#" (the proxy escapes the path
	// it sends: "/a b/" is sent as "/a%20b/"). Empty means the path is
	// forwarded unchanged.
	PrefixRewrite string `yaml:"prefix_rewrite" json:"prefix_rewrite"`

	// RegexRewrite rewrites the path with a regular expression before
	// forwarding (Envoy's regex_rewrite, Istio's uri_regex_rewrite).
	// Absent (nil) means none. Not with PrefixRewrite.
	RegexRewrite *RegexRewrite `yaml:"regex_rewrite,omitempty" json:"regex_rewrite,omitempty"`

	// HostRewrite replaces the Host (HTTP/2 :authority) sent upstream with
	// this host or host:port (Envoy's host_rewrite_literal, Istio's
	// rewrite.authority). Empty means the client's is sent. Not with
	// AutoHostRewrite.
	HostRewrite string `yaml:"host_rewrite" json:"host_rewrite"`

	// AutoHostRewrite, when true, sends each attempt with the Host of the
	// endpoint it goes to: its address, without the port when that is
	// the default of the cluster's scheme (80, or 443 with tls), as a
	// client calling the endpoint itself would send it (Envoy's
	// auto_host_rewrite). False (the default) sends the client's.
	AutoHostRewrite bool `yaml:"auto_host_rewrite" json:"auto_host_rewrite"`

	// AppendXForwardedHost, when true, appends the client's Host (HTTP/2
	// :authority) to the x-forwarded-host that every attempt carries, as
	// HostRewrite or AutoHostRewrite replaces it, unless it is the list's
	// last element already (Envoy's append_x_forwarded_host). False (the
	// default) leaves x-forwarded-host as the client sent it. Requires
	// HostRewrite or AutoHostRewrite.
	AppendXForwardedHost bool `yaml:"append_x_forwarded_host" json:"append_x_forwarded_host"`

	// RequestHeaders edits the request's headers before forwarding.
	RequestHeaders HeaderMutation `yaml:"request_headers" json:"request_headers"`

	// ResponseHeaders edits the response's headers before returning it:
	// upstream responses, direct responses, composed responses, fallback
	// responses, and the proxy's local replies for this route (breaker
	// open, timeout, ...), where the reply's own headers (x-outrigger-*,
	// content-type, content-length, grpc-*) win over an edit of the same
	// name. Empty means no edits.
	ResponseHeaders HeaderMutation `yaml:"response_headers" json:"response_headers"`

	// HashPolicy makes the request's hash key, by which a cluster with
	// lb_policy maglev picks its endpoint, so that requests with the same
	// key go to the same endpoint (Envoy's route hash_policy, Istio's
	// consistentHash). The policies are evaluated in order and the hashes
	// of those that find their value are combined; one marked terminal
	// stops the evaluation when a hash has been made (by it or one
	// before). A request none of them finds a value in goes to a random
	// endpoint. Only with cluster or weighted_clusters, whose clusters
	// must all be maglev. Empty means none.
	HashPolicy []HashPolicy `yaml:"hash_policy,omitempty" json:"hash_policy,omitempty"`

	// Fallback answers the request another way when the route's cluster
	// cannot take it: its circuit breaker is open, a resource limit is
	// full, it has no healthy endpoint, or (after any retries) no
	// connection could be made — every case in which the upstream
	// application never saw the request. Absent (nil) means no fallback:
	// the proxy's local reply is sent. Only with cluster or
	// weighted_clusters.
	Fallback *Fallback `yaml:"fallback,omitempty" json:"fallback,omitempty"`

	// Fault injects delays and aborts into a share of the route's
	// requests, to see how the callers and the rest of the mesh cope
	// (Envoy's HTTP fault filter, Istio's VirtualService fault). Absent
	// (nil) means none.
	Fault *Fault `yaml:"fault,omitempty" json:"fault,omitempty"`

	// RateLimit caps the rate of the requests the route takes with a
	// token bucket of its own, shared by all of them, as Envoy's local
	// rate limit filter: a request that finds the bucket empty is
	// answered 429 (x-outrigger-error: rate_limited) instead of running
	// the route's action. Absent (nil) means no limit.
	RateLimit *RateLimit `yaml:"rate_limit,omitempty" json:"rate_limit,omitempty"`

	// Mirror sends a copy of a share of the route's requests to other
	// clusters, fire and forget: the client gets the answer of the
	// route's own cluster, never a mirror's (Envoy's
	// request_mirror_policies, Istio's VirtualService mirror). Only with
	// cluster or weighted_clusters. Empty means none.
	Mirror []Mirror `yaml:"mirror,omitempty" json:"mirror,omitempty"`
}

// RegexRewrite replaces every match of Pattern in the request's path
// with Substitution.
type RegexRewrite struct {
	// Pattern is an RE2 regular expression (Go's regexp syntax),
	// unanchored, matched against the decoded, normalized path without
	// its query, as match.path.regex is; "." matches a newline too.
	// Required.
	Pattern string `yaml:"pattern" json:"pattern"`

	// Substitution replaces each match: "\1" to "\9" insert the
	// pattern's numbered groups and "\0" the whole match, as in RE2's
	// (and Envoy's) substitutions; "\\" is one backslash. Its other
	// text is written decoded, without "%", "?" or "#", as
	// prefix_rewrite is. Empty removes the matches.
	Substitution string `yaml:"substitution" json:"substitution"`
}

// Mirror is one cluster a route's requests are copied to.
type Mirror struct {
	// Cluster receives the copies; required. It may be the route's own
	// cluster (as Envoy allows): the copies then come with a Host
	// ending in "-shadow".
	Cluster string `yaml:"cluster" json:"cluster"`

	// Percent is the share of the route's requests copied, above 0 and
	// at most 100 (a fraction such as 0.5 is allowed); at least 0.0001,
	// as FaultDelay's. Absent (nil)
	// means 100, every request, as Istio's mirrorPercentage.
	Percent *float64 `yaml:"percent,omitempty" json:"percent,omitempty"`
}

// MirrorPercent is m's share of the requests: Percent, or 100 when it
// is absent.
func (m *Mirror) MirrorPercent() float64 {
	if m.Percent == nil {
		return 100
	}
	return *m.Percent
}

// Fault is a route's fault injection: a delay, an abort, or both (a
// request may be delayed, then aborted). Each draws its own share of
// the requests.
type Fault struct {
	// Delay holds a share of the requests for a fixed time before the
	// route's action runs; the route timeout starts after it.
	Delay *FaultDelay `yaml:"delay,omitempty" json:"delay,omitempty"`

	// Abort answers a share of the requests with an error of the
	// proxy's own (x-outrigger-error: fault_abort) instead of running
	// the route's action.
	Abort *FaultAbort `yaml:"abort,omitempty" json:"abort,omitempty"`

	// MaxActive caps the requests a delay holds at once (Envoy's
	// max_active_faults); past it, requests go on undelayed (an abort is
	// still drawn for them).
	// Aborts are not held and not capped: set only with Delay. Zero
	// means no cap.
	MaxActive int `yaml:"max_active" json:"max_active"`
}

// RateLimit is a token bucket (Envoy's TokenBucket): it starts full,
// each request the route takes spends one token, and tokens come back
// at TokensPerFill every FillInterval, spread evenly over the interval,
// up to MaxTokens.
type RateLimit struct {
	// MaxTokens is the most tokens the bucket holds, and so the largest
	// burst let through at once; required, from 1 to 4294967295.
	MaxTokens int64 `yaml:"max_tokens" json:"max_tokens"`
	// TokensPerFill is the tokens added every FillInterval, from 1 to
	// 4294967295. Zero means 1, as in Envoy.
	TokensPerFill int64 `yaml:"tokens_per_fill" json:"tokens_per_fill"`
	// FillInterval is the period TokensPerFill tokens are added over;
	// required, at least 50ms (Envoy's minimum).
	FillInterval time.Duration `yaml:"fill_interval" json:"fill_interval"`
}

// Bounds of a rate limit: Envoy's (its token counts are uint32, and it
// refuses a fill interval under 50ms).
const (
	MaxRateLimitTokens       = 1<<32 - 1
	MinRateLimitFillInterval = 50 * time.Millisecond
)

// Fill is TokensPerFill, or its default 1 when it is zero.
func (rl *RateLimit) Fill() int64 {
	if rl.TokensPerFill == 0 {
		return 1
	}
	return rl.TokensPerFill
}

// FaultDelay delays Percent of the requests by Fixed.
type FaultDelay struct {
	// Fixed is the delay; required, above zero.
	Fixed time.Duration `yaml:"fixed" json:"fixed"`
	// Percent is the share of the requests delayed, above 0 and at most
	// 100 (a fraction such as 0.5 is allowed); at least 0.0001, one in a
	// million, the finest share drawn.
	Percent float64 `yaml:"percent" json:"percent"`
}

// FaultAbort answers Percent of the requests itself. At least one of
// HTTPStatus and GRPCStatus is set: a gRPC request gets GRPCStatus in a
// trailers-only reply, or without it the gRPC status a client reads from
// HTTPStatus; any other request gets HTTPStatus, and is not aborted when
// only GRPCStatus is set.
type FaultAbort struct {
	// HTTPStatus is the status sent, 200 to 599.
	HTTPStatus int `yaml:"http_status" json:"http_status"`
	// GRPCStatus is the gRPC status sent to gRPC requests: a name such
	// as "UNAVAILABLE", or a code from 1 to 16.
	GRPCStatus string `yaml:"grpc_status" json:"grpc_status"`
	// Percent is the share of the requests aborted, as FaultDelay's.
	Percent float64 `yaml:"percent" json:"percent"`
}

// GRPCCode is the code GRPCStatus names (1 to 16), or 0 when it is empty
// or names none.
func (a *FaultAbort) GRPCCode() int {
	s := strings.TrimSpace(a.GRPCStatus)
	if s == "" {
		return 0
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n >= 1 && n <= 16 {
			return n
		}
		return 0
	}
	for c := 1; c <= 16; c++ {
		if strings.EqualFold(s, breaker.GRPCCodeName(c)) {
			return c
		}
	}
	return 0
}

// HashPolicy is one source of a request's hash key: exactly one of
// Header, Cookie, SourceIP and QueryParameter.
type HashPolicy struct {
	// Header hashes the value of this request header (case-insensitive
	// name), as the client sent it, before the route's request_headers
	// edits; the values of a header sent several times are hashed
	// whatever their order. ":authority", ":method", ":path" and
	// ":scheme" name the pseudo-headers. A request without it gives no
	// hash.
	Header string `yaml:"header,omitempty" json:"header,omitempty"`

	// Cookie hashes the value of the first cookie of this name (case
	// sensitive) in the request's Cookie headers. A request without it
	// gives no hash: no cookie is set on the response (Envoy's cookie
	// generation with a ttl is not offered).
	Cookie string `yaml:"cookie,omitempty" json:"cookie,omitempty"`

	// SourceIP, when true, hashes the IP address of the client's
	// connection to the listener (its peer, not X-Forwarded-For).
	SourceIP bool `yaml:"source_ip,omitempty" json:"source_ip,omitempty"`

	// QueryParameter hashes the value of the first query parameter of
	// this name, both as written in the request (escapes not decoded). A
	// request without it gives no hash.
	QueryParameter string `yaml:"query_parameter,omitempty" json:"query_parameter,omitempty"`

	// Terminal, when true, ends the evaluation here once a hash has been
	// made, by this policy or one before it: the policies after it serve
	// only requests that gave none. False (the default) goes on.
	Terminal bool `yaml:"terminal,omitempty" json:"terminal,omitempty"`
}

// Fallback is a route's second choice: exactly one of DirectResponse and
// Cluster. The response it produces carries x-outrigger-fallback with the
// reason (breaker_open, overflow, no_healthy_upstream,
// upstream_connect_failure) and the primary's x-outrigger-breaker header.
type Fallback struct {
	// DirectResponse answers with a fixed response.
	DirectResponse *DirectResponse `yaml:"direct_response,omitempty" json:"direct_response,omitempty"`

	// Cluster forwards the request to this cluster instead, through its
	// own breaker, limits and endpoints, with the route's timeouts, retry
	// policy and header edits and within what is left of the route
	// timeout. A fallback cluster never falls back further. Must differ
	// from the route's cluster(s).
	Cluster string `yaml:"cluster,omitempty" json:"cluster,omitempty"`
}

// RouteMatch selects requests. All of its parts must match; a part left at
// its zero value matches everything.
type RouteMatch struct {
	// Authority lists host patterns for the request's Host (:authority):
	// "api.example.com" (exact), "*.example.com" (any name ending in
	// ".example.com"), or "*" (any); each may carry a port
	// ("api.example.com:8080"), and a pattern without a port matches any
	// port. Matching is case-insensitive. Empty means any authority.
	Authority []string `yaml:"authority" json:"authority"`

	// Path matches the request path (without the query).
	Path PathMatch `yaml:"path" json:"path"`

	// Methods lists the HTTP methods accepted ("GET", "POST", ... upper
	// case). Empty means any method.
	Methods []string `yaml:"methods" json:"methods"`

	// Headers must all match.
	Headers []HeaderMatch `yaml:"headers" json:"headers"`

	// QueryParameters must all match. Empty means any query.
	QueryParameters []QueryParameterMatch `yaml:"query_parameters,omitempty" json:"query_parameters,omitempty"`
}

// QueryParameterMatch matches one parameter of the request's query with
// exactly one of Exact, Prefix, Regex or Present (Envoy's
// QueryParameterMatcher, Istio's queryParams). The parameter is the
// first of that name in the query; names and values are compared
// decoded ("%20" and "+" are a space); a parameter whose name or value
// has a malformed escape is skipped, so that a query with no other of
// that name has none.
type QueryParameterMatch struct {
	// Name is the parameter's name, compared exactly (case-sensitive).
	// Required.
	Name string `yaml:"name" json:"name"`

	// Exact matches the value exactly. Empty means unset: an empty value
	// is matched by Regex "^$".
	Exact string `yaml:"exact,omitempty" json:"exact,omitempty"`

	// Prefix matches values starting with it.
	Prefix string `yaml:"prefix,omitempty" json:"prefix,omitempty"`

	// Regex is an RE2 regular expression that must match the whole value.
	Regex string `yaml:"regex,omitempty" json:"regex,omitempty"`

	// Present, when true, matches when the parameter is in the query,
	// with or without a value ("?debug" has it); when false, when it is
	// not (Envoy's present_match). Absent (nil) means unset.
	Present *bool `yaml:"present,omitempty" json:"present,omitempty"`

	// Invert turns the result around: the route matches when the
	// parameter does not, an absent parameter included (exact: admin
	// with invert matches "?role=user" and a query without role). False
	// (the default) means no inversion. Not with present: false, which
	// is already the inverse of present: true.
	Invert bool `yaml:"invert,omitempty" json:"invert,omitempty"`
}

// PathMatch matches the request path with at most one of its fields.
// All empty means prefix "/" (every path).
//
// Exact and Prefix are written as the decoded path they match ("/a b",
// not "/a%20b"), without "%", "?" or "#": the path is matched decoded,
// without its query.
type PathMatch struct {
	// Exact matches the path exactly.
	Exact string `yaml:"exact,omitempty" json:"exact,omitempty"`

	// Prefix matches paths starting with it ("/api/" matches "/api/x" but
	// not "/apix").
	Prefix string `yaml:"prefix,omitempty" json:"prefix,omitempty"`

	// Regex is an RE2 regular expression (Go's regexp syntax) that must match
	// the whole path; "." matches any character of the decoded path, a
	// newline ("%0A") too.
	Regex string `yaml:"regex,omitempty" json:"regex,omitempty"`
}

// HeaderMatch matches one request header with exactly one of Exact, Prefix,
// Regex or Present. A header present several times is matched against its
// values joined by ",".
type HeaderMatch struct {
	// Name is the header's name, matched case-insensitively. The HTTP/2
	// pseudo-headers ":authority", ":method", ":path" and ":scheme" may be
	// named too. The body's framing (Transfer-Encoding, Trailer), which
	// the listener takes out of the request's fields, and the
	// connection-specific fields (Connection, Keep-Alive,
	// Proxy-Connection, TE, HTTP2-Settings) may not; Upgrade may.
	Name string `yaml:"name" json:"name"`

	// Exact matches the value exactly. Empty means unset: an empty value
	// is matched by Regex "^$".
	Exact string `yaml:"exact,omitempty" json:"exact,omitempty"`

	// Prefix matches values starting with it.
	Prefix string `yaml:"prefix,omitempty" json:"prefix,omitempty"`

	// Regex is an RE2 regular expression that must match the whole value.
	Regex string `yaml:"regex,omitempty" json:"regex,omitempty"`

	// Present, when true, matches when the header is present at all.
	Present bool `yaml:"present,omitempty" json:"present,omitempty"`

	// Invert turns the result around: the route matches when the header does
	// not. False (the default) means no inversion.
	Invert bool `yaml:"invert" json:"invert"`
}

// WeightedCluster is one share of a weighted_clusters action.
type WeightedCluster struct {
	// Cluster is the target's name.
	Cluster string `yaml:"cluster" json:"cluster"`

	// Weight is this cluster's share relative to the others'. Zero means the
	// cluster takes no traffic (useful to drain a canary); the weights of a
	// route must not all be zero.
	Weight uint32 `yaml:"weight" json:"weight"`
}

// DirectResponse answers a request from the sidecar without an upstream.
type DirectResponse struct {
	// Status is the HTTP status code, 200 to 599. Required.
	Status int `yaml:"status" json:"status"`

	// Body is sent as the response body. Empty means none. Must be empty
	// with status 204 or 304, which have no content.
	Body string `yaml:"body" json:"body"`

	// Headers are added to the response, as a response_headers add list
	// is (an entry that replaces replaces earlier ones). Empty means none beyond
	// Content-Length (and Content-Type "text/plain; charset=utf-8" when Body
	// is set and no content-type is given); a 204 or 304 gets neither.
	Headers HeaderValues `yaml:"headers" json:"headers"`
}

// RetryPolicy retries failed attempts of a request, with jittered
// exponential back-off, within the cluster's retry budget (limits).
//
// A request whose body is longer than MaxBufferedBodyBytes is not retried
// (its body cannot be replayed); neither is a non-idempotent request
// (POST, PATCH, and any method not defined idempotent by RFC 9110 section
// 9.2.2) unless AllowNonIdempotent is set, except on connect-failure and
// refused-stream, which are safe because the upstream never saw it.
type RetryPolicy struct {
	// Attempts is the number of retries after the first try. Zero means 1;
	// at most 10.
	Attempts int `yaml:"attempts" json:"attempts"`

	// RetryOn lists the conditions that make an attempt retriable:
	//   connect-failure         the connection could not be made
	//   refused-stream          the upstream refused the HTTP/2 stream
	//                           (REFUSED_STREAM, or above a GOAWAY's last
	//                           stream id)
	//   reset                   the connection or stream was reset mid-way
	//                           (a refused stream too)
	//   5xx                     any 5xx response (and reset, connect-failure,
	//                           per-try timeout)
	//   gateway-error           502, 503 or 504 (and reset, connect-failure,
	//                           per-try timeout)
	//   retriable-status-codes  a status in RetriableStatusCodes
	//   retriable-4xx           409 Conflict (Envoy's retriable 4xx)
	//   retriable-headers       a response with a header that matches one
	//                           of RetriableHeaders
	//   envoy-ratelimited       a response with x-envoy-ratelimited (an
	//                           upstream Envoy's rate limiter), which
	//                           without it is never retried
	//   unavailable             gRPC status UNAVAILABLE
	//   resource-exhausted      gRPC status RESOURCE_EXHAUSTED
	//   deadline-exceeded       gRPC status DEADLINE_EXCEEDED
	//   cancelled               gRPC status CANCELLED
	//   internal                gRPC status INTERNAL
	// (gRPC statuses of a trailers-only answer). Except for
	// retriable-status-codes, retriable-4xx, retriable-headers and
	// envoy-ratelimited, only
	// what the cluster's failure classifier counts as a failure is
	// retried: a gRPC condition outside its
	// grpc_statuses (CANCELLED, by default) never is, and validation
	// refuses it. Empty means [connect-failure, refused-stream,
	// gateway-error, unavailable].
	RetryOn []RetryCondition `yaml:"retry_on" json:"retry_on"`

	// RetriableStatusCodes are HTTP statuses (400-599) to retry on; they
	// require "retriable-status-codes" in RetryOn, and it requires them.
	// They are retried whatever the cluster's failure classifier says of
	// them (Envoy's retriable_status_codes), and the breaker and outlier
	// detector are told the classifier's verdict: a 409 retried under the
	// default classifier counts as a success to them.
	RetriableStatusCodes []int `yaml:"retriable_status_codes" json:"retriable_status_codes"`

	// RetriableHeaders match response headers to retry on (Envoy's
	// retriable_headers): a response with a header that matches any of
	// them is retried, whatever the cluster's failure classifier says of
	// it (the breaker and outlier detector are told its verdict). They
	// require "retriable-headers" in RetryOn, and it requires them.
	RetriableHeaders []HeaderMatch `yaml:"retriable_headers,omitempty" json:"retriable_headers,omitempty"`

	// Backoff spaces the retries.
	Backoff Backoff `yaml:"backoff" json:"backoff"`

	// RateLimitedBackoff, when present, waits before a retry for as long
	// as the retried response's reset header (Retry-After,
	// X-RateLimit-Reset, ...) asks instead of the Backoff (Envoy's
	// rate_limited_retry_back_off). It does not make anything retriable:
	// RetryOn still decides which responses are retried. Absent (nil)
	// means reset headers are ignored.
	RateLimitedBackoff *RateLimitedBackoff `yaml:"rate_limited_backoff,omitempty" json:"rate_limited_backoff,omitempty"`

	// Budget is not a route setting: retries in flight are capped per
	// cluster, by clusters.<name>.limits.retry_budget (or, without one,
	// limits.max_retries), as Envoy's circuit_breakers.thresholds do, so
	// that every route to a cluster shares one budget. Setting it is an
	// error that says so. Absent (nil) is the only valid value.
	Budget *RetryBudget `yaml:"budget,omitempty" json:"budget,omitempty"`

	// AllowNonIdempotent permits retrying non-idempotent requests on
	// conditions other than connect-failure and refused-stream. False (the
	// default) means only idempotent requests are retried on those, except
	// gRPC calls answered trailers-only with a status of a gRPC condition
	// (unavailable, resource-exhausted, deadline-exceeded, cancelled), which
	// are retried as gRPC's own retry policy does when the request body was
	// kept whole.
	AllowNonIdempotent bool `yaml:"allow_non_idempotent" json:"allow_non_idempotent"`

	// MaxBufferedBodyBytes is how much of a request body the sidecar keeps to
	// replay on a retry; a longer body makes the request not retriable. Zero
	// means 65536 (64 KiB).
	MaxBufferedBodyBytes int64 `yaml:"max_buffered_body_bytes" json:"max_buffered_body_bytes"`
}

// RetryCondition is one value of retry_on.
type RetryCondition string

// The retry conditions (see [RetryPolicy.RetryOn]).
const (
	RetryOnConnectFailure       RetryCondition = "connect-failure"
	RetryOnRefusedStream        RetryCondition = "refused-stream"
	RetryOnReset                RetryCondition = "reset"
	RetryOn5xx                  RetryCondition = "5xx"
	RetryOnGatewayError         RetryCondition = "gateway-error"
	RetryOnRetriableStatusCodes RetryCondition = "retriable-status-codes"
	RetryOnUnavailable          RetryCondition = "unavailable"
	RetryOnResourceExhausted    RetryCondition = "resource-exhausted"
	RetryOnDeadlineExceeded     RetryCondition = "deadline-exceeded"
	RetryOnCancelled            RetryCondition = "cancelled"
	RetryOnRetriable4xx         RetryCondition = "retriable-4xx"
	RetryOnRetriableHeaders     RetryCondition = "retriable-headers"
	RetryOnInternal             RetryCondition = "internal"
	RetryOnEnvoyRateLimited     RetryCondition = "envoy-ratelimited"
)

// Backoff is jittered exponential back-off: before retry n (from 1) the
// sidecar waits a random time in [0, min(Max, Base*2^(n-1))].
type Backoff struct {
	// Base is the first retry's back-off ceiling. Zero means 25ms.
	Base time.Duration `yaml:"base" json:"base"`

	// Max caps the back-off; at least Base. Zero means 10 times Base
	// (250ms with the default Base).
	Max time.Duration `yaml:"max" json:"max"`
}

// RateLimitedBackoff takes a retry's wait from the retried response's
// rate-limit reset headers. The first of ResetHeaders whose value parses
// names the interval; the retry waits a random time from the interval up
// to 1.5 times it, never more than MaxInterval, spread as Envoy spreads
// it so that the clients told the same reset time do not all come back
// at once. A response none of whose headers parse, or whose interval is
// zero (a reset time already past), gets the Backoff. A response whose
// interval exceeds MaxInterval, or whose wait would reach the route
// deadline or last the route's idle_timeout, is not retried: it is the
// answer. (Envoy instead skips a header over max_interval and tries the
// next, then its exponential back-off.)
type RateLimitedBackoff struct {
	// ResetHeaders are the response headers to read, in order. Required
	// (at least one); names are unique, case-insensitively.
	ResetHeaders []ResetHeader `yaml:"reset_headers" json:"reset_headers"`

	// MaxInterval is the longest interval a reset header may ask for; a
	// longer one ends the retries. Zero means 300s (Envoy's default).
	MaxInterval time.Duration `yaml:"max_interval" json:"max_interval"`
}

// ResetHeader is one response header that names when to retry.
type ResetHeader struct {
	// Name is the header's name, matched case-insensitively; when the
	// header appears more than once, its first value is read. Required.
	// grpc-retry-pushback-ms, which counts milliseconds (gRFC A6), is
	// refused: neither format reads it.
	Name string `yaml:"name" json:"name"`

	// Format is how the value names the wait: "seconds" or
	// "unix_timestamp" (see [ResetHeaderFormat]). Empty means "seconds".
	Format ResetHeaderFormat `yaml:"format" json:"format"`
}

// ResetHeaderFormat is how a reset header's value names the wait
// (Envoy's RetryPolicy.ResetHeaderFormat).
type ResetHeaderFormat string

// The reset header formats.
const (
	// ResetHeaderSeconds is a count of seconds to wait ("120"), or an
	// HTTP-date to wait until ("Wed, 21 Oct 2015 07:28:00 GMT"): the two
	// forms of Retry-After (RFC 9110 §10.2.3). Envoy's SECONDS reads only
	// the count.
	ResetHeaderSeconds ResetHeaderFormat = "seconds"
	// ResetHeaderUnixTimestamp is the time to wait until, in whole seconds
	// since the Unix epoch ("1595320702"), as X-RateLimit-Reset is often
	// sent.
	ResetHeaderUnixTimestamp ResetHeaderFormat = "unix_timestamp"
)

// RetryBudget is the shape of the former route-level retry budget, kept
// only so that a config that still sets routes[].retry.budget is refused
// with a message naming its replacement, clusters.<name>.limits.retry_budget
// (budget_percent, min_retry_concurrency).
type RetryBudget struct {
	Percent        float64 `yaml:"percent" json:"percent"`
	MinConcurrency int     `yaml:"min_concurrency" json:"min_concurrency"`
}

// HeaderMutation edits a message's headers: first Remove, then Add.
type HeaderMutation struct {
	// Add sets headers. In YAML either a mapping {name: value} (each replaces
	// the header) or a list of {name, value, append}, applied in its order
	// (an entry that replaces replaces what earlier entries appended).
	Add HeaderValues `yaml:"add" json:"add"`

	// Remove lists header names to delete. Pseudo-headers, Host,
	// Content-Length and the hop-by-hop headers the proxy manages
	// (Connection, Keep-Alive, Proxy-Connection, Transfer-Encoding,
	// Upgrade, TE, Trailer, HTTP2-Settings) cannot be removed.
	Remove []string `yaml:"remove" json:"remove"`
}

// HeaderValues is a list of headers to set. In YAML it may also be written
// as a mapping {name: value}, which is the list sorted by name, each
// replacing.
type HeaderValues []HeaderValue

// HeaderValue is one header to set.
type HeaderValue struct {
	// Name is the header name: an RFC 9110 token. Pseudo-headers, Host,
	// Content-Length and the hop-by-hop headers the proxy manages
	// (Connection, Keep-Alive, Proxy-Connection, Transfer-Encoding,
	// Upgrade, TE, Trailer, HTTP2-Settings) cannot be set.
	// Proxy-Authorization and Proxy-Authenticate can: the proxy drops
	// the client's and the upstream's (they were for the hop before),
	// and one a route sets is for the next hop (RFC 9110 §11.7).
	Name string `yaml:"name" json:"name"`

	// Value is the header value (no CR, LF or NUL).
	Value string `yaml:"value" json:"value"`

	// Append, when true, adds the value next to any existing ones. False (the
	// default) replaces existing values.
	Append bool `yaml:"append" json:"append"`
}

// Logging configures the process's logs and the access log.
type Logging struct {
	// Level is "debug", "info", "warn" or "error". Empty means "info".
	Level string `yaml:"level" json:"level"`

	// Format is "json" or "console". Empty means "json".
	Format string `yaml:"format" json:"format"`

	// AccessLog writes one line per request.
	AccessLog AccessLog `yaml:"access_log" json:"access_log"`
}

// AccessLog writes one JSON line per request handled.
type AccessLog struct {
	// Enabled turns the access log on. False (the default) means off.
	Enabled bool `yaml:"enabled" json:"enabled"`

	// Path is the file to append to. Empty means standard output.
	Path string `yaml:"path" json:"path"`
}
