package h2server

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"strings"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// A request's HEADERS frame is parsed and its header block decoded here
// rather than by the Framer (x/net/http2's ReadMetaHeaders), whose
// HeadersFrame, MetaHeadersFrame, emit closure, its captured state and
// the growth of its Fields slice cost about ten allocations per request.
// headerReader makes the same checks, in the same order, with the same
// outcome (RFC 9113 §6.2, §8.1.1, §8.3, and x/net's parseHeadersFrame
// and Framer.readMetaFrame). The Framer still reads every frame header,
// which keeps HEADERS and CONTINUATION contiguous, and every other frame.
// Its fields go into a buffer the connection reuses; the request's
// header map is built from it, sized for it (newRequest).

// headerBlock is a decoded HEADERS frame with its CONTINUATIONs.
type headerBlock struct {
	streamID    uint32
	endStream   bool
	hasPriority bool
	priority    http2.PriorityParam
	// fields are the decoded fields, pseudo-header fields first (a
	// pseudo-header field after a regular one makes the block
	// malformed). They are valid until the next block is read.
	fields []hpack.HeaderField
	// truncated: the header list exceeded the limit; fields holds those
	// before the one that did not fit.
	truncated bool
}

// pseudoFields returns the pseudo-header fields of b.
func (b *headerBlock) pseudoFields() []hpack.HeaderField {
	for i, hf := range b.fields {
		if !hf.IsPseudo() {
			return b.fields[:i]
		}
	}
	return b.fields
}

// regularFields returns the regular fields of b.
func (b *headerBlock) regularFields() []hpack.HeaderField {
	for i, hf := range b.fields {
		if !hf.IsPseudo() {
			return b.fields[i:]
		}
	}
	return nil
}

// headerReader decodes a connection's request header blocks. Its emit
// method is the decoder's emit function for the connection's life: the
// state of the block being decoded lives here, not in a closure.
type headerReader struct {
	fr      *http2.Framer
	br      *bufio.Reader // what fr reads
	dec     *hpack.Decoder
	maxList uint32 // SETTINGS_MAX_HEADER_LIST_SIZE announced
	// maxConts bounds the CONTINUATION frames of one block (see
	// maxContinuations).
	maxConts int
	// blockOpen, when set, is called with true once a block goes on
	// past its HEADERS frame, and with false once its last
	// CONTINUATION is read (a block that fails ends the connection).
	blockOpen func(open bool)
	unread    int // bytes of the HEADERS frame being decoded left in br
	// typ is the type of the frame last read: the frame a stream
	// error is about.
	typ http2.FrameType

	block headerBlock
	// Budgets of the block being decoded: "trailer" fields count
	// against their own (as in x/net, so that a list of declared
	// trailers is bounded apart from the rest).
	headersRemain, trailersRemain uint32
	sawRegular                    bool
	invalid                       error // the first malformed field
	// edgeSpace: a field of the block has a value that starts or ends
	// with SP or HTAB.
	edgeSpace bool
}

// keptHeaderFields bounds the field buffer a connection keeps between
// blocks; one grown larger by a big block is dropped afterwards.
const keptHeaderFields = 64

// newHeaderReader reads frames with fr, which reads br; br's buffer
// must hold the largest frame fr reads.
func newHeaderReader(fr *http2.Framer, br *bufio.Reader, maxList uint32) *headerReader {
	hr := &headerReader{fr: fr, br: br, maxList: maxList, maxConts: maxContinuations(maxList)}
	hr.dec = hpack.NewDecoder(4096, hr.emit)
	// No string longer than the whole list is accepted (a decoding
	// error, as with x/net's Framer).
	hr.dec.SetMaxStringLength(int(maxList))
	return hr
}

// maxContinuations is how many CONTINUATION frames a block may have
// under a header list limit of maxList. Empty (or nearly empty) frames
// cost the reader a frame each and no budget of bytes or fields, so a
// block that never ends (CVE-2024-27316's class) is bounded in frames:
// 16, and one per KiB of the limit, which lets a block of twice the
// limit (fields and "trailer" fields) come in frames of 2 KiB, an eighth
// of the frame size. Beyond it the connection ends ENHANCE_YOUR_CALM.
func maxContinuations(maxList uint32) int {
	return 16 + int(maxList>>10)
}

var (
	errFieldValue         = errors.New("h2server: invalid header field value")
	errFieldName          = errors.New("h2server: invalid header field name")
	errFieldEdgeSpace     = errors.New("h2server: header field value starts or ends with whitespace")
	errPseudoAfterRegular = errors.New("h2server: pseudo-header field after a regular one")
	errUnknownPseudo      = errors.New("h2server: unknown pseudo-header field")
	errDuplicatePseudo    = errors.New("h2server: duplicate pseudo-header field")
	errMixedPseudo        = errors.New("h2server: request and response pseudo-header fields mixed")
)

