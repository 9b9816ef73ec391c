package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// pushApp is a local app that takes push deliveries and says which app
// got each.
func pushApp(t *testing.T, name string, got chan<- string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case got <- name + " " + r.Method + " " + r.URL.Path:
		default:
		}
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func pushConfig(app string) string {
	return `admin: {address: 127.0.0.1:0}
listeners:
  outbound: {address: 127.0.0.1:0}
  inbound: {address: 127.0.0.1:0, app: "` + app + `"}
  app_api: {address: 127.0.0.1:0}
eventlog:
  data_dir: data
  topics: {orders: {}}
  subscriptions:
    - {topic: orders, group: billing, route: /events, retry: {max_attempts: 1000, max_backoff: 50ms}}
`
}

// A reload that moves the local app (listeners.inbound.app) moves the
// push deliveries with the inbound traffic. They went on to the app's
// address at start: with the app gone from there, every record failed
// until it was dead-lettered or skipped, and nothing said why.
func TestReloadMovingTheAppMovesPushDeliveries(t *testing.T) {
	got := make(chan string, 16)
	oldApp, newApp := pushApp(t, "old", got), pushApp(t, "new", got)
	path := writeConfig(t, pushConfig(oldApp))
	p := start(t, "run", "-c", path)
	c := newClient(t)

	writeAtomic(t, path, pushConfig(newApp))
	waitFor(t, 15*time.Second, "generation 2", func() bool { return getConfig(t, c, p.addrs.Admin).Generation == 2 })
	if code, body, _ := get(t, c, "http://"+p.addrs.Inbound+"/x", ""); code != 200 {
		t.Fatalf("inbound after the reload: %d %q", code, body)
	}
	if g := <-got; g != "new GET /x" {
		t.Fatalf("inbound request reached %q", g)
	}

	resp, err := c.Post("http://"+p.addrs.AppAPI+"/v1/topics/orders/records", "application/json", strings.NewReader(`{"value":{"n":1}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("publish: %d", resp.StatusCode)
	}
	select {
	case g := <-got:
		if g != "new POST /events" {
			t.Fatalf("the push went to %q, want the app the reload moved to", g)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no push delivery")
	}
}
