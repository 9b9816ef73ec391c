package main

import (
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// POST /logging?level= changes the log level at once, without a reload:
// debug lines appear after it and stop after a reload that applies the
// file's logging.level again; GET /logging says the level; a level the
// sidecar does not take is a 400 and changes nothing.
func TestAdminLoggingSetsTheLevel(t *testing.T) {
	up := newUpstream(t, "a")
	cfgPath := writeConfig(t, sidecarConfig(up.addr(), "", ""))
	p := start(t, "run", "-c", cfgPath)
	c := newClient(t)
	admin := "http://" + p.addrs.Admin

	level := func() string {
		t.Helper()
		code, body, _ := get(t, c, admin+"/logging", "")
		if code != http.StatusOK {
			t.Fatalf("GET /logging: %d %s", code, body)
		}
		return body
	}
	post := func(l string) (int, string) {
		t.Helper()
		resp, err := c.Post(admin+"/logging?level="+l, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		buf := make([]byte, 512)
		n, _ := resp.Body.Read(buf)
		b.Write(buf[:n])
		return resp.StatusCode, b.String()
	}
	if l := level(); !strings.Contains(l, `"info"`) {
		t.Fatalf("level at start: %s", l)
	}
	if code, body := post("loud"); code != http.StatusBadRequest || !strings.Contains(body, "debug, info, warn or error") {
		t.Fatalf("POST level=loud: %d %s", code, body)
	}
	if code, body := post("debug"); code != http.StatusOK || !strings.Contains(body, `"debug"`) {
		t.Fatalf("POST level=debug: %d %s", code, body)
	}
	if l := level(); !strings.Contains(l, `"debug"`) {
		t.Fatalf("level after the POST: %s", l)
	}
	waitFor(t, 10*time.Second, "the operator's change in the log", func() bool {
		return strings.Contains(p.stderr.String(), "log level set by an operator")
	})
	// A reload applies the file's level (info) again.
	writeAtomic(t, cfgPath, sidecarConfig(up.addr(), "", "")+"\n# touched\n")
	p.signal(syscall.SIGHUP)
	waitFor(t, 10*time.Second, "the reload to set the file's level", func() bool {
		return strings.Contains(level(), `"info"`)
	})
}
