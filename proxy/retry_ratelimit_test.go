package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/outrigger-mesh/outrigger/breaker"
	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// limited is an upstream that answers its first request 429 with the
// headers hdr(now) returns, and every later one 200 "ok"; it records
// when each request arrived.
type limited struct {
	hdr func(now time.Time) http.Header
	mu  sync.Mutex
	at  []time.Time
}

func (l *limited) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	now := time.Now()
	l.mu.Lock()
	l.at = append(l.at, now)
	n := len(l.at)
	l.mu.Unlock()
	if n > 1 {
		_, _ = io.WriteString(w, "ok")
		return
	}
	for k, vv := range l.hdr(now) {
		w.Header()[k] = vv
	}
	w.WriteHeader(http.StatusTooManyRequests)
	_, _ = io.WriteString(w, "slow down")
}

func (l *limited) arrivals() []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]time.Time(nil), l.at...)
}

// rateLimitedCfg routes to one endpoint whose classifier counts 429 as a
// failure, retrying 429 with rl.
func rateLimitedCfg(ep string, h2c bool, rl *config.RateLimitedBackoff, mod ...func(*config.Route)) *config.Config {
	cl := config.Cluster{Endpoints: eps(ep), FailureClassifier: breaker.ClassifierConfig{HTTPStatuses: []string{"5xx", "429"}}}
	if h2c {
		cl.Protocol = config.ProtocolHTTP2
	}
	return simpleConfig(cl, append([]func(*config.Route){func(r *config.Route) {
		r.Retry = &config.RetryPolicy{Attempts: 1, RetryOn: []config.RetryCondition{config.RetryOnRetriableStatusCodes},
			RetriableStatusCodes: []int{429}, RateLimitedBackoff: rl}
	}}, mod...)...)
}

var (
	retryAfter      = config.ResetHeader{Name: "Retry-After", Format: config.ResetHeaderSeconds}
	rateLimitReset  = config.ResetHeader{Name: "x-ratelimit-reset", Format: config.ResetHeaderUnixTimestamp}
	retryAfterFirst = &config.RateLimitedBackoff{ResetHeaders: []config.ResetHeader{retryAfter, rateLimitReset}}
)

// A retried response's reset header sets the wait before the retry: the
// retry comes no sooner than the time the header names, where the
// exponential back-off (25ms to 250ms by default) would have retried
// well before. Each form is tried: delay-seconds, an HTTP-date, a Unix
// timestamp in the second header of the list when the first is absent
// or does not parse.
func TestRateLimitedRetryWaitsUntilTheResetHeaderSays(t *testing.T) {
	cases := []struct {
		name string
		h2c  bool
		hdr  func(now time.Time) http.Header
		// until is the earliest the retry may arrive, given the first
		// attempt's arrival and the header sent.
		until func(first time.Time, h http.Header) time.Time
	}{
		{"delay-seconds over http1", false,
			func(time.Time) http.Header { return header("Retry-After", "1") },
			func(first time.Time, _ http.Header) time.Time { return first.Add(time.Second) }},
		{"HTTP-date over h2c", true,
			func(now time.Time) http.Header {
				return header("Retry-After", now.Add(2*time.Second).UTC().Format(http.TimeFormat))
			},
			func(_ time.Time, h http.Header) time.Time {
				at, _ := http.ParseTime(h.Get("Retry-After"))
				return at
			}},
		{"unix timestamp when Retry-After is absent", false,
			func(now time.Time) http.Header {
				return header("X-Ratelimit-Reset", strconv.FormatInt(now.Unix()+2, 10))
			},
			func(_ time.Time, h http.Header) time.Time {
				s, _ := strconv.ParseInt(h.Get("X-Ratelimit-Reset"), 10, 64)
				return time.Unix(s, 0)
			}},
		{"unix timestamp when Retry-After does not parse", true,
			func(now time.Time) http.Header {
				return header("Retry-After", "soon", "X-Ratelimit-Reset", strconv.FormatInt(now.Unix()+2, 10))
			},
			func(_ time.Time, h http.Header) time.Time {
				s, _ := strconv.ParseInt(h.Get("X-Ratelimit-Reset"), 10, 64)
				return time.Unix(s, 0)
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var sent atomic.Pointer[http.Header]
			up := &limited{hdr: func(now time.Time) http.Header {
				h := tc.hdr(now)
				sent.Store(&h)
				return h
			}}
			s := upstream(t, tc.h2c, up.ServeHTTP)
			h := startProxy(t, rateLimitedCfg(addr(s), tc.h2c, retryAfterFirst))
			resp, body := do(t, h.h1, "GET", h.url("/"), nil)
			if resp.StatusCode != 200 || body != "ok" {
				t.Fatalf("%d %q, want the retry's 200", resp.StatusCode, body)
			}
			at := up.arrivals()
			if len(at) != 2 {
				t.Fatalf("%d attempts, want 2", len(at))
			}
			if until := tc.until(at[0], *sent.Load()); at[1].Before(until) {
				t.Fatalf("retry came %v after the first attempt, %v before the time the reset header named",
					at[1].Sub(at[0]), until.Sub(at[1]))
			}
			if v := testutil.ToFloat64(h.p.m.retries.WithLabelValues("svc")); v != 1 {
				t.Fatalf("retries_total = %v, want 1", v)
			}
		})
	}
}

