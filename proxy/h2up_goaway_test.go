package proxy

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/config"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// readH2Request reads frames, acknowledging SETTINGS, until a request's
// HEADERS, and returns them.
func readH2Request(fr *http2.Framer) (*http2.MetaHeadersFrame, error) {
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return nil, err
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.MetaHeadersFrame:
			return f, nil
		}
	}
}

// answerH2Requests answers each request of the connection, once its body
// ended, with 200 and body.
func answerH2Requests(fr *http2.Framer, body string) {
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		var id uint32
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.MetaHeadersFrame:
			if f.StreamEnded() {
				id = f.StreamID
			}
		case *http2.DataFrame:
			if f.StreamEnded() {
				id = f.StreamID
			}
		}
		if id == 0 {
			continue
		}
		hb.Reset()
		enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndHeaders: true})
		fr.WriteData(id, true, []byte(body))
	}
}

// A request above the last stream id of an HTTP/2 upstream's GOAWAY was
// not processed (RFC 9113 §6.8), as one refused with REFUSED_STREAM: a
// POST whose body the transport could not send again itself (it was
// streaming, of unknown length) is retried by the route on
// refused-stream, and reaches the upstream on a new connection.
func TestPostAboveGoAwaysLastStreamIsRetriedAsRefused(t *testing.T) {
	up := rawH2Upstream(t, func(n int, fr *http2.Framer) {
		if n > 0 {
			answerH2Requests(fr, "ok")
			return
		}
		if _, err := readH2Request(fr); err != nil {
			return
		}
		// Draining: nothing of this connection is processed.
		fr.WriteGoAway(0, http2.ErrCodeNo, nil)
		for {
			if _, err := fr.ReadFrame(); err != nil {
				return
			}
		}
	})
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(up), Protocol: config.ProtocolHTTP2},
		func(r *config.Route) {
			r.Retry = &config.RetryPolicy{Attempts: 1, Backoff: config.Backoff{Base: time.Millisecond}}
		}))
	// A reader of its own: the client sends the body chunked, and the
	// proxy streams it upstream.
	req, err := http.NewRequest(http.MethodPost, h.url("/upload"), io.MultiReader(strings.NewReader("payload")))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := h.h1.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusOK || body != "ok" {
		t.Fatalf("POST above the GOAWAY's last stream: %d %q %q, want 200 \"ok\" from the retry", resp.StatusCode,
			resp.Header.Get("X-Outrigger-Error"), body)
	}
}
