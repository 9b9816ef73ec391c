package main

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// The access log shows the request as the client sent it: its authority
// and path, not the Host and path a route's host_rewrite and
// regex_rewrite sent upstream.
func TestAccessLogShowsTheClientsAuthorityAndPathUnderRewrites(t *testing.T) {
	got := make(chan [2]string, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- [2]string{r.Host, r.URL.Path}
	}))
	t.Cleanup(up.Close)
	lp := startLoggedProxy(t, &config.Config{
		Clusters: map[string]config.Cluster{"up": {Endpoints: []config.Endpoint{{Address: up.Listener.Addr().String()}}}},
		Routes: []config.Route{{Name: "rw", Cluster: "up", HostRewrite: "backend.example.com",
			RegexRewrite: &config.RegexRewrite{Pattern: "^/old/", Substitution: "/new/"}}},
	})
	lp.get(t, "/old/x")
	if sent := <-got; sent != [2]string{"backend.example.com", "/new/x"} {
		t.Fatalf("upstream got Host and path %q", sent)
	}
	lines := readAccessLog(t, lp.logPath)
	if len(lines) != 1 {
		t.Fatalf("%d lines: %v", len(lines), lines)
	}
	if l := lines[0]; l["authority"] != lp.addr || l["path"] != "/old/x" {
		t.Errorf("logged authority %v, path %v; want the client's %q, /old/x", l["authority"], l["path"], lp.addr)
	}
}
