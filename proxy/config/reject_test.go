package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A cluster and a route that are valid, for cases about something else.
const okCluster = `
clusters:
  a:
    endpoints: [10.0.0.1:80]
`

// An inbound listener that verifies client certificates, for the
// authorization cases that match on the principal.
const mtlsInbound = `
listeners:
  inbound:
    tls:
      enabled: true
      cert_file: /etc/certs/tls.crt
      key_file: /etc/certs/tls.key
      client_ca_file: /etc/certs/ca.crt
`

func TestParseRejects(t *testing.T) {
	cases := []struct {
		name string
		yaml string
		want string // the whole error text
	}{
		{"unknown top-level key", `clusterz: {}`,
			`t.yaml:1: clusterz: unknown key "clusterz" (did you mean "clusters"?)`},
		{"unknown nested key", `
listeners:
  inbound:
    app: 127.0.0.1:8080
    app_protocl: http2
`, `t.yaml:5: listeners.inbound.app_protocl: unknown key "app_protocl" (did you mean "app_protocol"?)`},
		{"unknown path normalization", `
listeners:
  path_normalization: rfc3986
`, `t.yaml:3: listeners.path_normalization: unknown normalization "rfc3986" (valid: base, merge_slashes, none)`},
		{"unknown action on paths with escaped slashes", `
listeners:
  path_with_escaped_slashes: KEEP_UNCHANGED
`, `t.yaml:3: listeners.path_with_escaped_slashes: unknown action "KEEP_UNCHANGED" (valid: keep, reject, unescape_and_forward, unescape_and_redirect)`},
		{"unknown action on outbound headers with underscores", `
listeners:
  outbound:
    headers_with_underscores: strip
`, `t.yaml:4: listeners.outbound.headers_with_underscores: unknown action "strip" (valid: allow, drop, reject)`},
		{"unknown action on inbound headers with underscores", `
listeners:
  inbound:
    app: 127.0.0.1:8080
    headers_with_underscores: REJECT
`, `t.yaml:5: listeners.inbound.headers_with_underscores: unknown action "REJECT" (valid: allow, drop, reject)`},
		{"negative outbound max_connections", `
listeners:
  outbound:
    max_connections: -1
`, `t.yaml:4: listeners.outbound.max_connections: must not be negative, got -1 (0 means a quarter of the open-file limit)`},
		{"negative inbound max_connections", `
listeners:
  inbound:
    app: 127.0.0.1:8080
    max_connections: -5
`, `t.yaml:5: listeners.inbound.max_connections: must not be negative, got -5 (0 means a quarter of the open-file limit)`},
		{"listener tls settings while disabled", `
listeners:
  inbound:
    app: 127.0.0.1:8080
    tls: {cert_file: /c.pem, require_client_cert: true, handshake_timeout: 1s}
`, `t.yaml:5: listeners.inbound.tls: cert_file, require_client_cert, handshake_timeout set but enabled is false`},
		{"listener tls without a certificate", `
listeners:
  outbound:
    tls: {enabled: true, key_file: /k.pem}
`, `t.yaml:4: listeners.outbound.tls: cert_file and key_file are required`},
		{"listener tls requiring a client certificate with no CA", `
listeners:
  inbound:
    app: 127.0.0.1:8080
    tls: {enabled: true, cert_file: /c.pem, key_file: /k.pem, require_client_cert: true}
`, `t.yaml:5: listeners.inbound.tls.require_client_cert: needs client_ca_file, the CAs to verify client certificates with`},
		{"listener tls unknown versions", `
listeners:
  inbound:
    app: 127.0.0.1:8080
    tls: {enabled: true, cert_file: /c.pem, key_file: /k.pem, min_version: "1.0", max_version: "1.4"}
`, "t.yaml:5: listeners.inbound.tls.min_version: must be \"1.2\" or \"1.3\", got \"1.0\"\nt.yaml:5: listeners.inbound.tls.max_version: must be \"1.2\" or \"1.3\", got \"1.4\""},
		{"listener tls versions crossed", `
listeners:
  inbound:
    app: 127.0.0.1:8080
    tls: {enabled: true, cert_file: /c.pem, key_file: /k.pem, min_version: "1.3", max_version: "1.2"}
`, `t.yaml:5: listeners.inbound.tls: min_version 1.3 is above max_version 1.2`},
		{"listener tls negative handshake timeout", `
listeners:
  inbound:
    app: 127.0.0.1:8080
    tls: {enabled: true, cert_file: /c.pem, key_file: /k.pem, handshake_timeout: -1s}
`, `t.yaml:5: listeners.inbound.tls.handshake_timeout: must not be negative, got -1s`},
		{"bad duration", okCluster + `    connect_timeout: 1 second
`, `t.yaml:5: clusters.a.connect_timeout: invalid duration "1 second": expected a number with a unit, e.g. "250ms", "1s", "1m30s"`},
		{"duration without unit", okCluster + `    connect_timeout: 5
`, `t.yaml:5: clusters.a.connect_timeout: invalid duration 5: a unit is required, e.g. "5s"`},
		{"duration out of range", okCluster + `    connect_timeout: 9999999999h
`, `t.yaml:5: clusters.a.connect_timeout: invalid duration "9999999999h": out of range (at most 2562047h47m16.854775807s)`},
		{"duration in exponent form", okCluster + `    connect_timeout: 1e3s
`, `t.yaml:5: clusters.a.connect_timeout: invalid duration "1e3s": expected a number with a unit, e.g. "250ms", "1s", "1m30s"`},
		{"negative duration", okCluster + `    connect_timeout: -1s
`, `t.yaml:5: clusters.a.connect_timeout: must not be negative, got -1s`},
		{"negative shutdown delay", `
listeners:
  shutdown_delay: -5s
`, `t.yaml:3: listeners.shutdown_delay: must not be negative, got -5s`},
		{"shutdown delay beyond its bound", `
listeners:
  shutdown_delay: 5h
`, `t.yaml:3: listeners.shutdown_delay: must be at most 5m0s, got 5h0m0s`},
		{"health check without a kind", okCluster + `    health_check: {interval: 2s}
`, `t.yaml:5: clusters.a.health_check: one of http, grpc or tcp is required (tcp: {} for a connect check)`},
		{"health check with two kinds", okCluster + `    health_check: {http: {path: /healthz}, tcp: {}}
`, `t.yaml:5: clusters.a.health_check: only one of http, grpc or tcp may be set, got http and tcp`},
		{"grpc health check on an http1 cluster", okCluster + `    health_check:
      grpc: {service: orders}
`, `t.yaml:6: clusters.a.health_check.grpc: a gRPC health check needs the cluster's protocol to be http2 or grpc, not http1`},
		{"grpc health check bad authority", okCluster + `    protocol: grpc
    health_check:
      grpc: {authority: "orders/v1"}
`, `t.yaml:7: clusters.a.health_check.grpc.authority: must be a host or host:port, got "orders/v1"`},
		{"health check interval too short", okCluster + `    health_check: {interval: 1ms, tcp: {}}
`, `t.yaml:5: clusters.a.health_check.interval: must be at least 10ms, got 1ms`},
		{"health check bad threshold", okCluster + `    health_check: {unhealthy_threshold: -2, tcp: {}}
`, `t.yaml:5: clusters.a.health_check.unhealthy_threshold: must be from 1 to 1000 (0 means the default), got -2`},
		{"health check path without slash", okCluster + `    health_check:
      http: {path: healthz}
`, `t.yaml:6: clusters.a.health_check.http.path: must start with / and hold no spaces, control characters or #, got "healthz"`},
		{"health check path with a fragment", okCluster + `    health_check:
      http: {path: "/healthz#top"}
`, `t.yaml:6: clusters.a.health_check.http.path: must start with / and hold no spaces, control characters or #, got "/healthz#top"`},
		{"health check path with a bad escape", okCluster + `    health_check:
      http: {path: "/%zz"}
`, `t.yaml:6: clusters.a.health_check.http.path: not a valid request path: invalid URL escape "%zz"`},
		{"health check bad host", okCluster + `    health_check:
      http: {host: "a{b}"}
`, `t.yaml:6: clusters.a.health_check.http.host: must be a host or host:port, got "a{b}"`},
		{"health check interval too long", okCluster + `    health_check: {interval: 25h, jitter: 2400h, tcp: {}}
`, "t.yaml:5: clusters.a.health_check.interval: must be at most 24h0m0s, got 25h0m0s\nt.yaml:5: clusters.a.health_check.jitter: must be at most 24h0m0s, got 2400h0m0s"},
		{"health check status out of range", okCluster + `    health_check:
      http:
        expected_statuses: [200, "300-700"]
`, `t.yaml:7: clusters.a.health_check.http.expected_statuses[1]: must be a status or a rising range within 100-599, got 300-700`},
		{"health check retriable status out of range", okCluster + `    health_check:
      http:
        retriable_statuses: ["500-499"]
`, `t.yaml:7: clusters.a.health_check.http.retriable_statuses[0]: must be a status or a rising range within 100-599, got 500-499`},
		{"health check status not a number", okCluster + `    health_check:
      http:
        expected_statuses: [ok]
`, `t.yaml:7: clusters.a.health_check.http.expected_statuses[0]: expected a status (200) or a range ("200-299"), got "ok"`},
		{"health check unknown key", okCluster + `    health_check:
      tcp: {}
      intervall: 1s
`, `t.yaml:7: clusters.a.health_check.intervall: unknown key "intervall" (did you mean "interval"?)`},
		{"health check port out of range", okCluster + `    health_check:
      port: 65536
      tcp: {}
`, `t.yaml:6: clusters.a.health_check.port: must be a port from 1 to 65535 (0 means each endpoint's own port), got 65536`},
		{"health check negative port", okCluster + `    health_check: {port: -80, grpc: {}}
    protocol: grpc
`, `t.yaml:5: clusters.a.health_check.port: must be a port from 1 to 65535 (0 means each endpoint's own port), got -80`},
		{"health check port not a number", okCluster + `    health_check:
      port: admin
      tcp: {}
`, `t.yaml:6: clusters.a.health_check.port: expected an integer, got "admin"`},
		{"health check header hop-by-hop", okCluster + `    health_check:
      http:
        request_headers: {connection: close}
`, `t.yaml:7: clusters.a.health_check.http.request_headers[0].name: header "connection" cannot be set: connection-specific (hop-by-hop): the check's connection is the prober's to manage`},
		{"health check header host", okCluster + `    health_check:
      http:
        request_headers:
          - {name: x-ok, value: "1"}
          - {name: Host, value: orders.internal}
`, `t.yaml:9: clusters.a.health_check.http.request_headers[1].name: header "Host" cannot be set: the Host of a check is set by http.host`},
		{"health check pseudo-header", okCluster + `    health_check:
      http:
        request_headers: {":path": /x}
`, `t.yaml:7: clusters.a.health_check.http.request_headers[0].name: header ":path": pseudo-headers are made by the client from the check's path and host`},
		{"health check header bad name", okCluster + `    health_check:
      http:
        request_headers: {"x token": abc}
`, `t.yaml:7: clusters.a.health_check.http.request_headers[0].name: invalid header name "x token"`},
		{"health check header bad value", okCluster + `    health_check:
      http:
        request_headers:
          - {name: x-token, value: "a\nb"}
`, `t.yaml:8: clusters.a.health_check.http.request_headers[0].value: invalid header value "a\nb" (no control characters)`},
		{"health check header unknown key", okCluster + `    health_check:
      http:
        request_headers:
          - {name: x-token, valeu: abc}
`, `t.yaml:8: clusters.a.health_check.http.request_headers[0].valeu: unknown key "valeu" (expected name, value or append)`},
		{"health check headers on a tcp check", okCluster + `    health_check:
      tcp: {request_headers: {x-a: "1"}}
`, `t.yaml:6: clusters.a.health_check.tcp.request_headers: unknown key "request_headers"`},
		{"endpoint without port", `
clusters:
  payments:
    endpoints:
      - 10.0.0.4:8080
      - 10.0.0.5
`, `t.yaml:6: clusters.payments.endpoints[1]: "10.0.0.5" has no port`},
		{"endpoint port out of range", `
clusters:
  a:
    endpoints: ["10.0.0.1:0"]
`, `t.yaml:4: clusters.a.endpoints[0]: "10.0.0.1:0": port 0 is out of range (1-65535)`},
		{"endpoint bad host", `
clusters:
  a:
    endpoints: ["bad_host!:80"]
`, `t.yaml:4: clusters.a.endpoints[0]: "bad_host!:80": "bad_host!" is not an IP address or host name`},
		{"duplicate endpoint", `
clusters:
  a:
    endpoints:
      - 10.0.0.1:80
      - address: 10.0.0.1:80
        weight: 2
`, `t.yaml:6: clusters.a.endpoints[1]: duplicate endpoint "10.0.0.1:80" (also endpoints[0])`},
		{"unknown key in endpoint", `
clusters:
  a:
    endpoints:
      - address: 10.0.0.1:80
        wieght: 2
`, `t.yaml:6: clusters.a.endpoints[0].wieght: unknown key "wieght" (expected address, weight or zone)`},
		{"endpoint zone not a string", `
clusters:
  a:
    endpoints:
      - {address: 10.0.0.1:80, zone: [a]}
`, `t.yaml:5: clusters.a.endpoints[0].zone: expected a string, got a list`},
		{"endpoint zone with a space", `
clusters:
  a:
    endpoints:
      - {address: 10.0.0.1:80, zone: "eu west"}
`, `t.yaml:5: clusters.a.endpoints[0].zone: must hold no white space or control characters, got "eu west"`},
		{"node zone with a control character", `
node:
  zone: "eu\tw"
`, `t.yaml:3: node.zone: must hold no white space or control characters, got "eu\tw"`},
		{"zone_aware without node.zone", `
clusters:
  a:
    endpoints: [{address: 10.0.0.1:80, zone: eu-west-1a}]
    zone_aware: {enabled: true}
`, `t.yaml:5: clusters.a.zone_aware.enabled: needs node.zone, the sidecar's own zone, which is not set`},
		{"overprovisioning_factor below 100", `
node: {zone: eu-west-1a}
clusters:
  a:
    endpoints: [{address: 10.0.0.1:80, zone: eu-west-1a}]
    zone_aware: {enabled: true, overprovisioning_factor: 90}
`, `t.yaml:6: clusters.a.zone_aware.overprovisioning_factor: must be from 100 to 1000 percent (0 means 140), got 90`},
		{"overprovisioning_factor above 1000", `
node: {zone: eu-west-1a}
clusters:
  a:
    endpoints: [10.0.0.1:80]
    zone_aware:
      overprovisioning_factor: 1400
`, `t.yaml:7: clusters.a.zone_aware.overprovisioning_factor: must be from 100 to 1000 percent (0 means 140), got 1400`},
		{"endpoint weight 0", `
clusters:
  a:
    endpoints:
      - 10.0.0.1:80
      - {address: 10.0.0.2:80, weight: 0}
`, `t.yaml:6: clusters.a.endpoints[1].weight: must be at least 1, got 0 (an endpoint that should take no requests is left out of the list)`},
		{"endpoint of wrong kind", `
clusters:
  a:
    endpoints: [[10.0.0.1:80]]
`, `t.yaml:4: clusters.a.endpoints[0]: expected "host:port" or a mapping with address and weight, got a list`},
		{"endpoints not a list", `
clusters:
  a:
    endpoints: {x: 1}
`, `t.yaml:4: clusters.a.endpoints: expected a list, got a mapping`},
		{"empty cluster", `
clusters:
  a: {}
`, `t.yaml:3: clusters.a.endpoints: at least one endpoint is required`},
		{"bad cluster name", `
clusters:
  "pay ments":
    endpoints: [10.0.0.1:80]
`, `t.yaml:3: clusters["pay ments"]: invalid cluster name "pay ments": use 1-255 letters, digits and any of _ - . | :`},
		{"bad protocol", okCluster + `    protocol: http3
`, `t.yaml:5: clusters.a.protocol: unknown protocol "http3" (valid: http1, http2, grpc)`},
		{"unknown lb policy", okCluster + `    lb_policy: ring_hash
`, `t.yaml:5: clusters.a.lb_policy: unknown load-balancing policy "ring_hash" (valid: round_robin, least_request, random, maglev)`},
		{"maglev with zone_aware", `
node: {zone: z1}
clusters:
  a:
    endpoints: [10.0.0.1:80]
    lb_policy: maglev
    zone_aware: {enabled: true}
`, `t.yaml:7: clusters.a.zone_aware.enabled: not supported with lb_policy maglev: the zone level is drawn per request, so keys would not stay on their endpoint`},
		{"hash_policy on a round_robin cluster", okCluster + `routes:
  - cluster: a
    hash_policy: [{header: x-user}]
`, `t.yaml:7: routes[0].hash_policy: needs lb_policy maglev on cluster "a", whose clusters.a.lb_policy is round_robin: only maglev picks by the hash`},
		{"hash_policy on a weighted cluster not maglev", `
clusters:
  a: {endpoints: [10.0.0.1:80], lb_policy: maglev}
  b: {endpoints: [10.0.0.2:80], lb_policy: least_request}
routes:
  - weighted_clusters: [{cluster: a, weight: 1}, {cluster: b, weight: 1}]
    hash_policy: [{cookie: session}]
`, `t.yaml:7: routes[0].hash_policy: needs lb_policy maglev on cluster "b", whose clusters.b.lb_policy is least_request: only maglev picks by the hash`},
		{"hash_policy empty and double entries", `
clusters:
  a: {endpoints: [10.0.0.1:80], lb_policy: maglev}
routes:
  - cluster: a
    hash_policy:
      - {header: ""}
      - {source_ip: false, terminal: true}
      - {header: x-user, cookie: session}
`, "t.yaml:7: routes[0].hash_policy[0]: set one of header, cookie or query_parameter (with a non-empty name) or source_ip: true\n" +
			"t.yaml:8: routes[0].hash_policy[1]: set one of header, cookie or query_parameter (with a non-empty name) or source_ip: true\n" +
			"t.yaml:9: routes[0].hash_policy[2]: set only one of header, cookie, source_ip and query_parameter, got header and cookie"},
		{"hash_policy bad names", `
clusters:
  a: {endpoints: [10.0.0.1:80], lb_policy: maglev}
routes:
  - cluster: a
    hash_policy:
      - {header: "x user"}
      - {header: transfer-encoding}
      - {cookie: "a;b"}
      - {query_parameter: "a=b"}
`, "t.yaml:7: routes[0].hash_policy[0].header: invalid header name \"x user\"\n" +
			"t.yaml:8: routes[0].hash_policy[1].header: header \"transfer-encoding\" frames the request body and is taken out of the request's fields by the listener: a matcher on it never sees it\n" +
			"t.yaml:9: routes[0].hash_policy[2].cookie: invalid cookie name \"a;b\" (a token, RFC 6265 §4.1.1)\n" +
			"t.yaml:10: routes[0].hash_policy[3].query_parameter: invalid query parameter name \"a=b\" (no \"&\", \"=\", \"#\", spaces or control characters: it is compared with the query as written)"},
		{"hash_policy unknown key", `
clusters:
  a: {endpoints: [10.0.0.1:80], lb_policy: maglev}
routes:
  - cluster: a
    hash_policy: [{header_name: x-user}]
`, `t.yaml:6: routes[0].hash_policy[0].header_name: unknown key "header_name"`},
		{"hash_policy on a direct response", `
routes:
  - direct_response: {status: 200}
    hash_policy: [{source_ip: true}]
`, `t.yaml:4: routes[0].hash_policy: only with cluster or weighted_clusters: it picks an endpoint of a maglev cluster`},
		{"tls settings while disabled", okCluster + `    tls: {server_name: a.example, ca_file: /ca.pem}
`, `t.yaml:5: clusters.a.tls: server_name, ca_file set but enabled is false`},
		{"pool connection life negative", okCluster + `    pool: {max_requests_per_connection: -1, max_connection_duration: -1s}
`, "t.yaml:5: clusters.a.pool.max_requests_per_connection: must not be negative (0 means unlimited)\nt.yaml:5: clusters.a.pool.max_connection_duration: must not be negative, got -1s"},
		{"tls version while disabled", okCluster + `    tls: {min_version: "1.3"}
`, `t.yaml:5: clusters.a.tls: min_version set but enabled is false`},
		{"tls unknown versions", okCluster + `    tls: {enabled: true, min_version: "1.1", max_version: TLSv1_3}
`, "t.yaml:5: clusters.a.tls.min_version: must be \"1.2\" or \"1.3\", got \"1.1\"\nt.yaml:5: clusters.a.tls.max_version: must be \"1.2\" or \"1.3\", got \"TLSv1_3\""},
		{"tls versions crossed", okCluster + `    tls: {enabled: true, min_version: "1.3", max_version: "1.2"}
`, `t.yaml:5: clusters.a.tls: min_version 1.3 is above max_version 1.2`},
		{"breaker setting out of range", okCluster + `    circuit_breaker:
      failure_rate: {threshold: 2}
`, `t.yaml:6: clusters.a.circuit_breaker.failure_rate.threshold: must be in (0,1]`},
		{"route to unknown cluster", okCluster + `
routes:
  - cluster: b
`, `t.yaml:7: routes[0].cluster: unknown cluster "b" (did you mean "a"?)`},
		{"two actions", okCluster + `
routes:
  - cluster: a
    direct_response: {status: 200}
`, `t.yaml:7: routes[0]: set only one action, got cluster and direct_response`},
		{"no action", okCluster + `
routes:
  - name: r
    timeout: 1s
`, `t.yaml:7: routes[0]: no action: set one of cluster, weighted_clusters, composition or direct_response`},
		{"bad regex", okCluster + `
routes:
  - match: {path: {regex: "/a(b"}}
    cluster: a
`, "t.yaml:7: routes[0].match.path.regex: invalid regex: missing closing ): `/a(b`"},
		{"two path matchers", okCluster + `
routes:
  - match:
      path: {prefix: /a, exact: /a/b}
    cluster: a
`, `t.yaml:8: routes[0].match.path: set only one of exact, prefix and regex, got exact and prefix`},
		{"path without slash", okCluster + `
routes:
  - match: {path: {prefix: api}}
    cluster: a
`, `t.yaml:7: routes[0].match.path.prefix: must start with "/", got "api"`},
		{"weights sum to zero", okCluster + `
routes:
  - weighted_clusters:
      - {cluster: a, weight: 0}
`, `t.yaml:7: routes[0].weighted_clusters: weights sum to 0: at least one weight must be positive`},
		{"negative route timeout", okCluster + `
routes:
  - cluster: a
    timeout: -2s
`, `t.yaml:8: routes[0].timeout: must not be negative, got -2s`},
		{"per-try timeout above route timeout", okCluster + `
routes:
  - cluster: a
    per_try_timeout: 20s
`, `t.yaml:8: routes[0].per_try_timeout: 20s exceeds the route timeout (15s)`},
		{"retry attempts too high", okCluster + `
routes:
  - cluster: a
    retry: {attempts: 11}
`, `t.yaml:8: routes[0].retry.attempts: must be at most 10, got 11`},
		{"bad envoy_request_headers", okCluster + `
listeners:
  outbound: {envoy_request_headers: trust}
`, `t.yaml:7: listeners.outbound.envoy_request_headers: unknown value "trust" (valid: honor, ignore)`},
		{"bad retry_on", okCluster + `
routes:
  - cluster: a
    retry:
      retry_on: [5xx, 5xxx]
`, `t.yaml:9: routes[0].retry.retry_on[1]: unknown retry condition "5xxx" (valid: connect-failure, refused-stream, reset, 5xx, gateway-error, retriable-status-codes, retriable-4xx, retriable-headers, envoy-ratelimited, unavailable, resource-exhausted, deadline-exceeded, cancelled, internal)`},
		{"status codes without condition", okCluster + `
routes:
  - cluster: a
    retry:
      retriable_status_codes: [409]
`, `t.yaml:9: routes[0].retry.retriable_status_codes: set, but retry_on lacks retriable-status-codes`},
		{"retry on a gRPC status the classifier accepts", okCluster + `
routes:
  - cluster: a
    retry:
      retry_on: [unavailable, cancelled]
`, `t.yaml:9: routes[0].retry.retry_on[1]: cancelled never retries on cluster "a": its failure_classifier does not count CANCELLED as a failure, and what it accepts is not retried (list CANCELLED in clusters.a.failure_classifier.grpc_statuses)`},
		{"retriable headers without condition", okCluster + `
routes:
  - cluster: a
    retry:
      retriable_headers: [{name: x-retry, present: true}]
`, `t.yaml:9: routes[0].retry.retriable_headers: set, but retry_on lacks retriable-headers`},
		{"retriable-headers without headers", okCluster + `
routes:
  - cluster: a
    retry:
      retry_on: [retriable-headers]
`, `t.yaml:8: routes[0].retry.retriable_headers: required when retry_on has retriable-headers`},
		{"retriable header on the status pseudo-header", okCluster + `
routes:
  - cluster: a
    retry:
      retry_on: [retriable-headers]
      retriable_headers: [{name: ":status", exact: "503"}]
`, `t.yaml:10: routes[0].retry.retriable_headers[0].name: ":status": a response's pseudo-header is its status; use retriable_status_codes`},
		{"retriable header without a matcher", okCluster + `
routes:
  - cluster: a
    retry:
      retry_on: [retriable-headers]
      retriable_headers: [{name: x-retry}]
`, `t.yaml:10: routes[0].retry.retriable_headers[0]: set one of exact, prefix, regex or present (an empty exact or prefix is not a matcher: to match an empty value, write regex: "^$")`},
		{"retry on INTERNAL the classifier accepts", `
clusters:
  b:
    endpoints: [10.0.0.1:80]
    failure_classifier: {grpc_statuses: [UNAVAILABLE]}
routes:
  - cluster: b
    retry:
      retry_on: [internal]
`, `t.yaml:9: routes[0].retry.retry_on[0]: internal never retries on cluster "b": its failure_classifier does not count INTERNAL as a failure, and what it accepts is not retried (list INTERNAL in clusters.b.failure_classifier.grpc_statuses)`},
		{"retriable status code below 400", okCluster + `
routes:
  - cluster: a
    retry:
      retry_on: [retriable-status-codes]
      retriable_status_codes: [409, 200]
`, `t.yaml:10: routes[0].retry.retriable_status_codes[1]: must be an HTTP error status from 400 to 599, got 200`},
		{"backoff max below base", okCluster + `
routes:
  - cluster: a
    retry:
      backoff: {base: 100ms, max: 50ms}
`, `t.yaml:9: routes[0].retry.backoff.max: 50ms is less than backoff.base (100ms)`},
		{"rate-limited back-off without reset headers", okCluster + `
routes:
  - cluster: a
    retry:
      rate_limited_backoff: {max_interval: 30s}
`, `t.yaml:9: routes[0].retry.rate_limited_backoff.reset_headers: required: name at least one header, such as retry-after`},
		{"unknown reset header format", okCluster + `
routes:
  - cluster: a
    retry:
      rate_limited_backoff:
        reset_headers:
          - {name: retry-after, format: seconds}
          - {name: x-ratelimit-reset, format: MINUTES}
`, `t.yaml:12: routes[0].retry.rate_limited_backoff.reset_headers[1].format: unknown format "MINUTES" (valid: seconds, unix_timestamp)`},
		{"reset header without a name", okCluster + `
routes:
  - cluster: a
    retry:
      rate_limited_backoff:
        reset_headers: [{format: unix_timestamp}]
`, `t.yaml:10: routes[0].retry.rate_limited_backoff.reset_headers[0].name: required`},
		{"reset header named twice", okCluster + `
routes:
  - cluster: a
    retry:
      rate_limited_backoff:
        reset_headers: [{name: Retry-After}, {name: retry-after}]
`, `t.yaml:10: routes[0].retry.rate_limited_backoff.reset_headers[1].name: "retry-after" repeats reset_headers[0]`},
		{"invalid reset header name", okCluster + `
routes:
  - cluster: a
    retry:
      rate_limited_backoff:
        reset_headers: [{name: "retry after"}]
`, `t.yaml:10: routes[0].retry.rate_limited_backoff.reset_headers[0].name: invalid header name "retry after"`},
		{"gRPC pushback as a reset header", okCluster + `
routes:
  - cluster: a
    retry:
      rate_limited_backoff:
        reset_headers: [{name: grpc-retry-pushback-ms}]
`, `t.yaml:10: routes[0].retry.rate_limited_backoff.reset_headers[0].name: "grpc-retry-pushback-ms" counts milliseconds (gRFC A6): neither seconds nor unix_timestamp reads it`},
		{"negative max_interval", okCluster + `
routes:
  - cluster: a
    retry:
      rate_limited_backoff:
        reset_headers: [{name: retry-after}]
        max_interval: -1s
`, `t.yaml:11: routes[0].retry.rate_limited_backoff.max_interval: must not be negative, got -1s`},
		{"unknown key in rate-limited back-off", okCluster + `
routes:
  - cluster: a
    retry:
      rate_limited_backoff:
        reset_headers: [{name: retry-after, fromat: seconds}]
`, `t.yaml:10: routes[0].retry.rate_limited_backoff.reset_headers[0].fromat: unknown key "fromat" (did you mean "format"?)`},
		{"bad header name", okCluster + `
routes:
  - cluster: a
    request_headers:
      add: {"x bad": "1"}
`, `t.yaml:9: routes[0].request_headers.add[0].name: invalid header name "x bad"`},
		{"header value with leading whitespace", okCluster + `
routes:
  - cluster: a
    request_headers:
      add: {x-env: " prod"}
`, `t.yaml:9: routes[0].request_headers.add[0].value: invalid header value " prod" (no leading or trailing whitespace: HTTP/1.1 drops it, and an HTTP/2 peer refuses the message, RFC 9113 §8.2.1)`},
		{"response header value with trailing tab", okCluster + `
routes:
  - cluster: a
    response_headers:
      add: [{name: x-env, value: "prod\t", append: true}]
`, `t.yaml:9: routes[0].response_headers.add[0].value: invalid header value "prod\t" (no leading or trailing whitespace: HTTP/1.1 drops it, and an HTTP/2 peer refuses the message, RFC 9113 §8.2.1)`},
		{"direct response header value with trailing space", `
routes:
  - direct_response: {status: 200, headers: {x-a: "1 "}}
`, `t.yaml:3: routes[0].direct_response.headers[0].value: invalid header value "1 " (no leading or trailing whitespace: HTTP/1.1 drops it, and an HTTP/2 peer refuses the message, RFC 9113 §8.2.1)`},
		{"health check header value with leading space", okCluster + `    health_check:
      http:
        request_headers: {x-token: " abc"}
`, `t.yaml:7: clusters.a.health_check.http.request_headers[0].value: invalid header value " abc" (no leading or trailing whitespace: HTTP/1.1 drops it, and an HTTP/2 peer refuses the message, RFC 9113 §8.2.1)`},
		{"duplicate header in mapping form", okCluster + `
routes:
  - cluster: a
    request_headers:
      add:
        x-a: "1"
        x-a: "2"
`, `t.yaml:11: routes[0].request_headers.add.x-a: duplicate key "x-a" (first on line 10)`},
		{"header names differing only in case", okCluster + `
routes:
  - cluster: a
    request_headers:
      add:
        X-A: "1"
        x-a: "2"
`, `t.yaml:11: routes[0].request_headers.add.x-a: header "x-a" is the same field as "X-A" on line 10 (header names are case-insensitive): give it once, or use the list form with append: true to send several values`},
		{"header names differing only in case in a flow mapping", okCluster + `
routes:
  - cluster: a
    response_headers: {add: {Cache-Control: no-store, cache-control: private}}
`, `t.yaml:8: routes[0].response_headers.add.cache-control: header "cache-control" is the same field as "Cache-Control" on line 8 (header names are case-insensitive): give it once, or use the list form with append: true to send several values`},
		{"health check header names differing only in case", okCluster + `    health_check:
      http:
        request_headers: {Authorization: a, AUTHORIZATION: b}
`, `t.yaml:7: clusters.a.health_check.http.request_headers.AUTHORIZATION: header "AUTHORIZATION" is the same field as "Authorization" on line 7 (header names are case-insensitive): give it once, or use the list form with append: true to send several values`},
		{"direct response header names differing only in case", `
routes:
  - direct_response:
      status: 200
      headers:
        content-type: text/plain
        Content-Type: text/html
`, `t.yaml:7: routes[0].direct_response.headers.Content-Type: header "Content-Type" is the same field as "content-type" on line 6 (header names are case-insensitive): give it once, or use the list form with append: true to send several values`},
		{"composition call header names differing only in case", okCluster + `
routes:
  - match: {path: {exact: /x}}
    composition:
      calls:
        - name: c
          cluster: a
          path: /c
          headers:
            X-Tenant: a
            x-tenant: t
`, `t.yaml:15: routes[0].composition.calls[0].headers.x-tenant: header "x-tenant" is the same field as "X-Tenant" on line 14 (header names are case-insensitive): give it once`},
		{"composition call named in the error by its place", okCluster + `
routes:
  - match: {path: {exact: /x}}
    composition:
      calls:
        - name: first
          cluster: a
          path: /c
        - name: second
          cluster: nope
          path: /d
`, `t.yaml:14: routes[0].composition.calls[1].cluster: unknown cluster "nope"`},
		{"hop-by-hop header", okCluster + `
routes:
  - cluster: a
    response_headers:
      remove: [Connection]
`, `t.yaml:9: routes[0].response_headers.remove[0]: header "Connection" is managed by the proxy and cannot be changed`},
		{"content-length edit", okCluster + `
routes:
  - cluster: a
    response_headers:
      add: [{name: content-length, value: "3"}]
`, `t.yaml:9: routes[0].response_headers.add[0].name: header "content-length" is managed by the proxy and cannot be changed`},
		{"header match without matcher", okCluster + `
routes:
  - cluster: a
    match:
      headers: [{name: x-canary}]
`, `t.yaml:9: routes[0].match.headers[0]: set one of exact, prefix, regex or present (an empty exact or prefix is not a matcher: to match an empty value, write regex: "^$")`},
		{"header match on an empty exact", okCluster + `
routes:
  - cluster: a
    match:
      headers: [{name: x-canary, exact: ""}]
`, `t.yaml:9: routes[0].match.headers[0]: set one of exact, prefix, regex or present (an empty exact or prefix is not a matcher: to match an empty value, write regex: "^$")`},
		{"header match on transfer-encoding", okCluster + `
routes:
  - cluster: a
    match:
      headers: [{name: transfer-encoding, exact: chunked}]
`, `t.yaml:9: routes[0].match.headers[0].name: header "transfer-encoding" frames the request body and is taken out of the request's fields by the listener: a matcher on it never sees it`},
		{"header match on trailer", okCluster + `
routes:
  - cluster: a
    match:
      headers: [{name: Trailer, present: true}]
`, `t.yaml:9: routes[0].match.headers[0].name: header "Trailer" frames the request body and is taken out of the request's fields by the listener: a matcher on it never sees it`},
		{"header match on connection", okCluster + `
routes:
  - cluster: a
    match:
      headers: [{name: Connection, exact: close}]
`, `t.yaml:9: routes[0].match.headers[0].name: header "Connection" describes the client's connection, not the request, and an HTTP/2 request has none (RFC 9113 §8.2.2), so a route on it would tell the protocols apart: match "upgrade" to route a protocol upgrade`},
		{"header match on keep-alive", okCluster + `
routes:
  - cluster: a
    match:
      headers: [{name: keep-alive, present: true, invert: true}]
`, `t.yaml:9: routes[0].match.headers[0].name: header "keep-alive" describes the client's connection, not the request, and an HTTP/2 request has none (RFC 9113 §8.2.2), so a route on it would tell the protocols apart`},
		{"header match on te", okCluster + `
routes:
  - cluster: a
    match:
      headers: [{name: te, prefix: trailers}]
`, `t.yaml:9: routes[0].match.headers[0].name: header "te" describes the client's connection, not the request, and an HTTP/2 request has none but "te: trailers" (RFC 9113 §8.2.2), so a route on it would tell the protocols apart`},
		{"escape in path prefix", okCluster + `
routes:
  - cluster: a
    match: {path: {prefix: "/a%20b/"}}
`, `t.yaml:8: routes[0].match.path.prefix: must be written decoded, without "%" escapes: paths are matched decoded and sent escaped ("/a b" matches and sends /a%20b; a "%" the path decodes to is matched by path.regex)`},
		{"query parameter match without matcher", okCluster + `
routes:
  - cluster: a
    match:
      query_parameters: [{name: v}]
`, `t.yaml:9: routes[0].match.query_parameters[0]: set one of exact, prefix, regex or present (an empty exact or prefix is not a matcher: to match an empty value, write regex: "^$")`},
		{"query parameter match without name", okCluster + `
routes:
  - cluster: a
    match:
      query_parameters: [{exact: "1"}]
`, `t.yaml:9: routes[0].match.query_parameters[0].name: required`},
		{"query parameter match with two matchers", okCluster + `
routes:
  - cluster: a
    match:
      query_parameters: [{name: v, exact: "1", present: true}]
`, `t.yaml:9: routes[0].match.query_parameters[0]: set only one of exact, prefix, regex and present, got exact and present`},
		{"query parameter match with exact and present: false", okCluster + `
routes:
  - cluster: a
    match:
      query_parameters: [{name: v, exact: "1", present: false}]
`, `t.yaml:9: routes[0].match.query_parameters[0]: set only one of exact, prefix, regex and present, got exact and present`},
		{"query parameter match with present: false inverted", okCluster + `
routes:
  - cluster: a
    match:
      query_parameters: [{name: v, present: false, invert: true}]
`, `t.yaml:9: routes[0].match.query_parameters[0].invert: not with present: false, which matches an absent parameter already (inverted, it is present: true)`},
		{"query parameter match inverted without matcher", okCluster + `
routes:
  - cluster: a
    match:
      query_parameters: [{name: v, invert: true}]
`, `t.yaml:9: routes[0].match.query_parameters[0]: set one of exact, prefix, regex or present (an empty exact or prefix is not a matcher: to match an empty value, write regex: "^$")`},
		{"query parameter match with a bad regex", okCluster + `
routes:
  - cluster: a
    match:
      query_parameters: [{name: v, regex: "("}]
`, `t.yaml:9: routes[0].match.query_parameters[0].regex: invalid regex: missing closing ): ` + "`(`"},
		{"host_rewrite with a path", okCluster + `
routes:
  - cluster: a
    host_rewrite: api.example.com/x
`, `t.yaml:8: routes[0].host_rewrite: must be a host or host:port, got "api.example.com/x"`},
		{"host_rewrite with a space", okCluster + `
routes:
  - cluster: a
    host_rewrite: "api example"
`, `t.yaml:8: routes[0].host_rewrite: must be a host or host:port, got "api example"`},
		{"host_rewrite and auto_host_rewrite", okCluster + `
routes:
  - cluster: a
    host_rewrite: api.example.com
    auto_host_rewrite: true
`, `t.yaml:8: routes[0].host_rewrite: set only one of host_rewrite and auto_host_rewrite`},
		{"host_rewrite with direct_response", `
routes:
  - direct_response: {status: 200}
    host_rewrite: api.example.com
`, `t.yaml:4: routes[0].host_rewrite: not used with direct_response`},
		{"auto_host_rewrite with composition", okCluster + `
routes:
  - auto_host_rewrite: true
    composition:
      calls: [{name: x, cluster: a, path: /x}]
`, `t.yaml:7: routes[0].auto_host_rewrite: not used with composition`},
		{"append_x_forwarded_host without a host rewrite", okCluster + `
routes:
  - cluster: a
    append_x_forwarded_host: true
`, `t.yaml:8: routes[0].append_x_forwarded_host: requires host_rewrite or auto_host_rewrite (the client's Host goes on unchanged without one)`},
		{"append_x_forwarded_host with direct_response", `
routes:
  - direct_response: {status: 200}
    append_x_forwarded_host: true
`, `t.yaml:4: routes[0].append_x_forwarded_host: not used with direct_response`},
		{"append_x_forwarded_host with composition", okCluster + `
routes:
  - append_x_forwarded_host: true
    composition:
      calls: [{name: x, cluster: a, path: /x}]
`, `t.yaml:7: routes[0].append_x_forwarded_host: not used with composition`},
		{"regex_rewrite and prefix_rewrite", okCluster + `
routes:
  - cluster: a
    match: {path: {prefix: /api/}}
    prefix_rewrite: /v1/
    regex_rewrite: {pattern: "^/api/", substitution: /v1/}
`, `t.yaml:10: routes[0].regex_rewrite: set only one of prefix_rewrite and regex_rewrite`},
		{"regex_rewrite without pattern", okCluster + `
routes:
  - cluster: a
    regex_rewrite: {substitution: /v1/}
`, `t.yaml:8: routes[0].regex_rewrite.pattern: required`},
		{"regex_rewrite with a bad pattern", okCluster + `
routes:
  - cluster: a
    regex_rewrite: {pattern: "a(", substitution: /v1/}
`, `t.yaml:8: routes[0].regex_rewrite.pattern: invalid regex: missing closing ): ` + "`a(`"},
		{"regex_rewrite naming a missing group", okCluster + `
routes:
  - cluster: a
    regex_rewrite: {pattern: "^/(a)/(b)", substitution: '/\3'}
`, `t.yaml:8: routes[0].regex_rewrite.substitution: "\3" names group 3, but the pattern has 2`},
		{"regex_rewrite with a Go-style group", okCluster + `
routes:
  - cluster: a
    regex_rewrite: {pattern: "^/(a)", substitution: '/\{1}'}
`, `t.yaml:8: routes[0].regex_rewrite.substitution: "\{" is not a group reference: "\0" to "\9" insert a group, "\\" a backslash`},
		{"regex_rewrite ending in a backslash", okCluster + `
routes:
  - cluster: a
    regex_rewrite: {pattern: "^/(a)", substitution: '/x\'}
`, `t.yaml:8: routes[0].regex_rewrite.substitution: ends with a lone "\": write "\\" for a backslash`},
		{"regex_rewrite with an escape", okCluster + `
routes:
  - cluster: a
    regex_rewrite: {pattern: "^/(a)", substitution: '/a%20b/\1'}
`, `t.yaml:8: routes[0].regex_rewrite.substitution: must be written decoded, without "%" escapes: the rewritten path is sent escaped ("/a b/" sends /a%20b/)`},
		{"regex_rewrite with a query", okCluster + `
routes:
  - cluster: a
    regex_rewrite: {pattern: "^/(a)", substitution: '/x?y=\1'}
`, `t.yaml:8: routes[0].regex_rewrite.substitution: must not contain "?" or "#": a rewrite replaces part of the path and cannot add a query or fragment`},
		{"regex_rewrite with direct_response", `
routes:
  - direct_response: {status: 200}
    regex_rewrite: {pattern: "^/a", substitution: /b}
`, `t.yaml:4: routes[0].regex_rewrite: not used with direct_response`},
		{"escape in path exact", okCluster + `
routes:
  - cluster: a
    match: {path: {exact: "/a%2Fb"}}
`, `t.yaml:8: routes[0].match.path.exact: must be written decoded, without "%" escapes: paths are matched decoded and sent escaped ("/a b" matches and sends /a%20b; a "%" the path decodes to is matched by path.regex)`},
		{"query in path prefix", okCluster + `
routes:
  - cluster: a
    match: {path: {prefix: "/a?b"}}
`, `t.yaml:8: routes[0].match.path.prefix: must not contain "?" or "#": it is matched against the path alone, without query or fragment`},
		{"escape in prefix_rewrite", okCluster + `
routes:
  - cluster: a
    match: {path: {prefix: /api/}}
    prefix_rewrite: /a%20b/
`, `t.yaml:9: routes[0].prefix_rewrite: must be written decoded, without "%" escapes: the rewritten path is sent escaped ("/a b/" sends /a%20b/)`},
		{"fragment in prefix_rewrite", okCluster + `
routes:
  - cluster: a
    match: {path: {prefix: /api/}}
    prefix_rewrite: "/v1/#x"
`, `t.yaml:9: routes[0].prefix_rewrite: must not contain "?" or "#": a rewrite replaces part of the path and cannot add a query or fragment`},
		{"lower-case method", okCluster + `
routes:
  - cluster: a
    match: {methods: [get]}
`, `t.yaml:8: routes[0].match.methods[0]: method "get" must be upper case ("GET")`},
		{"bad authority pattern", okCluster + `
routes:
  - cluster: a
    match: {authority: ["api.*.com"]}
`, `t.yaml:8: routes[0].match.authority[0]: invalid authority pattern "api.*.com": a wildcard is allowed only as a leading "*."`},
		{"direct response status", `
routes:
  - direct_response: {status: 700}
`, `t.yaml:3: routes[0].direct_response.status: must be an HTTP status from 200 to 599, got 700`},
		{"direct response body with 204", `
routes:
  - direct_response: {status: 204, body: done}
`, `t.yaml:3: routes[0].direct_response.body: a 204 response has no content (RFC 9110 §15.3.5): leave body empty or use another status`},
		{"fallback direct response body with 304", okCluster + `
routes:
  - cluster: a
    fallback:
      direct_response: {status: 304, body: same}
`, `t.yaml:9: routes[0].fallback.direct_response.body: a 304 response has no content (RFC 9110 §15.4.5): leave body empty or use another status`},
		{"timeout with direct response", `
routes:
  - direct_response: {status: 404}
    timeout: 1s
`, `t.yaml:4: routes[0].timeout: not used with direct_response`},
		{"grpc_timeout_per_try without per_try_timeout", okCluster + `
routes:
  - cluster: a
    grpc_timeout_per_try: true
`, `t.yaml:8: routes[0].grpc_timeout_per_try: requires per_try_timeout`},
		{"idle timeout on a direct response", `
routes:
  - direct_response: {status: 404}
    idle_timeout: 1m
`, `t.yaml:4: routes[0].idle_timeout: not used with direct_response`},
		{"idle timeout on a composition", okCluster + `
routes:
  - match: {path: {exact: /x}}
    composition:
      calls: [{name: c, cluster: a, path: /c}]
    idle_timeout: 1m
`, `t.yaml:10: routes[0].idle_timeout: not used with composition`},
		{"negative idle timeout", okCluster + `
routes:
  - cluster: a
    idle_timeout: -1s
`, `t.yaml:8: routes[0].idle_timeout: must not be negative, got -1s`},
		{"attempt count on a direct response", okCluster + `
routes:
  - direct_response: {status: 404}
    include_request_attempt_count: true
`, `t.yaml:8: routes[0].include_request_attempt_count: not used with direct_response`},
		{"route retry budget", okCluster + `
routes:
  - cluster: a
    retry:
      budget: {percent: 20}
`, `t.yaml:9: routes[0].retry.budget: retry budgets are per cluster: set clusters.<name>.limits.retry_budget {budget_percent, min_retry_concurrency} instead`},
		{"fallback to unknown cluster", okCluster + `
routes:
  - cluster: a
    fallback: {cluster: b}
`, `t.yaml:8: routes[0].fallback.cluster: unknown cluster "b" (did you mean "a"?)`},
		{"fallback with both", okCluster + `
  b:
    endpoints: [10.0.0.2:80]
routes:
  - cluster: a
    fallback:
      cluster: b
      direct_response: {status: 503}
`, `t.yaml:10: routes[0].fallback: set only one of direct_response and cluster`},
		{"fallback with neither", okCluster + `
routes:
  - cluster: a
    fallback: {}
`, `t.yaml:8: routes[0].fallback: set direct_response or cluster`},
		{"fallback to own cluster", okCluster + `
routes:
  - cluster: a
    fallback: {cluster: a}
`, `t.yaml:8: routes[0].fallback.cluster: "a" is the route's own cluster`},
		{"fallback direct response status", okCluster + `
routes:
  - cluster: a
    fallback: {direct_response: {status: 99}}
`, `t.yaml:8: routes[0].fallback.direct_response.status: must be an HTTP status from 200 to 599, got 99`},
		{"fallback on composition", okCluster + `
routes:
  - match: {path: {exact: /x}}
    composition:
      calls: [{name: c, cluster: a, path: /c}]
    fallback: {direct_response: {status: 200}}
`, `t.yaml:10: routes[0].fallback: not used with composition (an optional call gives a partial response instead)`},
		{"fallback on direct response", `
routes:
  - direct_response: {status: 200}
    fallback: {direct_response: {status: 200}}
`, `t.yaml:4: routes[0].fallback: not used with direct_response`},
		{"prefix rewrite without prefix match", okCluster + `
routes:
  - cluster: a
    match: {path: {regex: "^/x$"}}
    prefix_rewrite: /y
`, `t.yaml:9: routes[0].prefix_rewrite: needs match.path.prefix or match.path.exact`},
		{"duplicate route names", okCluster + `
routes:
  - {name: r, cluster: a}
  - {name: r, cluster: a}
`, `t.yaml:8: routes[1].name: duplicate route name "r" (also routes[0])`},
		{"inbound route without app", okCluster + `
routes:
  - {listener: inbound, cluster: a}
`, `t.yaml:7: routes[0].listener: inbound routes need listeners.inbound.app (the local app's host:port)`},
		{"push subscription without app", `
eventlog:
  topics: {orders: {}}
  subscriptions:
    - {topic: orders, group: billing, route: /events}
`, `t.yaml:5: eventlog.subscriptions[0].route: push subscriptions deliver to the local app: set listeners.inbound.app (its host:port)`},
		{"unknown listener", okCluster + `
routes:
  - {listener: sideways, cluster: a}
`, `t.yaml:7: routes[0].listener: unknown listener "sideways" (valid: outbound, inbound)`},
		{"listener address collision", `
listeners:
  outbound: {address: "0.0.0.0:15000"}
`, `t.yaml:3: listeners.outbound.address: "0.0.0.0:15000" collides with admin.address ("127.0.0.1:15000")`},
		{"listener address without port", `
admin: {address: localhost}
`, `t.yaml:2: admin.address: "localhost" has no port`},
		{"app loops into the sidecar", `
listeners:
  inbound: {app: "127.0.0.1:15001"}
`, `t.yaml:3: listeners.inbound.app: "127.0.0.1:15001" is the sidecar's own listeners.outbound.address: traffic would loop`},
		{"header bytes out of range", `
listeners: {max_request_header_bytes: 100}
`, `t.yaml:2: listeners.max_request_header_bytes: must be between 1024 and 8388608, got 100`},
		{"wrong scalar type", `
listeners:
  outbound: {disabled: maybe}
`, `t.yaml:3: listeners.outbound.disabled: expected true or false, got "maybe"`},
		// The YAML library reads the YAML 1.1 spellings (yes, no, on,
		// off) as booleans even quoted, while it refuses "true" quoted.
		{"quoted yes for a boolean", `
logging: {access_log: {enabled: "yes"}}
`, `t.yaml:2: logging.access_log.enabled: expected true or false, got "yes"`},
		{"quoted yes for a header's append", okCluster + `routes:
  - cluster: a
    request_headers: {add: [{name: x-a, value: b, append: "yes"}]}
`, `t.yaml:7: routes[0].request_headers.add[0].append: expected true or false, got "yes"`},
		{"quoted off for a boolean", `
listeners:
  outbound: {disabled: 'off'}
`, `t.yaml:3: listeners.outbound.disabled: expected true or false, got "off"`},
		{"integer expected", `
listeners: {max_request_header_bytes: lots}
`, `t.yaml:2: listeners.max_request_header_bytes: expected an integer, got "lots"`},
		{"negative endpoint weight", `
clusters:
  a:
    endpoints: [{address: "10.0.0.1:80", weight: -1}]
`, `t.yaml:4: clusters.a.endpoints[0].weight: expected an integer from 1 to 10000, got the integer -1`},
		{"integer beyond 64 bits", `
listeners: {max_request_header_bytes: 99999999999999999999999}
`, `t.yaml:2: listeners.max_request_header_bytes: 99999999999999999999999 is out of range (-9223372036854775808 to 9223372036854775807)`},
		{"integer beyond int64", `
listeners: {max_request_header_bytes: 9223372036854775808}
`, `t.yaml:2: listeners.max_request_header_bytes: 9223372036854775808 is out of range (-9223372036854775808 to 9223372036854775807)`},
		// The YAML library would cut a fraction off and keep the
		// integer: 2048.9 read as 2048, 1.5 as 1.
		{"fraction for an integer", `
listeners: {max_request_header_bytes: 2048.9}
`, `t.yaml:2: listeners.max_request_header_bytes: expected an integer, got the number 2048.9`},
		{"fraction for a count", okCluster + `    circuit_breaker: {window: {size: 50.5}}
`, `t.yaml:5: clusters.a.circuit_breaker.window.size: expected an integer, got the number 50.5`},
		{"fraction for an endpoint weight", `
clusters:
  a:
    endpoints: [{address: "10.0.0.1:80", weight: 2.5}]
`, `t.yaml:4: clusters.a.endpoints[0].weight: expected an integer from 1 to 10000, got the number 2.5`},
		{"fraction in a list of integers", okCluster + `routes:
  - cluster: a
    retry: {retry_on: [retriable-status-codes], retriable_status_codes: [503.5]}
`, `t.yaml:7: routes[0].retry.retriable_status_codes[0]: expected an integer, got the number 503.5`},
		{"list expected", `
routes:
  - direct_response: {status: 200}
    match: {methods: GET}
`, `t.yaml:4: routes[0].match.methods: expected a list, got "GET"`},
		{"duplicate key", okCluster + `
clusters: {}
`, `t.yaml:6: clusters: duplicate key "clusters" (first on line 2)`},
		{"yaml syntax error", "clusters:\n  a: [\n", `t.yaml:2: invalid YAML: did not find expected node content`},
		{"empty document", "# nothing\n", `t.yaml: config is empty`},
		// What a writer that truncates the file before writing it leaves
		// for a moment: refused, so that a reload does not drop every
		// route.
		{"zero bytes", "", `t.yaml: config is empty`},
		{"white space only", " \n\t\r\n\n   \t", `t.yaml: config is empty`},
		{"comments after tabs", "\t# a\n  \t# b\n", `t.yaml: config is empty`},
		{"byte order mark only", "\xef\xbb\xbf\n", `t.yaml: config is empty`},
		{"top level not a mapping", "- a\n- b\n", `t.yaml:1: expected a mapping of settings at the top level, got a list`},
		{"two documents", okCluster + "---\n" + okCluster, `t.yaml:7: a second YAML document (started by the --- on line 5): a config is one document`},
		{"a second document after an empty one", okCluster + "---\n# nothing\n---\nbogus: 1\n", `t.yaml:8: a second YAML document (started by the --- on line 7): a config is one document`},
		{"a bad key after empty documents", "# a header\n---\n---\nclusterz: {}\n", `t.yaml:4: clusterz: unknown key "clusterz" (did you mean "clusters"?)`},
		{"two documents after an empty one", "---\n" + okCluster + "---\n" + okCluster, `t.yaml:8: a second YAML document (started by the --- on line 6): a config is one document`},
		{"empty documents only", "---\n# a\n---\n", `t.yaml: config is empty`},
		{"a second document holding null", okCluster + "--- ~\n", `t.yaml:5: a second YAML document (started by the --- on line 5): a config is one document`},
		// The YAML library reports these without a line; the line (and
		// column) are found again.
		{"not UTF-8", okCluster + "    protocol: \xff\xfe\n", `t.yaml:5: invalid YAML: column 15: byte 0xff is not UTF-8 (the file must be UTF-8 encoded)`},
		{"NUL byte", okCluster + "    protocol: a\x00\n", `t.yaml:5: invalid YAML: column 16: control character U+0000 is not allowed (write it as an escape in a double-quoted string)`},
		{"unknown anchor", okCluster + "  b: *nowhere\n", `t.yaml:5: invalid YAML: unknown anchor 'nowhere' referenced`},
		{"merge of a scalar", okCluster + "  b:\n    <<: 5\n", `t.yaml:6: clusters.b["<<"]: a merge key (<<) takes a mapping, an alias of one, or a list of them; got the integer 5`},
		{"complex key in settings", "? [a]\n: 1\n", `t.yaml:1: a key must be a name, got a list`},
		{"complex key in clusters", "clusters:\n  ? {a: 1}\n  : {endpoints: [10.0.0.1:80]}\n", `t.yaml:2: clusters: a key must be a name, got a mapping`},
		{"null key at the top", "~: 1\n", `t.yaml:1: key ~ is null, not the name of a setting`},
		{"null key in a section", "listeners:\n  outbound: {null: x}\n", `t.yaml:2: listeners.outbound: key null is null, not the name of a setting`},
		{"bad log level", `
logging: {level: verbose}
`, `t.yaml:2: logging.level: unknown level "verbose" (valid: debug, info, warn, error)`},
		{"empty fault", okCluster + `
routes:
  - cluster: a
    fault: {}
`, `t.yaml:8: routes[0].fault: set delay, abort or both`},
		{"fault delay without percent", okCluster + `
routes:
  - cluster: a
    fault: {delay: {fixed: 1s}}
`, `t.yaml:8: routes[0].fault.delay.percent: must be above 0 and at most 100, got 0`},
		{"fault delay without time", okCluster + `
routes:
  - cluster: a
    fault: {delay: {percent: 10}}
`, `t.yaml:8: routes[0].fault.delay.fixed: required, above 0`},
		{"fault abort over 100 percent", okCluster + `
routes:
  - cluster: a
    fault: {abort: {http_status: 503, percent: 100.5}}
`, `t.yaml:8: routes[0].fault.abort.percent: must be above 0 and at most 100, got 100.5`},
		{"fault abort without status", okCluster + `
routes:
  - cluster: a
    fault: {abort: {percent: 5}}
`, `t.yaml:8: routes[0].fault.abort: set http_status, grpc_status or both`},
		{"fault abort with a bad status", okCluster + `
routes:
  - cluster: a
    fault: {abort: {http_status: 99, percent: 5}}
`, `t.yaml:8: routes[0].fault.abort.http_status: must be 200-599, got 99`},
		{"fault abort with a bad gRPC status", okCluster + `
routes:
  - cluster: a
    fault: {abort: {grpc_status: UNAVAILBLE, percent: 5}}
`, `t.yaml:8: routes[0].fault.abort.grpc_status: "UNAVAILBLE" is not a gRPC status name (e.g. UNAVAILABLE) or code (1-16)`},
		{"fault with negative max_active", okCluster + `
routes:
  - cluster: a
    fault: {max_active: -1, delay: {fixed: 1s, percent: 1}}
`, `t.yaml:8: routes[0].fault.max_active: must not be negative, got -1`},
		{"fault max_active without a delay", okCluster + `
routes:
  - cluster: a
    fault: {max_active: 5, abort: {http_status: 503, percent: 1}}
`, `t.yaml:8: routes[0].fault.max_active: caps the requests the delay holds, and the fault has no delay (aborts are not capped)`},
		{"rate limit without max_tokens", okCluster + `
routes:
  - cluster: a
    rate_limit: {fill_interval: 1s}
`, `t.yaml:8: routes[0].rate_limit.max_tokens: required, from 1 to 4294967295, got 0`},
		{"rate limit with negative max_tokens", okCluster + `
routes:
  - cluster: a
    rate_limit: {max_tokens: -5, fill_interval: 1s}
`, `t.yaml:8: routes[0].rate_limit.max_tokens: required, from 1 to 4294967295, got -5`},
		{"rate limit with max_tokens over uint32", okCluster + `
routes:
  - cluster: a
    rate_limit: {max_tokens: 4294967296, fill_interval: 1s}
`, `t.yaml:8: routes[0].rate_limit.max_tokens: must be from 1 to 4294967295, got 4294967296`},
		{"rate limit with negative tokens_per_fill", okCluster + `
routes:
  - cluster: a
    rate_limit: {max_tokens: 10, tokens_per_fill: -1, fill_interval: 1s}
`, `t.yaml:8: routes[0].rate_limit.tokens_per_fill: must be from 1 to 4294967295 (0 means 1), got -1`},
		{"rate limit with tokens_per_fill over uint32", okCluster + `
routes:
  - cluster: a
    rate_limit: {max_tokens: 10, tokens_per_fill: 4294967296, fill_interval: 1s}
`, `t.yaml:8: routes[0].rate_limit.tokens_per_fill: must be from 1 to 4294967295 (0 means 1), got 4294967296`},
		{"rate limit without fill_interval", okCluster + `
routes:
  - cluster: a
    rate_limit: {max_tokens: 10}
`, `t.yaml:8: routes[0].rate_limit.fill_interval: required, at least 50ms`},
		{"rate limit with a fill_interval under Envoy's 50ms", okCluster + `
routes:
  - cluster: a
    rate_limit: {max_tokens: 10, fill_interval: 49ms}
`, `t.yaml:8: routes[0].rate_limit.fill_interval: must be at least 50ms, got 49ms`},
		{"rate limit with a negative fill_interval", okCluster + `
routes:
  - cluster: a
    rate_limit: {max_tokens: 10, fill_interval: -1s}
`, `t.yaml:8: routes[0].rate_limit.fill_interval: must be at least 50ms, got -1s`},
		{"rate limit with an unknown key", okCluster + `
routes:
  - cluster: a
    rate_limit: {max_tokens: 10, fill_interval: 1s, tokens_per_fil: 2}
`, `t.yaml:8: routes[0].rate_limit.tokens_per_fil: unknown key "tokens_per_fil" (did you mean "tokens_per_fill"?)`},
		{"mirror to an unknown cluster", okCluster + `
routes:
  - cluster: a
    mirror: [{cluster: b}]
`, `t.yaml:8: routes[0].mirror[0].cluster: unknown cluster "b" (did you mean "a"?)`},
		{"mirror without a cluster", okCluster + `
routes:
  - cluster: a
    mirror: [{percent: 5}]
`, `t.yaml:8: routes[0].mirror[0].cluster: required`},
		{"mirror to a cluster twice", okCluster + `
routes:
  - cluster: a
    mirror: [{cluster: a}, {cluster: a, percent: 1}]
`, `t.yaml:8: routes[0].mirror[1].cluster: duplicate cluster "a" (also mirror[0])`},
		{"mirror of no requests", okCluster + `
routes:
  - cluster: a
    mirror: [{cluster: a, percent: 0}]
`, `t.yaml:8: routes[0].mirror[0].percent: must be above 0 and at most 100, got 0`},
		{"mirror of a share finer than a millionth", okCluster + `
routes:
  - cluster: a
    mirror: [{cluster: a, percent: 0.00001}]
`, `t.yaml:8: routes[0].mirror[0].percent: must be at least 0.0001 (one request in a million, the finest share drawn), got 1e-05`},
		{"fault delay of a share finer than a millionth", okCluster + `
routes:
  - cluster: a
    fault: {delay: {fixed: 1s, percent: 0.00004}}
`, `t.yaml:8: routes[0].fault.delay.percent: must be at least 0.0001 (one request in a million, the finest share drawn), got 4e-05`},
		{"mirror of over 100 percent", okCluster + `
routes:
  - cluster: a
    mirror:
      - cluster: a
        percent: 101
`, `t.yaml:10: routes[0].mirror[0].percent: must be above 0 and at most 100, got 101`},
		{"mirror with direct_response", okCluster + `
routes:
  - direct_response: {status: 200}
    mirror: [{cluster: a}]
`, `t.yaml:8: routes[0].mirror: not used with direct_response`},
		{"mirror with composition", okCluster + `
routes:
  - match: {path: {exact: /c}}
    composition:
      calls:
        - {name: x, cluster: a, path: /x}
    mirror: [{cluster: a}]
`, `t.yaml:11: routes[0].mirror: not used with composition`},
		{"authorization rule without a name", `
authorization:
  deny:
    - to: {paths: [/admin]}
`, `t.yaml:4: authorization.deny[0].name: required: the rule's name in metrics and the access log`},
		{"authorization rule names shared by deny and allow", `
authorization:
  deny:
    - name: r
  allow:
    - name: r
`, `t.yaml:6: authorization.allow[0].name: duplicate rule name "r" (also authorization.deny[0])`},
		{"authorization rule named none", `
authorization:
  deny: [{name: none}]
`, `t.yaml:3: authorization.deny[0].name: "none" names a request no allow rule matched in the access log: choose another name`},
		{"authorization rule name with a space", `
authorization:
  deny: [{name: "a b"}]
`, `t.yaml:3: authorization.deny[0].name: invalid rule name "a b": use 1-255 printable ASCII characters without spaces`},
		{"authorization rule on an unknown listener", `
authorization:
  allow:
    - name: r
      listeners: [inbound, app_api]
`, `t.yaml:5: authorization.allow[0].listeners[1]: unknown listener "app_api" (valid: inbound, outbound)`},
		{"authorization rule naming a listener twice", `
authorization:
  allow:
    - name: r
      listeners: [outbound, outbound]
`, `t.yaml:5: authorization.allow[0].listeners[1]: duplicate listener "outbound"`},
		{"authorization principal with a star inside", mtlsInbound + `
authorization:
  allow:
    - name: r
      from: {principals: ["spiffe://cluster.local/ns/*/sa/x"]}
`, `t.yaml:13: authorization.allow[0].from.principals[0]: a "*" may only begin or end a pattern, once ("v", "v*", "*v" or "*"): got "spiffe://cluster.local/ns/*/sa/x"`},
		{"authorization principal with stars at both ends", mtlsInbound + `
authorization:
  allow:
    - name: r
      from: {not_principals: ["*/ns/shop/*"]}
`, `t.yaml:13: authorization.allow[0].from.not_principals[0]: a "*" may only begin or end a pattern, once ("v", "v*", "*v" or "*"): got "*/ns/shop/*"`},
		{"authorization principal empty", mtlsInbound + `
authorization:
  allow:
    - name: r
      from: {principals: [""]}
`, `t.yaml:13: authorization.allow[0].from.principals[0]: must not be empty ("*" matches any value)`},
		{"authorization principal in Istio's form without the scheme", mtlsInbound + `
authorization:
  allow:
    - name: r
      from: {principals: [cluster.local/ns/shop/sa/orders]}
`, `t.yaml:13: authorization.allow[0].from.principals[0]: a principal is the client certificate's whole URI SAN, scheme included: write "spiffe://cluster.local/ns/shop/sa/orders" (Istio's principals leave "spiffe://" out), got "cluster.local/ns/shop/sa/orders"`},
		{"authorization namespace with a slash", mtlsInbound + `
authorization:
  allow:
    - name: r
      from: {namespaces: [shop/sa]}
`, `t.yaml:13: authorization.allow[0].from.namespaces[0]: a namespace is one segment of the principal's path, without "/": got "shop/sa"`},
		{"authorization principal on a listener without client certificates", `
authorization:
  allow:
    - name: r
      from: {principals: ["*"]}
`, `t.yaml:5: authorization.allow[0].from: matches on the client's principal, but listener inbound verifies no client certificate (listeners.inbound.tls.client_ca_file is not set): no request on it has one`},
		{"authorization not_principals on the outbound listener without client certificates", mtlsInbound + `
authorization:
  deny:
    - name: r
      listeners: [inbound, outbound]
      from: {not_principals: ["*"]}
`, `t.yaml:14: authorization.deny[0].from: matches on the client's principal, but listener outbound verifies no client certificate (listeners.outbound.tls.client_ca_file is not set): no request on it has one`},
		{"authorization ip block malformed", `
authorization:
  deny:
    - name: r
      from: {ip_blocks: [10.0.0.0/33]}
`, `t.yaml:5: authorization.deny[0].from.ip_blocks[0]: "10.0.0.0/33" is not an IP address or CIDR block (10.0.0.0/8, fd00::/8, 10.1.2.3)`},
		{"authorization method in lower case", `
authorization:
  deny:
    - name: r
      to: {methods: [get]}
`, `t.yaml:5: authorization.deny[0].to.methods[0]: method "get" must be upper case ("GET")`},
		{"authorization path without a slash", `
authorization:
  deny:
    - name: r
      to: {paths: [admin]}
`, `t.yaml:5: authorization.deny[0].to.paths[0]: must start with "/" (or "*" for a suffix), got "admin"`},
		{"authorization path with an escape", `
authorization:
  deny:
    - name: r
      to: {not_paths: ["/a%20b*"]}
`, `t.yaml:5: authorization.deny[0].to.not_paths[0]: must be written decoded, without "%" escapes: paths are matched decoded and sent escaped ("/a b" matches and sends /a%20b; a "%" the path decodes to is matched by path.regex)`},
		{"authorization path with a query", `
authorization:
  deny:
    - name: r
      to: {paths: ["*/x?y"]}
`, `t.yaml:5: authorization.deny[0].to.paths[0]: must not contain "?" or "#": it is matched against the path alone, without query or fragment`},
		{"authorization header matcher without a test", `
authorization:
  deny:
    - name: r
      when:
        headers: [{name: x-debug}]
`, `t.yaml:6: authorization.deny[0].when.headers[0]: set one of exact, prefix, regex or present (an empty exact or prefix is not a matcher: to match an empty value, write regex: "^$")`},
		{"authorization header matcher on a connection field", `
authorization:
  deny:
    - name: r
      when:
        headers: [{name: te, present: true}]
`, `t.yaml:6: authorization.deny[0].when.headers[0].name: header "te" describes the client's connection, not the request, and an HTTP/2 request has none but "te: trailers" (RFC 9113 §8.2.2), so a route on it would tell the protocols apart`},
		{"authorization header matcher on x-forwarded-client-cert", `
authorization:
  allow:
    - name: r
      when:
        headers: [{name: X-Forwarded-Client-Cert, regex: ".*DNS=admin.*"}]
`, `t.yaml:6: authorization.allow[0].when.headers[0].name: the rules see the client's own x-forwarded-client-cert, which any client can write and the proxy replaces before forwarding: match the verified certificate's URI SAN with from.principals`},
		{"authorization unknown key", `
authorization:
  deny:
    - name: r
      from: {principal: [x]}
`, `t.yaml:5: authorization.deny[0].from.principal: unknown key "principal" (did you mean "principals"?)`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tc.yaml), "t.yaml")
			if err == nil {
				t.Fatalf("accepted, want error %q", tc.want)
			}
			if cfg != nil {
				t.Errorf("returned a config along with the error")
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("error\n got: %s\nwant: %s", got, tc.want)
			}
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("error is %T, want a non-empty Errors", err)
			}
		})
	}
	if len(cases) < 25 {
		t.Fatalf("only %d cases", len(cases))
	}
}

