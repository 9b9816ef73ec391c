package h1server

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BenchmarkServe compares this server with net/http's on the same tiny
// handler, driven over loopback by keep-alive connections (8 per
// GOMAXPROCS) with a minimal allocation-free client, so that the
// difference is the servers'. allocs/op counts both sides; "floor" is the
// client and the system calls alone.
func BenchmarkServe(b *testing.B) {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("hello, world\n"))
	})
	// The proxy's listener defaults: each request costs deadline changes.
	const readHeader, idle = 10 * time.Second, 5 * time.Minute
	b.Run("h1server", func(b *testing.B) {
		s := &Server{Handler: handler, ReadHeaderTimeout: readHeader, IdleTimeout: idle}
		benchServe(b, s.Serve, func() { s.Close() })
	})
	b.Run("nethttp", func(b *testing.B) {
		s := &http.Server{Handler: handler, ReadHeaderTimeout: readHeader, IdleTimeout: idle}
		benchServe(b, s.Serve, func() { s.Close() })
	})
	// floor: a canned response per header block, no HTTP server at all:
	// what the client and the system calls cost. A server's own cost is
	// its ns/op minus this.
	b.Run("floor", func(b *testing.B) {
		f := &cannedServer{done: make(chan struct{})}
		benchServe(b, f.serve, f.close)
	})
}

// cannedServer answers every header block with the same bytes.
type cannedServer struct {
	ln   net.Listener
	done chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	cs   []net.Conn
}

func (f *cannedServer) serve(ln net.Listener) error {
	f.ln = ln
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nhello, world\n")
	for {
		c, err := ln.Accept()
		if err != nil {
			f.wg.Wait()
			return http.ErrServerClosed
		}
		f.mu.Lock()
		f.cs = append(f.cs, c)
		f.mu.Unlock()
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			br := bufio.NewReader(c)
			for {
				line, err := br.ReadSlice('\n')
				if err != nil {
					return
				}
				if len(line) == 2 {
					if _, err := c.Write(resp); err != nil {
						return
					}
				}
			}
		}()
	}
}

func (f *cannedServer) close() {
	f.ln.Close()
	f.mu.Lock()
	for _, c := range f.cs {
		c.Close()
	}
	f.mu.Unlock()
}

func benchServe(b *testing.B, serve func(net.Listener) error, stop func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- serve(ln) }()
	defer func() {
		stop()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			b.Errorf("Serve: %v", err)
		}
	}()
	req := []byte("GET /bench HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	b.ReportAllocs()
	b.SetParallelism(8)
	cpu0 := cpuTime()
	b.ResetTimer()
	defer func() {
		// CPU time of the whole process (client included) per request:
		// steadier than ns/op on a shared machine.
		b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
	}()
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		for pb.Next() {
			if _, err := c.Write(req); err != nil {
				b.Error(err)
				return
			}
			if err := readResponse(br); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// readResponse reads one response with a Content-Length body.
func readResponse(br *bufio.Reader) error {
	n := -1
	for first := true; ; first = false {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if first {
			if !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
				return errors.New("unexpected status line " + string(line))
			}
			continue
		}
		if len(line) <= 2 {
			break
		}
		if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
			n, err = strconv.Atoi(string(bytes.TrimSpace(v)))
			if err != nil {
				return err
			}
		}
	}
	if n < 0 {
		return errors.New("no Content-Length")
	}
	_, err := br.Discard(n)
	return err
}

// BenchmarkServeHop is BenchmarkServe with a handler that, like a
// proxy's, waits for another goroutine (there, the upstream round trip)
// before answering: the handler goroutine parks, so net/http's
// per-request background read gets to run its read system call.
func BenchmarkServeHop(b *testing.B) {
	work := make(chan chan struct{})
	stop := make(chan struct{})
	defer close(stop)
	for i := 0; i < 4; i++ {
		go func() {
			for {
				select {
				case reply := <-work:
					close(reply)
				case <-stop:
					return
				}
			}
		}()
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reply := make(chan struct{})
		work <- reply
		<-reply
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("hello, world\n"))
	})
	const readHeader, idle = 10 * time.Second, 5 * time.Minute
	b.Run("h1server", func(b *testing.B) {
		s := &Server{Handler: handler, ReadHeaderTimeout: readHeader, IdleTimeout: idle}
		benchServe(b, s.Serve, func() { s.Close() })
	})
	b.Run("nethttp", func(b *testing.B) {
		s := &http.Server{Handler: handler, ReadHeaderTimeout: readHeader, IdleTimeout: idle}
		benchServe(b, s.Serve, func() { s.Close() })
	})
}

// BenchmarkServeSlowHandler is the client-gone watcher's cost: every
// request outlives watchDelay, so each gets one watcher read.
func BenchmarkServeSlowHandler(b *testing.B) {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t := time.NewTimer(2 * watchDelay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
		}
		_, _ = io.WriteString(w, "slow\n")
	})
	b.Run("h1server", func(b *testing.B) {
		s := &Server{Handler: handler}
		benchServe(b, s.Serve, func() { s.Close() })
	})
	b.Run("nethttp", func(b *testing.B) {
		s := &http.Server{Handler: handler, BaseContext: func(net.Listener) context.Context { return context.Background() }}
		benchServe(b, s.Serve, func() { s.Close() })
	})
}

// cpuTime is the process's user plus system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
