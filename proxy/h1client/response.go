package h1client

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/outrigger-mesh/outrigger/proxy/internal/wire"
)

var (
	// errHeaderTooLarge: a head or trailer block passed MaxResponseHeaderBytes.
	errHeaderTooLarge = errors.New("h1client: response header exceeds MaxResponseHeaderBytes")
	// errNoResponse: the connection ended before a byte of a response.
	errNoResponse = errors.New("h1client: server closed the connection before responding")
)

// readBlock reads a block of lines ending with an empty line (a response
// head, or the trailer section after the last chunk) and returns it, blank
// line included, as one string: keys and values are then substrings of
// it, one allocation for the whole head. Lines may end in CRLF or a bare
// LF (RFC 9112 §2.2 lets a recipient accept both). It returns io.EOF when
// the connection ended before any byte, io.ErrUnexpectedEOF when it ended
// inside the block.
func readBlock(br *bufio.Reader, limit int) (string, error) {
	// Fast path: the block is (or comes to be) wholly in the buffer.
	scanned := 0 // bytes of complete non-blank lines already checked
	for {
		buf, _ := br.Peek(br.Buffered())
		for {
			i := bytes.IndexByte(buf[scanned:], '\n')
			if i < 0 {
				break
			}
			line := buf[scanned : scanned+i]
			scanned += i + 1
			if len(line) == 0 || len(line) == 1 && line[0] == '\r' {
				if scanned > limit {
					return "", errHeaderTooLarge
				}
				s := string(buf[:scanned])
				_, _ = br.Discard(scanned)
				return s, nil
			}
		}
		if len(buf) > limit {
			return "", errHeaderTooLarge
		}
		if len(buf) == br.Size() {
			break // does not fit: accumulate below
		}
		if _, err := br.Peek(len(buf) + 1); err != nil && err != bufio.ErrBufferFull {
			if len(buf) == 0 && err == io.EOF {
				return "", io.EOF
			}
			if err == io.EOF {
				return "", io.ErrUnexpectedEOF
			}
			return "", err
		}
	}
	// Slow path: a block larger than the read buffer.
	acc := make([]byte, 0, 2*br.Size())
	lineStart := 0
	for {
		chunk, err := br.ReadSlice('\n')
		acc = append(acc, chunk...)
		if len(acc) > limit {
			return "", errHeaderTooLarge
		}
		switch err {
		case nil:
			line := acc[lineStart : len(acc)-1]
			if len(line) == 0 || len(line) == 1 && line[0] == '\r' {
				return string(acc), nil
			}
			lineStart = len(acc)
		case bufio.ErrBufferFull:
		case io.EOF:
			return "", io.ErrUnexpectedEOF
		default:
			return "", err
		}
	}
}

// parseHead parses a response head read by readBlock into resp: status
// line, protocol, status and header. The values of a final head's fields
// go into vals while it has room (see parseFields), and the number of
// elements used is returned; an interim (1xx) head's never do: its header
// is handed to hooks, which may keep it.
func parseHead(block string, resp *http.Response, vals []string) (int, error) {
	line, rest := wire.NextLine(block)
	if len(line) < 12 || line[8] != ' ' {
		return 0, fmt.Errorf("h1client: malformed status line %q", clip(line))
	}
	switch line[:8] {
	case "HTTP/1.1":
		resp.Proto, resp.ProtoMajor, resp.ProtoMinor = "HTTP/1.1", 1, 1
	case "HTTP/1.0":
		resp.Proto, resp.ProtoMajor, resp.ProtoMinor = "HTTP/1.0", 1, 0
	default:
		return 0, fmt.Errorf("h1client: unsupported protocol version in status line %q", clip(line))
	}
	status := line[9:]
	code := 0
	for i := 0; i < 3; i++ {
		d := status[i]
		if d < '0' || d > '9' {
			return 0, fmt.Errorf("h1client: malformed status code in status line %q", clip(line))
		}
		code = code*10 + int(d-'0')
	}
	if code < 100 {
		return 0, fmt.Errorf("h1client: malformed status code in status line %q", clip(line))
	}
	if len(status) > 3 {
		if status[3] != ' ' {
			return 0, fmt.Errorf("h1client: malformed status code in status line %q", clip(line))
		}
		if !httpguts.ValidHeaderFieldValue(status[4:]) {
			return 0, fmt.Errorf("h1client: control byte in reason phrase of status line %q", clip(line))
		}
	}
	resp.StatusCode = code
	resp.Status = status
	n := countLines(rest)
	h := make(http.Header, n)
	if code < 200 && code != http.StatusSwitchingProtocols {
		vals = nil
	}
	used, err := parseFields(rest, h, n, vals)
	if err != nil {
		return 0, err
	}
	resp.Header = h
	return used, nil
}

