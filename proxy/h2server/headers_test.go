package h2server

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/outrigger-mesh/outrigger/proxy/internal/h2fields"
)

// readOutcomes reads frames from in until an error that ends the
// connection, describing what each gave: with ref, as x/net's Framer
// with ReadMetaHeaders decodes header blocks (the model, but for padding
// longer than a HEADERS frame, which the server makes a connection
// error, for values that start or end with whitespace, malformed for
// the server, and for the bound on CONTINUATION frames, lifted here and
// tested on its own); without it, as the server does, with headerReader.
func readOutcomes(in []byte, maxList uint32, ref bool) []string {
	br := bufio.NewReaderSize(bytes.NewReader(in), readBufSize)
	fr := http2.NewFramer(nil, br)
	fr.SetMaxReadFrameSize(defaultMaxFrame)
	var hr *headerReader
	if ref {
		fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
		fr.MaxHeaderListSize = maxList
	} else {
		hr = newHeaderReader(fr, br, maxList)
		// x/net bounds a block's CONTINUATIONs by its bytes only.
		hr.maxConts = 1 << 30
	}
	var out []string
	for i := 0; i < 1000; i++ {
		var f http2.Frame
		var b *headerBlock
		var err error
		if ref {
			var fh http2.FrameHeader
			if fh, err = fr.ReadFrameHeader(); err == nil {
				f, err = fr.ReadFrameForHeader(fh)
			}
			var se http2.StreamError
			if fh.Type == http2.FrameHeaders && errors.As(err, &se) && se.Cause == nil {
				// parseHeadersFrame's stream error for padding longer
				// than the frame, which the server makes a connection
				// error (see readHeaders); readMetaFrame's stream
				// errors have a cause.
				err = http2.ConnectionError(http2.ErrCodeProtocol)
			}
		} else {
			f, b, err = hr.readFrame()
		}
		if mh, ok := f.(*http2.MetaHeadersFrame); ok && err == nil && edgeSpace(mh.Fields) {
			// x/net accepts values starting or ending with SP or HTAB,
			// which the server makes malformed (RFC 9113 §8.2.1).
			f, err = nil, http2.StreamError{StreamID: mh.StreamID, Code: http2.ErrCodeProtocol}
		}
		if mh, ok := f.(*http2.MetaHeadersFrame); ok && err == nil {
			b = &headerBlock{
				streamID: mh.StreamID, endStream: mh.StreamEnded(),
				hasPriority: mh.HasPriority(), priority: mh.Priority,
				List: &h2fields.List{Fields: mh.Fields, Truncated: mh.Truncated},
			}
		}
		var se http2.StreamError
		var ce http2.ConnectionError
		switch {
		case errors.As(err, &se):
			out = append(out, fmt.Sprintf("stream error %d %v", se.StreamID, se.Code))
			continue
		case errors.As(err, &ce):
			return append(out, fmt.Sprintf("connection error %v", http2.ErrCode(ce)))
		case err != nil:
			return append(out, "error "+err.Error())
		case b != nil:
			out = append(out, describeBlock(b))
			if hr != nil {
				hr.dec.Release()
			}
		default:
			out = append(out, f.Header().Type.String())
		}
	}
	return out
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

func describeBlock(b *headerBlock) string {
	var s strings.Builder
	fmt.Fprintf(&s, "headers %d end=%v", b.streamID, b.endStream)
	if b.hasPriority {
		fmt.Fprintf(&s, " priority=%d,%v,%d", b.priority.StreamDep, b.priority.Exclusive, b.priority.Weight)
	}
	if b.Truncated {
		s.WriteString(" truncated")
	}
	for _, f := range b.Fields {
		fmt.Fprintf(&s, " %q=%q", f.Name, f.Value)
	}
	return s.String()
}

// frameWriter builds client frames with one HPACK encoder, so that the
// dynamic table carries from block to block.
type frameWriter struct {
	out bytes.Buffer
	fr  *http2.Framer
	hb  bytes.Buffer
	enc *hpack.Encoder
}

func newFrameWriter() *frameWriter {
	w := &frameWriter{}
	w.fr = http2.NewFramer(&w.out, nil)
	w.enc = hpack.NewEncoder(&w.hb)
	return w
}

func (w *frameWriter) block(kv ...string) []byte {
	w.hb.Reset()
	for i := 0; i < len(kv); i += 2 {
		w.enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	return append([]byte(nil), w.hb.Bytes()...)
}

func (w *frameWriter) headers(id uint32, end bool, kv ...string) {
	w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: w.block(kv...), EndStream: end, EndHeaders: true})
}

