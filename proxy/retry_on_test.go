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

// retriable_status_codes retries a listed status only when the cluster's
// failure classifier counts it as a failure (docs/proxy.md, Retries: the
// classifier has the last word): a 409 under the default classifier (5xx)
// is answered as it is; listed in failure_classifier.http_statuses, it is
// retried. Validation refuses the first config; Apply, which does not
// validate, holds to the classifier all the same.
func TestRetriableStatusCodesRetryOnlyWhatTheClassifierCallsAFailure(t *testing.T) {
	for _, tc := range []struct {
		name     string
		statuses []string
		want     int
	}{
		{"default classifier", nil, 409},
		{"409 a failure", []string{"5xx", "409"}, 200},
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
			cfg.Clusters["svc"] = c
			h := startProxy(t, cfg)
			// Round robin over two endpoints: at least one of two
			// requests starts on the one that answers 409.
			conflicts := int64(0)
			for i := 0; i < 2; i++ {
				resp, body := do(t, h.h1, "PUT", h.url("/"), []byte("x"))
				switch resp.StatusCode {
				case 409:
					conflicts++
				case 200:
				default:
					t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
				}
			}
			if conflict.n.Load() == 0 {
				t.Fatal("no request went to the endpoint that answers 409")
			}
			if tc.want == 409 {
				// Every 409 reached the client, and no request was sent twice.
				if conflicts != conflict.n.Load() || conflict.n.Load()+good.n.Load() != 2 {
					t.Fatalf("%d 409s answered, %d sent, %d to the good endpoint: the 409 was retried", conflicts, conflict.n.Load(), good.n.Load())
				}
			} else if conflicts != 0 || good.n.Load() != 2 {
				t.Fatalf("%d 409s answered, %d to the good endpoint: the 409 was not retried", conflicts, good.n.Load())
			}
		})
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
