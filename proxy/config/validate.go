package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"golang.org/x/net/http/httpguts"

	"github.com/outrigger-mesh/outrigger/breaker"
	"github.com/outrigger-mesh/outrigger/composer"
	"github.com/outrigger-mesh/outrigger/proxy/health"
	"github.com/outrigger-mesh/outrigger/proxy/internal/wire"
)

// Limits enforced by validation.
const (
	// MaxRetryAttempts is the most retries a route may ask for.
	MaxRetryAttempts = 10
	// MaxEndpointWeight is the largest endpoint or weighted-cluster weight.
	MaxEndpointWeight = 10000
	// MaxShutdownDelay is the longest listeners.shutdown_delay. Clients
	// see an endpoint go within seconds (kube-proxy, sidecars) to a minute
	// or two (cloud load balancers' deregistration); a longer delay is
	// more likely a mistyped unit ("5m" for "5s") than a need, and it
	// holds every pod's termination that long.
	MaxShutdownDelay = 5 * time.Minute
	maxNameLen       = 255
	maxDirectBody    = 1 << 20
)

// Validate reports every problem in c as [Errors] (nil when there is none).
// Each problem names its key path; Line and Source are left for the loader
// to fill in. Validate never mutates c and accepts both a config as written
// and the result of [Config.WithDefaults].
//
// It runs in two steps: each section on its own, then the cross-references
// (routes to clusters, inbound routes to the inbound listener, listener
// addresses against each other).
func (c *Config) Validate() error {
	var p problems
	c.validateSections(&p)
	c.validateReferences(&p)
	return p.err()
}

func (c *Config) validateSections(p *problems) {
	checkZone(p, "node.zone", c.Node.Zone)
	checkListenAddr(p, "admin.address", c.Admin.Address)
	c.Listeners.validate(p, "listeners")
	for _, name := range sortedKeys(c.Clusters) {
		cl := c.Clusters[name]
		path := keyPath("clusters", name)
		if !validClusterName(name) {
			p.addf(path, "invalid cluster name %q: use 1-%d letters, digits and any of _ - . | :", name, maxNameLen)
		}
		cl.validate(p, path)
	}
	for i := range c.Routes {
		c.Routes[i].validate(p, indexPath("routes", i))
	}
	c.Logging.validate(p, "logging")
	p.nested("eventlog", c.EventLog.Validate())
	c.Authorization.validate(p, "authorization")
}

func (l *Listeners) validate(p *problems, path string) {
	checkListenAddr(p, path+".outbound.address", l.Outbound.Address)
	checkListenAddr(p, path+".inbound.address", l.Inbound.Address)
	checkListenAddr(p, path+".app_api.address", l.AppAPI.Address)
	if l.Inbound.App != "" {
		if msg := checkHostPort(l.Inbound.App, false, false); msg != "" {
			p.add(path+".inbound.app", msg)
		}
	}
	checkProtocol(p, path+".inbound.app_protocol", l.Inbound.AppProtocol)
	checkHeadersWithUnderscores(p, path+".outbound.headers_with_underscores", l.Outbound.HeadersWithUnderscores)
	switch l.Outbound.EnvoyRequestHeaders {
	case "", EnvoyRequestHeadersHonor, EnvoyRequestHeadersIgnore:
	default:
		p.addf(path+".outbound.envoy_request_headers", "unknown value %q (valid: honor, ignore)", l.Outbound.EnvoyRequestHeaders)
	}
	checkHeadersWithUnderscores(p, path+".inbound.headers_with_underscores", l.Inbound.HeadersWithUnderscores)
	checkMaxConnections(p, path+".outbound.max_connections", l.Outbound.MaxConnections)
	checkMaxConnections(p, path+".inbound.max_connections", l.Inbound.MaxConnections)
	l.Outbound.TLS.validate(p, path+".outbound.tls")
	l.Inbound.TLS.validate(p, path+".inbound.tls")
	switch n := l.MaxRequestHeaderBytes; {
	case n < 0:
		p.add(path+".max_request_header_bytes", "must not be negative")
	case n > 0 && (n < 1024 || n > 8<<20):
		p.addf(path+".max_request_header_bytes", "must be between 1024 and %d, got %d", 8<<20, n)
	}
	if l.MaxRequestBodyBytes < 0 {
		p.add(path+".max_request_body_bytes", "must not be negative (0 means unlimited)")
	}
	checkDuration(p, path+".read_header_timeout", l.ReadHeaderTimeout)
	checkDuration(p, path+".idle_timeout", l.IdleTimeout)
	checkDuration(p, path+".drain_timeout", l.DrainTimeout)
	switch d := l.ShutdownDelay; {
	case d < 0:
		p.addf(path+".shutdown_delay", "must not be negative, got %s", d)
	case d > MaxShutdownDelay:
		p.addf(path+".shutdown_delay", "must be at most %s, got %s", MaxShutdownDelay, d)
	}
	switch l.PathNormalization {
	case "", PathNormalizationBase, PathNormalizationMergeSlashes, PathNormalizationNone:
	default:
		p.addf(path+".path_normalization", "unknown normalization %q (valid: base, merge_slashes, none)", l.PathNormalization)
	}
	switch l.PathWithEscapedSlashes {
	case "", PathWithEscapedSlashesKeep, PathWithEscapedSlashesReject,
		PathWithEscapedSlashesUnescapeAndForward, PathWithEscapedSlashesUnescapeAndRedirect:
	default:
		p.addf(path+".path_with_escaped_slashes", "unknown action %q (valid: keep, reject, unescape_and_forward, unescape_and_redirect)", l.PathWithEscapedSlashes)
	}
}

func checkHeadersWithUnderscores(p *problems, path string, a HeadersWithUnderscores) {
	switch a {
	case "", HeadersWithUnderscoresAllow, HeadersWithUnderscoresDrop, HeadersWithUnderscoresReject:
	default:
		p.addf(path, "unknown action %q (valid: allow, drop, reject)", a)
	}
}

func checkMaxConnections(p *problems, path string, n int) {
	if n < 0 {
		p.addf(path, "must not be negative, got %d (0 means a quarter of the open-file limit)", n)
	}
}

func (cl *Cluster) validate(p *problems, path string) {
	if len(cl.Endpoints) == 0 {
		p.add(path+".endpoints", "at least one endpoint is required")
	}
	seen := map[string]int{}
	for i, ep := range cl.Endpoints {
		ip := indexPath(path+".endpoints", i)
		if ep.Address == "" {
			p.add(ip, "address is required")
			continue
		}
		if msg := checkHostPort(ep.Address, true, false); msg != "" {
			p.add(ip, msg)
			continue
		}
		if j, dup := seen[ep.Address]; dup {
			p.addf(ip, "duplicate endpoint %q (also endpoints[%d])", ep.Address, j)
		} else {
			seen[ep.Address] = i
		}
		if ep.Weight > MaxEndpointWeight {
			p.addf(ip+".weight", "must be at most %d, got %d", MaxEndpointWeight, ep.Weight)
		}
		checkZone(p, ip+".zone", ep.Zone)
	}
	checkProtocol(p, path+".protocol", cl.Protocol)
	switch cl.LBPolicy {
	case "", LBRoundRobin, LBLeastRequest, LBRandom, LBMaglev:
	default:
		p.addf(path+".lb_policy", "unknown load-balancing policy %q (valid: round_robin, least_request, random, maglev)", cl.LBPolicy)
	}
	if cl.LBPolicy == LBMaglev && cl.ZoneAware.Enabled {
		// The level of each pick is drawn by the levels' health, not by
		// the key: a key would go to its endpoint in one level or the
		// other from one request to the next.
		p.add(path+".zone_aware.enabled", "not supported with lb_policy maglev: the zone level is drawn per request, so keys would not stay on their endpoint")
	}
	checkDuration(p, path+".connect_timeout", cl.ConnectTimeout)
	cl.TLS.validate(p, path+".tls")
	if cl.Pool.MaxIdlePerEndpoint < 0 {
		p.add(path+".pool.max_idle_per_endpoint", "must not be negative")
	}
	checkDuration(p, path+".pool.idle_timeout", cl.Pool.IdleTimeout)
	if cl.Pool.MaxRequestsPerConnection < 0 {
		p.add(path+".pool.max_requests_per_connection", "must not be negative (0 means unlimited)")
	}
	checkDuration(p, path+".pool.max_connection_duration", cl.Pool.MaxConnectionDuration)
	if cl.Pool.MaxConnectionsPerEndpoint < 0 {
		p.add(path+".pool.max_connections_per_endpoint", "must not be negative (0 means unlimited)")
	}
	p.nested(path+".circuit_breaker", cl.CircuitBreaker.Validate())
	p.nested(path+".limits", cl.Limits.Validate())
	p.nested(path+".outlier_detection", cl.OutlierDetection.Validate())
	p.nested(path+".failure_classifier", cl.FailureClassifier.Validate())
	if cl.HealthCheck != nil {
		cl.HealthCheck.validate(p, path+".health_check", cl.Protocol)
	}
	if f := cl.ZoneAware.OverprovisioningFactor; f != 0 && (f < MinOverprovisioningFactor || f > MaxOverprovisioningFactor) {
		p.addf(path+".zone_aware.overprovisioning_factor", "must be from %d to %d percent (0 means %d), got %d",
			MinOverprovisioningFactor, MaxOverprovisioningFactor, DefaultOverprovisioningFactor, f)
	}
}

