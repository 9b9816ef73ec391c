package main

import (
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A second SIGINT during the drain (a second Ctrl-C in make run) ends the
// demo at once, but not before it has removed its temporary directory (the
// live configuration and the event log's files) and the address file, as
// a finished stop does.
func TestDemoSecondSignalLeavesNoFilesBehind(t *testing.T) {
	p := start(t, "demo", "--ephemeral-ports", "--log-format", "json")
	// The banner is printed after the address file is written.
	waitFor(t, 10*time.Second, "the banner", func() bool { return strings.Contains(p.stderr.String(), "Ctrl-C drains and stops.") })
	m := regexp.MustCompile(`(/[^\s"]*outrigger-demo-[^/\s"]+)/outrigger\.yaml`).FindStringSubmatch(p.stderr.String())
	if m == nil {
		t.Fatalf("the banner names no configuration file:\n%s", p.stderr.String())
	}
	dir := m[1]
	if _, err := os.Stat(filepath.Join(dir, "outrigger.yaml")); err != nil {
		t.Fatal(err)
	}
	// A request in flight keeps the drain going.
	go func() {
		req, _ := http.NewRequest("GET", "http://"+p.addrs.Outbound+"/slow?d=10s", nil)
		req.Host = "catalog"
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	waitFor(t, 10*time.Second, "the slow request in flight", func() bool {
		return strings.Contains(getBody(t, "http://"+p.addrs.Admin+"/clusters"), `"active_requests": 1`)
	})
	p.signal(syscall.SIGINT)
	waitFor(t, 10*time.Second, "the drain", func() bool {
		return strings.Contains(p.stderr.String(), "shutting down: draining")
	})
	p.signal(syscall.SIGINT)
	p.wait(5 * time.Second)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the demo's directory %s is left behind (%v)", dir, err)
		os.RemoveAll(dir)
	}
	if _, err := os.Stat(p.addrFile); !os.IsNotExist(err) {
		t.Errorf("the address file is left behind (%v)", err)
	}
}

func getBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String()
		}
	}
}
