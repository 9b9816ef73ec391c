package proxy

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// envoyHeaderNames are the headers envoyOverrides consumes.
var envoyHeaderNames = []string{hdrEnvoyTimeout, hdrEnvoyPerTryTimeout, hdrEnvoyMaxRetries,
	hdrEnvoyRetryOn, hdrEnvoyRetryGRPCOn, hdrEnvoyRetriableStatusCodes,
	hdrEnvoyRetriableHeaderNames, hdrEnvoyHedgeOnPerTryTimeout}

// What each Envoy header sets, what is ignored (values that do not
// parse, conditions of the other header or unknown), and that all of
// them leave the request, honored or not.
func TestEnvoyOverridesParse(t *testing.T) {
	routeRetry, err := compileRetry(config.RetryPolicy{Attempts: 2, RetryOn: []config.RetryCondition{"connect-failure"}})
	if err != nil {
		t.Fatal(err)
	}
	withRetry, without := &route{retry: routeRetry}, &route{}
	for _, tc := range []struct {
		name   string
		rt     *route
		h      map[string]string
		check  func(*testing.T, *requestOverrides)
		isNone bool
	}{
		{name: "none", rt: withRetry, h: map[string]string{"X-Other": "1"}, isNone: true},
		{name: "unparsable values only", rt: withRetry, h: map[string]string{hdrEnvoyTimeout: "soon", hdrEnvoyPerTryTimeout: "-5", hdrEnvoyMaxRetries: "x"}, isNone: true},
		{name: "timeouts", rt: without, h: map[string]string{hdrEnvoyTimeout: "250", hdrEnvoyPerTryTimeout: " 50 "}, check: func(t *testing.T, ov *requestOverrides) {
			if !ov.hasTimeout || ov.timeout != 250*time.Millisecond || !ov.hasPerTry || ov.perTry != 50*time.Millisecond || ov.retry != nil {
				t.Fatalf("%+v", ov)
			}
		}},
		{name: "timeouts 0 are none", rt: without, h: map[string]string{hdrEnvoyTimeout: "0", hdrEnvoyPerTryTimeout: "0"}, check: func(t *testing.T, ov *requestOverrides) {
			if !ov.hasTimeout || ov.timeout != 0 || !ov.hasPerTry || ov.perTry != 0 {
				t.Fatalf("%+v", ov)
			}
		}},
		{name: "conditions added to the route's", rt: withRetry, h: map[string]string{hdrEnvoyRetryOn: "5xx, unavailable, envoy-ratelimited", hdrEnvoyRetryGRPCOn: "internal,5xx"}, check: func(t *testing.T, ov *requestOverrides) {
			if ov.retry == nil || ov.retry.on != retryConnectFailure|retry5xx|retryEnvoyRateLimited|retryGRPCInternal || ov.retry.maxRetries != 2 {
				t.Fatalf("retry %+v", ov.retry)
			}
		}},
		{name: "max retries, capped", rt: withRetry, h: map[string]string{hdrEnvoyMaxRetries: "50"}, check: func(t *testing.T, ov *requestOverrides) {
			if ov.retry == nil || ov.retry.maxRetries != config.MaxRetryAttempts || ov.retry.on != retryConnectFailure {
				t.Fatalf("retry %+v", ov.retry)
			}
		}},
		{name: "max retries 0 turns the route's off", rt: withRetry, h: map[string]string{hdrEnvoyMaxRetries: "0"}, check: func(t *testing.T, ov *requestOverrides) {
			if ov.retry == nil || ov.retry.maxRetries != 0 {
				t.Fatalf("retry %+v", ov.retry)
			}
		}},
		{name: "max retries without a policy or conditions", rt: without, h: map[string]string{hdrEnvoyMaxRetries: "3"}, isNone: true},
		// Hedging is consumed, not honored.
		{name: "hedging", rt: withRetry, h: map[string]string{hdrEnvoyHedgeOnPerTryTimeout: "true"}, isNone: true},
		{name: "retriable header names", rt: withRetry, h: map[string]string{hdrEnvoyRetryOn: "retriable-headers", hdrEnvoyRetriableHeaderNames: "x-retry, bad name,x-again"}, check: func(t *testing.T, ov *requestOverrides) {
			r := ov.retry
			if r == nil || r.on != retryConnectFailure|retryRetriableHeaders || len(r.headers) != 2 ||
				r.headers[0] != (headerMatcher{name: "X-Retry", kind: headerPresent}) || r.headers[1] != (headerMatcher{name: "X-Again", kind: headerPresent}) {
				t.Fatalf("retry %+v", r)
			}
		}},
		{name: "conditions without a route policy", rt: without, h: map[string]string{hdrEnvoyRetryOn: "retriable-status-codes", hdrEnvoyRetriableStatusCodes: "409, 200, 429", hdrEnvoyMaxRetries: "3"}, check: func(t *testing.T, ov *requestOverrides) {
			r := ov.retry
			if r == nil || r.maxRetries != 3 || r.on != retryRetriableStatus || len(r.statuses) != 2 || r.statuses[0] != 409 || r.statuses[1] != 429 ||
				r.base != defaultBackoffBase || r.maxBuffered != defaultMaxBuffered {
				t.Fatalf("retry %+v", r)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tc.h {
				h.Set(k, v)
			}
			ov := envoyOverrides(h, tc.rt)
			if tc.isNone != (ov == nil) {
				t.Fatalf("overrides %+v", ov)
			}
			if tc.check != nil {
				tc.check(t, ov)
			}
			for _, k := range envoyHeaderNames {
				if _, ok := h[k]; ok {
					t.Errorf("%s left in the request", k)
				}
			}
			if tc.h["X-Other"] != "" && h.Get("X-Other") == "" {
				t.Error("another header was removed")
			}
			if tc.rt == withRetry && (withRetry.retry.on != retryConnectFailure || withRetry.retry.maxRetries != 2) {
				t.Fatalf("the route's policy was changed: %+v", withRetry.retry)
			}
		})
	}
}

// A request without Envoy headers costs no allocation.
func TestEnvoyOverridesWithoutHeadersAllocatesNothing(t *testing.T) {
	h := http.Header{"Accept": {"*/*"}, "User-Agent": {"x"}, "X-Request-Id": {"abc"}}
	rt := &route{}
	if n := testing.AllocsPerRun(100, func() {
		if envoyOverrides(h, rt) != nil {
			t.Fatal("overrides")
		}
	}); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}

// headerRecorder answers after delay (per call, in order; the last one
// repeats) with status, and records whether the call carried any of
// envoyHeaderNames.
type headerRecorder struct {
	delays   []time.Duration
	statuses []int
	calls    atomic.Int64
	sawEnvoy atomic.Bool
}

func (u *headerRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := int(u.calls.Add(1)) - 1
	for _, k := range envoyHeaderNames {
		if r.Header.Get(k) != "" {
			u.sawEnvoy.Store(true)
		}
	}
	d, st := u.delays[min(n, len(u.delays)-1)], u.statuses[min(n, len(u.statuses)-1)]
	select {
	case <-time.After(d):
	case <-r.Context().Done():
		return
	}
	w.WriteHeader(st)
	json.NewEncoder(w).Encode(n)
}

func envoyGet(t *testing.T, h *harness, url string, hdr map[string]string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := h.h1.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	return resp
}

// The outbound listener honors x-envoy-upstream-rq-timeout-ms, both ways
// (shorter than the route's: 504; 0 lifts a route timeout the upstream
// would pass), and removes it.
func TestEnvoyTimeoutHeaderHonoredOutbound(t *testing.T) {
	up := &headerRecorder{delays: []time.Duration{300 * time.Millisecond}, statuses: []int{200}}
	s := upstream(t, false, up.ServeHTTP)
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(s))}, func(r *config.Route) { r.Timeout = 100 * time.Millisecond }))

	if resp := envoyGet(t, h, h.url("/"), nil); resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("without the header: %d, want the route timeout's 504", resp.StatusCode)
	}
	if resp := envoyGet(t, h, h.url("/"), map[string]string{hdrEnvoyTimeout: "0"}); resp.StatusCode != 200 {
		t.Fatalf("x-envoy-upstream-rq-timeout-ms 0: %d, want 200 (no route timeout)", resp.StatusCode)
	}
	if resp := envoyGet(t, h, h.url("/"), map[string]string{hdrEnvoyTimeout: "5000"}); resp.StatusCode != 200 {
		t.Fatalf("x-envoy-upstream-rq-timeout-ms 5000: %d, want 200", resp.StatusCode)
	}
	if up.sawEnvoy.Load() {
		t.Fatal("the upstream was sent the header")
	}
}

