package proxy

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outrigger-mesh/outrigger/breaker"
	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// A reload that changes a cluster's circuit_breaker builds a new breaker;
// the old one, which calls of the old snapshot still report to, may trip
// on their failures, but the breaker gauges follow the serving breaker
// alone. The old breaker set outrigger_breaker_state to open (and counted
// a transition) while the serving one stayed closed.
func TestReplacedBreakerReportsNothing(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	cl := breakerCluster(addr(up))
	cl.CircuitBreaker.ConsecutiveFailures.Threshold = 1
	handled := make(chan struct{}, 1)
	h := startProxy(t, simpleConfig(cl), func(o *Options) {
		o.Wrap = func(l Listener, next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				next.ServeHTTP(w, r)
				handled <- struct{}{}
			})
		}
	})
	state := func() float64 { return counterValue(h.p.bm.state.WithLabelValues("svc")) }
	opened := func() float64 {
		return counterValue(h.p.bm.transitions.WithLabelValues("svc", breaker.StateOpen.String()))
	}

	res := make(chan int, 1)
	go func() {
		resp, err := h.h1.Get(h.url("/"))
		if err != nil {
			res <- 0
			return
		}
		resp.Body.Close()
		res <- resp.StatusCode
	}()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the request never reached the upstream")
	}
	changed := cl
	changed.CircuitBreaker.Open.Base = 2 * time.Minute
	if err := h.p.Apply(simpleConfig(changed)); err != nil {
		t.Fatal(err)
	}
	close(release)
	if code := <-res; code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want the upstream's 503", code)
	}
	<-handled

	if s := h.p.Clusters()[0].Breaker.State; s != breaker.StateClosed.String() {
		t.Fatalf("serving breaker %s, want closed", s)
	}
	if v := state(); v != float64(breaker.StateClosed) {
		t.Errorf("outrigger_breaker_state = %v, want %v: the serving breaker is closed", v, float64(breaker.StateClosed))
	}
	if v := opened(); v != 0 {
		t.Errorf("outrigger_breaker_transitions_total{to=open} = %v, want 0: the serving breaker never opened", v)
	}
}

// An endpoint a reload removes while a request holds a connection to
// it, and a later reload adds back before the request ends: the
// upstream_connections gauge counts the connections open to it, the one
// kept from before included. The series was deleted with the endpoint
// while the connection stayed open, and counted from zero when the
// endpoint came back, though the pool used the kept connection again (0
// while one was open).
func TestUpstreamConnectionsOfAnEndpointAddedBack(t *testing.T) {
	a := newHeldUpstream(t)
	b := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {})
	cfg := func(endpoints ...string) *config.Config {
		return simpleConfig(config.Cluster{Endpoints: eps(endpoints...), OutlierDetection: breaker.OutlierConfig{Disabled: true}},
			func(r *config.Route) { r.Timeout = 10 * time.Second })
	}
	h := startProxy(t, cfg(a.addr))
	a.unblockOnCleanup(t)
	conns := func() float64 { return counterValue(h.p.m.conns.WithLabelValues("svc", a.addr)) }
	res := send(h, 1)
	eventually(t, 5*time.Second, "the call upstream", func() bool { return a.entered.Load() == 1 })
	if v := conns(); v != 1 {
		t.Fatalf("connections to a: %v, want 1", v)
	}
	if err := h.p.Apply(cfg(addr(b))); err != nil {
		t.Fatal(err)
	}
	if n := seriesWith(t, h, "endpoint", a.addr); n != 1 {
		t.Fatalf("%d series of the removed endpoint while a request holds a connection to it, want 1", n)
	}
	if err := h.p.Apply(cfg(a.addr)); err != nil {
		t.Fatal(err)
	}
	a.release <- struct{}{}
	if r := <-res; r[0] != "200 OK" {
		t.Fatalf("the call held across the reloads: %v", r)
	}
	res = send(h, 1)
	eventually(t, 5*time.Second, "the second call upstream", func() bool { return a.entered.Load() == 2 })
	if v := conns(); v != 1 {
		t.Fatalf("connections to a: %v after it came back, want 1", v)
	}
	a.release <- struct{}{}
	if r := <-res; r[0] != "200 OK" {
		t.Fatalf("the call after the endpoint came back: %v", r)
	}
	if m := a.maxOpenConns(); m != 1 {
		t.Fatalf("%d connections opened to a, want the one kept", m)
	}

	// Removed again: the reload closes its idle connection and deletes
	// the series.
	if err := h.p.Apply(cfg(addr(b))); err != nil {
		t.Fatal(err)
	}
	if n := seriesWith(t, h, "endpoint", a.addr); n != 0 {
		t.Fatalf("%d series of the removed endpoint once the reload closed its idle connection", n)
	}
}

