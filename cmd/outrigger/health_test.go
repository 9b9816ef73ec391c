package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A cluster's health_check in the YAML keeps traffic off an endpoint whose
// /healthz fails, /clusters shows why, and the endpoint comes back once it
// passes again.
func TestHealthCheckFromTheConfigFile(t *testing.T) {
	var bStatus atomic.Int32
	bStatus.Store(503)
	serve := func(name string, status *atomic.Int32) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/healthz" {
				if status != nil {
					w.WriteHeader(int(status.Load()))
				}
				return
			}
			fmt.Fprint(w, name)
		}))
		t.Cleanup(s.Close)
		return s
	}
	a, b := serve("a", nil), serve("b", &bStatus)
	host := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }
	cfg := fmt.Sprintf(`admin: {address: 127.0.0.1:0}
listeners:
  outbound: {address: 127.0.0.1:0}
  inbound: {address: 127.0.0.1:0}
  app_api: {disabled: true}
clusters:
  svc:
    endpoints: [%s, %s]
    health_check:
      interval: 20ms
      timeout: 5s
      healthy_threshold: 1
      unhealthy_threshold: 1
      http: {path: /healthz, expected_statuses: ["200-299"]}
routes:
  - {name: svc, match: {authority: [svc]}, cluster: svc}
`, host(a), host(b))
	p := start(t, "run", "-c", writeConfig(t, cfg))
	c := newClient(t)
	// b as /clusters shows it.
	endpointB := func() (state, lastError string) {
		_, body, _ := get(t, c, "http://"+p.addrs.Admin+"/clusters", "")
		var cs []struct {
			Endpoints []struct {
				Address     string `json:"address"`
				State       string `json:"state"`
				HealthCheck *struct {
					LastError string `json:"last_error"`
				} `json:"health_check"`
			} `json:"endpoints"`
		}
		if err := json.Unmarshal([]byte(body), &cs); err != nil {
			t.Fatalf("/clusters: %v\n%s", err, body)
		}
		for _, cl := range cs {
			for _, e := range cl.Endpoints {
				if e.Address == host(b) && e.HealthCheck != nil {
					return e.State, e.HealthCheck.LastError
				}
			}
		}
		return "", ""
	}
	waitFor(t, 10*time.Second, "b reported unhealthy", func() bool {
		state, _ := endpointB()
		return state == "unhealthy"
	})
	if _, why := endpointB(); why != "status 503" {
		t.Fatalf("/clusters gives the reason %q", why)
	}
	for i := 0; i < 10; i++ {
		if code, body, _ := get(t, c, "http://"+p.addrs.Outbound+"/x", "svc"); code != 200 || body != "a" {
			t.Fatalf("request %d: %d %q (the failing endpoint must get none)", i, code, body)
		}
	}
	waitFor(t, 10*time.Second, "outrigger_health_unhealthy_endpoints at 1", func() bool {
		return metric(t, c, p.addrs.Admin, `outrigger_health_unhealthy_endpoints{cluster="svc"}`) == 1
	})
	bStatus.Store(204)
	waitFor(t, 10*time.Second, "b balanced to again", func() bool {
		_, body, _ := get(t, c, "http://"+p.addrs.Outbound+"/x", "svc")
		return body == "b"
	})
}
