package proxy

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/composer"
	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// When a required call fails, the calls it cancels are reported as
// canceled, so that the error names the call that failed by itself, even
// when a canceled one comes first in declaration order; the proxy's error
// for a call it ended at the composer's request was taken as an upstream
// error of that call.
func TestCompositeFailureNamesTheCallThatFailedNotOneItCanceled(t *testing.T) {
	slow := holdingUpstream(t, "")
	bad := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	})
	cfg := &config.Config{
		Clusters: map[string]config.Cluster{"slow": {Endpoints: eps(addr(slow))}, "bad": {Endpoints: eps(addr(bad))}},
		Routes: []config.Route{{
			Name:  "two",
			Match: config.RouteMatch{Path: config.PathMatch{Exact: "/two"}},
			Composition: &composer.Spec{
				Calls:  []composer.Call{{Name: "first", Cluster: "slow", Path: "/s"}, {Name: "second", Cluster: "bad", Path: "/b"}},
				Limits: composer.Limits{Deadline: composer.Duration(5 * time.Second)},
			},
		}},
	}
	h := startProxy(t, cfg)
	resp := mustGet(t, h.h1, h.url("/two"))
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, `"call":"second"`) || !strings.Contains(body, `"reason":"upstream_status"`) {
		t.Fatalf("status %d body %s", resp.StatusCode, body)
	}
	if n := gathered(t, h, "outrigger_composer_call_failures_total", "reason", "upstream_error"); n != 0 {
		t.Fatalf("%v calls counted as upstream errors", n)
	}
	if n := gathered(t, h, "outrigger_composer_call_failures_total", "reason", "canceled"); n != 1 {
		t.Fatalf("%v calls counted as canceled, want 1", n)
	}
}

// The first element of a fan-out that fails fails the call at once: the
// elements still in flight are canceled at their upstream, not waited
// for until the deadline, and the call reports the element that failed,
// not those it canceled.
func TestCompositeFanOutElementFailureCancelsTheOthers(t *testing.T) {
	var held atomic.Int64
	ids := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"items":["a","b","c","missing"]}`))
	})
	items := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/missing") {
			// Answered once the others are in flight.
			deadline := time.Now().Add(5 * time.Second)
			for held.Load() < 3 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			w.WriteHeader(http.StatusNotFound)
			return
		}
		held.Add(1)
		defer held.Add(-1)
		<-r.Context().Done()
	})
	cfg := &config.Config{
		Clusters: map[string]config.Cluster{"ids": {Endpoints: eps(addr(ids))}, "items": {Endpoints: eps(addr(items))}},
		Routes: []config.Route{{
			Name:  "fan",
			Match: config.RouteMatch{Path: config.PathMatch{Exact: "/fan"}},
			Composition: &composer.Spec{
				Calls: []composer.Call{
					{Name: "ids", Cluster: "ids", Path: "/ids"},
					{Name: "item", Cluster: "items", Path: "/items/{each}", ForEach: "ids.items[]"},
				},
				Limits: composer.Limits{Deadline: composer.Duration(time.Minute)},
			},
		}},
	}
	h := startProxy(t, cfg)
	ctx, cancel := contextWithTimeout(10 * time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.url("/fan"), nil)
	resp, err := h.h1.Do(req)
	if err != nil {
		t.Fatalf("no answer before the other elements' deadline: %v", err)
	}
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, `"reason":"upstream_status"`) || !strings.Contains(body, `"http_status":404`) {
		t.Fatalf("status %d body %s", resp.StatusCode, body)
	}
	eventually(t, 5*time.Second, "the other elements canceled at the upstream", func() bool { return held.Load() == 0 })
}
