package proxy

import (
	"bytes"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// cancelAtDeadlineUpstream is an HTTP/2 upstream that answers the first
// stream with headers and one gRPC message, then, a little before the
// grpc-timeout it received runs out, resets the stream with CANCEL — what
// grpc-go's server does at a call's deadline, and before the proxy's own
// timer, since the timeout it got was measured from a later instant.
func cancelAtDeadlineUpstream(t *testing.T, early time.Duration) string {
	t.Helper()
	return rawH2Upstream(t, func(_ int, fr *http2.Framer) {
		var wmu sync.Mutex // the reset is written from the timer's goroutine
		var timer *time.Timer
		defer func() {
			if timer != nil {
				timer.Stop()
			}
		}()
		for i := 0; i < 100; i++ {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					wmu.Lock()
					_ = fr.WriteSettingsAck()
					wmu.Unlock()
				}
			case *http2.MetaHeadersFrame:
				d, err := parseGRPCTimeout(h2HeaderValue(f, "grpc-timeout"))
				if err != nil {
					t.Errorf("upstream got no usable grpc-timeout: %v", err)
					return
				}
				var hb bytes.Buffer
				enc := hpack.NewEncoder(&hb)
				_ = enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
				_ = enc.WriteField(hpack.HeaderField{Name: "content-type", Value: "application/grpc"})
				id := f.StreamID
				wmu.Lock()
				_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndHeaders: true})
				_ = fr.WriteData(id, false, []byte{0, 0, 0, 0, 0})
				wmu.Unlock()
				timer = time.AfterFunc(d-early, func() {
					wmu.Lock()
					defer wmu.Unlock()
					_ = fr.WriteRSTStream(id, http2.ErrCodeCancel)
				})
			}
		}
	})
}

func h2HeaderValue(f *http2.MetaHeadersFrame, name string) string {
	for _, hf := range f.RegularFields() {
		if hf.Name == name {
			return hf.Value
		}
	}
	return ""
}

// TestGRPCUpstreamCancelAtDeadline: an upstream that cancels the stream
// at the propagated deadline, a moment before the proxy's timer fires,
// ends the call with DEADLINE_EXCEEDED trailers downstream, not a reset.
func TestGRPCUpstreamCancelAtDeadline(t *testing.T) {
	h := startProxy(t, grpcConfig(cancelAtDeadlineUpstream(t, 40*time.Millisecond)))
	client := startProxyClientH2C()
	defer client.CloseIdleConnections()

	req, err := http.NewRequestWithContext(ctxT(t, 10*time.Second), "POST",
		"http://"+h.out+"/grpc.testing.TestService/StreamingOutputCall", bytes.NewReader([]byte{0, 0, 0, 0, 0}))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	req.Header.Set("Grpc-Timeout", "2S") // the proxy's timer fires 40 ms after the upstream's reset
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadAll(resp.Body); err != nil {
		t.Fatalf("stream reset instead of ending with trailers: %v", err)
	}
	if got := resp.Trailer.Get("Grpc-Status"); got != "4" {
		t.Fatalf("grpc-status %q (trailers %v), want 4 (DEADLINE_EXCEEDED)", got, resp.Trailer)
	}
	if got := resp.Trailer.Get(hdrError); got != ReasonUpstreamTimeout.String() {
		t.Errorf("%s trailer %q, want %q", hdrError, got, ReasonUpstreamTimeout)
	}
}
