package h1server

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/outrigger-mesh/outrigger/proxy/internal/wire"
)

// A request head (RFC 9112 §2.1: request line, field lines, blank line)
// is read the way net/textproto's ReadLine and ReadMIMEHeader read it,
// which is what this server did before, with the same answers to every
// input, but with fewer allocations:
//
//   - When the whole head is already in the connection's read buffer (a
//     head that came in one segment, the usual case), it becomes one
//     string, and the method, target, keys and values are substrings of
//     it.
//   - Otherwise the head is read line by line as textproto reads it,
//     each field line (with its obs-fold continuation lines) becoming a
//     string of its own. The reads are textproto's, so a request whose
//     head is cut off, ends early or grows past MaxHeaderBytes gets the
//     same answer, at the same point of its arrival, as before: a bad
//     line is answered as soon as it is complete, without waiting for
//     the rest of the head.
//
// Either way the URL and the first values live in one reqHead, one
// allocation per request, and the header map is sized to the number of
// field lines. (A value kept past its request keeps the string of its
// head, at most the read buffer's 4 KiB, alive; proxy/h1client's
// response heads make the same trade.)

// headReader reads request heads from a connection's buffered reader.
type headReader struct {
	R *bufio.Reader // the connection's, set for each head
	// buf holds the line (a field line with its continuation lines) that
	// the line-by-line path is reading; it is kept between requests
	// while it is small.
	buf []byte
}

// reqHead is what a request keeps of its head, in one allocation: its
// URL (unless net/url parsed it) and room for its first field values.
// A request may outlive the next one (a handler can leave a goroutine
// holding it), so each request has its own.
type reqHead struct {
	url url.URL
	// Seven values: the struct then fills a 256-byte size class.
	vals [7]string
}

// head is a parsed request head.
type head struct {
	method, target, proto string
	major, minor          int
	url                   *url.URL
	header                http.Header // without Host
	hosts                 []string    // the Host field's values

	rh      *reqHead
	vals    []string // room for values not yet used
	lines   int      // field lines not yet parsed, at most (to size vals)
	badName bool     // a field name holds a space (see addField)
}

// readHead reads and parses a request head from c.br; the caller has
// skipped the empty lines before it. Errors that deserve an answer are
// *httpError; others (EOF, a timeout, a reset) come from the connection.
// A head that passes MaxHeaderBytes sets c.cr.hitMax, whatever the error.
func (c *conn) readHead(hd *head) error {
	tp := &c.tp
	tp.R = c.br
	err := tp.read(hd)
	if cap(tp.buf) > maxKeptHdrBuf {
		tp.buf = nil
	}
	if err != nil {
		return err
	}
	// Before, names were checked after the whole head was read (with
	// httpguts, which rejects the space that textproto lets into a
	// name): the error for a name with a space comes last.
	if hd.badName {
		return badRequest("invalid header name")
	}
	return nil
}

func (tp *headReader) read(hd *head) error {
	if s, lines, ok := bufferedHead(tp.R); ok {
		return hd.parse(s, lines)
	}
	return tp.readLines(hd)
}

// bufferedHead returns the head if br's buffer holds it whole, and the
// number of lines after the request line, blank line excluded. It reads
// nothing from the connection.
func bufferedHead(br *bufio.Reader) (s string, lines int, ok bool) {
	b, _ := br.Peek(br.Buffered())
	i := bytes.IndexByte(b, '\n') // the request line's end
	if i < 0 {
		return "", 0, false
	}
	for p := i + 1; ; lines++ {
		j := bytes.IndexByte(b[p:], '\n')
		if j < 0 {
			return "", 0, false
		}
		if j == 0 || j == 1 && b[p] == '\r' {
			end := p + j + 1
			s = string(b[:end])
			_, _ = br.Discard(end)
			return s, lines, true
		}
		p += j + 1
	}
}

// parse parses a whole head, blank line included; lines is the number of
// lines after the request line. The checks come in the order in which
// textproto's line-by-line reading met them.
func (hd *head) parse(s string, lines int) error {
	line, rest := wire.NextLine(s)
	if err := hd.requestLine(line); err != nil {
		return err
	}
	hd.startFields(lines)
	if rest[0] == ' ' || rest[0] == '\t' {
		return errMalformedHeader
	}
	for {
		if rest[0] == '\n' || rest[0] == '\r' && rest[1] == '\n' {
			return nil // the blank line
		}
		// A field line and its continuation lines (RFC 9112 §5.2). Every
		// line ends with LF: s ends with the blank line.
		end := strings.IndexByte(rest, '\n') + 1
		for rest[end] == ' ' || rest[end] == '\t' {
			end += strings.IndexByte(rest[end:], '\n') + 1
		}
		if err := hd.addField(rest[:end]); err != nil {
			return err
		}
		rest = rest[end:]
	}
}

