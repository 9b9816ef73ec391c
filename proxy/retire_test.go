package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/config"
	"golang.org/x/net/http2"
)

// appliedProxy is a Proxy with cfg applied, shut down (and its drain
// checked) when the test ends.
func appliedProxy(t *testing.T, cfg *config.Config) *Proxy {
	t.Helper()
	p := New(Options{})
	if err := p.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return p
}

// awaitServeClosed waits for a retired listener's Serve to return
// http.ErrServerClosed.
func awaitServeClosed(t *testing.T, served <-chan error) {
	t.Helper()
	select {
	case err := <-served:
		if !errors.Is(err, http.ErrServerClosed) {
			t.Fatalf("Serve of the retired listener: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve of the retired listener did not return")
	}
}

// serveOn serves listener l on a new loopback port; the returned channel
// gets Serve's result.
func serveOn(t *testing.T, p *Proxy, l Listener) (net.Listener, <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- p.Serve(ln, l) }()
	return ln, served
}

// openTunnel opens an upgraded connection through ln to an echoUpgrade
// upstream.
func openTunnel(t *testing.T, ln net.Listener) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(c)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 101 {
		t.Fatalf("%v %v", resp, err)
	}
	return c, br
}

// A listener moving to a new address: the old one is retired while the
// new one serves. The old one stops accepting at once, its requests in
// flight (HTTP/1.1 and HTTP/2) finish, and Retire returns once they have.
func TestRetireDrainsOneListenerWhileAnotherServes(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 2)
	up := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			entered <- struct{}{}
			<-release
		}
		fmt.Fprint(w, "ok "+r.URL.Path)
	})
	p := appliedProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up))}))
	old, oldServed := serveOn(t, p, Outbound)
	cur, _ := serveOn(t, p, Outbound)

	h1 := &http.Client{Transport: &http.Transport{}}
	defer h1.Transport.(*http.Transport).CloseIdleConnections()
	h2c := startProxyClientH2C()
	defer h2c.Transport.(interface{ CloseIdleConnections() }).CloseIdleConnections()
	get := func(c *http.Client, ln net.Listener, path string) (string, error) {
		resp, err := c.Get("http://" + ln.Addr().String() + path)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	results := make(chan string, 2)
	for _, c := range []*http.Client{h1, h2c} {
		go func() {
			b, err := get(c, old, "/hold")
			if err != nil {
				b = err.Error()
			}
			results <- b
		}()
	}
	<-entered
	<-entered

	retired := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		retired <- p.Retire(ctx, old)
	}()
	awaitServeClosed(t, oldServed)
	if c, err := net.DialTimeout("tcp", old.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Fatal("the retired listener still accepts")
	}
	// The other listener serves meanwhile, on both protocols.
	for _, c := range []*http.Client{h1, h2c} {
		if b, err := get(c, cur, "/now"); err != nil || b != "ok /now" {
			t.Fatalf("the serving listener during the drain: %q %v", b, err)
		}
	}
	select {
	case err := <-retired:
		t.Fatalf("Retire returned %v with requests in flight", err)
	default:
	}
	close(release)
	for range 2 {
		if r := <-results; r != "ok /hold" {
			t.Fatalf("a request in flight on the retired listener got %q", r)
		}
	}
	select {
	case err := <-retired:
		if err != nil {
			t.Fatalf("Retire: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Retire did not return after the drain")
	}
	if b, err := get(h1, cur, "/after"); err != nil || b != "ok /after" {
		t.Fatalf("the serving listener after the drain: %q %v", b, err)
	}
}

