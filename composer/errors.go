package composer

import (
	"context"
	"errors"
	"net"
	"net/http"
)

// Reason says why a call did not produce a result. Reasons appear in partial
// responses, in error bodies and as a metric label; the set is closed and stable.
type Reason string

// The reasons a call can fail or be skipped.
const (
	ReasonBreakerOpen    Reason = "breaker_open"      // the cluster's circuit breaker rejected the call
	ReasonTimeout        Reason = "timeout"           // the call's own timeout (or the backend's) expired
	ReasonDeadline       Reason = "deadline_exceeded" // the composition's overall deadline expired
	ReasonConnect        Reason = "connect_failed"    // no connection to the cluster could be made
	ReasonUpstreamStatus Reason = "upstream_status"   // the backend answered with a non-2xx status
	ReasonUpstreamError  Reason = "upstream_error"    // any other transport error
	ReasonTooLarge       Reason = "response_too_large"
	ReasonTotalTooLarge  Reason = "total_too_large" // the request's total byte budget ran out
	ReasonFanOut         Reason = "fan_out_exceeded"
	ReasonInvalidJSON    Reason = "invalid_json"
	ReasonInvalidValue   Reason = "invalid_value"     // a referenced value is missing or cannot be substituted safely
	ReasonDependency     Reason = "dependency_failed" // a call this one depends on did not succeed
	ReasonCanceled       Reason = "canceled"          // the request was canceled (client gone, or another call failed)
)

// Sentinel errors a Backend returns, wrapped with %w, so that composer can tell
// why a call failed. Errors that wrap none of them are classified by ClassifyError.
var (
	// ErrBreakerOpen: the cluster's circuit breaker (or a resource limit) rejected the call.
	ErrBreakerOpen = errors.New("circuit breaker open")
	// ErrTimeout: the call timed out in the proxy (route or cluster timeout).
	ErrTimeout = errors.New("upstream timeout")
	// ErrConnect: no healthy endpoint, or the connection could not be made.
	ErrConnect = errors.New("upstream connect failed")
)

// ClassifyError maps an error returned by a Backend to a Reason: the sentinels
// above, context deadline and net.Error timeouts as timeout, dial errors as
// connect_failed, context cancellation as canceled, anything else upstream_error.
func ClassifyError(err error) Reason {
	var ne net.Error
	var oe *net.OpError
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrBreakerOpen):
		return ReasonBreakerOpen
	case errors.Is(err, ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return ReasonTimeout
	case errors.Is(err, ErrConnect):
		return ReasonConnect
	case errors.Is(err, context.Canceled):
		return ReasonCanceled
	case errors.As(err, &ne) && ne.Timeout():
		return ReasonTimeout
	case errors.As(err, &oe) && oe.Op == "dial":
		return ReasonConnect
	}
	return ReasonUpstreamError
}

// localReplyReason classifies an answer the proxy (this sidecar's, or the
// backend's own) gave instead of the upstream: such answers carry the proxy's
// x-outrigger-error code. Empty for an ordinary upstream answer.
func localReplyReason(h http.Header) Reason {
	switch h.Get(HeaderError) {
	case "":
		return ""
	case "breaker_open", "overflow":
		return ReasonBreakerOpen
	case "upstream_timeout":
		return ReasonTimeout
	case "upstream_connect_failure", "no_healthy_upstream":
		return ReasonConnect
	case "upstream_reset":
		return ReasonUpstreamError
	}
	return ReasonUpstreamStatus
}

// statusFor is the HTTP status a required call's failure gives the composite
// response, and the http_status reported for a failed call without a response.
func statusFor(r Reason) int {
	switch r {
	case ReasonBreakerOpen:
		return http.StatusServiceUnavailable
	case ReasonTimeout, ReasonDeadline:
		return http.StatusGatewayTimeout
	}
	return http.StatusBadGateway
}

// Values of the x-outrigger-error header (and of "error" in error bodies).
const (
	ErrorCallFailed = "composition_call_failed" // a required call failed; the body names it
	ErrorConflict   = "composition_conflict"    // on_conflict: error met differing values
	ErrorTooLarge   = "composition_too_large"   // the composed body exceeded max_total_bytes
	ErrorBadRequest = "composition_bad_request" // a value from the incoming request cannot be used safely, or its body is not JSON

	ErrorRequestTooLarge = "composition_request_too_large" // the incoming body exceeds max_request_bytes
	ErrorRequestTimeout  = "composition_request_timeout"   // the incoming body did not arrive within the deadline
)

// Header names the composer sets on responses.
const (
	HeaderPartial = "X-Outrigger-Partial"
	HeaderError   = "X-Outrigger-Error"
)
