package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// Each access log line names the route the request matched, the cluster
// it went to and the endpoint that answered: the fallback cluster's when
// the route's fallback answered, none for a reply the proxy made itself.
func TestAccessLogNamesRouteClusterAndUpstreamHost(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(up.Close)
	upAddr := up.Listener.Addr().String()
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	lp := startLoggedProxy(t, &config.Config{
		Clusters: map[string]config.Cluster{
			"up":   {Endpoints: []config.Endpoint{{Address: upAddr}}},
			"dead": {Endpoints: []config.Endpoint{{Address: deadAddr}}},
		},
		Routes: []config.Route{
			{Name: "teapot", Match: config.RouteMatch{Path: config.PathMatch{Exact: "/teapot"}},
				DirectResponse: &config.DirectResponse{Status: 418}},
			{Name: "saved", Cluster: "dead", Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/saved"}},
				Fallback: &config.Fallback{Cluster: "up"}},
			{Name: "lost", Cluster: "dead", Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/lost"}}},
			{Name: "plain", Cluster: "up", Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/plain"}}},
		},
	})
	for _, path := range []string{"/plain", "/teapot", "/saved", "/lost", "/nowhere"} {
		lp.get(t, path)
	}
	want := []struct{ route, cluster, host string }{
		{"plain", "up", upAddr},
		{"teapot", "", ""},
		{"saved", "up", upAddr},
		{"lost", "dead", ""},
		{"", "", ""},
	}
	got := readAccessLog(t, lp.logPath)
	if len(got) != len(want) {
		t.Fatalf("%d lines: %v", len(got), got)
	}
	for i, w := range want {
		l := got[i]
		if l["route"] != w.route || l["cluster"] != w.cluster || l["upstream_host"] != w.host {
			t.Errorf("%s: route %v, cluster %v, upstream_host %v; want %q, %q, %q", l["path"], l["route"], l["cluster"], l["upstream_host"], w.route, w.cluster, w.host)
		}
	}
}

// A route's fault abort and its rate limit's refusal are the route's
// replies: their lines name the route, as the route's other local
// replies do, with no cluster, as none was picked for them.
func TestAccessLogNamesTheRouteOfAFaultOrRateLimitReply(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(up.Close)
	upAddr := up.Listener.Addr().String()
	lp := startLoggedProxy(t, &config.Config{
		Clusters: map[string]config.Cluster{"up": {Endpoints: []config.Endpoint{{Address: upAddr}}}},
		Routes: []config.Route{
			{Name: "aborted", Cluster: "up", Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/aborted"}},
				Fault: &config.Fault{Abort: &config.FaultAbort{HTTPStatus: 503, Percent: 100}}},
			{Name: "limited", Cluster: "up", Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/limited"}},
				RateLimit: &config.RateLimit{MaxTokens: 1, FillInterval: time.Hour}},
		},
	})
	for _, path := range []string{"/aborted", "/limited", "/limited"} {
		lp.get(t, path)
	}
	want := []struct{ route, cluster, err string }{
		{"aborted", "", "fault_abort"},
		{"limited", "up", ""},
		{"limited", "", "rate_limited"},
	}
	got := readAccessLog(t, lp.logPath)
	if len(got) != len(want) {
		t.Fatalf("%d lines: %v", len(got), got)
	}
	for i, w := range want {
		l := got[i]
		if l["route"] != w.route || l["cluster"] != w.cluster || l["error"] != w.err {
			t.Errorf("line %d: route %v, cluster %v, error %v; want %q, %q, %q", i, l["route"], l["cluster"], l["error"], w.route, w.cluster, w.err)
		}
	}
}
