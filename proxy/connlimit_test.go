package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// A listener's max_connections caps the client connections it has open:
// one over it is closed as soon as it is accepted, without reaching the
// handler, and counted; outrigger_proxy_downstream_connections follows
// the open ones; a reload's new cap applies to the connections accepted
// after it, and a lowered one closes none of those open.

// downConn is a keep-alive HTTP/1.1 client connection to a listener.
type downConn struct {
	net.Conn
	br *bufio.Reader
}

func dialDown(t *testing.T, addr string) *downConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return &downConn{Conn: c, br: bufio.NewReader(c)}
}

// get sends a GET and fails the test unless the upstream's answer comes
// back.
func (c *downConn) get(t *testing.T) {
	t.Helper()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(b) != "up" {
		t.Fatalf("%s %q", resp.Status, b)
	}
}

// servedGet dials addr and fails the test unless a GET on the new
// connection is served; it leaves the connection open.
func servedGet(t *testing.T, addr string) *downConn {
	t.Helper()
	c := dialDown(t, addr)
	c.get(t)
	return c
}

// closedUnserved dials addr, sends a request and fails the test unless
// the connection is closed without a byte of answer.
func closedUnserved(t *testing.T, addr string) {
	t.Helper()
	c := dialDown(t, addr)
	_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	b, err := io.ReadAll(c.br)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection over the cap left open (read %q)", b)
	}
	if len(b) != 0 {
		t.Fatalf("connection over the cap answered %q", b)
	}
}

type connCounts struct {
	t        *testing.T
	h        *harness
	upstream *atomic.Int64
}

func (cc connCounts) open() float64 {
	return testutil.ToFloat64(cc.h.p.m.downConns.WithLabelValues("outbound"))
}

func (cc connCounts) overflows() float64 {
	return testutil.ToFloat64(cc.h.p.m.downOverflow.WithLabelValues("outbound"))
}

// waitOpen polls until the outbound listener has n connections open,
// by its gauge and its gate.
func (cc connCounts) waitOpen(n int) {
	cc.t.Helper()
	eventually(cc.t, 5*time.Second, fmt.Sprintf("%d open downstream connections", n), func() bool {
		return cc.open() == float64(n) && cc.h.p.gates[Outbound].open.Load() == int64(n)
	})
}

func (cc connCounts) wantOverflows(n int) {
	cc.t.Helper()
	if got := cc.overflows(); got != float64(n) {
		cc.t.Fatalf("overflow_total = %v, want %d", got, n)
	}
}

func startCapped(t *testing.T, max int, opts ...harnessOpt) (connCounts, *config.Config) {
	var hits atomic.Int64
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.WriteString(w, "up")
	})
	cfg := simpleConfig(config.Cluster{Endpoints: eps(addr(up))})
	cfg.Listeners.Outbound.MaxConnections = max
	h := startProxy(t, cfg, opts...)
	return connCounts{t: t, h: h, upstream: &hits}, cfg
}

func TestMaxConnectionsClosesConnectionsOverTheCap(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	cc, cfg := startCapped(t, 2, func(o *Options) { o.Logger = zap.New(core) })
	h := cc.h

	a, b := servedGet(t, h.out), servedGet(t, h.out)
	cc.waitOpen(2)
	closedUnserved(t, h.out)
	closedUnserved(t, h.out)
	cc.wantOverflows(2)
	if n := cc.upstream.Load(); n != 2 {
		t.Fatalf("upstream served %d requests, want 2", n)
	}
	// One line for both: the second came within overflowLogEvery.
	if n := logs.FilterMessageSnippet("max_connections").Len(); n != 1 {
		t.Fatalf("%d overflow log lines, want 1: %v", n, logs.All())
	}
	// The inbound listener has a cap of its own.
	if v := testutil.ToFloat64(h.p.m.downOverflow.WithLabelValues("inbound")); v != 0 {
		t.Fatalf("inbound overflow_total = %v", v)
	}
	// The admitted ones go on serving.
	a.get(t)
	b.get(t)

	// A place freed is taken by the next connection.
	a.Close()
	cc.waitOpen(1)
	c := servedGet(t, h.out)
	cc.waitOpen(2)
	closedUnserved(t, h.out)
	cc.wantOverflows(3)

	// A reload that raises the cap lets more in.
	raised := *cfg
	raised.Listeners.Outbound.MaxConnections = 4
	if err := h.p.Apply(&raised); err != nil {
		t.Fatal(err)
	}
	d, e := servedGet(t, h.out), servedGet(t, h.out)
	cc.waitOpen(4)
	closedUnserved(t, h.out)
	cc.wantOverflows(4)

	// One that lowers it closes none of those open, and admits nothing
	// until they are fewer than it.
	lowered := *cfg
	lowered.Listeners.Outbound.MaxConnections = 1
	if err := h.p.Apply(&lowered); err != nil {
		t.Fatal(err)
	}
	for _, dc := range []*downConn{b, c, d, e} {
		dc.get(t)
	}
	closedUnserved(t, h.out)
	cc.wantOverflows(5)
	for _, dc := range []*downConn{b, c, d} {
		dc.Close()
	}
	cc.waitOpen(1)
	closedUnserved(t, h.out)
	e.Close()
	cc.waitOpen(0)
	f := servedGet(t, h.out)
	f.Close()
	cc.waitOpen(0)
	cc.wantOverflows(6)
}

// HTTP/2 connections, with prior knowledge or by an h2c upgrade, count
// as HTTP/1.1 ones do, for as long as they are open.
func TestMaxConnectionsCountsHTTP2Connections(t *testing.T) {
	cc, _ := startCapped(t, 1)
	h := cc.h

	t.Run("prior knowledge", func(t *testing.T) {
		cc.t = t
		resp := mustGet(t, h.h2c, h.url("/"))
		if body := readAll(t, resp); resp.ProtoMajor != 2 || body != "up" {
			t.Fatalf("%s %q", resp.Proto, body)
		}
		cc.waitOpen(1)
		closedUnserved(t, h.out)
		cc.wantOverflows(1)
		h.h2c.Transport.(interface{ CloseIdleConnections() }).CloseIdleConnections()
		cc.waitOpen(0)
	})
	t.Run("h2c upgrade", func(t *testing.T) {
		cc.t = t
		c := dialDown(t, h.out)
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: \r\n\r\n")
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("upgrade answered %s", resp.Status)
		}
		if status, body := readH2Stream1(t, c.Conn, c.br); status != "200" || body != "up" {
			t.Fatalf("%s %q", status, body)
		}
		cc.waitOpen(1)
		closedUnserved(t, h.out)
		cc.wantOverflows(2)
		c.Close()
		cc.waitOpen(0)
	})
	cc.t = t
	servedGet(t, h.out).Close()
	cc.waitOpen(0)
}

// With no max_connections, Options.DefaultMaxConnections caps each
// listener; a configured value replaces it.
func TestMaxConnectionsDefault(t *testing.T) {
	cc, cfg := startCapped(t, 0, func(o *Options) { o.DefaultMaxConnections = 1 })
	h := cc.h
	a := servedGet(t, h.out)
	cc.waitOpen(1)
	closedUnserved(t, h.out)
	cc.wantOverflows(1)
	if got := h.p.gates[Inbound].max.Load(); got != 1 {
		t.Fatalf("inbound cap %d, want the default 1", got)
	}
	set := *cfg
	set.Listeners.Outbound.MaxConnections = 2
	if err := h.p.Apply(&set); err != nil {
		t.Fatal(err)
	}
	servedGet(t, h.out).Close()
	a.Close()
	cc.waitOpen(0)
}
