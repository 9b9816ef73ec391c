package h2client

import (
	"fmt"

	"golang.org/x/net/http2"

	"github.com/outrigger-mesh/outrigger/proxy/internal/h2fields"
)

// A response's HEADERS frame is read by the Framer as a frame, and its
// header block (with its CONTINUATION frames) decoded here rather than
// by the Framer (x/net/http2's ReadMetaHeaders), whose MetaHeadersFrame,
// emit closure and the state it captures, and the growth of its Fields
// slice cost about five allocations per block. headerDecoder makes the
// same checks, in the same order, with the same outcome as x/net's
// Framer.readMetaFrame (those of h2fields.Decoder): field values,
// lowercase names, pseudo-fields before regular ones, the header list
// budget (with "trailer" fields on a budget of their own), the size of
// each fragment against the budget left, and the pseudo-fields (only
// :status, once, for a response). The Framer still reads every frame,
// CONTINUATIONs included, and checks their order.

// fieldList is a decoded header block: the fields of a HEADERS frame and
// its CONTINUATIONs.
type fieldList struct {
	streamID  uint32
	endStream bool
	// The decoded fields (the header decoder's buffer), valid until the
	// next block is decoded.
	*h2fields.List
}

// pseudoValue is the value of the pseudo-field ":"+name, or "".
func (l *fieldList) pseudoValue(name string) string {
	for _, hf := range l.PseudoFields() {
		if hf.Name[1:] == name {
			return hf.Value
		}
	}
	return ""
}

// headerDecoder decodes a connection's response header blocks.
type headerDecoder struct {
	dec   h2fields.Decoder
	block fieldList
}

// init readies d for a MaxHeaderListSize of maxList.
func (d *headerDecoder) init(maxList uint32) { d.dec.Init(maxList) }

// read decodes the header block that hf begins, reading its
// CONTINUATION frames with fr. The block is valid until the next call.
// Its errors are those of x/net's Framer with ReadMetaHeaders set:
// http2.ConnectionError for what ends the connection (a fragment far
// beyond the list limit, a CONTINUATION after a malformed field: PROTOCOL_ERROR;
// HPACK errors: COMPRESSION_ERROR), http2.StreamError for a malformed
// field list, and the errors of reading frames.
func (d *headerDecoder) read(fr *http2.Framer, hf *http2.HeadersFrame) (*fieldList, error) {
	d.dec.Begin()
	frag, ended := hf.HeaderBlockFragment(), hf.HeadersEnded()
	for {
		if err := d.dec.Write(frag); err != nil {
			return nil, err
		}
		if ended {
			break
		}
		next, err := fr.ReadFrame()
		if err != nil {
			return nil, err
		}
		// The Framer lets only a CONTINUATION of this stream follow a
		// HEADERS without END_HEADERS.
		cf := next.(*http2.ContinuationFrame)
		frag, ended = cf.HeaderBlockFragment(), cf.HeadersEnded()
	}
	l, err := d.dec.End(hf.StreamID)
	if se, ok := err.(http2.StreamError); ok {
		// The cause names this package, as the package's other errors
		// do, for whoever reads the request's error.
		se.Cause = fmt.Errorf("h2client: %w", se.Cause)
		return nil, se
	}
	if err != nil {
		return nil, err
	}
	d.block = fieldList{streamID: hf.StreamID, endStream: hf.StreamEnded(), List: l}
	return &d.block, nil
}
