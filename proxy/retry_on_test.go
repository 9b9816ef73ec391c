package proxy

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/breaker"
	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// Each retry_on condition retries what docs/proxy.md (Retries) and
// docs/configuration.md (routes[].retry) say it does, and nothing else:
// the outcomes are a connect failure, a refused stream, a reset, a
// per-try timeout, HTTP statuses and the gRPC status of a trailers-only
// answer.
func TestRetryOnConditionsMatchTheirOutcomes(t *testing.T) {
	type outcome struct {
		name       string
		kind       failKind
		status, gs int
		h          http.Header
	}
	outcomes := []outcome{
		{"connect", failConnect, 0, -1, nil},
		{"refused", failRefused, 0, -1, nil},
		{"reset", failReset, 0, -1, nil},
		{"timeout", failTimeout, 0, -1, nil},
		{"409", failNone, 409, -1, nil},
		{"500", failNone, 500, -1, nil},
		{"501", failNone, 501, -1, nil},
		{"502", failNone, 502, -1, nil},
		{"503", failNone, 503, -1, nil},
		{"504", failNone, 504, -1, nil},
		{"200", failNone, 200, -1, nil},
		{"200-header", failNone, 200, -1, http.Header{"X-Retry": {"yes"}}},
		{"grpc-cancelled", failNone, 200, grpcCanceled, nil},
		{"grpc-deadline-exceeded", failNone, 200, grpcDeadlineExceeded, nil},
		{"grpc-resource-exhausted", failNone, 200, grpcResourceExhausted, nil},
		{"grpc-unavailable", failNone, 200, grpcUnavailable, nil},
		{"grpc-internal", failNone, 200, grpcInternal, nil},
		{"429-ratelimited", failNone, 429, -1, http.Header{"X-Envoy-Ratelimited": {"true"}}},
		{"503-ratelimited", failNone, 503, -1, http.Header{"X-Envoy-Ratelimited": {"true"}}},
	}
	want := map[config.RetryCondition][]string{
		"connect-failure":        {"connect"},
		"refused-stream":         {"refused"},
		"reset":                  {"refused", "reset"},
		"5xx":                    {"connect", "refused", "reset", "timeout", "500", "501", "502", "503", "504"},
		"gateway-error":          {"connect", "refused", "reset", "timeout", "502", "503", "504"},
		"retriable-status-codes": {"409", "501"},
		"cancelled":              {"grpc-cancelled"},
		"deadline-exceeded":      {"grpc-deadline-exceeded"},
		"resource-exhausted":     {"grpc-resource-exhausted"},
		"unavailable":            {"grpc-unavailable"},
		"internal":               {"grpc-internal"},
		"retriable-4xx":          {"409"},
		"retriable-headers":      {"200-header"},
		"envoy-ratelimited":      {"429-ratelimited", "503-ratelimited"},
	}
	if len(want) != len(retryOnNames) {
		t.Fatalf("%d conditions checked, %d known", len(want), len(retryOnNames))
	}
	for cond, retried := range want {
		rc := config.RetryPolicy{RetryOn: []config.RetryCondition{cond}}
		switch cond {
		case config.RetryOnRetriableStatusCodes:
			rc.RetriableStatusCodes = []int{409, 501}
		case config.RetryOnRetriableHeaders:
			rc.RetriableHeaders = []config.HeaderMatch{{Name: "x-retry", Exact: "yes"}}
		}
		p, err := compileRetry(rc)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, o := range outcomes {
			if p.retries(o.kind, o.status, o.gs, o.h, true) {
				got = append(got, o.name)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(retried) {
			t.Errorf("retry_on [%s] retries %v, want %v", cond, got, retried)
		}
	}
	// The default retry_on.
	p, err := compileRetry(config.RetryPolicy{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range outcomes {
		if p.retries(o.kind, o.status, o.gs, o.h, true) {
			got = append(got, o.name)
		}
	}
	if w := "[connect refused reset timeout 502 503 504 grpc-unavailable]"; fmt.Sprint(got) != w {
		t.Errorf("default retry_on retries %v, want %v", got, w)
	}
}

// retriable_status_codes retries a listed status whatever the cluster's
// failure classifier says of it, as Envoy's retries are apart from its
// outlier detection: a 409 under the default classifier (5xx) is
// retried, and the breaker and the outlier detector are told it
// succeeded, as the classifier says; listed in
// failure_classifier.http_statuses too, it is retried and counted a
// failure.
func TestRetriableStatusCodesRetryWhateverTheClassifierSays(t *testing.T) {
	for _, tc := range []struct {
		name     string
		statuses []string
		failure  bool // the classifier counts 409 a failure
	}{
		{"default classifier", nil, false},
		{"409 a failure", []string{"5xx", "409"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conflict, good := failing(409), echoing()
			a, b := upstream(t, false, conflict.ServeHTTP), upstream(t, false, good.ServeHTTP)
			cfg := retryCfg([]string{addr(a), addr(b)}, config.RetryPolicy{Attempts: 1,
				RetryOn:              []config.RetryCondition{"retriable-status-codes"},
				RetriableStatusCodes: []int{409}, Backoff: config.Backoff{Base: time.Microsecond}})
			c := cfg.Clusters["svc"]
			c.LBPolicy = config.LBRoundRobin
			c.FailureClassifier = breaker.ClassifierConfig{HTTPStatuses: tc.statuses}
			// No evaluation while the test runs, which would clear the
			// detector's counts; nor an ejection.
			c.OutlierDetection = breaker.OutlierConfig{Interval: time.Hour, Consecutive5xx: 100}
			cfg.Clusters["svc"] = c
			h := startProxy(t, cfg)
			// Round robin over two endpoints: at least one of two
			// requests starts on the one that answers 409.
			for i := 0; i < 2; i++ {
				if resp, body := do(t, h.h1, "PUT", h.url("/"), []byte("x")); resp.StatusCode != 200 {
					t.Fatalf("request %d: %d %q, want the retry's 200", i, resp.StatusCode, body)
				}
			}
			n := conflict.n.Load()
			if n == 0 || good.n.Load() != 2 {
				t.Fatalf("%d requests to the endpoint that answers 409, %d to the other; want some and 2", n, good.n.Load())
			}
			res := h.p.snap.Load().clusters["svc"].res
			wantFailures := int64(0)
			if tc.failure {
				wantFailures = n
			}
			if s := res.br.Snapshot(time.Now()); s.Calls != n+2 || s.Failures != wantFailures {
				t.Errorf("breaker counted %d failures of %d calls, want %d of %d", s.Failures, s.Calls, wantFailures, n+2)
			}
			wantSuccesses := uint64(n)
			if tc.failure {
				wantSuccesses = 0
			}
			if s := res.det.Snapshot(time.Now()).Endpoints[0]; s.IntervalRequests != uint64(n) || s.IntervalSuccesses != wantSuccesses {
				t.Errorf("outlier detector counted %d successes of %d requests to the 409 endpoint, want %d of %d", s.IntervalSuccesses, s.IntervalRequests, wantSuccesses, n)
			}
		})
	}
}

// retriable-4xx retries a 409, and retriable-headers a response with a
// header retriable_headers match (here a 200 that says so), both whatever
// the default classifier says of them, as Envoy's; the breaker is told
// the classifier's verdict (no failure).
func TestRetriable4xxAndRetriableHeaders(t *testing.T) {
	for _, tc := range []struct {
		name string
		bad  *counting
		rp   config.RetryPolicy
	}{
		{"retriable-4xx", failing(409), config.RetryPolicy{RetryOn: []config.RetryCondition{"retriable-4xx"}}},
		{"retriable-headers", &counting{fn: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Upstream-Retry", "please")
			w.Write([]byte("stale"))
		}}, config.RetryPolicy{RetryOn: []config.RetryCondition{"retriable-headers"},
			RetriableHeaders: []config.HeaderMatch{{Name: "x-upstream-retry", Prefix: "pl"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			good := echoing()
			a, b := upstream(t, false, tc.bad.ServeHTTP), upstream(t, false, good.ServeHTTP)
			tc.rp.Attempts = 1
			tc.rp.Backoff = config.Backoff{Base: time.Microsecond}
			cfg := retryCfg([]string{addr(a), addr(b)}, tc.rp)
			c := cfg.Clusters["svc"]
			c.LBPolicy = config.LBRoundRobin
			cfg.Clusters["svc"] = c
			h := startProxy(t, cfg)
			for i := 0; i < 2; i++ {
				if resp, body := do(t, h.h1, "GET", h.url("/"), nil); resp.StatusCode != 200 || resp.Header.Get("X-Upstream-Retry") != "" {
					t.Fatalf("request %d: %d %q, want the retry's 200", i, resp.StatusCode, body)
				}
			}
			if tc.bad.n.Load() == 0 || good.n.Load() != 2 {
				t.Fatalf("%d requests to the endpoint to retry, %d to the other; want some and 2", tc.bad.n.Load(), good.n.Load())
			}
			if s := h.p.snap.Load().clusters["svc"].res.br.Snapshot(time.Now()); s.Failures != 0 {
				t.Errorf("breaker counted %d failures, want none", s.Failures)
			}
		})
	}
}

// A listed status, a 409 under retriable-4xx and a header retriable_headers
// match pass the classifier by only when the HTTP answer decides the
// outcome: not for a transport failure, nor for an answer whose gRPC
// status (other than OK) is what the classifier reads; and only with
// their condition in retry_on.
func TestRetriedRegardlessOnlyWhenTheHTTPAnswerDecides(t *testing.T) {
	hm := headerMatcher{name: "X-Retry", kind: headerExact, value: "yes"}
	p := retryPolicy{on: retryRetriableStatus | retryRetriable4xx | retryRetriableHeaders, statuses: []int{429}, headers: []headerMatcher{hm}}
	yes := http.Header{"X-Retry": {"yes"}}
	no := http.Header{"X-Retry": {"no"}}
	for _, c := range []struct {
		kind       failKind
		status, gs int
		h          http.Header
		want       bool
	}{
		{failNone, 429, -1, nil, true},
		{failNone, 429, 0, nil, true},
		{failNone, 429, 14, nil, false},
		{failNone, 409, -1, nil, true},
		{failNone, 409, 14, nil, false},
		{failNone, 410, -1, nil, false},
		{failNone, 200, -1, yes, true},
		{failNone, 503, -1, yes, true},
		{failNone, 200, -1, no, false},
		{failNone, 200, 13, yes, false},
		{failReset, 0, -1, nil, false},
	} {
		if got := p.regardless(c.kind, c.status, c.gs, c.h); got != c.want {
			t.Errorf("regardless(%v, %d, %d, %v) = %v, want %v", c.kind, c.status, c.gs, c.h, got, c.want)
		}
	}
	if (&retryPolicy{on: retry5xx, statuses: []int{409}, headers: []headerMatcher{hm}}).regardless(failNone, 409, -1, yes) {
		t.Error("a 409 or a header retried without their conditions in retry_on")
	}
}

// The methods retried without allow_non_idempotent are RFC 9110's
// idempotent ones (§9.2.2): the safe methods and PUT, DELETE.
func TestIdempotentMethodsAreRFC9110s(t *testing.T) {
	var got []string
	for _, m := range []string{"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE", "POST", "PATCH", "CONNECT", "PROPFIND", "get"} {
		if idempotent(m) {
			got = append(got, m)
		}
	}
	if w := "[GET HEAD OPTIONS TRACE PUT DELETE]"; fmt.Sprint(got) != w {
		t.Fatalf("idempotent: %v, want %v", got, w)
	}
}

// A response retried whatever the classifier says (a 409 under
// retriable-4xx, a header retriable_headers match) that is not retried
// after all (here a POST without allow_non_idempotent) goes to the
// client, and is reported as any answer that goes there: once its body
// is copied. The classifier calls the 409 a success, but its body, cut
// short by the upstream, makes it a failure for the breaker and the
// outlier detector, as it is without the retry policy.
func TestResponseRetriedRegardlessButNotRetriedCountsItsBody(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		rp     config.RetryPolicy
	}{
		{"retriable-4xx", 409, config.RetryPolicy{RetryOn: []config.RetryCondition{"retriable-4xx"}}},
		{"retriable-headers", 200, config.RetryPolicy{RetryOn: []config.RetryCondition{"retriable-headers"},
			RetriableHeaders: []config.HeaderMatch{{Name: "x-upstream-retry", Present: true}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := &counting{fn: func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				w.Header().Set("X-Upstream-Retry", "1")
				w.Header().Set("Content-Length", "1000")
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte("partial"))
				w.(http.Flusher).Flush()
				if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
					c.Close()
				}
			}}
			s := upstream(t, false, up.ServeHTTP)
			tc.rp.Attempts = 1
			cfg := retryCfg([]string{addr(s)}, tc.rp)
			c := cfg.Clusters["svc"]
			c.OutlierDetection = breaker.OutlierConfig{Interval: time.Hour, Consecutive5xx: 100}
			cfg.Clusters["svc"] = c
			h := startProxy(t, cfg)
			req, _ := http.NewRequest("POST", h.url("/"), strings.NewReader("x"))
			if resp, err := h.h1.Do(req); err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err == nil {
					t.Fatalf("%d with its whole body, want it cut short", resp.StatusCode)
				}
			}
			if n := up.n.Load(); n != 1 {
				t.Fatalf("%d calls, want 1 (a POST is not retried)", n)
			}
			res := h.p.snap.Load().clusters["svc"].res
			eventually(t, 5*time.Second, "the call reported", func() bool { return res.br.Snapshot(time.Now()).Calls == 1 })
			if s := res.br.Snapshot(time.Now()); s.Failures != 1 {
				t.Errorf("breaker counted %d failures of %d calls, want the cut body's 1", s.Failures, s.Calls)
			}
			if s := res.det.Snapshot(time.Now()).Endpoints[0]; s.IntervalRequests != 1 || s.IntervalSuccesses != 0 {
				t.Errorf("outlier detector counted %d successes of %d requests, want 0 of 1", s.IntervalSuccesses, s.IntervalRequests)
			}
		})
	}
}

// A response an upstream Envoy's rate limiter refused (x-envoy-ratelimited)
// is retried under envoy-ratelimited, whatever the classifier says, and
// under no other condition, as Envoy's router decides: a 503 with the
// header is the answer under gateway-error, and a 429 with it is
// retried elsewhere under envoy-ratelimited.
func TestEnvoyRateLimitedResponses(t *testing.T) {
	for _, tc := range []struct {
		name    string
		status  int
		on      []config.RetryCondition
		retried bool
	}{
		{"gateway-error", http.StatusServiceUnavailable, []config.RetryCondition{"gateway-error"}, false},
		{"envoy-ratelimited", http.StatusTooManyRequests, []config.RetryCondition{"envoy-ratelimited"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			limited := &counting{fn: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Envoy-Ratelimited", "true")
				w.WriteHeader(tc.status)
			}}
			good := echoing()
			a, b := upstream(t, false, limited.ServeHTTP), upstream(t, false, good.ServeHTTP)
			cfg := retryCfg([]string{addr(a), addr(b)}, config.RetryPolicy{Attempts: 1, RetryOn: tc.on,
				Backoff: config.Backoff{Base: time.Microsecond}})
			c := cfg.Clusters["svc"]
			c.LBPolicy = config.LBRoundRobin
			cfg.Clusters["svc"] = c
			h := startProxy(t, cfg)
			for i := 0; i < 2; i++ {
				resp, body := do(t, h.h1, "GET", h.url("/"), nil)
				limitedAnswer := resp.StatusCode == tc.status && resp.Header.Get("X-Envoy-Ratelimited") != ""
				if tc.retried && (resp.StatusCode != 200 || limitedAnswer) {
					t.Fatalf("request %d: %d %q, want the retry's 200", i, resp.StatusCode, body)
				}
				if !tc.retried && resp.StatusCode != 200 && !limitedAnswer {
					t.Fatalf("request %d: %d %q, want the limited answer or the other endpoint's 200", i, resp.StatusCode, body)
				}
			}
			// Round robin: without retries the two requests go one to
			// each endpoint; with them, each retry of the limited
			// endpoint's answer goes to the other.
			if tc.retried {
				if limited.n.Load() == 0 || good.n.Load() != 2 {
					t.Fatalf("%d requests to the limited endpoint, %d to the other; want some and 2", limited.n.Load(), good.n.Load())
				}
			} else if limited.n.Load() != 1 || good.n.Load() != 1 {
				t.Fatalf("%d requests to the limited endpoint, %d to the other; want 1 and 1 (no retry)", limited.n.Load(), good.n.Load())
			}
		})
	}
}