// A reset header that asks for more than max_interval, or for a wait
// that would reach the route deadline or outlast the route's idle
// timeout, ends the retries: the client gets the upstream's 429, with
// its Retry-After, not a retry made too early nor a local reply made
// after waiting in vain.
func TestRateLimitedRetryNotMadeWhenTheWaitIsTooLong(t *testing.T) {
	cases := []struct {
		name string
		rl   *config.RateLimitedBackoff
		hdr  http.Header
		mod  func(*config.Route)
	}{
		{"over max_interval", &config.RateLimitedBackoff{ResetHeaders: []config.ResetHeader{retryAfter}, MaxInterval: 10 * time.Second},
			header("Retry-After", "11"), nil},
		{"over the default max_interval", retryAfterFirst,
			header("Retry-After", "301"), nil},
		{"a number beyond any duration", retryAfterFirst,
			header("Retry-After", "99999999999999999999999"), nil},
		{"a reset time over max_interval", retryAfterFirst,
			header("X-Ratelimit-Reset", strconv.FormatInt(time.Now().Unix()+3600, 10)), nil},
		// The timeouts are seconds long: the 429 itself must come within
		// them on a loaded machine, these subtests running side by side.
		{"past the route deadline", retryAfterFirst,
			header("Retry-After", "5"), func(r *config.Route) { r.Timeout = 3 * time.Second }},
		{"past the route deadline with a per-try timeout", retryAfterFirst,
			header("Retry-After", "5"), func(r *config.Route) { r.Timeout, r.PerTryTimeout = 3*time.Second, 2*time.Second }},
		{"longer than the idle timeout", retryAfterFirst,
			header("Retry-After", "5"), func(r *config.Route) { r.IdleTimeout = 3 * time.Second }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			up := &limited{hdr: func(time.Time) http.Header { return tc.hdr }}
			s := upstream(t, false, up.ServeHTTP)
			var mod []func(*config.Route)
			if tc.mod != nil {
				mod = append(mod, tc.mod)
			}
			h := startProxy(t, rateLimitedCfg(addr(s), false, tc.rl, mod...))
			resp, body := do(t, h.h1, "GET", h.url("/"), nil)
			if resp.StatusCode != 429 || body != "slow down" {
				t.Fatalf("%d %q (x-outrigger-error %q), want the upstream's 429", resp.StatusCode, body, resp.Header.Get("X-Outrigger-Error"))
			}
			for k, vv := range tc.hdr {
				if got := resp.Header[k]; fmt.Sprint(got) != fmt.Sprint(vv) {
					t.Fatalf("%s: %q, want the upstream's %q", k, got, vv)
				}
			}
			if n := len(up.arrivals()); n != 1 {
				t.Fatalf("%d attempts, want 1", n)
			}
			if v := testutil.ToFloat64(h.p.m.retries.WithLabelValues("svc")); v != 0 {
				t.Fatalf("retries_total = %v, want 0", v)
			}
			c := h.p.snap.Load().clusters["svc"]
			if n := c.res.limits.Snapshot().InUse[breaker.LimitRetries]; n != 0 {
				t.Fatalf("%d retry budget slots held by a retry not made", n)
			}
		})
	}
}

// A response without a reset header that parses, or with one that names
// no wait (zero, a reset time already past), is retried after the
// exponential back-off: the injected random source is asked for the
// first retry's back-off ceiling, backoff.base.
func TestRateLimitedRetryFallsBackToTheBackoff(t *testing.T) {
	cases := []struct {
		name string
		hdr  http.Header
	}{
		{"no header", header()},
		{"not a number", header("Retry-After", "soon")},
		{"a fraction", header("Retry-After", "1.5")},
		{"a negative number", header("Retry-After", "-3")},
		{"zero", header("Retry-After", "0")},
		{"a reset time already past", header("X-Ratelimit-Reset", strconv.FormatInt(time.Now().Unix()-10, 10))},
		{"a date already past", header("Retry-After", "Sun, 06 Nov 1994 08:49:37 GMT")},
		{"a timestamp written as a date", header("X-Ratelimit-Reset", time.Now().Add(time.Hour).UTC().Format(http.TimeFormat))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			up := &limited{hdr: func(time.Time) http.Header { return tc.hdr }}
			s := upstream(t, false, up.ServeHTTP)
			var mu sync.Mutex
			var asked []time.Duration
			cfg := rateLimitedCfg(addr(s), false, retryAfterFirst, func(r *config.Route) {
				r.Retry.Backoff = config.Backoff{Base: 7 * time.Millisecond, Max: 70 * time.Millisecond}
			})
			h := startProxy(t, cfg, func(o *Options) {
				o.Int63n = func(n int64) int64 {
					mu.Lock()
					asked = append(asked, time.Duration(n))
					mu.Unlock()
					return 0
				}
			})
			resp, body := do(t, h.h1, "GET", h.url("/"), nil)
			if resp.StatusCode != 200 || body != "ok" || len(up.arrivals()) != 2 {
				t.Fatalf("%d %q after %d attempts, want the retry's 200", resp.StatusCode, body, len(up.arrivals()))
			}
			mu.Lock()
			defer mu.Unlock()
			// The round robin of one endpoint asks nothing of the source.
			if fmt.Sprint(asked) != fmt.Sprint([]time.Duration{7 * time.Millisecond}) {
				t.Fatalf("random source asked for %v, want the back-off ceiling [7ms]", asked)
			}
		})
	}
}

