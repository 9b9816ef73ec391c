package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outrigger-mesh/outrigger/breaker"
	"github.com/outrigger-mesh/outrigger/proxy/config"
	"github.com/outrigger-mesh/outrigger/proxy/internal/proxytest"
	"github.com/outrigger-mesh/outrigger/proxy/internal/wire"
)

// dialRaw opens a plain connection to addr with a deadline for the test.
func dialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// sendRaw writes request, as it is, on a new connection to addr and
// reads the response's head; the body is left to the caller, the
// connection closed with the test.
func sendRaw(t *testing.T, addr, request string) *http.Response {
	t.Helper()
	c := dialRaw(t, addr)
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// lenientH2C is an upstream that switches to h2c for any request whose
// Upgrade names it, whatever else the request says (as some servers
// do), and then writes what stands for its HTTP/2 preface; any other
// request gets 200 with the switch headers it saw.
func lenientH2C(t *testing.T) string {
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(strings.ToLower(r.Header.Get("Upgrade")), "h2c") {
			fmt.Fprintf(w, "plain upgrade=%q settings=%q", r.Header.Get("Upgrade"), r.Header.Get("Http2-Settings"))
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		fmt.Fprint(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\nRAW HTTP/2 FROM THE UPSTREAM\n")
		brw.Flush()
	})
	return addr(up)
}

// An h2c upgrade that the listener does not serve itself (its Connection
// does not name HTTP2-Settings) must not be passed on: a tunnel would
// give the client an HTTP/2 connection straight to the upstream, whose
// every later stream bypasses the routes, header edits, breakers and
// limits (h2c smuggling). As Envoy does, the request goes on without
// its switch headers (Upgrade, HTTP2-Settings). It was tunnelled.
func TestH2CUpgradeIsNeverTunnelled(t *testing.T) {
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(lenientH2C(t))}))
	for _, up := range []string{"h2c", "H2C", "websocket, h2c"} {
		c := dialRaw(t, h.out)
		fmt.Fprintf(c, "GET /internal HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: %s\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n", up)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("Upgrade %q: %v", up, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != `plain upgrade="" settings=""` {
			t.Fatalf("Upgrade %q: %d %q, want the request forwarded without its switch headers", up, resp.StatusCode, b)
		}
	}
}

// RFC 9110 §7.8: a server must ignore Upgrade in an HTTP/1.0 request (an
// HTTP/1.0 intermediary may have passed the field on without knowing
// it). The request is forwarded without it, not switched.
func TestUpgradeInHTTP10RequestIsIgnored(t *testing.T) {
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(echoUpgrade(t))}))
	c := dialRaw(t, h.out)
	fmt.Fprint(c, "GET /ws HTTP/1.0\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		t.Fatal("an HTTP/1.0 request was switched to another protocol")
	}
}

// A tunnel in which neither side sends anything for the listener's
// idle_timeout is closed, as Envoy's stream idle timeout closes an
// upgraded stream: nothing else bounds it (no route timeout applies once
// switched), and each holds a goroutine pair, an upstream connection and
// a slot of max_requests. One that carries bytes stays open.
func TestIdleTunnelClosedAfterIdleTimeout(t *testing.T) {
	// The gaps between messages leave most of it spare (see
	// movingIdleTimeout): with 500 ms and gaps of 100 ms, a stall of
	// 400 ms on a loaded machine would close the busy tunnel.
	const idle = movingIdleTimeout
	cfg := simpleConfig(config.Cluster{Endpoints: eps(echoUpgrade(t))})
	cfg.Listeners.IdleTimeout = idle
	h := startProxy(t, cfg)
	c := dialRaw(t, h.out)
	fmt.Fprint(c, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(c)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 101 {
		t.Fatalf("%v %v", resp, err)
	}
	// Busy for one idle timeout and a half: a message every tenth of one.
	busyUntil := time.Now().Add(idle * 3 / 2)
	var lastSent time.Time
	for i := 0; time.Now().Before(busyUntil); i++ {
		<-time.After(idle / 10)
		lastSent = time.Now()
		fmt.Fprintf(c, "msg %d\n", i)
		if line, err := br.ReadString('\n'); err != nil || line != fmt.Sprintf("echo msg %d\n", i) {
			t.Fatalf("busy tunnel, exchange %d: %q %v", i, line, err)
		}
	}
	// Then silent: the proxy closes it, no sooner than idle after the
	// last message (which the proxy relayed after it was sent; the echo
	// it relayed back came later still, before this test read it).
	_, err := br.ReadString('\n')
	if err == nil || errors.Is(err, net.ErrClosed) {
		t.Fatalf("read %v", err)
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("idle tunnel still open after the test's deadline")
	}
	if took := time.Since(lastSent); took < idle {
		t.Fatalf("closed %v after the last message, before the idle timeout", took)
	}
	eventually(t, 5*time.Second, "tunnel to end", func() bool { return h.p.inflight.Load() == 0 })
}

// halfCloser is an upstream that switches to "half", writes a greeting,
// shuts its side for writing (a FIN: it has nothing more to say), then
// reads one line from the client and hands it to got.
func halfCloser(t *testing.T, got chan<- string) string {
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		fmt.Fprint(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: half\r\n\r\nhello\n")
		brw.Flush()
		_ = c.(*net.TCPConn).CloseWrite()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := brw.ReadString('\n')
		if err != nil {
			line = "error: " + err.Error()
		}
		got <- line
	})
	return addr(up)
}

