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
)

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
	p := New(Options{})
	if err := p.Apply(simpleConfig(config.Cluster{Endpoints: eps(addr(up))})); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	}()
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
	select {
	case err := <-oldServed:
		if !errors.Is(err, http.ErrServerClosed) {
			t.Fatalf("Serve of the retired listener: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve of the retired listener did not return")
	}
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
	p := New(Options{})
	if err := p.Apply(simpleConfig(config.Cluster{Endpoints: eps(echoUpgrade(t))})); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	}()
	old, _ := serveOn(t, p, Outbound)
	cur, _ := serveOn(t, p, Outbound)
	tunnel := func(ln net.Listener) (net.Conn, *bufio.Reader) {
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
	oc, obr := tunnel(old)
	cc, cbr := tunnel(cur)

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

func TestRetireRefusesAListenerNotServed(t *testing.T) {
	p := New(Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := p.Retire(context.Background(), ln); err == nil || !strings.Contains(err.Error(), "not served") {
		t.Fatalf("Retire of a listener not served: %v", err)
	}
	served, _ := serveOn(t, p, Outbound)
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
	if err := p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}
