package proxy

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// The fields an "Upgrade: h2c" request names in its Connection header
// are hop-by-hop (RFC 9110 §7.6.1) as in any HTTP/1.1 request: the
// request served as stream 1 after the switch must not carry them
// upstream. The switch removed the Connection header, and with it the
// names, so the proxy forwarded the fields it names.
func TestH2CUpgradeRequestDropsTheFieldsItsConnectionNames(t *testing.T) {
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "x-hop=%q x-kept=%q", r.Header.Get("X-Hop"), r.Header.Get("X-Kept"))
	})
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up))}))

	c, err := net.DialTimeout("tcp", h.out, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings, X-Hop\r\n"+
		"Upgrade: h2c\r\nHTTP2-Settings: \r\nX-Hop: private\r\nX-Kept: kept\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade answered %s", resp.Status)
	}
	status, body := readH2Stream1(t, c, br)
	if want := `x-hop="" x-kept="kept"`; status != "200" || body != want {
		t.Fatalf("status %s, upstream saw %s, want %s", status, body, want)
	}
}
