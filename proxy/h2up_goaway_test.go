package proxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync/atomic"
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

// An HTTP/2 upstream that shuts down in two steps (RFC 9113 §6.8), as
// proxy/h2server, nghttp2 and Envoy do: GOAWAY naming 2^31-1 and a PING,
// then, on the PING's acknowledgement, GOAWAY naming the stream in
// flight, then that stream's answer. The request is answered by it, not
// failed or retried, and the next one goes on a new connection.
func TestUpstreamTwoStepGoAwayAnswersStreamInFlight(t *testing.T) {
	var conns atomic.Int32
	up := rawH2Upstream(t, func(n int, fr *http2.Framer) {
		conns.Add(1)
		if n > 0 {
			answerH2Requests(fr, "new")
			return
		}
		hf, err := readH2Request(fr)
		if err != nil {
			return
		}
		fr.WriteGoAway(1<<31-1, http2.ErrCodeNo, nil)
		fr.WritePing(false, [8]byte{'n', 'o', 't', 'i', 'c', 'e'})
		if !awaitPingAck(fr) {
			return
		}
		fr.WriteGoAway(hf.StreamID, http2.ErrCodeNo, nil)
		var hb bytes.Buffer
		hpack.NewEncoder(&hb).WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: hf.StreamID, BlockFragment: hb.Bytes(), EndHeaders: true})
		fr.WriteData(hf.StreamID, true, []byte("old"))
		for {
			if _, err := fr.ReadFrame(); err != nil {
				return
			}
		}
	})
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(up), Protocol: config.ProtocolHTTP2}))
	for i, want := range []string{"old", "new"} {
		resp, err := h.h1.Get(h.url("/x"))
		if err != nil {
			t.Fatal(err)
		}
		if body := readAll(t, resp); resp.StatusCode != http.StatusOK || body != want {
			t.Fatalf("request %d: %d %q %q, want 200 %q", i, resp.StatusCode, resp.Header.Get("X-Outrigger-Error"), body, want)
		}
	}
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d upstream connections, want 2", n)
	}
}

// awaitPingAck reads frames until a PING acknowledgement.
func awaitPingAck(fr *http2.Framer) bool {
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return false
		}
		if p, ok := f.(*http2.PingFrame); ok && p.IsAck() {
			return true
		}
	}
}

// An HTTP/2 upstream that sends 103 Early Hints and then refuses the
// stream (REFUSED_STREAM) has answered: the request may have been begun,
// so it is a reset, not a refused stream, and the client gets the 103
// once. Neither a GET nor a POST is retried: the 103 went to the client,
// so the response has started (see informational_retry_test.go). The
// transport sent both again on a new connection, as unprocessed, and the
// 103 reached the client twice.
func TestUpstreamRefusingAfter1xxIsAResetAnd1xxGoesOnce(t *testing.T) {
	var requests atomic.Int32
	up := rawH2Upstream(t, func(n int, fr *http2.Framer) {
		var hb bytes.Buffer
		enc := hpack.NewEncoder(&hb)
		headers := func(id uint32, end bool, kv ...string) {
			hb.Reset()
			for i := 0; i+1 < len(kv); i += 2 {
				enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
			}
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndStream: end, EndHeaders: true})
		}
		for {
			h, err := readH2Request(fr)
			if err != nil {
				return
			}
			// The first request of each pair is refused after its 103.
			first := requests.Add(1)%2 == 1
			headers(h.StreamID, false, ":status", "103", "link", "</a.css>; rel=preload")
			if first {
				fr.WriteRSTStream(h.StreamID, http2.ErrCodeRefusedStream)
				continue
			}
			headers(h.StreamID, false, ":status", "200")
			fr.WriteData(h.StreamID, true, []byte("ok"))
		}
	})
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(up), Protocol: config.ProtocolHTTP2},
		func(r *config.Route) {
			r.Retry = &config.RetryPolicy{Attempts: 1, Backoff: config.Backoff{Base: time.Millisecond}}
		}))
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		requests.Store(0)
		var hints atomic.Int32
		trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, _ textproto.MIMEHeader) error {
			if code == http.StatusEarlyHints {
				hints.Add(1)
			}
			return nil
		}}
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), method, h.url("/"), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := h.h1.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body := readAll(t, resp)
		got := fmt.Sprintf("%d %q %q, %d hints, %d requests", resp.StatusCode, resp.Header.Get("X-Outrigger-Error"), body,
			hints.Load(), requests.Load())
		want := `502 "upstream_reset" "upstream reset the connection\n", 1 hints, 1 requests`
		if got != want {
			t.Errorf("%s: %s, want %s", method, got, want)
		}
	}
}
