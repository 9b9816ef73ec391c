package h2server

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/net/http2"
)

// countingConn counts the writes (system calls) a server makes.
type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// benchServe serves a loopback listener with serve, counting writes,
// until the benchmark ends.
func benchServe(b *testing.B, serve func(net.Conn)) (addr string, writes *atomic.Int64) {
	writes = new(atomic.Int64)
	addr = startBenchListener(b, func(c net.Conn) { serve(countingConn{c, writes}) })
	return addr, writes
}

// startBenchListener runs handle on each connection accepted on a
// loopback port until the benchmark ends, then closes the listener and
// the connections and waits for the handlers.
func startBenchListener(b *testing.B, handle func(net.Conn)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				handle(c)
			}()
		}
	}()
	b.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

var benchHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "text/plain")
	io.WriteString(w, "hello, world\n")
})

// benchClient sends b.N small POSTs, 16 goroutines sharing one x/net
// client connection, and reports the server's writes per request.
func benchClient(b *testing.B, addr string, writes *atomic.Int64) {
	c, tr := h2Client(b)
	defer tr.CloseIdleConnections()
	url := "http://" + addr + "/"
	// Warm up: the connection and its SETTINGS exchange.
	resp, err := c.Post(url, "text/plain", strings.NewReader("x"))
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	w0 := writes.Load()
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := c.Post(url, "text/plain", strings.NewReader("payload"))
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(writes.Load()-w0)/float64(b.N), "writes/op")
}

// BenchmarkServer compares this server with x/net/http2's on the same
// handler and client. Allocations count both sides (client included).
func BenchmarkServer(b *testing.B) {
	b.Run("h2server", func(b *testing.B) {
		s := &Server{Handler: benchHandler}
		addr, writes := benchServe(b, func(c net.Conn) { s.ServeConn(c, nil) })
		benchClient(b, addr, writes)
		s.Close()
	})
	b.Run("h2server-watched", func(b *testing.B) {
		s := &Server{Handler: watchedHandler}
		addr, writes := benchServe(b, func(c net.Conn) { s.ServeConn(c, nil) })
		benchClient(b, addr, writes)
		s.Close()
	})
	b.Run("x-net-http2", func(b *testing.B) {
		s := &http2.Server{}
		addr, writes := benchServe(b, func(c net.Conn) {
			s.ServeConn(c, &http2.ServeConnOpts{Handler: benchHandler})
		})
		benchClient(b, addr, writes)
	})
}

// endWatcher is the method set by which a transport (proxy/h1client)
// finds a context that runs a function at its end without
// context.AfterFunc's allocations.
type endWatcher interface {
	WatchEnd(f func()) (token uint64)
	StopWatch(token uint64) bool
}

// watchedHandler is benchHandler with what a proxy's transport does
// with the request's context around the upstream exchange: it watches
// the context's end (through WatchEnd where the context has it, else
// context.AfterFunc, as proxy/h1client does) and stops the watch after.
var watchedHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if ew, ok := ctx.(endWatcher); ok {
		tok := ew.WatchEnd(noop)
		benchHandler(w, r)
		ew.StopWatch(tok)
		return
	}
	stop := context.AfterFunc(ctx, noop)
	benchHandler(w, r)
	stop()
})

func noop() {}
