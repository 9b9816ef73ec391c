package h2client

import (
	"errors"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"

	"github.com/outrigger-mesh/outrigger/proxy/internal/wire"
	"golang.org/x/net/http2"
)

// headerBlock is a HEADERS frame's fields as a response: what
// parseHeaderBlock found, before the stream decides whether it is the
// response, a 1xx or the trailers.
type headerBlock struct {
	// resp is nil for a block without pseudo-fields, which can only be
	// trailers (or a response without :status); its StatusCode is 0
	// when :status is missing or bad.
	resp      *http.Response
	header    http.Header // the regular fields (resp.Header when resp is set)
	pseudo    int         // pseudo-fields present
	clen      int64       // a valid Content-Length, or -1
	malformed string      // why the block is malformed, if it is
}

// connectionSpecific lists header fields RFC 9113 §8.2.2 forbids.
var connectionSpecific = map[string]bool{
	"connection":        true,
	"keep-alive":        true,
	"proxy-connection":  true,
	"transfer-encoding": true,
	"upgrade":           true,
}

// response is a Response with room for the values of its first fields,
// made in one allocation: a header block's values live as long as its
// response anyway.
type response struct {
	http.Response
	vals [6]string
}

// parseHeaderBlock builds the response as x/net/http2 does: the Trailer
// field becomes Response.Trailer's keys (with nil values) rather than a
// header; Content-Length sets ContentLength, else it is -1 (0 when the
// block ended the stream). Unlike x/net/http2, an invalid Content-Length,
// or differing ones, make the block malformed. A block without
// pseudo-fields gets no Response, only its header: trailers need no
// other, and a response without :status is malformed.
func parseHeaderBlock(f *fieldList, hb *headerBlock) {
	*hb = headerBlock{clen: -1, pseudo: len(f.PseudoFields())}
	regular := f.RegularFields()
	// One backing array for the usual one value per key.
	var strs []string
	var resp *http.Response
	if hb.pseudo > 0 {
		r := new(response)
		resp = &r.Response
		resp.Proto, resp.ProtoMajor, resp.ContentLength = "HTTP/2.0", 2, -1
		strs = r.vals[:]
		if len(regular) > len(strs) {
			strs = make([]string, len(regular))
		}
		hb.resp = resp
	} else {
		strs = make([]string, len(regular))
	}
	h := make(http.Header, len(regular))
	hb.header = h
	if resp != nil {
		resp.Header = h
	}
	for _, hf := range regular {
		// A value's leading and trailing spaces and tabs are dropped, as
		// h1client drops the optional whitespace around an HTTP/1.1
		// field value (RFC 9110 §5.5). RFC 9113 §8.2.1 forbids them, but
		// servers that check values only for control bytes (x/net/http2)
		// send them; passed on, they would make the response malformed
		// for an HTTP/2 client that checks (nghttp2, so curl).
		v := wire.TrimOWS(hf.Value)
		if connectionSpecific[hf.Name] || hf.Name == "te" && v != "trailers" {
			hb.malformed = "connection-specific field " + hf.Name
			return
		}
		k := canonicalKey(hf.Name)
		if k == "Trailer" {
			if resp != nil {
				declareTrailers(resp, v)
			}
			continue
		}
		if vv := h[k]; vv == nil && len(strs) > 0 {
			strs[0] = v
			h[k] = strs[:1:1]
			strs = strs[1:]
		} else {
			h[k] = append(vv, v)
		}
	}
	if f.Truncated {
		hb.malformed = "header list larger than MaxHeaderListSize"
		return
	}
	if resp == nil {
		return
	}
	status := f.pseudoValue("status")
	if hb.pseudo == 1 && len(status) == 3 {
		if code, err := strconv.Atoi(status); err == nil && code >= 100 {
			resp.StatusCode = code
			resp.Status = statusLine(code, status)
		}
	}
	if cl := h["Content-Length"]; len(cl) > 0 {
		// Values that cannot all be the body's length make the message
		// malformed (RFC 9113 §8.1.1): passed on, one of them would frame
		// the body downstream. Repeats of one value are one value (RFC
		// 9110 §8.6).
		n, err := strconv.ParseUint(cl[0], 10, 63)
		for _, v := range cl[1:] {
			if v != cl[0] {
				err = errors.New("differing values")
			}
		}
		if err != nil {
			hb.malformed = "invalid content-length"
			return
		}
		h["Content-Length"] = cl[:1]
		resp.ContentLength = int64(n)
		hb.clen = int64(n)
	} else if f.endStream {
		resp.ContentLength = 0
	}
}

