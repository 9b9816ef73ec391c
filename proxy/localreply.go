package proxy

import (
	"net/http"
	"strconv"
)

// Reason is why the proxy answered a request itself instead of the
// upstream. Its string is the stable x-outrigger-error value and the
// `reason` label of outrigger_proxy_local_replies_total.
type Reason uint8

// The catalog of local replies. docs/proxy.md lists each with its HTTP
// status and gRPC code; keep the two in step.
const (
	ReasonNoRoute Reason = iota
	ReasonNoHealthyUpstream
	ReasonUpstreamTimeout
	ReasonStreamIdleTimeout
	ReasonUpstreamConnectFailure
	ReasonUpstreamReset
	ReasonRequestTooLarge
	ReasonRequestHeadersTooLarge
	ReasonBreakerOpen
	ReasonOverflow
	ReasonInvalidRequest
	ReasonHeaderWithUnderscore
	ReasonPathWithEscapedSlash
	// ReasonEscapedSlashRedirect is the 307 of path_with_escaped_slashes:
	// unescape_and_redirect; not an error (no x-outrigger-error), counted
	// so the redirects are visible.
	ReasonEscapedSlashRedirect
	// ReasonDownstreamProtocolError is a request the listener's server
	// refused before the handler ran (see Proxy.Serve); that server
	// writes the answer, without x-outrigger-error.
	ReasonDownstreamProtocolError
	// ReasonFaultAbort is a route's fault injection answering a request
	// (routes[].fault.abort), with the status the fault names.
	ReasonFaultAbort
	// ReasonRateLimited is a request the route's rate limit refused
	// (routes[].rate_limit): its bucket had no token.
	ReasonRateLimited
	// ReasonRBACDenied is a request the listener's authorization rules
	// refused (authorization), before routing.
	ReasonRBACDenied
	ReasonDirectResponse // not an error; counted so direct responses are visible
	numReasons
)

var reasonInfo = [numReasons]struct {
	code       string
	httpStatus int
	grpcStatus int
	text       string
}{
	ReasonNoRoute:                 {"no_route", http.StatusNotFound, grpcUnimplemented, "no route matches the request"},
	ReasonNoHealthyUpstream:       {"no_healthy_upstream", http.StatusServiceUnavailable, grpcUnavailable, "no healthy upstream"},
	ReasonUpstreamTimeout:         {"upstream_timeout", http.StatusGatewayTimeout, grpcDeadlineExceeded, "upstream request timeout"},
	ReasonStreamIdleTimeout:       {"stream_idle_timeout", http.StatusRequestTimeout, grpcDeadlineExceeded, "stream idle timeout"},
	ReasonUpstreamConnectFailure:  {"upstream_connect_failure", http.StatusBadGateway, grpcUnavailable, "upstream connect failure"},
	ReasonUpstreamReset:           {"upstream_reset", http.StatusBadGateway, grpcUnavailable, "upstream reset the connection"},
	ReasonRequestTooLarge:         {"request_too_large", http.StatusRequestEntityTooLarge, grpcResourceExhausted, "request body too large"},
	ReasonRequestHeadersTooLarge:  {"request_headers_too_large", http.StatusRequestHeaderFieldsTooLarge, grpcResourceExhausted, "request header list larger than the upstream accepts"},
	ReasonBreakerOpen:             {"breaker_open", http.StatusServiceUnavailable, grpcUnavailable, "circuit breaker open"},
	ReasonOverflow:                {"overflow", http.StatusServiceUnavailable, grpcUnavailable, "upstream resource limit reached"},
	ReasonInvalidRequest:          {"invalid_request", http.StatusBadRequest, grpcInternal, "request cannot be forwarded as HTTP/1.1"},
	ReasonHeaderWithUnderscore:    {"header_with_underscore", http.StatusBadRequest, grpcInternal, "request header name has an underscore"},
	ReasonPathWithEscapedSlash:    {"path_with_escaped_slash", http.StatusBadRequest, grpcInternal, "request path has an escaped slash or backslash"},
	ReasonEscapedSlashRedirect:    {"escaped_slash_redirect", http.StatusTemporaryRedirect, 0, ""},
	ReasonDownstreamProtocolError: {"downstream_protocol_error", http.StatusBadRequest, grpcInternal, "malformed request"},
	ReasonFaultAbort:              {"fault_abort", 0, 0, "fault injected"},
	ReasonRateLimited:             {"rate_limited", http.StatusTooManyRequests, grpcResourceExhausted, "local rate limit exceeded"},
	ReasonRBACDenied:              {"rbac_denied", http.StatusForbidden, grpcPermissionDenied, "RBAC: access denied"},
	ReasonDirectResponse:          {"direct_response", 0, 0, ""},
}

// String returns the stable code, e.g. "no_route".
func (r Reason) String() string { return reasonInfo[r].code }

// HTTPStatus is the status of the plain-HTTP local reply.
func (r Reason) HTTPStatus() int { return reasonInfo[r].httpStatus }

// GRPCStatus is the grpc-status of the trailers-only gRPC local reply.
func (r Reason) GRPCStatus() int { return reasonInfo[r].grpcStatus }

// localReply is one answer the proxy writes itself.
type localReply struct {
	reason Reason
	// detail replaces the catalog text when set (e.g. names the cluster).
	detail string
	// extra headers, e.g. x-outrigger-breaker and retry-after.
	extra [][2]string
	// httpStatus and grpcStatus replace the catalog's when set (a
	// fault's abort).
	httpStatus, grpcStatus int
}

// writeLocalReply writes lr to w in the request's protocol: a short text
// body for HTTP, a trailers-only response for gRPC (HTTP 200 with
// grpc-status and grpc-message in the header block, no body), which every
// gRPC client reads as the call's final status.
func writeLocalReply(w http.ResponseWriter, grpc bool, lr localReply) int {
	info := reasonInfo[lr.reason]
	msg := info.text
	if lr.detail != "" {
		msg = lr.detail
	}
	h := w.Header()
	h.Set(hdrError, info.code)
	for _, kv := range lr.extra {
		h.Set(kv[0], kv[1])
	}
	if grpc {
		code := info.grpcStatus
		if lr.grpcStatus != 0 {
			code = lr.grpcStatus
		}
		h.Set("Content-Type", "application/grpc")
		h.Set("Grpc-Status", strconv.Itoa(code))
		h.Set("Grpc-Message", encodeGRPCMessage(msg))
		w.WriteHeader(http.StatusOK)
		return http.StatusOK
	}
	status := info.httpStatus
	if lr.httpStatus != 0 {
		status = lr.httpStatus
	}
	if status == http.StatusNoContent || status == http.StatusNotModified {
		// A status without content (a fault's abort may name one).
		w.WriteHeader(status)
		return status
	}
	body := msg + "\n"
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
	return status
}
