package h2server

import (
	"bufio"
	"encoding/binary"
	"io"

	"golang.org/x/net/http2"

	"github.com/outrigger-mesh/outrigger/proxy/internal/h2fields"
)

// A request's HEADERS frame is parsed and its header block decoded here
// rather than by the Framer (x/net/http2's ReadMetaHeaders), whose
// HeadersFrame, MetaHeadersFrame, emit closure, its captured state and
// the growth of its Fields slice cost about ten allocations per request.
// headerReader makes the same checks, in the same order, with the same
// outcome (RFC 9113 §6.2, §8.1.1, §8.3, and x/net's parseHeadersFrame
// and Framer.readMetaFrame): the frame's own here, the field list's in
// h2fields. The Framer still reads every frame header, which keeps
// HEADERS and CONTINUATION contiguous, and every other frame. Its fields
// go into a buffer the connection reuses; the request's header map is
// built from it, sized for it (newRequest).

// headerBlock is a decoded HEADERS frame with its CONTINUATIONs.
type headerBlock struct {
	streamID    uint32
	endStream   bool
	hasPriority bool
	priority    http2.PriorityParam
	// The decoded fields (the header reader's buffer), valid until the
	// next block is read.
	*h2fields.List
}

// headerReader reads a connection's request header blocks.
type headerReader struct {
	fr *http2.Framer
	br *bufio.Reader // what fr reads
	// dec decodes the blocks under the SETTINGS_MAX_HEADER_LIST_SIZE
	// announced.
	dec h2fields.Decoder
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
}

// newHeaderReader reads frames with fr, which reads br; br's buffer
// must hold the largest frame fr reads.
func newHeaderReader(fr *http2.Framer, br *bufio.Reader, maxList uint32) *headerReader {
	hr := &headerReader{fr: fr, br: br, maxConts: maxContinuations(maxList)}
	hr.dec.Init(maxList)
	// RFC 9113 §8.2.1: a field value must not start or end with SP or
	// HTAB; the request (or its trailers) is malformed. x/net lets such
	// values through; nghttp2 (and so Envoy) refuses them, and an
	// upstream that does would fail the forwarded request with no
	// answer the client can act on.
	hr.dec.RefuseEdgeSpace = true
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
// a malformed field list (h2fields.Decoder.End), and the
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

	hr.dec.Begin() // (dropping the fields of a block that failed)
	frag, ended := p[:len(p)-pad], fh.Flags.Has(http2.FlagHeadersEndHeaders)
	conts := 0
	for {
		if err := hr.dec.Write(frag); err != nil {
			return nil, err
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
	l, err := hr.dec.End(fh.StreamID)
	if err != nil {
		return nil, err
	}
	hr.block = headerBlock{
		streamID:    fh.StreamID,
		endStream:   fh.Flags.Has(http2.FlagHeadersEndStream),
		hasPriority: fh.Flags.Has(http2.FlagHeadersPriority),
		priority:    prio,
		List:        l,
	}
	return &hr.block, nil
}