// declareTrailers adds the names a Trailer field value lists (comma
// separated, case-insensitive) to resp.Trailer, canonical, with nil
// values.
func declareTrailers(resp *http.Response, v string) {
	if resp.Trailer == nil {
		resp.Trailer = make(http.Header, strings.Count(v, ",")+1)
	}
	for v != "" {
		name := v
		if i := strings.IndexByte(v, ','); i >= 0 {
			name, v = v[:i], v[i+1:]
		} else {
			v = ""
		}
		if name = textproto.TrimString(name); name != "" {
			resp.Trailer[trailerKey(name)] = nil
		}
	}
}

// trailerKey is the canonical key of a name a Trailer field lists, in
// any case: http.CanonicalHeaderKey of its lowercase form, as x/net/http2
// has it, without allocating for a common field name or one sent
// canonical. A name that is not a token is kept lowercase, as
// CanonicalHeaderKey leaves it.
func trailerKey(name string) string {
	if !wire.IsToken(name) {
		return strings.ToLower(name)
	}
	return wire.CanonicalKey(name)
}

// statusLines holds Response.Status for the codes net/http names.
var statusLines = func() (lines [600]string) {
	for code := range lines {
		if text := http.StatusText(code); text != "" {
			lines[code] = strconv.Itoa(code) + " " + text
		}
	}
	return lines
}()

// statusLine is Response.Status for a response of code, whose :status
// is status: "200 OK", as x/net/http2 has it.
func statusLine(code int, status string) string {
	if code < len(statusLines) && statusLines[code] != "" {
		return statusLines[code]
	}
	return status + " " + http.StatusText(code)
}

// attachBody gives the response its body.
func attachBody(s *stream, hb *headerBlock, ended bool) *http.Response {
	resp := hb.resp
	if !s.noBody {
		s.clen = hb.clen
	}
	// A response to HEAD, and a 204 or 304, has no content whatever its
	// Content-Length says (RFC 9110 §6.4.1).
	noBody := s.noBody || resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusNotModified
	switch {
	case noBody:
		resp.Body = http.NoBody
		s.bodyClosed = true
		s.noContent = true // DATA with content resets the stream
	case ended && resp.ContentLength > 0:
		resp.Body = missingBody{}
	case ended:
		resp.Body = http.NoBody
	default:
		s.rbody = body{s: s, resp: resp}
		resp.Body = &s.rbody
	}
	return resp
}

// EndedAtHead reports whether resp has neither body nor trailers to come:
// its Body is http.NoBody, as a response whose HEADERS ended the stream
// (END_STREAM) has, or a response to HEAD, a 204 or a 304 (whose content
// is none, and whose Body gives no trailers); or resp is one of this
// package's that ended at its header block although that declared a
// content-length (its body fails with io.ErrUnexpectedEOF). A gRPC
// response is Trailers-Only when such a header block carries its
// grpc-status (gRPC's PROTOCOL-HTTP2.md); one that did not end the stream
// has its status in the trailers, whatever its header block says.
func EndedAtHead(resp *http.Response) bool {
	return resp.Body == http.NoBody || resp.Body == io.ReadCloser(missingBody{})
}

// missingBody is the body of a response that promised a length and
// ended at its header block.
type missingBody struct{}

func (missingBody) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }
func (missingBody) Close() error             { return nil }

// body is a response body: the stream's received DATA, given back to the
// server's flow-control window as it is read.
type body struct {
	s    *stream
	resp *http.Response
}

var errBodyClosed = errors.New("h2client: read on closed response body")