// readLines reads a head that is not whole in the buffer, line by line,
// with the reads textproto's ReadLine and ReadMIMEHeader make.
func (tp *headReader) readLines(hd *head) error {
	br := tp.R
	tp.buf = tp.buf[:0]
	if err := tp.appendLine(); err != nil {
		return err
	}
	line, _ := wire.NextLine(string(tp.buf))
	if err := hd.requestLine(line); err != nil {
		return err
	}
	hd.startFields(upcomingLines(br))
	// The first field line may not be a continuation line: textproto
	// reads 80 bytes of it (or the whole line) to quote it in an error.
	if b, err := br.Peek(1); err == nil && (b[0] == ' ' || b[0] == '\t') {
		for n := 0; ; {
			l, more, err := br.ReadLine()
			if err != nil {
				return fieldReadError(err)
			}
			if n += len(l); n > 80 || !more {
				return errMalformedHeader
			}
		}
	}
	for {
		tp.buf = tp.buf[:0]
		if err := tp.appendLine(); err != nil {
			return fieldReadError(err)
		}
		if len(tp.buf) == 2 {
			return nil // the blank line
		}
		// textproto checks for the colon before it reads continuation
		// lines, and the rest once it has them.
		if bytes.IndexByte(tp.buf, ':') < 0 {
			return errMalformedHeader
		}
		// A continuation line is read after its leading whitespace, byte
		// by byte, as textproto does: the reads then end where they
		// did, and so does a line that a read error cuts off.
		for skipSpace(br) > 0 {
			tp.buf = append(tp.buf, ' ')
			if tp.appendLine() != nil {
				tp.buf = append(tp.buf, '\r', '\n')
				break
			}
		}
		if err := hd.addField(string(tp.buf)); err != nil {
			return err
		}
	}
}

// appendLine appends a line to tp.buf as textproto's readLineSlice reads
// it (with bufio's ReadLine: what precedes LF or CRLF; a last line cut
// off by a read error is taken as it is, the error coming again at the
// next read), then CRLF, so that nextLine gives back the line as it was
// read. At a read error before the line's end, it appends nothing.
func (tp *headReader) appendLine() error {
	start := len(tp.buf)
	for {
		l, more, err := tp.R.ReadLine()
		if err != nil {
			tp.buf = tp.buf[:start]
			return err
		}
		tp.buf = append(tp.buf, l...)
		if !more {
			tp.buf = append(tp.buf, '\r', '\n')
			return nil
		}
	}
}

// skipSpace reads the spaces and tabs at the start of a line and returns
// their number; it stops at a read error, which comes again at the next
// read.
func skipSpace(br *bufio.Reader) int {
	n := 0
	for {
		c, err := br.ReadByte()
		if err != nil {
			return n
		}
		if c != ' ' && c != '\t' {
			_ = br.UnreadByte()
			return n
		}
		n++
	}
}

// upcomingLines counts the lines buffered in br, up to a blank line: a
// size for the header map.
func upcomingLines(br *bufio.Reader) int {
	b, _ := br.Peek(br.Buffered())
	n := 0
	for n < 1000 {
		i := bytes.IndexByte(b, '\n')
		if i <= 0 || i == 1 && b[0] == '\r' {
			break
		}
		b = b[i+1:]
		n++
	}
	return n
}

var errMalformedHeader = badRequest("malformed header")

// fieldReadError is the answer to a read error met in the field lines,
// as before: the connection's own errors are passed on (and answered
// with nothing, or with 431 for errHeaderTooLarge, by the serve loop);
// others, like a pipe's, make a malformed header.
func fieldReadError(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF || isNetError(err) || err == errHeaderTooLarge {
		return err
	}
	return errMalformedHeader
}