// The bounds of zone_aware.overprovisioning_factor. Below 100 the local
// zone would lose traffic while all its endpoints are healthy; above
// 1000 one healthy endpoint in ten would hold a zone's whole load.
const (
	MinOverprovisioningFactor = 100
	MaxOverprovisioningFactor = 1000
)

// checkZone checks a zone name (node.zone, an endpoint's zone): at most
// 255 bytes, with no white space or control characters, so that a zone
// compares as written and shows unambiguously in /clusters. Empty means
// unknown.
func checkZone(p *problems, path, zone string) {
	switch {
	case len(zone) > maxNameLen:
		p.addf(path, "must be at most %d bytes, got %d", maxNameLen, len(zone))
	case strings.ContainsFunc(zone, func(r rune) bool { return r <= ' ' || r == 0x7f || unicode.IsSpace(r) || unicode.IsControl(r) }):
		p.addf(path, "must hold no white space or control characters, got %q", zone)
	}
}

// MinHealthCheckInterval is the shortest health_check interval accepted.
const MinHealthCheckInterval = 10 * time.Millisecond

// MaxHealthCheckDuration bounds a health_check's durations.
const MaxHealthCheckDuration = 24 * time.Hour

// MaxHealthCheckThreshold bounds healthy_threshold and unhealthy_threshold.
const MaxHealthCheckThreshold = 1000

func (h *HealthCheck) validate(p *problems, path string, proto Protocol) {
	for _, d := range []struct {
		key      string
		v        time.Duration
		interval bool
	}{{"interval", h.Interval, true}, {"unhealthy_interval", h.UnhealthyInterval, true}, {"timeout", h.Timeout, false}, {"jitter", h.Jitter, false}} {
		switch {
		case d.v < 0:
			p.addf(path+"."+d.key, "must not be negative, got %s", d.v)
		case d.v > MaxHealthCheckDuration:
			p.addf(path+"."+d.key, "must be at most %s, got %s", MaxHealthCheckDuration, d.v)
		case d.interval && d.v > 0 && d.v < MinHealthCheckInterval:
			p.addf(path+"."+d.key, "must be at least %s, got %s", MinHealthCheckInterval, d.v)
		}
	}
	for _, t := range []struct {
		key string
		v   int
	}{{"healthy_threshold", h.HealthyThreshold}, {"unhealthy_threshold", h.UnhealthyThreshold}} {
		if t.v < 0 || t.v > MaxHealthCheckThreshold {
			p.addf(path+"."+t.key, "must be from 1 to %d (0 means the default), got %d", MaxHealthCheckThreshold, t.v)
		}
	}
	if h.Port < 0 || h.Port > 65535 {
		p.addf(path+".port", "must be a port from 1 to 65535 (0 means each endpoint's own port), got %d", h.Port)
	}
	kinds := present(field{"http", h.HTTP != nil}, field{"grpc", h.GRPC != nil}, field{"tcp", h.TCP != nil})
	switch len(kinds) {
	case 0:
		p.add(path, "one of http, grpc or tcp is required (tcp: {} for a connect check)")
	case 1:
	default:
		p.addf(path, "only one of http, grpc or tcp may be set, got %s", strings.Join(kinds, " and "))
	}
	if h.GRPC != nil && (proto == "" || proto == ProtocolHTTP1) {
		p.add(path+".grpc", "a gRPC health check needs the cluster's protocol to be http2 or grpc, not http1")
	}
	if a := h.GRPC; a != nil && a.Authority != "" && (!httpguts.ValidHostHeader(a.Authority) || strings.ContainsAny(a.Authority, "/?#@")) {
		p.addf(path+".grpc.authority", "must be a host or host:port, got %q", a.Authority)
	}
	if hc := h.HTTP; hc != nil {
		if hc.Path != "" {
			if !strings.HasPrefix(hc.Path, "/") || strings.ContainsFunc(hc.Path, badURIRune) || strings.Contains(hc.Path, "#") {
				p.addf(path+".http.path", "must start with / and hold no spaces, control characters or #, got %q", hc.Path)
			} else if _, err := url.ParseRequestURI(hc.Path); err != nil {
				p.addf(path+".http.path", "not a valid request path: %v", errors.Unwrap(err))
			}
		}
		if hc.Host != "" && (!httpguts.ValidHostHeader(hc.Host) || strings.ContainsAny(hc.Host, "/?#@")) {
			p.addf(path+".http.host", "must be a host or host:port, got %q", hc.Host)
		}
		for i, r := range hc.ExpectedStatuses {
			if r.Lo < 100 || r.Hi > 599 || r.Lo > r.Hi {
				p.addf(indexPath(path+".http.expected_statuses", i), "must be a status or a rising range within 100-599, got %s", r)
			}
		}
		for i, r := range hc.RetriableStatuses {
			if r.Lo < 100 || r.Hi > 599 || r.Lo > r.Hi {
				p.addf(indexPath(path+".http.retriable_statuses", i), "must be a status or a rising range within 100-599, got %s", r)
			}
		}
		for i, hv := range hc.RequestHeaders {
			ip := indexPath(path+".http.request_headers", i)
			if msg := health.HeaderProblem(hv.Name); msg != "" {
				p.add(ip+".name", msg)
			}
			if msg := headerValueProblem(hv.Value); msg != "" {
				p.add(ip+".value", msg)
			}
			if hv.Append && strings.EqualFold(hv.Name, "user-agent") {
				// net/http sends the first User-Agent and drops the rest.
				p.add(ip+".append", "a request has one User-Agent: set it without append to replace outrigger-health-check")
			}
		}
	}
}

// field is a key and whether it is set.
type field struct {
	name string
	set  bool
}

// present returns the names of the fields that are set, in order.
func present(fields ...field) []string {
	var out []string
	for _, f := range fields {
		if f.set {
			out = append(out, f.name)
		}
	}
	return out
}

// badURIRune reports runes that may not appear in a request target or a
// Host header as written.
func badURIRune(r rune) bool { return r <= ' ' || r == 0x7f || r > 0x7e }

func (t *TLS) validate(p *problems, path string) {
	if !t.Enabled {
		set := present(
			field{"server_name", t.ServerName != ""},
			field{"ca_file", t.CAFile != ""},
			field{"cert_file", t.CertFile != ""},
			field{"key_file", t.KeyFile != ""},
			field{"insecure_skip_verify", t.InsecureSkipVerify},
			field{"min_version", t.MinVersion != ""},
			field{"max_version", t.MaxVersion != ""},
			field{"disable_session_resumption", t.DisableSessionResumption},
		)
		if len(set) > 0 {
			p.addf(path, "%s set but enabled is false", strings.Join(set, ", "))
		}
		return
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		p.add(path, "cert_file and key_file must be set together")
	}
	checkTLSVersions(p, path, t.MinVersion, t.MaxVersion)
}