// A tunnel (an upgraded connection) on a retired listener is waited for
// until the deadline, then closed; the other listener is untouched.
func TestRetireClosesTunnelsAtTheDeadline(t *testing.T) {
	p := appliedProxy(t, simpleConfig(config.Cluster{Endpoints: eps(echoUpgrade(t))}))
	old, _ := serveOn(t, p, Outbound)
	cur, _ := serveOn(t, p, Outbound)
	oc, obr := openTunnel(t, old)
	cc, cbr := openTunnel(t, cur)

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := p.Retire(ctx, old); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Retire with a tunnel open: %v, want the deadline", err)
	}
	fmt.Fprintf(oc, "still there?\n")
	if line, err := obr.ReadString('\n'); err == nil {
		t.Fatalf("the retired listener's tunnel is still open: %q", line)
	}
	fmt.Fprintf(cc, "hello\n")
	if line, err := cbr.ReadString('\n'); err != nil || line != "echo hello\n" {
		t.Fatalf("the other listener's tunnel: %q %v", line, err)
	}
	cc.Close()
	eventually(t, 5*time.Second, "the tunnels to end", func() bool { return p.inflight.Load() == 0 })
}

// A Retire that comes before Serve has registered the listener (the
// caller started Serve on a goroutine a moment ago, and a reload moves the
// listener again at once) still retires it: the listener is closed, and
// the Serve that comes after returns http.ErrServerClosed at once instead
// of serving a listener nobody will retire.
func TestRetireBeforeServeRetiresTheServeThatFollows(t *testing.T) {
	p := New(Options{})
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := p.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	}()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Retire(ctx, ln); err != nil {
		t.Fatalf("Retire before Serve: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- p.Serve(ln, Outbound) }()
	select {
	case err := <-served:
		if !errors.Is(err, http.ErrServerClosed) {
			t.Fatalf("Serve after Retire: %v", err)
		}
	case <-time.After(5 * time.Second):
		ln.Close() // ends the Serve
		<-served
		t.Fatal("Serve after Retire serves the retired listener")
	}
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Fatal("the retired listener still accepts")
	}
	// The mark Retire left for the Serve to come is gone with it.
	p.srvMu.Lock()
	left := len(p.servers)
	p.srvMu.Unlock()
	if left != 0 {
		t.Fatalf("%d listeners still recorded after the retired Serve returned", left)
	}
}

// Shutdown ends the drains of retired listeners at its own deadline, as it
// ends those of the listeners it stops: a retirement given a longer
// deadline does not outlive the shutdown.
func TestShutdownEndsARetirementAtItsDeadline(t *testing.T) {
	p := New(Options{})
	if err := p.Apply(simpleConfig(config.Cluster{Endpoints: eps(echoUpgrade(t))})); err != nil {
		t.Fatal(err)
	}
	old, oldServed := serveOn(t, p, Outbound)
	oc, obr := openTunnel(t, old)

	retired := make(chan error, 1)
	rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer rcancel()
	go func() { retired <- p.Retire(rctx, old) }()
	awaitServeClosed(t, oldServed)

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := p.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown with a tunnel open: %v, want the deadline", err)
	}
	_ = oc.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(oc, "still there?\n")
	if line, err := obr.ReadString('\n'); err == nil {
		t.Fatalf("the retiring listener's tunnel outlived Shutdown: %q", line)
	}
	select {
	case <-retired:
	case <-time.After(5 * time.Second):
		t.Fatal("Retire still draining after Shutdown returned")
	}
}

// Retire of a listener being retired does the same drain; Serve refuses a
// listener it is serving already.
func TestRetireTwiceAndServeTwice(t *testing.T) {
	p := New(Options{})
	served, servedErr := serveOn(t, p, Outbound)
	eventually(t, 5*time.Second, "Serve to register", func() bool {
		p.srvMu.Lock()
		defer p.srvMu.Unlock()
		return p.servers[served] != nil
	})
	if err := p.Serve(served, Inbound); err == nil || !strings.Contains(err.Error(), "served already") {
		t.Fatalf("a second Serve of the same listener: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- p.Retire(ctx, served) }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("Retire: %v", err)
		}
	}
	if err := <-servedErr; !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("Serve of the retired listener: %v", err)
	}
	if err := p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

