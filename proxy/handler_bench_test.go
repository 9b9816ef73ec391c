package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outrigger-mesh/outrigger/proxy/config"
	"github.com/outrigger-mesh/outrigger/proxy/h1client"
)

// cannedUpstream is an HTTP/1.1 server that answers every request head
// with the same response and reads no body: the cheapest possible peer,
// so that a benchmark of the proxy's handler measures the proxy (and its
// HTTP/1.1 client), not a server.
type cannedUpstream struct {
	ln    net.Listener
	mu    sync.Mutex
	conns map[net.Conn]struct{} // guarded by mu
	wg    sync.WaitGroup
}

const cannedResponse = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: Fri, 27 Nov 2026 12:00:00 GMT\r\nContent-Length: 16\r\n\r\nhello, outrigger"

func startCannedUpstream(tb testing.TB) *cannedUpstream {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	u := &cannedUpstream{ln: ln, conns: map[net.Conn]struct{}{}}
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.mu.Lock()
			u.conns[c] = struct{}{}
			u.mu.Unlock()
			u.wg.Add(1)
			go u.serve(c)
		}
	}()
	tb.Cleanup(u.close)
	return u
}

func (u *cannedUpstream) serve(c net.Conn) {
	defer u.wg.Done()
	defer c.Close()
	br := bufio.NewReader(c)
	resp := []byte(cannedResponse)
	for {
		// A request head ends with an empty line; the benchmark's
		// requests have no body.
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(bytes.TrimRight(line, "\r\n")) == 0 {
				break
			}
		}
		if _, err := c.Write(resp); err != nil {
			return
		}
	}
}

func (u *cannedUpstream) close() {
	u.ln.Close()
	u.mu.Lock()
	for c := range u.conns {
		c.Close()
	}
	u.mu.Unlock()
	u.wg.Wait()
}

// benchWriter is a ResponseWriter that keeps only the status. Each
// request gets a new header map, as a server's writer does.
type benchWriter struct {
	h      http.Header
	status int
	n      int
}

func (w *benchWriter) Header() http.Header {
	if w.h == nil {
		w.h = make(http.Header)
	}
	return w.h
}
func (w *benchWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}
func (w *benchWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.n += len(p)
	return len(p), nil
}

// stubTransport answers every round trip at once with a response shaped
// like the HTTP/1.1 client's (a fresh header map and body per response),
// so that a benchmark through it counts the proxy's own work only.
type stubTransport struct{}

func (stubTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return stubTransport{}.RoundTripHooks(req.Context(), req, nil, time.Time{})
}

func (stubTransport) RoundTripHooks(_ context.Context, req *http.Request, h h1client.Hooks, _ time.Time) (*http.Response, error) {
	if h != nil {
		h.GotConn()
	}
	return &http.Response{
		Status: "200 OK", StatusCode: 200, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{
			"Content-Type":   {"text/plain"},
			"Date":           {"Fri, 27 Nov 2026 12:00:00 GMT"},
			"Content-Length": {"16"},
		},
		ContentLength: 16,
		Body:          io.NopCloser(strings.NewReader("hello, outrigger")),
		Request:       req,
	}, nil
}

// stubTraceTransport is stubTransport without RoundTripHooks: the proxy
// reaches it through httptrace, as it reaches its HTTP/2 client.
type stubTraceTransport struct{}