// x-envoy-retry-on and x-envoy-max-retries make a route without a retry
// policy retry: two 503s, then the answer, in three attempts.
func TestEnvoyRetryHeadersRetry(t *testing.T) {
	up := &headerRecorder{delays: []time.Duration{0}, statuses: []int{503, 503, 200}}
	s := upstream(t, false, up.ServeHTTP)
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(s))}))

	resp := envoyGet(t, h, h.url("/"), map[string]string{hdrEnvoyRetryOn: "5xx", hdrEnvoyMaxRetries: "2"})
	if resp.StatusCode != 200 || up.calls.Load() != 3 {
		t.Fatalf("%d after %d calls, want 200 after 3", resp.StatusCode, up.calls.Load())
	}
	if up.sawEnvoy.Load() {
		t.Fatal("the upstream was sent the headers")
	}
	// Without them, the route does not retry.
	up.calls.Store(0)
	if resp := envoyGet(t, h, h.url("/"), nil); resp.StatusCode != 503 || up.calls.Load() != 1 {
		t.Fatalf("without the headers: %d after %d calls, want 503 after 1", resp.StatusCode, up.calls.Load())
	}
}

// x-envoy-upstream-rq-per-try-timeout-ms cuts a slow first attempt, which
// x-envoy-retry-on retries; one not under the route timeout is ignored.
// The per-try timeout is a second, which the retry is to be answered
// within: 100ms left a loaded machine under -race room to miss it.
func TestEnvoyPerTryTimeoutHeader(t *testing.T) {
	up := &headerRecorder{delays: []time.Duration{5 * time.Second, 0}, statuses: []int{200}}
	s := upstream(t, false, up.ServeHTTP)
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(s))}, func(r *config.Route) { r.Timeout = 10 * time.Second }))
	resp := envoyGet(t, h, h.url("/"), map[string]string{hdrEnvoyPerTryTimeout: "1000", hdrEnvoyRetryOn: "gateway-error"})
	if resp.StatusCode != 200 || up.calls.Load() != 2 {
		t.Fatalf("%d after %d calls, want 200 after 2", resp.StatusCode, up.calls.Load())
	}
	ov := envoyOverrides(http.Header{hdrEnvoyPerTryTimeout: {"20000"}}, &route{})
	f := &forwarding{r: httpRequest(t), rt: &route{timeout: 10 * time.Second}, ov: ov, c: &cluster{protocol: protoHTTP1}, p: h.p}
	if _, _, pt := f.routeDeadline(nil, time.Now()); pt != 0 {
		t.Fatalf("a per-try timeout over the route's applied: %v", pt)
	}
	f.releaseRouteCtx()
}

