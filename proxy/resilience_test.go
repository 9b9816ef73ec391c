package proxy

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/outrigger-mesh/outrigger/breaker"
	"github.com/outrigger-mesh/outrigger/proxy/config"
)

func breakerCluster(endpoints ...string) config.Cluster {
	return config.Cluster{
		Endpoints: eps(endpoints...),
		CircuitBreaker: breaker.Config{
			ConsecutiveFailures: breaker.ConsecutiveFailuresConfig{Threshold: 3},
			Open:                breaker.BackoffConfig{Base: time.Minute},
		},
		OutlierDetection: breaker.OutlierConfig{Disabled: true},
	}
}

func TestBreakerOpensAndFailsFast(t *testing.T) {
	bad := failing(500)
	up := upstream(t, false, bad.ServeHTTP)
	core, logs := observer.New(zap.WarnLevel)
	h := startProxy(t, simpleConfig(breakerCluster(addr(up))), func(o *Options) { o.Logger = zap.New(core) })
	for i := 0; i < 3; i++ {
		resp, _ := do(t, h.h1, "GET", h.url("/"), nil)
		if resp.StatusCode != 500 {
			t.Fatalf("call %d: %d", i, resp.StatusCode)
		}
	}
	resp, body := do(t, h.h1, "GET", h.url("/"), nil)
	if resp.StatusCode != 503 || resp.Header.Get("X-Outrigger-Breaker") != "open" || resp.Header.Get("X-Outrigger-Error") != "breaker_open" {
		t.Fatalf("after trip: %d %v %q", resp.StatusCode, resp.Header, body)
	}
	ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || ra < 1 || ra > 60 {
		t.Fatalf("retry-after %q", resp.Header.Get("Retry-After"))
	}
	if bad.n.Load() != 3 {
		t.Fatalf("upstream hit %d times; an open breaker must not call it", bad.n.Load())
	}
	if got := logs.FilterMessage("circuit breaker state change").FilterField(zap.String("cluster", "svc")).Len(); got != 1 {
		t.Fatalf("state change logs: %d", got)
	}
	if v := counterValue(h.p.bm.state.WithLabelValues("svc")); v != float64(breaker.StateOpen) {
		t.Fatalf("outrigger_breaker_state = %v", v)
	}
	if v := counterValue(h.p.bm.rejected.WithLabelValues("svc", "open")); v != 1 {
		t.Fatalf("rejected = %v", v)
	}
	cs := h.p.Clusters()
	if len(cs) != 1 || cs[0].Breaker.State != "open" || cs[0].Breaker.TimesOpened != 1 {
		t.Fatalf("Clusters() = %+v", cs)
	}
	if _, err := json.Marshal(cs); err != nil {
		t.Fatal(err)
	}

	// An operator reset closes it; the upstream is called again.
	if err := h.p.SetBreaker("svc", "reset"); err != nil {
		t.Fatal(err)
	}
	resp, _ = do(t, h.h1, "GET", h.url("/"), nil)
	if resp.StatusCode != 500 || bad.n.Load() != 4 {
		t.Fatalf("after reset: %d hits=%d", resp.StatusCode, bad.n.Load())
	}
	if err := h.p.SetBreaker("nope", "open"); err != ErrUnknownCluster {
		t.Fatalf("unknown cluster: %v", err)
	}
}

func TestBreakerStateSurvivesUnrelatedReload(t *testing.T) {
	up := upstream(t, false, failing(500).ServeHTTP)
	cfg := simpleConfig(breakerCluster(addr(up)))
	h := startProxy(t, cfg)
	if err := h.p.SetBreaker("svc", "open"); err != nil {
		t.Fatal(err)
	}
	cfg2 := simpleConfig(breakerCluster(addr(up)), func(r *config.Route) { r.Name = "renamed" })
	if err := h.p.Apply(cfg2); err != nil {
		t.Fatal(err)
	}
	resp, _ := do(t, h.h1, "GET", h.url("/"), nil)
	if resp.StatusCode != 503 || resp.Header.Get("X-Outrigger-Breaker") != "open" {
		t.Fatalf("forced-open breaker lost on reload: %d", resp.StatusCode)
	}
	if resp.Header.Get("Retry-After") != "" {
		t.Fatal("forced open has no known end: no retry-after")
	}
}

