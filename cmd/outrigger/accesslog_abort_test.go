package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// A response whose upstream body fails midway is aborted downstream (the
// client reads a cut-off body, not a short success); its request still
// writes its one access log line, with the status sent, the body bytes
// that reached the client and, in error, upstream_reset: the sidecar cut
// the response short (Envoy's response flag UR). The abort's panic
// skipped the line.
func TestAccessLogLinesAnAbortedResponse(t *testing.T) {
	up := newRawUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
	lp := startServedProxy(t, routeAllTo(up, "r"))
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	// The client fails: on the response, or on its body, depending on
	// whether the header went out before the abort.
	if resp, err := c.Get("http://" + lp.addr + "/cut"); err == nil {
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Fatalf("the cut-off body read as complete: %q", b)
		}
	}
	l := onlyLine(t, lp.logPath)
	if l["path"] != "/cut" || l["status"] != 200.0 || l["bytes"] != 10.0 || l["upstream_host"] != up || l["error"] != "upstream_reset" {
		t.Fatalf("line %v", l)
	}
}

// A client that goes away mid-body aborts its response too: its line
// keeps the status that was sent and the bytes sent before, and no error
// of the sidecar's.
func TestAccessLogLinesAResponseItsClientLeftMidBody(t *testing.T) {
	upAddr := firstThenStall(t)
	lp := startServedProxy(t, routeAllTo(upAddr, "r"))
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + lp.addr + "/left")
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, len("first"))
	if _, err := io.ReadFull(resp.Body, b); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close() // mid-body: closes the connection
	l := onlyLine(t, lp.logPath)
	if l["path"] != "/left" || l["status"] != 200.0 || l["bytes"] != 5.0 || l["upstream_host"] != upAddr || l["error"] != "" {
		t.Fatalf("line %v", l)
	}
}

// A route timeout that passes mid-body cuts the response short: the line
// says upstream_timeout, as a 504 the sidecar answered would, with the
// status of the header that went out. The timeout is 2s, not 200ms: the
// header must come before it, and a loaded machine can take 200ms for the
// first connection to the upstream and its answer (the proxy then answers
// 504 itself).
func TestAccessLogSaysARouteTimeoutCutAResponse(t *testing.T) {
	upAddr := firstThenStall(t)
	lp := startServedProxy(t, routeAllTo(upAddr, "r", func(r *config.Route) { r.Timeout = 2 * time.Second }))
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + lp.addr + "/slow")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Fatalf("the cut-off body read as complete: %q", b)
	}
	if l := onlyLine(t, lp.logPath); l["status"] != 200.0 || l["bytes"] != 5.0 || l["upstream_host"] != upAddr || l["error"] != "upstream_timeout" {
		t.Fatalf("line %v", l)
	}
}

// firstThenStall starts an upstream that answers "first", flushed, and
// then holds the response open until its request ends; it returns its
// address.
func firstThenStall(t *testing.T) string {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("first"))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(up.Close)
	return up.Listener.Addr().String()
}
