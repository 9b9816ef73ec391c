package proxy

import (
	"net/http"
	"strings"
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
