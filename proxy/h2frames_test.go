package proxy

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// readH2Stream1 speaks the client side of HTTP/2 after an h2c upgrade: it
// sends the preface and SETTINGS, then collects stream 1's response.
func readH2Stream1(t *testing.T, c net.Conn, br *bufio.Reader) (status, body string) {
	t.Helper()
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, br)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	dec := hpack.NewDecoder(4096, nil)
	var b strings.Builder
	for i := 0; i < 100; i++ {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("read frame: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		case *http2.HeadersFrame:
			if f.StreamID != 1 {
				continue
			}
			hf, err := dec.DecodeFull(f.HeaderBlockFragment())
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range hf {
				if h.Name == ":status" {
					status = h.Value
				}
			}
			if f.StreamEnded() {
				return status, b.String()
			}
		case *http2.DataFrame:
			if f.StreamID == 1 {
				b.Write(f.Data())
				if f.StreamEnded() {
					return status, b.String()
				}
			}
		case *http2.GoAwayFrame:
			t.Fatalf("GOAWAY %v", f.ErrCode)
		}
	}
	t.Fatal("no end of stream 1")
	return "", ""
}
