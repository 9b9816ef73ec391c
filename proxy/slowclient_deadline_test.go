package proxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/net/http2"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// A client that stops reading a response must not hold the request past
// the route timeout, which bounds "the whole request ... until the
// response body ends" (docs/proxy.md Timeouts): the proxy's write to
// it blocks once the socket's buffers are full, and nothing ended that
// write, so the request kept its slot, its breaker permit and its
// upstream connection (with the upstream's handler) for as long as the
// client kept the connection open.
func TestRouteTimeoutEndsAResponseTheClientStopsReading(t *testing.T) {
	for _, proto := range []config.Protocol{config.ProtocolHTTP1, config.ProtocolHTTP2} {
		t.Run(string(proto), func(t *testing.T) {
			var ended atomic.Bool
			up := streamingUpstream(t, proto == config.ProtocolHTTP2, &ended)
			// The response's header block must come within it on a
			// loaded machine.
			const timeout = time.Second
			h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up)), Protocol: proto},
				func(r *config.Route) { r.Timeout = timeout }))
			c, err := net.DialTimeout("tcp", h.out, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetReadBuffer(16 << 10)
			}
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReaderSize(c, 4096), &http.Request{Method: "GET"})
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 200 {
				t.Fatalf("%d", resp.StatusCode)
			}
			// The client reads nothing more and keeps the connection.
			eventually(t, 10*time.Second, "the request to end after the route timeout", func() bool {
				return testutil.ToFloat64(h.p.m.active.WithLabelValues("svc")) == 0
			})
			eventually(t, 5*time.Second, "the upstream to see its response end", ended.Load)
		})
	}
}

// An HTTP/2 client that announces a stream window of 0 and never opens
// it gets the response's header block and no byte of body: the first
// write of the body waits for window. The route timeout bounds the
// writes of the body (docs/proxy.md Timeouts: the stream is reset
// INTERNAL_ERROR when the deadline passes), so the request must not keep
// its slot, breaker permit and upstream connection past it. A streamed
// body (flushed as it comes: gRPC, server-sent events, an upstream's
// chunked body) waited for window on its first chunk, before the
// deadline was set on the second, and nothing ended the wait.
func TestRouteTimeoutEndsAResponseToAClientThatNeverOpensItsWindow(t *testing.T) {
	var ended atomic.Bool
	up := streamingUpstream(t, false, &ended)
	// The response's header block must come within it on a loaded
	// machine.
	const timeout = time.Second
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up))},
		func(r *config.Route) { r.Timeout = timeout }))

	_, fr := dialRawH2(t, h.out, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
	writeRawGet(t, fr, 1, "/")

	// The client reads (and acknowledges SETTINGS) but never
	// sends WINDOW_UPDATE: the stream must be reset.
	start := time.Now()
	var rst *http2.RSTStreamFrame
	for i := 0; i < 1000 && rst == nil; i++ {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("no RST_STREAM for stream 1 (%v after the request): %v", time.Since(start), err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		case *http2.DataFrame:
			if len(f.Data()) > 0 {
				t.Fatalf("DATA of %d bytes in a window of 0", len(f.Data()))
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == 1 {
				rst = f
			}
		case *http2.GoAwayFrame:
			t.Fatalf("GOAWAY %v", f.ErrCode)
		}
	}
	if rst == nil {
		t.Fatal("no RST_STREAM for stream 1")
	}
	if rst.ErrCode != http2.ErrCodeInternal {
		t.Errorf("stream 1 reset %v, want INTERNAL_ERROR", rst.ErrCode)
	}
	eventually(t, 5*time.Second, "the request to end", func() bool {
		return testutil.ToFloat64(h.p.m.active.WithLabelValues("svc")) == 0
	})
	eventually(t, 5*time.Second, "the upstream to see its response end", ended.Load)
}

// streamingUpstream answers every request with a body of 64 KiB chunks,
// each flushed, until a write fails (256 MiB at most), and sets ended
// when its handler returns.
func streamingUpstream(t *testing.T, h2c bool, ended *atomic.Bool) *httptest.Server {
	return upstream(t, h2c, func(w http.ResponseWriter, r *http.Request) {
		defer ended.Store(true)
		w.Header().Set("Content-Type", "application/octet-stream")
		chunk := make([]byte, 64<<10)
		rc := http.NewResponseController(w)
		for i := 0; i < 4096; i++ {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			if rc.Flush() != nil {
				return
			}
		}
	})
}

// A client that pipelines requests and reads none of the answers fills
// the socket's buffers with the earlier ones: the first write of a
// later response blocks, the header block's included. Only the writes
// after a response's first body chunk were bounded by the route
// timeout, so a response whose body came in one chunk (a DATA frame of
// an HTTP/2 upstream) held its request, and the upstream stream, for as
// long as the client kept the connection open.
func TestRouteTimeoutEndsTheFirstWriteToAPipeliningClientThatReadsNothing(t *testing.T) {
	body := make([]byte, 12<<10) // one DATA frame, past what the server holds back
	up := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(body)
	})
	const timeout = 300 * time.Millisecond
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up)), Protocol: config.ProtocolHTTP2},
		func(r *config.Route) { r.Timeout = timeout }))
	c, err := net.DialTimeout("tcp", h.out, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(16 << 10)
	}
	// Requests until the proxy stops taking them: its answers fill the
	// buffers both ways and it blocks writing one.
	batch := []byte(strings.Repeat("GET / HTTP/1.1\r\nHost: x\r\n\r\n", 64))
	deadline := time.Now().Add(20 * time.Second)
	for {
		if time.Now().After(deadline) {
			t.Fatal("the proxy never stopped taking requests")
		}
		_ = c.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
		if _, err := c.Write(batch); err != nil {
			// A timeout: the proxy is blocked writing. Anything else:
			// it ended the connection (at the route timeout).
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Logf("the proxy ended the connection: %v", err)
			}
			break
		}
	}
	eventually(t, 10*time.Second, "the blocked request to end after the route timeout", func() bool {
		return testutil.ToFloat64(h.p.m.active.WithLabelValues("svc")) == 0
	})
}