// requestLine parses the request line (RFC 9112 §3) into hd.
func (hd *head) requestLine(line string) error {
	method, rest, ok1 := strings.Cut(line, " ")
	uri, proto, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || method == "" || uri == "" {
		return badRequest("malformed request line")
	}
	if !httpguts.ValidHeaderFieldName(method) { // a method is a token
		return badRequest("invalid method")
	}
	major, minor, ok := http.ParseHTTPVersion(proto)
	if !ok {
		return badRequest("malformed HTTP version")
	}
	if major != 1 {
		return &httpError{http.StatusHTTPVersionNotSupported, "unsupported protocol version"}
	}
	switch proto {
	case "HTTP/1.1":
		proto = "HTTP/1.1" // share the constant rather than the head
	case "HTTP/1.0":
		proto = "HTTP/1.0"
	}
	// The asterisk-form is for a server-wide OPTIONS only (RFC 9112
	// §3.2.4); forwarded with another method it means nothing upstream.
	if uri == "*" && method != http.MethodOptions {
		return badRequest("asterisk-form target for a method other than OPTIONS")
	}
	// RFC 9112 §3.2: no form of request target has a fragment. net/url
	// would keep a '#' in the query (or escape it in the path) and
	// forward it, and an upstream that reads a fragment there would
	// serve another target than the one routed.
	if strings.IndexByte(uri, '#') >= 0 {
		return badRequest("fragment in request target")
	}
	hd.rh = new(reqHead)
	// CONNECT's target is an authority (RFC 9112 §3.2.3), parsed as
	// net/http does.
	if method == "CONNECT" && !strings.HasPrefix(uri, "/") {
		u, err := url.ParseRequestURI("http://" + uri)
		if err != nil {
			return badRequest("malformed request target")
		}
		u.Scheme = ""
		hd.url = u
	} else if wire.ParsePlainPath(uri, &hd.rh.url) {
		hd.url = &hd.rh.url
	} else {
		u, err := url.ParseRequestURI(uri)
		if err != nil {
			return badRequest("malformed request target")
		}
		hd.url = u
	}
	hd.method, hd.target, hd.proto, hd.major, hd.minor = method, uri, proto, major, minor
	return nil
}

func (hd *head) startFields(lines int) {
	hd.header = make(http.Header, lines)
	hd.vals = hd.rh.vals[:]
	hd.lines = lines
}

// addField parses a field line with its continuation lines (t, each line
// with its LF, but for a last line cut off by a read error) and adds it
// to hd.header, as textproto does:
//
//   - The line must have a colon, and the name before it must be a
//     token; a name may also hold a space (textproto's leniency, see
//     go.dev/issue/34540), which is then kept as it is and the request
//     refused once its head is read (hd.badName): whitespace before the
//     colon is refused (RFC 9112 §5.1).
//   - The value is trimmed of spaces and tabs, and may not hold a
//     control byte but tab.
//   - Continuation lines (obs-fold) are joined to the value with a
//     space each, trimmed too (RFC 9112 §5.2 lets a server do that).
//   - Names are canonicalized (textproto.CanonicalMIMEHeaderKey).
func (hd *head) addField(t string) error {
	line, conts := wire.NextLine(t)
	line = wire.TrimOWS(line)
	colon, token, spacesOnly, canonical := wire.ScanFieldName(line)
	if colon <= 0 || !spacesOnly {
		return errMalformedHeader
	}
	k, v := line[:colon], line[colon+1:]
	if conts != "" {
		v = unfold(v, conts)
	}
	if !httpguts.ValidHeaderFieldValue(v) {
		return errMalformedHeader
	}
	// Left only: the line's end is trimmed already, and a folded value
	// keeps the space before an empty last continuation line.
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	switch {
	case !token:
		hd.badName = true
	case !canonical:
		k = wire.Canonicalize(k)
	}
	hd.lines--
	if k == "Host" {
		// Kept out of the map: readRequest checks it and never passes it
		// on (RFC 9112 §3.2), and a map whose only field was Host then
		// never allocates room for a field.
		if hd.hosts != nil {
			hd.hosts = append(hd.hosts, v)
		} else {
			hd.hosts = hd.newValue(v)
		}
		return nil
	}
	h := hd.header
	if vv, ok := h[k]; ok {
		h[k] = append(vv, v)
	} else {
		h[k] = hd.newValue(v)
	}
	return nil
}

// newValue returns a field's first value in a slice of its own, cut to
// length and capacity one (as textproto does), so that appending to one
// field's values never writes over another's.
func (hd *head) newValue(v string) []string {
	if len(hd.vals) == 0 {
		hd.vals = make([]string, max(hd.lines+1, 4))
	}
	hd.vals[0] = v
	vv := hd.vals[:1:1]
	hd.vals = hd.vals[1:]
	return vv
}

// unfold joins continuation lines to a value as textproto does: each
// trimmed of spaces and tabs, after a space.
func unfold(v, conts string) string {
	var b strings.Builder
	b.Grow(len(v) + len(conts))
	b.WriteString(v)
	for conts != "" {
		var line string
		line, conts = wire.NextLine(conts)
		b.WriteByte(' ')
		b.WriteString(wire.TrimOWS(line))
	}
	return b.String()
}
