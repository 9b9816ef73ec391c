package proxy

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// BenchmarkPick is the load balancer's choice for one attempt over 16
// endpoints: without health checks, with all endpoints passing them, and
// with one failing (panic mode is then decided without a scan); then the
// same two for a zone-aware cluster of 8 local and 8 remote endpoints
// (with one failing, the local share takes a pass over the endpoints),
// and for a maglev cluster picking by a different key each time (with
// one failing, a sixteenth of the keys walk on to the next slot).
func BenchmarkPick(b *testing.B) {
	var addrs []string
	for i := range 16 {
		status := http.StatusOK
		if i == 5 {
			status = http.StatusServiceUnavailable
		}
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(status) }))
		b.Cleanup(s.Close)
		addrs = append(addrs, strings.TrimPrefix(s.URL, "http://"))
	}
	healthyOnly := addrs[:5:5]
	healthyOnly = append(healthyOnly, addrs[6:]...)
	for _, bc := range []struct {
		name  string
		addrs []string
		hc    bool
		zone  bool
		lb    config.LBPolicy
	}{{"no_health_check", addrs, false, false, config.LBLeastRequest}, {"all_pass", healthyOnly, true, false, config.LBLeastRequest},
		{"one_fails", addrs, true, false, config.LBLeastRequest},
		{"zone_aware_all_pass", healthyOnly, true, true, config.LBLeastRequest}, {"zone_aware_one_fails", addrs, true, true, config.LBLeastRequest},
		{"maglev_all_pass", healthyOnly, true, false, config.LBMaglev}, {"maglev_one_fails", addrs, true, false, config.LBMaglev}} {
		b.Run(bc.name, func(b *testing.B) {
			cl := config.Cluster{Endpoints: eps(bc.addrs...), LBPolicy: bc.lb}
			if bc.hc {
				cl.HealthCheck = &config.HealthCheck{Interval: time.Hour, HealthyThreshold: 1, UnhealthyThreshold: 1,
					HTTP: &config.HTTPHealthCheck{}}
			}
			cfg := simpleConfig(cl)
			if bc.zone {
				cfg.Node.Zone = "a"
				cl.ZoneAware.Enabled = true
				for i := range cl.Endpoints {
					cl.Endpoints[i].Zone = "a"
					if i%2 == 1 {
						cl.Endpoints[i].Zone = "b"
					}
				}
				cfg.Clusters["svc"] = cl
			}
			h := startProxy(b, cfg)
			c := h.p.snap.Load().clusters["svc"]
			want := 0
			if strings.HasSuffix(bc.name, "one_fails") {
				want = 1
			}
			if c.res.hc != nil {
				eventually(b, 10*time.Second, "every endpoint checked", func() bool {
					for i := range c.endpoints {
						if !c.res.hc.Status(i).Checked {
							return false
						}
					}
					return c.res.hc.UnhealthyCount() == want
				})
			}
			now := time.Now()
			s := &attemptSet{c: c}
			var key hashKey
			if bc.lb == config.LBMaglev {
				key.ok = true
			}
			b.ReportAllocs()
			for b.Loop() {
				*s = attemptSet{c: c}
				key.v += 0x9e3779b97f4a7c15
				if c.pick(s, now, key) == nil {
					b.Fatal("no endpoint")
				}
			}
		})
	}
}
