package h1server

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/net/http/httpguts"

	"github.com/outrigger-mesh/outrigger/proxy/internal/wire"
)

// maxUpgradeBody bounds the body of an h2c upgrade request, which must be
// read whole before the switch (x/net/http2/h2c reads it without bound).
const maxUpgradeBody = 64 << 10

// readRequest reads one request head into hd and prepares its body and
// response writer. Errors that deserve an answer are *httpError; hd then
// holds what was read of the request line (for Server.Refused).
func (c *conn) readRequest(hd *head) (*response, error) {
	if err := c.skipEmptyLines(); err != nil {
		return nil, err
	}
	if err := c.readHead(hd); err != nil {
		return nil, err
	}
	// The head is read: what follows (an h2c upgrade's body, read here)
	// is not held to MaxHeaderBytes.
	c.cr.noLimit()
	return c.newRequest(hd)
}

// maxEmptyLineBytes bounds the CR and LF bytes skipped before a request
// line: two empty lines.
const maxEmptyLineBytes = 4

// skipEmptyLines skips the empty lines before a request line: RFC 9112
// §2.2 says a server SHOULD ignore at least one (old clients send CRLF
// after a POST body).
func (c *conn) skipEmptyLines() error {
	for i := 0; i < maxEmptyLineBytes; i++ {
		b, err := c.br.Peek(1)
		if err != nil {
			return err
		}
		if b[0] != '\r' && b[0] != '\n' {
			break
		}
		_, _ = c.br.Discard(1)
	}
	return nil
}

// newRequest checks a head's Host, frames its body, and makes the
// request and its response writer.
func (c *conn) newRequest(hd *head) (*response, error) {
	method, uri, proto, minor, u, h := hd.method, hd.target, hd.proto, hd.minor, hd.url, hd.header

	switch {
	case method == "CONNECT":
		if !strings.HasPrefix(uri, "/") {
			if err := checkAuthorityTarget(u); err != nil {
				return nil, err
			}
		}
	case u.Scheme != "" || u.Opaque != "":
		if err := checkAbsoluteTarget(u); err != nil {
			return nil, err
		}
		if u.Path == "" {
			// "http://a.example" is "http://a.example/" (RFC 9110
			// §4.2.3), whose origin-form is "/" (RFC 9112 §3.2.1): the
			// path routes match and an upstream is sent.
			u.Path = "/"
		}
	}

	// Host (RFC 9112 §3.2): exactly one, valid, and required in HTTP/1.1.
	host := u.Host
	hosts, haveHost := hd.hosts, hd.hosts != nil
	switch {
	case len(hosts) > 1:
		return nil, badRequest("too many Host headers")
	case len(hosts) == 1 && !wire.ValidAuthority(hosts[0]):
		return nil, badRequest("malformed Host header")
	case !haveHost && minor >= 1 && method != "CONNECT":
		return nil, badRequest("missing required Host header")
	}
	if host == "" && haveHost {
		host = hosts[0]
	}

	w := &response{c: c, declaredCL: -1}
	r := http.Request{
		Method:     method,
		URL:        u,
		Proto:      proto,
		ProtoMajor: hd.major,
		ProtoMinor: minor,
		Header:     h,
		Host:       host,
		RemoteAddr: c.remote,
		RequestURI: uri,
		TLS:        c.tlsState,
	}
	// RFC 9112 §9.3: HTTP/1.1 persists unless "close"; HTTP/1.0 only
	// with "keep-alive", and "close" wins over it, as in net/http.
	r.Close = httpguts.HeaderValuesContainsToken(h["Connection"], "close")
	if minor == 0 && !r.Close {
		r.Close = !httpguts.HeaderValuesContainsToken(h["Connection"], "keep-alive")
	}

	if err := c.frameBody(w, &r); err != nil {
		return nil, err
	}

	if e, ok := h["Expect"]; ok {
		if len(e) != 1 || !wire.EqualFold(e[0], "100-continue") {
			return nil, &httpError{http.StatusExpectationFailed, "unsupported Expect"}
		}
		if minor >= 1 && w.body != nil {
			w.canContinue, w.expectedFirst = true, true
		}
	}

	if c.s.H2 != nil && minor >= 1 && c.tlsState == nil && isH2CUpgrade(h) {
		settings, err := h2cSettings(h)
		if err != nil {
			return nil, badRequest(err.Error())
		}
		// The body is read before any handler runs, so nothing else
		// bounds the wait for it.
		if d := c.lim.readHeaderTimeout; d > 0 && w.body != nil {
			c.setReadDeadline(d)
		}
		if err := readUpgradeBody(w, &r); err != nil {
			return nil, err
		}
		// The request now travels as stream 1 of an HTTP/2 connection:
		// it loses the HTTP/1.1 switch headers, and lives as long as
		// the connection. The fields its Connection header names go
		// with it (RFC 9110 §7.6.1: they were for this hop only), as a
		// proxy strips them from an HTTP/1.1 request, which it could no
		// longer do without the names; but for TE, whose "trailers"
		// HTTP/2 carries.
		dropConnectionNames(h)
		for _, k := range []string{"Connection", "Upgrade", "Http2-Settings"} {
			delete(h, k)
		}
		if w.expectedFirst {
			// Answered here, and the body read whole: as the HTTP/2
			// server's requests whose 100 it sends, the request goes on
			// without it, so that no proxy asks its upstream for a
			// second 100 (and waits for it) for a body it holds.
			delete(h, "Expect")
		}
		r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/2.0", 2, 0
		w.h2cSettings = settings
		w.req = r.WithContext(c.ctx)
		return w, nil
	}

	c.watchConnEnd(&w.ctx)
	// WithContext is inlined and its copy, dereferenced at once, stays
	// on the stack: the request lives inside the response, one
	// allocation for both.
	w.reqv = *r.WithContext(&w.ctx)
	w.req = &w.reqv
	if w.body != nil {
		w.body.w = w
	}
	return w, nil
}

