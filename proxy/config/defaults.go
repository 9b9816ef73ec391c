package config

import (
	"os"
	"reflect"
	"strconv"
	"time"

	"github.com/outrigger-mesh/outrigger/breaker"
)

// The defaults that zero values stand for.
const (
	DefaultAdminAddress    = "127.0.0.1:15000"
	DefaultOutboundAddress = "127.0.0.1:15001"
	DefaultAppAPIAddress   = "127.0.0.1:15002"
	DefaultInboundAddress  = "0.0.0.0:15006"

	DefaultMaxRequestHeaderBytes = 64 << 10
	DefaultReadHeaderTimeout     = 10 * time.Second
	DefaultIdleTimeout           = 5 * time.Minute
	DefaultDrainTimeout          = 15 * time.Second

	DefaultConnectTimeout     = time.Second
	DefaultMaxIdlePerEndpoint = 32
	DefaultPoolIdleTimeout    = 90 * time.Second

	// DefaultTLSMinVersion and DefaultTLSMaxVersion are crypto/tls's
	// bounds for a client.
	DefaultTLSMinVersion = "1.2"
	DefaultTLSMaxVersion = "1.3"

	// DefaultTLSHandshakeTimeout is a listener tls's handshake_timeout.
	DefaultTLSHandshakeTimeout = 10 * time.Second

	DefaultHealthCheckInterval = 5 * time.Second
	DefaultHealthCheckTimeout  = time.Second
	DefaultHealthyThreshold    = 2
	DefaultUnhealthyThreshold  = 3

	// DefaultOverprovisioningFactor is Envoy's default
	// overprovisioning_factor, in percent.
	DefaultOverprovisioningFactor = 140

	DefaultRouteTimeout         = 15 * time.Second
	DefaultRetryAttempts        = 1
	DefaultBackoffBase          = 25 * time.Millisecond
	DefaultBackoffMaxFactor     = 10
	DefaultMaxBufferedBodyBytes = 64 << 10
	// DefaultRateLimitedMaxInterval is Envoy's default for
	// rate_limited_retry_back_off.max_interval.
	DefaultRateLimitedMaxInterval = 300 * time.Second

	DefaultLogLevel  = "info"
	DefaultLogFormat = "json"

	// DefaultNodeID is the node id when none is set and the host name
	// cannot be read.
	DefaultNodeID = "outrigger"
)

// DefaultRetryOn is the retry_on of a retry block that sets none.
func DefaultRetryOn() []RetryCondition {
	return []RetryCondition{RetryOnConnectFailure, RetryOnRefusedStream, RetryOnGatewayError, RetryOnUnavailable}
}

// DefaultRouteName is the name of the unnamed route at index i.
func DefaultRouteName(i int) string { return "route[" + strconv.Itoa(i) + "]" }

// hostname is os.Hostname; tests replace it to keep golden output stable.
var hostname = os.Hostname

