package proxy

import (
	"net/http"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/breaker"
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
