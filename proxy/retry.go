package proxy

import (
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// retryOn is a set of conditions under which an attempt is retried.
type retryOn uint16

const (
	retryConnectFailure  retryOn = 1 << iota // no connection could be made
	retryReset                               // connection reset / stream error before response headers
	retry5xx                                 // any 5xx response, a connect failure, reset or per-try timeout
	retryGatewayError                        // 502, 503, 504, connect failure, reset or per-try timeout
	retryRetriableStatus                     // a status listed in retriable_status_codes
	retryGRPCCancelled                       // grpc-status CANCELLED in a trailers-only response
	retryGRPCDeadlineExceeded
	retryGRPCResourceExhausted
	retryGRPCUnavailable
	retryRefusedStream // HTTP/2 REFUSED_STREAM: the upstream did not process the request
	retryRetriable4xx  // 409 Conflict
	retryRetriableHeaders
	retryGRPCInternal
	retryEnvoyRateLimited // x-envoy-ratelimited in the response
)

// retryOnNames maps config tokens (Envoy's x-envoy-retry-on and
// x-envoy-retry-grpc-on vocabularies) to conditions.
var retryOnNames = map[string]retryOn{
	"connect-failure":        retryConnectFailure,
	"reset":                  retryReset,
	"5xx":                    retry5xx,
	"gateway-error":          retryGatewayError,
	"retriable-status-codes": retryRetriableStatus,
	"cancelled":              retryGRPCCancelled,
	"deadline-exceeded":      retryGRPCDeadlineExceeded,
	"resource-exhausted":     retryGRPCResourceExhausted,
	"unavailable":            retryGRPCUnavailable,
	"refused-stream":         retryRefusedStream,
	"retriable-4xx":          retryRetriable4xx,
	"retriable-headers":      retryRetriableHeaders,
	"internal":               retryGRPCInternal,
	"envoy-ratelimited":      retryEnvoyRateLimited,
}

// retryPolicy is a route's compiled retry policy.
type retryPolicy struct {
	maxRetries int // 0: no retries
	on         retryOn
	statuses   []int
	// headers are retriable_headers, matched against a response's.
	headers   []headerMatcher
	base, max time.Duration // back-off: full jitter over [0, min(max, base*2^n))
	// allowAnyMethod permits retrying non-idempotent methods (POST, PATCH).
	allowAnyMethod bool
	// maxBuffered is the largest request body kept for replay.
	maxBuffered int64
	// resetHeaders, when set, are the rate-limit reset headers read from
	// a retried response, in order (rate_limited_backoff); resetMax is
	// the longest interval they may ask for.
	resetHeaders []resetHeader
	resetMax     time.Duration
}

// resetHeader is one header of rate_limited_backoff.reset_headers.
type resetHeader struct {
	key       string // canonical, as the transports key response headers
	timestamp bool   // unix_timestamp; else seconds (delay-seconds or HTTP-date)
}

// idempotent reports whether a request with method m may be retried
// without the route's explicit permission (RFC 9110 §9.2.2; TRACE too).
func idempotent(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut,
		http.MethodDelete, http.MethodTrace:
		return true
	}
	return false
}

// failKind is how an attempt failed below HTTP.
type failKind uint8

const (
	failNone failKind = iota
	failConnect
	failReset
	failTimeout // per-try timeout
	failRefused // HTTP/2 stream refused before processing
)

// retriable decides whether an attempt's result warrants another try.
// status and grpcStatus are 0/-1 when there was no response.
func (p *retryPolicy) retriable(kind failKind, status, grpcStatus int) bool {
	on := p.on
	switch kind {
	case failConnect:
		return on&(retryConnectFailure|retry5xx|retryGatewayError) != 0
	case failReset:
		return on&(retryReset|retry5xx|retryGatewayError) != 0
	case failTimeout:
		return on&(retry5xx|retryGatewayError) != 0
	case failRefused:
		return on&(retryRefusedStream|retryReset|retry5xx|retryGatewayError) != 0
	}
	if status >= 500 && on&retry5xx != 0 {
		return true
	}
	if (status == 502 || status == 503 || status == 504) && on&retryGatewayError != 0 {
		return true
	}
	if on&retryRetriableStatus != 0 {
		for _, s := range p.statuses {
			if s == status {
				return true
			}
		}
	}
	return p.grpcRetriable(grpcStatus)
}

// regardless reports whether an attempt answered status with header h,
// no gRPC status other than OK deciding its outcome (as the classifier
// reads one), is retried whatever the cluster's failure classifier says
// of it: a status of retriable_status_codes, a 409 under retriable-4xx,
// or a header retriable_headers match (Envoy retries these apart from
// its outlier detection). h is nil without a response.
func (p *retryPolicy) regardless(kind failKind, status, grpcStatus int, h http.Header) bool {
	if kind != failNone || grpcStatus > 0 {
		return false
	}
	if p.on&retryRetriableStatus != 0 {
		for _, s := range p.statuses {
			if s == status {
				return true
			}
		}
	}
	if status == http.StatusConflict && p.on&retryRetriable4xx != 0 {
		return true
	}
	if p.on&retryRetriableHeaders != 0 {
		for i := range p.headers {
			if p.headers[i].matchHeader(h) {
				return true
			}
		}
	}
	return false
}

