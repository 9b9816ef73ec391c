package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A keep-alive connection to the admin endpoint that sends no next
// request is closed after listeners.idle_timeout, as the app API's is:
// the admin server had no idle timeout, so each such connection (from
// anyone who can reach a non-loopback admin address) held a socket and a
// goroutine for the life of the process.
func TestAdminClosesAnIdleKeepAliveConnection(t *testing.T) {
	up := newUpstream(t, "a")
	cfg := strings.Replace(sidecarConfig(up.addr(), "", ""), "  drain_timeout: 10s\n", "  drain_timeout: 10s\n  idle_timeout: 1s\n", 1)
	p := start(t, "run", "-c", writeConfig(t, cfg))

	conn, err := net.Dial("tcp", p.addrs.Admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /live HTTP/1.1\r\nHost: admin\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Close {
		t.Fatalf("/live: %d, close %v; want 200 on a kept-alive connection", resp.StatusCode, resp.Close)
	}
	idleFrom := time.Now()
	conn.SetReadDeadline(idleFrom.Add(15 * time.Second))
	_, err = br.ReadByte()
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		t.Fatalf("the idle connection is still open after %v (idle_timeout 1s)", time.Since(idleFrom).Round(time.Second))
	case err != io.EOF && !errors.Is(err, net.ErrClosed) && !errors.Is(err, syscall.ECONNRESET):
		t.Fatalf("reading the idle connection: %v, want EOF", err)
	}
	if d := time.Since(idleFrom); d < 900*time.Millisecond {
		t.Fatalf("closed after %v, before the idle timeout", d)
	}
}
