package proxy

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/outrigger-mesh/outrigger/breaker"
	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// zoneFleet is a zone-aware cluster's backends: local ones in zone "a",
// the sidecar's, and remote ones in zone "b".
type zoneFleet struct {
	local, remote []*healthyBackend
	cl            config.Cluster
}

// newZoneFleet starts nLocal backends in zone a and nRemote in zone b,
// checked every 20ms, outlier detection off so that only the checks take
// endpoints out.
func newZoneFleet(t *testing.T, nLocal, nRemote int, policy config.LBPolicy) *zoneFleet {
	f := &zoneFleet{cl: config.Cluster{LBPolicy: policy, HealthCheck: fastHealthCheck(),
		OutlierDetection: breaker.OutlierConfig{Disabled: true},
		ZoneAware:        config.ZoneAware{Enabled: true}}}
	for i := range nLocal + nRemote {
		zone, name := "a", "local"
		if i >= nLocal {
			zone, name = "b", "remote"
		}
		b, a := newHealthyBackend(t, name)
		f.cl.Endpoints = append(f.cl.Endpoints, config.Endpoint{Address: a, Zone: zone})
		if i < nLocal {
			f.local = append(f.local, b)
		} else {
			f.remote = append(f.remote, b)
		}
	}
	return f
}

func (f *zoneFleet) config(zone string) *config.Config {
	cfg := simpleConfig(f.cl)
	cfg.Node.Zone = zone
	return cfg
}

// start serves f's cluster with the sidecar in zone a, once every
// endpoint has passed a check.
func (f *zoneFleet) start(t *testing.T) *harness {
	h := startProxy(t, f.config("a"))
	f.waitStates(t, h)
	return h
}

// waitStates waits until every endpoint's state is the one its
// backend's status says.
func (f *zoneFleet) waitStates(t *testing.T, h *harness) {
	t.Helper()
	eventually(t, 5*time.Second, "every endpoint checked as its backend answers", func() bool {
		for i, e := range f.cl.Endpoints {
			b := f.backend(i)
			want := "healthy"
			if b.status.Load() != 200 {
				want = "unhealthy"
			}
			if st := endpointState(h, "svc", e.Address); st.HealthCheck == nil || !st.HealthCheck.Checked || st.State != want {
				return false
			}
		}
		return true
	})
}

func (f *zoneFleet) backend(i int) *healthyBackend {
	if i < len(f.local) {
		return f.local[i]
	}
	return f.remote[i-len(f.local)]
}

// sendZoned makes n requests and returns how many local and remote backends
// answered.
func sendZoned(t *testing.T, h *harness, n int) (local, remote int) {
	t.Helper()
	for i := range n {
		resp := mustGet(t, h.h1, h.url("/x"))
		switch body := readAll(t, resp); {
		case resp.StatusCode != http.StatusOK:
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		case body == "local":
			local++
		default:
			remote++
		}
	}
	return local, remote
}

var zonePolicies = []config.LBPolicy{config.LBRoundRobin, config.LBLeastRequest, config.LBRandom}

// While the local zone's endpoints are healthy every request stays in
// it, spread over all of them, under every policy.
func TestZoneAwareKeepsTrafficLocalWhileHealthy(t *testing.T) {
	for _, policy := range zonePolicies {
		t.Run(string(policy), func(t *testing.T) {
			f := newZoneFleet(t, 2, 2, policy)
			h := f.start(t)
			if local, remote := sendZoned(t, h, 60); remote != 0 || local != 60 {
				t.Fatalf("local %d, remote %d, want all 60 local", local, remote)
			}
			for i, b := range f.local {
				if b.hits.Load() == 0 {
					t.Errorf("local endpoint %d got no request", i)
				}
			}
		})
	}
}