// WithDefaults returns a deep copy of c with every zero value that stands for
// a default replaced by that default, and the implicit inbound cluster and
// route added when listeners.inbound.app is set (see [InboundAppCluster],
// [InboundDefaultRoute]). c is not modified. Applying it twice gives the
// same result as applying it once.
//
// Fields whose zero value means "none" or "unlimited" (max_request_body_bytes,
// per_try_timeout, pool.max_connections_per_endpoint, a weighted cluster's
// weight, an absent retry block) stay zero, and so does health_check.port,
// whose zero means each endpoint's own port (which differs per endpoint),
// and a listener's max_connections, whose zero is derived from the
// process's open-file limit where the proxy runs, not here.
//
// The node id is the one place that reads the environment: an empty id
// becomes the host name.
func (c *Config) WithDefaults() *Config {
	out := deepCopy(reflect.ValueOf(c)).Interface().(*Config)

	if out.Node.ID == "" {
		if h, err := hostname(); err == nil && h != "" {
			out.Node.ID = h
		} else {
			out.Node.ID = DefaultNodeID
		}
	}
	setString(&out.Admin.Address, DefaultAdminAddress)

	l := &out.Listeners
	setString(&l.Outbound.Address, DefaultOutboundAddress)
	setString((*string)(&l.Outbound.HeadersWithUnderscores), string(HeadersWithUnderscoresAllow))
	setString((*string)(&l.Outbound.EnvoyRequestHeaders), string(EnvoyRequestHeadersHonor))
	setString(&l.Inbound.Address, DefaultInboundAddress)
	setString((*string)(&l.Inbound.AppProtocol), string(ProtocolHTTP1))
	setString((*string)(&l.Inbound.HeadersWithUnderscores), string(HeadersWithUnderscoresAllow))
	setString(&l.AppAPI.Address, DefaultAppAPIAddress)
	l.Outbound.TLS.applyDefaults()
	l.Inbound.TLS.applyDefaults()
	setInt(&l.MaxRequestHeaderBytes, DefaultMaxRequestHeaderBytes)
	setDuration(&l.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	setDuration(&l.IdleTimeout, DefaultIdleTimeout)
	setDuration(&l.DrainTimeout, DefaultDrainTimeout)
	setString((*string)(&l.PathNormalization), string(PathNormalizationBase))
	setString((*string)(&l.PathWithEscapedSlashes), string(PathWithEscapedSlashesKeep))

	if l.Inbound.App != "" {
		if _, ok := out.Clusters[InboundAppCluster]; !ok {
			if out.Clusters == nil {
				out.Clusters = map[string]Cluster{}
			}
			out.Clusters[InboundAppCluster] = l.Inbound.AppCluster()
		}
	}
	for name, cl := range out.Clusters {
		cl.applyDefaults()
		out.Clusters[name] = cl
	}

	for i := range out.Routes {
		out.Routes[i].applyDefaults(i)
	}
	if l.Inbound.App != "" && !hasRoute(out.Routes, InboundDefaultRoute) {
		r := Route{
			Name:            InboundDefaultRoute,
			Listener:        Inbound,
			Cluster:         InboundAppCluster,
			TimeoutDisabled: true,
		}
		r.applyDefaults(len(out.Routes))
		out.Routes = append(out.Routes, r)
	}

	for _, rules := range [][]AuthorizationRule{out.Authorization.Deny, out.Authorization.Allow} {
		for i := range rules {
			rules[i].Listeners = rules[i].RuleListeners()
		}
	}

	setString(&out.Logging.Level, DefaultLogLevel)
	setString(&out.Logging.Format, DefaultLogFormat)
	return out
}

// AppCluster is the implicit cluster [InboundAppCluster] of the local
// app at in.App. It has no circuit breaker, as Envoy's and Linkerd's
// inbound sides have none: the app's callers have their own, and one
// here, opened while the app restarts, would fail its requests for an
// open period after it is back.
func (in InboundListener) AppCluster() Cluster {
	return Cluster{
		Endpoints:      []Endpoint{{Address: in.App}},
		Protocol:       in.AppProtocol,
		CircuitBreaker: breaker.Config{Disabled: true},
	}
}

func (cl *Cluster) applyDefaults() {
	for i := range cl.Endpoints {
		if cl.Endpoints[i].Weight == 0 {
			cl.Endpoints[i].Weight = 1
		}
	}
	setString((*string)(&cl.Protocol), string(ProtocolHTTP1))
	setDuration(&cl.ConnectTimeout, DefaultConnectTimeout)
	setString((*string)(&cl.LBPolicy), string(LBRoundRobin))
	if cl.TLS.Enabled {
		// Only with TLS on: Validate refuses a tls key beside enabled: false.
		setString(&cl.TLS.MinVersion, DefaultTLSMinVersion)
		setString(&cl.TLS.MaxVersion, DefaultTLSMaxVersion)
	}
	setInt(&cl.Pool.MaxIdlePerEndpoint, DefaultMaxIdlePerEndpoint)
	setDuration(&cl.Pool.IdleTimeout, DefaultPoolIdleTimeout)
	cl.CircuitBreaker = cl.CircuitBreaker.WithDefaults()
	cl.Limits = cl.Limits.WithDefaults()
	cl.OutlierDetection = cl.OutlierDetection.WithDefaults()
	setInt(&cl.ZoneAware.OverprovisioningFactor, DefaultOverprovisioningFactor)
	if hc := cl.HealthCheck; hc != nil {
		setDuration(&hc.Interval, DefaultHealthCheckInterval)
		setDuration(&hc.UnhealthyInterval, hc.Interval)
		setDuration(&hc.Timeout, DefaultHealthCheckTimeout)
		setInt(&hc.HealthyThreshold, DefaultHealthyThreshold)
		setInt(&hc.UnhealthyThreshold, DefaultUnhealthyThreshold)
		if h := hc.HTTP; h != nil {
			setString(&h.Path, "/")
			if len(h.ExpectedStatuses) == 0 {
				h.ExpectedStatuses = []StatusRange{{200, 200}}
			}
		}
	}
}

func (r *Route) applyDefaults(i int) {
	setString(&r.Name, DefaultRouteName(i))
	setString((*string)(&r.Listener), string(Outbound))
	if r.Match.Path == (PathMatch{}) {
		r.Match.Path.Prefix = "/"
	}
	if r.DirectResponse == nil && !r.TimeoutDisabled {
		setDuration(&r.Timeout, DefaultRouteTimeout)
	}
	for i := range r.Mirror {
		if r.Mirror[i].Percent == nil {
			all := 100.0
			r.Mirror[i].Percent = &all
		}
	}
	if rl := r.RateLimit; rl != nil {
		rl.TokensPerFill = rl.Fill()
	}
	if rp := r.Retry; rp != nil {
		setInt(&rp.Attempts, DefaultRetryAttempts)
		if len(rp.RetryOn) == 0 {
			rp.RetryOn = DefaultRetryOn()
		}
		setDuration(&rp.Backoff.Base, DefaultBackoffBase)
		setDuration(&rp.Backoff.Max, DefaultBackoffMaxFactor*rp.Backoff.Base)
		if rp.MaxBufferedBodyBytes == 0 {
			rp.MaxBufferedBodyBytes = DefaultMaxBufferedBodyBytes
		}
		if rl := rp.RateLimitedBackoff; rl != nil {
			setDuration(&rl.MaxInterval, DefaultRateLimitedMaxInterval)
			for i := range rl.ResetHeaders {
				setString((*string)(&rl.ResetHeaders[i].Format), string(ResetHeaderSeconds))
			}
		}
	}
}

func hasRoute(rs []Route, name string) bool {
	for _, r := range rs {
		if r.Name == name {
			return true
		}
	}
	return false
}

func setString(p *string, def string) {
	if *p == "" {
		*p = def
	}
}

func setInt(p *int, def int) {
	if *p == 0 {
		*p = def
	}
}

func setDuration(p *time.Duration, def time.Duration) {
	if *p == 0 {
		*p = def
	}
}

func orString(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func orDuration(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// deepCopy copies v so that no map, slice or pointer is shared with it.
// Unexported struct fields (of embedded types from other packages) are
// copied shallowly.
func deepCopy(v reflect.Value) reflect.Value {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return reflect.Zero(v.Type())
		}
		out := reflect.New(v.Type().Elem())
		out.Elem().Set(deepCopy(v.Elem()))
		return out
	case reflect.Slice:
		if v.IsNil() {
			return reflect.Zero(v.Type())
		}
		out := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		for i := 0; i < v.Len(); i++ {
			out.Index(i).Set(deepCopy(v.Index(i)))
		}
		return out
	case reflect.Map:
		if v.IsNil() {
			return reflect.Zero(v.Type())
		}
		out := reflect.MakeMapWithSize(v.Type(), v.Len())
		iter := v.MapRange()
		for iter.Next() {
			out.SetMapIndex(iter.Key(), deepCopy(iter.Value()))
		}
		return out
	case reflect.Struct:
		out := reflect.New(v.Type()).Elem()
		out.Set(v)
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				out.Field(i).Set(deepCopy(v.Field(i)))
			}
		}
		return out
	case reflect.Interface:
		if v.IsNil() {
			return reflect.Zero(v.Type())
		}
		out := reflect.New(v.Type()).Elem()
		out.Set(deepCopy(v.Elem()))
		return out
	default:
		return v
	}
}

// applyDefaults fills in a listener tls's defaults, only with TLS on:
// Validate refuses a tls key beside enabled: false.
func (t *ListenerTLS) applyDefaults() {
	if !t.Enabled {
		return
	}
	setString(&t.MinVersion, DefaultTLSMinVersion)
	setString(&t.MaxVersion, DefaultTLSMaxVersion)
	setDuration(&t.HandshakeTimeout, DefaultTLSHandshakeTimeout)
}
