package proxy

import (
	"context"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

func withRateLimit(rl config.RateLimit) func(*config.Route) {
	return func(r *config.Route) { r.RateLimit = &rl }
}

// rateLimited sends n GETs through h one after the other and returns how
// many were let through (200) and the last refusal.
func rateLimited(t *testing.T, h *harness, n int) (passed int, refused *http.Response) {
	t.Helper()
	for range n {
		resp, _ := do(t, h.h1, "GET", h.url("/"), nil)
		switch resp.StatusCode {
		case http.StatusOK:
			passed++
		case http.StatusTooManyRequests:
			refused = resp
		default:
			t.Fatalf("status %d, want 200 or 429", resp.StatusCode)
		}
	}
	return passed, refused
}

// A burst past max_tokens is answered 429 rate_limited, with the
// seconds until the next token, rounded up, in Retry-After, and never
// reaches the upstream; tokens come back as the injected clock moves,
// tokens_per_fill every fill_interval, and never more than max_tokens.
func TestRateLimitRefusesABurstPastMaxTokensUntilTheBucketRefills(t *testing.T) {
	a, got := countingUpstream(t)
	clock := &fakeClock{now: time.Unix(1e9, 0)}
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(a)},
		withRateLimit(config.RateLimit{MaxTokens: 3, TokensPerFill: 2, FillInterval: 4 * time.Second})),
		func(o *Options) { o.Now = clock.Now })

	passed, refused := rateLimited(t, h, 5)
	if passed != 3 || got.Load() != 3 {
		t.Fatalf("%d let through, %d upstream requests; want max_tokens 3", passed, got.Load())
	}
	if refused == nil || refused.Header.Get(HeaderError) != "rate_limited" {
		t.Fatalf("refusal %v, want 429 rate_limited", refused)
	}
	// One token every 2s (2 per 4s): the next comes 2s from now.
	if ra := refused.Header.Get("Retry-After"); ra != "2" {
		t.Fatalf("Retry-After %q, want 2", ra)
	}
	if v := counterValue(h.p.m.localByCode[ReasonRateLimited]); v != 2 {
		t.Fatalf("local_replies_total{reason=rate_limited} = %v, want 2", v)
	}
	if v := counterValue(h.p.m.requests.WithLabelValues("outbound", "all", "", "4xx")); v != 2 {
		t.Fatalf("the route's cluster=\"\" 4xx count is %v, want 2", v)
	}

	// 1.5s later the token is half made: the wait left, 0.5s, is
	// rounded up to a whole second.
	clock.Add(1500 * time.Millisecond)
	if _, refused = rateLimited(t, h, 1); refused == nil || refused.Header.Get("Retry-After") != "1" {
		t.Fatalf("1.5s in: %v, want a refusal with Retry-After 1", refused)
	}
	clock.Add(500 * time.Millisecond)
	if passed, _ = rateLimited(t, h, 2); passed != 1 {
		t.Fatalf("2s in: %d let through, want the one token made", passed)
	}
	// A full fill interval later: tokens_per_fill.
	clock.Add(4 * time.Second)
	if passed, _ = rateLimited(t, h, 3); passed != 2 {
		t.Fatalf("a fill_interval later: %d let through, want tokens_per_fill 2", passed)
	}
	// An hour idle fills the bucket, and only to max_tokens.
	clock.Add(time.Hour)
	if passed, _ = rateLimited(t, h, 5); passed != 3 {
		t.Fatalf("after an hour: %d let through, want max_tokens 3", passed)
	}
	if got.Load() != 3+1+2+3 {
		t.Fatalf("%d upstream requests, want only those let through", got.Load())
	}
}

// A gRPC call refused by the rate limit gets RESOURCE_EXHAUSTED in a
// trailers-only answer whose single header block carries Retry-After,
// as another sidecar's rate_limited_backoff reads it; the upstream never
// sees it.
func TestRateLimitAnswersGRPCResourceExhausted(t *testing.T) {
	svc := &testService{}
	cfg := grpcConfig(startGRPCServer(t, svc))
	cfg.Routes[0].RateLimit = &config.RateLimit{MaxTokens: 1, FillInterval: time.Minute}
	clock := &fakeClock{now: time.Unix(1e9, 0)}
	h := startProxy(t, cfg, func(o *Options) { o.Now = clock.Now })
	c := grpcClient(t, h.out)
	if _, err := c.UnaryCall(ctxT(t, 5*time.Second), &testpb.SimpleRequest{}); err != nil {
		t.Fatalf("first call: %v", err)
	}
	var hdr, trl metadata.MD
	_, err := c.UnaryCall(ctxT(t, 5*time.Second), &testpb.SimpleRequest{}, grpc.Header(&hdr), grpc.Trailer(&trl))
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || st.Message() != "local rate limit exceeded" {
		t.Fatalf("second call: %v %q, want RESOURCE_EXHAUSTED", st.Code(), st.Message())
	}
	// grpc-go hands a trailers-only answer's header block over as the
	// trailer, and no header.
	if len(hdr) != 0 || len(trl.Get("retry-after")) != 1 || trl.Get("retry-after")[0] != "60" ||
		trl.Get("x-outrigger-error")[0] != "rate_limited" {
		t.Fatalf("header %v, trailer %v; want a trailers-only answer with retry-after 60", hdr, trl)
	}
	if n := svc.calls.Load(); n != 1 {
		t.Fatalf("%d calls reached the upstream, want 1", n)
	}
	clock.Add(time.Minute)
	if _, err := c.UnaryCall(ctxT(t, 5*time.Second), &testpb.SimpleRequest{}); err != nil {
		t.Fatalf("a fill_interval later: %v", err)
	}
}

