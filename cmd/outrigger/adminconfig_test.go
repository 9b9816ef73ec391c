package main

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
)

// /config shows the configuration's values as written, health check
// request headers included (a token the health endpoint asks for): it
// answers loopback clients only, as the profiles do, even with the admin
// listener bound to every address (as in Kubernetes, for the kubelet's
// probes). It answered anyone who could reach the address.
func TestConfigAnswersLoopbackClientsOnly(t *testing.T) {
	ip := nonLoopbackIPv4(t)
	up := newUpstream(t, "a")
	cfg := strings.Replace(sidecarConfig(up.addr(), "", ""), "admin:\n  address: 127.0.0.1:0\n", "admin:\n  address: 0.0.0.0:0\n", 1)
	cfg = strings.Replace(cfg, "    endpoints: ["+up.addr()+"]\n", "    endpoints: ["+up.addr()+"]\n"+
		"    health_check:\n      http:\n        path: /healthz\n        request_headers: {authorization: Bearer s3cret-health-token}\n", 1)
	p := start(t, "run", "-c", writeConfig(t, cfg))
	c := newClient(t)
	_, port, err := net.SplitHostPort(p.addrs.Admin)
	if err != nil {
		t.Fatal(err)
	}
	remote := "http://" + net.JoinHostPort(ip, port)
	if code, body, _ := get(t, c, "http://127.0.0.1:"+port+"/config", ""); code != 200 || !strings.Contains(body, "s3cret-health-token") {
		t.Fatalf("/config from loopback: %d, want 200 with the configuration:\n%s", code, body)
	}
	code, body, _ := get(t, c, remote+"/config", "")
	if code != http.StatusForbidden || strings.Contains(body, "s3cret") {
		t.Fatalf("/config from %s: %d, want 403:\n%s", ip, code, body)
	}
	// What the network's clients need still answers them.
	for _, path := range []string{"/ready", "/live", "/metrics", "/clusters"} {
		if code, body, _ := get(t, c, remote+path, ""); code != 200 {
			t.Errorf("%s from %s: %d %s", path, ip, code, body)
		}
	}
}

// nonLoopbackIPv4 is an IPv4 address of this host's that is not a
// loopback one, for a client that the admin endpoint must not take for
// the operator; the test is skipped without one.
func nonLoopbackIPv4(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Skip("no interface addresses:", err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP.String()
		}
	}
	t.Skip(fmt.Sprintf("no non-loopback IPv4 address among %v", addrs))
	return ""
}
