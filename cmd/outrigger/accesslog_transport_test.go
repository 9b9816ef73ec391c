package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// A request whose upstream TLS handshake failed says why on its line
// (upstream_transport_failure_reason, Envoy's
// %UPSTREAM_TRANSPORT_FAILURE_REASON%): here a certificate from a CA the
// cluster does not trust. A line without such a failure has no such
// field, nor has a refused plain connection.
func TestAccessLogUpstreamTransportFailureReason(t *testing.T) {
	// httptest's certificate is its own; the cluster trusts the
	// system's roots.
	untrusted := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(untrusted.Close)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(up.Close)
	lp := startLoggedProxy(t, &config.Config{
		Clusters: map[string]config.Cluster{
			"tls":  {Endpoints: []config.Endpoint{{Address: untrusted.Listener.Addr().String()}}, TLS: config.TLS{Enabled: true}},
			"up":   {Endpoints: []config.Endpoint{{Address: up.Listener.Addr().String()}}},
			"dead": {Endpoints: []config.Endpoint{{Address: deadAddr(t)}}},
		},
		Routes: []config.Route{
			{Name: "tls", Cluster: "tls", Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/tls"}}},
			{Name: "dead", Cluster: "dead", Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/dead"}}},
			{Name: "up", Cluster: "up"},
		},
	})
	for _, path := range []string{"/tls", "/dead", "/up"} {
		lp.get(t, path)
	}
	got := readAccessLog(t, lp.logPath)
	if len(got) != 3 {
		t.Fatalf("%d lines: %v", len(got), got)
	}
	reason, ok := got[0]["upstream_transport_failure_reason"].(string)
	if got[0]["status"] != float64(502) || !ok ||
		!strings.HasPrefix(reason, "TLS handshake: ") || !strings.Contains(reason, "unknown authority") {
		t.Errorf("TLS failure line: %v, want 502 and a reason naming the unknown authority", got[0])
	}
	for _, l := range got[1:] {
		if r, ok := l["upstream_transport_failure_reason"]; ok {
			t.Errorf("%s: upstream_transport_failure_reason %q on a line without a TLS failure", l["path"], r)
		}
	}
}
