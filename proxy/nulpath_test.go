package proxy

import (
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// A path whose decoded form has a NUL (%00) is refused 400
// invalid_request before routing, over HTTP/1.1 and h2c, the upstream
// never asked; an escaped percent (%2500, a literal "%00") is not a NUL.
func TestPathWithNULIsRefused(t *testing.T) {
	var calls atomic.Int64
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) { calls.Add(1) })
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up))}))
	for _, c := range []struct {
		client *http.Client
		path   string
		want   int
	}{
		{h.h1, "/admin%00.png", 400},
		{h.h2c, "/admin%00.png", 400},
		{h.h1, "/a/%00/b", 400},
		{h.h1, "/admin%2500.png", 200},
	} {
		before := calls.Load()
		req, _ := http.NewRequest("GET", "http://"+h.out+c.path, nil)
		resp, err := c.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		if resp.StatusCode != c.want {
			t.Fatalf("%s: %d, want %d", c.path, resp.StatusCode, c.want)
		}
		if c.want == 400 && (resp.Header.Get("X-Outrigger-Error") != "invalid_request" || calls.Load() != before) {
			t.Fatalf("%s: %q, %d upstream calls, want invalid_request and none", c.path, resp.Header.Get("X-Outrigger-Error"), calls.Load()-before)
		}
	}
}
