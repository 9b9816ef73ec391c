package proxy

import (
	"fmt"
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
	}
	outcomes := []outcome{
		{"connect", failConnect, 0, -1},
		{"refused", failRefused, 0, -1},
		{"reset", failReset, 0, -1},
		{"timeout", failTimeout, 0, -1},
		{"409", failNone, 409, -1},
		{"500", failNone, 500, -1},
		{"501", failNone, 501, -1},
		{"502", failNone, 502, -1},
		{"503", failNone, 503, -1},
		{"504", failNone, 504, -1},
		{"200", failNone, 200, -1},
		{"grpc-cancelled", failNone, 200, grpcCanceled},
		{"grpc-deadline-exceeded", failNone, 200, grpcDeadlineExceeded},
		{"grpc-resource-exhausted", failNone, 200, grpcResourceExhausted},
		{"grpc-unavailable", failNone, 200, grpcUnavailable},
		{"grpc-internal", failNone, 200, grpcInternal},
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
	}
	if len(want) != len(retryOnNames) {
		t.Fatalf("%d conditions checked, %d known", len(want), len(retryOnNames))
	}
	for cond, retried := range want {
		rc := config.RetryPolicy{RetryOn: []config.RetryCondition{cond}}
		if cond == config.RetryOnRetriableStatusCodes {
			rc.RetriableStatusCodes = []int{409, 501}
		}
		p, err := compileRetry(rc)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, o := range outcomes {
			if p.retriable(o.kind, o.status, o.gs) {
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
		if p.retriable(o.kind, o.status, o.gs) {
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

// A listed status passes the classifier by only when it decides the
// outcome: not for a transport failure, nor for an answer whose gRPC
// status (other than OK) is what the classifier reads.
func TestListedStatusIsTheHTTPStatusThatDecides(t *testing.T) {
	p := retryPolicy{on: retryRetriableStatus, statuses: []int{409}}
	for _, c := range []struct {
		kind       failKind
		status, gs int
		want       bool
	}{
		{failNone, 409, -1, true},
		{failNone, 409, 0, true},
		{failNone, 409, 14, false},
		{failNone, 410, -1, false},
		{failReset, 0, -1, false},
	} {
		if got := p.listedStatus(c.kind, c.status, c.gs); got != c.want {
			t.Errorf("listedStatus(%v, %d, %d) = %v, want %v", c.kind, c.status, c.gs, got, c.want)
		}
	}
	if (&retryPolicy{on: retry5xx, statuses: []int{409}}).listedStatus(failNone, 409, -1) {
		t.Error("a 409 listed without retriable-status-codes in retry_on passes the classifier by")
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
