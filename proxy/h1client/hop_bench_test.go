package h1client

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/h1server"
)

// BenchmarkHop is the proxy's HTTP/1.1 to HTTP/1.1 path in miniature: an
// h1server whose handler forwards each request with RoundTripHooks on
// the request's own context (as the proxy's direct path does) to a
// canned upstream, driven by one keep-alive client connection. allocs/op
// counts the client, both servers and the transport: the context the
// server makes per request and the transport's watch of it are part of
// it.
func BenchmarkHop(b *testing.B) {
	up := startCanned(b)
	tr := newTransport(b)
	upURL := "http://" + up.addr + "/"
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out, _ := http.NewRequest("GET", upURL, nil)
		out.Header["User-Agent"] = []string{""}
		resp, err := tr.RoundTripHooks(r.Context(), out, nil, time.Time{})
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		w.Header()["Content-Type"] = resp.Header["Content-Type"]
		var buf [64]byte
		for {
			n, err := resp.Body.Read(buf[:])
			_, _ = w.Write(buf[:n])
			if err != nil {
				break
			}
		}
		resp.Body.Close()
	})
	s := &h1server.Server{Handler: handler}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	defer func() {
		s.Close()
		<-served
	}()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	req := []byte("GET /hop HTTP/1.1\r\nHost: bench\r\n\r\n")
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		if err := readCanned(br); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}

// readCanned reads one response with a Content-Length body from br,
// allocating nothing.
func readCanned(br *bufio.Reader) error {
	n := -1
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) == 2 {
			break
		}
		const cl = "Content-Length: "
		if len(line) > len(cl) && string(line[:len(cl)]) == cl {
			v, err := strconv.Atoi(string(line[len(cl) : len(line)-2]))
			if err != nil {
				return err
			}
			n = v
		}
	}
	if n < 0 {
		return io.ErrUnexpectedEOF
	}
	_, err := br.Discard(n)
	return err
}
