package main

import (
	"strings"
	"testing"
)

// A route named inbound|default replaces the implicit catch-all of the
// inbound listener, whatever listener it is on. One left on the outbound
// listener (listener: inbound forgotten) removed the catch-all, and every
// inbound request no route matched was answered 404 no_route instead of
// going to the local app: validate said ok and run served so. It is
// refused, naming the key to set.
func TestValidateRefusesAnInboundDefaultRouteOnTheOutboundListener(t *testing.T) {
	const cfg = `listeners:
  inbound:
    app: 127.0.0.1:8080
clusters:
  c:
    endpoints: [127.0.0.1:9]
routes:
  - name: inbound|default
    cluster: c
`
	path := writeConfig(t, cfg)
	code, out, stderr := runCmd(t, "validate", "-c", path)
	want := path + `:8: routes[0].listener: the route named "inbound|default" replaces the inbound listener's catch-all to the local app: set listener: inbound, or give the route another name` + "\n"
	if code != 1 || out != "" || stderr != want {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s\nwant:\n%s", code, out, stderr, want)
	}

	// On the inbound listener it is the documented way to change the
	// catch-all.
	path = writeConfig(t, strings.Replace(cfg, "    cluster: c\n", "    listener: inbound\n    cluster: c\n", 1))
	if code, out, stderr := runCmd(t, "validate", "-c", path); code != 0 || out != "ok\n" {
		t.Fatalf("listener: inbound: exit %d, stdout %q, stderr:\n%s", code, out, stderr)
	}
}
