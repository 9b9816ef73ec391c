package proxy

import (
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
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

// pool.max_connection_duration closes a connection that ages while idle,
// with no request to find it past its time: it is not left open until
// pool.idle_timeout.
func TestPoolMaxConnectionDurationClosesAnIdleConnection(t *testing.T) {
	for _, proto := range []config.Protocol{config.ProtocolHTTP1, config.ProtocolHTTP2} {
		t.Run(string(proto), func(t *testing.T) {
			var closed atomic.Int64
			s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Write([]byte("ok"))
			}))
			if proto == config.ProtocolHTTP2 {
				s.Config.Protocols = new(http.Protocols)
				s.Config.Protocols.SetHTTP1(true)
				s.Config.Protocols.SetUnencryptedHTTP2(true)
			}
			s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
				if st == http.StateClosed {
					closed.Add(1)
				}
			}
			s.Start()
			t.Cleanup(s.Close)
			cl := config.Cluster{Endpoints: eps(addr(s)), Protocol: proto,
				Pool: config.Pool{MaxConnectionDuration: 100 * time.Millisecond, IdleTimeout: time.Hour}}
			h := startProxy(t, simpleConfig(cl))
			if got := readAll(t, mustGet(t, h.h1, h.url("/"))); got != "ok" {
				t.Fatalf("answer %q", got)
			}
			eventually(t, 5*time.Second, "the upstream connection closed past max_connection_duration", func() bool {
				return closed.Load() == 1
			})
		})
	}
}
