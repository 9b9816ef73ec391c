package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// withStop sets listeners.shutdown_delay and listeners.drain_timeout in a
// config made by sidecarConfig.
func withStop(t *testing.T, cfg, delay, drain string) string {
	t.Helper()
	const old = "  drain_timeout: 10s\n"
	if !strings.Contains(cfg, old) {
		t.Fatal("the config has no drain_timeout to replace")
	}
	return strings.Replace(cfg, old, "  drain_timeout: "+drain+"\n  shutdown_delay: "+delay+"\n", 1)
}

// getFresh does GET url on a connection of its own (Host host when set) and
// returns the status and body; code 0 and the error when it fails.
func getFresh(url, host string) (int, string, error) {
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return 0, "", err
	}
	if host != "" {
		req.Host = host
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// refuses reports whether nothing accepts connections at addr.
func refuses(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return true
	}
	conn.Close()
	return false
}

// logIndex is where msg's log line starts in the process's standard
// error; -1 when it is not there.
func (p *proc) logIndex(msg string) int {
	return strings.Index(p.stderr.String(), `"msg":"`+msg+`"`)
}

// During listeners.shutdown_delay the sidecar is taken out of rotation
// (/ready answers 503; /live, for liveness probes, 200) while clients that have not yet seen it go are
// still served: every listener goes on accepting new connections and
// answering on them, and keep-alive connections go on too. A second
// SIGTERM ends the delay at once: the drain starts (the listeners stop
// accepting), the request in flight finishes, and the process exits 0.
// Before, SIGTERM closed the listeners at once, and those clients got
// "connection refused".
func TestShutdownDelayServesNewConnectionsWhileNotReadyUntilASecondSignal(t *testing.T) {
	up := newUpstream(t, "a")
	p := start(t, "run", "-c", writeConfig(t, withStop(t, sidecarConfig(up.addr(), up.addr(), ""), "1m", "10s")))
	warm := newClient(t)
	if code, body, _ := get(t, warm, "http://"+p.addrs.Outbound+"/warm", "svc"); code != 200 || body != "a /warm" {
		t.Fatalf("before SIGTERM: %d %q", code, body)
	}
	p.signal(syscall.SIGTERM)

	var readyBody string
	waitFor(t, 5*time.Second, "/ready to answer 503", func() bool {
		code, body, err := getFresh("http://"+p.addrs.Admin+"/ready", "")
		readyBody = body
		return err == nil && code == 503
	})
	if readyBody != "not ready: shutting down\n" {
		t.Fatalf("/ready during the shutdown delay: %q", readyBody)
	}
	if code, body, err := getFresh("http://"+p.addrs.Admin+"/live", ""); code != 200 || body != "live\n" {
		t.Fatalf("/live during the shutdown delay: %d %q %v", code, body, err)
	}
	waitFor(t, 5*time.Second, "the log line of the delay's start", func() bool {
		return p.logIndex("shutting down: not ready, serving on for the shutdown delay") >= 0
	})
	for i := range 3 {
		for _, l := range []struct{ name, addr, host string }{
			{"outbound", p.addrs.Outbound, "svc"},
			{"inbound", p.addrs.Inbound, ""},
		} {
			code, body, err := getFresh("http://"+l.addr+"/new", l.host)
			if err != nil || code != 200 || body != "a /new" {
				t.Fatalf("new connection %d on the %s listener during the shutdown delay: %d %q %v", i, l.name, code, body, err)
			}
		}
	}
	if code, body, _ := get(t, warm, "http://"+p.addrs.Outbound+"/warm", "svc"); code != 200 || body != "a /warm" {
		t.Fatalf("keep-alive connection during the shutdown delay: %d %q", code, body)
	}
	if p.logIndex("shutting down: draining") >= 0 {
		t.Fatal("the drain began during the shutdown delay")
	}

	res := sendSlow(t, up, p.addrs.Inbound, 500*time.Millisecond)
	p.signal(syscall.SIGTERM)
	waitFor(t, 5*time.Second, "the second SIGTERM to start the drain (the inbound listener stops accepting)", func() bool {
		return refuses(p.addrs.Inbound)
	})
	if r := <-res; r.err != nil || r.code != 200 || r.body != "a /slow" {
		t.Fatalf("the request in flight at the second SIGTERM: %+v", r)
	}
	if code := p.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	ended, drain := p.logIndex("shutdown delay ended by a second signal"), p.logIndex("shutting down: draining")
	if ended < 0 || drain < ended {
		t.Fatalf("want the delay's end, then the drain, in the log:\n%s", p.stderr.String())
	}
}

// A shutdown delay that runs its course is followed by the drain, within
// drain_timeout from the delay's end, and the process exits 0: never
// before the delay has passed, and within delay + drain_timeout and a
// margin for a loaded machine.
func TestShutdownDelayThenDrainThenExit0(t *testing.T) {
	const delay, drain = 400 * time.Millisecond, 2 * time.Second
	up := newUpstream(t, "a")
	p := start(t, "run", "-c", writeConfig(t, withStop(t, sidecarConfig(up.addr(), up.addr(), ""), delay.String(), drain.String())))
	// A request in flight through the delay: the drain waits for it.
	res := sendSlow(t, up, p.addrs.Outbound, delay+300*time.Millisecond)
	sent := time.Now()
	p.signal(syscall.SIGTERM)
	if r := <-res; r.err != nil || r.code != 200 || r.body != "a /slow" {
		t.Fatalf("the request in flight: %+v", r)
	}
	const margin = 5 * time.Second
	code := p.wait(delay + drain + margin)
	took := time.Since(sent)
	if code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	if took < delay || took > delay+drain+margin {
		t.Fatalf("exited %v after SIGTERM, want between the shutdown delay (%v) and delay + drain_timeout + %v", took, delay, margin)
	}
	began, over, draining, stopped := p.logIndex("shutting down: not ready, serving on for the shutdown delay"),
		p.logIndex("shutdown delay over"), p.logIndex("shutting down: draining"), p.logIndex("outrigger stopped")
	if !(0 <= began && began < over && over < draining && draining < stopped) {
		t.Fatalf("want the delay's start and end, the drain, the stop, in that order, in the log:\n%s", p.stderr.String())
	}
	if strings.Contains(p.stderr.String(), "drain timed out") {
		t.Fatalf("the drain timed out:\n%s", p.stderr.String())
	}
}