func (stubTraceTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if tr := httptrace.ContextClientTrace(req.Context()); tr != nil && tr.GotConn != nil {
		tr.GotConn(httptrace.GotConnInfo{})
	}
	return stubTransport{}.RoundTripHooks(req.Context(), req, nil, time.Time{})
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkServeHTTP measures the proxy's handler alone: a request built
// once (headers as an HTTP/2 load generator sends them) goes through
// ServeHTTP to an HTTP/1.1 upstream that answers with a canned response.
// allocs/op are the proxy's and its HTTP/1.1 client's, without a
// downstream server or client. "inline" runs the handler on the
// benchmark's goroutine, whose stack has grown already; "goroutine" runs
// each request on a new goroutine, as HTTP/2 servers run each stream's
// handler, so that the stack growth a handler causes is counted.
func BenchmarkServeHTTP(b *testing.B) {
	b.Run("h1client", func(b *testing.B) { benchServeHTTP(b, nil) })
	b.Run("stub-transport", func(b *testing.B) { benchServeHTTP(b, stubTransport{}) })
	b.Run("stub-httptrace", func(b *testing.B) { benchServeHTTP(b, stubTraceTransport{}) })
}

// benchServeHTTP runs BenchmarkServeHTTP's cases through the HTTP/1.1
// client to a canned upstream, or through stub when it is not nil. Each
// reports cpu-ns/op, the process's CPU time per request (the canned
// upstream's included), which a loaded machine disturbs less than the
// wall time.
func benchServeHTTP(b *testing.B, stub http.RoundTripper) {
	up := startCannedUpstream(b)
	p := New(Options{Registry: prometheus.NewRegistry()})
	cfg := simpleConfig(config.Cluster{Endpoints: eps(up.ln.Addr().String()), Protocol: config.ProtocolHTTP1})
	if err := p.Apply(cfg); err != nil {
		b.Fatal(err)
	}
	if stub != nil {
		for _, c := range p.snap.Load().clusters {
			c.pool.rt = stub
		}
	}
	h := p.Handler(Outbound)
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.Shutdown(ctx); err != nil {
			b.Errorf("Shutdown: %v", err)
		}
	})

	newReq := func(hdr http.Header) *http.Request {
		r, err := http.NewRequest(http.MethodGet, "http://svc.internal/bench", nil)
		if err != nil {
			b.Fatal(err)
		}
		r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/2.0", 2, 0
		r.RemoteAddr = "127.0.0.1:50000"
		r.Body = http.NoBody
		r.Header = hdr
		return r
	}
	h2load := func() http.Header {
		return http.Header{
			"Accept":          {"*/*"},
			"Accept-Encoding": {"gzip, deflate"},
			"User-Agent":      {"h2load nghttp2/1.59.0"},
		}
	}
	// An HTTP/1.1 client's request, with hop-by-hop headers to strip, a
	// request id and trace context to keep.
	h1 := func() http.Header {
		return http.Header{
			"Accept":          {"application/json"},
			"Connection":      {"keep-alive"},
			"Keep-Alive":      {"timeout=5"},
			"User-Agent":      {"bench/1.0"},
			"X-Request-Id":    {"5b2d0d8e-8b5f-4c52-9a36-2f1d3f5b8a11"},
			"Traceparent":     {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
			"X-Forwarded-For": {"10.0.0.1"},
		}
	}
	// The handler edits a listener's request header in place (see
	// forwarding.ownHeader), as servers hand it a new header per
	// request; so each request here is a shallow copy of r with a copy
	// of its header, two allocations counted in allocs/op.
	fresh := func(r *http.Request) *http.Request {
		c := *r
		c.Header = r.Header.Clone()
		return &c
	}
	serve := func(b *testing.B, r *http.Request) {
		w := &benchWriter{}
		h.ServeHTTP(w, fresh(r))
		if w.status != http.StatusOK || w.n != 16 {
			b.Fatalf("status %d, %d body bytes", w.status, w.n)
		}
	}
	for _, req := range []struct {
		name string
		hdr  func() http.Header
	}{{"h2load-headers", h2load}, {"h1-headers", h1}} {
		r := newReq(req.hdr())
		b.Run(req.name+"/inline", func(b *testing.B) {
			serve(b, r) // warm the pool
			b.ReportAllocs()
			cpu := cpuTime(b)
			for b.Loop() {
				serve(b, r)
			}
			b.ReportMetric(float64(cpuTime(b)-cpu)/float64(b.N), "cpu-ns/op")
		})
		b.Run(req.name+"/goroutine", func(b *testing.B) {
			serve(b, r)
			b.ReportAllocs()
			done := make(chan error, 1)
			cpu := cpuTime(b)
			for b.Loop() {
				go func() {
					w := &benchWriter{}
					h.ServeHTTP(w, fresh(r))
					if w.status != http.StatusOK || w.n != 16 {
						done <- errors.New("bad response")
						return
					}
					done <- nil
				}()
				if err := <-done; err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cpuTime(b)-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}
