package proxy

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// The request headers of Envoy's router that set one request's timeouts
// and retries: apps written for an Envoy sidecar send them. The outbound
// listener honors them (its caller is the local app, as Envoy honors
// them from internal callers) unless listeners.outbound
// .envoy_request_headers is "ignore", and removes them from the request.
const (
	hdrEnvoyTimeout              = "X-Envoy-Upstream-Rq-Timeout-Ms"
	hdrEnvoyPerTryTimeout        = "X-Envoy-Upstream-Rq-Per-Try-Timeout-Ms"
	hdrEnvoyMaxRetries           = "X-Envoy-Max-Retries"
	hdrEnvoyRetryOn              = "X-Envoy-Retry-On"
	hdrEnvoyRetryGRPCOn          = "X-Envoy-Retry-Grpc-On"
	hdrEnvoyRetriableStatusCodes = "X-Envoy-Retriable-Status-Codes"
	// The response headers whose presence retriable-headers retries.
	hdrEnvoyRetriableHeaderNames = "X-Envoy-Retriable-Header-Names"
	// Consumed with the others, as Envoy's router removes every retry
	// header it reads (router/retry_state_impl.cc), but not honored: no
	// request is hedged.
	hdrEnvoyHedgeOnPerTryTimeout = "X-Envoy-Hedge-On-Per-Try-Timeout"

	// Response headers an upstream Envoy sets: its rate limiter refused
	// the request (retried under envoy-ratelimited only), or it is
	// overloaded (never retried).
	hdrEnvoyRateLimited = "X-Envoy-Ratelimited"
	hdrEnvoyOverloaded  = "X-Envoy-Overloaded"

	// maxEnvoyHeaderNames bounds the names a request adds to
	// retriable_headers, each matched against every response.
	maxEnvoyHeaderNames = 16

	// maxEnvoyMillis bounds a timeout header: a year.
	maxEnvoyMillis = int64(365 * 24 * time.Hour / time.Millisecond)
)

// The conditions x-envoy-retry-on and x-envoy-retry-grpc-on may name.
const (
	envoyRetryOnHTTP = retryConnectFailure | retryReset | retry5xx | retryGatewayError |
		retryRetriableStatus | retryRefusedStream | retryRetriable4xx | retryRetriableHeaders | retryEnvoyRateLimited
	envoyRetryOnGRPC = retryGRPCCancelled | retryGRPCDeadlineExceeded | retryGRPCResourceExhausted |
		retryGRPCUnavailable | retryGRPCInternal
)

// requestOverrides are what a request's Envoy headers set in place of its
// route's settings.
type requestOverrides struct {
	// timeout replaces the route timeout when hasTimeout (0: none, as
	// Envoy takes 0); perTry the per-try timeout when hasPerTry (0:
	// none, the route's included).
	timeout, perTry       time.Duration
	hasTimeout, hasPerTry bool
	// retry, when set, is the route's retry policy with the headers'
	// changes.
	retry *retryPolicy
}