// checkTLSVersions checks a tls block's min_version and max_version.
func checkTLSVersions(p *problems, path, minV, maxV string) {
	lo, okLo := TLSVersion(minV)
	if !okLo {
		p.addf(path+".min_version", `must be "1.2" or "1.3", got %q`, minV)
	}
	hi, okHi := TLSVersion(maxV)
	if !okHi {
		p.addf(path+".max_version", `must be "1.2" or "1.3", got %q`, maxV)
	}
	if okLo && okHi && lo != 0 && hi != 0 && lo > hi {
		p.addf(path, "min_version %s is above max_version %s", minV, maxV)
	}
}

func (t *ListenerTLS) validate(p *problems, path string) {
	if !t.Enabled {
		set := present(
			field{"cert_file", t.CertFile != ""},
			field{"key_file", t.KeyFile != ""},
			field{"client_ca_file", t.ClientCAFile != ""},
			field{"require_client_cert", t.RequireClientCert},
			field{"min_version", t.MinVersion != ""},
			field{"max_version", t.MaxVersion != ""},
			field{"handshake_timeout", t.HandshakeTimeout != 0},
		)
		if len(set) > 0 {
			p.addf(path, "%s set but enabled is false", strings.Join(set, ", "))
		}
		return
	}
	if t.CertFile == "" || t.KeyFile == "" {
		p.add(path, "cert_file and key_file are required")
	}
	if t.RequireClientCert && t.ClientCAFile == "" {
		p.add(path+".require_client_cert", "needs client_ca_file, the CAs to verify client certificates with")
	}
	checkTLSVersions(p, path, t.MinVersion, t.MaxVersion)
	checkDuration(p, path+".handshake_timeout", t.HandshakeTimeout)
}

func (r *Route) validate(p *problems, path string) {
	if r.Name != "" && !validRouteName(r.Name) {
		p.addf(path+".name", "invalid route name %q: use 1-%d printable ASCII characters without spaces", r.Name, maxNameLen)
	}
	switch r.Listener {
	case "", Outbound, Inbound:
	default:
		p.addf(path+".listener", "unknown listener %q (valid: outbound, inbound)", r.Listener)
	}
	r.Match.validate(p, path+".match")

	actions := present(
		field{"cluster", r.Cluster != ""},
		field{"weighted_clusters", r.WeightedClusters != nil},
		field{"composition", r.Composition != nil},
		field{"direct_response", r.DirectResponse != nil},
	)
	switch len(actions) {
	case 0:
		p.add(path, "no action: set one of cluster, weighted_clusters, composition or direct_response")
	case 1:
	default:
		p.addf(path, "set only one action, got %s", strings.Join(actions, " and "))
	}

	if r.WeightedClusters != nil {
		wp := path + ".weighted_clusters"
		if len(r.WeightedClusters) == 0 {
			p.add(wp, "at least one cluster is required")
		}
		var sum uint64
		seen := map[string]int{}
		for i, wc := range r.WeightedClusters {
			ip := indexPath(wp, i)
			if wc.Cluster == "" {
				p.add(ip+".cluster", "required")
			} else if j, dup := seen[wc.Cluster]; dup {
				p.addf(ip+".cluster", "duplicate cluster %q (also weighted_clusters[%d])", wc.Cluster, j)
			} else {
				seen[wc.Cluster] = i
			}
			if wc.Weight > MaxEndpointWeight {
				p.addf(ip+".weight", "must be at most %d, got %d", MaxEndpointWeight, wc.Weight)
			}
			sum += uint64(wc.Weight)
		}
		if len(r.WeightedClusters) > 0 && sum == 0 {
			p.add(wp, "weights sum to 0: at least one weight must be positive")
		}
	}

	r.validateHashPolicy(p, path+".hash_policy")

	if fb := r.Fallback; fb != nil {
		fp := path + ".fallback"
		switch {
		case r.Composition != nil:
			p.add(fp, "not used with composition (an optional call gives a partial response instead)")
		case r.DirectResponse != nil:
			p.add(fp, "not used with direct_response")
		}
		switch {
		case fb.DirectResponse != nil && fb.Cluster != "":
			p.add(fp, "set only one of direct_response and cluster")
		case fb.DirectResponse == nil && fb.Cluster == "":
			p.add(fp, "set direct_response or cluster")
		case fb.DirectResponse != nil:
			fb.DirectResponse.validate(p, fp+".direct_response")
		case fb.Cluster == r.Cluster:
			p.addf(fp+".cluster", "%q is the route's own cluster", fb.Cluster)
		default:
			for _, wc := range r.WeightedClusters {
				if wc.Cluster == fb.Cluster {
					p.addf(fp+".cluster", "%q is one of the route's weighted_clusters", fb.Cluster)
				}
			}
		}
	}

	if d := r.DirectResponse; d != nil {
		d.validate(p, path+".direct_response")
		// Settings that only mean something for a forwarded request.
		for _, f := range []struct {
			key string
			set bool
		}{
			{"timeout", r.Timeout != 0},
			{"timeout_disabled", r.TimeoutDisabled},
			{"idle_timeout", r.IdleTimeout != 0},
			{"per_try_timeout", r.PerTryTimeout != 0},
			{"grpc_timeout_per_try", r.GRPCTimeoutPerTry},
			{"retry", r.Retry != nil},
			{"include_request_attempt_count", r.IncludeRequestAttemptCount},
			{"prefix_rewrite", r.PrefixRewrite != ""},
			{"regex_rewrite", r.RegexRewrite != nil},
			{"host_rewrite", r.HostRewrite != ""},
			{"auto_host_rewrite", r.AutoHostRewrite},
			{"append_x_forwarded_host", r.AppendXForwardedHost},
			{"request_headers", len(r.RequestHeaders.Add) > 0 || len(r.RequestHeaders.Remove) > 0},
			{"mirror", len(r.Mirror) > 0},
		} {
			if f.set && len(actions) == 1 {
				p.add(path+"."+f.key, "not used with direct_response")
			}
		}
	}

	if r.Composition != nil && len(actions) == 1 {
		// The composition's calls are built from its templates: the
		// route's path and request edits have nothing to apply to. (Its
		// per_try_timeout and retry apply to each call.)
		for _, f := range []struct {
			key string
			set bool
		}{
			{"prefix_rewrite", r.PrefixRewrite != ""},
			{"regex_rewrite", r.RegexRewrite != nil},
			// Each call names its own cluster, path and headers.
			{"host_rewrite", r.HostRewrite != ""},
			{"auto_host_rewrite", r.AutoHostRewrite},
			{"append_x_forwarded_host", r.AppendXForwardedHost},
			{"request_headers", len(r.RequestHeaders.Add) > 0 || len(r.RequestHeaders.Remove) > 0},
			// The calls are bounded by the route timeout and the
			// composition's deadline; none streams to the client.
			{"idle_timeout", r.IdleTimeout != 0},
			// A copy of a composite request would be composed again,
			// its calls made twice; mirror a call's own route instead.
			{"mirror", len(r.Mirror) > 0},
		} {
			if f.set {
				p.add(path+"."+f.key, "not used with composition")
			}
		}
	}

	checkDuration(p, path+".timeout", r.Timeout)
	checkDuration(p, path+".per_try_timeout", r.PerTryTimeout)
	checkDuration(p, path+".idle_timeout", r.IdleTimeout)
	if r.GRPCTimeoutPerTry && r.PerTryTimeout == 0 && r.DirectResponse == nil {
		p.add(path+".grpc_timeout_per_try", "requires per_try_timeout")
	}
	if r.TimeoutDisabled && r.Timeout != 0 {
		p.add(path+".timeout", "must not be set when timeout_disabled is true")
	}
	if r.PerTryTimeout > 0 && !r.TimeoutDisabled {
		if limit := orDuration(r.Timeout, DefaultRouteTimeout); r.PerTryTimeout > limit {
			p.addf(path+".per_try_timeout", "%s exceeds the route timeout (%s)", r.PerTryTimeout, limit)
		}
	}
	if r.Retry != nil {
		r.Retry.validate(p, path+".retry")
	}
	if r.PrefixRewrite != "" {
		if !strings.HasPrefix(r.PrefixRewrite, "/") {
			p.addf(path+".prefix_rewrite", "must start with \"/\", got %q", r.PrefixRewrite)
		} else if r.Match.Path.Prefix == "" && r.Match.Path.Exact == "" {
			p.add(path+".prefix_rewrite", "needs match.path.prefix or match.path.exact")
		} else {
			checkDecodedPath(p, path+".prefix_rewrite", r.PrefixRewrite, true)
		}
	}
	if rr := r.RegexRewrite; rr != nil {
		if r.PrefixRewrite != "" {
			p.add(path+".regex_rewrite", "set only one of prefix_rewrite and regex_rewrite")
		}
		rr.validate(p, path+".regex_rewrite")
	}
	if h := r.HostRewrite; h != "" {
		switch {
		case r.AutoHostRewrite:
			p.add(path+".host_rewrite", "set only one of host_rewrite and auto_host_rewrite")
		case !httpguts.ValidHostHeader(h) || strings.ContainsAny(h, "/?#@") || strings.ContainsFunc(h, badURIRune):
			p.addf(path+".host_rewrite", "must be a host or host:port, got %q", h)
		}
	}
	if r.AppendXForwardedHost && r.HostRewrite == "" && !r.AutoHostRewrite && r.DirectResponse == nil && r.Composition == nil {
		// Envoy accepts it and does nothing; here a setting that could
		// never act is a mistake to point out.
		p.add(path+".append_x_forwarded_host", "requires host_rewrite or auto_host_rewrite (the client's Host goes on unchanged without one)")
	}
	r.RequestHeaders.validate(p, path+".request_headers")
	r.ResponseHeaders.validate(p, path+".response_headers")
	if r.Fault != nil {
		r.Fault.validate(p, path+".fault")
	}
	if r.RateLimit != nil {
		r.RateLimit.validate(p, path+".rate_limit")
	}
	seen := map[string]int{}
	for i, m := range r.Mirror {
		ip := indexPath(path+".mirror", i)
		if m.Cluster == "" {
			p.add(ip+".cluster", "required")
		} else if j, dup := seen[m.Cluster]; dup {
			p.addf(ip+".cluster", "duplicate cluster %q (also mirror[%d])", m.Cluster, j)
		} else {
			seen[m.Cluster] = i
		}
		if m.Percent != nil {
			checkPercent(p, ip+".percent", *m.Percent)
		}
	}
}

