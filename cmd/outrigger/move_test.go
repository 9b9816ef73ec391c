package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/outrigger-mesh/outrigger/proxy"
	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// servingSidecar is a sidecar serving cfg's outbound listener in this
// process, as runSidecar serves it, without the admin endpoint, the
// signals or the file watch: the test applies reloads with s.reload. The
// sidecar is shut down when the test ends.
func servingSidecar(t *testing.T, cfg string) *sidecar {
	t.Helper()
	path := writeConfig(t, cfg)
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	s := &sidecar{
		opts:     sidecarOptions{configPath: path},
		log:      zap.NewNop(),
		level:    zap.NewAtomicLevel(),
		state:    newConfigState(path, prometheus.NewRegistry()),
		proxy:    proxy.New(proxy.Options{NoHealthChecks: true}),
		serveErr: make(chan serveResult, 16),
	}
	if s.access, err = newAccessLog(c.Logging.AccessLog, io.Discard, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.proxy.Apply(c); err != nil {
		t.Fatal(err)
	}
	s.state.applied(c, initialLoad, time.Now())
	s.proxyAddrs = proxyAddrsOf(c)
	if s.lns, err = bind("", s.proxyAddrs.outbound, "", ""); err != nil {
		t.Fatal(err)
	}
	s.serveProxy(s.lns.outbound, proxy.Outbound)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.proxy.Shutdown(ctx)
		s.retiring.Wait()
		s.lnMu.Lock()
		n := s.servers
		s.lnMu.Unlock()
		for ; n > 0; n-- {
			if r := <-s.serveErr; !errors.Is(r.err, http.ErrServerClosed) && !errors.Is(r.err, net.ErrClosed) {
				t.Errorf("%s: %v", r.name, r.err)
			}
		}
		s.access.Close()
	})
	return s
}

// loadedConfig is cfg loaded as the file watch would deliver it.
func loadedConfig(t *testing.T, cfg string) *config.Config {
	t.Helper()
	c, err := config.Load(writeConfig(t, cfg))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The listener a reload moves away from has stopped accepting when the
// reload returns, before its generation is published: a reload right
// after that moves the listener back binds the address again. The old
// listener was closed by the goroutine that drains it, which had not
// always run by then, so the move back could fail with "address already
// in use" (with one processor, nearly every time), and a client that saw
// the new generation could still connect to the old address.
func TestAMovedListenerStopsAcceptingBeforeTheReloadReturns(t *testing.T) {
	// One processor: the goroutines the reload starts run only once it
	// has returned and this test waits.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	up := newUpstream(t, "a")
	base := sidecarConfig(up.addr(), up.addr(), "")
	first, second := freeAddr(t), freeAddr(t)
	s := servingSidecar(t, withOutbound(t, base, first))

	s.reload(loadedConfig(t, withOutbound(t, base, second)), nil, "file")
	s.lnMu.Lock()
	old := s.proxyAddrs.outbound
	s.lnMu.Unlock()
	if old != second {
		t.Fatalf("the move to %s did not apply: %+v", second, s.state.status())
	}
	s.reload(loadedConfig(t, withOutbound(t, base, first)), nil, "file")
	if st := s.state.status(); st.LastReloadError != "" {
		t.Fatalf("moving back at once: %s", st.LastReloadError)
	}
	if _, gen := s.state.current(); gen != 3 {
		t.Fatalf("generation %d after two moves, want 3", gen)
	}
	if code, body, err := getFresh("http://"+first+"/x", "svc"); err != nil || code != 200 || body != "a /x" {
		t.Fatalf("the first address again: %d %q %v", code, body, err)
	}
	if !refuses(second) {
		t.Fatalf("%s still accepts after the move back", second)
	}
}