// emit takes one decoded field.
func (hr *headerReader) emit(hf hpack.HeaderField) {
	if !httpguts.ValidHeaderFieldValue(hf.Value) {
		hr.invalid = errFieldValue
	}
	if strings.HasPrefix(hf.Name, ":") {
		if hr.sawRegular {
			hr.invalid = errPseudoAfterRegular
		}
	} else {
		hr.sawRegular = true
		if !validWireFieldName(hf.Name) {
			hr.invalid = errFieldName
		}
	}
	if hr.invalid != nil {
		hr.dec.SetEmitEnabled(false)
		return
	}
	remain := &hr.headersRemain
	var size uint32
	if hf.Name == "trailer" {
		// Each declared name counts as a field of its own, without
		// decoding the list (whitespace after commas counts too).
		remain = &hr.trailersRemain
		n := strings.Count(hf.Value, ",") + 1
		size = uint32(len(hf.Value)-n+1) + uint32(n)*hpack.HeaderField{}.Size()
	} else {
		size = hf.Size()
	}
	if size > *remain {
		hr.dec.SetEmitEnabled(false)
		hr.block.truncated = true
		hr.headersRemain, hr.trailersRemain = 0, 0
		return
	}
	*remain -= size
	if v := hf.Value; v != "" && (v[0] == ' ' || v[0] == '\t' || v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		hr.edgeSpace = true
	}
	hr.block.fields = append(hr.block.fields, hf)
}

// validWireFieldName reports whether v is a token without uppercase
// letters (RFC 9113 §8.2.1).
func validWireFieldName(v string) bool {
	if v == "" {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !httpguts.IsTokenRune(rune(c)) || 'A' <= c && c <= 'Z' {
			return false
		}
	}
	return true
}

// readFrame reads the next frame as the Framer's ReadFrame does, but a
// HEADERS frame, which it parses and decodes itself with its
// CONTINUATIONs: it then returns the block (valid until the next call)
// and a nil Frame. Its errors are those of x/net's Framer with
// ReadMetaHeaders set: http2.ConnectionError for what ends the
// connection (a HEADERS on stream 0, a fragment far beyond the list
// limit, a CONTINUATION after a malformed field, HPACK errors:
// COMPRESSION_ERROR; and padding longer than the frame, a stream error
// for x/net; ENHANCE_YOUR_CALM for a block of more CONTINUATIONs than
// maxContinuations, which x/net does not bound), http2.StreamError for
// a malformed field list, and the
// errors of reading frames
// (io.ErrUnexpectedEOF for a frame too short for its padding or
// priority fields, as x/net has it).
func (hr *headerReader) readFrame() (http2.Frame, *headerBlock, error) {
	fh, err := hr.fr.ReadFrameHeader()
	if err != nil {
		return nil, nil, err
	}
	hr.typ = fh.Type
	if fh.Type != http2.FrameHeaders {
		f, err := hr.fr.ReadFrameForHeader(fh)
		return f, nil, err
	}
	// The payload is read in place: ReadFrameHeader has bounded its
	// length by the read frame size, which the reader's buffer holds.
	n := int(fh.Length)
	p, err := hr.br.Peek(n)
	if err != nil {
		if len(p) > 0 && err == io.EOF {
			err = io.ErrUnexpectedEOF // as io.ReadFull has it
		}
		return nil, nil, err
	}
	hr.unread = n
	b, err := hr.readHeaders(fh, p)
	hr.discard()
	return nil, b, err
}

// The reader's buffer holds the largest frame read (see readFrame).
var _ [readBufSize - defaultMaxFrame]struct{}

// discard drops the HEADERS frame's payload from the reader.
func (hr *headerReader) discard() {
	if hr.unread > 0 {
		_, _ = hr.br.Discard(hr.unread)
		hr.unread = 0
	}
}