// With envoy_request_headers: ignore, and on the inbound listener, the
// headers are forwarded as any other and change nothing.
func TestEnvoyHeadersIgnored(t *testing.T) {
	up := &headerRecorder{delays: []time.Duration{0}, statuses: []int{503, 200}}
	s := upstream(t, false, up.ServeHTTP)
	cfg := simpleConfig(config.Cluster{Endpoints: eps(addr(s))})
	cfg.Listeners.Outbound.EnvoyRequestHeaders = config.EnvoyRequestHeadersIgnore
	cfg.Listeners.Inbound.App = addr(s)
	h := startProxy(t, cfg)
	hdr := map[string]string{hdrEnvoyRetryOn: "5xx", hdrEnvoyMaxRetries: "2"}
	if resp := envoyGet(t, h, h.url("/"), hdr); resp.StatusCode != 503 || up.calls.Load() != 1 || !up.sawEnvoy.Load() {
		t.Fatalf("ignored: %d after %d calls (upstream saw the headers: %v), want 503 after 1, forwarded", resp.StatusCode, up.calls.Load(), up.sawEnvoy.Load())
	}
	up.calls.Store(0)
	up.sawEnvoy.Store(false)
	if resp := envoyGet(t, h, "http://"+h.in+"/", hdr); resp.StatusCode != 503 || up.calls.Load() != 1 || !up.sawEnvoy.Load() {
		t.Fatalf("inbound: %d after %d calls (upstream saw the headers: %v), want 503 after 1, forwarded", resp.StatusCode, up.calls.Load(), up.sawEnvoy.Load())
	}
}