func TestBreakerOpenGRPCIsTrailersOnlyUnavailable(t *testing.T) {
	cfg := grpcConfig(startGRPCServer(t, &testService{}))
	cfg.Clusters["grpc"] = config.Cluster{Endpoints: cfg.Clusters["grpc"].Endpoints, Protocol: config.ProtocolGRPC}
	h := startProxy(t, cfg)
	if err := h.p.SetBreaker("grpc", "open"); err != nil {
		t.Fatal(err)
	}
	var tr metadata.MD
	_, err := grpcClient(t, h.out).UnaryCall(ctxT(t, 5*time.Second), &testpb.SimpleRequest{}, grpcTrailer(&tr))
	st := status.Convert(err)
	if st.Code() != codes.Unavailable || st.Message() != "circuit breaker open for cluster grpc" {
		t.Fatalf("%v %q", st.Code(), st.Message())
	}
	if v := tr.Get("x-outrigger-breaker"); len(v) != 1 || v[0] != "open" {
		t.Fatalf("trailers %v", tr)
	}
}

func TestBreakerTripsOnGRPCStatusInTrailers(t *testing.T) {
	cfg := grpcConfig(startGRPCServer(t, &testService{}))
	c := breakerCluster(cfg.Clusters["grpc"].Endpoints[0].Address)
	c.Protocol = config.ProtocolGRPC
	cfg.Clusters["grpc"] = c
	h := startProxy(t, cfg)
	client := grpcClient(t, h.out)
	// A server-streaming call that sent messages and then failed has its
	// status in the trailers: the classifier must see it after the body.
	for i := 0; i < 3; i++ {
		st, err := client.StreamingOutputCall(ctxT(t, 5*time.Second), &testpb.StreamingOutputCallRequest{
			ResponseParameters: []*testpb.ResponseParameters{{Size: 1}},
			ResponseStatus:     &testpb.EchoStatus{Code: int32(codes.Internal), Message: "late failure"},
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Recv(); err != nil {
			t.Fatalf("call %d first message: %v", i, err)
		}
		if _, err := st.Recv(); status.Code(err) != codes.Internal {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	eventually(t, 5*time.Second, "breaker open", func() bool { return h.p.Clusters()[0].Breaker.State == "open" })
}

func TestLimitOverflowMaxRequests(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
	})
	c := config.Cluster{Endpoints: eps(addr(up)), Limits: breaker.LimitsConfig{MaxRequests: 1}}
	h := startProxy(t, simpleConfig(c))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		resp, err := h.h1.Get(h.url("/"))
		if err == nil {
			resp.Body.Close()
		}
	}()
	<-entered
	resp, _ := do(t, h.h1, "GET", h.url("/"), nil)
	close(release)
	wg.Wait()
	if resp.StatusCode != 503 || resp.Header.Get("X-Outrigger-Breaker") != "max_requests" || resp.Header.Get("X-Outrigger-Error") != "overflow" {
		t.Fatalf("%d %v", resp.StatusCode, resp.Header)
	}
	if v := counterValue(h.p.bm.rejected.WithLabelValues("svc", "max_requests")); v != 1 {
		t.Fatalf("rejected{max_requests} = %v", v)
	}
}

func TestOutlierEjectionSkipsEndpointAndRetriesAvoidIt(t *testing.T) {
	bad, good := failing(503), echoing()
	a, b := upstream(t, false, bad.ServeHTTP), upstream(t, false, good.ServeHTTP)
	c := config.Cluster{
		Endpoints:        eps(addr(a), addr(b)),
		OutlierDetection: breaker.OutlierConfig{ConsecutiveGatewayFailure: 2, Consecutive5xx: 2, BaseEjectionTime: time.Minute, Interval: 20 * time.Millisecond},
		CircuitBreaker:   breaker.Config{Disabled: true},
	}
	h := startProxy(t, simpleConfig(c))
	for i := 0; i < 4; i++ {
		do(t, h.h1, "GET", h.url("/"), nil)
	}
	if bad.n.Load() != 2 {
		t.Fatalf("bad endpoint hit %d times before ejection, want 2", bad.n.Load())
	}
	for i := 0; i < 10; i++ {
		resp, _ := do(t, h.h1, "GET", h.url("/"), nil)
		if resp.StatusCode != 200 {
			t.Fatalf("request to ejected endpoint: %d", resp.StatusCode)
		}
	}
	if bad.n.Load() != 2 {
		t.Fatalf("ejected endpoint still receives traffic (%d)", bad.n.Load())
	}
	cs := h.p.Clusters()[0]
	if cs.Endpoints[0].State != "ejected" || cs.Endpoints[1].State != "healthy" || cs.Endpoints[0].TimesEjected != 1 {
		t.Fatalf("Clusters() endpoints %+v", cs.Endpoints)
	}
	if v := counterValue(h.p.bm.ejected.WithLabelValues("svc")); v != 1 {
		t.Fatalf("ejected gauge %v", v)
	}
	if v := counterValue(h.p.bm.ejections.WithLabelValues("svc")); v != 1 {
		t.Fatalf("ejections %v", v)
	}
}

func TestClassifierDecidesRetries(t *testing.T) {
	// 500 is not a failure for this cluster, so retry_on 5xx does not
	// retry it.
	bad, good := failing(500), echoing()
	a, b := upstream(t, false, bad.ServeHTTP), upstream(t, false, good.ServeHTTP)
	cfg := retryCfg([]string{addr(a), addr(b)}, config.RetryPolicy{Attempts: 2, RetryOn: []config.RetryCondition{"5xx"}})
	c := cfg.Clusters["svc"]
	c.FailureClassifier = breaker.ClassifierConfig{HTTPStatuses: []string{"none"}}
	cfg.Clusters["svc"] = c
	h := startProxy(t, cfg)
	resp, _ := do(t, h.h1, "GET", h.url("/"), nil)
	if resp.StatusCode != 500 || good.n.Load() != 0 {
		t.Fatalf("%d good=%d", resp.StatusCode, good.n.Load())
	}
}

func TestShutdownStopsOutlierEvaluator(t *testing.T) {
	p := New(Options{})
	if err := p.Apply(simpleConfig(config.Cluster{Endpoints: eps("127.0.0.1:1"), OutlierDetection: breaker.OutlierConfig{Interval: time.Millisecond}})); err != nil {
		t.Fatal(err)
	}
	ln, _ := netListen(t)
	done := make(chan error, 1)
	go func() { done <- p.Serve(ln, Outbound) }()
	eventually(t, 5*time.Second, "evaluation", func() bool {
		return !p.snap.Load().clusters["svc"].res.det.Snapshot(time.Now()).LastEvaluation.IsZero()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	<-done
	// goleak in TestMain checks the evaluator goroutine is gone.
}

// fakeClock is an injectable clock for Options.Now.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestBreakerHalfOpenProbeClosesOnInjectedClock(t *testing.T) {
	var fail atomic.Bool
	fail.Store(true)
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() {
			w.WriteHeader(503)
		}
	})
	clock := &fakeClock{now: time.Unix(1e9, 0)}
	c := breakerCluster(addr(up))
	c.CircuitBreaker.HalfOpen = breaker.HalfOpenConfig{MaxProbes: 1, SuccessesToClose: 1}
	c.CircuitBreaker.Open = breaker.BackoffConfig{Base: 10 * time.Second, Max: 10 * time.Second, Jitter: 0}
	h := startProxy(t, simpleConfig(c), func(o *Options) { o.Now = clock.Now })
	for i := 0; i < 3; i++ {
		do(t, h.h1, "GET", h.url("/"), nil)
	}
	resp, _ := do(t, h.h1, "GET", h.url("/"), nil)
	if resp.Header.Get("X-Outrigger-Breaker") != "open" || resp.Header.Get("Retry-After") != "10" {
		t.Fatalf("open: %d %v", resp.StatusCode, resp.Header)
	}
	clock.Add(11 * time.Second)
	fail.Store(false)
	resp, _ = do(t, h.h1, "GET", h.url("/"), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("probe: %d %v", resp.StatusCode, resp.Header)
	}
	if st := h.p.Clusters()[0].Breaker.State; st != "closed" {
		t.Fatalf("after a successful probe: %s", st)
	}
	if v := counterValue(h.p.bm.transitions.WithLabelValues("svc", "half_open")); v != 1 {
		t.Fatalf("transitions to half_open %v", v)
	}
}

