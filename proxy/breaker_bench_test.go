package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// BenchmarkBreakerRejected measures a request refused by an open breaker
// (forced open, so the state cannot change during the run): the
// proxy's own work through Handler into an httptest.ResponseRecorder, and
// the whole round trip of a real client over a loopback keep-alive
// connection. Nothing is sent upstream.
func BenchmarkBreakerRejected(b *testing.B) {
	var reached atomic.Int64
	up := upstream(b, false, func(w http.ResponseWriter, r *http.Request) { reached.Add(1) })
	defer func() {
		if n := reached.Load(); n != 0 {
			b.Fatalf("an open breaker let %d requests through", n)
		}
	}()
	h := startProxy(b, parseConfig(b, `
clusters:
  inventory:
    endpoints: ["%s"]
routes:
  - name: inventory
    cluster: inventory
`, addr(up)))
	if err := h.p.SetBreaker(acceptanceCluster, "open"); err != nil {
		b.Fatal(err)
	}
	check := func(b *testing.B, code int, hdr http.Header) {
		if code != http.StatusServiceUnavailable || hdr.Get("X-Outrigger-Breaker") != "open" {
			b.Fatalf("not refused by the breaker: %d %v", code, hdr)
		}
	}

	b.Run("handler-recorder", func(b *testing.B) {
		handler := h.p.Handler(Outbound)
		req := httptest.NewRequest(http.MethodGet, "http://inventory/item", nil)
		b.ReportAllocs()
		var rec *httptest.ResponseRecorder
		for b.Loop() {
			rec = httptest.NewRecorder()
			handler.ServeHTTP(rec, req)
		}
		check(b, rec.Code, rec.Header())
	})
	b.Run("loopback-http1", func(b *testing.B) {
		url := h.url("/item")
		b.ReportAllocs()
		for b.Loop() {
			resp, err := h.h1.Get(url)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			check(b, resp.StatusCode, resp.Header)
		}
	})
}

// BenchmarkBreakerOverhead compares the request path through real
// loopback sockets (client -> proxy -> upstream, HTTP/1.1 keep-alive)
// with a cluster's circuit breaking at its defaults (breaker, limits,
// outlier detection) and with all of it turned as far off as the config
// allows: the breaker disabled, outlier detection disabled and every
// limit at its maximum (limits cannot be switched off; a value of 0 means
// the default). allocs/op counts client, proxy and upstream together.
func BenchmarkBreakerOverhead(b *testing.B) {
	body := []byte("hello, outrigger")
	up := upstream(b, false, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(body)
	})
	for _, c := range []struct{ name, blocks string }{
		{"breaking-on", ""},
		{"breaking-off", `
    circuit_breaker: {disabled: true}
    outlier_detection: {disabled: true}
    limits: {max_connections: 2147483647, max_pending_requests: 2147483647, max_requests: 2147483647, max_retries: 2147483647}`},
	} {
		h := startProxy(b, parseConfig(b, `
clusters:
  inventory:
    endpoints: ["%s"]%s
routes:
  - name: inventory
    cluster: inventory
`, addr(up), c.blocks))
		url := h.url("/item")
		get := func(b *testing.B) {
			resp, err := h.h1.Get(url)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
		b.Run(c.name, func(b *testing.B) {
			get(b) // warm the client's and the proxy's connections
			b.ReportAllocs()
			for b.Loop() {
				get(b)
			}
		})
	}
}
