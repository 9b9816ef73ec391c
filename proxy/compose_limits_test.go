package proxy

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/breaker"
	"github.com/outrigger-mesh/outrigger/composer"
	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// A call's own max_response_bytes bounds what the proxy reads of its body:
// a backend that sends more than the cap and then keeps the response open
// fails the call with response_too_large at once, not at the deadline after
// buffering up to the composition's largest cap.
func TestCompositeCallCapStopsReadingAtTheCallsOwnCap(t *testing.T) {
	big := holdingUpstream(t, `["`+strings.Repeat("x", 4096))
	cfg := &config.Config{
		Clusters: map[string]config.Cluster{"big": {Endpoints: eps(addr(big))}},
		Routes: []config.Route{{
			Name:  "capped",
			Match: config.RouteMatch{Path: config.PathMatch{Exact: "/capped"}},
			Composition: &composer.Spec{
				Calls:  []composer.Call{{Name: "big", Cluster: "big", Path: "/big", MaxResponseBytes: 1024}},
				Limits: composer.Limits{Deadline: composer.Duration(5 * time.Second)},
			},
		}},
	}
	h := startProxy(t, cfg)
	start := time.Now()
	resp := mustGet(t, h.h1, h.url("/capped"))
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, `"reason":"response_too_large"`) {
		t.Fatalf("status %d after %v, body %s", resp.StatusCode, time.Since(start), body)
	}
}

// A call whose timeout passes while its body is still arriving timed out: it
// is reported as timeout (504 when required), like a call whose answer had
// not started, not as an upstream error.
func TestCompositeCallTimeoutMidBodyIsTimeout(t *testing.T) {
	slow := holdingUpstream(t, `{"id":`)
	cfg := &config.Config{
		Clusters: map[string]config.Cluster{"slow": {Endpoints: eps(addr(slow))}},
		Routes: []config.Route{{
			Name:  "slow",
			Match: config.RouteMatch{Path: config.PathMatch{Exact: "/slow"}},
			Composition: &composer.Spec{
				Calls: []composer.Call{{Name: "slow", Cluster: "slow", Path: "/slow", Timeout: composer.Duration(100 * time.Millisecond)}},
			},
		}},
	}
	h := startProxy(t, cfg)
	resp := mustGet(t, h.h1, h.url("/slow"))
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(body, `"reason":"timeout"`) {
		t.Fatalf("status %d body %s", resp.StatusCode, body)
	}
}

// The request's max_total_bytes budget is charged while a call's body is
// read: a body larger than what is left of it fails the call with
// total_too_large at once, even when its upstream holds the rest back.
func TestCompositeTotalBudgetStopsReadingACallsBody(t *testing.T) {
	big := holdingUpstream(t, `["`+strings.Repeat("x", 4096))
	cfg := &config.Config{
		Clusters: map[string]config.Cluster{"big": {Endpoints: eps(addr(big))}},
		Routes: []config.Route{{
			Name:  "budget",
			Match: config.RouteMatch{Path: config.PathMatch{Exact: "/budget"}},
			Composition: &composer.Spec{
				Calls:  []composer.Call{{Name: "big", Cluster: "big", Path: "/big"}},
				Limits: composer.Limits{Deadline: composer.Duration(5 * time.Second), MaxTotalBytes: 1024},
			},
		}},
	}
	h := startProxy(t, cfg)
	start := time.Now()
	resp := mustGet(t, h.h1, h.url("/budget"))
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, `"reason":"total_too_large"`) {
		t.Fatalf("status %d after %v, body %s", resp.StatusCode, time.Since(start), body)
	}
}

// A call cut off by the composition's deadline is reported as
// deadline_exceeded, whichever of the proxy's own timer for the call and the
// deadline's context fires first.
func TestCompositeDeadlineIsReportedAsDeadlineExceeded(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	var headersFirst atomic.Bool
	slow := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		if headersFirst.Load() {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"id":`))
			w.(http.Flusher).Flush()
		}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	cfg := &config.Config{
		Clusters: map[string]config.Cluster{"slow": {
			Endpoints:        eps(addr(slow)),
			CircuitBreaker:   breaker.Config{Disabled: true},
			OutlierDetection: breaker.OutlierConfig{Disabled: true},
		}},
		Routes: []config.Route{{
			Name:  "slow",
			Match: config.RouteMatch{Path: config.PathMatch{Exact: "/slow"}},
			Composition: &composer.Spec{
				Calls:  []composer.Call{{Name: "slow", Cluster: "slow", Path: "/slow"}},
				Limits: composer.Limits{Deadline: composer.Duration(50 * time.Millisecond)},
			},
		}},
	}
	h := startProxy(t, cfg)
	for i := range 10 {
		headersFirst.Store(i%2 == 1)
		resp := mustGet(t, h.h1, h.url("/slow"))
		body := readAll(t, resp)
		if resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(body, `"reason":"deadline_exceeded"`) {
			t.Fatalf("request %d (headers first: %v): status %d body %s", i, headersFirst.Load(), resp.StatusCode, body)
		}
	}
}

// holdingUpstream answers every request with the start of a JSON body,
// prefix, and then holds the response open until the request ends or the
// test does.
func holdingUpstream(t *testing.T, prefix string) *httptest.Server {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	return upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(prefix))
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
}