// A breaker or detector hook of a cluster that a reload removes while the
// hook is on its way to the cluster's series writes nothing the registry
// exports: the series the reload deleted stay deleted. The hooks tested a
// "removed" flag, then looked the series up by cluster name, which
// created them again when the reload came in between; they then stayed
// exported for good (outrigger_breaker_state of a cluster no longer
// configured).
func TestHookOfARemovedClusterBringsNoSeriesBack(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cluster func() config.Cluster
		fire    func(r *resilience, now time.Time)
		metrics []string
	}{
		{"breaker", func() config.Cluster { return breakerCluster("127.0.0.1:9") },
			func(r *resilience, now time.Time) { r.br.ForceOpen(now) },
			[]string{"outrigger_breaker_state", "outrigger_breaker_transitions_total"}},
		{"detector", func() config.Cluster {
			c := breakerCluster("127.0.0.1:9", "127.0.0.1:10")
			c.OutlierDetection = breaker.OutlierConfig{}
			return c
		}, func(r *resilience, now time.Time) {
			for range 5 {
				r.det.Record(0, now, breaker.Verdict{Failure: true})
			}
		}, []string{"outrigger_breaker_ejections_total", "outrigger_breaker_ejected_endpoints"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			p := New(Options{Registry: reg, NoHealthChecks: true})
			t.Cleanup(func() { p.Shutdown(context.Background()) })
			held, release := make(chan struct{}), make(chan struct{})
			var once sync.Once
			p.beforeHookSeries = func(cluster string) {
				once.Do(func() {
					close(held)
					<-release
				})
			}
			cfg := simpleConfig(tc.cluster())
			cfg.Clusters["other"] = breakerCluster("127.0.0.1:11")
			if err := p.Apply(cfg); err != nil {
				t.Fatal(err)
			}
			p.applyMu.Lock()
			r := p.res["svc"]
			p.applyMu.Unlock()

			fired := make(chan struct{})
			go func() {
				defer close(fired)
				tc.fire(r, time.Now())
			}()
			select {
			case <-held:
			case <-time.After(10 * time.Second):
				t.Fatal("the hook never ran")
			}
			// svc removed while its hook is held.
			removed := &config.Config{
				Clusters: map[string]config.Cluster{"other": cfg.Clusters["other"]},
				Routes:   []config.Route{{Name: "all", Cluster: "other"}},
			}
			if err := p.Apply(removed); err != nil {
				t.Fatal(err)
			}
			close(release)
			<-fired

			mfs, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			for _, mf := range mfs {
				if !slices.Contains(tc.metrics, mf.GetName()) {
					continue
				}
				for _, m := range mf.GetMetric() {
					for _, l := range m.GetLabel() {
						if l.GetName() == "cluster" && l.GetValue() == "svc" {
							t.Errorf("%s exports %v for the removed cluster", mf.GetName(), m.GetLabel())
						}
					}
				}
			}
		})
	}
}