// A reload that leaves a route's rate_limit as it was keeps its bucket
// and the tokens left in it, so that a control plane's pushes do not
// each hand out another max_tokens; one that changes the rate_limit
// starts it full with the new setting, and one that removes it removes
// the limit and its gauge.
func TestRateLimitBucketAcrossReloads(t *testing.T) {
	a, _ := countingUpstream(t)
	clock := &fakeClock{now: time.Unix(1e9, 0)}
	rl := config.RateLimit{MaxTokens: 2, FillInterval: time.Hour}
	cfg := func(rl *config.RateLimit) *config.Config {
		c := simpleConfig(config.Cluster{Endpoints: eps(a)})
		c.Routes[0].RateLimit = rl
		// Another route before it, so that the kept bucket is found by
		// name, not by position.
		c.Routes = append([]config.Route{{Name: "other", Cluster: "svc",
			Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/other"}}}}, c.Routes...)
		return c
	}
	h := startProxy(t, cfg(&rl), func(o *Options) { o.Now = clock.Now })
	if passed, _ := rateLimited(t, h, 1); passed != 1 {
		t.Fatal("the first request was refused")
	}
	tokens := func() float64 {
		t.Helper()
		mfs, err := h.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "outrigger_proxy_rate_limit_tokens" {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		return -1
	}
	if v := tokens(); v != 1 {
		t.Fatalf("outrigger_proxy_rate_limit_tokens = %v, want 1", v)
	}

	same := rl
	if err := h.p.Apply(cfg(&same)); err != nil {
		t.Fatal(err)
	}
	if passed, _ := rateLimited(t, h, 3); passed != 1 {
		t.Fatalf("after a reload that kept the rate limit: %d let through, want the 1 token left", passed)
	}

	changed := config.RateLimit{MaxTokens: 2, TokensPerFill: 2, FillInterval: time.Hour}
	if err := h.p.Apply(cfg(&changed)); err != nil {
		t.Fatal(err)
	}
	if v := tokens(); v != 2 {
		t.Fatalf("after a reload that changed the rate limit: %v tokens, want a full bucket of 2", v)
	}
	if passed, _ := rateLimited(t, h, 3); passed != 2 {
		t.Fatalf("after a reload that changed the rate limit: %d let through, want 2", passed)
	}

	if err := h.p.Apply(cfg(nil)); err != nil {
		t.Fatal(err)
	}
	if passed, _ := rateLimited(t, h, 3); passed != 3 {
		t.Fatalf("after a reload that removed the rate limit: %d let through, want all", passed)
	}
	if v := tokens(); v != -1 {
		t.Fatalf("outrigger_proxy_rate_limit_tokens still exported (%v) for a route without a rate limit", v)
	}
	// And one that adds it again starts full.
	if err := h.p.Apply(cfg(&rl)); err != nil {
		t.Fatal(err)
	}
	if passed, _ := rateLimited(t, h, 3); passed != 2 {
		t.Fatalf("after a reload that added the rate limit again: %d let through, want 2", passed)
	}
}

// Requests that come together, over HTTP/1.1 and HTTP/2, on a frozen
// clock, are let through max_tokens and no more: the bucket is shared
// by every connection and goroutine without a lock.
func TestRateLimitConcurrentRequestsNeverPassMaxTokens(t *testing.T) {
	a, got := countingUpstream(t)
	clock := &fakeClock{now: time.Unix(1e9, 0)}
	const maxTokens, clients, each = 25, 16, 8
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(a)},
		withRateLimit(config.RateLimit{MaxTokens: maxTokens, TokensPerFill: maxTokens, FillInterval: time.Second})),
		func(o *Options) { o.Now = clock.Now })
	var passed, refused atomic.Int64
	run := func() {
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range clients {
			c := h.h1
			if i%2 == 1 {
				c = h.h2c
			}
			wg.Go(func() {
				<-start
				for range each {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					req, _ := http.NewRequestWithContext(ctx, "GET", h.url("/"), nil)
					resp, err := c.Do(req)
					if err != nil {
						cancel()
						t.Error(err)
						return
					}
					resp.Body.Close()
					cancel()
					switch resp.StatusCode {
					case http.StatusOK:
						passed.Add(1)
					case http.StatusTooManyRequests:
						refused.Add(1)
					default:
						t.Errorf("status %d", resp.StatusCode)
					}
				}
			})
		}
		close(start)
		wg.Wait()
	}
	run()
	if passed.Load() != maxTokens || refused.Load() != clients*each-maxTokens || got.Load() != maxTokens {
		t.Fatalf("%d let through, %d refused, %d upstream requests; want exactly max_tokens %d through",
			passed.Load(), refused.Load(), got.Load(), maxTokens)
	}
	// One interval later: another max_tokens, still no more.
	clock.Add(time.Second)
	passed.Store(0)
	run()
	if passed.Load() != maxTokens {
		t.Fatalf("the next interval let %d through, want %d", passed.Load(), maxTokens)
	}
}

// The bucket counts exactly when tokens_per_fill does not divide
// fill_interval into whole nanoseconds: three tokens a second come in a
// second, not two (as a rounded cost per token would make it).
func TestTokenBucketRefillsExactly(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	b := newTokenBucket(config.RateLimit{MaxTokens: 3, TokensPerFill: 3, FillInterval: time.Second}, t0)
	take := func(now time.Time, n int) (taken int, wait time.Duration) {
		for range n {
			ok, w := b.take(now)
			if ok {
				taken++
			} else {
				wait = w
			}
		}
		return taken, wait
	}
	if n, wait := take(t0, 4); n != 3 || wait != time.Second/3+1 {
		t.Fatalf("at the start: %d taken, wait %v; want 3 and 333.333334ms", n, wait)
	}
	if n, _ := take(t0.Add(time.Second), 4); n != 3 {
		t.Fatalf("a second later: %d taken, want 3", n)
	}
	// A third of a second is 333333333.3ns: the token is whole a
	// nanosecond after 333333333.
	if n, _ := take(t0.Add(time.Second+time.Second/3), 1); n != 0 {
		t.Fatalf("333333333ns after: %d taken, want 0", n)
	}
	if n, _ := take(t0.Add(time.Second+time.Second/3+1), 2); n != 1 {
		t.Fatalf("333333334ns after: %d taken, want 1", n)
	}
	// A clock set back before the bucket was made finds it as at base.
	if n, wait := take(t0.Add(-time.Hour), 1); n != 0 || wait <= 0 {
		t.Fatalf("a clock set back: %d taken, wait %v", n, wait)
	}
	for _, tc := range []struct {
		wait time.Duration
		want string
	}{{1, "1"}, {time.Second, "1"}, {time.Second + 1, "2"}, {59*time.Second + time.Millisecond, "60"}} {
		if got := retryAfterSeconds(tc.wait); got != tc.want {
			t.Errorf("retryAfterSeconds(%v) = %s, want %s", tc.wait, got, tc.want)
		}
	}
}

// The route's response_headers edits apply to a refusal, as to its other
// local replies, without overriding the reply's own headers; and the
// check runs after the route's fault: a request the fault aborted never
// reached the action and spends no token.
func TestRateLimitRunsAfterTheFaultAndTakesTheRouteEdits(t *testing.T) {
	a, got := countingUpstream(t)
	clock := &fakeClock{now: time.Unix(1e9, 0)}
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(a)},
		withRateLimit(config.RateLimit{MaxTokens: 1, FillInterval: time.Hour}),
		func(r *config.Route) {
			r.ResponseHeaders = config.HeaderMutation{Add: config.HeaderValues{
				{Name: "x-served-by", Value: "outrigger"}, {Name: "retry-after", Value: "999"}}}
		}),
		func(o *Options) { o.Now = clock.Now })
	resp, _ := do(t, h.h1, "GET", h.url("/"), nil)
	if resp.StatusCode != 200 || got.Load() != 1 {
		t.Fatalf("first request: %d, %d upstream requests", resp.StatusCode, got.Load())
	}
	resp, _ = do(t, h.h1, "GET", h.url("/"), nil)
	if resp.StatusCode != 429 || resp.Header.Get("x-served-by") != "outrigger" || resp.Header.Get("Retry-After") != "3600" {
		t.Fatalf("refusal: %d %v, want 429 with the route's edit and the reply's own retry-after 3600", resp.StatusCode, resp.Header)
	}

	// A fault that aborts every request: none spends a token, and once
	// it is gone the bucket has its one token still.
	clock.Add(time.Hour)
	abort := withFault(&config.Fault{Abort: &config.FaultAbort{HTTPStatus: 503, Percent: 100}})
	if err := h.p.Apply(simpleConfig(config.Cluster{Endpoints: eps(a)},
		withRateLimit(config.RateLimit{MaxTokens: 1, FillInterval: time.Hour}), abort)); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if resp, _ := do(t, h.h1, "GET", h.url("/"), nil); resp.StatusCode != 503 || resp.Header.Get(HeaderError) != "fault_abort" {
			t.Fatalf("under the fault: %d %q, want 503 fault_abort", resp.StatusCode, resp.Header.Get(HeaderError))
		}
	}
	if err := h.p.Apply(simpleConfig(config.Cluster{Endpoints: eps(a)},
		withRateLimit(config.RateLimit{MaxTokens: 1, FillInterval: time.Hour}))); err != nil {
		t.Fatal(err)
	}
	if resp, _ := do(t, h.h1, "GET", h.url("/"), nil); resp.StatusCode != 200 {
		t.Fatalf("after the fault: %d, want the token the aborted requests did not spend", resp.StatusCode)
	}
}