// Read returns buffered DATA, waiting for more. At the end it fills
// Response.Trailer (declared keys and undeclared ones alike) before
// returning io.EOF; a body shorter than its Content-Length ends with
// io.ErrUnexpectedEOF; a reset stream ends with the stream's error once
// the data before it was read.
func (b *body) Read(p []byte) (int, error) {
	s := b.s
	c := s.c
	for {
		c.mu.Lock()
		if s.bodyClosed {
			c.mu.Unlock()
			return 0, errBodyClosed
		}
		if s.roff < len(s.data) {
			if len(p) == 0 {
				c.mu.Unlock()
				return 0, nil
			}
			n := copy(p, s.data[s.roff:])
			s.roff += n
			if s.roff == len(s.data) {
				s.data = s.data[:0]
				s.roff = 0
			}
			s.recvUnsent += int64(n)
			if s.recvUnsent >= streamRefresh && !s.recvEnd && !s.done && !c.closed {
				c.giveBackLocked(s)
			}
			c.mu.Unlock()
			return n, nil
		}
		if s.err != nil {
			err := s.err
			c.mu.Unlock()
			return 0, err
		}
		if s.recvEnd {
			if s.clen >= 0 && s.recvd < s.clen {
				c.mu.Unlock()
				return 0, io.ErrUnexpectedEOF
			}
			if len(s.trailer) > 0 {
				if b.resp.Trailer == nil {
					// None declared: the trailers' own map, which
					// nothing else holds, serves.
					b.resp.Trailer = s.trailer
				} else {
					for k, vv := range s.trailer {
						b.resp.Trailer[k] = vv
					}
				}
				s.trailer = nil
			}
			c.mu.Unlock()
			return 0, io.EOF
		}
		c.mu.Unlock()
		<-s.recvWake
	}
}

// Close ends the body; before the end of the stream it resets the
// stream with CANCEL.
func (b *body) Close() error {
	s := b.s
	c := s.c
	c.mu.Lock()
	defer c.unlock()
	if s.bodyClosed {
		return nil
	}
	s.bodyClosed = true
	s.data = nil
	s.roff = 0
	if !s.done {
		c.resetLocked(s, http2.ErrCodeCancel, errBodyClosed, false)
	}
	return nil
}

// commonKeys maps the usual lowercase field names to canonical keys and
// back, sparing an allocation per field.
var (
	commonCanonical = map[string]string{}
	commonLower     = map[string]string{}
)

func init() {
	for _, k := range []string{
		"accept", "accept-charset", "accept-encoding", "accept-language", "accept-ranges",
		"age", "access-control-allow-origin", "allow", "authorization", "cache-control",
		"content-disposition", "content-encoding", "content-language", "content-length",
		"content-location", "content-range", "content-type", "cookie", "date", "etag",
		"expect", "expires", "from", "host", "if-match", "if-modified-since", "if-none-match",
		"if-unmodified-since", "last-modified", "link", "location", "max-forwards",
		"origin", "proxy-authenticate", "proxy-authorization", "range", "referer", "refresh",
		"retry-after", "server", "set-cookie", "strict-transport-security", "te", "trailer",
		"transfer-encoding", "user-agent", "vary", "via", "www-authenticate",
		"x-forwarded-for", "x-forwarded-proto", "x-request-id", "traceparent",
		"grpc-status", "grpc-message", "grpc-encoding", "grpc-accept-encoding", "grpc-timeout",
		"grpc-status-details-bin", "x-outrigger-error",
	} {
		ck := textproto.CanonicalMIMEHeaderKey(k)
		commonCanonical[k] = ck
		commonLower[ck] = k
	}
}

// canonicalKey is http.CanonicalHeaderKey for a lowercase wire name.
func canonicalKey(k string) string {
	if ck, ok := commonCanonical[k]; ok {
		return ck
	}
	return textproto.CanonicalMIMEHeaderKey(k)
}

// lowerKey is a header key as HTTP/2 sends it: lowercase.
func lowerKey(k string) string {
	if lk, ok := commonLower[k]; ok {
		return lk
	}
	return strings.ToLower(k)
}
