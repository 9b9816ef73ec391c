package h2client

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// cpuTime is the process's user and system CPU time so far, in ns.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// countingConn counts the client's write calls.
type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// BenchmarkRoundTrip runs small POSTs (a gRPC-sized body, response read
// to EOF, with a declared grpc-status trailer as Go's gRPC servers send
// it) from 10 goroutines over one connection to a local x/net/http2
// server, with this Transport and with x/net/http2's, configured alike.
// The server's cost is in both; writes/op counts the client's write
// calls. The h2client cases beside the plain one are the proxy's two
// ways to send an attempt under a deadline, on a request context that
// can end: a context with the deadline and an httptrace.ClientTrace
// (ctx-deadline), and RoundTripHooks with the deadline and Hooks
// (hooks-deadline).
func BenchmarkRoundTrip(b *testing.B) {
	payload := strings.Repeat("p", 100)
	s := startH2(b, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Trailer", "Grpc-Status")
		w.Write([]byte(payload))
		w.Header().Set("Grpc-Status", "0")
	})
	var writes atomic.Int64
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &countingConn{Conn: c, writes: &writes}, nil
	}
	xnet := &http2.Transport{
		AllowHTTP:          true,
		DisableCompression: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return dial(ctx, network, addr)
		},
	}
	b.Cleanup(xnet.CloseIdleConnections)
	tr := newTransport(b, func(t *Transport) { t.Dial = dial })
	// The request's context: one that can end, as a server's can.
	rctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	var hooks benchHooks
	trace := &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { hooks.GotConn() }}
	plain := func(rt http.RoundTripper) func(*http.Request) (*http.Response, func(), error) {
		return func(req *http.Request) (*http.Response, func(), error) {
			resp, err := rt.RoundTrip(req)
			return resp, func() {}, err
		}
	}
	for _, c := range []struct {
		name string
		// do sends req; done is called once the body was read.
		do func(req *http.Request) (resp *http.Response, done func(), err error)
	}{
		{"h2client", plain(tr)},
		{"h2client/ctx-deadline", func(req *http.Request) (*http.Response, func(), error) {
			ctx, cancel := context.WithDeadline(rctx, time.Now().Add(time.Minute))
			resp, err := tr.RoundTrip(req.WithContext(httptrace.WithClientTrace(ctx, trace)))
			return resp, cancel, err
		}},
		{"h2client/hooks-deadline", func(req *http.Request) (*http.Response, func(), error) {
			resp, err := tr.RoundTripHooks(rctx, req, &hooks, time.Now().Add(time.Minute))
			return resp, func() {}, err
		}},
		{"xnet", plain(xnet)},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(5) // 10 goroutines on 2 CPUs
			writes.Store(0)
			cpu0 := cpuTime()
			b.RunParallel(func(pb *testing.PB) {
				buf := make([]byte, 512)
				for pb.Next() {
					req, _ := http.NewRequest("POST", s.url("/bench.Echo/Echo"), strings.NewReader(payload))
					req.Header.Set("Content-Type", "application/grpc")
					resp, done, err := c.do(req)
					if err != nil {
						b.Error(err)
						return
					}
					for {
						if _, err := resp.Body.Read(buf); err == io.EOF {
							break
						} else if err != nil {
							b.Error(err)
							return
						}
					}
					resp.Body.Close()
					done()
				}
			})
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(writes.Load())/float64(b.N), "writes/op")
		})
	}
}

// benchHooks counts connections taken.
type benchHooks struct{ conns atomic.Int64 }

func (h *benchHooks) GotConn()                                       { h.conns.Add(1) }
func (h *benchHooks) Got1xxResponse(int, textproto.MIMEHeader) error { return nil }

// BenchmarkQueueAtTheCap sends 256 requests at once to a host whose one
// connection (the cap: one) takes one stream at a time, so that 255 of
// them wait in line, and measures the time and CPU to serve them all
// (cpu-ns/req). Each stream's end wakes one of them.
func BenchmarkQueueAtTheCap(b *testing.B) {
	const n = 256
	s := startH2(b, func(w http.ResponseWriter, r *http.Request) {}, func(srv *http2.Server) { srv.MaxConcurrentStreams = 1 })
	d := &cappedDialer{max: 1}
	tr := d.transport(b)
	url := s.url("/")
	errs := make(chan error, n)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for range b.N {
		for range n {
			go func() {
				req, _ := http.NewRequest("GET", url, nil)
				resp, err := tr.RoundTrip(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				errs <- err
			}()
		}
		for range n {
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N*n), "cpu-ns/req")
}
