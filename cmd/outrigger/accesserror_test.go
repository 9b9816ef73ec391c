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

// loggedProxy serves cfg's outbound listener on loopback behind an access
// log; get sends one request and returns the response, its body read.
type loggedProxy struct {
	addr, logPath string
}

func startLoggedProxy(t *testing.T, cfg *config.Config) *loggedProxy {
	t.Helper()
	lp := &loggedProxy{logPath: filepath.Join(t.TempDir(), "access.log")}
	a, err := newAccessLog(config.AccessLog{Enabled: true, Path: lp.logPath}, io.Discard, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := proxy.New(proxy.Options{})
	if err := p.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lp.addr = ln.Addr().String()
	srv := &http.Server{Handler: a.Wrap("outbound", p.Handler(proxy.Outbound))}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Error(err)
		}
		p.Shutdown(ctx)
		a.Close()
	})
	return lp
}

func (lp *loggedProxy) get(t *testing.T, path string) *http.Response {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + lp.addr + path)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// remoteSidecar is an upstream that answers as another Outrigger does
// when it has no healthy upstream itself.
func remoteSidecar(t *testing.T) string {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Outrigger-Error", "no_healthy_upstream")
		w.WriteHeader(503)
	}))
	t.Cleanup(up.Close)
	return up.Listener.Addr().String()
}

// The error field holds this sidecar's own reasons only: an
// x-outrigger-error an upstream Outrigger answered with goes to
// upstream_error, so a remote sidecar's no_healthy_upstream is not read
// as this one's.
func TestAccessLogTellsOwnErrorsFromUpstreamOnes(t *testing.T) {
	lp := startLoggedProxy(t, &config.Config{
		Clusters: map[string]config.Cluster{"remote": {Endpoints: []config.Endpoint{{Address: remoteSidecar(t)}}}},
		Routes: []config.Route{{Name: "remote", Cluster: "remote",
			Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/remote"}}}},
	})
	lp.get(t, "/remote")
	lp.get(t, "/nowhere")
	got := readAccessLog(t, lp.logPath)
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

// A route's fallback cluster answers with its own response: an
// x-outrigger-error it carries is the upstream's, as on the route's
// cluster, and this sidecar's own reason is only the fallback header's.
func TestAccessLogFallbackClusterErrorIsUpstreams(t *testing.T) {
	// A port nothing listens on: the primary's connection fails.
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	lp := startLoggedProxy(t, &config.Config{
		Clusters: map[string]config.Cluster{
			"primary": {Endpoints: []config.Endpoint{{Address: deadAddr}}},
			"remote":  {Endpoints: []config.Endpoint{{Address: remoteSidecar(t)}}},
		},
		Routes: []config.Route{{Name: "r", Cluster: "primary",
			Match:    config.RouteMatch{Path: config.PathMatch{Prefix: "/"}},
			Fallback: &config.Fallback{Cluster: "remote"}}},
	})
	resp := lp.get(t, "/x")
	if resp.StatusCode != 503 || resp.Header.Get("X-Outrigger-Fallback") != "upstream_connect_failure" {
		t.Fatalf("response %d, fallback %q: not the fallback cluster's", resp.StatusCode, resp.Header.Get("X-Outrigger-Fallback"))
	}
	got := readAccessLog(t, lp.logPath)
	if len(got) != 1 {
		t.Fatalf("%d lines: %v", len(got), got)
	}
	if l := got[0]; l["status"] != 503.0 || l["error"] != "" || l["upstream_error"] != "no_healthy_upstream" {
		t.Fatalf("the fallback cluster's reply: %v", l)
	}
}
