package proxy

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// BenchmarkForward measures one small request end to end over real
// loopback sockets: client -> proxy -> upstream, beside client -> upstream.
// The proxied sub-benchmarks also time the same number of direct requests
// (outside the measured time) and report "direct-ns/op" and the ratio
// "x-direct", so one run shows the proxy's cost. allocs/op counts the whole
// process: client, proxy and upstream.
func BenchmarkForward(b *testing.B) {
	body := []byte("hello, outrigger")
	up := upstream(b, true, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(body)
	})
	// Downstream protocol -> cluster protocol. "h2c-http1" is the peer
	// benchmark's h2c phase: an h2c client in front of an HTTP/1.1 pool.
	for _, tc := range []struct {
		name  string
		proto config.Protocol
		h2c   bool
	}{
		{"http1", config.ProtocolHTTP1, false},
		{"h2c", config.ProtocolHTTP2, true},
		{"h2c-http1", config.ProtocolHTTP1, true},
	} {
		h := startProxy(b, simpleConfig(config.Cluster{Endpoints: eps(addr(up)), Protocol: tc.proto}))
		client, name := h.h1, tc.name
		if tc.h2c {
			client = h.h2c
		}
		get := func(b *testing.B, url string) {
			resp, err := client.Get(url)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
		direct := up.URL + "/bench"
		proxied := h.url("/bench")
		b.Run(name+"/direct", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				get(b, direct)
			}
		})
		b.Run(name+"/proxy", func(b *testing.B) {
			b.ReportAllocs()
			get(b, proxied) // warm the pools
			get(b, direct)
			n := 0
			for b.Loop() {
				get(b, proxied)
				n++
			}
			b.StopTimer()
			start := time.Now()
			for i := 0; i < n; i++ {
				get(b, direct)
			}
			d := time.Since(start)
			directNs := float64(d.Nanoseconds()) / float64(n)
			proxyNs := float64(b.Elapsed().Nanoseconds()) / float64(n)
			b.ReportMetric(directNs, "direct-ns/op")
			b.ReportMetric(proxyNs/directNs, "x-direct")
		})
	}
}

var idSink atomic.Value

// BenchmarkRequestID compares the generator with crypto/rand + hex, both
// producing the string that goes into the header.
func BenchmarkRequestID(b *testing.B) {
	b.Run("math-rand-v2", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			var id string
			for pb.Next() {
				id = newRequestID()
			}
			idSink.Store(id)
		})
	})
	b.Run("crypto-rand", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			var buf [16]byte
			var id string
			for pb.Next() {
				_, _ = rand.Read(buf[:])
				id = hex.EncodeToString(buf[:])
			}
			idSink.Store(id)
		})
	})
}

// BenchmarkRouteMatch finds the last of 20 routes (the worst case of a
// first-match table) and a middle one with header conditions.
func BenchmarkRouteMatch(b *testing.B) {
	var routes []config.Route
	for i := 0; i < 19; i++ {
		routes = append(routes, config.Route{
			Name:           fmt.Sprintf("r%d", i),
			Match:          config.RouteMatch{Authority: []string{fmt.Sprintf("svc%d.internal", i)}, Path: config.PathMatch{Prefix: fmt.Sprintf("/api/v%d/", i)}, Headers: []config.HeaderMatch{{Name: "x-tenant", Prefix: "t-"}}},
			DirectResponse: &config.DirectResponse{Status: 200},
		})
	}
	routes = append(routes, config.Route{Name: "last", Match: config.RouteMatch{Authority: []string{"*.example.com"}, Path: config.PathMatch{Regex: "/users/[0-9]+"}}, DirectResponse: &config.DirectResponse{Status: 200}})
	p := New(Options{})
	if err := p.Apply(&config.Config{Routes: routes}); err != nil {
		b.Fatal(err)
	}
	table := p.snap.Load().tables[Outbound]
	last := httptest.NewRequest("GET", "http://api.example.com:8080/users/12345", nil)
	mid := httptest.NewRequest("GET", "http://svc9.internal/api/v9/items", nil)
	mid.Header.Set("X-Tenant", "t-acme")
	for _, c := range []struct {
		name string
		r    *http.Request
		want string
	}{{"last-of-20-regex", last, "last"}, {"middle-with-header", mid, "r9"}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if rt := table.find(c.r); rt == nil || rt.name != c.want {
					b.Fatal("wrong route")
				}
			}
		})
	}
}

