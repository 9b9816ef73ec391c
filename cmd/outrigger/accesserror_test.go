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

// The error field holds this sidecar's own reasons only: an
// x-outrigger-error an upstream Outrigger answered with goes to
// upstream_error, so a remote sidecar's no_healthy_upstream is not read
// as this one's.
func TestAccessLogTellsOwnErrorsFromUpstreamOnes(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Outrigger-Error", "no_healthy_upstream")
		w.WriteHeader(503)
	}))
	defer up.Close()
	logPath := filepath.Join(t.TempDir(), "access.log")
	a, err := newAccessLog(config.AccessLog{Enabled: true, Path: logPath}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	p := proxy.New(proxy.Options{})
	cfg := &config.Config{
		Clusters: map[string]config.Cluster{"remote": {Endpoints: []config.Endpoint{{Address: up.Listener.Addr().String()}}}},
		Routes: []config.Route{{Name: "remote", Cluster: "remote",
			Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/remote"}}}},
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
	for _, path := range []string{"/remote", "/nowhere"} {
		resp, err := c.Get("http://" + ln.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	got := readAccessLog(t, logPath)
	if len(got) != 2 {
		t.Fatalf("%d lines: %v", len(got), got)
	}
	if l := got[0]; l["status"] != 503.0 || l["error"] != "" || l["upstream_error"] != "no_healthy_upstream" {
		t.Fatalf("the upstream's reply: %v", l)
	}
	if l := got[1]; l["status"] != 404.0 || l["error"] != "no_route" || l["upstream_error"] != "" {
		t.Fatalf("the sidecar's own reply: %v", l)
	}
}
