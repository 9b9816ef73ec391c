package proxy

import (
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// Round robin goes on from its turn across reloads that keep the
// cluster's policy: with a reload between requests, the endpoints still
// take turns. Every reload made a new balancer that started at the first
// endpoint, so all of these went there.
func TestRoundRobinTurnSurvivesReload(t *testing.T) {
	var hits [3]atomic.Int64
	var addrs []string
	for i := range 3 {
		s := upstream(t, false, func(w http.ResponseWriter, r *http.Request) { hits[i].Add(1) })
		addrs = append(addrs, addr(s))
	}
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addrs...)}))
	for range 9 {
		readAll(t, mustGet(t, h.h1, h.url("/")))
		if err := h.p.Apply(simpleConfig(config.Cluster{Endpoints: eps(addrs...)})); err != nil {
			t.Fatal(err)
		}
	}
	if hits[0].Load() != 3 || hits[1].Load() != 3 || hits[2].Load() != 3 {
		t.Fatalf("hits %d %d %d across reloads, want 3 3 3", hits[0].Load(), hits[1].Load(), hits[2].Load())
	}
}

// The requests in flight on an endpoint are still counted by the
// snapshots of later reloads (least_request's choice and /clusters),
// for the endpoints the reload keeps; an endpoint the reload adds starts
// at zero. A reload used to forget them all: least_request then took
// every endpoint for idle, the one holding long streams included.
func TestRequestsInFlightSurviveReload(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	rel := func() { once.Do(func() { close(release) }) }
	hold := func(w http.ResponseWriter, r *http.Request) { <-release }
	a, b, c := upstream(t, false, hold), upstream(t, false, hold), upstream(t, false, hold)
	t.Cleanup(rel) // before the upstreams' Close, which waits for handlers
	mk := func(endpoints ...string) *config.Config {
		return simpleConfig(config.Cluster{Endpoints: eps(endpoints...), LBPolicy: config.LBLeastRequest},
			func(r *config.Route) { r.Timeout = 20 * time.Second })
	}
	h := startProxy(t, mk(addr(a), addr(b)))
	const held = 6
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	t.Cleanup(rel)
	for range held {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if resp, err := h.h1.Get(h.url("/hold")); err == nil {
				resp.Body.Close()
			}
		}()
	}
	svc := func() ClusterStatus {
		for _, c := range h.p.Clusters() {
			if c.Name == "svc" {
				return c
			}
		}
		t.Fatal("no cluster svc")
		return ClusterStatus{}
	}
	inFlight := func() (sum int64, per map[string]int64) {
		per = map[string]int64{}
		for _, e := range svc().Endpoints {
			per[e.Address] = e.ActiveRequests
			sum += e.ActiveRequests
		}
		return sum, per
	}
	eventually(t, 5*time.Second, "the requests to be held", func() bool { s, _ := inFlight(); return s == held })
	_, before := inFlight()

	// The same cluster, and one more endpoint.
	if err := h.p.Apply(mk(addr(a), addr(b), addr(c))); err != nil {
		t.Fatal(err)
	}
	_, after := inFlight()
	if after[addr(a)] != before[addr(a)] || after[addr(b)] != before[addr(b)] || after[addr(c)] != 0 {
		t.Fatalf("in flight after the reload %v, before %v: the kept endpoints lost their counts", after, before)
	}
	if got := svc().ActiveRequests; got != held {
		t.Fatalf("cluster in flight after the reload %d, want %d", got, held)
	}
	rel()
	wg.Wait()
	eventually(t, 5*time.Second, "the counts to return to zero", func() bool {
		s, _ := inFlight()
		return s == 0 && svc().ActiveRequests == 0
	})
}
