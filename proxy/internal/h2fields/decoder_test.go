package h2fields

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// encoder encodes header blocks with one HPACK encoder, so that the
// dynamic table carries from block to block.
type encoder struct {
	buf bytes.Buffer
	enc *hpack.Encoder
}

func newEncoder() *encoder {
	e := &encoder{}
	e.enc = hpack.NewEncoder(&e.buf)
	return e
}

// block encodes fields kv (name, value, ...).
func (e *encoder) block(kv ...string) []byte {
	e.buf.Reset()
	for i := 0; i+1 < len(kv); i += 2 {
		e.enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	return bytes.Clone(e.buf.Bytes())
}

// decode decodes the block of stream id made of frags.
func decode(d *Decoder, id uint32, frags ...[]byte) (*List, error) {
	d.Begin()
	for _, frag := range frags {
		if err := d.Write(frag); err != nil {
			return nil, err
		}
	}
	return d.End(id)
}

// describe says what decoding a block gave, in the same words for
// Decoder and for x/net's Framer.
func describe(id uint32, fields []hpack.HeaderField, truncated bool, err error) string {
	var se http2.StreamError
	var ce http2.ConnectionError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("stream error %d %v", se.StreamID, se.Code)
	case errors.As(err, &ce):
		return fmt.Sprintf("connection error %v", http2.ErrCode(ce))
	case err != nil:
		return "error " + err.Error()
	}
	var s strings.Builder
	fmt.Fprintf(&s, "block %d", id)
	if truncated {
		s.WriteString(" truncated")
	}
	for _, f := range fields {
		fmt.Fprintf(&s, " %q=%q", f.Name, f.Value)
	}
	return s.String()
}

var reqFields = []string{":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/"}

func withReq(kv ...string) []string { return append(append([]string(nil), reqFields...), kv...) }

