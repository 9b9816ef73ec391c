package main

import (
	"net"
	"strings"
	"testing"
)

// A listener that cannot bind at start is named by the key that sets its
// address, as validation names keys: admin.address for the admin
// listener, listeners.<name>.address for the others.
func TestStartNamesTheAddressKeyOfAListenerThatCannotBind(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	busy := held.Addr().String()
	base := sidecarConfig("127.0.0.1:1", "127.0.0.1:2", "")
	for _, tc := range []struct{ from, to, key string }{
		{"admin:\n  address: 127.0.0.1:0", "admin:\n  address: " + busy, "admin.address"},
		{"  outbound:\n    address: 127.0.0.1:0", "  outbound:\n    address: " + busy, "listeners.outbound.address"},
		{"  inbound:\n    address: 127.0.0.1:0", "  inbound:\n    address: " + busy, "listeners.inbound.address"},
	} {
		cfg := writeConfig(t, strings.Replace(base, tc.from, tc.to, 1))
		code, _, stderr := runCmd(t, "run", "-c", cfg)
		if code == 0 || !strings.Contains(stderr, tc.key+": listen tcp "+busy) {
			t.Errorf("%s busy: exit %d, stderr:\n%s\nwant it to name %s", tc.key, code, stderr, tc.key)
		}
	}
}
