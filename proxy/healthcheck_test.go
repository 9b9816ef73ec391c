package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	grpchealth "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/outrigger-mesh/outrigger/breaker"
	"github.com/outrigger-mesh/outrigger/proxy/config"
	"github.com/outrigger-mesh/outrigger/proxy/health"
)

// healthyBackend answers "name" on every path but /healthz, whose status
// is whatever status holds.
type healthyBackend struct {
	name   string
	status atomic.Int32
	hits   atomic.Int64 // requests other than health checks
	checks atomic.Int64
	agent  atomic.Value // User-Agent of the last check
}

func newHealthyBackend(t *testing.T, name string) (*healthyBackend, string) {
	b := &healthyBackend{name: name}
	b.status.Store(200)
	s := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			b.checks.Add(1)
			b.agent.Store(r.UserAgent())
			w.WriteHeader(int(b.status.Load()))
			return
		}
		b.hits.Add(1)
		w.Write([]byte(b.name))
	})
	return b, addr(s)
}

// fastHealthCheck checks every 20 ms, one check deciding the endpoint's
// state. Its timeout is long enough that a check of a backend that
// answers is never cut on a loaded machine: one cut would turn the
// endpoint unhealthy and steer the test's requests away from it.
func fastHealthCheck() *config.HealthCheck {
	return &config.HealthCheck{
		Interval: 20 * time.Millisecond, Timeout: 10 * time.Second,
		HealthyThreshold: 1, UnhealthyThreshold: 1,
		HTTP: &config.HTTPHealthCheck{Path: "/healthz"},
	}
}

func endpointState(h *harness, cluster, ep string) EndpointStatus {
	for _, c := range h.p.Clusters() {
		if c.Name != cluster {
			continue
		}
		for _, e := range c.Endpoints {
			if e.Address == ep {
				return e
			}
		}
	}
	return EndpointStatus{}
}

