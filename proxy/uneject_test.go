package proxy

import (
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/outrigger-mesh/outrigger/breaker"
	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// An endpoint ejected for failing calls comes back when it passes an
// active health check, long before its ejection time is up, unless
// outlier_detection.successful_active_health_check_uneject_host is false.
func TestPassedHealthCheckUnejects(t *testing.T) {
	for _, tc := range []struct {
		name    string
		uneject *bool
	}{
		{"default", nil},
		{"off", new(bool)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var checks atomic.Int64
			sick := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/healthz" {
					checks.Add(1)
					return // 200: its checks pass while its calls fail
				}
				w.WriteHeader(500)
			})
			well := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {})
			core, logs := observer.New(zap.InfoLevel)
			cl := config.Cluster{Endpoints: eps(addr(sick), addr(well)), HealthCheck: fastHealthCheck(),
				OutlierDetection: breaker.OutlierConfig{Consecutive5xx: 1, BaseEjectionTime: time.Hour,
					MaxEjectionPercent: 50, SuccessfulActiveHealthCheckUnejectHost: tc.uneject}}
			h := startProxy(t, simpleConfig(cl), func(o *Options) { o.Logger = zap.New(core) })

			ejections := func() float64 { return counterValue(h.p.bm.ejections.WithLabelValues("svc")) }
			eventually(t, 5*time.Second, "the failing endpoint ejected", func() bool {
				readAll(t, mustGet(t, h.h1, h.url("/x")))
				return ejections() == 1
			})
			returned := func() int {
				return logs.FilterMessage("endpoint returned").FilterField(zap.String("reason", "active_health_check_passed")).Len()
			}
			if tc.uneject == nil {
				eventually(t, 5*time.Second, "the endpoint back after a passed check", func() bool {
					return returned() == 1 && endpointState(h, "svc", addr(sick)).State == "healthy"
				})
				if v := counterValue(h.p.bm.ejected.WithLabelValues("svc")); v != 0 {
					t.Fatalf("ejected gauge %v after the return, want 0", v)
				}
				return
			}
			// Off: several passed checks later, the endpoint is still out.
			seen := checks.Load()
			eventually(t, 5*time.Second, "three more passed checks", func() bool { return checks.Load() >= seen+3 })
			if s := endpointState(h, "svc", addr(sick)).State; s != "ejected" || returned() != 0 {
				t.Fatalf("state %q, %d early returns: want it still ejected", s, returned())
			}
			// A reload that turns it on (the checker kept, the detector
			// rebuilt with the ejection carried over) brings it back.
			cl.OutlierDetection.SuccessfulActiveHealthCheckUnejectHost = nil
			if err := h.p.Apply(simpleConfig(cl)); err != nil {
				t.Fatal(err)
			}
			eventually(t, 5*time.Second, "the endpoint back after the reload", func() bool {
				return returned() == 1 && endpointState(h, "svc", addr(sick)).State == "healthy"
			})
		})
	}
}

// A passed check returns an ejected endpoint only once the checker has it
// healthy: one recovering from failed checks stays ejected through the
// passes short of healthy_threshold, and comes back at the one that
// reaches it.
func TestPassedHealthCheckUnejectsOnlyAHealthyEndpoint(t *testing.T) {
	// budget is how many more checks pass (negative: none), unless every
	// check passes.
	var every atomic.Bool
	var budget, passed, failed, held atomic.Int64
	every.Store(true)
	// While gate is set, checks wait for it to close (see below).
	var gate atomic.Pointer[chan struct{}]
	sick := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			w.WriteHeader(500)
			return
		}
		if g := gate.Load(); g != nil {
			held.Add(1)
			select {
			case <-*g:
			case <-r.Context().Done():
				return
			}
		}
		if every.Load() || budget.Add(-1) >= 0 {
			passed.Add(1)
			return
		}
		failed.Add(1)
		w.WriteHeader(503) // unhealthy at once, whatever unhealthy_threshold
	})
	well := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {})
	core, logs := observer.New(zap.InfoLevel)
	hc := fastHealthCheck()
	hc.HealthyThreshold = 3
	hc.Timeout = time.Minute // a held check must not time out
	cl := config.Cluster{Endpoints: eps(addr(sick), addr(well)), HealthCheck: hc,
		OutlierDetection: breaker.OutlierConfig{Consecutive5xx: 1, BaseEjectionTime: time.Hour, MaxEjectionPercent: 50}}
	h := startProxy(t, simpleConfig(cl), func(o *Options) { o.Logger = zap.New(core) })
	returned := func() int {
		return logs.FilterMessage("endpoint returned").FilterField(zap.String("reason", "active_health_check_passed")).Len()
	}
	state := func() EndpointStatus { return endpointState(h, "svc", addr(sick)) }

	// A check that passes after the ejection would return the endpoint
	// (it is healthy): hold the checks, the endpoint's next one at the
	// gate before any request, so that none passes between the ejection
	// and the failures.
	eventually(t, 5*time.Second, "the endpoint checked healthy", func() bool {
		s := state()
		return s.HealthCheck != nil && s.HealthCheck.Checked && s.HealthCheck.Healthy
	})
	g := make(chan struct{})
	gate.Store(&g)
	eventually(t, 5*time.Second, "a check held", func() bool { return held.Load() > 0 })
	eventually(t, 5*time.Second, "the failing endpoint ejected", func() bool {
		readAll(t, mustGet(t, h.h1, h.url("/x")))
		return counterValue(h.p.bm.ejections.WithLabelValues("svc")) == 1
	})
	every.Store(false)
	gate.Store(nil)
	close(g)
	eventually(t, 5*time.Second, "the endpoint failing its check", func() bool {
		s := state()
		return s.HealthCheck != nil && !s.HealthCheck.Healthy
	})

	// Two passes (one short of healthy_threshold), then failures again.
	p0 := passed.Load()
	budget.Store(2)
	eventually(t, 5*time.Second, "two passes", func() bool { return passed.Load() >= p0+2 })
	f0 := failed.Load()
	eventually(t, 5*time.Second, "two more failures", func() bool { return failed.Load() >= f0+2 })
	if s := state(); s.State != "ejected" || returned() != 0 {
		t.Fatalf("state %q, %d returns after passes short of healthy_threshold: want it still ejected", s.State, returned())
	}

	// Passes from now on: the third in a row makes it healthy and returns it.
	every.Store(true)
	eventually(t, 5*time.Second, "the endpoint back once healthy", func() bool {
		return returned() == 1 && state().State == "healthy"
	})
	if s := state(); s.HealthCheck == nil || s.HealthCheck.Successes < hc.HealthyThreshold {
		t.Fatalf("returned with health check %+v, want at least %d passes in a row", s.HealthCheck, hc.HealthyThreshold)
	}
}