func BenchmarkCopyRequestHeader(b *testing.B) {
	in := http.Header{
		"Accept":          {"*/*"},
		"User-Agent":      {"bench"},
		"Connection":      {"keep-alive"},
		"Content-Type":    {"application/json"},
		"Traceparent":     {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		"X-Forwarded-For": {"10.0.0.1"},
	}
	b.ReportAllocs()
	for b.Loop() {
		h, _ := copyRequestHeader(in, addedRequestHeaders[:])
		appendForwardedFor(h, h[hdrForwardedFor], "127.0.0.1:5555", make([]string, 1))
	}
}

// BenchmarkOutboundHeader builds the upstream header block of a request
// as an HTTP/2 load generator sends it and of an HTTP/1.1 client's
// request with hop-by-hop headers, an id and a forwarded-for list.
func BenchmarkOutboundHeader(b *testing.B) {
	for _, c := range []struct {
		name string
		h    http.Header
	}{
		{"h2load", http.Header{"Accept": {"*/*"}, "Accept-Encoding": {"gzip, deflate"}, "User-Agent": {"h2load nghttp2/1.59.0"}}},
		{"h1", http.Header{
			"Accept": {"application/json"}, "Connection": {"keep-alive"}, "Keep-Alive": {"timeout=5"},
			"User-Agent": {"bench/1.0"}, "X-Request-Id": {"5b2d0d8e-8b5f-4c52-9a36-2f1d3f5b8a11"},
			"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}, "X-Forwarded-For": {"10.0.0.1"},
		}},
	} {
		r, err := http.NewRequest(http.MethodGet, "http://svc.internal/bench", nil)
		if err != nil {
			b.Fatal(err)
		}
		r.Header, r.RemoteAddr = c.h, "127.0.0.1:50000"
		f := &forwarding{r: r, rt: &route{}}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if h := f.outboundHeader(); len(h) < 4 {
					b.Fatal("short header")
				}
			}
		})
	}
}

// BenchmarkApplyUnderscores checks the header of a request without
// underscores in its field names under headers_with_underscores: drop
// and reject (allow skips the check); "get" has no body, "chunked" a body
// that may end with trailers, whose check is one wrapper of the body.
func BenchmarkApplyUnderscores(b *testing.B) {
	h := http.Header{
		"Accept": {"application/json"}, "Connection": {"keep-alive"}, "Keep-Alive": {"timeout=5"},
		"User-Agent": {"bench/1.0"}, "X-Request-Id": {"5b2d0d8e-8b5f-4c52-9a36-2f1d3f5b8a11"},
		"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}, "X-Forwarded-For": {"10.0.0.1"},
	}
	dropped := prometheus.NewCounter(prometheus.CounterOpts{Name: "dropped"})
	for _, a := range []underscoreAction{underscoresDrop, underscoresReject} {
		name := "drop"
		if a == underscoresReject {
			name = "reject"
		}
		for _, chunked := range []bool{false, true} {
			r, err := http.NewRequest(http.MethodGet, "http://svc.internal/bench", nil)
			if err != nil {
				b.Fatal(err)
			}
			r.Header, r.Body = h, http.NoBody
			sub := name + "/get"
			if chunked {
				r.Method, r.ContentLength, r.Body = http.MethodPost, -1, io.NopCloser(strings.NewReader("x"))
				sub = name + "/chunked"
			}
			body := r.Body
			b.Run(sub, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					r.Body = body
					if n, _ := applyUnderscores(a, r, dropped); n != "" {
						b.Fatal("rejected")
					}
				}
			})
		}
	}
}
