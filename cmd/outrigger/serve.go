package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/net/http2"

	"github.com/outrigger-mesh/outrigger/proxy"
	"github.com/outrigger-mesh/outrigger/proxy/config"
	"github.com/outrigger-mesh/outrigger/proxy/h1server"
)

// trafficServers serve the proxy's listeners. The command runs them itself,
// rather than through proxy.Serve, so that the access log can wrap each
// listener's handler (the proxy has no per-request hook); the server setup
// mirrors proxy.Serve: h1server for HTTP/1.1, handing HTTP/2 by prior
// knowledge and by h2c Upgrade to x/net/http2, GOAWAY on shutdown, and a
// base context whose cancel ends hijacked requests on a forced close.
type trafficServers struct {
	mu      sync.Mutex
	servers []*h1server.Server   // guarded by mu
	cancels []context.CancelFunc // guarded by mu
	closed  bool                 // guarded by mu; set by shutdown
}

// serve serves ln for listener l until shutdown; it returns
// http.ErrServerClosed then. Limits come from the listeners section of cfg
// (they are bound at start, as the sockets are).
func (t *trafficServers) serve(ln net.Listener, h http.Handler, lc config.Listeners, log *zap.Logger) error {
	base, cancel := context.WithCancel(context.Background())
	srv := &h1server.Server{
		Handler:           h,
		H2:                &http2.Server{IdleTimeout: lc.IdleTimeout},
		MaxHeaderBytes:    lc.MaxRequestHeaderBytes,
		ReadHeaderTimeout: lc.ReadHeaderTimeout,
		IdleTimeout:       lc.IdleTimeout,
		BaseContext:       base,
		ErrorLog:          func(msg string, err error) { log.Warn(msg, zap.Error(err)) },
	}
	t.mu.Lock()
	if t.closed {
		// shutdown ran before this goroutine got here: never serve.
		t.mu.Unlock()
		cancel()
		ln.Close()
		return http.ErrServerClosed
	}
	t.servers = append(t.servers, srv)
	t.cancels = append(t.cancels, cancel)
	t.mu.Unlock()
	return srv.Serve(ln)
}

// shutdown stops accepting, waits for requests in flight (the servers wait
// for their HTTP/1.1 and HTTP/2 connections, the proxy counts hijacked
// ones too) until ctx ends, then closes what is left. It returns ctx's
// error when the drain was cut short.
func (t *trafficServers) shutdown(ctx context.Context, p *proxy.Proxy) error {
	t.mu.Lock()
	t.closed = true
	servers, cancels := t.servers, t.cancels
	t.mu.Unlock()
	// All listeners stop accepting at once; each server then drains.
	errs := make([]error, len(servers), len(servers)+1)
	var wg sync.WaitGroup
	for i, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Shutdown(ctx)
		}()
	}
	wg.Wait()
	// proxy.Shutdown waits for the proxy's in-flight count and closes idle
	// upstream connections.
	errs = append(errs, p.Shutdown(ctx))
	err := errors.Join(errs...)
	if err != nil {
		for _, s := range servers {
			s.Close()
		}
	}
	for _, c := range cancels {
		c()
	}
	if err != nil {
		// Let the cancelled requests unwind before the process goes on.
		wctx, wcancel := context.WithTimeout(context.Background(), time.Second)
		p.Shutdown(wctx)
		wcancel()
	}
	return err
}