// As local endpoints fail their checks the local share follows Envoy's
// priority load: with 3 of 4 eligible, 75% × 1.4 is over 100%, all
// stays local; with 2 of 4, 50% × 1.4 = 70% stays and 30% spills over.
// The level draws are a Weyl sequence, so 400 requests are within a few
// of 280.
func TestZoneAwareSpillsInProportionToLocalHealth(t *testing.T) {
	for _, policy := range zonePolicies {
		t.Run(string(policy), func(t *testing.T) {
			f := newZoneFleet(t, 4, 4, policy)
			h := f.start(t)

			f.local[0].status.Store(503)
			f.waitStates(t, h)
			if local, remote := sendZoned(t, h, 40); remote != 0 {
				t.Fatalf("3 of 4 local healthy: local %d, remote %d, want no spill", local, remote)
			}

			f.local[1].status.Store(503)
			f.waitStates(t, h)
			hits0, hits1 := f.local[0].hits.Load(), f.local[1].hits.Load()
			local, remote := sendZoned(t, h, 400)
			if local < 270 || local > 290 {
				t.Fatalf("2 of 4 local healthy: local %d, remote %d, want about 280 local", local, remote)
			}
			if f.local[0].hits.Load() != hits0 || f.local[1].hits.Load() != hits1 {
				t.Fatal("a failing local endpoint was picked")
			}
		})
	}
}

// A local level with no eligible endpoint leaves every request to the
// other zones; its return brings them back.
func TestZoneAwareSendsAllToRemoteWhenNoLocalIsEligible(t *testing.T) {
	for _, policy := range zonePolicies {
		t.Run(string(policy), func(t *testing.T) {
			f := newZoneFleet(t, 2, 2, policy)
			h := f.start(t)
			for _, b := range f.local {
				b.status.Store(503)
			}
			f.waitStates(t, h)
			if local, remote := sendZoned(t, h, 40); local != 0 {
				t.Fatalf("local %d, remote %d, want all remote", local, remote)
			}
			for _, b := range f.local {
				b.status.Store(200)
			}
			f.waitStates(t, h)
			if local, remote := sendZoned(t, h, 40); remote != 0 {
				t.Fatalf("after the local zone came back: local %d, remote %d, want all local", local, remote)
			}
		})
	}
}

// Panic mode is decided per level, while the levels' loads sum to less
// than 100%: when both are under panic_threshold (none of 2 local
// endpoints and 1 of 3 remote ones eligible) picks go over every
// endpoint whatever its zone or health, as without zone awareness.
func TestZoneAwarePanicModeBalancesOverAllEndpoints(t *testing.T) {
	f := newZoneFleet(t, 2, 3, config.LBRoundRobin)
	h := f.start(t)
	f.local[0].status.Store(503)
	f.local[1].status.Store(503)
	f.remote[0].status.Store(503)
	f.remote[1].status.Store(503)
	f.waitStates(t, h)
	if cs := h.p.Clusters(); !cs[0].Panic {
		t.Fatal("1 of 5 endpoints eligible: not in panic mode")
	}
	sendZoned(t, h, 100)
	for i := range f.cl.Endpoints {
		if got := f.backend(i).hits.Load(); got != 20 {
			t.Fatalf("endpoint %d got %d of 100 requests, want 20 (round robin over all five)", i, got)
		}
	}
}

// levelSplit decides panic per level as Envoy does per priority level:
// never while the loads sum to 100% or more, else for each level under
// panic_threshold; the cluster balances over every endpoint when every
// level with endpoints is in panic, or every endpoint is pending.
func TestLevelSplitPanic(t *testing.T) {
	for _, c := range []struct {
		ok, n    [2]int64
		pct      float64
		panic    [2]bool
		whole    bool
		sharePct float64
	}{
		{[2]int64{0, 2}, [2]int64{3, 2}, 50, [2]bool{}, false, 0},            // local down, remote whole: failover
		{[2]int64{0, 3}, [2]int64{4, 4}, 50, [2]bool{}, false, 0},            // 75% × 1.4 ≥ 100%
		{[2]int64{0, 1}, [2]int64{2, 2}, 50, [2]bool{true, false}, false, 0}, // 0 + 70%: local in panic, but its load is 0
		{[2]int64{1, 1}, [2]int64{5, 2}, 50, [2]bool{true, false}, false, 28.57},
		{[2]int64{0, 1}, [2]int64{2, 3}, 50, [2]bool{true, true}, true, 0},
		{[2]int64{0, 1}, [2]int64{0, 4}, 50, [2]bool{false, true}, true, 0}, // no local endpoint: as without levels
		{[2]int64{0, 1}, [2]int64{2, 3}, 0, [2]bool{}, false, 0},            // threshold 0: never
		{[2]int64{0, 0}, [2]int64{0, 0}, 50, [2]bool{}, true, 0},            // all pending
		{[2]int64{0, 0}, [2]int64{0, 0}, 0, [2]bool{}, true, 0},
	} {
		s := levelSplit(c.ok, c.n, 140, c.pct)
		share := float64(s.share) * 100 / shareUnit
		if s.panic != c.panic || s.whole != c.whole || share < c.sharePct-0.01 || share > c.sharePct+0.01 {
			t.Errorf("ok %v of %v, threshold %v: panic %v whole %v share %.2f%%, want %v %v %.2f%%",
				c.ok, c.n, c.pct, s.panic, s.whole, share, c.panic, c.whole, c.sharePct)
		}
	}
}