// envoyOverrides reads the Envoy request headers of h, removing them,
// into the overrides of rt's settings they make; nil when h has none
// (the common case costs one pass over h's names). Values that do not
// parse are ignored, as Envoy ignores them, and removed all the same;
// conditions Outrigger does not know (reset-before-request) too. A
// header's lines are one value, joined with commas, as Envoy's header
// map joins them: the lists take every line's items, and a number on
// more than one line does not parse.
func envoyOverrides(h http.Header, rt *route) *requestOverrides {
	found := false
	for k := range h {
		if strings.HasPrefix(k, "X-Envoy-") {
			found = true
			break
		}
	}
	if !found {
		return nil
	}
	ov := &requestOverrides{}
	if ms, ok := envoyMillis(h[hdrEnvoyTimeout]); ok {
		ov.timeout, ov.hasTimeout = time.Duration(ms)*time.Millisecond, true
	}
	// 0 is none, replacing the route's, as Envoy takes it.
	if ms, ok := envoyMillis(h[hdrEnvoyPerTryTimeout]); ok {
		ov.perTry, ov.hasPerTry = time.Duration(ms)*time.Millisecond, true
	}
	var on retryOn
	for _, v := range h[hdrEnvoyRetryOn] {
		on |= envoyConditions(v, envoyRetryOnHTTP)
	}
	for _, v := range h[hdrEnvoyRetryGRPCOn] {
		on |= envoyConditions(v, envoyRetryOnGRPC)
	}
	// Each status once, the route's included: a header that repeats one
	// makes neither a list as long as the header nor a longer scan of
	// every response.
	var codes []int
	if vv := h[hdrEnvoyRetriableStatusCodes]; len(vv) > 0 {
		var seen [200]bool // 400–599
		for _, c := range rt.retry.statuses {
			if c >= 400 && c <= 599 { // as validated
				seen[c-400] = true
			}
		}
		for _, v := range vv {
			for f := range strings.SplitSeq(v, ",") {
				if c, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && c >= 400 && c <= 599 && !seen[c-400] {
					seen[c-400] = true
					codes = append(codes, c)
				}
			}
		}
	}
	// Each a presence matcher, as Envoy takes them, beside the route's
	// retriable_headers; names that are not field names are ignored.
	var names []headerMatcher
	for _, v := range h[hdrEnvoyRetriableHeaderNames] {
		for f := range strings.SplitSeq(v, ",") {
			n := strings.TrimSpace(f)
			if len(names) < maxEnvoyHeaderNames && httpguts.ValidHeaderFieldName(n) {
				names = append(names, headerMatcher{name: http.CanonicalHeaderKey(n), kind: headerPresent})
			}
		}
	}
	maxRetries, hasMax := -1, false
	if vv := h[hdrEnvoyMaxRetries]; len(vv) == 1 { // see envoyMillis
		if n, err := strconv.Atoi(strings.TrimSpace(vv[0])); err == nil && n >= 0 {
			maxRetries, hasMax = min(n, config.MaxRetryAttempts), true
		}
	}
	// A route without a retry policy retries only when the request names
	// conditions (Envoy: a policy or x-envoy-retry-on is needed); it then
	// gets the defaults of a retry block, one retry.
	if rp := &rt.retry; rp.maxRetries > 0 || on != 0 {
		if on != 0 || len(codes) > 0 || len(names) > 0 || hasMax {
			cp := *rp
			if rp.maxRetries == 0 {
				cp = retryPolicy{maxRetries: 1, base: defaultBackoffBase, max: 10 * defaultBackoffBase, maxBuffered: defaultMaxBuffered}
			}
			cp.on |= on
			if len(codes) > 0 {
				cp.statuses = append(append([]int(nil), rp.statuses...), codes...)
			}
			if len(names) > 0 {
				cp.headers = append(append([]headerMatcher(nil), rp.headers...), names...)
			}
			if hasMax {
				cp.maxRetries = maxRetries
			}
			ov.retry = &cp
		}
	}
	for _, k := range [...]string{hdrEnvoyTimeout, hdrEnvoyPerTryTimeout, hdrEnvoyMaxRetries, hdrEnvoyRetryOn, hdrEnvoyRetryGRPCOn,
		hdrEnvoyRetriableStatusCodes, hdrEnvoyRetriableHeaderNames, hdrEnvoyHedgeOnPerTryTimeout} {
		delete(h, k)
	}
	if !ov.hasTimeout && !ov.hasPerTry && ov.retry == nil {
		return nil
	}
	return ov
}

// envoyMillis parses vv, a header's lines, as a whole number of
// milliseconds, at most a year. A header on more than one line does not
// parse: Envoy's header map joins the lines with commas into one value
// (RFC 9110 §5.3), which is then no number.
func envoyMillis(vv []string) (int64, bool) {
	if len(vv) != 1 {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(vv[0]), 10, 64)
	if err != nil || n < 0 || n > maxEnvoyMillis {
		return 0, false
	}
	return n, true
}

// envoyConditions are the retry conditions of the comma-separated list
// v that are among allowed.
func envoyConditions(v string, allowed retryOn) retryOn {
	var on retryOn
	for f := range strings.SplitSeq(v, ",") {
		if bit, ok := retryOnNames[strings.TrimSpace(f)]; ok && bit&allowed != 0 {
			on |= bit
		}
	}
	return on
}

// retryPolicy is the request's retry policy: its Envoy headers' (see
// envoyOverrides), else its route's.
func (f *forwarding) retryPolicy() *retryPolicy {
	if f.ov != nil && f.ov.retry != nil {
		return f.ov.retry
	}
	return &f.rt.retry
}

// perTryTimeout is the request's per-try timeout: its Envoy header's
// when one applies (see routeDeadline), else its route's.
func (f *forwarding) perTryTimeout() time.Duration {
	if f.ov != nil && f.ov.hasPerTry {
		return f.ov.perTry
	}
	return f.rt.perTryTimeout
}
