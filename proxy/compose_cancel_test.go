package proxy

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/composer"
	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// An HTTP/2 client that resets its composite request while a fan-out is
// in flight went away: every call is canceled at its upstream, the
// cluster's limits and gauges are back to zero, and the request is
// recorded as a client gone (499, counted in 4xx), not as the 502 the
// canceled calls would make of it. No answer is written.
func TestCompositeClientGoneMidFanOutIsNoUpstreamError(t *testing.T) {
	var started, ended atomic.Int64
	ids := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"items":[1,2,3,4]}`)
	})
	items := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {
		started.Add(1)
		defer ended.Add(1)
		<-r.Context().Done()
	})
	cfg := &config.Config{
		Clusters: map[string]config.Cluster{
			"ids":   {Endpoints: eps(addr(ids)), Protocol: config.ProtocolHTTP2},
			"items": {Endpoints: eps(addr(items)), Protocol: config.ProtocolHTTP2},
		},
		Routes: []config.Route{{
			Name:  "fan",
			Match: config.RouteMatch{Path: config.PathMatch{Exact: "/fan"}},
			Composition: &composer.Spec{
				Calls: []composer.Call{
					{Name: "ids", Cluster: "ids", Path: "/ids"},
					{Name: "item", Cluster: "items", Path: "/items/{each}", ForEach: "ids.items[]"},
				},
			},
		}},
	}
	h := startProxy(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url("/fan"), nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		resp, err := h.h2c.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	eventually(t, 5*time.Second, "the fan-out in flight", func() bool { return started.Load() == 4 })
	cancel()
	if err := <-done; err == nil {
		t.Fatal("the request succeeded")
	}
	eventually(t, 5*time.Second, "the calls canceled at the upstream", func() bool { return ended.Load() == 4 })
	requests := func(class string) float64 {
		return counterValue(h.p.m.requests.WithLabelValues("outbound", "fan", "", class))
	}
	eventually(t, 5*time.Second, "the request recorded", func() bool { return requests("4xx")+requests("5xx") == 1 })
	if n := requests("5xx"); n != 0 {
		t.Fatalf("a client gone was recorded as %v upstream errors (5xx)", n)
	}
	eventually(t, 5*time.Second, "the composer's count", func() bool {
		return gathered(t, h, "outrigger_composer_requests_total", "result", "canceled") == 1
	})
	eventually(t, 5*time.Second, "the cluster's gauges back to 0", func() bool {
		for _, c := range h.p.Clusters() {
			if c.Name == "items" {
				return c.ActiveRequests == 0 && c.Limits["max_requests"].InUse == 0 && c.Limits["max_pending_requests"].InUse == 0 &&
					counterValue(h.p.m.active.WithLabelValues("items")) == 0
			}
		}
		return false
	})
}

// gathered is the sum of the series of metric name on h's registry whose
// label key has value val (0 when there is none): a composition's series
// exist for every call and reason, most at 0.
func gathered(t testing.TB, h *harness, name, key, val string) float64 {
	t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == key && l.GetValue() == val {
					sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
				}
			}
		}
	}
	return sum
}
