package composer

import (
	"context"
	"io"
	"net/http"
)

// Backend makes one call to a cluster. The proxy implements it so that every
// call of a composition goes through the cluster's load balancing, timeouts,
// retries and circuit breaker; HTTPBackend is a plain net/http implementation.
//
// Do returns either a Response (any status; the caller closes Body) or an error.
// An error should wrap ErrBreakerOpen, ErrTimeout or ErrConnect when one of them
// is the cause, so that partial responses and metrics say why (see ClassifyError).
// Do must honour ctx: the composition's deadline and per-call timeout are on it.
type Backend interface {
	Do(ctx context.Context, call *Request) (*Response, error)
}

// Request is one rendered backend call. The composer never mutates a Request
// after passing it to Do, and Do must not mutate it either (it may be shared by
// retries in the proxy).
type Request struct {
	Cluster  string      // the configured cluster name
	Method   string      // GET, POST, ...
	Path     string      // already escaped (it goes on the wire as is), starts with '/'
	RawQuery string      // already escaped, without '?'; empty for none
	Header   http.Header // request headers to send (forwarded and templated)
	Body     []byte      // nil for none; replayable for retries
	// MaxResponseBytes is the most body bytes the call may use: its
	// max_response_bytes, or less when less is left of the request's
	// max_total_bytes as the call starts. The composer reads at most one byte
	// more; a Backend that buffers the body itself should keep no more either.
	MaxResponseBytes int64
}

// Response is a backend's answer. Body is read up to the call's byte cap and
// then closed by the composer.
type Response struct {
	Status int
	Header http.Header
	Body   io.ReadCloser
}
