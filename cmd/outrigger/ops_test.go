package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A client that goes away before the response gets none: the access log
// line says 499, as outrigger_proxy_requests_total counts it, not the 200
// a handler that wrote nothing would have sent.
func TestAccessLogRecordsAClientGoneAs499(t *testing.T) {
	up := newUpstream(t, "a")
	logPath := filepath.Join(t.TempDir(), "access.log")
	extra := fmt.Sprintf("logging:\n  access_log:\n    enabled: true\n    path: %s\n", logPath)
	p := start(t, "run", "-c", writeConfig(t, sidecarConfig(up.addr(), up.addr(), extra)))

	conn, err := net.Dial("tcp", p.addrs.Outbound)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Fprint(conn, "GET /slow?d=30s HTTP/1.1\r\nHost: svc\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-up.arrivals:
	case <-time.After(10 * time.Second):
		t.Fatal("the request never reached the upstream")
	}
	conn.Close()

	waitFor(t, 10*time.Second, "the access log line", func() bool {
		b, err := os.ReadFile(logPath)
		return err == nil && len(b) > 0
	})
	lines := readAccessLog(t, logPath)
	if len(lines) != 1 || lines[0]["status"] != 499.0 || lines[0]["bytes"] != 0.0 {
		t.Fatalf("access log %v, want one line with status 499 and no bytes", lines)
	}
}