// An upstream that ends its direction of a tunnel (TCP half-close) has
// its FIN passed on to the client, and the client's direction stays
// open: what the client sends next still reaches the upstream. The
// whole tunnel used to be closed at the first end of either direction.
func TestTunnelPassesUpstreamHalfClose(t *testing.T) {
	got := make(chan string, 1)
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(halfCloser(t, got))}))
	c := dialRaw(t, h.out)
	fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: half\r\n\r\n")
	br := bufio.NewReader(c)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 101 {
		t.Fatalf("%v %v", resp, err)
	}
	if line, err := br.ReadString('\n'); line != "hello\n" {
		t.Fatalf("%q %v", line, err)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("after the upstream's FIN: %v, want EOF", err)
	}
	fmt.Fprint(c, "reply\n")
	select {
	case line := <-got:
		if line != "reply\n" {
			t.Fatalf("upstream got %q after its half-close, want the client's reply", line)
		}
	case <-time.After(8 * time.Second):
		t.Fatal("upstream got nothing")
	}
	c.Close()
	eventually(t, 5*time.Second, "tunnel to end", func() bool { return h.p.inflight.Load() == 0 })
}

// An upgrade request whose body stalls is bounded like any other: the
// route timeout (which, for an upgrade, bounds the wait for the 101)
// ends it with a 504, without counting it against the upstream, and the
// request does not stay in flight until the client goes. The timeout is
// a second: only a deadline that passes while the body is awaited is the
// client's, one that passes in the connection to the upstream is the
// upstream's, and on a loaded machine that could take longer than
// 200 ms.
func TestUpgradeRequestWithStalledBodyEnds(t *testing.T) {
	cc := config.Cluster{Endpoints: eps(echoUpgrade(t)), CircuitBreaker: tripsAfter(1)}
	h := startProxy(t, simpleConfig(cc, func(r *config.Route) { r.Timeout = time.Second }))
	c := dialRaw(t, h.out)
	fmt.Fprint(c, "POST /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\nContent-Length: 100\r\n\r\n0123456789")
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: "POST"})
	if err != nil {
		t.Fatalf("no response: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusGatewayTimeout || resp.Header.Get(hdrError) != "upstream_timeout" {
		t.Fatalf("%d %q, want 504 upstream_timeout", resp.StatusCode, resp.Header.Get(hdrError))
	}
	eventually(t, 5*time.Second, "request to end", func() bool { return h.p.inflight.Load() == 0 })
	if s := svcBreaker(h); s.State != breaker.StateClosed {
		t.Fatalf("breaker %v: the client's stalled body counted against the upstream", s.State)
	}
}

// An upstream's 101 to a request that asked for no switch is not
// passed on, nor the connection tunnelled: 502.
func TestUnaskedSwitchingProtocolsIsRefused(t *testing.T) {
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		fmt.Fprint(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nRAW\n")
		brw.Flush()
	})
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up))}))
	// Connection: upgrade without Upgrade asks for nothing.
	c := dialRaw(t, h.out)
	fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("%d, want 502", resp.StatusCode)
	}
}

// rawSwitcher is an upstream that answers every request with a 101 to
// protocol, with the extra header lines extra.
func rawSwitcher(t *testing.T, protocol, extra string) string {
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n%s\r\n", protocol, extra)
		brw.Flush()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.Copy(io.Discard, brw)
	})
	return addr(up)
}

// An upstream that switches to a protocol the client did not ask for
// fails the request (502 upstream_reset), and that counts against it: it
// was reported to the breaker as a successful switch.
func TestSwitchToUnaskedProtocolCountsAgainstTheUpstream(t *testing.T) {
	cc := config.Cluster{Endpoints: eps(rawSwitcher(t, "other", "")), CircuitBreaker: tripsAfter(2)}
	h := startProxy(t, simpleConfig(cc))
	for i, want := range []string{"upstream_reset", "upstream_reset", "breaker_open"} {
		c := dialRaw(t, h.out)
		fmt.Fprint(c, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get(hdrError); got != want {
			t.Fatalf("request %d: %d %q, want %q", i, resp.StatusCode, got, want)
		}
	}
}

// RFC 9110 §8.6: a 1xx response carries no Content-Length. An
// upstream's is not passed on with the 101: a client or intermediary
// that believed it would take the new protocol's first bytes for a body.
func TestSwitchingProtocolsDropsContentLength(t *testing.T) {
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(rawSwitcher(t, "echo", "Content-Length: 5\r\n"))}))
	c := dialRaw(t, h.out)
	fmt.Fprint(c, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(c)
	head := ""
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("head %q: %v", head, err)
		}
		if line == "\r\n" {
			break
		}
		head += line
	}
	if !strings.HasPrefix(head, "HTTP/1.1 101 ") || strings.Contains(strings.ToLower(head), "content-length") {
		t.Fatalf("101 head %q", head)
	}
}