func TestRemovedClusterClosesIdleConnections(t *testing.T) {
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {})
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up))}))
	readAll(t, mustGet(t, h.h1, h.url("/")))
	g := h.p.m.conns.WithLabelValues("svc", addr(up))
	if counterValue(g) != 1 {
		t.Fatalf("connections %v", counterValue(g))
	}
	if err := h.p.Apply(&config.Config{Routes: []config.Route{{Name: "d", DirectResponse: &config.DirectResponse{Status: 204}}}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "idle connection of the removed cluster closed", func() bool { return counterValue(g) == 0 })
}

// A rejected reload that would have replaced a cluster's breaker and
// detector leaves their gauges describing the serving ones.
func TestRejectedReloadKeepsBreakerGauges(t *testing.T) {
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {})
	cl := breakerCluster(addr(up))
	h := startProxy(t, simpleConfig(cl))
	if err := h.p.SetBreaker("svc", "open"); err != nil {
		t.Fatal(err)
	}
	if v := counterValue(h.p.bm.state.WithLabelValues("svc")); v != float64(breaker.StateForcedOpen) {
		t.Fatalf("outrigger_breaker_state = %v after forcing it open", v)
	}
	changed := cl
	changed.CircuitBreaker.ConsecutiveFailures.Threshold = 7
	changed.OutlierDetection = breaker.OutlierConfig{Consecutive5xx: 2}
	bad := simpleConfig(changed)
	bad.Routes = append(bad.Routes, config.Route{Name: "broken", Cluster: "missing"})
	if err := h.p.Apply(bad); err == nil {
		t.Fatal("a route to a missing cluster was accepted")
	}
	if v := counterValue(h.p.bm.state.WithLabelValues("svc")); v != float64(breaker.StateForcedOpen) {
		t.Fatalf("outrigger_breaker_state = %v after a rejected reload; the serving breaker is forced open", v)
	}
	// An accepted one with a new breaker publishes the new breaker's
	// state: forced open too, as the operator left it.
	if err := h.p.Apply(simpleConfig(changed)); err != nil {
		t.Fatal(err)
	}
	if v := counterValue(h.p.bm.state.WithLabelValues("svc")); v != float64(breaker.StateForcedOpen) {
		t.Fatalf("outrigger_breaker_state = %v after a new breaker took over from a forced-open one", v)
	}
	if err := h.p.SetBreaker("svc", "reset"); err != nil {
		t.Fatal(err)
	}
	if v := counterValue(h.p.bm.state.WithLabelValues("svc")); v != float64(breaker.StateClosed) {
		t.Fatalf("outrigger_breaker_state = %v after the reset", v)
	}
}

