package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// newEchoUpgrader is an upstream that switches a request offering the
// protocol "echo" and sends back what it reads until the client's end.
func newEchoUpgrader(t *testing.T) string {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		io.Copy(conn, brw)
	}))
	t.Cleanup(up.Close)
	return up.Listener.Addr().String()
}

// tunnelEcho opens a tunnel through the proxy at addr, sends msg on it,
// reads it back and closes the tunnel.
func tunnelEcho(t *testing.T, addr, path, msg string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", resp.StatusCode)
	}
	io.WriteString(c, msg)
	b := make([]byte, len(msg))
	if _, err := io.ReadFull(br, b); err != nil || string(b) != msg {
		t.Fatalf("echo %q, %v", b, err)
	}
}

// A tunnel's line names the endpoint that switched: the 101 is its
// response. upstream_host was empty, as for a reply the proxy made itself.
func TestAccessLogNamesATunnelsUpstreamHost(t *testing.T) {
	up := newEchoUpgrader(t)
	lp := startServedProxy(t, routeAllTo(up, "ws"))
	tunnelEcho(t, lp.addr, "/ws", "hello")
	l := onlyLine(t, lp.logPath)
	if l["status"] != 101.0 || l["route"] != "ws" || l["cluster"] != "up" || l["upstream_host"] != up || l["error"] != "" || l["attempts"] != 1.0 || l["upstream_header_ms"] == nil {
		t.Fatalf("line %v", l)
	}
}

// A tunnel's bytes are those sent to the client after the 101, as Envoy's
// BYTES_SENT counts an upgraded stream's; they were 0 however much the
// tunnel carried.
func TestAccessLogCountsATunnelsBytes(t *testing.T) {
	up := newEchoUpgrader(t)
	lp := startServedProxy(t, routeAllTo(up, "ws"))
	msg := strings.Repeat("echo", 10000)
	tunnelEcho(t, lp.addr, "/ws", msg)
	if l := onlyLine(t, lp.logPath); l["status"] != 101.0 || l["bytes"] != float64(len(msg)) {
		t.Fatalf("line %v; want status 101, bytes %d", l, len(msg))
	}
}