// retries reports whether the policy's conditions retry an attempt's
// outcome, failure being the cluster's classifier's verdict: one of the
// conditions retried whatever the classifier says (see regardless), or
// a retry_on condition on a failure. A response an upstream Envoy's
// rate limiter refused (x-envoy-ratelimited) is retried under
// envoy-ratelimited, whatever the classifier says, and under no other
// condition, as Envoy's router decides. h is nil without a response.
func (p *retryPolicy) retries(kind failKind, status, grpcStatus int, h http.Header, failure bool) bool {
	if _, ok := h[hdrEnvoyRateLimited]; ok {
		return p.on&retryEnvoyRateLimited != 0
	}
	return p.regardless(kind, status, grpcStatus, h) || failure && p.retriable(kind, status, grpcStatus)
}

// grpcRetriable reports whether grpcStatus matches one of the policy's
// gRPC retry_on conditions.
func (p *retryPolicy) grpcRetriable(grpcStatus int) bool {
	switch grpcStatus {
	case grpcCanceled:
		return p.on&retryGRPCCancelled != 0
	case grpcDeadlineExceeded:
		return p.on&retryGRPCDeadlineExceeded != 0
	case grpcResourceExhausted:
		return p.on&retryGRPCResourceExhausted != 0
	case grpcUnavailable:
		return p.on&retryGRPCUnavailable != 0
	case grpcInternal:
		return p.on&retryGRPCInternal != 0
	}
	return false
}

// backoff returns the wait before retry number n (1-based) with full
// jitter: uniform in [0, min(max, base*2^(n-1))) ("Exponential Backoff
// And Jitter", AWS Architecture Blog, 2015). int63n is injectable.
func (p *retryPolicy) backoff(n int, int63n func(int64) int64) time.Duration {
	if p.base <= 0 {
		return 0
	}
	ceil := p.base
	for i := 1; i < n && ceil < p.max; i++ {
		ceil *= 2
	}
	if p.max > 0 && ceil > p.max {
		ceil = p.max
	}
	if ceil <= 0 {
		return 0
	}
	return time.Duration(int63n(int64(ceil)))
}

// resetWait is the wait before retrying a response whose header is h,
// by the policy's reset headers (Envoy's rate_limited_retry_back_off),
// at time now. wait < 0 means no header names one: the exponential
// back-off applies. ok is false when the interval named exceeds
// resetMax: the response is not retried. The first header that parses
// decides; an interval of zero (Retry-After: 0, or a reset time already
// past) names no wait, and the back-off applies, which keeps a server
// that has just refused from being called again at once.
// The wait is spread over [interval, 1.5 × interval), as Envoy's
// JitteredLowerBoundBackOffStrategy does, without passing resetMax, so
// that the clients told one reset time do not all come back at that
// instant. int63n is injectable.
func (p *retryPolicy) resetWait(h http.Header, now time.Time, int63n func(int64) int64) (wait time.Duration, ok bool) {
	for _, rh := range p.resetHeaders {
		vv := h[rh.key]
		if len(vv) == 0 {
			continue
		}
		d, parsed := parseReset(vv[0], rh.timestamp, now)
		if !parsed {
			continue
		}
		switch {
		case d <= 0:
			return -1, true
		case d > p.resetMax:
			return 0, false
		}
		if spread := min(d/2, p.resetMax-d); spread > 0 {
			d += time.Duration(int63n(int64(spread)))
		}
		return d, true
	}
	return -1, true
}

// maxResetSeconds is the most seconds a reset header is read as: more
// would overflow a time.Duration.
const maxResetSeconds = int64(math.MaxInt64 / int64(time.Second))

// parseReset reads a reset header's value v as the interval it names
// from now: with timestamp, whole seconds since the Unix epoch; else a
// Retry-After value (RFC 9110 §10.2.3), delay-seconds or an HTTP-date.
// A number too large for a time.Duration reads as the largest one.
func parseReset(v string, timestamp bool, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	n, digits := parseSeconds(v)
	switch {
	case timestamp && digits:
		return time.Unix(n, 0).Sub(now), true
	case timestamp:
		return 0, false
	case digits:
		return time.Duration(n) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return t.Sub(now), true
}

// parseSeconds parses 1*DIGIT, saturating at maxResetSeconds.
func parseSeconds(v string) (int64, bool) {
	if v == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if n <= maxResetSeconds {
			n = n*10 + int64(c-'0')
		}
	}
	return min(n, maxResetSeconds), true
}