// TestDecoderChecks pins each check of a block's field list, with the
// cause a malformed one is reported with.
func TestDecoderChecks(t *testing.T) {
	cases := []struct {
		name       string
		maxList    uint32 // 0: 1 MiB
		refuseEdge bool
		kv         []string
		split      int // the fragment boundaries: 0, none; n, every n bytes
		want       string
		cause      error
	}{
		{name: "request", kv: withReq("x-a", "1"),
			want: `block 1 ":method"="GET" ":scheme"="http" ":authority"="x" ":path"="/" "x-a"="1"`},
		{name: "response", kv: []string{":status", "200", "content-type", "text/plain"},
			want: `block 1 ":status"="200" "content-type"="text/plain"`},
		{name: "trailers", kv: []string{"grpc-status", "0"}, want: `block 1 "grpc-status"="0"`},
		{name: "fields split across fragments", kv: withReq("x-a", "1", "x-b", "2"), split: 3,
			want: `block 1 ":method"="GET" ":scheme"="http" ":authority"="x" ":path"="/" "x-a"="1" "x-b"="2"`},
		{name: "invalid field value", kv: withReq("x-a", "a\x00b"),
			want: "stream error 1 PROTOCOL_ERROR", cause: ErrFieldValue},
		{name: "invalid pseudo-header value", kv: []string{":method", "GET", ":path", "/\r\n"},
			want: "stream error 1 PROTOCOL_ERROR", cause: ErrFieldValue},
		{name: "uppercase field name", kv: withReq("X-A", "1"),
			want: "stream error 1 PROTOCOL_ERROR", cause: ErrFieldName},
		{name: "field name not a token", kv: withReq("x a", "1"),
			want: "stream error 1 PROTOCOL_ERROR", cause: ErrFieldName},
		{name: "empty field name", kv: withReq("", "1"),
			want: "stream error 1 PROTOCOL_ERROR", cause: ErrFieldName},
		{name: "pseudo-header after a regular field", kv: []string{":method", "GET", "x-a", "1", ":path", "/"},
			want: "stream error 1 PROTOCOL_ERROR", cause: ErrPseudoAfterRegular},
		{name: "unknown pseudo-header", kv: append([]string{":foo", "1"}, reqFields...),
			want: "stream error 1 PROTOCOL_ERROR", cause: ErrUnknownPseudo},
		{name: "duplicate pseudo-header", kv: []string{":status", "200", ":status", "204"},
			want: "stream error 1 PROTOCOL_ERROR", cause: ErrDuplicatePseudo},
		{name: "request and response pseudo-headers", kv: append([]string{":status", "200"}, reqFields...),
			want: "stream error 1 PROTOCOL_ERROR", cause: ErrMixedPseudo},
		{name: "edge whitespace let through", kv: withReq("x-a", " 1", "x-b", "2\t"),
			want: `block 1 ":method"="GET" ":scheme"="http" ":authority"="x" ":path"="/" "x-a"=" 1" "x-b"="2\t"`},
		{name: "value starting with a space refused", refuseEdge: true, kv: withReq("x-a", " 1"),
			want: "stream error 1 PROTOCOL_ERROR", cause: ErrFieldEdgeSpace},
		{name: "pseudo-header value ending with a tab refused", refuseEdge: true, kv: []string{":method", "GET", ":path", "/\t"},
			want: "stream error 1 PROTOCOL_ERROR", cause: ErrFieldEdgeSpace},
		{name: "whitespace inside a value kept", refuseEdge: true, kv: []string{"x-a", "a \tb", "x-b", ""},
			want: `block 1 "x-a"="a \tb" "x-b"=""`},
		{name: "malformed field before edge whitespace", refuseEdge: true, kv: []string{"x-a", " 1", "X-B", "2"},
			want: "stream error 1 PROTOCOL_ERROR", cause: ErrFieldName},
		{name: "edge whitespace past the limit not seen", maxList: 100, refuseEdge: true,
			kv:   []string{"x-a", strings.Repeat("a", 30), "x-b", strings.Repeat("b", 30) + " "},
			want: `block 1 truncated "x-a"="aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"`},
		{name: "list over the limit truncated", maxList: 100, kv: withReq("x-a", "1", "x-b", strings.Repeat("b", 40)),
			want: `block 1 truncated ":method"="GET" ":scheme"="http"`},
		{name: "trailer declarations on a budget of their own", maxList: 250,
			// The pseudo-headers and x-a take 211 bytes of the regular
			// budget; the declaration of two trailers (71 bytes) fits
			// its own.
			kv:   withReq("x-a", strings.Repeat("a", 10), "trailer", "x-t, x-u"),
			want: `block 1 ":method"="GET" ":scheme"="http" ":authority"="x" ":path"="/" "x-a"="aaaaaaaaaa" "trailer"="x-t, x-u"`},
		{name: "trailer declarations over their budget", maxList: 100, kv: []string{"trailer", "a,b,c,d"},
			want: `block 1 truncated`},
		// Each declared name counts as a field of 32 bytes and its name,
		// with the whitespace after a comma: "x-t, x-u" is 71 bytes.
		{name: "trailer declarations that fill their budget", maxList: 71, kv: []string{"trailer", "x-t, x-u"},
			want: `block 1 "trailer"="x-t, x-u"`},
		{name: "trailer declarations a byte over their budget", maxList: 70, kv: []string{"trailer", "x-t, x-u"},
			want: `block 1 truncated`},
		{name: "fields that fill the list", maxList: 72, kv: []string{"x-a", "1", "x-b", "2"},
			want: `block 1 "x-a"="1" "x-b"="2"`},
		{name: "fields a byte over the list", maxList: 71, kv: []string{"x-a", "1", "x-b", "2"},
			want: `block 1 truncated "x-a"="1"`},
		{name: "string longer than the list limit", maxList: 100, kv: []string{"x-a", strings.Repeat("a", 101)},
			want: "connection error COMPRESSION_ERROR"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			maxList := tc.maxList
			if maxList == 0 {
				maxList = 1 << 20
			}
			var d Decoder
			d.Init(maxList)
			d.RefuseEdgeSpace = tc.refuseEdge
			block := newEncoder().block(tc.kv...)
			frags := [][]byte{block}
			if tc.split > 0 {
				frags = nil
				for p := block; len(p) > 0; {
					n := min(tc.split, len(p))
					frags, p = append(frags, p[:n]), p[n:]
				}
			}
			l, err := decode(&d, 1, frags...)
			var got string
			if l != nil {
				got = describe(1, l.Fields, l.Truncated, err)
			} else {
				got = describe(1, nil, false, err)
			}
			if got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
			var se http2.StreamError
			if errors.As(err, &se) && se.Cause != tc.cause {
				t.Errorf("cause %v, want %v", se.Cause, tc.cause)
			}
		})
	}
}

