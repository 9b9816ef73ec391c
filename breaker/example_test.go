package breaker_test

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/outrigger-mesh/outrigger/breaker"
)

// A breaker that trips on three failures in a row, rejects while open, and
// closes again after a successful probe.
func Example() {
	br, err := breaker.New(breaker.Config{
		ConsecutiveFailures: breaker.ConsecutiveFailuresConfig{Threshold: 3},
		Open:                breaker.BackoffConfig{Base: 10 * time.Second},
		HalfOpen:            breaker.HalfOpenConfig{SuccessesToClose: 1},
	}, breaker.WithStateChangeHook(func(c breaker.StateChange) {
		fmt.Printf("%s -> %s (%s)\n", c.From, c.To, c.Reason)
	}))
	if err != nil {
		panic(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for range 3 {
		p, _ := br.Allow(now)
		p.Done(now, true) // each call failed at once (e.g. connection refused)
	}

	_, err = br.Allow(now.Add(time.Second))
	var oe *breaker.OpenError
	if errors.As(err, &oe) {
		fmt.Println("rejected:", breaker.RejectReason(err), "retry-after", oe.RetryAfter(now.Add(time.Second)))
	}

	p, _ := br.Allow(now.Add(10 * time.Second)) // the open period is over: a probe
	p.Done(now.Add(10*time.Second+5*time.Millisecond), false)
	fmt.Println("state:", br.State())
	// Output:
	// closed -> open (consecutive_failures)
	// rejected: open retry-after 9s
	// open -> half_open (open_period_over)
	// half_open -> closed (probes_succeeded)
	// state: closed
}

// A failure-rate breaker over a time window, with a slow-call policy.
func ExampleNew_failureRate() {
	br, err := breaker.New(breaker.Config{
		ConsecutiveFailures: breaker.ConsecutiveFailuresConfig{Disabled: true},
		FailureRate:         breaker.FailureRateConfig{Threshold: 0.5},
		SlowCalls:           breaker.SlowCallsConfig{DurationThreshold: time.Second, RateThreshold: 0.8},
		Window:              breaker.WindowConfig{Type: breaker.WindowTime, Duration: 10 * time.Second, Buckets: 10, MinimumCalls: 4},
	})
	if err != nil {
		panic(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, failed := range []bool{false, true, false, true} {
		t := now.Add(time.Duration(i) * time.Second)
		p, _ := br.Allow(t)
		p.Done(t.Add(10*time.Millisecond), failed)
	}
	s := br.Snapshot(now.Add(4 * time.Second))
	fmt.Printf("%s after %d calls, failure rate %.2f (%s)\n", s.State, s.Calls, s.FailureRate, s.Reason)
	// Output: open after 4 calls, failure rate 0.50 (failure_rate)
}

// Config errors name the key path; the config loader adds its prefix.
func ExampleConfig_Validate() {
	err := breaker.Config{
		FailureRate: breaker.FailureRateConfig{Threshold: 1.5},
		Window:      breaker.WindowConfig{Type: "sliding"},
	}.Validate()
	var fe breaker.FieldErrors
	if errors.As(err, &fe) {
		for _, e := range fe.WithPrefix("clusters.payments.circuit_breaker") {
			fmt.Println(e)
		}
	}
	// Output:
	// clusters.payments.circuit_breaker.failure_rate.threshold: must be in (0,1]
	// clusters.payments.circuit_breaker.window.type: must be "count" or "time", not "sliding"
}

// Resource limits fail fast with an error naming the limit.
func ExampleLimits() {
	l, err := breaker.NewLimits(breaker.LimitsConfig{MaxRequests: 2})
	if err != nil {
		panic(err)
	}
	for i := range 3 {
		if err := l.Acquire(breaker.LimitRequests); err != nil {
			fmt.Printf("request %d: x-outrigger-breaker: %s (%v)\n", i, breaker.RejectReason(err), err)
			continue
		}
		fmt.Printf("request %d: admitted\n", i)
	}
	l.Release(breaker.LimitRequests)
	fmt.Println("after a release:", l.Acquire(breaker.LimitRequests))
	// Output:
	// request 0: admitted
	// request 1: admitted
	// request 2: x-outrigger-breaker: max_requests (max_requests reached (2))
	// after a release: <nil>
}

// The classifier reads gRPC status from trailers (or from the headers of a
// trailers-only response).
func ExampleClassifier() {
	c, err := breaker.NewClassifier(breaker.ClassifierConfig{}) // the defaults
	if err != nil {
		panic(err)
	}
	header := http.Header{"Content-Type": {"application/grpc"}}
	trailer := http.Header{"Grpc-Status": {"14"}}
	for _, o := range []breaker.Outcome{
		{HTTPStatus: 200, GRPCStatus: breaker.ParseGRPCStatus(header, trailer)},
		{HTTPStatus: 404, GRPCStatus: -1},
		{HTTPStatus: 503, GRPCStatus: -1},
		{Transport: breaker.TransportConnectFailure, GRPCStatus: -1},
	} {
		v := c.Classify(o)
		fmt.Printf("%-22s failure=%-5v gateway=%v\n", v.Reason, v.Failure, v.Gateway)
	}
	// Output:
	// grpc_unavailable       failure=true  gateway=true
	// http_404               failure=false gateway=false
	// http_503               failure=true  gateway=true
	// connect_failure        failure=true  gateway=true
}

// Outlier ejection in a small pool: one endpoint of three is ejected after
// five failures in a row, and the load balancer is offered the other two.
func ExampleDetector() {
	d, err := breaker.NewDetector(breaker.OutlierConfig{}, 3)
	if err != nil {
		panic(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	fail := breaker.Verdict{Failure: true, Gateway: true, Reason: "http_503"}
	for range 5 {
		d.Record(1, now, fail)
	}
	fmt.Println("max ejected:", d.MaxEjected())
	fmt.Println("eligible:", d.Eligible(now, nil), "panic:", d.Panic(now))
	fmt.Println("after 30s:", d.Eligible(now.Add(30*time.Second), nil))
	// Output:
	// max ejected: 1
	// eligible: [0 2] panic: false
	// after 30s: [0 1 2]
}
