package h1client

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
)

// cpuTime is the process's user and system CPU time so far, in ns.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkRoundTrip times one small GET (round trip, body read to EOF,
// Close) against a local net/http server, with this Transport and with
// net/http's, configured alike. The server's cost is in both.
func BenchmarkRoundTrip(b *testing.B) {
	payload := []byte("hello, outrigger")
	s := startServer(b, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(payload)
	})
	for _, c := range []struct {
		name string
		rt   http.RoundTripper
	}{
		{"h1client", newTransport(b, func(t *Transport) { t.ReadBufferSize, t.WriteBufferSize = 32<<10, 32<<10 })},
		{"nethttp", &http.Transport{DisableCompression: true, ReadBufferSize: 32 << 10, WriteBufferSize: 32 << 10}},
	} {
		b.Run(c.name, func(b *testing.B) {
			req, _ := http.NewRequest("GET", s.URL+"/bench", nil)
			req.Header["User-Agent"] = []string{""}
			buf := make([]byte, 512)
			b.ReportAllocs()
			cpu0 := cpuTime()
			for b.Loop() {
				resp, err := c.rt.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				for {
					if _, err := resp.Body.Read(buf); err == io.EOF {
						break
					} else if err != nil {
						b.Fatal(err)
					}
				}
				resp.Body.Close()
			}
			// Wall time is mostly loopback latency; CPU time (of the
			// whole process: client and server) is what a loaded
			// proxy pays.
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
		})
		if ci, ok := c.rt.(interface{ CloseIdleConnections() }); ok {
			ci.CloseIdleConnections()
		}
	}
}

// BenchmarkRoundTripUpload times a POST of a 1 MiB body of known length
// against a local net/http server that discards it, with the default
// (4 KiB) connection buffers, as the proxy's.
func BenchmarkRoundTripUpload(b *testing.B) {
	s := startServer(b, func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) })
	tr := newTransport(b)
	body := bytes.Repeat([]byte("x"), 1<<20)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		req, _ := http.NewRequest("POST", s.URL+"/upload", bytes.NewReader(body))
		resp, err := tr.RoundTrip(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
	tr.CloseIdleConnections()
}

// BenchmarkRoundTripCannedServer is BenchmarkRoundTrip against a server
// that does almost nothing (reads to the end of each request head and
// writes a canned response), so that cpu-ns/op is mostly the client's.
func BenchmarkRoundTripCannedServer(b *testing.B) {
	rs := startCanned(b)
	for _, c := range []struct {
		name string
		rt   http.RoundTripper
	}{
		{"h1client", newTransport(b, func(t *Transport) { t.ReadBufferSize, t.WriteBufferSize = 32<<10, 32<<10 })},
		{"nethttp", &http.Transport{DisableCompression: true, ReadBufferSize: 32 << 10, WriteBufferSize: 32 << 10}},
	} {
		b.Run(c.name, func(b *testing.B) {
			ctx, cancel := context.WithCancel(context.Background()) // a cancellable context, as the proxy's are
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+rs.addr+"/bench", nil)
			req.Header["User-Agent"] = []string{""}
			buf := make([]byte, 512)
			b.ReportAllocs()
			cpu0 := cpuTime()
			for b.Loop() {
				resp, err := c.rt.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				for {
					if _, err := resp.Body.Read(buf); err == io.EOF {
						break
					} else if err != nil {
						b.Fatal(err)
					}
				}
				resp.Body.Close()
			}
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
		})
		if ci, ok := c.rt.(interface{ CloseIdleConnections() }); ok {
			ci.CloseIdleConnections()
		}
	}
}

// cannedResponse is what startCanned's server answers to every request.
const cannedResponse = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: Fri, 27 Nov 2026 07:00:00 GMT\r\nContent-Length: 16\r\n\r\nhello, outrigger"

// startCanned starts a server that does almost nothing: it reads to the
// end of each request head and writes cannedResponse.
func startCanned(b *testing.B) *rawServer {
	return startRaw(b, func(c net.Conn, br *bufio.Reader, _ int) {
		for {
			for {
				line, err := br.ReadSlice('\n')
				if err != nil {
					return
				}
				if len(line) == 2 {
					break
				}
			}
			if _, err := io.WriteString(c, cannedResponse); err != nil {
				return
			}
		}
	})
}
