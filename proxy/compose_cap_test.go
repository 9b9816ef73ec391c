package proxy

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/breaker"
	"github.com/outrigger-mesh/outrigger/composer"
	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// A composition call whose whole, well-formed answer is larger than its
// max_response_bytes fails with response_too_large, and the proxy stops
// reading it at the cap; the upstream did nothing wrong, so its endpoint
// is not charged with a failure (no outlier ejection, no breaker failure)
// as it would be for a body it cut short.
func TestCompositeCallOverCapIsNoUpstreamFailure(t *testing.T) {
	answer := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`"` + strings.Repeat("x", 100) + `"`))
	}
	big, big2 := upstream(t, false, answer), upstream(t, false, answer)
	small := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`1`))
	})
	cfg := &config.Config{
		Clusters: map[string]config.Cluster{
			"big": {Endpoints: eps(addr(big), addr(big2)), OutlierDetection: breaker.OutlierConfig{
				Consecutive5xx: 1, BaseEjectionTime: time.Hour, MaxEjectionPercent: 50}},
			"small": {Endpoints: eps(addr(small))},
		},
		Routes: []config.Route{{
			Name:  "capped",
			Match: config.RouteMatch{Path: config.PathMatch{Exact: "/capped"}},
			Composition: &composer.Spec{
				Calls: []composer.Call{
					{Name: "big", Cluster: "big", Path: "/big", MaxResponseBytes: 16, Optional: true},
					{Name: "small", Cluster: "small", Path: "/small", MaxResponseBytes: 1 << 20},
				},
				Limits: composer.Limits{Deadline: composer.Duration(5 * time.Second)},
			},
		}},
	}
	h := startProxy(t, cfg)
	for i := 0; i < 4; i++ {
		resp := mustGet(t, h.h1, h.url("/capped"))
		body := readAll(t, resp)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Outrigger-Partial") == "" {
			t.Fatalf("status %d partial %q body %s", resp.StatusCode, resp.Header.Get("X-Outrigger-Partial"), body)
		}
	}
	if n := counterValue(h.p.bm.ejections.WithLabelValues("big")); n != 0 {
		t.Fatalf("%v ejections of the endpoint whose answers were only larger than the call's cap", n)
	}
	for _, a := range []string{addr(big), addr(big2)} {
		if s := endpointState(h, "big", a).State; s != "healthy" {
			t.Fatalf("endpoint %s %s after answers larger than the call's cap", a, s)
		}
	}
}
