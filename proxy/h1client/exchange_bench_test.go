package h1client

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/internal/sockio"
)

// BenchmarkExchange times one small GET against startCanned's server,
// body read to EOF and closed, in the shapes the proxy's forwarding
// uses: without a context to watch or a deadline ("background"); with a
// cancellable context (watched with context.AfterFunc) and a deadline per
// request, as a route timeout gives ("cancel+deadline"); and the same
// over connections wrapped by sockio, as the proxy's upstream
// connections are ("sockio+cancel+deadline").
func BenchmarkExchange(b *testing.B) {
	rs := startCanned(b)
	url := "http://" + rs.addr + "/bench"
	for _, c := range []struct {
		name     string
		cancel   bool
		deadline bool
		sockio   bool
	}{
		{name: "background"},
		{name: "cancel+deadline", cancel: true, deadline: true},
		{name: "sockio+cancel+deadline", cancel: true, deadline: true, sockio: true},
	} {
		b.Run(c.name, func(b *testing.B) {
			tr := newTransport(b, func(t *Transport) {
				if c.sockio {
					t.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
						var d net.Dialer
						nc, err := d.DialContext(ctx, network, addr)
						if err != nil {
							return nil, err
						}
						return sockio.Wrap(nc), nil
					}
				}
			})
			ctx := context.Background()
			if c.cancel {
				var cancel context.CancelFunc
				ctx, cancel = context.WithCancel(ctx)
				defer cancel()
			}
			req, _ := http.NewRequest("GET", url, nil)
			req.Header["User-Agent"] = []string{""}
			exchangeLoop(b, tr, ctx, req, c.deadline)
			tr.CloseIdleConnections()
		})
	}
}

// repeatReader returns s over and over, never an error.
type repeatReader struct {
	s   string
	off int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := copy(p, r.s[r.off:])
	r.off = (r.off + n) % len(r.s)
	return n, nil
}

var headSink *responseBody

// BenchmarkReadHead times reading and parsing one response head from a
// connection's read buffer, without I/O, into a response allocated per
// head as an exchange allocates it: the head net/http's server sends for
// a small body ("nethttp"), one whose names are in lower case, as some
// servers and HTTP/2-to-HTTP/1.1 gateways send them ("lowercase"), and a
// larger one with repeated fields ("many").
func BenchmarkReadHead(b *testing.B) {
	for _, c := range []struct{ name, head string }{
		{"nethttp", "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nDate: Fri, 27 Nov 2026 07:00:00 GMT\r\nContent-Length: 16\r\n\r\n"},
		{"lowercase", "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 16\r\ndate: Fri, 27 Nov 2026 07:00:00 GMT\r\nserver: envoy\r\nx-request-id: 4f1c2e9a-8d3b-4c1e-9f2a-7b6d5e4c3a21\r\ncache-control: no-store\r\n\r\n"},
		{"many", "HTTP/1.1 200 OK\r\nServer: nginx/1.27.3\r\nDate: Fri, 27 Nov 2026 07:00:00 GMT\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 16\r\nConnection: keep-alive\r\nVary: Accept-Encoding\r\nVary: Origin\r\nSet-Cookie: a=1; Path=/; HttpOnly\r\nSet-Cookie: b=2; Path=/; Secure\r\nCache-Control: private, max-age=0\r\nX-Frame-Options: DENY\r\nX-Content-Type-Options: nosniff\r\nStrict-Transport-Security: max-age=31536000\r\nEtag: \"5f3c-1a2b\"\r\n\r\n"},
	} {
		b.Run(c.name, func(b *testing.B) {
			cn := &conn{hp: &hostPool{t: &Transport{}}, br: bufio.NewReaderSize(&repeatReader{s: c.head}, defaultBufferSize)}
			var ev events
			b.ReportAllocs()
			cpu0 := cpuTime()
			for b.Loop() {
				rb := &responseBody{c: cn}
				if _, err := cn.readHead(rb, &ev, "GET", false); err != nil {
					b.Fatal(err)
				}
				headSink = rb // on the heap, as an exchange's is
			}
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// loopConn is a connection to an upstream that answers every request head
// written to it with cannedResponse at once, in memory: an exchange over
// it is the transport's own work, without system calls or wake-ups. It
// counts deadline changes.
type loopConn struct {
	pending   []byte // written by Write, read by Read
	off       int
	deadlines int
}

func (c *loopConn) Write(p []byte) (int, error) {
	// Each request is one bodiless head, written with one flush.
	c.pending = append(c.pending[:0], cannedResponse...)
	c.off = 0
	return len(p), nil
}

func (c *loopConn) Read(p []byte) (int, error) {
	if c.off == len(c.pending) {
		return 0, io.ErrNoProgress // a read with no request written: a bug
	}
	n := copy(p, c.pending[c.off:])
	c.off += n
	return n, nil
}

func (c *loopConn) Close() error                     { return nil }
func (c *loopConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *loopConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *loopConn) SetDeadline(time.Time) error      { c.deadlines += 2; return nil }
func (c *loopConn) SetReadDeadline(time.Time) error  { c.deadlines++; return nil }
func (c *loopConn) SetWriteDeadline(time.Time) error { c.deadlines++; return nil }

// watchCtx is a context with WatchEnd and StopWatch, as h1server's
// request contexts have, that never ends.
type watchCtx struct{ context.Context }

func (watchCtx) WatchEnd(func()) uint64 { return 1 }
func (watchCtx) StopWatch(uint64) bool  { return true }

// BenchmarkExchangeInMemory is BenchmarkExchange over loopConn: what
// the transport itself costs per exchange, and how many deadline changes
// (per direction: SetDeadline counts two) it makes, in the same shapes,
// plus a context watched through WatchEnd ("endwatch+deadline").
func BenchmarkExchangeInMemory(b *testing.B) {
	for _, c := range []struct {
		name     string
		ctx      func() (context.Context, context.CancelFunc)
		deadline bool
	}{
		{"background", func() (context.Context, context.CancelFunc) { return context.Background(), func() {} }, false},
		{"cancel+deadline", func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }, true},
		{"endwatch+deadline", func() (context.Context, context.CancelFunc) { return watchCtx{context.Background()}, func() {} }, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			lc := &loopConn{}
			tr := newTransport(b, func(t *Transport) {
				t.Dial = func(context.Context, string, string) (net.Conn, error) { return lc, nil }
			})
			ctx, cancel := c.ctx()
			defer cancel()
			// With a port, as the proxy's endpoints have: without one,
			// finding the host's pool joins one per request.
			req, _ := http.NewRequest("GET", "http://upstream.test:80/bench", nil)
			req.Header["User-Agent"] = []string{""}
			exchangeLoop(b, tr, ctx, req, c.deadline)
			b.ReportMetric(float64(lc.deadlines)/float64(b.N), "deadline-sets/op")
			tr.CloseIdleConnections()
		})
	}
}

// exchangeLoop makes b.N exchanges of req through tr, reading each body
// to its end, with a deadline a minute ahead if deadline is set, and
// reports the CPU time per exchange (cpu-ns/op).
func exchangeLoop(b *testing.B, tr *Transport, ctx context.Context, req *http.Request, deadline bool) {
	b.Helper()
	buf := make([]byte, 512)
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		var dl time.Time
		if deadline {
			dl = time.Now().Add(time.Minute)
		}
		resp, err := tr.RoundTripHooks(ctx, req, nil, dl)
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
}
