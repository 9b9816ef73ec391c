package proxy

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// pathConfig denies /admin with a direct 403 and sends the rest to up,
// which echoes the request target it got.
func pathConfig(t *testing.T, norm config.PathNormalization) (*config.Config, *harness) {
	t.Helper()
	up := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.RequestURI)
	})
	cfg := &config.Config{
		Listeners: config.Listeners{PathNormalization: norm},
		Clusters:  map[string]config.Cluster{"svc": {Endpoints: eps(addr(up))}},
		Routes: []config.Route{
			{Name: "deny-admin", Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/admin"}},
				DirectResponse: &config.DirectResponse{Status: 403, Body: "denied"}},
			{Name: "rest", Cluster: "svc"},
		},
	}
	return cfg, startProxy(t, cfg)
}

func TestPathNormalizedBeforeRouting(t *testing.T) {
	_, h := pathConfig(t, "")
	for _, target := range []string{
		"/admin/users",
		"/public/../admin/users",
		"/public/./../admin",
		"/%61dmin/users",
		"/public/%2e%2e/admin",
		"/public/%2E./admin",
		"/../../admin",
	} {
		resp := sendRaw(t, h.out, "GET "+target+" HTTP/1.1\r\nHost: svc\r\n\r\n")
		if body := readAll(t, resp); resp.StatusCode != 403 || body != "denied" {
			t.Errorf("GET %s: %d %q, want the /admin route's 403", target, resp.StatusCode, body)
		}
	}
	// What the upstream is sent is the normalized path.
	for target, want := range map[string]string{
		"/a/./b/../c?x=/../y": "/a/c?x=/../y",
		"/%7euser/%2e/x":      "/~user/x",
		"/a%2fb/%2e%2e/c":     "/c",
		"/a%2f..%2fb":         "/a%2F..%2Fb", // an escaped slash separates no segments
		"/caf%c3%a9":          "/caf%C3%A9",
		"/x//y":               "/x//y",
		"/plain/path":         "/plain/path",
	} {
		resp := sendRaw(t, h.out, "GET "+target+" HTTP/1.1\r\nHost: svc\r\n\r\n")
		if body := readAll(t, resp); resp.StatusCode != 200 || body != want {
			t.Errorf("GET %s: upstream got %q (status %d), want %q", target, body, resp.StatusCode, want)
		}
	}
	// HTTP/2 requests are normalized too.
	resp, err := h.h2c.Get(h.url("/public/%2e%2e/admin"))
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp); resp.StatusCode != 403 {
		t.Errorf("h2 GET /public/%%2e%%2e/admin: %d %q, want 403", resp.StatusCode, body)
	}
}

func TestPathMergeSlashes(t *testing.T) {
	_, h := pathConfig(t, config.PathNormalizationMergeSlashes)
	resp := sendRaw(t, h.out, "GET //admin HTTP/1.1\r\nHost: svc\r\n\r\n")
	if body := readAll(t, resp); resp.StatusCode != 403 {
		t.Errorf("GET //admin: %d %q, want 403", resp.StatusCode, body)
	}
	resp = sendRaw(t, h.out, "GET /x//y///z/ HTTP/1.1\r\nHost: svc\r\n\r\n")
	if body := readAll(t, resp); body != "/x/y/z/" {
		t.Errorf("upstream got %q, want /x/y/z/", body)
	}
}

func TestPathNormalizationNoneAndReload(t *testing.T) {
	cfg, h := pathConfig(t, config.PathNormalizationNone)
	get := func() (int, string) {
		resp := sendRaw(t, h.out, "GET /public/../admin HTTP/1.1\r\nHost: svc\r\n\r\n")
		return resp.StatusCode, readAll(t, resp)
	}
	if status, body := get(); status != 200 || body != "/public/../admin" {
		t.Fatalf("with none: %d %q, want the path forwarded as sent", status, body)
	}
	cfg.Listeners.PathNormalization = config.PathNormalizationBase
	if err := h.p.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if status, body := get(); status != 403 {
		t.Fatalf("after a reload to base: %d %q, want 403", status, body)
	}
}

// A prefix rewrite applies to the normalized path, and what follows the
// prefix keeps its escapes of reserved characters.
func TestPrefixRewriteOfNormalizedPath(t *testing.T) {
	uris := make(chan string, 8)
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) { uris <- r.RequestURI })
	cfg := &config.Config{
		Clusters: map[string]config.Cluster{"svc": {Endpoints: eps(addr(up))}},
		Routes: []config.Route{
			{Name: "rw", Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/api/"}}, Cluster: "svc", PrefixRewrite: "/v1/"},
			{Name: "plain", Cluster: "svc"},
		},
	}
	h := startProxy(t, cfg)
	for _, tc := range []struct{ target, want string }{
		{"/api/%2e%2e/admin", "/admin"},
		{"/x/../api/a%2fb", "/v1/a%2Fb"},
		{"/%61pi/./a%2Fb?q=1", "/v1/a%2Fb?q=1"},
	} {
		sendRaw(t, h.out, "GET "+tc.target+" HTTP/1.1\r\nHost: svc\r\n\r\n").Body.Close()
		if got := <-uris; got != tc.want {
			t.Errorf("%s reached the upstream as %q, want %q", tc.target, got, tc.want)
		}
	}
}
