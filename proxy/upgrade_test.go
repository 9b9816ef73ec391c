package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// echoUpgrade is an upstream that switches to the "echo" protocol and
// echoes lines until the client closes.
func echoUpgrade(t *testing.T) string { return echoUpgradeCounted(t, nil) }

// echoUpgradeCounted is echoUpgrade, counting its switches in upgrades
// when not nil.
func echoUpgradeCounted(t *testing.T, upgrades *atomic.Int32) string {
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" || !strings.EqualFold(r.Header.Get("Connection"), "upgrade") {
			http.Error(w, "want upgrade", 400)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		if upgrades != nil {
			upgrades.Add(1)
		}
		fmt.Fprint(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\nX-Up: 1\r\n\r\n")
		brw.Flush()
		for {
			line, err := brw.ReadString('\n')
			if err != nil {
				return
			}
			brw.WriteString("echo " + line)
			brw.Flush()
		}
	})
	return addr(up)
}

// openEchoTunnel asks h's outbound listener to switch to the echo
// protocol (see echoUpgrade), sending first right behind the request, and
// returns the tunnel once its 101 has been read. The connection is
// closed at the test's end.
func openEchoTunnel(t *testing.T, h *harness, first string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", h.out, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n%s", first)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("Upgrade") != "echo" || resp.Header.Get("X-Up") != "1" {
		t.Fatalf("%d %v", resp.StatusCode, resp.Header)
	}
	return c, br
}

// A tunnel outlives the route timeout, which bounds only the wait for
// the 101. The timeout is a second: the 101 must come within it, and on
// a loaded machine it could come after 200 ms and the request was
// answered 504.
func TestUpgradeTunnelsBothWaysPastRouteTimeout(t *testing.T) {
	const timeout = time.Second
	cfg := simpleConfig(config.Cluster{Endpoints: eps(echoUpgrade(t))}, func(r *config.Route) { r.Timeout = timeout })
	h := startProxy(t, cfg)
	start := time.Now()
	// The first line rides in the same packet as the request.
	c, br := openEchoTunnel(t, h, "first\n")
	if line, _ := br.ReadString('\n'); line != "echo first\n" {
		t.Fatalf("%q", line)
	}
	// Keep talking until past the route timeout: a message every tenth
	// of it.
	deadline := start.Add(timeout * 3 / 2)
	for i := 0; time.Now().Before(deadline); i++ {
		fmt.Fprintf(c, "msg %d\n", i)
		if line, err := br.ReadString('\n'); err != nil || line != fmt.Sprintf("echo msg %d\n", i) {
			t.Fatalf("exchange %d: %q %v", i, line, err)
		}
		<-time.After(timeout / 10)
	}
	if n := h.p.inflight.Load(); n != 1 {
		t.Fatalf("tunnel not counted in flight: %d", n)
	}
	c.Close()
	eventually(t, 5*time.Second, "tunnel to end", func() bool { return h.p.inflight.Load() == 0 })
}

func TestUpgradeRefusedByUpstreamIsForwarded(t *testing.T) {
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", 426) })
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up))}))
	resp := mustGet(t, h.h1, h.url("/"), "Connection", "Upgrade", "Upgrade", "websocket")
	readAll(t, resp)
	if resp.StatusCode != 426 {
		t.Fatalf("%d", resp.StatusCode)
	}
}