// An endpoint that fails its check gets no requests; once it passes again
// it is balanced to again. States, metrics and logs say so.
func TestHealthCheckKeepsTrafficOffFailingEndpoint(t *testing.T) {
	a, aAddr := newHealthyBackend(t, "a")
	b, bAddr := newHealthyBackend(t, "b")
	core, logs := observer.New(zap.InfoLevel)
	cl := config.Cluster{Endpoints: eps(aAddr, bAddr), HealthCheck: fastHealthCheck(),
		OutlierDetection: breaker.OutlierConfig{Disabled: true}}
	h := startProxy(t, simpleConfig(cl), func(o *Options) { o.Logger = zap.New(core) })

	eventually(t, 5*time.Second, "both endpoints checked", func() bool {
		ea, eb := endpointState(h, "svc", aAddr), endpointState(h, "svc", bAddr)
		return ea.HealthCheck != nil && ea.HealthCheck.Checked && eb.HealthCheck != nil && eb.HealthCheck.Checked
	})
	if ua, _ := a.agent.Load().(string); ua != "outrigger-health-check" {
		t.Errorf("check User-Agent %q", ua)
	}

	b.status.Store(503)
	eventually(t, 5*time.Second, "b unhealthy", func() bool { return endpointState(h, "svc", bAddr).State == "unhealthy" })
	if e := endpointState(h, "svc", bAddr); e.HealthCheck.Healthy || !strings.Contains(e.HealthCheck.LastError, "503") {
		t.Fatalf("b status %+v", e.HealthCheck)
	}
	// The gauge and the log follow the state change on the checker's
	// goroutine.
	eventually(t, 5*time.Second, "the gauge at 1", func() bool {
		return counterValue(h.p.hm.unhealthy.WithLabelValues("svc")) == 1
	})
	eventually(t, 5*time.Second, "the fail log", func() bool {
		return logs.FilterMessage("endpoint fails its health check").FilterField(zap.String("endpoint", bAddr)).Len() == 1
	})
	hitsB := b.hits.Load()
	for i := 0; i < 20; i++ {
		resp := mustGet(t, h.h1, h.url("/x"))
		if body := readAll(t, resp); resp.StatusCode != 200 || body != "a" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if b.hits.Load() != hitsB {
		t.Fatalf("the failing endpoint got %d requests", b.hits.Load()-hitsB)
	}

	b.status.Store(200)
	eventually(t, 5*time.Second, "b healthy again", func() bool { return endpointState(h, "svc", bAddr).State == "healthy" })
	eventually(t, 5*time.Second, "b balanced to again", func() bool {
		readAll(t, mustGet(t, h.h1, h.url("/x")))
		return b.hits.Load() > hitsB
	})
	eventually(t, 5*time.Second, "the gauge back at 0", func() bool {
		return counterValue(h.p.hm.unhealthy.WithLabelValues("svc")) == 0
	})
	if counterValue(h.p.hm.checks.WithLabelValues("svc", "failure", "status")) < 1 || counterValue(h.p.hm.checks.WithLabelValues("svc", "success", "")) < 2 {
		t.Fatal("outrigger_health_checks_total not counted")
	}
	eventually(t, 5*time.Second, "the pass log", func() bool {
		return logs.FilterMessage("endpoint passes its health check").FilterField(zap.String("endpoint", bAddr)).Len() == 1
	})
	if _, err := json.Marshal(h.p.Clusters()); err != nil {
		t.Fatal(err)
	}
}

// A 503 is an answer that says the endpoint is unhealthy: it leaves the
// rotation at its next check, whatever unhealthy_threshold (1000 checks
// 20ms apart would take 20s).
func TestHealthCheckStatusAnswerEjectsAtOnce(t *testing.T) {
	a, aAddr := newHealthyBackend(t, "a")
	b, bAddr := newHealthyBackend(t, "b")
	hc := fastHealthCheck()
	hc.UnhealthyThreshold = 1000
	cl := config.Cluster{Endpoints: eps(aAddr, bAddr), HealthCheck: hc,
		OutlierDetection: breaker.OutlierConfig{Disabled: true}}
	h := startProxy(t, simpleConfig(cl))
	eventually(t, 5*time.Second, "both endpoints checked", func() bool {
		ea, eb := endpointState(h, "svc", aAddr), endpointState(h, "svc", bAddr)
		return ea.HealthCheck != nil && ea.HealthCheck.Checked && eb.HealthCheck != nil && eb.HealthCheck.Checked
	})

	b.status.Store(503)
	eventually(t, 5*time.Second, "b unhealthy", func() bool { return endpointState(h, "svc", bAddr).State == "unhealthy" })
	hitsA, hitsB := a.hits.Load(), b.hits.Load()
	for i := 0; i < 10; i++ {
		resp := mustGet(t, h.h1, h.url("/x"))
		if body := readAll(t, resp); resp.StatusCode != 200 || body != "a" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if b.hits.Load() != hitsB || a.hits.Load() != hitsA+10 {
		t.Fatalf("requests while b fails: a %d, b %d, want 10 and 0", a.hits.Load()-hitsA, b.hits.Load()-hitsB)
	}
}

// When too few endpoints pass, panic mode balances over all of them; with
// panic mode off, a cluster whose endpoints all fail answers 503.
func TestHealthCheckPanicMode(t *testing.T) {
	a, aAddr := newHealthyBackend(t, "a")
	b, bAddr := newHealthyBackend(t, "b")
	a.status.Store(500)
	b.status.Store(500)
	cl := config.Cluster{Endpoints: eps(aAddr, bAddr), HealthCheck: fastHealthCheck()}
	h := startProxy(t, simpleConfig(cl))
	eventually(t, 5*time.Second, "both unhealthy", func() bool {
		return endpointState(h, "svc", aAddr).State == "unhealthy" && endpointState(h, "svc", bAddr).State == "unhealthy"
	})
	if cs := h.p.Clusters(); !cs[0].Panic {
		t.Fatalf("not in panic mode: %+v", cs[0])
	}
	resp := mustGet(t, h.h1, h.url("/x"))
	if body := readAll(t, resp); resp.StatusCode != 200 {
		t.Fatalf("panic mode: %d %q", resp.StatusCode, body)
	}

	zero := 0.0
	cl.OutlierDetection.PanicThreshold = &zero
	if err := h.p.Apply(simpleConfig(cl)); err != nil {
		t.Fatal(err)
	}
	resp = mustGet(t, h.h1, h.url("/x"))
	if body := readAll(t, resp); resp.StatusCode != 503 || resp.Header.Get("X-Outrigger-Error") != "no_healthy_upstream" {
		t.Fatalf("no panic mode: %d %v %q", resp.StatusCode, resp.Header, body)
	}
}

// A reload that changes nothing the checks depend on keeps the running
// checker; one that changes the endpoints builds a new one that carries
// the state of the endpoints it keeps and stops the old one; removing the
// block stops the checks.
func TestHealthCheckAcrossReloads(t *testing.T) {
	a, aAddr := newHealthyBackend(t, "a")
	b, bAddr := newHealthyBackend(t, "b")
	_, cAddr := newHealthyBackend(t, "c")
	b.status.Store(503)
	cl := config.Cluster{Endpoints: eps(aAddr, bAddr), HealthCheck: fastHealthCheck()}
	h := startProxy(t, simpleConfig(cl))
	eventually(t, 5*time.Second, "b unhealthy", func() bool { return endpointState(h, "svc", bAddr).State == "unhealthy" })

	first := h.p.res["svc"].hc
	cl.LBPolicy = config.LBRandom // not something the checks depend on
	if err := h.p.Apply(simpleConfig(cl)); err != nil {
		t.Fatal(err)
	}
	if h.p.res["svc"].hc != first {
		t.Fatal("an unrelated change replaced the checker")
	}

	// b stays failing and must not take traffic at any moment after the
	// reload: its state is carried, not reset to healthy.
	cl.Endpoints = eps(aAddr, bAddr, cAddr)
	if err := h.p.Apply(simpleConfig(cl)); err != nil {
		t.Fatal(err)
	}
	second := h.p.res["svc"].hc
	if second == first {
		t.Fatal("new endpoints kept the old checker")
	}
	if second.Healthy(1) {
		t.Fatal("b's failing state was not carried over")
	}
	hitsB := b.hits.Load()
	for i := 0; i < 10; i++ {
		readAll(t, mustGet(t, h.h1, h.url("/x")))
	}
	if b.hits.Load() != hitsB {
		t.Fatal("b took traffic after the reload")
	}
	n := a.checks.Load()
	eventually(t, 5*time.Second, "new checker probing", func() bool { return a.checks.Load() > n })

	// Removing the block stops the checks.
	cl.HealthCheck = nil
	if err := h.p.Apply(simpleConfig(cl)); err != nil {
		t.Fatal(err)
	}
	if h.p.res["svc"].hc != nil {
		t.Fatal("checker kept without a health_check block")
	}
	if e := endpointState(h, "svc", bAddr); e.HealthCheck != nil || e.State != "healthy" {
		t.Fatalf("b after removing the checks: %+v", e)
	}
	// The replaced checkers' goroutines are gone: goleak in TestMain
	// checks that no checker outlives its cluster's block.
}

// A reload that fails after compiling a cluster with a health check closes
// the checker it built (goleak in TestMain would see it) and keeps the old.
func TestHealthCheckFailedReloadLeavesNothingRunning(t *testing.T) {
	_, aAddr := newHealthyBackend(t, "a")
	cl := config.Cluster{Endpoints: eps(aAddr), HealthCheck: fastHealthCheck()}
	h := startProxy(t, simpleConfig(cl))
	first := h.p.res["svc"].hc
	bad := simpleConfig(cl)
	bad.Clusters["other"] = config.Cluster{Endpoints: eps(aAddr), HealthCheck: fastHealthCheck()}
	bad.Routes = append(bad.Routes, config.Route{Name: "broken", Cluster: "missing"})
	if err := h.p.Apply(bad); err == nil {
		t.Fatal("a route to a missing cluster was accepted")
	}
	if h.p.res["svc"].hc != first || len(h.p.hcPending) != 0 {
		t.Fatal("the failed reload changed the running checkers")
	}
}

// A gRPC cluster's check asks grpc.health.v1 about the configured service.
func TestHealthCheckGRPC(t *testing.T) {
	lis, err := netListen(t)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hs := grpchealth.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	hs.SetServingStatus("orders", healthpb.HealthCheckResponse_SERVING)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	ep := lis.Addr().String()
	cl := config.Cluster{Endpoints: eps(ep), Protocol: config.ProtocolGRPC, HealthCheck: &config.HealthCheck{
		Interval: 20 * time.Millisecond, HealthyThreshold: 1, UnhealthyThreshold: 1,
		GRPC: &config.GRPCHealthCheck{Service: "orders"},
	}}
	h := startProxy(t, simpleConfig(cl))
	eventually(t, 5*time.Second, "checked", func() bool {
		e := endpointState(h, "svc", ep)
		return e.HealthCheck != nil && e.HealthCheck.Checked && e.HealthCheck.Healthy
	})
	hs.SetServingStatus("orders", healthpb.HealthCheckResponse_NOT_SERVING)
	eventually(t, 5*time.Second, "unhealthy", func() bool { return endpointState(h, "svc", ep).State == "unhealthy" })
}

// health_check.grpc.authority is the :authority of the check calls; left
// out, the address dialed is.
func TestHealthCheckGRPCAuthority(t *testing.T) {
	lis, err := netListen(t)
	if err != nil {
		t.Fatal(err)
	}
	var last atomic.Value
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get(":authority")) == 1 {
			last.Store(md.Get(":authority")[0])
		}
		return h(ctx, req)
	}))
	healthpb.RegisterHealthServer(srv, grpchealth.NewServer())
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	ep := lis.Addr().String()
	var h *harness
	for _, tc := range []struct{ authority, want string }{
		{"orders.internal:443", "orders.internal:443"},
		{"", ep},
	} {
		cl := config.Cluster{Endpoints: eps(ep), Protocol: config.ProtocolGRPC, HealthCheck: &config.HealthCheck{
			Interval: 20 * time.Millisecond, HealthyThreshold: 1, UnhealthyThreshold: 1,
			GRPC: &config.GRPCHealthCheck{Authority: tc.authority},
		}}
		if h == nil {
			h = startProxy(t, simpleConfig(cl))
		} else if err := h.p.Apply(simpleConfig(cl)); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, "a check with :authority "+tc.want, func() bool { return last.Load() == tc.want })
	}
}