// The signal that ends the shutdown delay starts the drain, during which
// /live still answers 200; one more signal, during the drain, ends the
// process at once by that signal, as a second signal does without a
// delay.
func TestSignalDuringTheDrainAfterAShutdownDelayEndsTheProcess(t *testing.T) {
	up := newUpstream(t, "a")
	p := start(t, "run", "-c", writeConfig(t, withStop(t, sidecarConfig(up.addr(), up.addr(), ""), "1m", "30s")))
	// A request in flight keeps the drain going.
	sendSlow(t, up, p.addrs.Outbound, 20*time.Second)
	p.signal(syscall.SIGTERM)
	waitFor(t, 5*time.Second, "the shutdown delay", func() bool {
		return p.logIndex("shutting down: not ready, serving on for the shutdown delay") >= 0
	})
	p.signal(syscall.SIGTERM)
	waitFor(t, 5*time.Second, "the drain", func() bool { return p.logIndex("shutting down: draining") >= 0 })
	if code, body, err := getFresh("http://"+p.addrs.Admin+"/live", ""); code != 200 || body != "live\n" {
		t.Fatalf("/live during the drain: %d %q %v", code, body, err)
	}
	p.signal(syscall.SIGTERM)
	p.wait(5 * time.Second)
	var ee *exec.ExitError
	if !errors.As(p.exitErr, &ee) || !ee.Sys().(syscall.WaitStatus).Signaled() || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
		t.Fatalf("want the process ended by SIGTERM, got %v", p.exitErr)
	}
}

// keepAliveConn is an HTTP/1.1 connection of its own to addr, for
// requests one after the other.
type keepAliveConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialKeepAlive(t *testing.T, addr string) *keepAliveConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &keepAliveConn{t, c, bufio.NewReader(c)}
}

// get sends GET path (Host host) and reads the whole response.
func (k *keepAliveConn) get(path, host string) *http.Response {
	k.t.Helper()
	k.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(k.c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, host); err != nil {
		k.t.Fatal(err)
	}
	resp, err := http.ReadResponse(k.br, nil)
	if err != nil {
		k.t.Fatalf("GET %s: %v", path, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// closed reports whether the server has closed the connection.
func (k *keepAliveConn) closed() bool {
	k.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := k.br.ReadByte()
	return err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
}

// During the shutdown delay the inbound listener answers HTTP/1.1
// requests with Connection: close and closes their connections after
// them, keep-alive connections included, while it goes on accepting and
// serving, as Envoy's drain does: the clients reconnect, and a client
// behind kube-proxy, which sends only new connections elsewhere once the
// pod's endpoint is gone, then leaves the pod. Its keep-alive connection
// went on to the pod through the delay, until the drain closed it, and a
// request it sent at that moment failed (a POST is not retried). The
// outbound listener, the local app's, keeps its connections until its
// drain.
func TestShutdownDelayClosesInboundKeepAliveConnectionsAfterTheirNextResponse(t *testing.T) {
	up := newUpstream(t, "a")
	p := start(t, "run", "-c", writeConfig(t, withStop(t, sidecarConfig(up.addr(), up.addr(), ""), "1m", "10s")))
	in, out := dialKeepAlive(t, p.addrs.Inbound), dialKeepAlive(t, p.addrs.Outbound)
	if resp := in.get("/before", "app"); resp.StatusCode != 200 || resp.Close {
		t.Fatalf("inbound before SIGTERM: %d, Connection %q", resp.StatusCode, resp.Header.Get("Connection"))
	}
	if resp := out.get("/before", "svc"); resp.StatusCode != 200 || resp.Close {
		t.Fatalf("outbound before SIGTERM: %d, Connection %q", resp.StatusCode, resp.Header.Get("Connection"))
	}
	p.signal(syscall.SIGTERM)
	waitFor(t, 5*time.Second, "the shutdown delay", func() bool {
		return p.logIndex("shutting down: not ready, serving on for the shutdown delay") >= 0
	})

	if resp := in.get("/during", "app"); resp.StatusCode != 200 || !resp.Close {
		t.Fatalf("inbound keep-alive connection during the delay: %d, Connection %q, want close", resp.StatusCode, resp.Header.Get("Connection"))
	}
	if !in.closed() {
		t.Fatal("the inbound connection stayed open after a response that said Connection: close")
	}
	fresh := dialKeepAlive(t, p.addrs.Inbound)
	if resp := fresh.get("/new", "app"); resp.StatusCode != 200 || !resp.Close {
		t.Fatalf("new inbound connection during the delay: %d, Connection %q, want close", resp.StatusCode, resp.Header.Get("Connection"))
	}
	for i := range 2 {
		if resp := out.get("/during", "svc"); resp.StatusCode != 200 || resp.Close {
			t.Fatalf("outbound keep-alive request %d during the delay: %d, Connection %q", i, resp.StatusCode, resp.Header.Get("Connection"))
		}
	}

	p.signal(syscall.SIGTERM)
	if code := p.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
}