func httpRequest(t *testing.T) *http.Request {
	req, err := http.NewRequest("GET", "http://svc/", nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// The route's fallback cluster is the route as another cluster sees it
// (the same timeouts and retry policy), so it honors the request's Envoy
// headers as the primary did: x-envoy-upstream-rq-timeout-ms lifts the
// route timeout for it too, and x-envoy-retry-on with
// x-envoy-max-retries makes it retry.
func TestEnvoyHeadersHonoredByFallbackCluster(t *testing.T) {
	up := &headerRecorder{delays: []time.Duration{300 * time.Millisecond}, statuses: []int{200}}
	s := upstream(t, false, up.ServeHTTP)
	h := startProxy(t, fallbackConfig(refusedAddr(t), addr(s), &config.Fallback{Cluster: "spare"},
		func(r *config.Route) { r.Timeout = 100 * time.Millisecond }))
	if resp := envoyGet(t, h, h.url("/"), nil); resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("without the header: %d, want the route timeout's 504", resp.StatusCode)
	}
	if resp := envoyGet(t, h, h.url("/"), map[string]string{hdrEnvoyTimeout: "5000"}); resp.StatusCode != 200 ||
		resp.Header.Get(hdrFallback) != "upstream_connect_failure" {
		t.Fatalf("x-envoy-upstream-rq-timeout-ms 5000: %d (fallback %q), want the fallback's 200", resp.StatusCode, resp.Header.Get(hdrFallback))
	}

	retrying := &headerRecorder{delays: []time.Duration{0}, statuses: []int{503, 503, 200}}
	s2 := upstream(t, false, retrying.ServeHTTP)
	h2 := startProxy(t, fallbackConfig(refusedAddr(t), addr(s2), &config.Fallback{Cluster: "spare"}))
	resp := envoyGet(t, h2, h2.url("/"), map[string]string{hdrEnvoyRetryOn: "5xx", hdrEnvoyMaxRetries: "2"})
	if resp.StatusCode != 200 || retrying.calls.Load() != 3 {
		t.Fatalf("%d after %d calls of the fallback, want 200 after 3", resp.StatusCode, retrying.calls.Load())
	}
	if up.sawEnvoy.Load() || retrying.sawEnvoy.Load() {
		t.Fatal("the fallback cluster was sent the headers")
	}
}

// x-envoy-upstream-rq-per-try-timeout-ms 0, or one not under the route
// timeout, leaves the request without a per-try timeout, the route's
// included, as Envoy sets its per-try timeout to none then.
func TestEnvoyPerTryTimeoutHeaderNone(t *testing.T) {
	for _, v := range []string{"0", "20000"} {
		ov := envoyOverrides(http.Header{hdrEnvoyPerTryTimeout: {v}}, &route{})
		f := &forwarding{r: httpRequest(t), rt: &route{timeout: 10 * time.Second, perTryTimeout: time.Second},
			ov: ov, c: &cluster{protocol: protoHTTP1}, p: &Proxy{now: time.Now}}
		_, _, pt := f.routeDeadline(nil, time.Now())
		f.releaseRouteCtx()
		if pt != 0 || f.perTryTimeout() != 0 {
			t.Errorf("per-try %s: %v (%v for grpc-timeout), want none", v, pt, f.perTryTimeout())
		}
	}
}

// Whatever the headers say, envoyOverrides does not panic, removes every
// one of them (several lines of each included) and no other, leaves the
// route's policy alone, and makes overrides within bounds: a retry count
// of at most 10, conditions the headers may name, listed statuses within
// 400–599 and each at most once, whatever the length of the list.
func FuzzEnvoyOverrides(f *testing.F) {
	f.Add("250", "50", "3", "5xx,reset", "unavailable", "409, 503", "x-retry", true)
	f.Add(" 0 ", "0", "-1", ",,retriable-4xx ,", "internal\ncancelled", "400\n599,600,0,+409", "a b,,\x00", false)
	f.Add("99999999999999999999", "1e3", "4294967297", "retriable-headers", "5xx", strings.Repeat("409,", 300), strings.Repeat("x,", 100), true)
	f.Fuzz(func(t *testing.T, timeout, perTry, maxRetries, retryOn, grpcOn, codes, names string, policy bool) {
		h := http.Header{"X-Other": {"keep"}}
		for k, v := range map[string]string{hdrEnvoyTimeout: timeout, hdrEnvoyPerTryTimeout: perTry, hdrEnvoyMaxRetries: maxRetries,
			hdrEnvoyRetryOn: retryOn, hdrEnvoyRetryGRPCOn: grpcOn, hdrEnvoyRetriableStatusCodes: codes, hdrEnvoyRetriableHeaderNames: names} {
			for line := range strings.SplitSeq(v, "\n") {
				h.Add(k, line)
			}
		}
		rt := &route{}
		if policy {
			rt.retry = retryPolicy{maxRetries: 2, on: retryConnectFailure | retryRetriableStatus, statuses: []int{429}}
		}
		ov := envoyOverrides(h, rt)
		if len(h) != 1 || h.Get("X-Other") != "keep" {
			t.Fatalf("left %q", h)
		}
		if policy && (rt.retry.maxRetries != 2 || len(rt.retry.statuses) != 1) {
			t.Fatalf("the route's policy was changed: %+v", rt.retry)
		}
		if ov == nil {
			return
		}
		if ov.timeout < 0 || ov.timeout > time.Duration(maxEnvoyMillis)*time.Millisecond || ov.perTry < 0 {
			t.Fatalf("timeouts %+v", ov)
		}
		if r := ov.retry; r != nil {
			if r.maxRetries < 0 || r.maxRetries > config.MaxRetryAttempts || r.on&^(rt.retry.on|envoyRetryOnHTTP|envoyRetryOnGRPC) != 0 {
				t.Fatalf("retry %+v", r)
			}
			if len(r.headers) > len(rt.retry.headers)+maxEnvoyHeaderNames {
				t.Fatalf("%d retriable headers", len(r.headers))
			}
			for _, m := range r.headers {
				if m.kind != headerPresent || !httpguts.ValidHeaderFieldName(m.name) {
					t.Fatalf("retriable header %+v", m)
				}
			}
			seen := map[int]bool{}
			for _, c := range r.statuses {
				if c < 400 || c > 599 || seen[c] {
					t.Fatalf("statuses %v", r.statuses)
				}
				seen[c] = true
			}
		}
	})
}

// A mirrored copy is sent without the Envoy headers the outbound
// listener honored, as the primary is.
func TestEnvoyHeadersNotMirrored(t *testing.T) {
	primary := &headerRecorder{delays: []time.Duration{0}, statuses: []int{200}}
	shadow := &headerRecorder{delays: []time.Duration{0}, statuses: []int{200}}
	p, m := upstream(t, false, primary.ServeHTTP), upstream(t, false, shadow.ServeHTTP)
	h := startProxy(t, mirrorConfig(addr(p), addr(m), nil))
	if resp := envoyGet(t, h, h.url("/"), map[string]string{hdrEnvoyTimeout: "5000", hdrEnvoyRetryOn: "5xx"}); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	eventually(t, 10*time.Second, "the mirror's copy", func() bool { return shadow.calls.Load() > 0 })
	if primary.sawEnvoy.Load() || shadow.sawEnvoy.Load() {
		t.Fatalf("headers sent: primary %v, mirror %v", primary.sawEnvoy.Load(), shadow.sawEnvoy.Load())
	}
}

// x-envoy-retry-on: retriable-headers with x-envoy-retriable-header-names
// retries a response that has one of the named headers, on a route
// without a retry policy.
func TestEnvoyRetriableHeaderNamesRetry(t *testing.T) {
	var calls atomic.Int64
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.Header().Set("X-Try-Elsewhere", "1")
		}
		io.WriteString(w, "answer")
	})
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up))}))
	resp := envoyGet(t, h, h.url("/"), map[string]string{hdrEnvoyRetryOn: "retriable-headers", hdrEnvoyRetriableHeaderNames: "x-try-elsewhere"})
	if resp.StatusCode != 200 || resp.Header.Get("X-Try-Elsewhere") != "" || calls.Load() != 2 {
		t.Fatalf("%d %v after %d calls, want the second answer", resp.StatusCode, resp.Header, calls.Load())
	}
}