// checkAbsoluteTarget checks a target that is not in origin-form, of a
// method other than CONNECT (the asterisk-form is checked with the
// request line). RFC 9112 §3.2: such a target is in absolute-form; the
// authority-form is for CONNECT only (§3.2.3), and net/url reads
// "host:port" as a URI of scheme "host" with an opaque part, which names
// no path to forward. An absolute-form target must be an http or https
// URI (the only ones this server serves, and those it forwards as), with
// a host (RFC 9110 §4.2.1: a recipient MUST reject an empty one) and
// without userinfo (RFC 9110 §4.2.4: to be treated as an error, as the
// host it hides in front of is what some readers take for the host),
// and its host must be one a Host field could hold, as the Host field's
// must.
func checkAbsoluteTarget(u *url.URL) error {
	switch {
	case u.Opaque != "":
		return badRequest("request target in authority-form or without a path, for a method other than CONNECT")
	case u.Scheme != "http" && u.Scheme != "https":
		return badRequest("absolute-form request target with a scheme other than http or https")
	case u.Host == "":
		return badRequest("absolute-form request target without a host")
	case u.User != nil:
		return badRequest("absolute-form request target with userinfo")
	case !wire.ValidAuthority(u.Host):
		// net/url unescapes a host: "%ff" would become a byte no Host
		// field may hold, and no upstream request could carry. And it
		// takes "a:80:80" for host "a:80" and port 80.
		return badRequest("malformed host in absolute-form request target")
	}
	return nil
}

// checkAuthorityTarget checks CONNECT's authority-form target (RFC 9112
// §3.2.3): uri-host ":" port and nothing else, so no userinfo (net/url
// takes "a@b:443" for host b), path or query, and a host a Host field
// could hold.
func checkAuthorityTarget(u *url.URL) error {
	if u.User != nil || u.Path != "" || u.RawQuery != "" || u.ForceQuery || u.Port() == "" || !httpguts.ValidHostHeader(u.Host) {
		return badRequest("malformed authority-form request target")
	}
	return nil
}

