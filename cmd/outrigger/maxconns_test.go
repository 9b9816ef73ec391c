package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Without max_connections, each listener's cap is a quarter of the soft
// open-file limit.
func TestDefaultMaxConnectionsIsAQuarterOfTheFileLimit(t *testing.T) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Skip(err)
	}
	n, nofile := defaultMaxConnections()
	if nofile != rl.Cur {
		t.Fatalf("open-file limit %d, want %d", nofile, rl.Cur)
	}
	if rl.Cur < 1<<40 && n != int(max(rl.Cur/4, 1)) {
		t.Fatalf("default cap %d for an open-file limit of %d", n, rl.Cur)
	}
}

// The sidecar caps the outbound listener's connections at
// listeners.outbound.max_connections, counts those it closes on
// /metrics, and a reload of the file that raises the cap lets the next
// one in.
func TestSidecarClosesConnectionsOverMaxConnections(t *testing.T) {
	up := newUpstream(t, "a")
	base := sidecarConfig(up.addr(), up.addr(), "")
	capped := func(n int) string {
		return strings.Replace(base, "  outbound:\n    address: 127.0.0.1:0\n",
			fmt.Sprintf("  outbound:\n    address: 127.0.0.1:0\n    max_connections: %d\n", n), 1)
	}
	path := writeConfig(t, capped(1))
	p := start(t, "run", "-c", path)
	c := newClient(t)
	// Logged before the address file start waited for, but copied from
	// the process's standard error by a goroutine of exec's own.
	waitFor(t, 10*time.Second, "the start's line on the default connection cap", func() bool {
		return strings.Contains(p.stderr.String(), "open-file limit")
	})
	// /config shows the inbound listener's cap, the default the start
	// computed and logged, and the outbound's as configured.
	if m := regexp.MustCompile(`"max_connections":(\d+)`).FindStringSubmatch(p.stderr.String()); m != nil {
		var eff struct {
			Listeners struct {
				Outbound, Inbound struct {
					MaxConnections int `json:"max_connections"`
				}
			}
		}
		if err := json.Unmarshal(getConfig(t, c, p.addrs.Admin).Effective, &eff); err != nil {
			t.Fatal(err)
		}
		if got := eff.Listeners; got.Outbound.MaxConnections != 1 || strconv.Itoa(got.Inbound.MaxConnections) != m[1] {
			t.Errorf("/config max_connections: outbound %d, inbound %d; want 1 and the default %s",
				got.Outbound.MaxConnections, got.Inbound.MaxConnections, m[1])
		}
	}

	open := dialGet(t, p.addrs.Outbound)
	defer open.Close()
	if dialGetClosed(t, p.addrs.Outbound) != nil {
		t.Fatal("a second connection over max_connections 1 was served")
	}
	const overflow = `outrigger_proxy_downstream_connections_overflow_total{listener="outbound"}`
	if v := metric(t, c, p.addrs.Admin, overflow); v != 1 {
		t.Fatalf("%s = %v, want 1", overflow, v)
	}
	if v := metric(t, c, p.addrs.Admin, `outrigger_proxy_downstream_connections{listener="outbound"}`); v != 1 {
		t.Fatalf("open downstream connections %v, want 1", v)
	}

	writeAtomic(t, path, capped(2))
	waitFor(t, 15*time.Second, "generation 2", func() bool { return getConfig(t, c, p.addrs.Admin).Generation == 2 })
	second := dialGet(t, p.addrs.Outbound)
	second.Close()
	if v := metric(t, c, p.addrs.Admin, overflow); v != 1 {
		t.Fatalf("%s = %v after the raise, want 1", overflow, v)
	}
	if s := p.stderr.String(); !strings.Contains(s, "listener at max_connections") {
		t.Errorf("the overflow is not logged:\n%s", s)
	}
}

// dialGet opens a connection to addr and has one request served on it,
// leaving it open.
func dialGet(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET /x HTTP/1.1\r\nHost: svc\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		conn.Close()
		t.Fatalf("a connection within the cap: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("a connection within the cap: %s", resp.Status)
	}
	return conn
}

// dialGetClosed opens a connection to addr, sends a request and returns
// nil when the connection is closed without a byte of answer.
func dialGetClosed(t *testing.T, addr string) error {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET /x HTTP/1.1\r\nHost: svc\r\n\r\n")
	b, err := io.ReadAll(conn)
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return errors.New("left open")
	case len(b) > 0:
		return fmt.Errorf("answered %q", b)
	}
	return nil
}