func (rr *RegexRewrite) validate(p *problems, path string) {
	if rr.Pattern == "" {
		p.add(path+".pattern", "required")
		return
	}
	re, err := regexp.Compile(rr.Pattern)
	if err != nil {
		p.addf(path+".pattern", "invalid regex: %v", strings.TrimPrefix(err.Error(), "error parsing regexp: "))
		return
	}
	if msg := substitutionProblem(rr.Substitution, re.NumSubexp()); msg != "" {
		p.add(path+".substitution", msg)
		return
	}
	checkDecodedPath(p, path+".substitution", rr.Substitution, true)
}

// substitutionProblem says what is wrong with a regex_rewrite
// substitution for a pattern of groups numbered groups, or "". A
// backslash is followed by a digit naming the whole match (0) or a
// group the pattern has, or by another backslash, as RE2 reads a
// rewrite string: anything else after one was meant as something the
// substitution does not do (a "$", which Go's regexp would expand, is
// text here).
func substitutionProblem(sub string, groups int) string {
	for i := 0; i < len(sub); i++ {
		if sub[i] != '\\' {
			continue
		}
		i++
		switch {
		case i == len(sub):
			return `ends with a lone "\": write "\\" for a backslash`
		case sub[i] == '\\':
		case sub[i] >= '0' && sub[i] <= '9':
			if n := int(sub[i] - '0'); n > groups {
				return fmt.Sprintf(`"\%d" names group %d, but the pattern has %d`, n, n, groups)
			}
		default:
			return fmt.Sprintf(`"\%c" is not a group reference: "\0" to "\9" insert a group, "\\" a backslash`, sub[i])
		}
	}
	return ""
}

func (f *Fault) validate(p *problems, path string) {
	if f.Delay == nil && f.Abort == nil {
		p.add(path, "set delay, abort or both")
	}
	switch {
	case f.MaxActive < 0:
		p.addf(path+".max_active", "must not be negative, got %d", f.MaxActive)
	case f.MaxActive > 0 && f.Delay == nil:
		// Envoy's max_active_faults caps its aborts too: said here
		// rather than taken without effect.
		p.add(path+".max_active", "caps the requests the delay holds, and the fault has no delay (aborts are not capped)")
	}
	if d := f.Delay; d != nil {
		if d.Fixed <= 0 {
			p.add(path+".delay.fixed", "required, above 0")
		} else {
			checkDuration(p, path+".delay.fixed", d.Fixed)
		}
		checkPercent(p, path+".delay.percent", d.Percent)
	}
	if a := f.Abort; a != nil {
		switch {
		case a.HTTPStatus == 0 && a.GRPCStatus == "":
			p.add(path+".abort", "set http_status, grpc_status or both")
		case a.HTTPStatus != 0 && (a.HTTPStatus < 200 || a.HTTPStatus > 599):
			p.addf(path+".abort.http_status", "must be 200-599, got %d", a.HTTPStatus)
		}
		if a.GRPCStatus != "" && a.GRPCCode() == 0 {
			p.addf(path+".abort.grpc_status", "%q is not a gRPC status name (e.g. UNAVAILABLE) or code (1-16)", a.GRPCStatus)
		}
		checkPercent(p, path+".abort.percent", a.Percent)
	}
}

func (rl *RateLimit) validate(p *problems, path string) {
	switch {
	case rl.MaxTokens <= 0:
		p.addf(path+".max_tokens", "required, from 1 to %d, got %d", int64(MaxRateLimitTokens), rl.MaxTokens)
	case rl.MaxTokens > MaxRateLimitTokens:
		p.addf(path+".max_tokens", "must be from 1 to %d, got %d", int64(MaxRateLimitTokens), rl.MaxTokens)
	}
	if rl.TokensPerFill < 0 || rl.TokensPerFill > MaxRateLimitTokens {
		p.addf(path+".tokens_per_fill", "must be from 1 to %d (0 means 1), got %d", int64(MaxRateLimitTokens), rl.TokensPerFill)
	}
	switch {
	case rl.FillInterval == 0:
		p.addf(path+".fill_interval", "required, at least %s", MinRateLimitFillInterval)
	case rl.FillInterval < MinRateLimitFillInterval:
		// Envoy's minimum, so that a configuration it refuses is not
		// taken here, and the reverse.
		p.addf(path+".fill_interval", "must be at least %s, got %s", MinRateLimitFillInterval, rl.FillInterval)
	}
}

// checkPercent reports a share of requests that is not above 0 and at
// most 100, or that is finer than the proxy draws: a share is drawn as a
// count per million requests, rounded, and one that rounds to none
// would be accepted and never drawn.
func checkPercent(p *problems, path string, v float64) {
	switch {
	case !(v > 0 && v <= 100):
		p.addf(path, "must be above 0 and at most 100, got %v", v)
	case v*10_000 < 0.5:
		p.addf(path, "must be at least 0.0001 (one request in a million, the finest share drawn), got %v", v)
	}
}