// Within a level the endpoints' weights hold: local weights 1 and 3
// take a quarter and three quarters of round robin's picks.
func TestZoneAwareHonoursWeightsWithinALevel(t *testing.T) {
	f := newZoneFleet(t, 2, 1, config.LBRoundRobin)
	f.cl.Endpoints[0].Weight = 1
	f.cl.Endpoints[1].Weight = 3
	f.cl.Endpoints[2].Weight = 5
	h := f.start(t)
	if local, remote := sendZoned(t, h, 100); local != 100 {
		t.Fatalf("local %d, remote %d", local, remote)
	}
	if a, b := f.local[0].hits.Load(), f.local[1].hits.Load(); a != 25 || b != 75 {
		t.Fatalf("local endpoints got %d and %d, want 25 and 75", a, b)
	}
}

// A retry avoids the endpoint tried, as without zones: the local level's
// one endpoint answered 503, so the retry crosses to the remote level.
func TestZoneAwareRetryCrossesLevelsWhenTheLevelHasNoOther(t *testing.T) {
	local := upstream(t, false, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	remote := upstream(t, false, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("remote")) })
	cl := config.Cluster{Endpoints: []config.Endpoint{{Address: addr(local), Zone: "a"}, {Address: addr(remote), Zone: "b"}},
		OutlierDetection: breaker.OutlierConfig{Disabled: true}, ZoneAware: config.ZoneAware{Enabled: true}}
	cfg := simpleConfig(cl, func(r *config.Route) {
		r.Retry = &config.RetryPolicy{Attempts: 1, RetryOn: []config.RetryCondition{"5xx"}, Backoff: config.Backoff{Base: time.Microsecond}}
	})
	cfg.Node.Zone = "a"
	h := startProxy(t, cfg)
	for i := range 5 {
		resp := mustGet(t, h.h1, h.url("/x"))
		if body := readAll(t, resp); resp.StatusCode != 200 || body != "remote" {
			t.Fatalf("request %d: %d %q, want the remote endpoint's answer on the retry", i, resp.StatusCode, body)
		}
	}
}

// A reload that moves the sidecar to another zone moves its traffic at
// the next pick, and the endpoints keep their health state: a failing
// endpoint of the new zone stays out.
func TestZoneAwareReloadOfNodeZoneAppliesToTheNextPick(t *testing.T) {
	f := newZoneFleet(t, 2, 2, config.LBRoundRobin)
	h := f.start(t)
	f.remote[1].status.Store(503)
	f.waitStates(t, h)
	if local, remote := sendZoned(t, h, 20); remote != 0 {
		t.Fatalf("in zone a: local %d, remote %d", local, remote)
	}
	if err := h.p.Apply(f.config("b")); err != nil {
		t.Fatal(err)
	}
	// Zone b has one endpoint of two eligible: 50% × 1.4 = 70% stays in
	// it, 30% goes to zone a.
	before := f.remote[1].hits.Load()
	local, remote := sendZoned(t, h, 200)
	if remote < 130 || remote > 150 {
		t.Fatalf("in zone b: zone a %d, zone b %d, want about 140 in zone b", local, remote)
	}
	if f.remote[1].hits.Load() != before {
		t.Fatal("the failing endpoint of zone b was picked after the reload")
	}
}