// outrigger_health_checks_total tells failures apart by their reason, a
// label whose values are fixed: every one exists from the cluster's start.
func TestHealthCheckFailuresCountedByReason(t *testing.T) {
	a, aAddr := newHealthyBackend(t, "a")
	a.status.Store(503)
	refused := refusedAddr(t)
	_, okAddr := newHealthyBackend(t, "ok")
	cl := config.Cluster{Endpoints: eps(aAddr, refused, okAddr), HealthCheck: fastHealthCheck(),
		OutlierDetection: breaker.OutlierConfig{Disabled: true}}
	h := startProxy(t, simpleConfig(cl))
	value := func(result, reason string) float64 {
		return counterValue(h.p.hm.checks.WithLabelValues("svc", result, reason))
	}
	eventually(t, 5*time.Second, "a failure of each reason and a success", func() bool {
		return value("failure", "status") > 0 && value("failure", "connect") > 0 && value("success", "") > 0
	})
	for _, reason := range []string{"timeout", "tls", "grpc", "protocol"} {
		if v := value("failure", reason); v != 0 {
			t.Errorf("reason %s: %v failures", reason, v)
		}
	}
	n, err := testutil.GatherAndCount(h.reg, "outrigger_health_checks_total")
	if err != nil {
		t.Fatal(err)
	}
	if n != 1+len(health.Causes()) {
		t.Fatalf("%d outrigger_health_checks_total series, want a success and one per reason (%d)", n, 1+len(health.Causes()))
	}
}