// countLines counts the field lines of a block, to size the header map.
func countLines(s string) int {
	return max(strings.Count(s, "\n")-1, 0)
}

// parseFields parses field lines into h until the blank line; n is the
// number of field lines (countLines). Keys are canonicalized; values are
// trimmed of surrounding whitespace and must be valid field values (no
// CR, LF or NUL: nothing that could end a line downstream).
//
// Values of fields seen once go into vals, one element each, cut to
// length and capacity one (as net/textproto does), so that appending to
// one never writes over another; when vals is used up, one array is
// allocated for the remaining lines. It returns the number of elements
// of vals used.
func parseFields(s string, h http.Header, n int, vals []string) (used int, _ error) {
	given := len(vals)
	for i := 0; ; i++ {
		line, rest := wire.NextLine(s)
		s = rest
		if line == "" {
			return used, nil
		}
		if line[0] == ' ' || line[0] == '\t' {
			// RFC 9112 §5.2: obs-fold is deprecated; a proxy may reject it.
			return 0, errors.New("h1client: obsolete line folding in response header")
		}
		colon, token, _, canonical := wire.ScanFieldName(line)
		if colon <= 0 {
			return 0, fmt.Errorf("h1client: malformed header line %q", clip(line))
		}
		k := line[:colon]
		if !token {
			// Includes whitespace before the colon (RFC 9112 §5.1).
			return 0, fmt.Errorf("h1client: invalid header field name %q", clip(k))
		}
		v := line[colon+1:]
		if !httpguts.ValidHeaderFieldValue(v) {
			return 0, fmt.Errorf("h1client: invalid header field value for %q", clip(k))
		}
		v = wire.TrimOWS(v)
		if !canonical {
			k = wire.Canonicalize(k)
		}
		if vv, ok := h[k]; ok {
			h[k] = append(vv, v)
			continue
		}
		if len(vals) == 0 {
			vals = make([]string, max(n-i, 1))
		}
		if used < given {
			used++
		}
		vals[0] = v
		h[k] = vals[:1:1]
		vals = vals[1:]
	}
}

// clip shortens what goes into an error message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// Body framings of a response.
const (
	bodyNone       = iota // no body (HEAD, 1xx, 204, 304)
	bodyNoneClose         // no body, but framing fields that say otherwise: the connection is not reused
	bodyFixed             // Content-Length
	bodyChunked           // Transfer-Encoding: chunked
	bodyUntilClose        // neither: the body ends when the connection does
)

