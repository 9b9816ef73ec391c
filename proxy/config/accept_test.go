package config

import "testing"

// Configs at the edges of what is allowed are accepted.
func TestParseAccepts(t *testing.T) {
	for name, src := range map[string]string{
		"empty mapping": "{}\n",
		"control-plane names": `
clusters:
  "outbound|8080||payments.default.svc.cluster.local": {endpoints: ["10.0.0.1:80"]}
routes:
  - name: "payments.default.svc.cluster.local:8080/default"
    cluster: "outbound|8080||payments.default.svc.cluster.local"
`,
		"ipv6 endpoints": "clusters: {a: {endpoints: [\"[::1]:8080\", \"[fd00::2]:80\"]}}\n",
		"dns endpoints":  "clusters: {a: {endpoints: [payments.default.svc.cluster.local:8080, my_host:1]}}\n",
		"port 0 listeners for tests": `
admin: {address: "127.0.0.1:0"}
listeners:
  outbound: {address: "127.0.0.1:0"}
  inbound: {address: "127.0.0.1:0", app: "127.0.0.1:8080"}
  app_api: {address: "127.0.0.1:0"}
`,
		"shutdown delay at its bound": "listeners: {shutdown_delay: 5m}\n",
		// YAML 1.1's spellings of booleans, unquoted, as Envoy reads them.
		"unquoted yes and off for booleans": "listeners: {outbound: {disabled: off}}\nlogging: {access_log: {enabled: yes}}\n",
		// Whole numbers written as floats lose nothing.
		"whole numbers for integers": "listeners: {max_request_body_bytes: 1e6, max_request_header_bytes: 2048.0}\nclusters: {a: {endpoints: [{address: \"10.0.0.1:80\", weight: 2.0}]}}\n",
		"query matchers and rewrites": `
clusters:
  a: {endpoints: ["10.0.0.1:80"]}
routes:
  - cluster: a
    match:
      path: {prefix: /service/}
      query_parameters:
        - {name: v, prefix: "2."}
        - {name: debug, present: true}
        - {name: trace, present: false}
        - {name: role, exact: admin}
        - {name: tier, prefix: free, invert: true}
        - {name: q, regex: "a b|c"}
    regex_rewrite: {pattern: '^/service/([^/]+)(/.*)$', substitution: '\2/instance/\1\\\0'}
    host_rewrite: "backend.example.com:8443"
    append_x_forwarded_host: true
  - cluster: a
    auto_host_rewrite: true
    append_x_forwarded_host: true
    regex_rewrite: {pattern: "-", substitution: ""}
  - cluster: a
    host_rewrite: "[::1]:8080"
`,
		"rate limits at Envoy's bounds": `
clusters:
  a: {endpoints: ["10.0.0.1:80"]}
routes:
  - cluster: a
    rate_limit: {max_tokens: 1, fill_interval: 50ms}
  - cluster: a
    rate_limit: {max_tokens: 4294967295, tokens_per_fill: 4294967295, fill_interval: 1h}
  - direct_response: {status: 200}
    rate_limit: {max_tokens: 5, tokens_per_fill: 0, fill_interval: 1s}
`,
		"maglev with every hash policy": `
clusters:
  a: {endpoints: [{address: "10.0.0.1:80", weight: 3}, "10.0.0.2:80"], lb_policy: maglev}
  b: {endpoints: ["10.0.0.3:80"], lb_policy: maglev}
routes:
  - cluster: a
    hash_policy:
      - {header: x-user, terminal: true}
      - {header: ":authority"}
      - {cookie: session}
      - {query_parameter: user}
      - {source_ip: true}
  - weighted_clusters: [{cluster: a, weight: 1}, {cluster: b, weight: 1}]
    hash_policy: [{cookie: session}]
`,
		"every action on headers with underscores": `
listeners:
  outbound: {headers_with_underscores: reject}
  inbound: {app: "127.0.0.1:8080", headers_with_underscores: drop}
`,
		"connection caps per listener": `
listeners:
  outbound: {max_connections: 2}
  inbound: {app: "127.0.0.1:8080", max_connections: 100000}
`,
		"authorization rules of every form": `
listeners:
  inbound:
    tls: {enabled: true, cert_file: /c.crt, key_file: /c.key, client_ca_file: /ca.crt}
authorization:
  deny:
    - name: no-identity
      from: {not_principals: ["*"]}
    - name: nothing-at-all
      listeners: [outbound]
      to: {paths: ["*/admin", "/debug/*"], not_paths: ["/debug/ok"]}
  allow:
    - name: orders-read
      listeners: [inbound]
      from:
        principals: ["spiffe://cluster.local/ns/shop/sa/orders", "spiffe://cluster.local/ns/ops/*", "*/sa/probe", "*", "urn:x"]
        namespaces: [shop, "sh*", "*op", "*"]
        ip_blocks: [10.0.0.0/8, 10.1.2.3, "fd00::/8", "::1"]
      to: {methods: [GET, HEAD], paths: [/items, "/items/*", "*"]}
      when:
        headers: [{name: x-tenant, exact: a}, {name: ":method", prefix: G, invert: true}]
    - name: any
`,
		"headers with underscores allowed": "listeners: {outbound: {headers_with_underscores: allow}}\n",
		"all-interfaces listener":          "listeners: {outbound: {address: \":15101\"}}\n",
		"authority patterns": `
clusters: {a: {endpoints: ["10.0.0.1:80"]}}
routes:
  - cluster: a
    match:
      authority: ["*", "*:8080", "api", "api:8080", "*.example.com", "*.example.com:443", "10.0.0.1", "10.0.0.1:80", "[::1]:8080", "[::1]", "API.Example.COM"]
`,
		"pseudo-header match": `
clusters: {a: {endpoints: ["10.0.0.1:80"]}}
routes:
  - cluster: a
    match:
      headers:
        - {name: ":method", exact: GET}
        - {name: x-canary, regex: "^(1|true)$", invert: true}
`,
		"upgrade header match": `
clusters: {a: {endpoints: ["10.0.0.1:80"]}}
routes:
  - cluster: a
    match:
      headers: [{name: upgrade, exact: websocket}]
`,
		"weighted with a zero weight": `
clusters: {a: {endpoints: ["10.0.0.1:80"]}, b: {endpoints: ["10.0.0.2:80"]}}
routes:
  - weighted_clusters: [{cluster: a, weight: 1}, {cluster: b, weight: 0}]
`,
		"retry block empty": `
clusters: {a: {endpoints: ["10.0.0.1:80"]}}
routes: [{cluster: a, retry: {}}]
`,
		"retriable status codes": `
clusters: {a: {endpoints: ["10.0.0.1:80"], failure_classifier: {http_statuses: ["5xx", "409", "429"]}}}
routes:
  - cluster: a
    retry: {retry_on: [retriable-status-codes, 5xx], retriable_status_codes: [409, 429]}
`,
		"retriable status codes the classifier accepts": `
clusters: {a: {endpoints: ["10.0.0.1:80"]}, b: {endpoints: ["10.0.0.2:80"], failure_classifier: {http_statuses: ["none"]}}}
routes:
  - weighted_clusters: [{cluster: a, weight: 1}, {cluster: b, weight: 1}]
    retry: {retry_on: [retriable-status-codes], retriable_status_codes: [409, 400, 599]}
`,
		"header add list with append": `
clusters: {a: {endpoints: ["10.0.0.1:80"]}}
routes:
  - cluster: a
    request_headers:
      add: [{name: x-a, value: "1", append: true}, {name: x-a, value: "2", append: true}]
`,
		// A stream's trailing "---" starts a document with nothing in it.
		"an empty document after the config": "clusters: {a: {endpoints: [\"10.0.0.1:80\"]}}\n---\n",
		"empty documents with comments":      "---\nclusters: {a: {endpoints: [\"10.0.0.1:80\"]}}\n---\n# nothing more\n---\n...\n",
		"empty documents before the config":  "# a header\n---\n# more\n---\nclusters: {a: {endpoints: [\"10.0.0.1:80\"]}}\n",
		"timeout disabled": `
clusters: {a: {endpoints: ["10.0.0.1:80"]}}
routes: [{cluster: a, timeout_disabled: true, per_try_timeout: 1h}]
`,
		"merge keys": `
clusters:
  a: &defaults {endpoints: ["10.0.0.1:80"], protocol: grpc, connect_timeout: 2s}
  b:
    <<: *defaults
    endpoints: ["10.0.0.2:80"]
routes: [{cluster: b}]
`,
		"anchors and aliases": `
clusters:
  a: {endpoints: &eps ["10.0.0.1:80", "10.0.0.2:80"]}
  b: {endpoints: *eps}
routes: [{cluster: a}]
`,
		// time.ParseDuration takes "0" without a unit, and the docs give
		// duration defaults as 0; it was refused as "a unit is required".
		"bare zero durations": `
clusters:
  a:
    endpoints: ["10.0.0.1:80"]
    connect_timeout: 0
    health_check: {tcp: {}, jitter: -0, interval: +0}
routes: [{cluster: a, timeout: 0}]
`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse([]byte(src), "t.yaml"); err != nil {
				t.Fatalf("rejected:\n%v", err)
			}
		})
	}
}