// Removing a cluster's health_check block, or a reload rejected after it
// would have added one, leaves no outrigger_health_* series of the cluster.
func TestHealthCheckSeriesFollowTheBlock(t *testing.T) {
	_, aAddr := newHealthyBackend(t, "a")
	b, bAddr := newHealthyBackend(t, "b")
	b.status.Store(503)
	plain := config.Cluster{Endpoints: eps(aAddr, bAddr)}
	h := startProxy(t, simpleConfig(plain))
	series := func() int {
		n, err := testutil.GatherAndCount(h.reg, "outrigger_health_checks_total", "outrigger_health_unhealthy_endpoints")
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	// A rejected reload that would have added the block.
	bad := simpleConfig(config.Cluster{Endpoints: eps(aAddr, bAddr), HealthCheck: fastHealthCheck()})
	bad.Routes = append(bad.Routes, config.Route{Name: "broken", Cluster: "missing"})
	if err := h.p.Apply(bad); err == nil {
		t.Fatal("a route to a missing cluster was accepted")
	}
	if n := series(); n != 0 {
		t.Fatalf("%d health series after a rejected reload", n)
	}

	checked := plain
	checked.HealthCheck = fastHealthCheck()
	if err := h.p.Apply(simpleConfig(checked)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the gauge at 1", func() bool {
		return counterValue(h.p.hm.unhealthy.WithLabelValues("svc")) == 1
	})
	if err := h.p.Apply(simpleConfig(plain)); err != nil {
		t.Fatal(err)
	}
	if n := series(); n != 0 {
		t.Fatalf("%d health series after the block was removed", n)
	}
}

// Panic mode counts the endpoints that are neither ejected nor failing
// their check, when there are both kinds and when they overlap.
func TestPanicCountsEjectedAndUnhealthyTogether(t *testing.T) {
	var addrs []string
	bad := map[int]bool{0: true, 1: true} // failing their health check
	for i := range 4 {
		b, a := newHealthyBackend(t, "e")
		if bad[i] {
			b.status.Store(503)
		}
		addrs = append(addrs, a)
	}
	hcfg := healthConfig(*fastHealthCheck(), config.ProtocolHTTP1, nil)
	hc, err := health.New(hcfg, addrs)
	if err != nil {
		t.Fatal(err)
	}
	hc.Start()
	t.Cleanup(hc.Close)
	eventually(t, 5*time.Second, "two endpoints unhealthy", func() bool { return hc.UnhealthyCount() == 2 })

	now := time.Now()
	for _, tc := range []struct {
		name      string
		ejected   []int
		threshold float64
		panic     bool
	}{
		{"unhealthy only, 50% left, threshold 50", nil, 50, false},
		{"unhealthy only, 50% left, threshold 60", nil, 60, true},
		{"one ejected apart, 25% left", []int{2}, 30, true},
		{"one ejected apart, 25% left, threshold 25", []int{2}, 25, false},
		{"ejected and unhealthy overlap, 50% left", []int{1}, 50, false},
		{"ejected and unhealthy overlap, 50% left, threshold 60", []int{1}, 60, true},
		{"panic mode off", []int{2, 3}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			det, err := breaker.NewDetector(breaker.OutlierConfig{Consecutive5xx: 1, MaxEjectionPercent: 100,
				PanicThreshold: &tc.threshold}, 4)
			if err != nil {
				t.Fatal(err)
			}
			for _, i := range tc.ejected {
				det.Record(i, now, breaker.Verdict{Failure: true, Reason: "http_500"})
			}
			r := &resilience{det: det, hc: hc, panicPct: tc.threshold}
			if got := r.panic(now); got != tc.panic {
				t.Fatalf("panic = %v, want %v", got, tc.panic)
			}
		})
	}
}

// Pending endpoints (added by a reload, not yet checked) count on neither
// side of the panic threshold: a scale-up from one endpoint to four sends
// everything to the checked one until the new ones pass, rather than
// putting the cluster in panic mode. A cluster whose endpoints are all
// pending balances over them, whatever the threshold, as a new one would.
func TestPanicLeavesPendingEndpointsOut(t *testing.T) {
	hcfg := healthConfig(*fastHealthCheck(), config.ProtocolHTTP1, nil)
	old, err := health.New(hcfg, []string{"10.0.0.1:80"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(old.Close)
	now := time.Now()
	for _, tc := range []struct {
		name      string
		addrs     []string
		threshold float64
		panic     bool
	}{
		{"one kept, three added", []string{"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80"}, 50, false},
		{"all added", []string{"10.0.0.2:80", "10.0.0.3:80"}, 50, true},
		{"all added, panic mode off", []string{"10.0.0.2:80", "10.0.0.3:80"}, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hc, err := health.New(hcfg, tc.addrs)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(hc.Close)
			hc.CarryFrom(old, func(i int) (int, bool) { return 0, tc.addrs[i] == "10.0.0.1:80" })
			det, err := breaker.NewDetector(breaker.OutlierConfig{Consecutive5xx: 1, MaxEjectionPercent: 100,
				PanicThreshold: &tc.threshold}, len(tc.addrs))
			if err != nil {
				t.Fatal(err)
			}
			r := &resilience{det: det, hc: hc, panicPct: tc.threshold}
			if got := r.panic(now); got != tc.panic {
				t.Fatalf("panic = %v, want %v (%d pending of %d)", got, tc.panic, hc.PendingCount(), hc.Len())
			}
		})
	}
}

// healthPort answers /healthz, on a port of its own, with the status it
// holds, for checks sent to clusters.*.health_check.port. It speaks
// HTTP/1.1 and h2c and keeps the protocol and header of the last check.
type healthPort struct {
	addr   string
	port   int
	status atomic.Int32
	checks atomic.Int64
	mu     sync.Mutex
	proto  string
	header http.Header
}

func newHealthPort(t *testing.T) *healthPort {
	hp := &healthPort{}
	hp.status.Store(200)
	s := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {
		hp.mu.Lock()
		hp.proto, hp.header = r.Proto, r.Header.Clone()
		hp.mu.Unlock()
		hp.checks.Add(1)
		w.WriteHeader(int(hp.status.Load()))
	})
	hp.addr = addr(s)
	_, port, _ := net.SplitHostPort(hp.addr)
	hp.port, _ = strconv.Atoi(port)
	return hp
}