// framing decides how resp's body is delimited (RFC 9112 §6.3), fills
// ContentLength, TransferEncoding, Close and the announced Trailer keys,
// and refuses what could be read more than one way.
func framing(resp *http.Response, method string) (int, error) {
	h := resp.Header
	te, hasTE := h["Transfer-Encoding"]
	cls, hasCL := h["Content-Length"]
	if hasTE && hasCL {
		return 0, errors.New("h1client: response has both Transfer-Encoding and Content-Length")
	}
	cl := int64(-1)
	if hasCL {
		var err error
		if cl, err = parseContentLength(cls); err != nil {
			return 0, err
		}
	}
	chunked := false
	if hasTE {
		if resp.ProtoMinor == 0 {
			// RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message
			// means the framing is faulty.
			return 0, errors.New("h1client: Transfer-Encoding in an HTTP/1.0 response")
		}
		// ASCII case folding, as net/http's: strings.EqualFold would take
		// "chun\u212aed" (a Kelvin sign) for chunked, which a stricter
		// hop would not.
		if len(te) != 1 || !wire.EqualFold(wire.TrimOWS(te[0]), "chunked") {
			return 0, fmt.Errorf("h1client: unsupported transfer encoding %q", clip(strings.Join(te, ", ")))
		}
		chunked = true
	}
	resp.Close = httpguts.HeaderValuesContainsToken(h["Connection"], "close") ||
		resp.ProtoMinor == 0 && !httpguts.HeaderValuesContainsToken(h["Connection"], "keep-alive")

	switch {
	case method == http.MethodHead:
		// The fields describe the body a GET would have had.
		resp.ContentLength = cl
		return bodyNone, nil
	case resp.StatusCode/100 == 1, resp.StatusCode == http.StatusNoContent, resp.StatusCode == http.StatusNotModified:
		resp.ContentLength = 0
		// RFC 9110 §8.6, RFC 9112 §6.1: a 204 has neither
		// Content-Length nor Transfer-Encoding, and a 304 no
		// Transfer-Encoding (its Content-Length is the 200's). A server
		// that sends them may send a body too, which a reused connection
		// would read as the next response.
		if hasTE || resp.StatusCode == http.StatusNoContent && cl > 0 {
			return bodyNoneClose, nil
		}
		return bodyNone, nil
	case chunked:
		delete(h, "Content-Length")
		resp.ContentLength = -1
		resp.TransferEncoding = []string{"chunked"}
		if err := announcedTrailers(resp); err != nil {
			return 0, err
		}
		return bodyChunked, nil
	case cl == 0:
		// Nothing to read: the connection goes back at once.
		resp.ContentLength = 0
		return bodyNone, nil
	case cl > 0:
		resp.ContentLength = cl
		return bodyFixed, nil
	}
	resp.ContentLength = -1
	resp.Close = true
	return bodyUntilClose, nil
}

// parseContentLength accepts one length, repeated or listed any number of
// times (RFC 9110 §8.6 lets a recipient take "42, 42"), and nothing else.
func parseContentLength(vv []string) (int64, error) {
	if len(vv) == 1 {
		// The usual case, one length, without splitting.
		if n, ok := wire.ParseDecimal(wire.TrimOWS(vv[0])); ok {
			return n, nil
		}
	}
	n := int64(-1)
	for _, v := range vv {
		for part := range strings.SplitSeq(v, ",") {
			m, ok := wire.ParseDecimal(strings.Trim(part, " \t"))
			if !ok {
				return 0, fmt.Errorf("h1client: invalid Content-Length %q", clip(v))
			}
			if n >= 0 && m != n {
				return 0, fmt.Errorf("h1client: differing Content-Length values %q", clip(strings.Join(vv, ", ")))
			}
			n = m
		}
	}
	return n, nil
}

// announcedTrailers moves the Trailer field's names into resp.Trailer,
// with nil values until the trailers arrive, as net/http does.
func announcedTrailers(resp *http.Response) error {
	vv, ok := resp.Header["Trailer"]
	if !ok {
		return nil
	}
	delete(resp.Header, "Trailer")
	var tr http.Header
	for _, v := range vv {
		for k := range strings.SplitSeq(v, ",") {
			k = strings.Trim(k, " \t")
			if k == "" {
				continue
			}
			if !httpguts.ValidHeaderFieldName(k) {
				return fmt.Errorf("h1client: invalid name %q in Trailer", clip(k))
			}
			k = wire.CanonicalKey(k)
			switch k {
			case "Transfer-Encoding", "Trailer", "Content-Length":
				return fmt.Errorf("h1client: %q announced as a trailer", k)
			}
			if !httpguts.ValidTrailerHeader(k) {
				continue // dropped when it comes (see readTrailers)
			}
			if tr == nil {
				tr = make(http.Header)
			}
			tr[k] = nil
		}
	}
	resp.Trailer = tr
	return nil
}
