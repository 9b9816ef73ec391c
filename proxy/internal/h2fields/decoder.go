package h2fields

import (
	"errors"
	"strings"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The causes of the stream errors End returns for a malformed field list.
// Their messages are fixed words a server may report as the reason for
// the reset.
var (
	ErrFieldValue         = errors.New("invalid header field value")
	ErrFieldName          = errors.New("invalid header field name")
	ErrFieldEdgeSpace     = errors.New("header field value starts or ends with whitespace")
	ErrPseudoAfterRegular = errors.New("pseudo-header field after a regular one")
	ErrUnknownPseudo      = errors.New("unknown pseudo-header field")
	ErrDuplicatePseudo    = errors.New("duplicate pseudo-header field")
	ErrMixedPseudo        = errors.New("request and response pseudo-header fields mixed")
)

// List is a decoded header block's fields.
type List struct {
	// Fields are the decoded fields, pseudo-header fields first (one
	// after a regular field makes the block malformed).
	Fields []hpack.HeaderField
	// Truncated: the header list went over its limit; Fields holds
	// those before the one that did not fit.
	Truncated bool
}

// PseudoFields returns the pseudo-header fields of l.
func (l *List) PseudoFields() []hpack.HeaderField {
	for i, hf := range l.Fields {
		if !hf.IsPseudo() {
			return l.Fields[:i]
		}
	}
	return l.Fields
}

// RegularFields returns the regular fields of l.
func (l *List) RegularFields() []hpack.HeaderField {
	for i, hf := range l.Fields {
		if !hf.IsPseudo() {
			return l.Fields[i:]
		}
	}
	return nil
}

// keptFields bounds the field buffer a Decoder keeps between blocks;
// one grown larger by a big block is dropped afterwards.
const keptFields = 64

// Decoder decodes a connection's header blocks. The zero Decoder is not
// ready: Init it.
type Decoder struct {
	// RefuseEdgeSpace makes a field value that starts or ends with SP
	// or HTAB malformed (RFC 9113 §8.2.1; ErrFieldEdgeSpace). x/net
	// lets such values through.
	RefuseEdgeSpace bool

	dec     *hpack.Decoder
	maxList uint32 // the header list limit

	list List
	// Budgets of the block being decoded: "trailer" fields count
	// against their own (as in x/net, so that a list of declared
	// trailers is bounded apart from the rest).
	headersRemain, trailersRemain uint32
	sawRegular                    bool
	invalid                       error // the first malformed field
	// edgeSpace: a field kept has a value that starts or ends with SP
	// or HTAB (counted only with RefuseEdgeSpace).
	edgeSpace bool
}

// Init readies d to decode blocks under a header list limit of maxList
// (SETTINGS_MAX_HEADER_LIST_SIZE, announced or applied), with an HPACK
// dynamic table of the protocol's initial 4096 bytes.
func (d *Decoder) Init(maxList uint32) {
	d.maxList = maxList
	d.dec = hpack.NewDecoder(4096, d.emit)
	// No string longer than the whole list is accepted (a decoding
	// error), as with x/net's Framer.
	if v := int(maxList); v >= 0 {
		d.dec.SetMaxStringLength(v)
	}
}

// Begin starts a block, dropping the fields of the last one.
func (d *Decoder) Begin() {
	d.Release()
	d.list = List{Fields: d.list.Fields[:0]}
	d.headersRemain, d.trailersRemain = d.maxList, d.maxList
	d.sawRegular, d.invalid, d.edgeSpace = false, nil, false
	d.dec.SetEmitEnabled(true)
}

// Write decodes the block's next fragment, which it does not keep. Its
// errors are x/net's connection errors: PROTOCOL_ERROR for a fragment
// more than twice what the list may still hold, and for any fragment
// after the list went over its limit (both budgets are then 0) or after
// a malformed field, past which sizes are not counted; COMPRESSION_ERROR
// for an HPACK error.
func (d *Decoder) Write(frag []byte) error {
	if int64(len(frag)) > 2*int64(d.headersRemain+d.trailersRemain) {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	if d.invalid != nil {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	// (The decoder copies what it keeps of frag.)
	if _, err := d.dec.Write(frag); err != nil {
		return http2.ConnectionError(http2.ErrCodeCompression)
	}
	return nil
}

// End ends the block of stream streamID after its last fragment and
// returns its fields, valid until the next Begin. Its errors are
// http2.ConnectionError COMPRESSION_ERROR for a block that ends inside
// a field, and http2.StreamError PROTOCOL_ERROR for a malformed field
// list, with one of the package's Err values as its Cause: the first
// malformed field, then the pseudo-header fields, then (with
// RefuseEdgeSpace) a value's edge whitespace.
func (d *Decoder) End(streamID uint32) (*List, error) {
	if err := d.dec.Close(); err != nil {
		return nil, http2.ConnectionError(http2.ErrCodeCompression)
	}
	if d.invalid != nil {
		return nil, http2.StreamError{StreamID: streamID, Code: http2.ErrCodeProtocol, Cause: d.invalid}
	}
	if err := checkPseudos(d.list.PseudoFields()); err != nil {
		return nil, http2.StreamError{StreamID: streamID, Code: http2.ErrCodeProtocol, Cause: err}
	}
	if d.edgeSpace {
		// Counted on the fields kept (a truncated block's last ones are
		// not seen), so that the budgets and the decoding go on as
		// x/net's.
		return nil, http2.StreamError{StreamID: streamID, Code: http2.ErrCodeProtocol, Cause: ErrFieldEdgeSpace}
	}
	return &d.list, nil
}

// Release drops the references the last block's fields hold, once
// their user has taken them, and a buffer grown large.
func (d *Decoder) Release() {
	clear(d.list.Fields)
	if cap(d.list.Fields) > keptFields {
		d.list.Fields = nil
	}
}

// emit takes one decoded field.
func (d *Decoder) emit(hf hpack.HeaderField) {
	if !httpguts.ValidHeaderFieldValue(hf.Value) {
		d.invalid = ErrFieldValue
	}
	if strings.HasPrefix(hf.Name, ":") {
		if d.sawRegular {
			d.invalid = ErrPseudoAfterRegular
		}
	} else {
		d.sawRegular = true
		if !validWireFieldName(hf.Name) {
			d.invalid = ErrFieldName
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
		d.list.Truncated = true
		d.headersRemain, d.trailersRemain = 0, 0
		return
	}
	*remain -= size
	if v := hf.Value; d.RefuseEdgeSpace && v != "" && (v[0] == ' ' || v[0] == '\t' || v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		d.edgeSpace = true
	}
	d.list.Fields = append(d.list.Fields, hf)
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
			return ErrUnknownPseudo
		}
		for _, prev := range pf[:i] {
			if hf.Name == prev.Name {
				return ErrDuplicatePseudo
			}
		}
	}
	if isRequest && isResponse {
		return ErrMixedPseudo
	}
	return nil
}