func (hp *healthPort) last() (string, http.Header) {
	hp.mu.Lock()
	defer hp.mu.Unlock()
	return hp.proto, hp.header
}

// With health_check.port the checks go to the endpoint's host on that
// port, never to the endpoint's own port, and the endpoint, still known
// by its own address, turns unhealthy when only the health port fails
// while its own port keeps serving.
func TestHealthCheckPortProbesAnotherPort(t *testing.T) {
	a, aAddr := newHealthyBackend(t, "a")
	a.status.Store(503) // a check sent to the endpoint's own port would fail
	mgmt := newHealthPort(t)
	hc := fastHealthCheck()
	hc.Port = mgmt.port
	cl := config.Cluster{Endpoints: eps(aAddr), HealthCheck: hc, OutlierDetection: breaker.OutlierConfig{Disabled: true}}
	h := startProxy(t, simpleConfig(cl))

	eventually(t, 5*time.Second, "the endpoint checked", func() bool {
		e := endpointState(h, "svc", aAddr)
		return e.HealthCheck != nil && e.HealthCheck.Checked
	})
	if e := endpointState(h, "svc", aAddr); e.State != "healthy" {
		t.Fatalf("endpoint %+v %+v: the check did not go to the health port", e, e.HealthCheck)
	}
	host, _, _ := net.SplitHostPort(aAddr)
	if e := endpointState(h, "svc", aAddr); e.HealthCheck.Target != net.JoinHostPort(host, strconv.Itoa(mgmt.port)) {
		t.Fatalf("/clusters names the check's target %q", e.HealthCheck.Target)
	}

	mgmt.status.Store(503)
	eventually(t, 5*time.Second, "the endpoint unhealthy", func() bool { return endpointState(h, "svc", aAddr).State == "unhealthy" })
	if e := endpointState(h, "svc", aAddr); !strings.Contains(e.HealthCheck.LastError, "503") {
		t.Fatalf("last error %q", e.HealthCheck.LastError)
	}
	// The endpoint's own port serves all along and never saw a check.
	if body := readAll(t, mustGet(t, h.h1, "http://"+aAddr+"/x")); body != "a" {
		t.Fatalf("the endpoint's own port answered %q", body)
	}
	if n := a.checks.Load(); n != 0 {
		t.Fatalf("the endpoint's own port got %d checks", n)
	}
	if mgmt.checks.Load() < 2 {
		t.Fatalf("the health port got %d checks", mgmt.checks.Load())
	}
}

// A gRPC check with health_check.port asks the grpc.health.v1 server on
// that port, not the one on the endpoint's own port.
func TestHealthCheckPortGRPC(t *testing.T) {
	serve := func() (*grpchealth.Server, string) {
		lis, _ := netListen(t)
		srv := grpc.NewServer()
		hs := grpchealth.NewServer()
		healthpb.RegisterHealthServer(srv, hs)
		go srv.Serve(lis)
		t.Cleanup(srv.Stop)
		return hs, lis.Addr().String()
	}
	own, ep := serve()
	mgmt, mgmtAddr := serve()
	own.SetServingStatus("orders", healthpb.HealthCheckResponse_NOT_SERVING)
	mgmt.SetServingStatus("orders", healthpb.HealthCheckResponse_SERVING)
	_, port, _ := net.SplitHostPort(mgmtAddr)
	p, _ := strconv.Atoi(port)
	cl := config.Cluster{Endpoints: eps(ep), Protocol: config.ProtocolGRPC, HealthCheck: &config.HealthCheck{
		Interval: 20 * time.Millisecond, HealthyThreshold: 1, UnhealthyThreshold: 1, Port: p,
		GRPC: &config.GRPCHealthCheck{Service: "orders"},
	}}
	h := startProxy(t, simpleConfig(cl))
	eventually(t, 5*time.Second, "checked healthy on the health port", func() bool {
		e := endpointState(h, "svc", ep)
		return e.HealthCheck != nil && e.HealthCheck.Checked && e.HealthCheck.Healthy
	})
	own.SetServingStatus("orders", healthpb.HealthCheckResponse_SERVING)
	mgmt.SetServingStatus("orders", healthpb.HealthCheckResponse_NOT_SERVING)
	eventually(t, 5*time.Second, "unhealthy", func() bool { return endpointState(h, "svc", ep).State == "unhealthy" })
	if e := endpointState(h, "svc", ep); e.HealthCheck.LastError != "grpc: NOT_SERVING" {
		t.Fatalf("last error %q", e.HealthCheck.LastError)
	}
}

