package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// outrigger wait exits 0 once the sidecar's /ready answers 200: at once
// for a sidecar that serves, and after the 503s of one still starting.
func TestWaitReturnsOnceTheSidecarIsReady(t *testing.T) {
	p := start(t, "run", "-c", writeConfig(t, sidecarConfig(newUpstream(t, "a").addr(), "", "")))
	code, out, errOut := runCmd(t, "wait", "--admin", p.addrs.Admin, "--timeout", "10s")
	if code != exitOK || strings.TrimSpace(out) != "ready" {
		t.Fatalf("wait on a serving sidecar: exit %d, %q, %q", code, out, errOut)
	}

	var asked atomic.Int32
	starting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ready" {
			http.NotFound(w, r)
			return
		}
		if asked.Add(1) < 3 {
			http.Error(w, "not ready: no configuration loaded", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	}))
	t.Cleanup(starting.Close)
	code, out, errOut = runCmd(t, "wait", "--admin", starting.Listener.Addr().String(), "--timeout", "10s")
	if code != exitOK || asked.Load() != 3 {
		t.Fatalf("wait on a starting sidecar: exit %d after %d asks, %q, %q", code, asked.Load(), out, errOut)
	}
}

// outrigger wait gives up after --timeout with exit 1 and says what it
// last got; a bad --timeout is a command-line mistake. The timeout is 2s:
// what wait says it got is its first attempt's answer, which a loaded
// machine may take more than a few hundred milliseconds to give a process
// just started ("last: no answer" then).
func TestWaitGivesUpAfterItsTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there
	code, _, errOut := runCmd(t, "wait", "--admin", addr, "--timeout", "2s")
	if code != exitFailure || !strings.Contains(errOut, "was not ready within 2s") || !strings.Contains(errOut, "connection refused") {
		t.Fatalf("exit %d, %q", code, errOut)
	}

	draining := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "not ready: draining", http.StatusServiceUnavailable)
	}))
	t.Cleanup(draining.Close)
	code, _, errOut = runCmd(t, "wait", "--admin", draining.Listener.Addr().String(), "--timeout", "2s")
	if code != exitFailure || !strings.Contains(errOut, "503 not ready: draining") {
		t.Fatalf("exit %d, %q", code, errOut)
	}
	if code, _, _ := runCmd(t, "wait", "--timeout", "0s"); code != exitUsage {
		t.Fatalf("--timeout 0s: exit %d, want %d", code, exitUsage)
	}
	for _, bad := range []string{"bad host:%%", "127.0.0.1", "http://127.0.0.1:15000"} {
		if code, _, errOut := runCmd(t, "wait", "--admin", bad, "--timeout", "1s"); code != exitUsage || !strings.Contains(errOut, "--admin") {
			t.Fatalf("--admin %q: exit %d, %q; want %d naming --admin", bad, code, errOut, exitUsage)
		}
	}
}