// A request still running on the configuration a reload replaced, which
// dials again after the reload (a retry after its upstream closed the
// connection), counts that connection on no series the reload deleted:
// neither of a cluster the reload removed, nor of an endpoint it removed
// while no connection to it was open. The dial looked the
// upstream_connections series up by cluster and address, which created
// it again, exported for good (at 0 once the connection closed).
func TestRetryAfterAReloadBringsNoConnectionSeriesBack(t *testing.T) {
	// first makes the upstream that serves it hold its first request
	// until released, then answer 503 closing the connection, so that
	// the proxy retries on a new connection.
	type first struct {
		once    sync.Once
		arrived chan string // the address of the upstream that has it
		release chan struct{}
	}
	handler := func(f *first, self func() string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			held := false
			f.once.Do(func() { held = true })
			if !held {
				return
			}
			f.arrived <- self()
			<-f.release
			w.Header().Set("Connection", "close")
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}
	retry := func(r *config.Route) {
		r.Retry = &config.RetryPolicy{Attempts: 1, RetryOn: []config.RetryCondition{config.RetryOn5xx},
			Backoff: config.Backoff{Base: time.Millisecond}}
	}
	cluster := func(endpoints ...string) config.Cluster {
		return config.Cluster{Endpoints: eps(endpoints...), OutlierDetection: breaker.OutlierConfig{Disabled: true}}
	}
	// other is a cluster that stays when svc goes.
	other := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {})
	withOther := func(cfg *config.Config) *config.Config {
		cfg.Clusters["other"] = cluster(addr(other))
		return cfg
	}
	withoutSvc := &config.Config{
		Clusters: map[string]config.Cluster{"other": cluster(addr(other))},
		Routes:   []config.Route{{Name: "all", Cluster: "other"}},
	}
	// get sends one request and returns a channel with its status.
	get := func(h *harness) <-chan int {
		res := make(chan int, 1)
		go func() {
			resp, err := h.h1.Get(h.url("/"))
			if err != nil {
				res <- 0
				return
			}
			resp.Body.Close()
			res <- resp.StatusCode
		}()
		return res
	}
	wait := func(t *testing.T, ch <-chan string) string {
		t.Helper()
		select {
		case a := <-ch:
			return a
		case <-time.After(10 * time.Second):
			t.Fatal("the request never reached the upstream")
			return ""
		}
	}
	conns := func(h *harness, cluster, endpoint string) (float64, bool) {
		mfs, err := h.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "outrigger_proxy_upstream_connections" {
				continue
			}
			for _, m := range mf.GetMetric() {
				var c, e string
				for _, l := range m.GetLabel() {
					switch l.GetName() {
					case "cluster":
						c = l.GetValue()
					case "endpoint":
						e = l.GetValue()
					}
				}
				if c == cluster && e == endpoint {
					return m.GetGauge().GetValue(), true
				}
			}
		}
		return 0, false
	}

	t.Run("cluster removed", func(t *testing.T) {
		f := &first{arrived: make(chan string, 1), release: make(chan struct{})}
		var up *httptest.Server
		up = upstream(t, false, handler(f, func() string { return addr(up) }))
		h := startProxy(t, withOther(simpleConfig(cluster(addr(up)), retry)))
		res := get(h)
		wait(t, f.arrived)
		if err := h.p.Apply(withoutSvc); err != nil {
			t.Fatal(err)
		}
		close(f.release)
		if code := <-res; code != http.StatusOK {
			t.Fatalf("status %d, want the retry's 200", code)
		}
		if n := seriesWith(t, h, "cluster", "svc"); n != 0 {
			t.Fatalf("%d series of the removed cluster after its retry dialled again", n)
		}
	})

	t.Run("cluster removed and added back", func(t *testing.T) {
		f := &first{arrived: make(chan string, 1), release: make(chan struct{})}
		var up *httptest.Server
		up = upstream(t, false, handler(f, func() string { return addr(up) }))
		cfg := withOther(simpleConfig(cluster(addr(up)), retry))
		h := startProxy(t, cfg)
		res := get(h)
		wait(t, f.arrived)
		old := h.p.snap.Load().clusters["svc"].pool
		if err := h.p.Apply(withoutSvc); err != nil {
			t.Fatal(err)
		}
		if err := h.p.Apply(cfg); err != nil {
			t.Fatal(err)
		}
		// The cluster back, its own connection counts once open.
		readAll(t, mustGet(t, h.h1, h.url("/")))
		if v, _ := conns(h, "svc", addr(up)); v != 1 {
			t.Fatalf("connections of the cluster added back: %v, want 1", v)
		}
		// The first connection, counted before the removal, closes after
		// the 503 (Connection: close); the retry dials on the removed
		// cluster's pool, closed once the request is done. Both count on
		// the series the removal deleted, never on the new one.
		oldConns := (*old.conns.Load())[addr(up)]
		close(f.release)
		if code := <-res; code != http.StatusOK {
			t.Fatalf("status %d, want the retry's 200", code)
		}
		eventually(t, 5*time.Second, "the old configuration's connections to close", func() bool {
			return counterValue(oldConns) == 0
		})
		if v, ok := conns(h, "svc", addr(up)); !ok || v != 1 {
			t.Fatalf("connections of the cluster added back: %v (exported %v), want 1: its own", v, ok)
		}
	})

	t.Run("endpoint removed", func(t *testing.T) {
		// Whichever endpoint has the first request stays; the other,
		// never dialled, goes, and the retry dials it.
		f := &first{arrived: make(chan string, 1), release: make(chan struct{})}
		var a, b *httptest.Server
		a = upstream(t, false, handler(f, func() string { return addr(a) }))
		b = upstream(t, false, handler(f, func() string { return addr(b) }))
		h := startProxy(t, withOther(simpleConfig(cluster(addr(a), addr(b)), retry)))
		res := get(h)
		stays := wait(t, f.arrived)
		goes := addr(a)
		if stays == goes {
			goes = addr(b)
		}
		if err := h.p.Apply(withOther(simpleConfig(cluster(stays), retry))); err != nil {
			t.Fatal(err)
		}
		if n := seriesWith(t, h, "endpoint", goes); n != 0 {
			t.Fatalf("%d series of the removed endpoint, never dialled", n)
		}
		close(f.release)
		if code := <-res; code != http.StatusOK {
			t.Fatalf("status %d, want the retry's 200", code)
		}
		if n := seriesWith(t, h, "endpoint", goes); n != 0 {
			t.Fatalf("%d series of the removed endpoint after the retry dialled it", n)
		}
		// Nor does a later reload, which no longer knows the endpoint.
		if err := h.p.Apply(withOther(simpleConfig(cluster(stays), retry))); err != nil {
			t.Fatal(err)
		}
		if n := seriesWith(t, h, "endpoint", goes); n != 0 {
			t.Fatalf("%d series of the removed endpoint after another reload", n)
		}
	})
}