func TestShutdownEndsTunnelsAtDeadline(t *testing.T) {
	cfg := simpleConfig(config.Cluster{Endpoints: eps(echoUpgrade(t))})
	h := startProxy(t, cfg)
	c, err := net.DialTimeout("tcp", h.out, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(c)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 101 {
		t.Fatalf("%v %v", resp, err)
	}
	// The harness's cleanup shuts down with a 10s deadline; a tunnel must
	// not hold it: shut down here with a short one.
	ctx, cancel := contextWithTimeout(100 * time.Millisecond)
	defer cancel()
	if err := h.p.Shutdown(ctx); err == nil {
		t.Fatal("Shutdown reported a clean drain with a tunnel open")
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadString('\n'); err == nil {
		t.Fatal("tunnel still open after forced shutdown")
	}
}

// A client that half-closes its side of a tunnel (sends FIN, keeps
// reading) still gets what the upstream sends after seeing that end: the
// FIN is passed on, not taken for the end of the tunnel.
func TestTunnelPassesClientHalfClose(t *testing.T) {
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		fmt.Fprint(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(brw)
		fmt.Fprintf(brw, "read %q until %v\n", got, err)
		brw.Flush()
	})
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up))}))
	c, err := net.DialTimeout("tcp", h.out, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nhello")
	br := bufio.NewReader(c)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 101 {
		t.Fatalf("%v %v", resp, err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	line, err := br.ReadString('\n')
	if want := "read \"hello\" until <nil>\n"; line != want {
		t.Fatalf("after half-close got %q (%v), want %q", line, err, want)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("tunnel not closed after the upstream's end: %v", err)
	}
}

// A forced shutdown that ends a tunnel waits, within its moment for
// cancelled requests to unwind, for the server's handler to return, not
// only the proxy's: a wrapper (Options.Wrap) still has work after the
// proxy's handler returns, such as an access log writing the tunnel's
// line, and the caller closes that log once Shutdown returns. Shutdown
// returned as soon as the proxy's own count of requests fell to 0.
func TestForcedShutdownWaitsForTheWrapperOfATunnelItEnds(t *testing.T) {
	innerDone, proceed := make(chan struct{}), make(chan struct{})
	release := sync.OnceFunc(func() { close(proceed) })
	defer release()
	var wrapperDone atomic.Bool
	wrap := func(l Listener, h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(w, r)
			close(innerDone)
			<-proceed
			wrapperDone.Store(true)
		})
	}
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(echoUpgrade(t))}), func(o *Options) { o.Wrap = wrap })
	openEchoTunnel(t, h, "")
	ctx, cancel := contextWithTimeout(100 * time.Millisecond)
	defer cancel()
	shutdown := make(chan error, 1)
	go func() { shutdown <- h.p.Shutdown(ctx) }()
	<-innerDone // the drain timed out and ended the tunnel
	// Shutdown must not return while the wrapper is held; the moment it
	// gives cancelled requests is 1s, so 200ms tells a Shutdown that
	// waits from one that does not.
	select {
	case <-shutdown:
		t.Fatal("Shutdown returned while the tunnel's wrapper had not")
	case <-time.After(200 * time.Millisecond):
	}
	release()
	if err := <-shutdown; err == nil {
		t.Fatal("Shutdown reported a clean drain with a tunnel open")
	}
	if !wrapperDone.Load() {
		t.Fatal("Shutdown returned before the tunnel's wrapper")
	}
}

// A 101 is the tunnel, not a response to retry: a retriable_headers
// matcher that matches it (an inverted one, here) leaves it as it is,
// and the upstream switches protocols once.
func TestUpgradeIsNotRetriedOnRetriableHeaders(t *testing.T) {
	var upgrades atomic.Int32
	up := echoUpgradeCounted(t, &upgrades)
	cfg := simpleConfig(config.Cluster{Endpoints: eps(up)}, func(r *config.Route) {
		r.Retry = &config.RetryPolicy{Attempts: 2, RetryOn: []config.RetryCondition{"retriable-headers"},
			Backoff:          config.Backoff{Base: time.Microsecond},
			RetriableHeaders: []config.HeaderMatch{{Name: "x-healthy", Present: true, Invert: true}}}
	})
	h := startProxy(t, cfg)
	_, br := openEchoTunnel(t, h, "first\n")
	if line, _ := br.ReadString('\n'); line != "echo first\n" {
		t.Fatalf("%q", line)
	}
	if n := upgrades.Load(); n != 1 {
		t.Fatalf("the upstream switched protocols %d times, want once", n)
	}
}