// rateLimitedService answers its first UnaryCall RESOURCE_EXHAUSTED,
// trailers-only, with retry-after in its one header block, and later
// calls as testService does. grpc-go sends metadata set as a header in
// a header block of its own, which makes the response not trailers-only
// (and so not retried); trailer metadata goes in the trailers-only block.
type rateLimitedService struct {
	testService
	mu sync.Mutex
	at []time.Time
}

func (s *rateLimitedService) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	s.mu.Lock()
	s.at = append(s.at, time.Now())
	first := len(s.at) == 1
	s.mu.Unlock()
	if first {
		_ = grpc.SetTrailer(ctx, metadata.Pairs("retry-after", "1"))
		return nil, status.Error(codes.ResourceExhausted, "quota")
	}
	return s.testService.UnaryCall(ctx, req)
}

// A gRPC call answered trailers-only with a status of a gRPC retry
// condition is retried after the wait its reset header names, as an
// HTTP response is.
func TestRateLimitedRetryOfAGRPCCall(t *testing.T) {
	svc := &rateLimitedService{}
	cfg := grpcConfig(startGRPCServer(t, svc))
	cfg.Routes[0].Retry = &config.RetryPolicy{Attempts: 1, RetryOn: []config.RetryCondition{config.RetryOnResourceExhausted},
		RateLimitedBackoff: &config.RateLimitedBackoff{ResetHeaders: []config.ResetHeader{{Name: "retry-after"}}}}
	h := startProxy(t, cfg)
	resp, err := grpcClient(t, h.out).UnaryCall(ctxT(t, 10*time.Second), &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("hi")}})
	if err != nil {
		t.Fatal(err)
	}
	if string(resp.GetPayload().GetBody()) != "hi" {
		t.Fatalf("payload %q", resp.GetPayload().GetBody())
	}
	svc.mu.Lock()
	at := append([]time.Time(nil), svc.at...)
	svc.mu.Unlock()
	if len(at) != 2 {
		t.Fatalf("%d attempts, want 2", len(at))
	}
	if d := at[1].Sub(at[0]); d < time.Second {
		t.Fatalf("retry came %v after the first attempt, before the 1s retry-after", d)
	}
}

// retryHeaderService answers its first UnaryCall with a header block of
// its own that carries x-upstream-retry, then a message and OK, as a
// gRPC server that says in its headers that another instance should take
// the call; later calls as testService does.
type retryHeaderService struct {
	testService
	calls atomic.Int32
}

func (s *retryHeaderService) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	if s.calls.Add(1) == 1 {
		if err := grpc.SendHeader(ctx, metadata.Pairs("x-upstream-retry", "please")); err != nil {
			return nil, err
		}
		return &testpb.SimpleResponse{Payload: &testpb.Payload{Body: []byte("stale")}}, nil
	}
	return s.testService.UnaryCall(ctx, req)
}

// A gRPC response that is not trailers-only, whose header block a
// retriable_headers matcher matches, is retried at its headers, as
// Envoy's router decides retriable-headers: its status is in trailers
// still to come, but the headers are enough for this condition.
func TestRetriableHeadersOfAGRPCResponseWithTrailers(t *testing.T) {
	svc := &retryHeaderService{}
	cfg := grpcConfig(startGRPCServer(t, svc))
	cfg.Routes[0].Retry = &config.RetryPolicy{Attempts: 1, AllowNonIdempotent: true,
		RetryOn:          []config.RetryCondition{config.RetryOnRetriableHeaders},
		RetriableHeaders: []config.HeaderMatch{{Name: "x-upstream-retry", Present: true}},
		Backoff:          config.Backoff{Base: time.Microsecond}}
	h := startProxy(t, cfg)
	var md metadata.MD
	resp, err := grpcClient(t, h.out).UnaryCall(ctxT(t, 10*time.Second), &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("hi")}}, grpc.Header(&md))
	if err != nil {
		t.Fatal(err)
	}
	if string(resp.GetPayload().GetBody()) != "hi" || len(md.Get("x-upstream-retry")) != 0 {
		t.Fatalf("payload %q, header %v: want the retry's answer", resp.GetPayload().GetBody(), md)
	}
	if n := svc.calls.Load(); n != 2 {
		t.Fatalf("%d calls upstream, want 2", n)
	}
	if s := h.p.snap.Load().clusters["grpc"].res.br.Snapshot(time.Now()); s.Failures != 0 {
		t.Errorf("breaker counted %d failures, want none", s.Failures)
	}
}