// A reload that changes only health_check.port replaces the checker: the
// checks go to the new port from then on, and the endpoint's state
// follows what that port answers.
func TestHealthCheckPortChangeOnReload(t *testing.T) {
	_, aAddr := newHealthyBackend(t, "a")
	first, second := newHealthPort(t), newHealthPort(t)
	second.status.Store(503)
	cl := config.Cluster{Endpoints: eps(aAddr), HealthCheck: fastHealthCheck(), OutlierDetection: breaker.OutlierConfig{Disabled: true}}
	cl.HealthCheck.Port = first.port
	h := startProxy(t, simpleConfig(cl))
	eventually(t, 5*time.Second, "checked on the first port", func() bool {
		e := endpointState(h, "svc", aAddr)
		return e.HealthCheck != nil && e.HealthCheck.Checked && e.State == "healthy"
	})
	before := h.p.res["svc"].hc

	moved := cl
	moved.HealthCheck = fastHealthCheck()
	moved.HealthCheck.Port = second.port
	if err := h.p.Apply(simpleConfig(moved)); err != nil {
		t.Fatal(err)
	}
	if h.p.res["svc"].hc == before {
		t.Fatal("a port change kept the old checker")
	}
	// Apply closed the old checker; at most a check already on the wire
	// still reaches the first port.
	firstChecks := first.checks.Load()
	eventually(t, 5*time.Second, "the endpoint unhealthy on the second port", func() bool {
		return endpointState(h, "svc", aAddr).State == "unhealthy"
	})
	eventually(t, 5*time.Second, "several checks on the second port", func() bool { return second.checks.Load() >= 5 })
	if n := first.checks.Load() - firstChecks; n > 1 {
		t.Fatalf("the first port got %d checks after the reload", n)
	}

	// And back: the endpoint passes again once the checks reach the
	// first port.
	if err := h.p.Apply(simpleConfig(cl)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the endpoint healthy on the first port again", func() bool {
		return endpointState(h, "svc", aAddr).State == "healthy"
	})
}

// http.request_headers arrive with every check, over HTTP/1.1 for http1
// clusters and over h2c for http2 clusters; append adds a value, and a
// user-agent entry replaces the default one.
func TestHealthCheckRequestHeaders(t *testing.T) {
	for _, tc := range []struct {
		protocol config.Protocol
		proto    string
	}{{config.ProtocolHTTP1, "HTTP/1.1"}, {config.ProtocolHTTP2, "HTTP/2.0"}} {
		t.Run(string(tc.protocol), func(t *testing.T) {
			hp := newHealthPort(t)
			hc := fastHealthCheck()
			hc.HTTP.RequestHeaders = config.HeaderValues{
				{Name: "x-health-token", Value: "s3cret"},
				{Name: "x-probe", Value: "one"},
				{Name: "x-probe", Value: "two", Append: true},
				{Name: "user-agent", Value: "kube-probe/1.31"},
			}
			cl := config.Cluster{Endpoints: eps(hp.addr), Protocol: tc.protocol, HealthCheck: hc}
			startProxy(t, simpleConfig(cl))
			eventually(t, 5*time.Second, "a check", func() bool { return hp.checks.Load() > 0 })
			proto, hdr := hp.last()
			if proto != tc.proto || hdr.Get("X-Health-Token") != "s3cret" || !slices.Equal(hdr.Values("X-Probe"), []string{"one", "two"}) ||
				!slices.Equal(hdr.Values("User-Agent"), []string{"kube-probe/1.31"}) {
				t.Fatalf("check %s %v", proto, hdr)
			}
		})
	}
}

func TestCheckHeaders(t *testing.T) {
	if h := checkHeaders(nil); h != nil {
		t.Fatalf("no headers: %v", h)
	}
	h := checkHeaders(config.HeaderValues{
		{Name: "x-a", Value: "1"}, {Name: "X-A", Value: "2"}, // replaces
		{Name: "x-b", Value: "1"}, {Name: "x-b", Value: "2", Append: true},
	})
	if !slices.Equal(h.Values("X-A"), []string{"2"}) || !slices.Equal(h.Values("X-B"), []string{"1", "2"}) || len(h) != 2 {
		t.Fatalf("checkHeaders = %v", h)
	}
}

// checkerGoroutines counts the goroutines running an endpoint's checks,
// by their creator: one not yet scheduled shows no frame of its own.
func checkerGoroutines() int {
	buf := make([]byte, 4<<20)
	return strings.Count(string(buf[:runtime.Stack(buf, true)]), "created by github.com/outrigger-mesh/outrigger/proxy/health.(*Checker).Start")
}

