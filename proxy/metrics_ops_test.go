package proxy

import (
	"context"
	"net/http"
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

// An endpoint a reload removes and a later one adds back within the
// pool's idle timeout: the upstream_connections gauge counts the
// connections open to it, the one kept from before included. The series
// was deleted with the endpoint while the cluster's pool kept the
// connection, and counted from zero when the endpoint came back, though
// the pool used the kept connection again (0 while one was open).
func TestUpstreamConnectionsOfAnEndpointAddedBack(t *testing.T) {
	a := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {})
	b := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {})
	cfg := func(endpoints ...string) *config.Config {
		return simpleConfig(config.Cluster{Endpoints: eps(endpoints...), OutlierDetection: breaker.OutlierConfig{Disabled: true}})
	}
	h := startProxy(t, cfg(addr(a)))
	conns := func() float64 { return counterValue(h.p.m.conns.WithLabelValues("svc", addr(a))) }
	readAll(t, mustGet(t, h.h1, h.url("/")))
	if v := conns(); v != 1 {
		t.Fatalf("connections to a: %v, want 1", v)
	}
	if err := h.p.Apply(cfg(addr(b))); err != nil {
		t.Fatal(err)
	}
	if n := seriesWith(t, h, "endpoint", addr(a)); n != 1 {
		t.Fatalf("%d series of the removed endpoint while the pool holds a connection to it, want 1", n)
	}
	if err := h.p.Apply(cfg(addr(a))); err != nil {
		t.Fatal(err)
	}
	readAll(t, mustGet(t, h.h1, h.url("/")))
	if v := conns(); v != 1 {
		t.Fatalf("connections to a: %v after it came back, want 1", v)
	}

	// Removed again, and its connection closed: the next reload deletes
	// the series.
	if err := h.p.Apply(cfg(addr(b))); err != nil {
		t.Fatal(err)
	}
	a.CloseClientConnections()
	eventually(t, 5*time.Second, "the connection to a to close", func() bool { return conns() == 0 })
	if err := h.p.Apply(cfg(addr(b))); err != nil {
		t.Fatal(err)
	}
	if n := seriesWith(t, h, "endpoint", addr(a)); n != 0 {
		t.Fatalf("%d series of the removed endpoint after its connection closed and a reload", n)
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
