package h2client

import (
	"errors"
	"strings"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// A response's HEADERS frame is read by the Framer as a frame, and its
// header block (with its CONTINUATION frames) decoded here rather than
// by the Framer (x/net/http2's ReadMetaHeaders), whose MetaHeadersFrame,
// emit closure and the state it captures, and the growth of its Fields
// slice cost about five allocations per block. headerDecoder makes the
// same checks, in the same order, with the same outcome as x/net's
// Framer.readMetaFrame: field values, lowercase names, pseudo-fields
// before regular ones, the header list budget (with "trailer" fields on
// a budget of their own), the size of each fragment against the budget
// left, and the pseudo-fields (only :status, once, for a response).
// The Framer still reads every frame, CONTINUATIONs included, and checks
// their order.

// fieldList is a decoded header block: the fields of a HEADERS frame and
// its CONTINUATIONs.
type fieldList struct {
	streamID  uint32
	endStream bool
	// fields are the decoded fields, pseudo-fields first (one after a
	// regular field makes the block malformed). They are valid until the
	// next block is decoded.
	fields []hpack.HeaderField
	// truncated: the header list went over MaxHeaderListSize; fields
	// holds those before the one that did not fit.
	truncated bool
}

// pseudoFields returns the pseudo-fields of l.
func (l *fieldList) pseudoFields() []hpack.HeaderField {
	for i, hf := range l.fields {
		if !hf.IsPseudo() {
			return l.fields[:i]
		}
	}
	return l.fields
}

// regularFields returns the regular fields of l.
func (l *fieldList) regularFields() []hpack.HeaderField {
	for i, hf := range l.fields {
		if !hf.IsPseudo() {
			return l.fields[i:]
		}
	}
	return nil
}

// pseudoValue is the value of the pseudo-field ":"+name, or "".
func (l *fieldList) pseudoValue(name string) string {
	for _, hf := range l.pseudoFields() {
		if hf.Name[1:] == name {
			return hf.Value
		}
	}
	return ""
}

// headerDecoder decodes a connection's response header blocks. Its emit
// method is the HPACK decoder's emit function for the connection's
// life: the state of the block being decoded lives here, not in a
// closure.
type headerDecoder struct {
	dec     *hpack.Decoder
	maxList uint32 // MaxHeaderListSize

	block fieldList
	// Budgets of the block being decoded: "trailer" fields count against
	// their own, as in x/net.
	headersRemain, trailersRemain uint32
	sawRegular                    bool
	invalid                       error // the first malformed field
}

// keptHeaderFields bounds the field buffer a connection keeps between
// blocks; one grown larger by a big block is dropped afterwards.
const keptHeaderFields = 64

func (d *headerDecoder) init(maxList uint32) {
	d.maxList = maxList
	d.dec = hpack.NewDecoder(4096, d.emit)
	// No string longer than the whole list is accepted (a decoding
	// error), as with x/net's Framer.
	if v := int(maxList); v >= 0 {
		d.dec.SetMaxStringLength(v)
	}
}

var (
	errFieldValue         = errors.New("h2client: invalid header field value")
	errFieldName          = errors.New("h2client: invalid header field name")
	errPseudoAfterRegular = errors.New("h2client: pseudo-header field after a regular one")
	errUnknownPseudo      = errors.New("h2client: unknown pseudo-header field")
	errDuplicatePseudo    = errors.New("h2client: duplicate pseudo-header field")
	errMixedPseudo        = errors.New("h2client: request and response pseudo-header fields mixed")
)

// emit takes one decoded field.
func (d *headerDecoder) emit(hf hpack.HeaderField) {
	if !httpguts.ValidHeaderFieldValue(hf.Value) {
		d.invalid = errFieldValue
	}
	if strings.HasPrefix(hf.Name, ":") {
		if d.sawRegular {
			d.invalid = errPseudoAfterRegular
		}
	} else {
		d.sawRegular = true
		if !validWireFieldName(hf.Name) {
			d.invalid = errFieldName
		}
	}
	if d.invalid != nil {
		d.dec.SetEmitEnabled(false)
		return
	}
	remain := &d.headersRemain
	var size uint32
	if hf.Name == "trailer" {
		// Each declared name counts as a field of its own, without
		// decoding the list (whitespace after commas counts too).
		remain = &d.trailersRemain
		n := strings.Count(hf.Value, ",") + 1
		size = uint32(len(hf.Value)-n+1) + uint32(n)*hpack.HeaderField{}.Size()
	} else {
		size = hf.Size()
	}
	if size > *remain {
		d.dec.SetEmitEnabled(false)
		d.block.truncated = true
		d.headersRemain, d.trailersRemain = 0, 0
		return
	}
	*remain -= size
	d.block.fields = append(d.block.fields, hf)
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

// read decodes the header block that hf begins, reading its
// CONTINUATION frames with fr. The block is valid until the next call.
// Its errors are those of x/net's Framer with ReadMetaHeaders set:
// http2.ConnectionError for what ends the connection (a fragment far
// beyond the list limit, a CONTINUATION after a malformed field: PROTOCOL_ERROR;
// HPACK errors: COMPRESSION_ERROR), http2.StreamError for a malformed
// field list, and the errors of reading frames.
func (d *headerDecoder) read(fr *http2.Framer, hf *http2.HeadersFrame) (*fieldList, error) {
	d.release()
	b := &d.block
	*b = fieldList{streamID: hf.StreamID, endStream: hf.StreamEnded(), fields: b.fields[:0]}
	d.headersRemain, d.trailersRemain = d.maxList, d.maxList
	d.sawRegular, d.invalid = false, nil
	d.dec.SetEmitEnabled(true)

	frag, ended := hf.HeaderBlockFragment(), hf.HeadersEnded()
	for {
		// A fragment more than twice what the list may still hold is
		// not decoded: the connection ends. So does any CONTINUATION
		// after the list went over its limit (both budgets are then 0)
		// or after a malformed field, past which sizes are not counted.
		if int64(len(frag)) > 2*int64(d.headersRemain+d.trailersRemain) {
			return nil, http2.ConnectionError(http2.ErrCodeProtocol)
		}
		if d.invalid != nil {
			return nil, http2.ConnectionError(http2.ErrCodeProtocol)
		}
		// (The decoder copies what it keeps of frag.)
		if _, err := d.dec.Write(frag); err != nil {
			return nil, http2.ConnectionError(http2.ErrCodeCompression)
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
	if err := d.dec.Close(); err != nil {
		return nil, http2.ConnectionError(http2.ErrCodeCompression)
	}
	if d.invalid != nil {
		return nil, http2.StreamError{StreamID: b.streamID, Code: http2.ErrCodeProtocol, Cause: d.invalid}
	}
	if err := checkPseudos(b.pseudoFields()); err != nil {
		return nil, http2.StreamError{StreamID: b.streamID, Code: http2.ErrCodeProtocol, Cause: err}
	}
	return b, nil
}

// release drops the references the last block's fields hold, and a
// buffer grown large.
func (d *headerDecoder) release() {
	clear(d.block.fields)
	if cap(d.block.fields) > keptHeaderFields {
		d.block.fields = nil
	}
}

// checkPseudos: only the pseudo-header fields RFC 9113 §8.3 (and RFC
// 8441's :protocol) defines, each at most once, and not request and
// response ones together, as x/net checks them.
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