func isNetError(err error) bool {
	_, ok := err.(interface{ Timeout() bool })
	return ok
}

// frameBody decides the request body's length (RFC 9112 §6), refusing
// what could let one request be read as two.
func (c *conn) frameBody(w *response, r *http.Request) error {
	h := r.Header
	te, hasTE := h["Transfer-Encoding"]
	cl, hasCL := h["Content-Length"]
	if hasTE {
		if r.ProtoMinor == 0 {
			// RFC 9112 §6.1: a Transfer-Encoding in an HTTP/1.0 message
			// is a sign of faulty framing.
			return badRequest("Transfer-Encoding in an HTTP/1.0 request")
		}
		if hasCL {
			// RFC 9112 §6.3 ¶3: "ought to be handled as an error".
			return badRequest("both Transfer-Encoding and Content-Length")
		}
		// ASCII-only trimming and case folding, as in net/http: with
		// Unicode rules "chun\u212aed" or "chunked\u00a0" would pass as
		// chunked here and not at a stricter hop in front.
		if len(te) != 1 || !wire.EqualFold(textproto.TrimString(te[0]), "chunked") {
			return transferCodingError(te)
		}
		delete(h, "Transfer-Encoding")
		r.TransferEncoding = []string{"chunked"}
		r.ContentLength = -1
		if err := declareTrailers(r); err != nil {
			return err
		}
		w.body = &body{br: c.br, c: c, chunked: httputil.NewChunkedReader(c.br), trailer: r.Trailer, max: c.lim.maxHeaderBytes}
		r.Body = w.body
		return nil
	}
	if hasCL {
		first := textproto.TrimString(cl[0])
		for _, v := range cl[1:] {
			if textproto.TrimString(v) != first {
				return badRequest("differing Content-Length values")
			}
		}
		n, ok := wire.ParseDecimal(first)
		if !ok {
			return badRequest("invalid Content-Length")
		}
		if len(cl) > 1 {
			h["Content-Length"] = []string{first}
		}
		r.ContentLength = n
		if n > 0 {
			w.body = &body{br: c.br, c: c, remain: n}
			r.Body = w.body
			return nil
		}
	}
	r.Body = http.NoBody
	return nil
}

// transferCodingError is the answer to a Transfer-Encoding other than
// the one "chunked" this server reads. RFC 9112 §6.1: when chunked is not
// the final coding, the request's length cannot be determined and the
// server MUST answer 400 and close; a coding it does not implement before
// a final chunked SHOULD get 501. Chunked applied twice (which a sender
// MUST NOT do), or spelled over several field lines or with empty list
// elements, is refused with 400 too rather than read as chunked: a hop in
// front that read it another way would frame the body differently.
func transferCodingError(te []string) error {
	var last string
	codings, chunked := 0, 0
	for _, v := range te {
		for c := range strings.SplitSeq(v, ",") {
			c = textproto.TrimString(c)
			if c == "" {
				continue
			}
			last = c
			codings++
			if wire.EqualFold(c, "chunked") {
				chunked++
			}
		}
	}
	switch {
	case codings == 0 || !wire.EqualFold(last, "chunked"):
		return badRequest("final transfer coding is not chunked")
	case chunked > 1:
		return badRequest("chunked transfer coding applied more than once")
	case codings == 1:
		return badRequest("ambiguous Transfer-Encoding")
	}
	return &httpError{http.StatusNotImplemented, "unsupported transfer encoding"}
}