// validateHashPolicy checks each hash_policy entry on its own; that the
// route's clusters are maglev is a cross-reference (validateReferences).
func (r *Route) validateHashPolicy(p *problems, path string) {
	if len(r.HashPolicy) > 0 && r.Cluster == "" && r.WeightedClusters == nil {
		p.add(path, "only with cluster or weighted_clusters: it picks an endpoint of a maglev cluster")
	}
	for i, h := range r.HashPolicy {
		ip := indexPath(path, i)
		set := present(
			field{"header", h.Header != ""},
			field{"cookie", h.Cookie != ""},
			field{"source_ip", h.SourceIP},
			field{"query_parameter", h.QueryParameter != ""},
		)
		switch len(set) {
		case 0:
			p.add(ip, "set one of header, cookie or query_parameter (with a non-empty name) or source_ip: true")
		case 1:
		default:
			p.addf(ip, "set only one of header, cookie, source_ip and query_parameter, got %s", strings.Join(set, " and "))
		}
		switch {
		case h.Header == "":
		case matchablePseudo[strings.ToLower(h.Header)]:
		case !httpguts.ValidHeaderFieldName(h.Header):
			p.addf(ip+".header", "invalid header name %q", h.Header)
		default:
			if msg := checkMatchableHeader(h.Header); msg != "" {
				p.add(ip+".header", msg)
			}
		}
		if h.Cookie != "" && !wire.IsToken(h.Cookie) {
			// RFC 6265 §4.1.1: a cookie-name is a token.
			p.addf(ip+".cookie", "invalid cookie name %q (a token, RFC 6265 §4.1.1)", h.Cookie)
		}
		if q := h.QueryParameter; q != "" && (strings.ContainsAny(q, "&=#") || strings.ContainsFunc(q, badURIRune)) {
			p.addf(ip+".query_parameter", "invalid query parameter name %q (no \"&\", \"=\", \"#\", spaces or control characters: it is compared with the query as written)", q)
		}
	}
}

func (d *DirectResponse) validate(p *problems, dp string) {
	if d.Status < 200 || d.Status > 599 {
		p.addf(dp+".status", "must be an HTTP status from 200 to 599, got %d", d.Status)
	}
	if len(d.Body) > maxDirectBody {
		p.addf(dp+".body", "must be at most %d bytes, got %d", maxDirectBody, len(d.Body))
	}
	if d.Body != "" {
		switch d.Status {
		case 204:
			p.add(dp+".body", "a 204 response has no content (RFC 9110 §15.3.5): leave body empty or use another status")
		case 304:
			p.add(dp+".body", "a 304 response has no content (RFC 9110 §15.4.5): leave body empty or use another status")
		}
	}
	d.Headers.validate(p, dp+".headers")
}

func (m *RouteMatch) validate(p *problems, path string) {
	for i, a := range m.Authority {
		if msg := checkAuthorityPattern(a); msg != "" {
			p.add(indexPath(path+".authority", i), msg)
		}
	}
	pp := path + ".path"
	var set []string
	if m.Path.Exact != "" {
		set = append(set, "exact")
		if !strings.HasPrefix(m.Path.Exact, "/") {
			p.addf(pp+".exact", "must start with \"/\", got %q", m.Path.Exact)
		} else {
			checkDecodedPath(p, pp+".exact", m.Path.Exact, false)
		}
	}
	if m.Path.Prefix != "" {
		set = append(set, "prefix")
		if !strings.HasPrefix(m.Path.Prefix, "/") {
			p.addf(pp+".prefix", "must start with \"/\", got %q", m.Path.Prefix)
		} else {
			checkDecodedPath(p, pp+".prefix", m.Path.Prefix, false)
		}
	}
	if m.Path.Regex != "" {
		set = append(set, "regex")
		checkRegex(p, pp+".regex", m.Path.Regex)
	}
	if len(set) > 1 {
		p.addf(pp, "set only one of exact, prefix and regex, got %s", strings.Join(set, " and "))
	}
	checkMethods(p, path+".methods", m.Methods)
	checkHeaderMatches(p, path+".headers", m.Headers)
	for i, q := range m.QueryParameters {
		qp := indexPath(path+".query_parameters", i)
		if q.Name == "" {
			p.add(qp+".name", "required")
		}
		checkValueMatch(p, qp, q.Exact, q.Prefix, q.Regex, q.Present != nil)
		if q.Present != nil && !*q.Present && q.Invert {
			p.add(qp+".invert", "not with present: false, which matches an absent parameter already (inverted, it is present: true)")
		}
	}
}

// checkMethods checks a list of methods to match at path: tokens,
// upper case, each once.
func checkMethods(p *problems, path string, methods []string) {
	seen := map[string]bool{}
	for i, meth := range methods {
		ip := indexPath(path, i)
		switch {
		case !wire.IsToken(meth):
			p.addf(ip, "invalid method %q", meth)
		case strings.ToUpper(meth) != meth:
			p.addf(ip, "method %q must be upper case (%q)", meth, strings.ToUpper(meth))
		case seen[meth]:
			p.addf(ip, "duplicate method %q", meth)
		}
		seen[meth] = true
	}
}

// checkHeaderMatches checks a list of request header matchers at path
// (a route's match.headers, an authorization rule's when.headers).
func checkHeaderMatches(p *problems, path string, hs []HeaderMatch) {
	for i, h := range hs {
		hp := indexPath(path, i)
		switch {
		case h.Name == "":
			p.add(hp+".name", "required")
		case matchablePseudo[strings.ToLower(h.Name)]:
		case !httpguts.ValidHeaderFieldName(h.Name):
			p.addf(hp+".name", "invalid header name %q", h.Name)
		default:
			if msg := checkMatchableHeader(h.Name); msg != "" {
				p.add(hp+".name", msg)
			}
		}
		checkValueMatch(p, hp, h.Exact, h.Prefix, h.Regex, h.Present)
	}
}

// checkValueMatch checks the value matcher of a header or query
// parameter at path: exactly one of exact, prefix, regex (valid) and
// present (isPresent: the key is set, to true or, for a query
// parameter, false).
func checkValueMatch(p *problems, path, exact, prefix, regex string, isPresent bool) {
	if regex != "" {
		checkRegex(p, path+".regex", regex)
	}
	set := present(field{"exact", exact != ""}, field{"prefix", prefix != ""}, field{"regex", regex != ""}, field{"present", isPresent})
	switch len(set) {
	case 0:
		// An empty exact is no matcher: the field cannot tell it from
		// one left out (Envoy's string matcher takes exact "").
		p.add(path, `set one of exact, prefix, regex or present (an empty exact or prefix is not a matcher: to match an empty value, write regex: "^$")`)
	case 1:
	default:
		p.addf(path, "set only one of exact, prefix, regex and present, got %s", strings.Join(set, " and "))
	}
}

// checkDecodedPath refuses, in a path matcher or a prefix_rewrite (a
// rewrite when rewrite is set), what would not mean what it says. A
// path is matched in its decoded form and a rewritten one is escaped
// when sent, so an escape written as Envoy takes it ("/a%20b") matched
// only "/a%2520b" and was sent as that; and a path has no query or
// fragment, so a "?" or "#" matched or sent only an escaped one
// ("%3F", "%23").
func checkDecodedPath(p *problems, key, v string, rewrite bool) {
	switch {
	case strings.Contains(v, "%") && rewrite:
		p.add(key, `must be written decoded, without "%" escapes: the rewritten path is sent escaped ("/a b/" sends /a%20b/)`)
	case strings.Contains(v, "%"):
		p.add(key, `must be written decoded, without "%" escapes: paths are matched decoded and sent escaped ("/a b" matches and sends /a%20b; a "%" the path decodes to is matched by path.regex)`)
	case strings.ContainsAny(v, "?#") && rewrite:
		p.add(key, `must not contain "?" or "#": a rewrite replaces part of the path and cannot add a query or fragment`)
	case strings.ContainsAny(v, "?#"):
		p.add(key, `must not contain "?" or "#": it is matched against the path alone, without query or fragment`)
	}
}

