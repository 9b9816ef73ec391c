package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// A client that stops reading a response must not hold the request past
// the route timeout, which bounds "the whole request ... until the
// response body ends" (docs/proxy.md Timeouts): the proxy's write to
// it blocks once the socket's buffers are full, and nothing ended that
// write, so the request kept its slot, its breaker permit and its
// upstream connection (with the upstream's handler) for as long as the
// client kept the connection open.
func TestRouteTimeoutEndsAResponseTheClientStopsReading(t *testing.T) {
	for _, proto := range []config.Protocol{config.ProtocolHTTP1, config.ProtocolHTTP2} {
		t.Run(string(proto), func(t *testing.T) {
			var ended atomic.Bool
			up := upstream(t, proto == config.ProtocolHTTP2, func(w http.ResponseWriter, r *http.Request) {
				defer ended.Store(true)
				w.Header().Set("Content-Type", "application/octet-stream")
				chunk := make([]byte, 64<<10)
				rc := http.NewResponseController(w)
				for i := 0; i < 4096; i++ { // 256 MiB at most
					if _, err := w.Write(chunk); err != nil {
						return
					}
					if rc.Flush() != nil {
						return
					}
				}
			})
			const timeout = 300 * time.Millisecond
			h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up)), Protocol: proto},
				func(r *config.Route) { r.Timeout = timeout }))
			c, err := net.DialTimeout("tcp", h.out, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetReadBuffer(16 << 10)
			}
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReaderSize(c, 4096), &http.Request{Method: "GET"})
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 200 {
				t.Fatalf("%d", resp.StatusCode)
			}
			// The client reads nothing more and keeps the connection.
			eventually(t, 10*time.Second, "the request to end after the route timeout", func() bool {
				return testutil.ToFloat64(h.p.m.active.WithLabelValues("svc")) == 0
			})
			eventually(t, 5*time.Second, "the upstream to see its response end", ended.Load)
		})
	}
}
