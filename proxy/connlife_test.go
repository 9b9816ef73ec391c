package proxy

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// clientAddrs is an upstream that records the address each request came
// from: one per upstream connection.
type clientAddrs struct {
	mu   sync.Mutex
	seen map[string]int
}

func (c *clientAddrs) handler(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	if c.seen == nil {
		c.seen = map[string]int{}
	}
	c.seen[r.RemoteAddr]++
	c.mu.Unlock()
	w.Write([]byte("ok"))
}

func (c *clientAddrs) conns() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

// pool.max_requests_per_connection bounds the requests each upstream
// connection carries, HTTP/1.1 exchanges and HTTP/2 streams alike.
func TestPoolMaxRequestsPerConnection(t *testing.T) {
	for _, proto := range []config.Protocol{config.ProtocolHTTP1, config.ProtocolHTTP2} {
		t.Run(string(proto), func(t *testing.T) {
			var up clientAddrs
			s := upstream(t, proto == config.ProtocolHTTP2, up.handler)
			cl := config.Cluster{Endpoints: eps(addr(s)), Protocol: proto,
				Pool: config.Pool{MaxRequestsPerConnection: 3}}
			h := startProxy(t, simpleConfig(cl))
			for range 7 {
				if resp := mustGet(t, h.h1, h.url("/")); readAll(t, resp) != "ok" {
					t.Fatalf("status %d", resp.StatusCode)
				}
			}
			if n := up.conns(); n != 3 {
				t.Fatalf("7 requests over %d upstream connections, want 3", n)
			}
		})
	}
}

// pool.max_connection_duration: a connection older than it takes no new
// request, so requests move to new connections while it lasts.
func TestPoolMaxConnectionDuration(t *testing.T) {
	for _, proto := range []config.Protocol{config.ProtocolHTTP1, config.ProtocolHTTP2} {
		t.Run(string(proto), func(t *testing.T) {
			var up clientAddrs
			s := upstream(t, proto == config.ProtocolHTTP2, up.handler)
			cl := config.Cluster{Endpoints: eps(addr(s)), Protocol: proto,
				Pool: config.Pool{MaxConnectionDuration: 20 * time.Millisecond}}
			h := startProxy(t, simpleConfig(cl))
			eventually(t, 10*time.Second, "requests on a third connection", func() bool {
				readAll(t, mustGet(t, h.h1, h.url("/")))
				return up.conns() >= 3
			})
		})
	}
}