// Reloads in quick succession, while requests are in flight, leave one
// check loop per endpoint of the serving config (never two for one
// endpoint, none for an endpoint or cluster removed), and every request
// counter back at zero.
func TestHealthCheckQuickReloadsKeepOneCheckerPerEndpoint(t *testing.T) {
	var addrs []string
	for range 3 {
		_, a := newHealthyBackend(t, "e")
		addrs = append(addrs, a)
	}
	// A loop that Close saw end (past its wg.Done) still shows in the
	// goroutine dump for a moment, the last test's as a reload's.
	eventually(t, 10*time.Second, "no check loop of an earlier test", func() bool { return checkerGoroutines() == 0 })
	slow := fastHealthCheck()
	slow.Interval = 30 * time.Millisecond
	weighted := eps(addrs...)
	weighted[0].Weight, weighted[2].Weight = 3, 2
	variants := []struct {
		cl       config.Cluster
		checkers int
	}{
		{config.Cluster{Endpoints: eps(addrs[0]), HealthCheck: fastHealthCheck()}, 1},
		{config.Cluster{Endpoints: eps(addrs...), HealthCheck: fastHealthCheck()}, 3},
		{config.Cluster{Endpoints: eps(addrs[2], addrs[0]), HealthCheck: fastHealthCheck()}, 2},
		{config.Cluster{Endpoints: eps(addrs...), HealthCheck: slow}, 3},
		{config.Cluster{Endpoints: weighted, HealthCheck: slow}, 3},
		{config.Cluster{Endpoints: eps(addrs[1])}, 0},
		{config.Cluster{Endpoints: eps(addrs[1], addrs[2]), HealthCheck: fastHealthCheck(), LBPolicy: config.LBLeastRequest}, 2},
	}
	h := startProxy(t, simpleConfig(variants[0].cl))

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var failed atomic.Int64
	client := &http.Client{Timeout: 5 * time.Second}
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Get(h.url("/x"))
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failed.Add(1)
				}
			}
		}()
	}
	for k := range 40 {
		v := variants[k%len(variants)]
		cfg := simpleConfig(v.cl)
		if k%5 == 4 {
			// Another cluster takes the route, and svc goes with its checks.
			cfg.Clusters = map[string]config.Cluster{"other": {Endpoints: eps(addrs[0])}}
			cfg.Routes[0].Cluster = "other"
			v.checkers = 0
		}
		if err := h.p.Apply(cfg); err != nil {
			t.Fatalf("reload %d: %v", k, err)
		}
		eventually(t, 10*time.Second, fmt.Sprintf("reload %d: %d check loops running", k, v.checkers), func() bool {
			return checkerGoroutines() == v.checkers
		})
	}
	close(stop)
	wg.Wait()
	client.CloseIdleConnections()
	if n := failed.Load(); n != 0 {
		t.Errorf("%d requests failed across the reloads", n)
	}
	for _, c := range h.p.Clusters() {
		if c.ActiveRequests != 0 {
			t.Errorf("cluster %s: %d requests in flight after all ended", c.Name, c.ActiveRequests)
		}
		for _, e := range c.Endpoints {
			if e.ActiveRequests != 0 {
				t.Errorf("cluster %s endpoint %s: %d requests in flight after all ended", c.Name, e.Address, e.ActiveRequests)
			}
		}
	}
}

// Requests whose client goes away (waiting for the headers, or in the
// middle of the body) leave no count behind on the endpoints of a checked
// least_request cluster: a leaked count would steer its picks away from
// an endpoint for good.
func TestHealthCheckedLeastRequestCountsEndWithCancelledRequests(t *testing.T) {
	release := make(chan struct{})
	var checks atomic.Int64
	s := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			checks.Add(1)
			return
		}
		if r.URL.Path == "/body" {
			w.Write([]byte("part"))
			http.NewResponseController(w).Flush()
		}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	defer close(release) // before the upstream's Close, which waits for handlers
	cl := config.Cluster{Endpoints: eps(addr(s)), HealthCheck: fastHealthCheck(), LBPolicy: config.LBLeastRequest}
	h := startProxy(t, simpleConfig(cl))
	eventually(t, 5*time.Second, "a check", func() bool { return checks.Load() > 0 })

	active := func() (cluster, ep int64) {
		for _, c := range h.p.Clusters() {
			if c.Name == "svc" {
				return c.ActiveRequests, c.Endpoints[0].ActiveRequests
			}
		}
		return -1, -1
	}
	for _, path := range []string{"/headers", "/body"} {
		var wg sync.WaitGroup
		for range 8 {
			ctx, cancel := context.WithCancel(context.Background())
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.url(path), nil)
			wg.Add(1)
			go func() {
				defer wg.Done()
				if resp, err := http.DefaultClient.Do(req); err == nil {
					io.ReadFull(resp.Body, make([]byte, 4))
					cancel()
					resp.Body.Close()
				}
			}()
			if path == "/headers" {
				eventually(t, 5*time.Second, "the request in flight", func() bool { c, _ := active(); return c > 0 })
				cancel()
			}
			wg.Wait()
			cancel()
		}
		eventually(t, 5*time.Second, path+": counts back at zero", func() bool {
			c, e := active()
			return c == 0 && e == 0
		})
	}
}

// A reload that stops a check is not held by an endpoint that answered
// the check with a 101 and keeps the connection open: the check fails at
// once rather than read the switched connection, which no timeout bounds.
func TestHealthCheckReloadIsNotHeldByASwitchedConnection(t *testing.T) {
	ln, err := netListen(t)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	answered := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() {
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"))
				select {
				case answered <- struct{}{}:
				default:
				}
			}()
		}
	}()
	hangUp := func() {
		ln.Close()
		<-done
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}
	hc := fastHealthCheck()
	hc.Timeout = time.Hour
	cl := config.Cluster{Endpoints: eps(ln.Addr().String()), HealthCheck: hc}
	h := startProxy(t, simpleConfig(cl))
	t.Cleanup(hangUp) // before the proxy's shutdown, should the reload hang
	<-answered
	eventually(t, 5*time.Second, "the check holds the 101 or has failed it", func() bool {
		return endpointState(h, "svc", ln.Addr().String()).State == "unhealthy" || goroutinesIn("net/http.(*readWriteCloserBody).Read")
	})
	cl.HealthCheck = nil
	applied := make(chan error, 1)
	go func() { applied <- h.p.Apply(simpleConfig(cl)) }()
	select {
	case err := <-applied:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		hangUp()
		<-applied
		t.Fatal("the reload waited on a check reading a switched connection")
	}
}

// goroutinesIn reports whether a goroutine's stack has a frame containing fn.
func goroutinesIn(fn string) bool {
	buf := make([]byte, 4<<20)
	return strings.Contains(string(buf[:runtime.Stack(buf, true)]), fn)
}

