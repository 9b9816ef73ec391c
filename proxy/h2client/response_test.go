package h2client

import (
	"bytes"
	"errors"
	"maps"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/outrigger-mesh/outrigger/proxy/internal/h2fields"
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

// headersFrame is a decoded header block of fields kv.
func headersFrame(endStream bool, kv ...string) *fieldList {
	l := &fieldList{streamID: 1, endStream: endStream, List: new(h2fields.List)}
	for i := 0; i+1 < len(kv); i += 2 {
		l.Fields = append(l.Fields, hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	return l
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

// A field value that starts or ends with spaces or tabs (which RFC 9113
// §8.2.1 forbids, and some servers send anyway: x/net/http2 checks only
// for control bytes) is taken without them, as an HTTP/1.1 reader takes
// them for the optional whitespace around the value (RFC 9110 §5.5).
// Passed on as they came, an HTTP/2 client that checks (nghttp2, so
// curl and Envoy) would take the proxy's response for a malformed one.
func TestParseHeaderBlockTrimsValueEdgeWhitespace(t *testing.T) {
	var hb headerBlock
	parseHeaderBlock(headersFrame(false, ":status", "200", "x-sp", " v ", "x-tab", "\tw\t", "x-in", "a  b", "content-length", " 5"), &hb)
	if hb.malformed != "" {
		t.Fatalf("head malformed: %s", hb.malformed)
	}
	for k, want := range map[string]string{"X-Sp": "v", "X-Tab": "w", "X-In": "a  b", "Content-Length": "5"} {
		if got := hb.header[k]; len(got) != 1 || got[0] != want {
			t.Errorf("head %s = %q, want %q", k, got, want)
		}
	}
	if hb.resp.ContentLength != 5 {
		t.Errorf("ContentLength %d, want 5", hb.resp.ContentLength)
	}
	parseHeaderBlock(headersFrame(true, "grpc-status", "0 ", "x-sig", " s"), &hb)
	if hb.malformed != "" || hb.header.Get("Grpc-Status") != "0" || hb.header["X-Sig"][0] != "s" {
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

// FuzzHeaderDecoderAsXNet decodes a header block, split between a
// HEADERS frame and a CONTINUATION, with headerDecoder and with x/net's
// Framer (ReadMetaHeaders): both must give the same fields, the same
// truncation, or errors of the same kind and code.
func FuzzHeaderDecoderAsXNet(f *testing.F) {
	enc := func(kv ...string) []byte {
		var b bytes.Buffer
		e := hpack.NewEncoder(&b)
		for i := 0; i+1 < len(kv); i += 2 {
			e.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
		}
		return b.Bytes()
	}
	f.Add(enc(":status", "200", "content-type", "application/grpc", "trailer", "grpc-status"), uint8(3), uint16(4096))
	f.Add(enc("grpc-status", "0", "grpc-message", "ok"), uint8(0), uint16(40))
	f.Add(enc(":status", "200", "X-Upper", "v"), uint8(1), uint16(4096))
	f.Add(enc("x", "1", ":status", "200"), uint8(200), uint16(4096))
	f.Add(enc(":status", "200", ":status", "204"), uint8(2), uint16(4096))
	f.Add(enc(":status", "200", ":path", "/"), uint8(2), uint16(4096))
	f.Add(enc(":status", "200", "bad", "a\x00b"), uint8(2), uint16(4096))
	f.Add([]byte{0xff, 0xff, 0xff}, uint8(1), uint16(4096))
	f.Fuzz(func(t *testing.T, block []byte, split uint8, maxList uint16) {
		if len(block) > 8000 {
			return
		}
		k := min(int(split), len(block))
		var wire bytes.Buffer
		w := http2.NewFramer(&wire, nil)
		w.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:k], EndHeaders: k == len(block), EndStream: split%2 == 0})
		if k < len(block) {
			w.WriteContinuation(1, true, block[k:])
		}
		limit := uint32(maxList) + 1

		xr := http2.NewFramer(nil, bytes.NewReader(wire.Bytes()))
		xr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
		xr.MaxHeaderListSize = limit
		xf, xerr := xr.ReadFrame()

		r := http2.NewFramer(nil, bytes.NewReader(wire.Bytes()))
		var d headerDecoder
		d.init(limit)
		hf, err := r.ReadFrame()
		var got *fieldList
		if err == nil {
			got, err = d.read(r, hf.(*http2.HeadersFrame))
		}

		if (xerr == nil) != (err == nil) {
			t.Fatalf("x/net: %v; ours: %v", xerr, err)
		}
		if err != nil {
			var xce, ce http2.ConnectionError
			var xse, se http2.StreamError
			switch {
			case errors.As(xerr, &xce):
				if !errors.As(err, &ce) || ce != xce {
					t.Fatalf("x/net: %v; ours: %v", xerr, err)
				}
			case errors.As(xerr, &xse):
				if !errors.As(err, &se) || se.Code != xse.Code || se.StreamID != xse.StreamID {
					t.Fatalf("x/net: %v; ours: %v", xerr, err)
				}
			}
			return
		}
		mh := xf.(*http2.MetaHeadersFrame)
		if !slices.Equal(mh.Fields, got.Fields) || mh.Truncated != got.Truncated ||
			mh.StreamEnded() != got.endStream || mh.StreamID != got.streamID {
			t.Fatalf("x/net: %v truncated %v; ours: %v truncated %v", mh.Fields, mh.Truncated, got.Fields, got.Truncated)
		}
		parseHeaderBlock(got, new(headerBlock)) // must not panic
	})
}

// A malformed response header block is the stream's error, its cause
// naming this package as its other errors do.
func TestHeaderDecoderMalformedCause(t *testing.T) {
	var block bytes.Buffer
	e := hpack.NewEncoder(&block)
	e.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
	e.WriteField(hpack.HeaderField{Name: "X-Up", Value: "1"})
	var wire bytes.Buffer
	http2.NewFramer(&wire, nil).WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block.Bytes(), EndHeaders: true})
	r := http2.NewFramer(nil, &wire)
	f, err := r.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	var d headerDecoder
	d.init(1 << 20)
	_, err = d.read(r, f.(*http2.HeadersFrame))
	var se http2.StreamError
	if !errors.As(err, &se) || se.StreamID != 1 || se.Code != http2.ErrCodeProtocol {
		t.Fatalf("%v, want a stream error PROTOCOL_ERROR on stream 1", err)
	}
	if !errors.Is(se.Cause, h2fields.ErrFieldName) || se.Cause.Error() != "h2client: invalid header field name" {
		t.Errorf("cause %q, want h2fields.ErrFieldName as %q", se.Cause, "h2client: invalid header field name")
	}
}