// BenchmarkEnvoyOverrides is the cost, on every request of the outbound
// listener, of looking for Envoy's request headers in one that has none.
func BenchmarkEnvoyOverrides(b *testing.B) {
	h := http.Header{"Accept": {"*/*"}, "User-Agent": {"h2load"}, "Accept-Encoding": {"gzip"}}
	rt := &route{}
	b.ReportAllocs()
	for b.Loop() {
		if envoyOverrides(h, rt) != nil {
			b.Fatal("overrides from a request without Envoy headers")
		}
	}
}

// A timeout or x-envoy-max-retries sent on more than one line is one
// value, its lines joined with commas, as Envoy's header map joins them:
// it does not parse and is ignored, as Envoy ignores it, and removed all
// the same. The route's timeout and retries apply.
func TestEnvoyHeaderOnSeveralLinesIsIgnored(t *testing.T) {
	up := &headerRecorder{delays: []time.Duration{300 * time.Millisecond}, statuses: []int{200}}
	s := upstream(t, false, up.ServeHTTP)
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(s))}, func(r *config.Route) { r.Timeout = 100 * time.Millisecond }))
	req, _ := http.NewRequest("GET", h.url("/"), nil)
	req.Header[hdrEnvoyTimeout] = []string{"5000", "5000"}
	resp, err := h.h1.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("x-envoy-upstream-rq-timeout-ms on two lines: %d, want the route timeout's 504", resp.StatusCode)
	}

	retrying := &headerRecorder{delays: []time.Duration{0}, statuses: []int{503, 200}}
	s2 := upstream(t, false, retrying.ServeHTTP)
	h2 := startProxy(t, retryCfg([]string{addr(s2)}, config.RetryPolicy{Attempts: 1, RetryOn: []config.RetryCondition{"5xx"},
		Backoff: config.Backoff{Base: time.Millisecond}}))
	req, _ = http.NewRequest("GET", h2.url("/"), nil)
	req.Header[hdrEnvoyMaxRetries] = []string{"0", "0"}
	resp, err = h2.h1.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if resp.StatusCode != 200 || retrying.calls.Load() != 2 {
		t.Fatalf("x-envoy-max-retries on two lines: %d after %d calls, want the route's retry: 200 after 2", resp.StatusCode, retrying.calls.Load())
	}
	if up.sawEnvoy.Load() || retrying.sawEnvoy.Load() {
		t.Fatal("the upstream was sent the headers")
	}
}
