package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/outrigger-mesh/outrigger/proxy/config"
	"github.com/outrigger-mesh/outrigger/proxy/internal/proxytest"
)

// rawH1Upstream answers every request on its connections with the bytes
// of resp, once the request's body is read.
func rawH1Upstream(t *testing.T, resp string) string {
	t.Helper()
	return proxytest.Serve(t, func(c net.Conn, _ int) {
		br := bufio.NewReader(c)
		for range 100 {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			if _, err := io.WriteString(c, resp); err != nil {
				return
			}
		}
	})
}

// rawH2Head sends a GET of / over HTTP/2 with prior knowledge to addr
// and returns the fields of the response's final header block as the
// client got them, each name with its values in order.
func rawH2Head(t *testing.T, addr string) map[string][]string {
	t.Helper()
	_, fr := dialRawH2(t, addr)
	writeRawGet(t, fr, 1, "/")
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	for range 100 {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("read frame: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID != 1 || strings.HasPrefix(f.PseudoValue("status"), "1") {
				continue
			}
			got := map[string][]string{}
			for _, hf := range f.Fields {
				got[hf.Name] = append(got[hf.Name], hf.Value)
			}
			return got
		case *http2.RSTStreamFrame:
			t.Fatalf("stream reset %v", f.ErrCode)
		case *http2.GoAwayFrame:
			t.Fatalf("GOAWAY %v", f.ErrCode)
		}
	}
	t.Fatal("no response header block")
	return nil
}

// An HTTP/1.1 upstream's "204 No Content" with a Content-Length, or a
// response with its Content-Length repeated, reaches an HTTP/2 client
// as a header block that client can take: nghttp2 (so curl) fails the
// request on a non-zero content-length in a 204 and on a second
// content-length field, and the proxy passed both on as they came.
func TestHTTP1UpstreamsContentLengthReachesHTTP2ClientWellFormed(t *testing.T) {
	for _, c := range []struct {
		name, resp string
		want       []string // the content-length fields
	}{
		{"204 with a length", "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", nil},
		{"length repeated", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", []string{"5"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			up := rawH1Upstream(t, c.resp)
			h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(up)}))
			got := rawH2Head(t, h.out)
			if cl := got["content-length"]; strings.Join(cl, ",") != strings.Join(c.want, ",") {
				t.Fatalf("content-length fields %q, want %q (response %v)", cl, c.want, got)
			}
		})
	}
}

// An HTTP/2 upstream's field value with spaces at its ends (which RFC
// 9113 §8.2.1 forbids and x/net/http2 servers send) reaches an HTTP/2
// client without them: passed on, it made the response malformed for
// clients that check (nghttp2, so curl).
func TestHTTP2UpstreamsValueEdgeSpacesDoNotReachHTTP2Client(t *testing.T) {
	up := rawH2Upstream(t, func(_ int, fr *http2.Framer) {
		var hb bytes.Buffer
		enc := hpack.NewEncoder(&hb)
		for range 100 {
			f, err := readH2Request(fr)
			if err != nil {
				return
			}
			hb.Reset()
			_ = enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
			_ = enc.WriteField(hpack.HeaderField{Name: "x-sp", Value: " v\t"})
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: f.StreamID, BlockFragment: hb.Bytes(), EndHeaders: true, EndStream: true})
		}
	})
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(up), Protocol: config.ProtocolHTTP2}))
	if got := rawH2Head(t, h.out)["x-sp"]; len(got) != 1 || got[0] != "v" {
		t.Fatalf("x-sp %q, want \"v\"", got)
	}
}
