// Package breaker decides, per upstream cluster and per endpoint, whether a
// call should be attempted: a circuit breaker state machine, Envoy-style
// resource limits, per-endpoint outlier ejection, and the one failure
// classifier that all of them (and the proxy's retries) share.
//
// The package is a pure core: it owns no goroutine, reads no clock (every
// method that needs the time takes now), does not log and imports nothing
// from the proxy.
package breaker