// declareTrailers fills r.Trailer with the keys the "Trailer" header
// announces (values come at the body's end), as net/http does.
func declareTrailers(r *http.Request) error {
	vv, ok := r.Header["Trailer"]
	if !ok {
		return nil
	}
	delete(r.Header, "Trailer")
	t := http.Header{}
	for _, v := range vv {
		for _, k := range strings.Split(v, ",") {
			k = textproto.CanonicalMIMEHeaderKey(textproto.TrimString(k))
			if k == "" {
				continue
			}
			// A name that is not a token (RFC 9110 §6.6.2: Trailer is a
			// list of field names) would be refused by the transport
			// forwarding the request, as if the upstream had failed.
			if badTrailer(k) || !httpguts.ValidHeaderFieldName(k) {
				return badRequest("bad trailer key " + strconv.Quote(k))
			}
			t[k] = nil
		}
	}
	if len(t) > 0 {
		r.Trailer = t
	}
	return nil
}

// badTrailer: fields that must not ride in a trailer (RFC 9110 §6.5.1:
// framing, routing, authentication, request modifiers, response control,
// content metadata), by x/net's list, which the HTTP/2 listener applies
// too: a received one is dropped, a declared one refused.
func badTrailer(k string) bool { return !httpguts.ValidTrailerHeader(k) }

func isH2CUpgrade(h http.Header) bool {
	return httpguts.HeaderValuesContainsToken(h["Upgrade"], "h2c") &&
		httpguts.HeaderValuesContainsToken(h["Connection"], "HTTP2-Settings")
}

// dropConnectionNames deletes from h the fields its Connection header
// names, but for TE.
func dropConnectionNames(h http.Header) {
	for _, v := range h["Connection"] {
		for _, tok := range strings.Split(v, ",") {
			if k := textproto.CanonicalMIMEHeaderKey(textproto.TrimString(tok)); k != "Te" && k != "Connection" {
				delete(h, k)
			}
		}
	}
}

// h2cSettings decodes the one HTTP2-Settings header (RFC 7540 §3.2.1:
// base64url, padding omitted; padding is tolerated).
func h2cSettings(h http.Header) ([]byte, error) {
	vv := h["Http2-Settings"]
	if len(vv) != 1 {
		return nil, errString("want exactly one HTTP2-Settings header")
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(vv[0], "="))
	if err != nil {
		return nil, errString("malformed HTTP2-Settings")
	}
	if b == nil {
		b = []byte{}
	}
	return b, nil
}

type errString string

func (e errString) Error() string { return string(e) }

// readUpgradeBody reads an h2c upgrade request's body whole: HTTP/2 then
// serves the request as a stream whose body has ended.
func readUpgradeBody(w *response, r *http.Request) error {
	if w.body == nil {
		r.Body = http.NoBody
		return nil
	}
	if r.ContentLength > maxUpgradeBody {
		return &httpError{http.StatusRequestEntityTooLarge, "h2c upgrade request body too large"}
	}
	if w.canContinue {
		if err := w.writeContinue(); err != nil {
			return err
		}
	}
	b, err := io.ReadAll(io.LimitReader(w.body, maxUpgradeBody+1))
	if err != nil {
		return badRequest("reading upgrade request body: " + err.Error())
	}
	if len(b) > maxUpgradeBody {
		return &httpError{http.StatusRequestEntityTooLarge, "h2c upgrade request body too large"}
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	r.Trailer = w.body.trailer
	r.ContentLength = int64(len(b))
	r.TransferEncoding = nil
	w.body = nil
	return nil
}

// body is a request body framed by Content-Length or chunked encoding. It
// is safe for concurrent use: a handler may leave a reader (an upstream
// transport) behind when it returns, and the server then drains it.
type body struct {
	br      *bufio.Reader
	c       *conn
	w       *response
	chunked io.Reader   // nil: Content-Length framing
	remain  int64       // Content-Length framing: bytes left
	trailer http.Header // the request's Trailer, filled at the end
	max     int         // trailer block size limit

	mu         sync.Mutex
	sawEOF     bool
	closed     bool // the server took it back; reads fail
	userClosed bool // the handler closed it; reads fail
	err        error
}

// Close makes further reads fail; what is left is drained (or the
// connection closed) after the handler returns.
func (b *body) Close() error {
	b.mu.Lock()
	b.userClosed = true
	b.mu.Unlock()
	return nil
}

func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || b.userClosed {
		return 0, http.ErrBodyReadAfterClose
	}
	return b.readLocked(p)
}