// A client may offer several protocols, in order of preference, on one
// Upgrade line or several (RFC 9110 §7.8): the upstream gets the whole
// offer, and its switch to any one of them is passed on, with the
// protocol it chose. Only a whole first line used to be compared with
// the upstream's choice, so such a switch failed 502 upstream_reset and
// counted against the upstream.
func TestSwitchToOneOfSeveralOfferedProtocols(t *testing.T) {
	offers := make(chan string, 4)
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		offers <- strings.Join(r.Header["Upgrade"], "|")
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		fmt.Fprint(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ECHO\r\n\r\n")
		brw.Flush()
	})
	cc := config.Cluster{Endpoints: eps(addr(up)), CircuitBreaker: tripsAfter(1)}
	h := startProxy(t, simpleConfig(cc))
	for _, tc := range []struct{ lines, sent string }{
		{"Upgrade: foo/2, echo\r\n", "foo/2, echo"},
		{"Upgrade: foo\r\nUpgrade: ,echo/1 ,\r\nUpgrade: echo\r\n", "foo, echo/1, echo"},
	} {
		resp := sendRaw(t, h.out, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"+tc.lines+"\r\n")
		if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Upgrade") != "ECHO" {
			t.Fatalf("offer %q: %d %q %q, want 101 to ECHO", tc.lines, resp.StatusCode, resp.Header.Get("Upgrade"), resp.Header.Get(hdrError))
		}
		if got := <-offers; got != tc.sent {
			t.Fatalf("offer %q reached the upstream as %q, want %q", tc.lines, got, tc.sent)
		}
	}
	if s := svcBreaker(h); s.State != breaker.StateClosed {
		t.Fatalf("breaker %v after switches the clients asked for", s.State)
	}
}

// An Upgrade with an element that is not a protocol, or that names h2c
// among others, is no switch the proxy passes on: the request goes on
// without its switch headers.
func TestMalformedOrH2COfferIsNotPassedOn(t *testing.T) {
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(lenientH2C(t))}))
	for _, offer := range []string{"echo two", "echo/", "/1", "websocket, H2C", "echo, h2c/1"} {
		resp := sendRaw(t, h.out, "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: "+offer+"\r\n\r\n")
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != `plain upgrade="" settings=""` {
			t.Fatalf("offer %q: %d %q", offer, resp.StatusCode, b)
		}
	}
}

// protocolList accepts only lists of protocols, and what it returns,
// joined as upgradeProtocol sends it on, reads back the same.
func FuzzProtocolList(f *testing.F) {
	for _, s := range []string{"websocket", "foo/2, echo", " ,echo/1 ,", "a b", "x/", "/1", "h2c", "\xff", "a/b/c"} {
		f.Add(s, "echo")
	}
	f.Fuzz(func(t *testing.T, line1, line2 string) {
		list, ok := protocolList([]string{line1, line2})
		if !ok {
			if list != nil {
				t.Fatalf("refused %q %q with a list %q", line1, line2, list)
			}
			return
		}
		for _, p := range list {
			name, version, versioned := strings.Cut(p, "/")
			if !wire.IsToken(name) || versioned && !wire.IsToken(version) {
				t.Fatalf("%q %q gave element %q", line1, line2, p)
			}
		}
		back, ok := protocolList([]string{strings.Join(list, ", ")})
		if !ok || !slices.Equal(back, list) {
			t.Fatalf("%q joined reads back as %q %v", list, back, ok)
		}
	})
}

// The 101 that opens a tunnel is written on the hijacked connection,
// which has no deadline, before the idle watch starts: a client that
// read nothing held the tunnel's upstream connection and its request
// slot for good. The listener's idle_timeout bounds that write too.
func TestSwitchingProtocolsToAClientThatReadsNothingEnds(t *testing.T) {
	cfg := simpleConfig(config.Cluster{Endpoints: eps(echoUpgrade(t))})
	cfg.Listeners.IdleTimeout = 300 * time.Millisecond
	p := New(Options{Registry: prometheus.NewRegistry()})
	if err := p.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	ln := proxytest.NewPipeListener()
	served := make(chan error, 1)
	go func() { served <- p.Serve(ln, Outbound) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
	})
	client := ln.Dial()
	defer client.Close()
	go func() {
		_, _ = io.WriteString(client, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	}()
	// The request is counted as it ends, before it leaves inflight. A
	// poll for it in flight could miss it: on a loaded machine the
	// poller may not run in the 300 ms the 101 waits for the client.
	counted := func() (n float64) {
		for _, class := range []string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"} {
			n += counterValue(p.m.requests.WithLabelValues("outbound", "all", "svc", class))
		}
		return n
	}
	eventually(t, 10*time.Second, "the unread 101 to end the request", func() bool {
		return counted() == 1 && p.inflight.Load() == 0
	})
}