var reqFields = []string{":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/"}

func withReq(kv ...string) []string { return append(append([]string(nil), reqFields...), kv...) }

// TestHeaderReaderChecks pins each check the header block decoder makes,
// and that it decides as x/net's Framer (ReadMetaHeaders) does.
func TestHeaderReaderChecks(t *testing.T) {
	cases := []struct {
		name    string
		maxList uint32
		write   func(w *frameWriter)
		want    []string // outcomes; "..." matches the rest
	}{
		{"request", 0, func(w *frameWriter) { w.headers(1, true, withReq("x-a", "1")...) },
			[]string{`headers 1 end=true ":method"="GET" ":scheme"="http" ":authority"="x" ":path"="/" "x-a"="1"`}},
		{"priority carried", 0, func(w *frameWriter) {
			w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: w.block(reqFields...), EndHeaders: true,
				Priority: http2.PriorityParam{StreamDep: 1, Weight: 7, Exclusive: true}})
		}, []string{`headers 3 end=false priority=1,true,7 ":method"="GET" ":scheme"="http" ":authority"="x" ":path"="/"`}},
		{"invalid field value", 0, func(w *frameWriter) { w.headers(1, true, withReq("x-a", "a\x00b")...) },
			[]string{"stream error 1 PROTOCOL_ERROR"}},
		{"invalid field value in a pseudo-header", 0, func(w *frameWriter) {
			w.headers(1, true, ":method", "GET", ":scheme", "http", ":path", "/\r\n")
		}, []string{"stream error 1 PROTOCOL_ERROR"}},
		{"field value starting with a space", 0, func(w *frameWriter) { w.headers(1, true, withReq("x-a", " 1")...) },
			[]string{"stream error 1 PROTOCOL_ERROR"}},
		{"field value ending with a tab", 0, func(w *frameWriter) { w.headers(1, true, withReq("x-a", "1\t")...) },
			[]string{"stream error 1 PROTOCOL_ERROR"}},
		{"pseudo-header value ending with a space", 0, func(w *frameWriter) {
			w.headers(1, true, ":method", "GET", ":scheme", "http", ":path", "/ ")
		}, []string{"stream error 1 PROTOCOL_ERROR"}},
		{"whitespace inside a field value", 0, func(w *frameWriter) { w.headers(1, true, withReq("x-a", "a \tb", "x-b", "")...) },
			[]string{`headers 1 end=true ":method"="GET" ":scheme"="http" ":authority"="x" ":path"="/" "x-a"="a \tb" "x-b"=""`}},
		{"uppercase field name", 0, func(w *frameWriter) { w.headers(1, true, withReq("X-A", "1")...) },
			[]string{"stream error 1 PROTOCOL_ERROR"}},
		{"field name not a token", 0, func(w *frameWriter) { w.headers(1, true, withReq("x a", "1")...) },
			[]string{"stream error 1 PROTOCOL_ERROR"}},
		{"empty field name", 0, func(w *frameWriter) { w.headers(1, true, withReq("", "1")...) },
			[]string{"stream error 1 PROTOCOL_ERROR"}},
		{"pseudo-header after a regular field", 0, func(w *frameWriter) {
			w.headers(1, true, ":method", "GET", "x-a", "1", ":path", "/")
		}, []string{"stream error 1 PROTOCOL_ERROR"}},
		{"unknown pseudo-header", 0, func(w *frameWriter) { w.headers(1, true, append([]string{":foo", "1"}, reqFields...)...) },
			[]string{"stream error 1 PROTOCOL_ERROR"}},
		{"duplicate pseudo-header", 0, func(w *frameWriter) { w.headers(1, true, append([]string{":path", "/a"}, reqFields...)...) },
			[]string{"stream error 1 PROTOCOL_ERROR"}},
		{"request and response pseudo-headers", 0, func(w *frameWriter) { w.headers(1, true, append([]string{":status", "200"}, reqFields...)...) },
			[]string{"stream error 1 PROTOCOL_ERROR"}},
		{"response pseudo-header alone passes the decoder", 0, func(w *frameWriter) { w.headers(1, true, ":status", "200") },
			[]string{`headers 1 end=true ":status"="200"`}},
		{"list over the limit is truncated", 100, func(w *frameWriter) {
			w.headers(1, true, withReq("x-a", "1", "x-b", strings.Repeat("b", 40))...)
		}, []string{`headers 1 end=true truncated ":method"="GET" ":scheme"="http"`}},
		{"trailer declarations have a budget of their own", 250, func(w *frameWriter) {
			// The pseudo-headers and x-a take 211 bytes of the regular
			// budget; the declaration of two trailers (71 bytes) fits
			// its own.
			w.headers(1, false, withReq("x-a", strings.Repeat("a", 10), "trailer", "x-t, x-u")...)
		}, []string{`headers 1 end=false ":method"="GET" ":scheme"="http" ":authority"="x" ":path"="/" "x-a"="aaaaaaaaaa" "trailer"="x-t, x-u"`}},
		{"trailer declarations over their budget", 100, func(w *frameWriter) {
			w.headers(1, false, "trailer", "a,b,c,d")
		}, []string{`headers 1 end=false truncated`}},
		{"fragment far beyond the limit", 100, func(w *frameWriter) {
			w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: make([]byte, 401), EndHeaders: true})
		}, []string{"connection error PROTOCOL_ERROR"}},
		{"CONTINUATION after the list went over", 100, func(w *frameWriter) {
			b := w.block(withReq("x-a", strings.Repeat("a", 60))...)
			w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: b})
			w.fr.WriteContinuation(1, true, w.block("x-b", "1"))
		}, []string{"connection error PROTOCOL_ERROR"}},
		{"CONTINUATION after a malformed field", 0, func(w *frameWriter) {
			w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: w.block(withReq("X-A", "1")...)})
			w.fr.WriteContinuation(1, true, w.block("x-b", "1"))
		}, []string{"connection error PROTOCOL_ERROR"}},
		{"bad HPACK", 0, func(w *frameWriter) {
			w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0xff, 0xff, 0xff, 0xff}, EndHeaders: true})
		}, []string{"connection error COMPRESSION_ERROR"}},
		{"block ending inside a field", 0, func(w *frameWriter) {
			b := w.block(withReq("x-a", "12345")...)
			w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: b[:len(b)-2], EndHeaders: true})
		}, []string{"connection error COMPRESSION_ERROR"}},
		{"string longer than the list limit", 100, func(w *frameWriter) { w.headers(1, true, "x-a", strings.Repeat("a", 101)) },
			[]string{"connection error COMPRESSION_ERROR"}},
		{"fields split across CONTINUATIONs", 0, func(w *frameWriter) {
			b := w.block(withReq("x-a", "1", "x-b", "2")...)
			w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: b[:3], EndStream: true})
			w.fr.WriteContinuation(1, false, b[3:10])
			w.fr.WriteContinuation(1, false, nil)
			w.fr.WriteContinuation(1, true, b[10:])
			w.headers(3, true, reqFields...)
		}, []string{
			`headers 1 end=true ":method"="GET" ":scheme"="http" ":authority"="x" ":path"="/" "x-a"="1" "x-b"="2"`,
			`headers 3 end=true ":method"="GET" ":scheme"="http" ":authority"="x" ":path"="/"`,
		}},
		{"CONTINUATION of another stream", 0, func(w *frameWriter) {
			w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: w.block(reqFields...)})
			w.fr.WriteContinuation(3, true, nil)
		}, []string{"connection error PROTOCOL_ERROR"}},
		{"other frame inside a block", 0, func(w *frameWriter) {
			w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: w.block(reqFields...)})
			w.fr.WritePing(false, [8]byte{})
		}, []string{"connection error PROTOCOL_ERROR"}},
		{"input ends inside a block", 0, func(w *frameWriter) {
			w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: w.block(reqFields...)})
		}, []string{"error EOF"}},
		{"block after a malformed one is decoded in step", 0, func(w *frameWriter) {
			w.headers(1, true, withReq("x-a", "1", "X-B", "2", "x-c", "3")...)
			w.headers(3, true, withReq("x-a", "1", "x-c", "3")...)
		}, []string{
			"stream error 1 PROTOCOL_ERROR",
			`headers 3 end=true ":method"="GET" ":scheme"="http" ":authority"="x" ":path"="/" "x-a"="1" "x-c"="3"`,
		}},
		{"block after a truncated one is decoded in step", 100, func(w *frameWriter) {
			// Block 3 refers to the fields block 1 added to the dynamic
			// table past the limit.
			w.headers(1, true, withReq("x-a", strings.Repeat("a", 30), "x-c", "")...)
			w.headers(3, true, "x-a", strings.Repeat("a", 30), "x-c", "")
		}, []string{
			`headers 1 end=true truncated ":method"="GET" ":scheme"="http"`,
			`headers 3 end=true "x-a"="aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" "x-c"=""`,
		}},
		{"HEADERS on stream 0", 0, func(w *frameWriter) {
			w.fr.WriteRawFrame(http2.FrameHeaders, http2.FlagHeadersEndHeaders, 0, w.block(reqFields...))
		}, []string{"connection error PROTOCOL_ERROR"}},
		{"padded HEADERS without its pad length", 0, func(w *frameWriter) {
			w.fr.WriteRawFrame(http2.FrameHeaders, http2.FlagHeadersEndHeaders|http2.FlagHeadersPadded, 1, nil)
		}, []string{"error unexpected EOF"}},
		{"HEADERS too short for its priority", 0, func(w *frameWriter) {
			w.fr.WriteRawFrame(http2.FrameHeaders, http2.FlagHeadersEndHeaders|http2.FlagHeadersPriority, 1, []byte{0, 0, 0, 3})
		}, []string{"error unexpected EOF"}},
		{"padding longer than the frame", 0, func(w *frameWriter) {
			w.fr.WriteRawFrame(http2.FrameHeaders, http2.FlagHeadersEndHeaders|http2.FlagHeadersPadded, 1, []byte{9, 0x82})
			w.headers(3, true, reqFields...)
		}, []string{"connection error PROTOCOL_ERROR"}},
		{"input ends inside a HEADERS frame", 0, func(w *frameWriter) {
			w.headers(1, true, reqFields...)
			w.out.Truncate(w.out.Len() - 2)
		}, []string{"error unexpected EOF"}},
		{"input ends after a HEADERS frame header", 0, func(w *frameWriter) {
			w.headers(1, true, reqFields...)
			w.out.Truncate(9)
		}, []string{"error EOF"}},
		{"HEADERS of the largest frame size", 0, func(w *frameWriter) {
			w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: w.block("x-a", strings.Repeat("a", defaultMaxFrame-100)),
				EndHeaders: true, PadLength: 90})
		}, []string{`headers 1 end=false "x-a"="` + strings.Repeat("a", defaultMaxFrame-100) + `"`}},
		{"trailers block", 0, func(w *frameWriter) { w.headers(1, true, "x-t", "v") },
			[]string{`headers 1 end=true "x-t"="v"`}},
		{"padded HEADERS", 0, func(w *frameWriter) {
			w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: w.block(reqFields...), EndHeaders: true, PadLength: 5})
		}, []string{`headers 1 end=false ":method"="GET" ":scheme"="http" ":authority"="x" ":path"="/"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newFrameWriter()
			tc.write(w)
			maxList := tc.maxList
			if maxList == 0 {
				maxList = 1 << 20
			}
			got := readOutcomes(w.out.Bytes(), maxList, false)
			// The last outcome of a clean input is its end.
			if n := len(got); n > 0 && got[n-1] == "error EOF" && tc.want[len(tc.want)-1] != "error EOF" {
				got = got[:n-1]
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			ref := readOutcomes(w.out.Bytes(), maxList, true)
			if n := len(ref); n > 0 && ref[n-1] == "error EOF" && tc.want[len(tc.want)-1] != "error EOF" {
				ref = ref[:n-1]
			}
			if strings.Join(got, "\n") != strings.Join(ref, "\n") {
				t.Errorf("x/net decides otherwise:\n%s", strings.Join(ref, "\n"))
			}
		})
	}
}

// FuzzHeaderReader holds the header block decoder to x/net's Framer with
// ReadMetaHeaders on arbitrary frames: the same blocks, fields and
// errors, frame by frame, under a list limit the input chooses.
func FuzzHeaderReader(f *testing.F) {
	w := newFrameWriter()
	w.headers(1, true, withReq("x-a", "1", "cookie", "a=b", "cookie", "c=d")...)
	b := w.block(withReq("x-a", "1", "trailer", "x-t")...)
	w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: b[:5], PadLength: 2,
		Priority: http2.PriorityParam{StreamDep: 1, Weight: 3}})
	w.fr.WriteContinuation(3, true, b[5:])
	w.headers(3, true, "x-t", "v")
	w.headers(5, true, withReq("X-Up", "1")...)
	f.Add(w.out.Bytes(), uint16(0))
	f.Add(w.out.Bytes(), uint16(150))
	for _, s := range fuzzSeeds() {
		f.Add(s, uint16(300))
	}
	f.Fuzz(func(t *testing.T, in []byte, limit uint16) {
		maxList := uint32(limit)
		if maxList == 0 {
			maxList = 1 << 20
		}
		got := readOutcomes(in, maxList, false)
		want := readOutcomes(in, maxList, true)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("got\n%s\nx/net\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})
}