var matchablePseudo = map[string]bool{":authority": true, ":method": true, ":path": true, ":scheme": true}

// checkMatchableHeader refuses a matcher on a field no route sees as
// the client sent it. The listeners take the body's framing out of the
// request's fields (HTTP/1.1 Transfer-Encoding and Trailer, HTTP/2
// Trailer), so a matcher on it never matched and an inverted one always
// did. The connection-specific fields describe the client's hop, and
// make an HTTP/2 request malformed (RFC 9113 §8.2.2; TE but "trailers"),
// so the same request would be routed one way over HTTP/1.1 and another
// over HTTP/2. Upgrade is matchable: it names the protocol an HTTP/1.1
// request asks to switch to (a WebSocket), which the proxy passes on.
func checkMatchableHeader(name string) string {
	switch k := strings.ToLower(name); k {
	case "transfer-encoding", "trailer":
		return fmt.Sprintf("header %q frames the request body and is taken out of the request's fields by the listener: a matcher on it never sees it", name)
	case "connection", "keep-alive", "proxy-connection", "te", "http2-settings":
		h2 := "has none"
		if k == "te" {
			h2 = `has none but "te: trailers"`
		}
		msg := fmt.Sprintf("header %q describes the client's connection, not the request, and an HTTP/2 request %s (RFC 9113 §8.2.2), so a route on it would tell the protocols apart", name, h2)
		if k == "connection" {
			msg += `: match "upgrade" to route a protocol upgrade`
		}
		return msg
	}
	return ""
}

func (rp *RetryPolicy) validate(p *problems, path string) {
	switch {
	case rp.Attempts < 0:
		p.add(path+".attempts", "must not be negative")
	case rp.Attempts > MaxRetryAttempts:
		p.addf(path+".attempts", "must be at most %d, got %d", MaxRetryAttempts, rp.Attempts)
	}
	wantCodes, wantHeaders := false, false
	for i, c := range rp.RetryOn {
		if !validRetryCondition[c] {
			p.addf(indexPath(path+".retry_on", i), "unknown retry condition %q (valid: %s)", c, retryConditionList)
		}
		switch c {
		case RetryOnRetriableStatusCodes:
			wantCodes = true
		case RetryOnRetriableHeaders:
			wantHeaders = true
		}
	}
	for i, h := range rp.RetriableHeaders {
		hp := indexPath(path+".retriable_headers", i)
		switch {
		case h.Name == "":
			p.add(hp+".name", "required")
		case strings.HasPrefix(h.Name, ":"):
			p.addf(hp+".name", "%q: a response's pseudo-header is its status; use retriable_status_codes", h.Name)
		case !httpguts.ValidHeaderFieldName(h.Name):
			p.addf(hp+".name", "invalid header name %q", h.Name)
		}
		checkValueMatch(p, hp, h.Exact, h.Prefix, h.Regex, h.Present)
	}
	switch {
	case wantHeaders && len(rp.RetriableHeaders) == 0:
		p.add(path+".retriable_headers", "required when retry_on has retriable-headers")
	case !wantHeaders && len(rp.RetriableHeaders) > 0:
		p.add(path+".retriable_headers", "set, but retry_on lacks retriable-headers")
	}
	for i, code := range rp.RetriableStatusCodes {
		// A listed status is retried whatever the failure classifier
		// says of it: a 1xx is no answer, and a 2xx or 3xx one no retry
		// should repeat.
		if code < 400 || code > 599 {
			p.addf(indexPath(path+".retriable_status_codes", i), "must be an HTTP error status from 400 to 599, got %d", code)
		}
	}
	switch {
	case wantCodes && len(rp.RetriableStatusCodes) == 0:
		p.add(path+".retriable_status_codes", "required when retry_on has retriable-status-codes")
	case !wantCodes && len(rp.RetriableStatusCodes) > 0:
		p.add(path+".retriable_status_codes", "set, but retry_on lacks retriable-status-codes")
	}
	checkDuration(p, path+".backoff.base", rp.Backoff.Base)
	checkDuration(p, path+".backoff.max", rp.Backoff.Max)
	if rp.Backoff.Max > 0 {
		if base := orDuration(rp.Backoff.Base, DefaultBackoffBase); rp.Backoff.Max < base {
			p.addf(path+".backoff.max", "%s is less than backoff.base (%s)", rp.Backoff.Max, base)
		}
	}
	if rl := rp.RateLimitedBackoff; rl != nil {
		rl.validate(p, path+".rate_limited_backoff")
	}
	if rp.Budget != nil {
		p.add(path+".budget", "retry budgets are per cluster: set clusters.<name>.limits.retry_budget {budget_percent, min_retry_concurrency} instead")
	}
	if rp.MaxBufferedBodyBytes < 0 {
		p.add(path+".max_buffered_body_bytes", "must not be negative")
	}
}

func (rl *RateLimitedBackoff) validate(p *problems, path string) {
	if len(rl.ResetHeaders) == 0 {
		p.add(path+".reset_headers", "required: name at least one header, such as retry-after")
	}
	first := map[string]int{}
	for i, h := range rl.ResetHeaders {
		hp := indexPath(path+".reset_headers", i)
		key := strings.ToLower(h.Name)
		switch {
		case h.Name == "":
			p.add(hp+".name", "required")
		case !httpguts.ValidHeaderFieldName(h.Name):
			p.addf(hp+".name", "invalid header name %q", h.Name)
		case key == "grpc-retry-pushback-ms":
			// gRFC A6: milliseconds, and a value that does not parse
			// means "do not retry", which no format here says.
			p.addf(hp+".name", "%q counts milliseconds (gRFC A6): neither seconds nor unix_timestamp reads it", h.Name)
		default:
			if j, ok := first[key]; ok {
				p.addf(hp+".name", "%q repeats reset_headers[%d]", h.Name, j)
			} else {
				first[key] = i
			}
		}
		switch h.Format {
		case "", ResetHeaderSeconds, ResetHeaderUnixTimestamp:
		default:
			p.addf(hp+".format", "unknown format %q (valid: seconds, unix_timestamp)", h.Format)
		}
	}
	checkDuration(p, path+".max_interval", rl.MaxInterval)
}

// retryGRPCCodes are the gRPC statuses of the gRPC retry conditions.
var retryGRPCCodes = map[RetryCondition]int{
	RetryOnCancelled: 1, RetryOnDeadlineExceeded: 4, RetryOnResourceExhausted: 8, RetryOnInternal: 13, RetryOnUnavailable: 14,
}

// checkRetryClassified refuses a retry condition that names a gRPC status
// which the failure classifier of cluster, a route's cluster, does not
// count as a failure: the classifier has the last word on those retries
// (what it accepts is not retried), so such a condition could never
// take effect. retriable_status_codes, retriable-4xx and
// retriable-headers are retried whatever it says, so they are not
// checked here. A classifier that does not validate is
// reported with its cluster.
func (c *Config) checkRetryClassified(p *problems, path string, rp *RetryPolicy, cluster string) {
	var cc breaker.ClassifierConfig
	if cl, ok := c.Clusters[cluster]; ok {
		cc = cl.FailureClassifier
	}
	cls, err := breaker.NewClassifier(cc)
	if err != nil {
		return
	}
	for i, cond := range rp.RetryOn {
		g, ok := retryGRPCCodes[cond]
		if !ok || cls.Classify(breaker.Outcome{GRPCStatus: g}).Failure {
			continue
		}
		name := breaker.GRPCCodeName(g)
		p.addf(indexPath(path+".retry_on", i), "%s never retries on cluster %q: its failure_classifier does not count %s as a failure, and what it accepts is not retried (list %s in clusters.%s.failure_classifier.grpc_statuses)", cond, cluster, name, name, cluster)
	}
}