// An unnamed route is named by its index, which a reload that inserts
// a route before it gives to another route: that route, with the same
// rate_limit, does not take over the emptied bucket of the one that
// was there, which would refuse requests it never let through.
func TestRateLimitUnnamedRouteKeepsNoBucketOfAnotherRoute(t *testing.T) {
	a, _ := countingUpstream(t)
	clock := &fakeClock{now: time.Unix(1e9, 0)}
	rl := config.RateLimit{MaxTokens: 1, FillInterval: time.Hour}
	route := func(prefix string) config.Route {
		r := rl
		return config.Route{Cluster: "svc", RateLimit: &r,
			Match: config.RouteMatch{Path: config.PathMatch{Prefix: prefix}}}
	}
	cfg := simpleConfig(config.Cluster{Endpoints: eps(a)})
	cfg.Routes = []config.Route{route("/a")}
	h := startProxy(t, cfg, func(o *Options) { o.Now = clock.Now })
	get := func(path string) int {
		t.Helper()
		resp, _ := do(t, h.h1, "GET", h.url(path), nil)
		return resp.StatusCode
	}
	if s := get("/a"); s != http.StatusOK {
		t.Fatalf("/a: %d, want 200", s)
	}
	if s := get("/a"); s != http.StatusTooManyRequests {
		t.Fatalf("/a past its one token: %d, want 429", s)
	}

	cfg.Routes = []config.Route{route("/b"), route("/a")}
	if err := h.p.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if s := get("/b"); s != http.StatusOK {
		t.Fatalf("/b, new at routes[0] where /a was: %d, want 200 from a bucket of its own", s)
	}
	// The same routes again keep their buckets, emptied now.
	if err := h.p.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if s := get("/b"); s != http.StatusTooManyRequests {
		t.Fatalf("/b after a reload that kept it: %d, want 429", s)
	}
}

