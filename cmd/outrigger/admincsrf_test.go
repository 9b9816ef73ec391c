package main

import (
	"net/http"
	"strings"
	"testing"
)

// A web page open in a browser on the sidecar's host can send a POST to
// 127.0.0.1:15000: it comes from a loopback address, which the admin's
// write routes took for the operator. A request the browser marks as
// another site's (Sec-Fetch-Site, or an Origin that is not the admin's)
// is refused 403 and changes nothing; curl's, without those headers, is
// served as before.
func TestAdminRefusesWritesAnotherSitesPageSends(t *testing.T) {
	up := newUpstream(t, "a")
	p := start(t, "run", "-c", writeConfig(t, sidecarConfig(up.addr(), "", "")))
	c := newClient(t)
	admin := "http://" + p.addrs.Admin
	post := func(path string, header ...string) int {
		t.Helper()
		req, err := http.NewRequest("POST", admin+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	browsers := [][]string{
		{"Sec-Fetch-Site", "cross-site", "Origin", "http://evil.example"},
		{"Sec-Fetch-Site", "same-site", "Origin", "http://localhost:8080"},
		{"Origin", "http://evil.example"}, // an older browser: no Sec-Fetch-Site
	}
	for _, h := range browsers {
		if code := post("/clusters/svc/breaker?state=open", h...); code != http.StatusForbidden {
			t.Errorf("breaker override with %v: %d, want 403", h, code)
		}
		if code := post("/logging?level=debug", h...); code != http.StatusForbidden {
			t.Errorf("log level with %v: %d, want 403", h, code)
		}
	}
	if code, body, hdr := get(t, c, "http://"+p.addrs.Outbound+"/x", "svc"); code != 200 {
		t.Fatalf("the breaker was forced by another site's page: %d %q %v", code, body, hdr)
	}
	if _, body, _ := get(t, c, admin+"/logging", ""); !strings.Contains(body, `"info"`) {
		t.Fatalf("the log level was set by another site's page: %s", body)
	}
	// The operator's curl, and a page of the admin endpoint's own origin.
	if code := post("/logging?level=debug"); code != 200 {
		t.Fatalf("log level without browser headers: %d, want 200", code)
	}
	if code := post("/clusters/svc/breaker?state=open", "Sec-Fetch-Site", "same-origin", "Origin", admin); code != 200 {
		t.Fatalf("breaker override from the admin's own origin: %d, want 200", code)
	}
}