// Without zone_aware the zones change nothing: endpoints of every zone
// take their turns.
func TestZonesWithoutZoneAwareChangeNothing(t *testing.T) {
	f := newZoneFleet(t, 2, 2, config.LBRoundRobin)
	f.cl.ZoneAware.Enabled = false
	h := f.start(t)
	if local, remote := sendZoned(t, h, 40); local != 20 || remote != 20 {
		t.Fatalf("local %d, remote %d, want 20 and 20", local, remote)
	}
}

// levelSplit's share follows Envoy's priority load, normalized when both
// levels are short.
func TestLevelSplitShare(t *testing.T) {
	for _, c := range []struct {
		ok, n  [2]int64
		factor int64
		want   float64 // percent
	}{
		{[2]int64{4, 4}, [2]int64{4, 4}, 140, 100},
		{[2]int64{3, 4}, [2]int64{4, 4}, 140, 100},
		{[2]int64{3, 4}, [2]int64{4, 4}, 100, 75},
		{[2]int64{2, 4}, [2]int64{4, 4}, 140, 70},
		{[2]int64{1, 4}, [2]int64{4, 4}, 140, 35},
		{[2]int64{0, 4}, [2]int64{4, 4}, 140, 0},
		{[2]int64{1, 1}, [2]int64{4, 4}, 140, 50},  // 35% and 35%: normalized
		{[2]int64{1, 0}, [2]int64{4, 4}, 140, 100}, // no remote eligible
		{[2]int64{0, 0}, [2]int64{0, 4}, 140, 0},   // no local endpoint
		{[2]int64{0, 0}, [2]int64{4, 4}, 140, 0},   // none eligible
		{[2]int64{1, 3}, [2]int64{10, 3}, 200, 20}, // 20% + 100%
	} {
		got := float64(levelSplit(c.ok, c.n, c.factor, 0).share) * 100 / shareUnit
		if d := got - c.want; d < -0.01 || d > 0.01 {
			t.Errorf("ok %v of %v, factor %d: local share %.2f%%, want %.0f%%", c.ok, c.n, c.factor, got, c.want)
		}
	}
}

// The level draws are spread evenly: for any share, the first k draws
// under it number within a few of share × k.
func TestZoneDrawsFollowTheShare(t *testing.T) {
	z := &zoneAware{draws: new(atomic.Uint64)}
	for _, pct := range []int64{1, 10, 30, 50, 70, 99} {
		share := pct * shareUnit / 100
		under := 0
		const k = 10000
		for range k {
			if z.draw() < share {
				under++
			}
		}
		if want := int(pct * k / 100); under < want-10 || under > want+10 {
			t.Errorf("share %d%%: %d of %d draws under it, want %d", pct, under, k, want)
		}
	}
}