// Retry-After rounds the wait up to whole seconds, and stays a positive
// count for the longest wait waitFor gives (math.MaxInt64, a token too
// far to count), where adding the second less a nanosecond would wrap.
func TestRetryAfterSecondsRoundsUpWithoutOverflow(t *testing.T) {
	for _, c := range []struct {
		wait time.Duration
		want string
	}{
		{1, "1"},
		{20 * time.Millisecond, "1"},
		{time.Second, "1"},
		{time.Second + 1, "2"},
		{math.MaxInt64, "9223372037"},
	} {
		if got := retryAfterSeconds(c.wait); got != c.want {
			t.Errorf("retryAfterSeconds(%d) = %s, want %s", c.wait, got, c.want)
		}
	}
}

// A reload that writes tokens_per_fill as its default (1), where the
// serving configuration left it out (0 means 1), keeps the bucket: the
// rate limit is the same, and a control plane that spells its defaults
// out on one push and not on the next must not refill it.
func TestRateLimitBucketKeptWhenTokensPerFillIsWrittenAsItsDefault(t *testing.T) {
	a, _ := countingUpstream(t)
	clock := &fakeClock{now: time.Unix(1e9, 0)}
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(a)},
		withRateLimit(config.RateLimit{MaxTokens: 1, FillInterval: time.Hour})),
		func(o *Options) { o.Now = clock.Now })
	if passed, _ := rateLimited(t, h, 2); passed != 1 {
		t.Fatalf("%d let through, want 1", passed)
	}
	if err := h.p.Apply(simpleConfig(config.Cluster{Endpoints: eps(a)},
		withRateLimit(config.RateLimit{MaxTokens: 1, TokensPerFill: 1, FillInterval: time.Hour}))); err != nil {
		t.Fatal(err)
	}
	if passed, _ := rateLimited(t, h, 2); passed != 0 {
		t.Fatalf("after a reload that wrote tokens_per_fill's default: %d let through, want none: the bucket was refilled", passed)
	}
}
