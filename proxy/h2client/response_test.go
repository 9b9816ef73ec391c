package h2client

import (
	"maps"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// FuzzDeclaredTrailersAsSplitAndLower checks that the keys a Trailer
// field declares are those x/net/http2 makes of it: the value split at
// commas, each name trimmed, lowercased and canonicalized.
func FuzzDeclaredTrailersAsSplitAndLower(f *testing.F) {
	for _, v := range []string{"Grpc-Status", "grpc-status, grpc-message", " a ,,B-c ,", "", ",", "x y, Z", "ÄÖ,é", "content-LENGTH"} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v string) {
		want := http.Header{}
		for _, name := range strings.Split(v, ",") {
			if name = textproto.TrimString(name); name != "" {
				want[textproto.CanonicalMIMEHeaderKey(strings.ToLower(name))] = nil
			}
		}
		var resp http.Response
		declareTrailers(&resp, v)
		if len(want) == 0 && len(resp.Trailer) == 0 {
			return
		}
		if !maps.EqualFunc(resp.Trailer, want, func(a, b []string) bool { return a == nil && b == nil }) {
			t.Fatalf("Trailer %q declared %q, want %q", v, resp.Trailer, want)
		}
	})
}

func TestStatusLineAsNetHTTP(t *testing.T) {
	for code := 100; code < 1000; code++ {
		status := strconv.Itoa(code)
		if got, want := statusLine(code, status), status+" "+http.StatusText(code); got != want {
			t.Fatalf("code %d: %q, want %q", code, got, want)
		}
	}
}

// headersFrame is a decoded HEADERS frame of fields kv.
func headersFrame(endStream bool, kv ...string) *http2.MetaHeadersFrame {
	hf := &http2.HeadersFrame{}
	if endStream {
		hf.Flags = http2.FlagHeadersEndStream | http2.FlagHeadersEndHeaders
	}
	f := &http2.MetaHeadersFrame{HeadersFrame: hf}
	for i := 0; i+1 < len(kv); i += 2 {
		f.Fields = append(f.Fields, hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	return f
}

// A gRPC response's head, as Go's servers send it, and its trailers.
func TestParseHeaderBlockGRPCResponse(t *testing.T) {
	var hb headerBlock
	parseHeaderBlock(headersFrame(false, ":status", "200", "content-type", "application/grpc", "trailer", "Grpc-Status, grpc-message"), &hb)
	resp := hb.resp
	if hb.malformed != "" || resp.StatusCode != 200 || resp.Status != "200 OK" || resp.ContentLength != -1 ||
		resp.Header.Get("Content-Type") != "application/grpc" || len(resp.Header) != 1 ||
		len(resp.Trailer) != 2 || resp.Trailer["Grpc-Status"] != nil || resp.Trailer["Grpc-Message"] != nil {
		t.Fatalf("head: %+v, %+v", hb, resp)
	}
	parseHeaderBlock(headersFrame(true, "grpc-status", "0", "grpc-message", ""), &hb)
	if hb.malformed != "" || hb.resp != nil || hb.pseudo != 0 || len(hb.header) != 2 || hb.header.Get("Grpc-Status") != "0" {
		t.Fatalf("trailers: %+v", hb)
	}
}

// BenchmarkParseHeaderBlock parses a gRPC response's head and trailers
// (the header block reader's decoding is not in it).
func BenchmarkParseHeaderBlock(b *testing.B) {
	head := headersFrame(false, ":status", "200", "content-type", "application/grpc", "trailer", "Grpc-Status")
	trailers := headersFrame(true, "grpc-status", "0", "grpc-message", "")
	b.ReportAllocs()
	var hb headerBlock
	for b.Loop() {
		parseHeaderBlock(head, &hb)
		parseHeaderBlock(trailers, &hb)
	}
}