// TestDecoderErrors pins the connection errors: fragments the Decoder
// refuses to decode, and blocks that do not decode.
func TestDecoderErrors(t *testing.T) {
	var d Decoder
	d.Init(100)
	if _, err := decode(&d, 1, make([]byte, 401)); err != http2.ConnectionError(http2.ErrCodeProtocol) {
		t.Errorf("fragment more than twice the list limit: %v, want PROTOCOL_ERROR", err)
	}
	e := newEncoder()
	if _, err := decode(&d, 1, e.block(withReq("x-a", strings.Repeat("a", 60))...), e.block("x-b", "1")); err != http2.ConnectionError(http2.ErrCodeProtocol) {
		t.Errorf("fragment after the list went over: %v, want PROTOCOL_ERROR", err)
	}
	d.Init(1 << 20)
	e = newEncoder()
	if _, err := decode(&d, 1, e.block(withReq("X-A", "1")...), e.block("x-b", "1")); err != http2.ConnectionError(http2.ErrCodeProtocol) {
		t.Errorf("fragment after a malformed field: %v, want PROTOCOL_ERROR", err)
	}
	d.Init(1 << 20)
	if _, err := decode(&d, 1, []byte{0xff, 0xff, 0xff, 0xff}); err != http2.ConnectionError(http2.ErrCodeCompression) {
		t.Errorf("bad HPACK: %v, want COMPRESSION_ERROR", err)
	}
	d.Init(1 << 20)
	b := newEncoder().block("x-a", "12345")
	if _, err := decode(&d, 1, b[:len(b)-2]); err != http2.ConnectionError(http2.ErrCodeCompression) {
		t.Errorf("block ending inside a field: %v, want COMPRESSION_ERROR", err)
	}
}

// TestDecoderInStep: a block after a malformed or truncated one is
// decoded against the dynamic table those left, and with fresh budgets
// and checks.
func TestDecoderInStep(t *testing.T) {
	var d Decoder
	d.Init(100)
	e := newEncoder()
	long := strings.Repeat("a", 30)
	if l, err := decode(&d, 1, e.block("x-a", long, "x-b", long, "x-c", "")); err != nil || !l.Truncated {
		t.Fatalf("first block: %v, %v; want truncated", l, err)
	}
	var se http2.StreamError
	if _, err := decode(&d, 3, e.block("x-a", long, "X-Up", "1")); !errors.As(err, &se) || se.Cause != ErrFieldName {
		t.Fatalf("second block: %v, want a stream error for %v", err, ErrFieldName)
	}
	l, err := decode(&d, 5, e.block("x-c", "", "x-a", long))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := describe(5, l.Fields, l.Truncated, nil), `block 5 "x-c"="" "x-a"="`+long+`"`; got != want {
		t.Errorf("third block: %s, want %s", got, want)
	}
}

// TestDecoderRelease: Release drops what the fields refer to, and a
// buffer grown past keptFields.
func TestDecoderRelease(t *testing.T) {
	var d Decoder
	d.Init(1 << 20)
	l, err := decode(&d, 1, newEncoder().block(withReq("x-a", "1")...))
	if err != nil {
		t.Fatal(err)
	}
	fields := l.Fields
	d.Release()
	for _, f := range fields {
		if f != (hpack.HeaderField{}) {
			t.Fatalf("field %q kept after Release", f.Name)
		}
	}
	var kv []string
	for i := range keptFields + 1 {
		kv = append(kv, fmt.Sprintf("x-%d", i), "v")
	}
	if l, err = decode(&d, 3, newEncoder().block(kv...)); err != nil || len(l.Fields) != keptFields+1 {
		t.Fatalf("%d fields, %v", len(l.Fields), err)
	}
	d.Release()
	if d.list.Fields != nil {
		t.Errorf("buffer of %d fields kept", cap(d.list.Fields))
	}
}

