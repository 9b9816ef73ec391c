package proxy

import (
	"net/http"
	"sync"
	"testing"

	"github.com/outrigger-mesh/outrigger/composer"
	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// headerUpstream answers {} and keeps the headers of each request it got.
type headerUpstream struct {
	mu   sync.Mutex
	seen []http.Header
}

func (u *headerUpstream) start(t *testing.T) string {
	return addr(upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.seen = append(u.seen, r.Header.Clone())
		u.mu.Unlock()
		_, _ = w.Write([]byte(`{}`))
	}))
}

func (u *headerUpstream) headers() []http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]http.Header(nil), u.seen...)
}

// A field the client's Connection names is hop-by-hop (RFC 9110 §7.6.1):
// it is for the proxy, and reaches no call, neither forwarded nor through
// a {header.*} reference.
func TestCompositeCallsGetNoConnectionNamedField(t *testing.T) {
	var up headerUpstream
	cfg := &config.Config{
		Clusters: map[string]config.Cluster{"a": {Endpoints: eps(up.start(t))}},
		Routes: []config.Route{{
			Name:  "c",
			Match: config.RouteMatch{Path: config.PathMatch{Exact: "/c"}},
			Composition: &composer.Spec{
				ForwardHeaders: []string{"X-Tenant", "X-User"},
				Calls: []composer.Call{{Name: "a", Cluster: "a", Path: "/a",
					Headers: map[string]string{"X-Ref": "t={header.X-Tenant}", "X-Ref-User": "{header.X-User}"}}},
			},
		}},
	}
	h := startProxy(t, cfg)
	resp := mustGet(t, h.h1, h.url("/c"), "Connection", "keep-alive, X-Tenant", "X-Tenant", "hop", "X-User", "ada")
	if body := readAll(t, resp); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d body %s", resp.StatusCode, body)
	}
	seen := up.headers()
	if len(seen) != 1 {
		t.Fatalf("%d calls", len(seen))
	}
	got := seen[0]
	if v, ok := got["X-Tenant"]; ok {
		t.Fatalf("the hop-by-hop X-Tenant was forwarded: %q", v)
	}
	if v := got.Get("X-Ref"); v != "t=" {
		t.Fatalf("a reference read the hop-by-hop X-Tenant: X-Ref %q", v)
	}
	if got.Get("X-User") != "ada" || got.Get("X-Ref-User") != "ada" {
		t.Fatalf("an end-to-end field was lost: %v", got)
	}
}