// A reload's listener limits apply to the connections accepted after it;
// a connection open before keeps the limits it was accepted with.
func TestApplyChangesListenerLimitsForNewConnections(t *testing.T) {
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })
	cfg := simpleConfig(config.Cluster{Endpoints: eps(addr(up))})
	h := startProxy(t, cfg)
	// A request whose head is about 8 KiB: under the default 64 KiB limit,
	// over the 2 KiB one applied below (and the 4 KiB the server allows
	// past it, as net/http does).
	big := "GET / HTTP/1.1\r\nHost: svc\r\nX-Big: " + strings.Repeat("b", 8192) + "\r\n\r\n"
	status := func(c net.Conn, br *bufio.Reader) int {
		t.Helper()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, big); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.DialTimeout("tcp", h.out, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, bufio.NewReader(c)
	}
	// h2Limit opens an HTTP/2 prior-knowledge connection and returns the
	// SETTINGS_MAX_HEADER_LIST_SIZE the proxy announces on it.
	h2Limit := func() uint32 {
		t.Helper()
		c, _ := dial()
		if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
			t.Fatal(err)
		}
		fr := http2.NewFramer(c, c)
		if err := fr.WriteSettings(); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		for i := 0; i < 10; i++ {
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatal(err)
			}
			if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
				v, _ := sf.Value(http2.SettingMaxHeaderListSize)
				return v
			}
		}
		t.Fatal("no SETTINGS from the proxy")
		return 0
	}
	oc, obr := dial()
	if code := status(oc, obr); code != 200 {
		t.Fatalf("before the reload: %d", code)
	}
	if v := h2Limit(); v != 64<<10 {
		t.Fatalf("HTTP/2 before the reload: SETTINGS_MAX_HEADER_LIST_SIZE %d, want %d", v, 64<<10)
	}

	small := simpleConfig(config.Cluster{Endpoints: eps(addr(up))})
	small.Listeners.MaxRequestHeaderBytes = 2048
	// A second, not less: it bounds the heads of the connections below
	// that must be served too, which on a loaded machine may come late.
	small.Listeners.ReadHeaderTimeout = time.Second
	if err := h.p.Apply(small); err != nil {
		t.Fatal(err)
	}
	nc, nbr := dial()
	if code := status(nc, nbr); code != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("a connection accepted after the reload: %d, want 431", code)
	}
	if code := status(oc, obr); code != 200 {
		t.Fatalf("the connection open before the reload: %d, want 200", code)
	}
	if v := h2Limit(); v != 2048 {
		t.Fatalf("HTTP/2 after the reload: SETTINGS_MAX_HEADER_LIST_SIZE %d, want 2048", v)
	}
	// The new read-header timeout (a second, not the default 10s) closes
	// a new connection that sends half a head.
	sc, sbr := dial()
	if _, err := io.WriteString(sc, "GET / HTTP/1.1\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = sc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, sbr); err != nil {
		t.Fatalf("half a head after the reload: %v, want the connection closed by the new read-header timeout", err)
	}
	// And back: a later reload raises the limit again for new connections.
	if err := h.p.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	nc2, nbr2 := dial()
	if code := status(nc2, nbr2); code != 200 {
		t.Fatalf("a connection accepted after the limit was raised: %d", code)
	}
}

// BeginRetire returns once the listener no longer accepts, its socket
// closed, while a request in flight on it goes on: the address can be
// bound again at once, and the drain BeginRetire returns waits for that
// request.
func TestBeginRetireFreesTheAddressBeforeTheDrain(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	up := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			entered <- struct{}{}
			<-release
		}
		fmt.Fprint(w, "ok "+r.URL.Path)
	})
	p := appliedProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up))}))
	old, oldServed := serveOn(t, p, Outbound)
	c := &http.Client{Transport: &http.Transport{}}
	defer c.Transport.(*http.Transport).CloseIdleConnections()
	result := make(chan string, 1)
	go func() {
		resp, err := c.Get("http://" + old.Addr().String() + "/hold")
		if err != nil {
			result <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		result <- string(b)
	}()
	<-entered

	drain := p.BeginRetire(old)
	again, err := net.Listen("tcp", old.Addr().String())
	if err != nil {
		t.Fatalf("binding the retired listener's address again: %v", err)
	}
	again.Close()
	drained := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		drained <- drain(ctx)
	}()
	close(release)
	if got := <-result; got != "ok /hold" {
		t.Fatalf("the request in flight: %q", got)
	}
	if err := <-drained; err != nil {
		t.Fatalf("drain: %v", err)
	}
	awaitServeClosed(t, oldServed)
}