// skippedEjections reads outrigger_breaker_ejections_skipped_total of
// cluster svc for reason, or -1 when it is not exported.
func skippedEjections(t *testing.T, h *harness, reason string) float64 {
	t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "outrigger_breaker_ejections_skipped_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			if l["cluster"] == "svc" && l["reason"] == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	return -1
}

// Detections that eject nothing are counted by why: the
// max_ejection_percent cap (overflow) or an enforcing_* below 100
// (not_enforced). The counts survive a reload that rebuilds the detector,
// and go with the cluster when a reload removes it.
func TestSkippedEjectionsMetric(t *testing.T) {
	sick := func() string {
		return addr(upstream(t, false, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }))
	}
	cl := config.Cluster{Endpoints: eps(sick(), sick()),
		OutlierDetection: breaker.OutlierConfig{Consecutive5xx: 1, BaseEjectionTime: time.Hour, MaxEjectionPercent: 50}}
	h := startProxy(t, simpleConfig(cl))
	if o, n := skippedEjections(t, h, "overflow"), skippedEjections(t, h, "not_enforced"); o != 0 || n != 0 {
		t.Fatalf("before any request: overflow %v, not_enforced %v; want both 0", o, n)
	}
	for range 3 {
		readAll(t, mustGet(t, h.h1, h.url("/")))
	}
	// The first 500 ejects one endpoint; each later one, from the other,
	// is over the 50 % cap. (A request is recorded as the proxy ends it,
	// which can be after the client has read the response.)
	eventually(t, 5*time.Second, "2 overflows", func() bool { return skippedEjections(t, h, "overflow") == 2 })

	zero := 0
	cl.OutlierDetection.EnforcingConsecutive5xx = &zero
	cl.OutlierDetection.MaxEjectionPercent = 100
	if err := h.p.Apply(simpleConfig(cl)); err != nil {
		t.Fatal(err)
	}
	// (Four failed requests in all: a fifth would open the breaker.)
	readAll(t, mustGet(t, h.h1, h.url("/")))
	eventually(t, 5*time.Second, "a detection not enforced", func() bool { return skippedEjections(t, h, "not_enforced") == 1 })
	if o := skippedEjections(t, h, "overflow"); o != 2 {
		t.Fatalf("after the reload: overflow %v, want the 2 carried", o)
	}

	other := simpleConfig(config.Cluster{Endpoints: eps(sick())})
	for name, c := range other.Clusters {
		delete(other.Clusters, name)
		other.Clusters["other"] = c
	}
	for i := range other.Routes {
		other.Routes[i].Cluster = "other"
	}
	if err := h.p.Apply(other); err != nil {
		t.Fatal(err)
	}
	if o := skippedEjections(t, h, "overflow"); o != -1 {
		t.Fatalf("removed cluster still exported: overflow %v", o)
	}
}

// A detection that ejects nothing counts when the detector that makes it
// is one a reload has replaced: a call in flight across the reload ends
// on the old detector. The counter goes on from the replaced detector's
// count and never back: the new detector took the count over when the
// reload built it, and what the old one counted since was lost.
func TestSkippedEjectionsCountedAfterTheReloadThatReplacedTheDetector(t *testing.T) {
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	s := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		w.WriteHeader(500)
	})
	zero := 0
	cl := config.Cluster{Endpoints: eps(addr(s)),
		OutlierDetection: breaker.OutlierConfig{Consecutive5xx: 1, EnforcingConsecutive5xx: &zero, BaseEjectionTime: time.Hour}}
	h := startProxy(t, simpleConfig(cl))

	done := make(chan string, 1)
	go func() {
		resp, err := h.h1.Get(h.url("/"))
		if err != nil {
			done <- err.Error()
			return
		}
		resp.Body.Close()
		done <- resp.Status
	}()
	<-arrived
	// A new base_ejection_time: the reload builds another detector.
	cl.OutlierDetection.BaseEjectionTime = 2 * time.Hour
	if err := h.p.Apply(simpleConfig(cl)); err != nil {
		t.Fatal(err)
	}
	once.Do(func() { close(release) })
	if st := <-done; st != "500 Internal Server Error" {
		t.Fatalf("request in flight across the reload: %s", st)
	}
	eventually(t, 5*time.Second, "the detection of the call in flight counted", func() bool {
		return skippedEjections(t, h, "not_enforced") == 1
	})
}