func (b *body) readLocked(p []byte) (int, error) {
	if b.sawEOF {
		return 0, io.EOF
	}
	if b.err != nil {
		return 0, b.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if b.w != nil && b.w.expectedFirst && !b.w.contDone.Load() {
		if err := b.w.writeContinue(); err != nil {
			// The client waits for the 100 before it sends the body.
			b.err = err
			return 0, err
		}
	}
	var n int
	var err error
	if b.chunked == nil {
		if int64(len(p)) > b.remain {
			p = p[:b.remain]
		}
		n, err = b.br.Read(p)
		b.remain -= int64(n)
		if b.remain == 0 {
			err = io.EOF
		} else if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
	} else {
		n, err = b.chunked.Read(p)
		if err == io.EOF {
			err = b.readTrailer()
			if err == nil {
				err = io.EOF
			}
		}
	}
	if err == io.EOF {
		b.sawEOF = true
		if b.c != nil {
			b.c.bodyDone(b.br.Buffered() > 0)
		}
	} else if err != nil {
		b.err = err
	}
	return n, err
}

// readTrailer reads the trailer section after the last chunk (RFC 9112
// §7.1.2) into the request's Trailer.
func (b *body) readTrailer() error {
	// An empty trailer section: the blank line alone, taken with a bare
	// LF as textproto takes it (RFC 9112 §2.2). A two-byte Peek for CRLF
	// would wait for a byte past the body's end when the line is a bare
	// LF.
	if p, err := b.br.Peek(1); err == nil && p[0] == '\n' {
		_, _ = b.br.Discard(1)
		return nil
	}
	if p, err := b.br.Peek(2); err == nil && p[0] == '\r' && p[1] == '\n' {
		_, _ = b.br.Discard(2)
		return nil
	}
	if b.c != nil {
		b.c.cr.setLimit(b.max)
		defer b.c.cr.noLimit()
	}
	tp := textproto.NewReader(b.br)
	mh, err := tp.ReadMIMEHeader()
	if b.c != nil && b.c.cr.hitMax {
		return errString("request trailer too large")
	}
	if err != nil {
		if err == io.EOF {
			return io.ErrUnexpectedEOF
		}
		return errString("malformed trailer")
	}
	for k := range mh {
		// textproto lets a space before the colon into a name (see
		// go.dev/issue/34540); RFC 9112 §5.1 refuses it in any field
		// line, and forwarded as a trailer it would be an invalid name.
		if !httpguts.ValidHeaderFieldName(k) {
			return errString("malformed trailer")
		}
	}
	if b.trailer == nil && len(mh) > 0 {
		// Unannounced trailers land in Trailer too, as with net/http.
		// (An h2c upgrade's body is read before the handler has the
		// request, hence no b.w; readUpgradeBody passes the trailer on.)
		b.trailer = http.Header{}
		if b.w != nil {
			b.w.req.Trailer = b.trailer
		}
	}
	for k, vv := range mh {
		if badTrailer(k) {
			continue
		}
		b.trailer[k] = vv
	}
	return nil
}

// drain reads and drops what the handler left of the body, up to
// maxDrain, and takes the body back from any reader left behind. It
// reports whether the body's end was reached, so that the connection can
// serve another request.
func (b *body) drain() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return b.sawEOF
	}
	defer func() { b.closed = true }()
	if b.sawEOF {
		return true
	}
	if b.err != nil || (b.chunked == nil && b.remain > maxDrain) {
		return false
	}
	var buf [4 << 10]byte
	for read := 0; read <= maxDrain; {
		n, err := b.readLocked(buf[:])
		read += n
		if err == io.EOF {
			return true
		}
		if err != nil {
			return false
		}
	}
	return false
}

// ended reports whether the body was read to its end.
func (b *body) ended() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sawEOF
}

// close takes the body back without reading it.
func (b *body) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
}
