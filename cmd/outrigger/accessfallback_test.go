package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy"
	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// A route's fallback cluster answers with its own response: an
// x-outrigger-error it carries is the upstream's, as on the route's
// cluster, and this sidecar's own reason is only the fallback header's.
func TestAccessLogFallbackClusterErrorIsUpstreams(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Outrigger-Error", "no_healthy_upstream")
		w.WriteHeader(503)
	}))
	defer up.Close()
	// A port nothing listens on: the primary's connection fails.
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()

	logPath := filepath.Join(t.TempDir(), "access.log")
	a, err := newAccessLog(config.AccessLog{Enabled: true, Path: logPath}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	p := proxy.New(proxy.Options{})
	cfg := &config.Config{
		Clusters: map[string]config.Cluster{
			"primary": {Endpoints: []config.Endpoint{{Address: deadAddr}}},
			"remote":  {Endpoints: []config.Endpoint{{Address: up.Listener.Addr().String()}}},
		},
		Routes: []config.Route{{Name: "r", Cluster: "primary",
			Match:    config.RouteMatch{Path: config.PathMatch{Prefix: "/"}},
			Fallback: &config.Fallback{Cluster: "remote"}}},
	}
	if err := p.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: a.Wrap("outbound", p.Handler(proxy.Outbound))}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Error(err)
		}
		p.Shutdown(ctx)
	}()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + ln.Addr().String() + "/x")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("X-Outrigger-Fallback") != "upstream_connect_failure" {
		t.Fatalf("response %d, fallback %q: not the fallback cluster's", resp.StatusCode, resp.Header.Get("X-Outrigger-Fallback"))
	}
	got := readAccessLog(t, logPath)
	if len(got) != 1 {
		t.Fatalf("%d lines: %v", len(got), got)
	}
	if l := got[0]; l["status"] != 503.0 || l["error"] != "" || l["upstream_error"] != "no_healthy_upstream" {
		t.Fatalf("the fallback cluster's reply: %v", l)
	}
}