var validRetryCondition = map[RetryCondition]bool{
	RetryOnConnectFailure: true, RetryOnRefusedStream: true, RetryOnReset: true,
	RetryOn5xx: true, RetryOnGatewayError: true, RetryOnRetriableStatusCodes: true,
	RetryOnUnavailable: true, RetryOnResourceExhausted: true,
	RetryOnDeadlineExceeded: true, RetryOnCancelled: true, RetryOnInternal: true,
	RetryOnRetriable4xx: true, RetryOnRetriableHeaders: true, RetryOnEnvoyRateLimited: true,
}

var retryConditionList = "connect-failure, refused-stream, reset, 5xx, gateway-error, retriable-status-codes, retriable-4xx, retriable-headers, envoy-ratelimited, unavailable, resource-exhausted, deadline-exceeded, cancelled, internal"

func (m *HeaderMutation) validate(p *problems, path string) {
	m.Add.validate(p, path+".add")
	for i, name := range m.Remove {
		if msg := checkSettableHeader(name); msg != "" {
			p.add(indexPath(path+".remove", i), msg)
		}
	}
}

func (hs HeaderValues) validate(p *problems, path string) {
	for i, h := range hs {
		ip := indexPath(path, i)
		if msg := checkSettableHeader(h.Name); msg != "" {
			p.add(ip+".name", msg)
		}
		if msg := headerValueProblem(h.Value); msg != "" {
			p.add(ip+".value", msg)
		}
	}
}

// headerValueProblem says what makes v no value a header can be sent
// with, or "". A field value holds no control characters (RFC 9110
// §5.5), and neither begins nor ends with whitespace: HTTP/1.1 readers
// drop it as the optional whitespace around the value (an HTTP/1.1
// upstream got "prod" for " prod"), and RFC 9113 §8.2.1 makes an HTTP/2
// message with it malformed, so that a peer that checks (another
// sidecar's listener) reset every request the edit applied to.
func headerValueProblem(v string) string {
	switch {
	case !httpguts.ValidHeaderFieldValue(v):
		return fmt.Sprintf("invalid header value %q (no control characters)", v)
	case wire.TrimOWS(v) != v:
		return fmt.Sprintf("invalid header value %q (no leading or trailing whitespace: HTTP/1.1 drops it, and an HTTP/2 peer refuses the message, RFC 9113 §8.2.1)", v)
	}
	return ""
}

// forbiddenHeaders may not be set or removed by config: the hop-by-hop
// headers of RFC 9110 section 7.6.1 (which the proxy manages per hop),
// HTTP2-Settings (h2c's, hop-by-hop too), Host (which is the request's
// authority, chosen by routing) and Content-Length (the body's framing,
// which an edit would contradict: every response of the route would be
// cut short). Proxy-Authorization and Proxy-Authenticate, which the
// proxy strips as the previous hop's, are not among them: a route may
// set them for the next hop (credentials for an upstream that is a
// proxy, the challenge of a 407), as RFC 9110 §11.7 lets a proxy do.
var forbiddenHeaders = map[string]bool{
	"connection": true, "keep-alive": true, "proxy-connection": true,
	"transfer-encoding": true, "upgrade": true, "te": true, "trailer": true,
	"http2-settings": true, "host": true, "content-length": true,
}

func checkSettableHeader(name string) string {
	switch {
	case name == "":
		return "header name is required"
	case strings.HasPrefix(name, ":"):
		return fmt.Sprintf("pseudo-header %q cannot be changed", name)
	case !httpguts.ValidHeaderFieldName(name):
		return fmt.Sprintf("invalid header name %q", name)
	case forbiddenHeaders[strings.ToLower(name)]:
		return fmt.Sprintf("header %q is managed by the proxy and cannot be changed", name)
	}
	return ""
}

func (l *Logging) validate(p *problems, path string) {
	switch l.Level {
	case "", "debug", "info", "warn", "error":
	default:
		p.addf(path+".level", "unknown level %q (valid: debug, info, warn, error)", l.Level)
	}
	switch l.Format {
	case "", "json", "console":
	default:
		p.addf(path+".format", "unknown format %q (valid: json, console)", l.Format)
	}
}

// validateReferences checks what one section says about another.
func (c *Config) validateReferences(p *problems) {
	c.validateAuthorizationReferences(p)
	if c.Node.Zone == "" {
		// Without the sidecar's own zone no endpoint is local: every
		// pick would go to the other zones' level, which reads as zone
		// awareness while doing none.
		for _, name := range sortedKeys(c.Clusters) {
			if c.Clusters[name].ZoneAware.Enabled {
				p.add(keyPath("clusters", name)+".zone_aware.enabled", "needs node.zone, the sidecar's own zone, which is not set")
			}
		}
	}
	known := func(name string) bool {
		if _, ok := c.Clusters[name]; ok {
			return true
		}
		return name == InboundAppCluster && c.Listeners.Inbound.App != ""
	}
	unknown := func(path, name string) {
		msg := fmt.Sprintf("unknown cluster %q", name)
		if s := closest(name, sortedKeys(c.Clusters)); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		}
		p.add(path, msg)
	}
	names := map[string]int{}
	for i, r := range c.Routes {
		path := indexPath("routes", i)
		name := r.Name
		if name == "" {
			name = DefaultRouteName(i)
		}
		if j, dup := names[name]; dup {
			p.addf(path+".name", "duplicate route name %q (also routes[%d])", name, j)
		} else {
			names[name] = i
		}
		if r.Cluster != "" && !known(r.Cluster) {
			unknown(path+".cluster", r.Cluster)
		}
		for j, wc := range r.WeightedClusters {
			if wc.Cluster != "" && !known(wc.Cluster) {
				unknown(indexPath(path+".weighted_clusters", j)+".cluster", wc.Cluster)
			}
		}
		if fb := r.Fallback; fb != nil && fb.Cluster != "" && !known(fb.Cluster) {
			unknown(path+".fallback.cluster", fb.Cluster)
		}
		if len(r.HashPolicy) > 0 {
			targets := []string{r.Cluster}
			for _, wc := range r.WeightedClusters {
				targets = append(targets, wc.Cluster)
			}
			for _, name := range targets {
				if name == "" || !known(name) {
					continue
				}
				// The implicit inbound|app cluster is round robin.
				if pol := orString(string(c.Clusters[name].LBPolicy), string(LBRoundRobin)); pol != string(LBMaglev) {
					p.addf(path+".hash_policy", "needs lb_policy maglev on cluster %q, whose clusters.%s.lb_policy is %s: only maglev picks by the hash", name, name, pol)
				}
			}
		}
		for j, m := range r.Mirror {
			if m.Cluster != "" && !known(m.Cluster) {
				unknown(indexPath(path+".mirror", j)+".cluster", m.Cluster)
			}
		}
		if r.Retry != nil {
			if r.Cluster != "" && known(r.Cluster) {
				c.checkRetryClassified(p, path+".retry", r.Retry, r.Cluster)
			}
			for _, wc := range r.WeightedClusters {
				if wc.Cluster != "" && known(wc.Cluster) {
					c.checkRetryClassified(p, path+".retry", r.Retry, wc.Cluster)
				}
			}
		}
		if r.Composition != nil {
			from := len(p.errs)
			p.nested(path+".composition", r.Composition.Validate(known))
			callPathsByIndex(p.errs[from:], path+".composition.calls", r.Composition.Calls)
			var groups map[string]bool
			if re, err := regexp.Compile(r.Match.Path.Regex); err == nil && r.Match.Path.Regex != "" {
				groups = map[string]bool{}
				for _, g := range re.SubexpNames() {
					groups[g] = g != ""
				}
			}
			for _, param := range r.Composition.PathParams() {
				if !groups[param] {
					p.addf(path+".composition", "path parameter {%s} needs a named group in match.path.regex, e.g. (?P<%s>[^/]+)", param, param)
				}
			}
		}
		if r.Listener == Inbound && c.Listeners.Inbound.App == "" {
			p.add(path+".listener", "inbound routes need listeners.inbound.app (the local app's host:port)")
		}
		// A route of this name replaces the implicit inbound catch-all
		// wherever it is: on the outbound listener it would leave the
		// inbound one without it, and inbound requests no route matches
		// would get 404 no_route instead of reaching the app.
		if r.Name == InboundDefaultRoute && r.Listener != Inbound && c.Listeners.Inbound.App != "" {
			p.addf(path+".listener", "the route named %q replaces the inbound listener's catch-all to the local app: set listener: inbound, or give the route another name", InboundDefaultRoute)
		}
	}

	// Push subscriptions POST to the local app; the event log runs unless
	// the app API is off, and cannot start without the app's address.
	if c.Listeners.Inbound.App == "" && !c.Listeners.AppAPI.Disabled {
		for i := range c.EventLog.Subscriptions {
			p.add(indexPath("eventlog.subscriptions", i)+".route", "push subscriptions deliver to the local app: set listeners.inbound.app (its host:port)")
		}
	}

	// Listener addresses, as they will be bound.
	type bound struct{ path, addr string }
	var socks []bound
	socks = append(socks, bound{"admin.address", orString(c.Admin.Address, DefaultAdminAddress)})
	if !c.Listeners.Outbound.Disabled {
		socks = append(socks, bound{"listeners.outbound.address", orString(c.Listeners.Outbound.Address, DefaultOutboundAddress)})
	}
	if c.Listeners.Inbound.App != "" {
		socks = append(socks, bound{"listeners.inbound.address", orString(c.Listeners.Inbound.Address, DefaultInboundAddress)})
	}
	if !c.Listeners.AppAPI.Disabled {
		socks = append(socks, bound{"listeners.app_api.address", orString(c.Listeners.AppAPI.Address, DefaultAppAPIAddress)})
	}
	for i := range socks {
		for j := 0; j < i; j++ {
			if sameSocket(socks[i].addr, socks[j].addr) {
				p.addf(socks[i].path, "%q collides with %s (%q)", socks[i].addr, socks[j].path, socks[j].addr)
				break
			}
		}
	}
	if app := c.Listeners.Inbound.App; app != "" {
		for _, s := range socks {
			if sameSocket(app, s.addr) {
				p.addf("listeners.inbound.app", "%q is the sidecar's own %s: traffic would loop", app, s.path)
				break
			}
		}
	}
}

