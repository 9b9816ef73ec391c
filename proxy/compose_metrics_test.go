package proxy

import (
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/composer"
	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// A reload that removes a composition, renames its route or changes its
// calls deletes the outrigger_composer_* series it no longer uses, and a
// composite request of the old configuration that finishes after the
// reload brings none of them back; a composition the reload keeps (built
// again, as every Apply does) counts on where it was. The series were
// looked up by name on every request and never deleted: exported for good.
func TestReloadDeletesComposerSeriesOfRemovedCompositions(t *testing.T) {
	// The upstream of cluster "slow" holds the call of the composite
	// request whose id is "hold" until released (a composition's calls
	// carry its request's id); the others answer at once.
	type hold struct {
		arrived chan struct{}
		release chan struct{}
	}
	answer := func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"n":1}`)
	}
	fast := upstream(t, false, func(w http.ResponseWriter, r *http.Request) { answer(w) })
	route := func(name, path string, calls ...composer.Call) config.Route {
		return config.Route{
			Name:        name,
			Match:       config.RouteMatch{Path: config.PathMatch{Exact: path}},
			Composition: &composer.Spec{Calls: calls, Output: composer.Output{Nest: nests(calls)}},
		}
	}
	kept := route("kept", "/kept", composer.Call{Name: "x", Cluster: "fast", Path: "/x"})
	held := func(name, slowCall string) config.Route {
		return route(name, "/held",
			composer.Call{Name: slowCall, Cluster: "slow", Path: "/s"},
			composer.Call{Name: "other", Cluster: "fast", Path: "/o"})
	}
	get := func(t *testing.T, h *harness, path, id string) <-chan int {
		res := make(chan int, 1)
		req, err := http.NewRequest(http.MethodGet, h.url(path), nil)
		if err != nil {
			t.Fatal(err)
		}
		if id != "" {
			req.Header.Set("X-Request-Id", id)
		}
		go func() {
			resp, err := h.h1.Do(req)
			if err != nil {
				t.Error(err)
				res <- 0
				return
			}
			resp.Body.Close()
			res <- resp.StatusCode
		}()
		return res
	}
	status := func(t *testing.T, res <-chan int) int {
		t.Helper()
		select {
		case code := <-res:
			return code
		case <-time.After(10 * time.Second):
			t.Fatal("no response")
			return 0
		}
	}

	for _, tc := range []struct {
		name  string
		after config.Route // the held route as the reload leaves it; no name: removed
		// gone is a label the reload leaves on no composer series.
		goneKey, goneValue string
		// heldOK is the ok count of composition "held" once its request
		// of the old configuration finished: where the reload keeps it,
		// the one before the reload and that one.
		heldOK float64
	}{
		{name: "route removed", goneKey: "composition", goneValue: "held"},
		{name: "route renamed", after: held("renamed", "slow"), goneKey: "composition", goneValue: "held"},
		{name: "call renamed", after: held("held", "slower"), goneKey: "call", goneValue: "slow", heldOK: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &hold{arrived: make(chan struct{}), release: make(chan struct{})}
			var releaseOnce sync.Once
			release := func() { releaseOnce.Do(func() { close(f.release) }) }
			slow := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("X-Request-Id") == "hold" {
					close(f.arrived)
					<-f.release
				}
				answer(w)
			})
			cfg := func(routes ...config.Route) *config.Config {
				return &config.Config{
					Clusters: map[string]config.Cluster{
						"fast": {Endpoints: eps(addr(fast))},
						"slow": {Endpoints: eps(addr(slow))},
					},
					Routes: routes,
				}
			}
			h := startProxy(t, cfg(kept, held("held", "slow")))
			// Run first among the cleanups (before the proxy and the
			// upstream close), should the test stop early.
			t.Cleanup(release)
			for _, path := range []string{"/kept", "/held"} {
				if code := status(t, get(t, h, path, "")); code != http.StatusOK {
					t.Fatalf("%s: status %d", path, code)
				}
			}
			if n := countSeries(t, h, "outrigger_composer_", tc.goneKey, tc.goneValue); n == 0 {
				t.Fatalf("no composer series with %s=%q before the reload", tc.goneKey, tc.goneValue)
			}
			inFlight := get(t, h, "/held", "hold")
			select {
			case <-f.arrived:
			case <-time.After(10 * time.Second):
				t.Fatal("the composite request never reached its upstream")
			}

			after := cfg(kept)
			if tc.after.Name != "" {
				after = cfg(kept, tc.after)
			}
			if err := h.p.Apply(after); err != nil {
				t.Fatal(err)
			}
			if n := countSeries(t, h, "outrigger_composer_", tc.goneKey, tc.goneValue); n != 0 {
				t.Fatalf("%d composer series with %s=%q after the reload", n, tc.goneKey, tc.goneValue)
			}
			if v := composerValue(t, h, "outrigger_composer_requests_total", "kept", "result", "ok"); v != 1 {
				t.Fatalf("kept composition: %v ok requests after the reload, want the 1 before it", v)
			}

			release()
			if code := status(t, inFlight); code != http.StatusOK {
				t.Fatalf("request across the reload: status %d", code)
			}
			if n := countSeries(t, h, "outrigger_composer_", tc.goneKey, tc.goneValue); n != 0 {
				t.Fatalf("%d composer series with %s=%q once the request of the old configuration finished", n, tc.goneKey, tc.goneValue)
			}
			if v := composerValue(t, h, "outrigger_composer_requests_total", "held", "result", "ok"); v != tc.heldOK {
				t.Fatalf("held composition: %v ok requests, want %v", v, tc.heldOK)
			}
			if code := status(t, get(t, h, "/kept", "")); code != http.StatusOK {
				t.Fatalf("kept: status %d", code)
			}
			if v := composerValue(t, h, "outrigger_composer_requests_total", "kept", "result", "ok"); v != 2 {
				t.Fatalf("kept composition: %v ok requests, want 2", v)
			}
			if v := composerValue(t, h, "outrigger_composer_call_duration_seconds", "kept", "call", "x"); v != 2 {
				t.Fatalf("kept call: %v observations, want 2", v)
			}
		})
	}
}

// nests nests every call's result under its name.
func nests(calls []composer.Call) []composer.Nest {
	n := make([]composer.Nest, len(calls))
	for i, c := range calls {
		n[i] = composer.Nest{From: c.Name}
	}
	return n
}

// composerValue is the value of the counter (or the sample count of the
// histogram) name of composition whose label key is val; 0 when there is
// no such series.
func composerValue(t *testing.T, h *harness, name, composition, key, val string) float64 {
	t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var comp, v string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "composition":
					comp = l.GetValue()
				case key:
					v = l.GetValue()
				}
			}
			if comp == composition && v == val {
				return m.GetCounter().GetValue() + float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return 0
}

// A reload that fails after building some of its compositions leaves no
// series of those the serving configuration does not have, and those of
// the serving ones with their counts.
func TestFailedReloadLeavesNoComposerSeriesOfItsCompositions(t *testing.T) {
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"n":1}`)
	})
	route := func(name, cluster string) config.Route {
		return config.Route{
			Name:  name,
			Match: config.RouteMatch{Path: config.PathMatch{Exact: "/" + name}},
			Composition: &composer.Spec{Calls: []composer.Call{{Name: "c", Cluster: cluster, Path: "/"}},
				Output: composer.Output{Nest: []composer.Nest{{From: "c"}}}},
		}
	}
	cfg := func(routes ...config.Route) *config.Config {
		return &config.Config{Clusters: map[string]config.Cluster{"svc": {Endpoints: eps(addr(up))}}, Routes: routes}
	}
	h := startProxy(t, cfg(route("serving", "svc")))
	resp := mustGet(t, h.h1, h.url("/serving"))
	readAll(t, resp)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	// Routes compile in order: "added" is built before "bad" fails.
	if err := h.p.Apply(cfg(route("serving", "svc"), route("added", "svc"), route("bad", "nowhere"))); err == nil {
		t.Fatal("Apply of a composition calling an unknown cluster succeeded")
	}
	if n := countSeries(t, h, "outrigger_composer_", "composition", "added"); n != 0 {
		t.Fatalf("%d series of a composition of the failed reload", n)
	}
	if v := composerValue(t, h, "outrigger_composer_requests_total", "serving", "result", "ok"); v != 1 {
		t.Fatalf("serving composition: %v ok requests, want 1", v)
	}
}
