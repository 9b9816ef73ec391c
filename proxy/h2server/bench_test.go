package h2server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/outrigger-mesh/outrigger/proxy/internal/proxytest"
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
	addr = proxytest.Serve(b, func(c net.Conn, _ int) { serve(countingConn{c, writes}) })
	return addr, writes
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

// tinyHandler answers as an upstream behind the proxy would a small GET:
// a content type and 64 bytes of body.
var tinyHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	w.Write(tinyBody[:])
})

var tinyBody [64]byte

// BenchmarkServerRawGET drives one connection with a hand-written client
// that allocates nothing per request, so that allocs/op and B/op are the
// server's own: batches of concurrent small GETs (the same header block
// each time, indexed in the dynamic table after the first, as a client
// such as h2load sends it), each answered with 64 bytes.
func BenchmarkServerRawGET(b *testing.B) {
	for _, conc := range []int{1, 10} {
		b.Run(fmt.Sprintf("streams=%d", conc), func(b *testing.B) {
			s := &Server{Handler: tinyHandler}
			addr, _ := benchServe(b, func(c net.Conn) { s.ServeConn(c, nil) })
			defer s.Close()
			benchRawGET(b, addr, conc)
		})
	}
}

func benchRawGET(b *testing.B, addr string, conc int) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	var out bytes.Buffer
	out.WriteString(http2.ClientPreface)
	fr := http2.NewFramer(&out, nil)
	fr.WriteSettings()
	fr.WriteWindowUpdate(0, maxWindow-initialWindow)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	block := func() []byte {
		hb.Reset()
		for _, f := range []hpack.HeaderField{
			{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "http"},
			{Name: ":authority", Value: addr}, {Name: ":path", Value: "/index.html"},
			{Name: "user-agent", Value: "h2load nghttp2/1.59.0"}, {Name: "accept", Value: "*/*"},
		} {
			enc.WriteField(f)
		}
		return append([]byte(nil), hb.Bytes()...)
	}
	first, again := block(), block()
	// One batch of HEADERS frames; the stream ids are patched in.
	var batch []byte
	for i := 0; i < conc; i++ {
		batch = appendFrameHeader(batch, len(again), http2.FrameHeaders, http2.FlagHeadersEndStream|http2.FlagHeadersEndHeaders, 0)
		batch = append(batch, again...)
	}
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: first, EndStream: true, EndHeaders: true})
	if _, err := nc.Write(out.Bytes()); err != nil {
		b.Fatal(err)
	}
	br := bufio.NewReaderSize(nc, 64<<10)
	var hdr [9]byte
	// readEnds reads frames until n streams have ended, and returns the
	// DATA bytes received (to be given back to the connection window).
	readEnds := func(n int) (data uint32) {
		for n > 0 {
			if _, err := io.ReadFull(br, hdr[:]); err != nil {
				b.Fatal(err)
			}
			length := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
			typ, flags := http2.FrameType(hdr[3]), http2.Flags(hdr[4])
			if _, err := br.Discard(length); err != nil {
				b.Fatal(err)
			}
			switch typ {
			case http2.FrameData:
				data += uint32(length)
				if flags.Has(http2.FlagDataEndStream) {
					n--
				}
			case http2.FrameHeaders:
				if flags.Has(http2.FlagHeadersEndStream) {
					n--
				}
			case http2.FrameRSTStream, http2.FrameGoAway:
				b.Fatalf("unexpected frame %v", typ)
			}
		}
		return data
	}
	readEnds(1)
	id := uint32(3)
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; done += conc {
		for i := 0; i < conc; i++ {
			off := i * (9 + len(again))
			binary.BigEndian.PutUint32(batch[off+5:], id)
			id += 2
		}
		if _, err := nc.Write(batch); err != nil {
			b.Fatal(err)
		}
		if n := readEnds(conc); n > 0 {
			var wu [13]byte
			appendFrameHeader(wu[:0], 4, http2.FrameWindowUpdate, 0, 0)
			binary.BigEndian.PutUint32(wu[9:], n)
			if _, err := nc.Write(wu[:]); err != nil {
				b.Fatal(err)
			}
		}
	}
}