// Every problem is reported in one run, in file order, and a value that
// failed to decode is not reported a second time by validation.
func TestParseReportsEveryProblemInFileOrder(t *testing.T) {
	src := `
clusters:
  payments:
    endpoints: [10.0.0.1:80, 10.0.0.2]
    connect_timeout: soon
    protocol: spdy
routes:
  - cluster: paymnts
  - cluster: payments
    retry: {attempts: -1}
logging: {format: xml}
`
	_, err := Parse([]byte(src), "outrigger.yaml")
	want := strings.Join([]string{
		`outrigger.yaml:4: clusters.payments.endpoints[1]: "10.0.0.2" has no port`,
		`outrigger.yaml:5: clusters.payments.connect_timeout: invalid duration "soon": expected a number with a unit, e.g. "250ms", "1s", "1m30s"`,
		`outrigger.yaml:6: clusters.payments.protocol: unknown protocol "spdy" (valid: http1, http2, grpc)`,
		`outrigger.yaml:8: routes[0].cluster: unknown cluster "paymnts" (did you mean "payments"?)`,
		`outrigger.yaml:10: routes[1].retry.attempts: must not be negative`,
		`outrigger.yaml:11: logging.format: unknown format "xml" (valid: json, console)`,
	}, "\n")
	if err == nil || err.Error() != want {
		t.Fatalf("got:\n%v\nwant:\n%s", err, want)
	}
}

func TestFieldErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		e    FieldError
		want string
	}{
		{FieldError{Source: "o.yaml", Line: 3, Path: "a.b", Msg: "bad"}, "o.yaml:3: a.b: bad"},
		{FieldError{Source: "o.yaml", Path: "a.b", Msg: "bad"}, "o.yaml: a.b: bad"},
		{FieldError{Path: "a.b", Msg: "bad"}, "a.b: bad"},
		{FieldError{Line: 2, Msg: "bad"}, "line 2: bad"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}

func TestParentPath(t *testing.T) {
	for in, want := range map[string]string{
		"a":                  "",
		"a.b":                "a",
		"a.b[2]":             "a.b",
		"a.b[2].c":           "a.b[2]",
		`clusters["x.y"]`:    "clusters",
		`clusters["x.y"].a`:  `clusters["x.y"]`,
		`clusters["a]b"][0]`: `clusters["a]b"]`,
	} {
		if got := parentPath(in); got != want {
			t.Errorf("parentPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// A "billion laughs" document is refused quickly rather than expanded, also
// where the config takes free-form values (a composition's body).
func TestParseRefusesAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("clusters: {c: {endpoints: [\"10.0.0.1:80\"]}}\n")
	b.WriteString("routes:\n- composition:\n    calls:\n    - name: a\n      cluster: c\n      path: /\n      body:\n")
	b.WriteString("      - &x0 [a, a, a, a, a, a, a, a, a, a]\n")
	for i := 1; i < 12; i++ {
		fmt.Fprintf(&b, "      - &x%d [", i)
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*x%d", i-1)
		}
		b.WriteString("]\n")
	}
	_, err := Parse([]byte(b.String()), "bomb.yaml")
	if err == nil {
		t.Fatal("accepted")
	}
	if !strings.Contains(err.Error(), "excessive aliasing") {
		t.Fatalf("error = %v", err)
	}
}

// The sections other packages own (breaker blocks, composition, eventlog)
// report their problems under the full key path, with lines.
func TestParseReportsNestedSectionProblems(t *testing.T) {
	src := `clusters:
  a:
    endpoints: [10.0.0.1:80]
    limits: {max_requests: -1}
    outlier_detection: {max_ejection_percent: 200}
    failure_classifier: {http_statuses: ["6xx"]}
routes:
  - match: {path: {prefix: /v}}
    composition:
      calls:
        - {name: order, cluster: nope, path: "/orders/{id}"}
eventlog:
  topics:
    orders: {partitions: -1}
`
	want := strings.Join([]string{
		`t.yaml:4: clusters.a.limits.max_requests: must be in [0,2147483647]`,
		`t.yaml:5: clusters.a.outlier_detection.max_ejection_percent: must be in [1,100]`,
		`t.yaml:6: clusters.a.failure_classifier.http_statuses[0]: "6xx" is not an HTTP status code (100-599), range (500-599), class (5xx) or none`,
		`t.yaml:9: routes[0].composition: path parameter {id} needs a named group in match.path.regex, e.g. (?P<id>[^/]+)`,
		`t.yaml:11: routes[0].composition.calls[0].cluster: unknown cluster "nope"`,
		`t.yaml:14: eventlog.topics.orders.partitions: must be >= 1`,
	}, "\n")
	_, err := Parse([]byte(src), "t.yaml")
	if err == nil || err.Error() != want {
		t.Fatalf("got:\n%v\nwant:\n%s", err, want)
	}
}

func TestNestedErrorShapes(t *testing.T) {
	var p problems
	p.nested("x", errors.Join(errors.New("a.b: bad"), fmt.Errorf("[2].c: worse")))
	p.nested("y", errors.New("no path here"))
	p.nested("z", nil)
	got := Errors(p.errs).Error()
	want := "x.a.b: bad\nx[2].c: worse\ny: no path here"
	if got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestLineOfFindsAKeyOrItsNearestAncestor(t *testing.T) {
	data := []byte("admin: {address: \"127.0.0.1:0\"}\nclusters:\n  a:\n    endpoints: [10.0.0.1:80]\n  \"b.c\":\n    endpoints: [10.0.0.1:81]\n")
	for path, want := range map[string]int{
		"clusters.a":                 3,
		"clusters.a.endpoints[0]":    4,
		"clusters.a.tls.ca_file":     3,
		`clusters["b.c"].endpoints`:  6,
		"listeners.outbound.address": 0,
	} {
		if got := LineOf(data, path); got != want {
			t.Errorf("LineOf(%s) = %d, want %d", path, got, want)
		}
	}
	if got := LineOf([]byte("a: [\n"), "a"); got != 0 {
		t.Errorf("LineOf of invalid YAML = %d, want 0", got)
	}
}

// LineOf and LineOfFile place errors in a file that may have changed since
// it was loaded; one larger than the loader reads is not read past that
// size, nor searched.
func TestLineOfRefusesWhatTheLoaderWouldNotRead(t *testing.T) {
	small := "clusters:\n  a:\n    endpoints: [10.0.0.1:80]\n"
	large := small + strings.Repeat("#", MaxFileBytes)
	path := filepath.Join(t.TempDir(), "outrigger.yaml")
	for _, tc := range []struct {
		content string
		want    int
	}{{small, 2}, {large, 0}} {
		if got := LineOf([]byte(tc.content), "clusters.a"); got != tc.want {
			t.Errorf("LineOf of %d bytes = %d, want %d", len(tc.content), got, tc.want)
		}
		if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := LineOfFile(path, "clusters.a"); got != tc.want {
			t.Errorf("LineOfFile of %d bytes = %d, want %d", len(tc.content), got, tc.want)
		}
	}
	if got := LineOfFile(filepath.Join(t.TempDir(), "missing.yaml"), "clusters.a"); got != 0 {
		t.Errorf("LineOfFile of a missing file = %d, want 0", got)
	}
}