// sameSocket reports whether binding a and b would conflict: the same
// non-zero port, and the same host or either a wildcard host.
func sameSocket(a, b string) bool {
	ha, pa, err1 := net.SplitHostPort(a)
	hb, pb, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil || pa != pb || pa == "0" {
		return false
	}
	return ha == hb || wildcardHost(ha) || wildcardHost(hb)
}

func wildcardHost(h string) bool {
	return h == "" || h == "0.0.0.0" || h == "::"
}

func checkListenAddr(p *problems, path, addr string) {
	if addr == "" {
		return
	}
	if msg := checkHostPort(addr, false, true); msg != "" {
		p.add(path, msg)
	}
}

// checkHostPort returns what is wrong with a "host:port", or "".
func checkHostPort(addr string, hostRequired, zeroPortOK bool) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		if ae, ok := err.(*net.AddrError); ok && ae.Err == "missing port in address" {
			return fmt.Sprintf("%q has no port", addr)
		}
		return fmt.Sprintf("%q is not host:port", addr)
	}
	n, err := strconv.Atoi(port)
	switch {
	case port == "":
		return fmt.Sprintf("%q has no port", addr)
	case err != nil || strings.HasPrefix(port, "+"):
		return fmt.Sprintf("%q: port %q is not a number", addr, port)
	case n == 0 && zeroPortOK:
	case n < 1 || n > 65535:
		return fmt.Sprintf("%q: port %d is out of range (1-65535)", addr, n)
	}
	if host == "" {
		if hostRequired {
			return fmt.Sprintf("%q has no host", addr)
		}
		return ""
	}
	if !validHost(host) {
		return fmt.Sprintf("%q: %q is not an IP address or host name", addr, host)
	}
	return ""
}

func validHost(h string) bool {
	if net.ParseIP(h) != nil {
		return true
	}
	if strings.Contains(h, ":") {
		return false
	}
	return validDNSName(h)
}

// validDNSName accepts RFC 1123 host names (underscores allowed, as in SRV
// and some internal names).
func validDNSName(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// checkAuthorityPattern checks "*", "host", "*.suffix", each with an
// optional ":port" ("*:8080" is any host on port 8080).
func checkAuthorityPattern(a string) string {
	if a == "" {
		return "empty authority pattern"
	}
	if a == "*" {
		return ""
	}
	host := a
	if strings.HasPrefix(a, "[") || strings.Count(a, ":") == 1 {
		h, port, err := net.SplitHostPort(a)
		if err == nil {
			if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
				return fmt.Sprintf("invalid port in authority pattern %q", a)
			}
			host = h
		} else if strings.HasPrefix(a, "[") {
			if !strings.HasSuffix(a, "]") {
				return fmt.Sprintf("invalid authority pattern %q", a)
			}
			host = a[1 : len(a)-1]
		}
	}
	if host == "*" {
		return ""
	}
	if rest, ok := strings.CutPrefix(host, "*."); ok {
		if !validDNSName(rest) {
			return fmt.Sprintf("invalid authority pattern %q: %q is not a host name", a, rest)
		}
		return ""
	}
	if strings.Contains(host, "*") {
		return fmt.Sprintf("invalid authority pattern %q: a wildcard is allowed only as a leading \"*.\"", a)
	}
	if !validHost(host) {
		return fmt.Sprintf("invalid authority pattern %q: %q is not an IP address or host name", a, host)
	}
	return ""
}

// checkRegex compiles expr as written (for the message) and anchored, as
// the proxy compiles it to match a whole value.
func checkRegex(p *problems, path, expr string) {
	if _, err := regexp.Compile(expr); err != nil {
		p.addf(path, "invalid regex: %v", strings.TrimPrefix(err.Error(), "error parsing regexp: "))
		return
	}
	if _, err := regexp.Compile("^(?:" + expr + ")$"); err != nil {
		p.addf(path, "invalid regex: %v", strings.TrimPrefix(err.Error(), "error parsing regexp: "))
	}
}

func checkProtocol(p *problems, path string, proto Protocol) {
	switch proto {
	case "", ProtocolHTTP1, ProtocolHTTP2, ProtocolGRPC:
	default:
		p.addf(path, "unknown protocol %q (valid: http1, http2, grpc)", proto)
	}
}

func checkDuration(p *problems, path string, d time.Duration) {
	if d < 0 {
		p.addf(path, "must not be negative, got %s", d)
	}
}

// validClusterName accepts what Envoy control planes name clusters, Istio's
// "outbound|8080||payments.default.svc.cluster.local" included.
func validClusterName(name string) bool {
	if name == "" || len(name) > maxNameLen {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_-.|:", r)) {
			return false
		}
	}
	return true
}

// validRouteName accepts any printable ASCII without spaces: route names
// come from people and from control planes, and appear in logs and metric
// labels, where spaces and control characters would hurt.
func validRouteName(name string) bool {
	if name == "" || len(name) > maxNameLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		if name[i] <= ' ' || name[i] >= 0x7f {
			return false
		}
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// callPathsByIndex rewrites the key paths of the composer's problems that
// name a call by its name (calls.order.cluster) to name it by its place
// in the list (calls[0].cluster), as every other key path of a list item
// does and as the file's lines are found by.
func callPathsByIndex(errs Errors, prefix string, calls []composer.Call) {
	index := map[string]int{}
	for i := len(calls) - 1; i >= 0; i-- {
		index[calls[i].Name] = i // the first of a repeated name
	}
	for _, e := range errs {
		rest, ok := strings.CutPrefix(e.Path, prefix+".")
		if !ok {
			continue
		}
		end := strings.IndexAny(rest, ".[")
		if end < 0 {
			end = len(rest)
		}
		if i, ok := index[rest[:end]]; ok {
			e.Path = indexPath(prefix, i) + rest[end:]
		}
	}
}