// When every endpoint fails its check, panic mode (on by default) still
// sends the request to the cluster, so a route's fallback does not take
// it; with panic_threshold: 0 the cluster has no endpoint to pick and the
// fallback answers (no_healthy_upstream).
func TestHealthCheckPanicModeComesBeforeTheFallback(t *testing.T) {
	a, aAddr := newHealthyBackend(t, "a")
	a.status.Store(503)
	cl := config.Cluster{Endpoints: eps(aAddr), HealthCheck: fastHealthCheck()}
	withFallback := func(r *config.Route) {
		r.Fallback = &config.Fallback{DirectResponse: &config.DirectResponse{Status: 200, Body: "spare"}}
	}
	h := startProxy(t, simpleConfig(cl, withFallback))
	eventually(t, 5*time.Second, "a unhealthy", func() bool { return endpointState(h, "svc", aAddr).State == "unhealthy" })
	resp := mustGet(t, h.h1, h.url("/x"))
	if body := readAll(t, resp); body != "a" || resp.Header.Get("X-Outrigger-Fallback") != "" {
		t.Fatalf("panic mode: %d %q fallback %q, want the cluster's answer", resp.StatusCode, body, resp.Header.Get("X-Outrigger-Fallback"))
	}

	zero := 0.0
	cl.OutlierDetection.PanicThreshold = &zero
	if err := h.p.Apply(simpleConfig(cl, withFallback)); err != nil {
		t.Fatal(err)
	}
	resp = mustGet(t, h.h1, h.url("/x"))
	if body := readAll(t, resp); body != "spare" || resp.Header.Get("X-Outrigger-Fallback") != "no_healthy_upstream" {
		t.Fatalf("panic mode off: %d %q fallback %q, want the fallback", resp.StatusCode, body, resp.Header.Get("X-Outrigger-Fallback"))
	}
}

func TestHealthConfigCarriesRetriableStatuses(t *testing.T) {
	b := config.HealthCheck{HTTP: &config.HTTPHealthCheck{
		ExpectedStatuses:  []config.StatusRange{{Lo: 200, Hi: 299}},
		RetriableStatuses: []config.StatusRange{{Lo: 429, Hi: 429}, {Lo: 502, Hi: 504}},
	}}
	c := healthConfig(b, config.ProtocolHTTP1, nil)
	want := []health.StatusRange{{Lo: 429, Hi: 429}, {Lo: 502, Hi: 504}}
	if !slices.Equal(c.RetriableStatuses, want) || !slices.Equal(c.Statuses, []health.StatusRange{{Lo: 200, Hi: 299}}) {
		t.Fatalf("statuses %v, retriable %v", c.Statuses, c.RetriableStatuses)
	}
}

// An endpoint a reload adds to a checked cluster takes no request before
// its first check passes (Envoy's pending first health check), shows as
// pending meanwhile, and takes its share as soon as the check passes.
func TestHealthCheckEndpointAddedByReloadWaitsForItsFirstCheck(t *testing.T) {
	a, aAddr := newHealthyBackend(t, "a")
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	var bHits, bChecks atomic.Int64
	b := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			bChecks.Add(1)
			select {
			case <-release: // b's checks hold their answer until then
			case <-r.Context().Done():
			}
			return
		}
		bHits.Add(1)
		w.Write([]byte("b"))
	})
	bAddr := addr(b)
	hc := fastHealthCheck()
	hc.Timeout = time.Minute
	cl := config.Cluster{Endpoints: eps(aAddr), HealthCheck: hc}
	h := startProxy(t, simpleConfig(cl))
	eventually(t, 5*time.Second, "a checked", func() bool { return a.checks.Load() > 0 })

	cl.Endpoints = eps(aAddr, bAddr)
	if err := h.p.Apply(simpleConfig(cl)); err != nil {
		t.Fatal(err)
	}
	if e := endpointState(h, "svc", bAddr); e.State != "pending" || e.HealthCheck == nil || e.HealthCheck.Checked {
		t.Fatalf("b right after the reload: %+v", e)
	}
	eventually(t, 5*time.Second, "b's first check in flight", func() bool { return bChecks.Load() > 0 })
	for range 20 {
		if got := readAll(t, mustGet(t, h.h1, h.url("/x"))); got != "a" {
			t.Fatalf("answered by %q before b's first check passed", got)
		}
	}
	if n := bHits.Load(); n != 0 {
		t.Fatalf("b took %d requests before its first check passed", n)
	}

	once.Do(func() { close(release) })
	eventually(t, 5*time.Second, "b taking traffic after its check", func() bool {
		readAll(t, mustGet(t, h.h1, h.url("/x")))
		return bHits.Load() > 0
	})
	if e := endpointState(h, "svc", bAddr); e.State != "healthy" {
		t.Fatalf("b after its first pass: %+v", e)
	}
}

// With health checks that never run (Options.NoHealthChecks, as
// outrigger validate builds the proxy), an endpoint a reload adds is not
// left pending for good: no check would ever let it in.
func TestNoHealthChecksLeavesNoEndpointPending(t *testing.T) {
	p := New(Options{Registry: prometheus.NewRegistry(), NoHealthChecks: true})
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	cl := config.Cluster{Endpoints: eps("127.0.0.1:1"), HealthCheck: fastHealthCheck()}
	if err := p.Apply(simpleConfig(cl)); err != nil {
		t.Fatal(err)
	}
	cl.Endpoints = eps("127.0.0.1:1", "127.0.0.1:2")
	if err := p.Apply(simpleConfig(cl)); err != nil {
		t.Fatal(err)
	}
	for _, e := range p.Clusters()[0].Endpoints {
		if e.State != "healthy" {
			t.Fatalf("endpoint %s is %q with checks that never run", e.Address, e.State)
		}
	}
}