// A route's mirror may copy to its own cluster (as Envoy allows), to a
// weighted route's clusters, and to several clusters; a mirror without
// percent copies every request.
func TestMirrorAccepted(t *testing.T) {
	cfg, err := Parse([]byte(`
clusters: {a: {endpoints: ["10.0.0.1:80"]}, b: {endpoints: ["10.0.0.2:80"]}}
routes:
  - cluster: a
    mirror: [{cluster: a}, {cluster: b, percent: 0.5}]
  - weighted_clusters: [{cluster: a, weight: 1}, {cluster: b, weight: 1}]
    mirror: [{cluster: b, percent: 100}]
`), "t.yaml")
	if err != nil {
		t.Fatalf("rejected:\n%v", err)
	}
	m := cfg.Routes[0].Mirror
	if len(m) != 2 || m[0].MirrorPercent() != 100 || m[1].MirrorPercent() != 0.5 {
		t.Fatalf("mirror = %+v", m)
	}
}

// YAML merge keys share settings between clusters; the merged values apply
// and the explicit ones win.
func TestMergeKeysApply(t *testing.T) {
	cfg, err := Parse([]byte(`
clusters:
  a: &defaults {endpoints: ["10.0.0.1:80"], protocol: grpc, connect_timeout: 2s}
  b:
    <<: *defaults
    endpoints: ["10.0.0.2:80"]
`), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b := cfg.Clusters["b"]
	if b.Protocol != ProtocolGRPC || b.ConnectTimeout.String() != "2s" || len(b.Endpoints) != 1 || b.Endpoints[0].Address != "10.0.0.2:80" {
		t.Fatalf("merged cluster = %+v", b)
	}
}

// Empty documents before the config are passed over by both passes: the
// config read is the one after them, not the first (empty) document.
func TestConfigAfterEmptyDocumentsIsRead(t *testing.T) {
	cfg, err := Parse([]byte("# generated\n---\n---\n# c\n---\nclusters: {a: {endpoints: [\"10.0.0.9:81\"]}}\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if a, ok := cfg.Clusters["a"]; !ok || len(a.Endpoints) != 1 || a.Endpoints[0].Address != "10.0.0.9:81" {
		t.Fatalf("clusters = %+v", cfg.Clusters)
	}
}

// A zone written as a number is the same zone in node.zone and in an
// endpoint: both read it as written, so the endpoint is local.
func TestZoneWrittenAsANumberReadsTheSameInNodeAndEndpoint(t *testing.T) {
	c, err := Parse([]byte(`
node: {zone: 1}
clusters:
  a:
    zone_aware: {enabled: true}
    endpoints: [{address: 10.0.0.1:80, zone: 1}, {address: 10.0.0.2:80, zone: 02}]
`), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	eps := c.Clusters["a"].Endpoints
	if c.Node.Zone != "1" || eps[0].Zone != c.Node.Zone || eps[1].Zone != "02" {
		t.Fatalf("node.zone %q, endpoint zones %q and %q, want 1, 1 and 02", c.Node.Zone, eps[0].Zone, eps[1].Zone)
	}
}

// An authorization rule without listeners applies to the inbound one,
// which WithDefaults writes in; one that names its listeners keeps them.
func TestAuthorizationRuleListenersDefaultToInbound(t *testing.T) {
	cfg, err := Parse([]byte(`
authorization:
  deny: [{name: a}, {name: b, listeners: [outbound, inbound]}]
`), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.Authorization.Deny
	if len(d[0].Listeners) != 1 || d[0].Listeners[0] != Inbound || len(d[1].Listeners) != 2 || d[1].Listeners[0] != Outbound {
		t.Fatalf("listeners %v and %v, want [inbound] and [outbound inbound]", d[0].Listeners, d[1].Listeners)
	}
}