// FuzzDecoderAsXNet holds Decoder to x/net's Framer with
// ReadMetaHeaders: two blocks, each a HEADERS frame and a CONTINUATION
// split where the input says, under a list limit it chooses, give the
// same fields, truncation, or errors of the same kind and code; with
// RefuseEdgeSpace, a block x/net accepts is malformed if a value starts
// or ends with SP or HTAB.
func FuzzDecoderAsXNet(f *testing.F) {
	e := newEncoder()
	f.Add(e.block(withReq("x-a", "1", "trailer", "x-t")...), e.block("x-t", "v"), uint8(5), uint16(0), false)
	f.Add(e.block(":status", "200", "content-type", "application/grpc"), e.block("grpc-status", "0"), uint8(0), uint16(60), false)
	f.Add(e.block(withReq("x-a", " 1")...), e.block(withReq("x-a", "1")...), uint8(200), uint16(0), true)
	f.Add(e.block("x", "1", ":status", "200"), e.block(":status", "200", ":path", "/"), uint8(2), uint16(0), false)
	f.Add(e.block(":status", "200", "X-Up", "v"), e.block(":status", "200", "bad", "a\x00b"), uint8(1), uint16(0), false)
	f.Add([]byte{0xff, 0xff, 0xff}, []byte{}, uint8(1), uint16(0), false)
	f.Fuzz(func(t *testing.T, first, second []byte, cut uint8, limit uint16, refuseEdge bool) {
		if len(first) > 8000 || len(second) > 8000 {
			return
		}
		maxList := uint32(limit) + 1
		blocks := [][]byte{first, second}
		frags := make([][][]byte, len(blocks))
		var wire bytes.Buffer
		w := http2.NewFramer(&wire, nil)
		for i, b := range blocks {
			id := uint32(2*i + 1)
			k := min(int(cut), len(b))
			frags[i] = [][]byte{b[:k]}
			w.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: b[:k], EndHeaders: k == len(b)})
			if k < len(b) {
				frags[i] = append(frags[i], b[k:])
				w.WriteContinuation(id, true, b[k:])
			}
		}

		xr := http2.NewFramer(nil, bytes.NewReader(wire.Bytes()))
		xr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
		xr.MaxHeaderListSize = maxList
		var d Decoder
		d.Init(maxList)
		d.RefuseEdgeSpace = refuseEdge
		for i := range blocks {
			id := uint32(2*i + 1)
			xf, xerr := xr.ReadFrame()
			var want string
			if mh, ok := xf.(*http2.MetaHeadersFrame); ok && xerr == nil {
				if refuseEdge && edgeSpace(mh.Fields) {
					xerr = http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
				}
				want = describe(id, mh.Fields, mh.Truncated, xerr)
			} else {
				want = describe(id, nil, false, xerr)
			}
			l, err := decode(&d, id, frags[i]...)
			var got string
			if l != nil {
				got = describe(id, l.Fields, l.Truncated, err)
			} else {
				got = describe(id, nil, false, err)
			}
			if got != want {
				t.Fatalf("block %d:\n got %s\nx/net %s", i, got, want)
			}
			if strings.HasPrefix(got, "connection error") {
				return
			}
		}
	})
}

// edgeSpace says whether a field value starts or ends with SP or HTAB.
func edgeSpace(fields []hpack.HeaderField) bool {
	for _, f := range fields {
		if v := strings.Trim(f.Value, " \t"); len(v) != len(f.Value) {
			return true
		}
	}
	return false
}

// BenchmarkDecode decodes a browser's GET request, its fields in the
// dynamic table after the first: the per-field path of every request.
func BenchmarkDecode(b *testing.B) {
	block := newEncoder().block(withReq(
		"user-agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
		"accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
		"accept-language", "en-US,en;q=0.5",
		"accept-encoding", "gzip, deflate, br, zstd",
		"cookie", "session=0123456789abcdef",
		"x-request-id", "5c0f6b9e-3f0e-4d7a-9d0b-6a1e2b3c4d5e",
	)...)
	var d Decoder
	d.Init(1 << 20)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decode(&d, 1, block); err != nil {
			b.Fatal(err)
		}
		d.Release()
	}
}