// readHeaders parses a HEADERS frame's payload p (RFC 9113 §6.2) and
// decodes its header block.
func (hr *headerReader) readHeaders(fh http2.FrameHeader, p []byte) (*headerBlock, error) {
	if fh.StreamID == 0 {
		return nil, http2.ConnectionError(http2.ErrCodeProtocol)
	}
	var pad int
	if fh.Flags.Has(http2.FlagHeadersPadded) {
		if len(p) < 1 {
			return nil, io.ErrUnexpectedEOF
		}
		pad, p = int(p[0]), p[1:]
	}
	var prio http2.PriorityParam
	if fh.Flags.Has(http2.FlagHeadersPriority) {
		if len(p) < 5 {
			return nil, io.ErrUnexpectedEOF
		}
		v := binary.BigEndian.Uint32(p)
		prio.StreamDep = v & 0x7fffffff
		prio.Exclusive = v != prio.StreamDep // the high bit
		prio.Weight = p[4]
		p = p[5:]
	}
	if len(p) < pad {
		// A connection error (RFC 9113 §6.2), where x/net's
		// parseHeadersFrame has a stream error: the block is not
		// decoded, so the dynamic table would no longer match the
		// client's, and a later block could be read with other fields
		// than it carries (RFC 9113 §4.3).
		return nil, http2.ConnectionError(http2.ErrCodeProtocol)
	}

	hr.release() // the fields of a block that failed
	b := &hr.block
	*b = headerBlock{
		streamID:    fh.StreamID,
		endStream:   fh.Flags.Has(http2.FlagHeadersEndStream),
		hasPriority: fh.Flags.Has(http2.FlagHeadersPriority),
		priority:    prio,
		fields:      b.fields[:0],
	}
	hr.headersRemain, hr.trailersRemain = hr.maxList, hr.maxList
	hr.sawRegular, hr.invalid, hr.edgeSpace = false, nil, false
	hr.dec.SetEmitEnabled(true)

	frag, ended := p[:len(p)-pad], fh.Flags.Has(http2.FlagHeadersEndHeaders)
	conts := 0
	for {
		// A fragment more than twice what the list may still hold is
		// not decoded: the connection ends. So does any CONTINUATION
		// after the list went over its limit (both budgets are then 0)
		// or after a malformed field, past which sizes are not counted.
		if int64(len(frag)) > 2*int64(hr.headersRemain+hr.trailersRemain) {
			return nil, http2.ConnectionError(http2.ErrCodeProtocol)
		}
		if hr.invalid != nil {
			return nil, http2.ConnectionError(http2.ErrCodeProtocol)
		}
		// (The decoder copies what it keeps of frag.)
		if _, err := hr.dec.Write(frag); err != nil {
			return nil, http2.ConnectionError(http2.ErrCodeCompression)
		}
		if ended {
			break
		}
		if conts++; conts > hr.maxConts {
			return nil, http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)
		}
		if conts == 1 && hr.blockOpen != nil {
			hr.blockOpen(true)
		}
		hr.discard()
		next, err := hr.fr.ReadFrame()
		if err != nil {
			return nil, err
		}
		// The Framer lets only a CONTINUATION of this stream follow a
		// HEADERS without END_HEADERS (a connection error otherwise).
		cf, ok := next.(*http2.ContinuationFrame)
		if !ok {
			return nil, http2.ConnectionError(http2.ErrCodeProtocol)
		}
		frag, ended = cf.HeaderBlockFragment(), cf.HeadersEnded()
		if ended && hr.blockOpen != nil {
			hr.blockOpen(false)
		}
	}
	if err := hr.dec.Close(); err != nil {
		return nil, http2.ConnectionError(http2.ErrCodeCompression)
	}
	if hr.invalid != nil {
		return nil, http2.StreamError{StreamID: b.streamID, Code: http2.ErrCodeProtocol, Cause: hr.invalid}
	}
	if err := checkPseudos(b.pseudoFields()); err != nil {
		return nil, http2.StreamError{StreamID: b.streamID, Code: http2.ErrCodeProtocol, Cause: err}
	}
	if hr.edgeSpace {
		// RFC 9113 §8.2.1: a field value must not start or end with SP
		// or HTAB; the request (or its trailers) is malformed. x/net
		// lets such values through; nghttp2 (and so Envoy) refuses them,
		// and an upstream that does would fail the forwarded request
		// with no answer the client can act on. Counted on the fields
		// kept (a truncated block's last ones are not seen), so that the
		// budgets and the decoding go on as x/net's.
		return nil, http2.StreamError{StreamID: b.streamID, Code: http2.ErrCodeProtocol, Cause: errFieldEdgeSpace}
	}
	return b, nil
}

// release drops the references the last block's fields hold, once the
// request (or its trailers) has taken them, and a buffer grown large.
func (hr *headerReader) release() {
	clear(hr.block.fields)
	if cap(hr.block.fields) > keptHeaderFields {
		hr.block.fields = nil
	}
}

// checkPseudos: only the pseudo-header fields RFC 9113 §8.3 (and RFC
// 8441's :protocol) defines, each at most once, and not request and
// response ones together.
func checkPseudos(pf []hpack.HeaderField) error {
	var isRequest, isResponse bool
	for i, hf := range pf {
		switch hf.Name {
		case ":method", ":path", ":scheme", ":authority", ":protocol":
			isRequest = true
		case ":status":
			isResponse = true
		default:
			return errUnknownPseudo
		}
		for _, prev := range pf[:i] {
			if hf.Name == prev.Name {
				return errDuplicatePseudo
			}
		}
	}
	if isRequest && isResponse {
		return errMixedPseudo
	}
	return nil
}