// An operator's override outlives a reload that changes the cluster's
// circuit_breaker block: the new breaker is forced as the old one was
// (an incident's forced-open breaker is not reopened to traffic by a
// config push), and only a reset ends it.
func TestForcedBreakerStateOutlivesItsReplacement(t *testing.T) {
	ok := echoing()
	up := upstream(t, false, ok.ServeHTTP)
	cl := breakerCluster(addr(up))
	h := startProxy(t, simpleConfig(cl))
	changed := cl
	changed.CircuitBreaker.ConsecutiveFailures.Threshold = 9

	if err := h.p.SetBreaker("svc", "open"); err != nil {
		t.Fatal(err)
	}
	if err := h.p.Apply(simpleConfig(changed)); err != nil {
		t.Fatal(err)
	}
	resp, _ := do(t, h.h1, "GET", h.url("/"), nil)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("X-Outrigger-Breaker") != "open" || resp.Header.Get("Retry-After") != "" {
		t.Fatalf("forced open, then a new breaker block: %d %v, want 503 open without retry-after", resp.StatusCode, resp.Header)
	}
	if st := h.p.Clusters()[0].Breaker; st.State != "forced_open" {
		t.Fatalf("/clusters says %q, want forced_open", st.State)
	}
	if n := ok.n.Load(); n != 0 {
		t.Fatalf("the upstream was reached %d times through a forced-open breaker", n)
	}

	// Forced closed, then back to the first block: still forced closed.
	if err := h.p.SetBreaker("svc", "closed"); err != nil {
		t.Fatal(err)
	}
	if err := h.p.Apply(simpleConfig(cl)); err != nil {
		t.Fatal(err)
	}
	if st := h.p.Clusters()[0].Breaker; st.State != "forced_closed" {
		t.Fatalf("/clusters says %q after the reload, want forced_closed", st.State)
	}
	if err := h.p.SetBreaker("svc", "reset"); err != nil {
		t.Fatal(err)
	}
	if err := h.p.Apply(simpleConfig(changed)); err != nil {
		t.Fatal(err)
	}
	if st := h.p.Clusters()[0].Breaker; st.State != "closed" {
		t.Fatalf("/clusters says %q after a reset and a reload, want closed", st.State)
	}
	resp, _ = do(t, h.h1, "GET", h.url("/"), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("after the reset: %d %v", resp.StatusCode, resp.Header)
	}
}

