package main

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// A request the authorization rules refuse is logged with error
// rbac_denied and, in detail, Envoy's response code details: the deny
// rule that refused it, or none when no allow rule matched. A request
// they let through has no detail.
func TestAccessLogNamesTheAuthorizationRuleThatRefused(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(up.Close)
	lp := startLoggedProxy(t, &config.Config{
		Clusters: map[string]config.Cluster{"up": {Endpoints: []config.Endpoint{{Address: up.Listener.Addr().String()}}}},
		Routes:   []config.Route{{Name: "all", Cluster: "up"}},
		Authorization: config.Authorization{
			Deny: []config.AuthorizationRule{{Name: "block-admin", Listeners: []config.Direction{config.Outbound},
				To: config.AuthorizationOperation{Paths: []string{"/admin*"}}}},
			Allow: []config.AuthorizationRule{{Name: "items", Listeners: []config.Direction{config.Outbound},
				To: config.AuthorizationOperation{Paths: []string{"/items*"}}}},
		},
	})
	for _, path := range []string{"/admin", "/carts", "/items"} {
		lp.get(t, path)
	}
	want := []struct {
		status       float64
		err, detail  string
		detailLogged bool
	}{
		{403, "rbac_denied", "rbac_access_denied_matched_policy[block-admin]", true},
		{403, "rbac_denied", "rbac_access_denied_matched_policy[none]", true},
		{200, "", "", false},
	}
	got := readAccessLog(t, lp.logPath)
	if len(got) != len(want) {
		t.Fatalf("%d lines: %v", len(got), got)
	}
	for i, w := range want {
		l := got[i]
		d, ok := l["detail"]
		if l["status"] != w.status || l["error"] != w.err || ok != w.detailLogged || ok && d != w.detail {
			t.Errorf("%s: status %v, error %v, detail %v; want %v, %q, %q", l["path"], l["status"], l["error"], d, w.status, w.err, w.detail)
		}
	}
}
