package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy"
	"github.com/outrigger-mesh/outrigger/proxy/config"
	"github.com/outrigger-mesh/outrigger/proxy/h1server"
)

// startServedProxy serves cfg's outbound listener on loopback with the
// proxy's own server (proxy.Serve: HTTP/1.1, h2c, upgrades) behind an
// access log, as the sidecar does.
func startServedProxy(t *testing.T, cfg *config.Config) *loggedProxy {
	t.Helper()
	lp := &loggedProxy{logPath: filepath.Join(t.TempDir(), "access.log")}
	a, err := newAccessLog(config.AccessLog{Enabled: true, Path: lp.logPath}, io.Discard, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := proxy.New(proxy.Options{
		Wrap:    func(l proxy.Listener, h http.Handler) http.Handler { return a.Wrap(l.String(), h) },
		Refused: func(l proxy.Listener, r h1server.Refusal) { a.Refused(l.String(), r) },
	})
	if err := p.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lp.addr = ln.Addr().String()
	done := make(chan error, 1)
	go func() { done <- p.Serve(ln, proxy.Outbound) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.Shutdown(ctx)
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Error(err)
		}
		a.Close()
	})
	return lp
}

// waitLines waits for n lines in the access log at p and returns them.
func waitLines(t *testing.T, p string, n int) []map[string]any {
	t.Helper()
	waitFor(t, 10*time.Second, fmt.Sprintf("%d access log lines", n), func() bool {
		b, err := os.ReadFile(p)
		return err == nil && strings.Count(string(b), "\n") >= n
	})
	return readAccessLog(t, p)
}

// onlyLine waits for the access log at p to have a line, and returns it;
// a second line fails the test.
func onlyLine(t *testing.T, p string) map[string]any {
	t.Helper()
	lines := waitLines(t, p, 1)
	if len(lines) != 1 {
		t.Fatalf("%d lines: %v", len(lines), lines)
	}
	return lines[0]
}

// newRawUpstream serves each connection to it with resp, written as it is
// once a request's header has been read, then closes the connection.
func newRawUpstream(t *testing.T, resp string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				io.WriteString(c, resp)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

// routeAllTo is a config whose route name sends every path to one
// cluster, "up", of the endpoint at addr; mod edits the route.
func routeAllTo(addr, name string, mod ...func(*config.Route)) *config.Config {
	r := config.Route{Name: name, Cluster: "up", Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/"}}}
	for _, f := range mod {
		f(&r)
	}
	return &config.Config{
		Clusters: map[string]config.Cluster{"up": {Endpoints: []config.Endpoint{{Address: addr}}}},
		Routes:   []config.Route{r},
	}
}
