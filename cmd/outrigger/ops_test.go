package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
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

// validate lists every problem: one the proxy finds building the clusters
// and one of the access log, together. It stopped at the proxy's.
func TestValidateListsTheProxysAndTheAccessLogsProblemsTogether(t *testing.T) {
	path := writeConfig(t, "clusters:\n  a:\n    endpoints: [127.0.0.1:9]\n    tls:\n      enabled: true\n      ca_file: /nonexistent/ca.pem\n"+
		"logging:\n  access_log: {enabled: true, path: /nonexistent/dir/access.log}\n")
	code, out, stderr := runCmd(t, "validate", "-c", path)
	if code != 1 || out != "" ||
		!strings.Contains(stderr, path+":2: clusters.a") ||
		!strings.Contains(stderr, path+":8: logging.access_log.path: cannot open the access log: ") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, stderr)
	}
}

// run refuses the same configuration with the same list, before binding
// anything. It stopped at the access log, without the file and line.
func TestRunListsTheProxysAndTheAccessLogsProblemsTogether(t *testing.T) {
	cfg := strings.Replace(sidecarConfig("127.0.0.1:9", "127.0.0.1:9", ""), "    endpoints: [127.0.0.1:9]\n",
		"    endpoints: [127.0.0.1:9]\n    tls:\n      enabled: true\n      ca_file: /nonexistent/ca.pem\n", 1) +
		"logging:\n  access_log: {enabled: true, path: /nonexistent/dir/access.log}\n"
	path := writeConfig(t, cfg)
	code, _, stderr := runCmd(t, "run", "-c", path)
	if code != 1 ||
		!strings.Contains(stderr, path+":13: clusters.svc") ||
		!strings.Contains(stderr, ": logging.access_log.path: cannot open the access log: ") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}

// /config's effective configuration is the one serving: a reload that
// changes a setting bound at start (admin.address) applies the rest, and
// --log-level overrides logging.level. /config showed the file's values,
// which did not serve.
func TestConfigShowsTheSettingsThatServe(t *testing.T) {
	up := newUpstream(t, "a")
	base := sidecarConfig(up.addr(), up.addr(), "")
	path := writeConfig(t, base)
	p := start(t, "run", "-c", path, "--log-level", "debug")
	c := newClient(t)
	moved := strings.Replace(base, "admin:\n  address: 127.0.0.1:0\n", "admin:\n  address: "+freeAddr(t)+"\n", 1)
	writeAtomic(t, path, moved)
	waitFor(t, 10*time.Second, "the reload", func() bool { return getConfig(t, c, p.addrs.Admin).Generation == 2 })

	var eff struct {
		Admin   struct{ Address string }
		Logging struct{ Level string }
	}
	if err := json.Unmarshal(getConfig(t, c, p.addrs.Admin).Effective, &eff); err != nil {
		t.Fatal(err)
	}
	if eff.Admin.Address != "127.0.0.1:0" || eff.Logging.Level != "debug" {
		t.Fatalf("effective admin.address %q, logging.level %q; want the serving 127.0.0.1:0 and debug", eff.Admin.Address, eff.Logging.Level)
	}
}

// An address file that cannot be written is refused before anything
// starts: whoever passed --addr-file would wait for it in vain while the
// sidecar served.
func TestRunRefusesAnAddressFileItCannotWrite(t *testing.T) {
	up := newUpstream(t, "a")
	path := writeConfig(t, sidecarConfig(up.addr(), up.addr(), ""))
	bad := filepath.Join(t.TempDir(), "missing", "addrs.json")
	code, _, stderr := runCmd(t, "run", "-c", path, "--addr-file", bad)
	if code != 1 || !strings.Contains(stderr, "--addr-file "+bad) {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
}

// validate lists every problem the proxy finds building the listeners
// and clusters, each with its line: it stopped at the first.
func TestValidateListsEveryProblemOfTheProxysBuild(t *testing.T) {
	path := writeConfig(t, "listeners:\n  inbound:\n    tls:\n      enabled: true\n      cert_file: /nonexistent/cert.pem\n      key_file: /nonexistent/key.pem\n"+
		"clusters:\n  a:\n    endpoints: [127.0.0.1:9]\n    tls:\n      enabled: true\n      ca_file: /nonexistent/a.pem\n"+
		"  b:\n    endpoints: [127.0.0.1:9]\n    tls:\n      enabled: true\n      ca_file: /nonexistent/b.pem\n")
	code, out, stderr := runCmd(t, "validate", "-c", path)
	if code != 1 || out != "" ||
		!strings.Contains(stderr, path+":3: listeners.inbound.tls: ") ||
		!strings.Contains(stderr, path+":8: clusters.a: ") || !strings.Contains(stderr, "/nonexistent/a.pem") ||
		!strings.Contains(stderr, path+":13: clusters.b: ") || !strings.Contains(stderr, "/nonexistent/b.pem") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, stderr)
	}
}