// A reload that rebuilds a cluster's outlier detector (its endpoints
// changed) carries an ejection over; the old detector, still asked by
// calls of the old snapshot, reports nothing more: the ejected gauge
// follows the serving detector alone. The old one reported the carried
// ejection's return as well, and the gauge dropped below zero.
func TestRetiredDetectorReportsNothing(t *testing.T) {
	bad := failing(503)
	a := upstream(t, false, bad.ServeHTTP)
	b, c := upstream(t, false, echoing().ServeHTTP), upstream(t, false, echoing().ServeHTTP)
	od := breaker.OutlierConfig{ConsecutiveGatewayFailure: 1, Consecutive5xx: 1, BaseEjectionTime: time.Minute, Interval: 20 * time.Millisecond}
	cfg := func(endpoints ...string) *config.Config {
		return simpleConfig(config.Cluster{Endpoints: eps(endpoints...), OutlierDetection: od, CircuitBreaker: breaker.Config{Disabled: true}})
	}
	h := startProxy(t, cfg(addr(a), addr(b)))
	gauge := func() float64 { return counterValue(h.p.bm.ejected.WithLabelValues("svc")) }
	for i := 0; i < 4 && bad.n.Load() == 0; i++ {
		do(t, h.h1, "GET", h.url("/"), nil)
	}
	eventually(t, 5*time.Second, "the ejection", func() bool { return gauge() == 1 })
	oldDet := h.p.snap.Load().clusters["svc"].res.det
	if err := h.p.Apply(cfg(addr(a), addr(b), addr(c))); err != nil {
		t.Fatal(err)
	}
	if g := gauge(); g != 1 {
		t.Fatalf("gauge %v after the reload, want the carried ejection: 1", g)
	}
	// A call of the old snapshot asks the old detector after the
	// ejection's end: it returns the endpoint there, and says nothing.
	oldDet.Panic(time.Now().Add(time.Hour))
	if g := gauge(); g != 1 {
		t.Fatalf("gauge %v after the old detector's return, want 1 (the serving detector's count)", g)
	}
}

// /clusters tells why a failing endpoint stays in: the detections an
// enforcing_* percentage left unacted on (consecutive_gateway_failure's,
// by default) and the ejections max_ejection_percent refused, beside
// the ejections and the cap; and the counts go on across a reload that
// builds a new detector. The detector counted them, but nothing showed
// them.
func TestClustersShowsOutlierOverflowsAndDetectionsNotEnforced(t *testing.T) {
	a, b := upstream(t, false, failing(503).ServeHTTP), upstream(t, false, failing(503).ServeHTTP)
	mk := func(base time.Duration) *config.Config {
		return simpleConfig(config.Cluster{
			Endpoints:        eps(addr(a), addr(b)),
			OutlierDetection: breaker.OutlierConfig{Consecutive5xx: 2, ConsecutiveGatewayFailure: 1, BaseEjectionTime: base},
			CircuitBreaker:   breaker.Config{Disabled: true},
		})
	}
	h := startProxy(t, mk(time.Minute))
	// a, b: a gateway failure each (detected, not enforced); a again:
	// ejected; b again: the cap (1 of 2) refuses.
	for range 4 {
		do(t, h.h1, "GET", h.url("/"), nil)
	}
	want := OutlierStatus{Ejected: 1, MaxEjected: 1, Ejections: 1, Overflows: 1, NotEnforced: 2}
	if got := h.p.Clusters()[0].Outlier; got != want {
		t.Fatalf("outlier %+v, want %+v", got, want)
	}
	if err := h.p.Apply(mk(2 * time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := h.p.Clusters()[0].Outlier; got != want {
		t.Fatalf("after a reload that changed outlier_detection: %+v, want %+v", got, want)
	}
}
