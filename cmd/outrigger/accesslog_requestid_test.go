package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// The access log's request_id is the id the upstream saw: the client's,
// or the one the proxy made for a request that came without one (the
// same on every attempt; the fallback cluster's when a route's fallback
// answered), so that a line can be found in the upstream's logs. It was
// empty for requests without an id.
func TestAccessLogRequestIDIsTheOneTheUpstreamSaw(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("X-Request-Id"))
		first := len(seen) == 2 // the retried request's first attempt
		mu.Unlock()
		if first {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(up.Close)
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	upAddr := up.Listener.Addr().String()
	lp := startLoggedProxy(t, &config.Config{
		Clusters: map[string]config.Cluster{
			"up":   {Endpoints: []config.Endpoint{{Address: upAddr}}},
			"dead": {Endpoints: []config.Endpoint{{Address: deadAddr}}},
		},
		Routes: []config.Route{
			{Name: "fallback", Cluster: "dead", Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/fallback"}},
				Fallback: &config.Fallback{Cluster: "up"}},
			{Name: "retried", Cluster: "up", Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/"}},
				Retry: &config.RetryPolicy{Attempts: 1, RetryOn: []config.RetryCondition{"5xx"}}},
		},
	})
	lp.get(t, "/plain")
	lp.get(t, "/retried")
	lp.get(t, "/fallback")
	got := readAccessLog(t, lp.logPath)
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 3 || len(seen) != 4 {
		t.Fatalf("%d lines, %d upstream requests (%q)", len(got), len(seen), seen)
	}
	if seen[1] != seen[2] {
		t.Fatalf("the retry carried another id: %q", seen)
	}
	for i, want := range []string{seen[0], seen[1], seen[3]} {
		if want == "" || got[i]["request_id"] != want {
			t.Errorf("line %d: request_id %v, the upstream saw %q", i, got[i]["request_id"], want)
		}
	}
}
