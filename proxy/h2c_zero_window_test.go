package proxy

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

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
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		defer ended.Store(true)
		w.Header().Set("Content-Type", "application/octet-stream")
		rc := http.NewResponseController(w)
		chunk := make([]byte, 16<<10)
		for i := 0; i < 1024; i++ { // 16 MiB at most
			if _, err := w.Write(chunk); err != nil {
				return
			}
			if rc.Flush() != nil {
				return
			}
		}
	})
	const timeout = 300 * time.Millisecond
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up))},
		func(r *config.Route) { r.Timeout = timeout }))

	c, err := net.DialTimeout("tcp", h.out, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0}); err != nil {
		t.Fatal(err)
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "x"}, {":path", "/"}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}

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