// sleepCtx waits d or until ctx is done; it reports whether d elapsed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// replayBody lets a request body be sent more than once. The first
// attempt streams the downstream body and keeps a copy of what it read, up
// to limit bytes; a later attempt reads the copy and then continues with
// the unread rest of the downstream body. Once more than limit bytes have
// been read the copy is dropped and the body can no longer be replayed.
//
// Each attempt reads through a view of its own, and only the view handed
// out last (cur) may read; an earlier one is detached. A transport may
// still be in a Read of a detached view, possibly after RoundTrip
// returned (h2client reads the body on a goroutine of its own), and that
// Read may be waiting for the client: the next attempt does not wait for
// it. It replays the copy at once, and only when it has caught up with
// what was read does it wait for that Read, whose bytes are kept for it
// whatever the limit (one read's worth more: the retry was decided while
// the copy was whole), then reads on from the client itself. Only one
// Read of the downstream body is in progress at a time.
type replayBody struct {
	src    io.Reader
	limit  int64
	length int64 // declared Content-Length; -1 unknown

	mu      sync.Mutex
	srcRead sync.Cond // broadcast when a Read of src returns
	buf     []byte    // src's first read bytes, while not overflowed
	read    int64     // bytes read from src
	srcErr  error
	reading bool      // a view is reading src (without mu)
	cur     *bodyView // the view that may read; nil once released
	// idle is told of each read a replay serves from buf (src tells it
	// of the others); nil: the route has no idle_timeout.
	idle *idleWatch
	// Read by the forwarder while an attempt's transport may be reading.
	overflow atomic.Bool
	srcDone  atomic.Bool
	kept     atomic.Int64 // len(buf), published
}

func newReplayBody(src io.Reader, limit, length int64) *replayBody {
	b := &replayBody{src: src, limit: limit, length: length}
	b.srcRead.L = &b.mu
	return b
}

// replayable reports whether a new attempt can resend the body.
func (b *replayBody) replayable() bool { return !b.overflow.Load() }

// complete reports whether the whole body has been read and kept, so a
// replay will not need the downstream again.
func (b *replayBody) complete() bool {
	return !b.overflow.Load() && (b.srcDone.Load() || b.length >= 0 && b.kept.Load() == b.length)
}

// view returns a reader for one attempt, starting at byte 0; the
// previous view is detached.
func (b *replayBody) view() *bodyView {
	v := &bodyView{b: b}
	b.mu.Lock()
	b.cur = v
	b.mu.Unlock()
	return v
}

// bodyView is one attempt's reader over a replayBody.
type bodyView struct {
	b   *replayBody
	off int64 // bytes of the body this view has returned
}

var (
	errBodyDetached = errors.New("request body handed to a newer attempt")
	errBodyDropped  = errors.New("request body no longer kept for replay")
)

func (v *bodyView) Read(p []byte) (int, error) {
	b := v.b
	b.mu.Lock()
	for {
		if b.cur != v {
			b.mu.Unlock()
			return 0, errBodyDetached
		}
		if v.off < b.read {
			if b.overflow.Load() {
				// Not reached: a view is handed out only while the
				// copy is whole, and only the current view drops it.
				b.mu.Unlock()
				return 0, errBodyDropped
			}
			n := copy(p, b.buf[v.off:])
			v.off += int64(n)
			b.mu.Unlock()
			if b.idle != nil {
				// Sent upstream at the pace the upstream takes it, as
				// the client's body is on the first attempt.
				b.idle.touch()
			}
			return n, nil
		}
		if b.srcDone.Load() {
			err := b.srcErr
			b.mu.Unlock()
			return 0, err
		}
		if !b.reading {
			break
		}
		// A detached view's Read of the client's body is in progress:
		// its bytes come next.
		b.srcRead.Wait()
	}
	b.reading = true
	b.mu.Unlock()

	n, err := b.src.Read(p)

	b.mu.Lock()
	defer b.mu.Unlock()
	b.reading = false
	b.srcRead.Broadcast()
	mine := b.cur == v
	if n > 0 {
		if !b.overflow.Load() {
			if mine && int64(len(b.buf)+n) > b.limit {
				b.overflow.Store(true)
				b.buf = nil
			} else {
				b.buf = append(b.buf, p[:n]...)
				b.kept.Store(int64(len(b.buf)))
			}
		}
		b.read += int64(n)
	}
	if err != nil {
		b.srcErr = err
		b.srcDone.Store(true)
	}
	if !mine {
		return 0, errBodyDetached
	}
	v.off = b.read
	return n, err
}

// Close does not close the downstream body, which the http.Server owns.
func (v *bodyView) Close() error { return nil }

// Received reports whether the whole body is kept, so that reading the
// view never waits for the client (bodyReceived: a fallback cluster's
// request body is a view).
func (v *bodyView) Received() bool { return v.b.complete() }

// release detaches the view: its later Reads fail without touching the
// shared state, and a Read in progress keeps what it reads for the next
// view. It does not wait for that Read.
func (v *bodyView) release() {
	b := v.b
	b.mu.Lock()
	if b.cur == v {
		b.cur = nil
	}
	b.mu.Unlock()
}