// /clusters shows each endpoint's zone and a zone-aware cluster's local
// share, and outrigger_proxy_zone_local_share exports the share: 70%
// with 2 of 4 local endpoints eligible, the local part of the
// endpoints (a half) in panic mode. A cluster without zone_aware has
// neither.
func TestZoneAwareShareInClustersAndMetrics(t *testing.T) {
	f := newZoneFleet(t, 4, 4, config.LBRoundRobin)
	cfg := f.config("a")
	cfg.Clusters["plain"] = config.Cluster{Endpoints: []config.Endpoint{{Address: f.cl.Endpoints[0].Address, Zone: "a"}}}
	h := startProxy(t, cfg)
	f.waitStates(t, h)
	status := func(name string) ClusterStatus {
		for _, c := range h.p.Clusters() {
			if c.Name == name {
				return c
			}
		}
		t.Fatalf("no cluster %s", name)
		return ClusterStatus{}
	}
	gauge := func() float64 {
		return gathered(t, h, "outrigger_proxy_zone_local_share", "cluster", "svc")
	}
	cs := status("svc")
	if z := cs.ZoneAware; z == nil || z.Zone != "a" || z.LocalEndpoints != 4 || z.RemoteEndpoints != 4 || z.LocalSharePercent != 100 {
		t.Fatalf("zone_aware %+v, want zone a, 4 and 4 endpoints, 100%%", cs.ZoneAware)
	}
	if cs.Endpoints[0].Zone != "a" || cs.Endpoints[7].Zone != "b" {
		t.Fatalf("endpoint zones %q and %q", cs.Endpoints[0].Zone, cs.Endpoints[7].Zone)
	}
	if g := gauge(); g != 1 {
		t.Fatalf("gauge %v, want 1", g)
	}
	if p := status("plain"); p.ZoneAware != nil || p.Endpoints[0].Zone != "a" {
		t.Fatalf("plain cluster: zone_aware %+v, endpoint zone %q", p.ZoneAware, p.Endpoints[0].Zone)
	}

	f.local[0].status.Store(503)
	f.local[1].status.Store(503)
	f.waitStates(t, h)
	if got := status("svc").ZoneAware.LocalSharePercent; got < 69.99 || got > 70.01 {
		t.Fatalf("local share %.2f%%, want 70%%", got)
	}
	if g := gauge(); g < 0.6999 || g > 0.7001 {
		t.Fatalf("gauge %v, want 0.7", g)
	}

	for _, b := range append(f.local[2:], f.remote[:3]...) {
		b.status.Store(503)
	}
	f.waitStates(t, h)
	cs = status("svc")
	if !cs.Panic || cs.ZoneAware.LocalSharePercent != 50 || gauge() != 0.5 {
		t.Fatalf("1 of 8 eligible: panic %v, local share %v%%, gauge %v, want panic at 50%%", cs.Panic, cs.ZoneAware.LocalSharePercent, gauge())
	}

	// A reload that turns zone_aware off drops the series.
	cfg.Clusters["svc"] = func() config.Cluster { c := f.cl; c.ZoneAware.Enabled = false; return c }()
	if err := h.p.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(scrapeCollector{h.p}, "outrigger_proxy_zone_local_share"); n != 0 {
		t.Fatalf("%d series after zone_aware was turned off", n)
	}
}

// An endpoint outlier detection ejected is out of its level's health as
// one failing its check is: one of two local endpoints ejected leaves
// the local level 70% of the picks.
func TestZoneAwareCountsEjectedEndpointsOut(t *testing.T) {
	var bad atomic.Bool
	bad.Store(true)
	flaky := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		if bad.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.Write([]byte("local"))
	})
	steady := upstream(t, false, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("local")) })
	var eps []config.Endpoint
	eps = append(eps, config.Endpoint{Address: addr(flaky), Zone: "a"}, config.Endpoint{Address: addr(steady), Zone: "a"})
	for range 2 {
		s := upstream(t, false, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("remote")) })
		eps = append(eps, config.Endpoint{Address: addr(s), Zone: "b"})
	}
	cfg := simpleConfig(config.Cluster{Endpoints: eps, ZoneAware: config.ZoneAware{Enabled: true},
		OutlierDetection: breaker.OutlierConfig{Consecutive5xx: 1, MaxEjectionPercent: 100, BaseEjectionTime: time.Minute}})
	cfg.Node.Zone = "a"
	h := startProxy(t, cfg)
	eventually(t, 5*time.Second, "the flaky endpoint ejected", func() bool {
		readAll(t, mustGet(t, h.h1, h.url("/x")))
		return endpointState(h, "svc", addr(flaky)).State == "ejected"
	})
	bad.Store(false)
	local, remote := sendZoned(t, h, 200)
	if local < 130 || local > 150 {
		t.Fatalf("local %d, remote %d, want about 140 local", local, remote)
	}
}

// A local zone that fails whole, with the other zone healthy enough to
// take its load, sends nothing to it: as Envoy disregards the panic
// threshold while the levels' normalized total health is 100%, the 2 of
// 5 endpoints left (under the 50% threshold) are not panic mode, and
// every request goes to them.
func TestZoneAwareLocalZoneDownIsFailoverNotPanic(t *testing.T) {
	f := newZoneFleet(t, 3, 2, config.LBRoundRobin)
	h := f.start(t)
	for _, b := range f.local {
		b.status.Store(503)
	}
	f.waitStates(t, h)
	if cs := h.p.Clusters(); cs[0].Panic {
		t.Fatal("panic mode with the remote zone whole")
	}
	if local, remote := sendZoned(t, h, 40); local != 0 || remote != 40 {
		t.Fatalf("local %d, remote %d, want all 40 on the remote zone's healthy endpoints", local, remote)
	}
}
