package h1client

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/net/http/httpguts"
)

// outgoing is what RoundTrip learned about a request before sending it.
type outgoing struct {
	method string
	host   string        // the Host header's value
	body   io.ReadCloser // nil once closed, or when there is none
	// length is the body's framing: > 0 Content-Length, -1 chunked, 0 no
	// body.
	length int64
	// sendZeroLength sends "Content-Length: 0" for a body-less POST, PUT
	// or PATCH, as net/http does: many servers want one.
	sendZeroLength bool
	expect         bool // "Expect: 100-continue"
	close          bool // the request asks to close the connection after it
	idempotent     bool // may be sent again after a stale connection failed it
}

func (o *outgoing) closeBody() {
	if o.body != nil {
		o.body.Close()
		o.body = nil
	}
}

// ErrInvalidRequest is in the error (test with errors.Is) of a request
// that RoundTrip refused before taking a connection because it cannot be
// written as an HTTP/1.1 message intact: an invalid method, Host, target,
// header or trailer field. The upstream never saw it; a caller should not
// count it against the upstream, nor send it again.
var ErrInvalidRequest = errors.New("h1client: invalid request")

// invalidRequest is a refusal of prepare: its message, and ErrInvalidRequest.
type invalidRequest struct{ err error }

func invalid(err error) error { return invalidRequest{err} }

func (e invalidRequest) Error() string        { return e.err.Error() }
func (e invalidRequest) Unwrap() error        { return e.err }
func (e invalidRequest) Is(target error) bool { return target == ErrInvalidRequest }

// prepare validates req and works out its framing. Nothing that could
// split or smuggle a message is accepted: errors name the bad part.
func (o *outgoing) prepare(req *http.Request) error {
	o.method = req.Method
	if o.method == "" {
		o.method = http.MethodGet
	}
	if !httpguts.ValidHeaderFieldName(o.method) { // a method is a token, as a field name is
		return invalid(fmt.Errorf("h1client: invalid method %q", o.method))
	}
	u := req.URL
	if u.Scheme != "http" && u.Scheme != "https" {
		return invalid(fmt.Errorf("h1client: unsupported scheme %q", u.Scheme))
	}
	if u.Host == "" {
		return invalid(errors.New("h1client: request URL has no host"))
	}
	host := req.Host
	if host == "" {
		host = u.Host
	}
	h, err := httpguts.PunycodeHostPort(host)
	if err != nil || !httpguts.ValidHostHeader(h) {
		return invalid(fmt.Errorf("h1client: invalid Host %q", host))
	}
	o.host = h
	if err := checkTarget(u); err != nil {
		return err
	}
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return invalid(fmt.Errorf("h1client: invalid header field name %q", k))
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return invalid(fmt.Errorf("h1client: invalid header field value for %q", k))
			}
		}
	}
	for k := range req.Trailer {
		if err := checkTrailerName(k); err != nil {
			return invalid(fmt.Errorf("h1client: %w", err))
		}
	}
	o.close = req.Close || httpguts.HeaderValuesContainsToken(req.Header["Connection"], "close")
	o.idempotent = idempotent(o.method) || req.Header["Idempotency-Key"] != nil || req.Header["X-Idempotency-Key"] != nil

	switch {
	case req.Body == nil || req.Body == http.NoBody:
		o.body = nil
		o.length = 0
	case req.ContentLength > 0:
		o.length = req.ContentLength
	case req.ContentLength < 0 || req.Trailer != nil:
		o.length = -1
	default:
		// ContentLength 0 with a body means "unknown" (net/http's
		// convention): read one byte to tell an empty body from one
		// to send chunked.
		var b [1]byte
		n, err := io.ReadFull(req.Body, b[:])
		switch {
		case n == 1:
			o.body = &prefixedBody{b: b[0], rc: req.Body}
			o.length = -1
		case err == io.EOF:
			o.closeBody()
			o.length = 0
		default:
			return fmt.Errorf("h1client: reading request body: %w", err)
		}
	}
	if o.length == 0 {
		switch o.method {
		case http.MethodPost, http.MethodPut, http.MethodPatch:
			o.sendZeroLength = true
		}
	} else {
		o.expect = httpguts.HeaderValuesContainsToken(req.Header["Expect"], "100-continue")
	}
	return nil
}

// checkTrailerName refuses a request trailer name that is not a token,
// or that names a field a trailer may not carry.
func checkTrailerName(k string) error {
	if !httpguts.ValidHeaderFieldName(k) {
		return fmt.Errorf("invalid trailer field name %q", k)
	}
	switch http.CanonicalHeaderKey(k) {
	case "Content-Length", "Transfer-Encoding", "Trailer", "Host":
		return fmt.Errorf("%q may not be a trailer", k)
	}
	return nil
}

func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// checkTarget refuses a request target that would not survive the
// request line intact: a space or a control byte would end the line or
// the target early. The path is always sent escaped (EscapedPath uses
// RawPath only when it is a valid encoding), so only the opaque part and
// the raw query, sent as they are, need the check.
func checkTarget(u *url.URL) error {
	for _, s := range [...]string{u.Opaque, u.RawQuery} {
		for i := 0; i < len(s); i++ {
			if b := s[i]; b <= ' ' || b == 0x7f {
				return invalid(fmt.Errorf("h1client: invalid byte %#x in request target", b))
			}
		}
	}
	return nil
}

// writeTarget writes the request target: what url.URL.RequestURI
// returns, without building the string.
func writeTarget(bw *bufio.Writer, u *url.URL) {
	if u.Opaque != "" {
		bw.WriteString(u.RequestURI())
		return
	}
	p := u.EscapedPath()
	if p == "" {
		p = "/"
	}
	bw.WriteString(p)
	if u.ForceQuery || u.RawQuery != "" {
		bw.WriteByte('?')
		bw.WriteString(u.RawQuery)
	}
}

// writeHead buffers the request line and header block.
func (o *outgoing) writeHead(bw *bufio.Writer, req *http.Request) {
	bw.WriteString(o.method)
	bw.WriteByte(' ')
	writeTarget(bw, req.URL)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(o.host)
	bw.WriteString("\r\n")
	for k, vv := range req.Header {
		switch k {
		case "Host", "Content-Length", "Transfer-Encoding", "Trailer":
			// Framing is the transport's: the caller's values would
			// contradict the body actually sent.
			continue
		case "User-Agent":
			if len(vv) == 1 && vv[0] == "" {
				continue
			}
		default:
			if framingKey(k) {
				// The same fields under a key that is not canonical
				// (a map written to directly): still the transport's.
				continue
			}
		}
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(strings.Trim(v, " \t"))
			bw.WriteString("\r\n")
		}
	}
	switch {
	case o.length > 0 || o.sendZeroLength:
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), max(o.length, 0), 10))
		bw.WriteString("\r\n")
	case o.length < 0:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
		if len(req.Trailer) > 0 {
			bw.WriteString("Trailer: ")
			first := true
			for k := range req.Trailer {
				if !first {
					bw.WriteString(", ")
				}
				first = false
				bw.WriteString(http.CanonicalHeaderKey(k))
			}
			bw.WriteString("\r\n")
		}
	}
	if req.Header["Connection"] == nil {
		// TE is for the connection it is sent on, which the sender
		// says by naming it in Connection (RFC 9110 §10.1.4).
		_, te := req.Header["Te"]
		switch {
		case te && req.Close:
			bw.WriteString("Connection: TE, close\r\n")
		case te:
			bw.WriteString("Connection: TE\r\n")
		case req.Close:
			bw.WriteString("Connection: close\r\n")
		}
	}
	bw.WriteString("\r\n")
}

// framingKey reports whether k names, in any case, a field only the
// transport writes. The length test keeps the common case to a switch.
func framingKey(k string) bool {
	switch len(k) {
	case len("Host"):
		return strings.EqualFold(k, "Host")
	case len("Trailer"):
		return strings.EqualFold(k, "Trailer")
	case len("Content-Length"):
		return strings.EqualFold(k, "Content-Length")
	case len("Transfer-Encoding"):
		return strings.EqualFold(k, "Transfer-Encoding")
	}
	return false
}

// errBodyRead marks an error from reading the request body (the caller's
// side), as opposed to writing to the connection.
type bodyReadError struct{ err error }

func (e *bodyReadError) Error() string { return "h1client: reading request body: " + e.err.Error() }
func (e *bodyReadError) Unwrap() error { return e.err }

// writeFixed copies exactly n bytes of body into bw, reading straight
// into the writer's free space, and checks that the body ends there
// (reading into probe, see checkBodyEnd).
//
// While bw holds nothing and more than its size is left, the body is
// read into a pooled chunk buffer instead, which bw writes to the
// connection without a copy (a write larger than its free space, with
// nothing buffered, goes straight through): a connection with small
// buffers then sends a large body in 16 KiB writes, not in writes of
// its buffer's size. The last bw.Size() bytes always go through bw, so
// that they are still unsent when checkBodyEnd looks for excess.
func writeFixed(bw *bufio.Writer, body io.Reader, n int64, probe *[1]byte) error {
	var big *[]byte
	defer func() {
		if big != nil {
			chunkBufs.Put(big)
		}
	}()
	for n > 0 {
		if bw.Available() == 0 {
			if err := bw.Flush(); err != nil {
				return err
			}
		}
		var buf []byte
		direct := bw.Buffered() == 0 && n > int64(bw.Size())
		if direct {
			if big == nil {
				big = chunkBufs.Get().(*[]byte)
			}
			buf = (*big)[:min(int64(len(*big)), n-int64(bw.Size()))]
		} else {
			buf = bw.AvailableBuffer()
			buf = buf[:min(int64(cap(buf)), n)]
		}
		m, err := body.Read(buf)
		if m > 0 {
			// Into its own free space: no copy, no error; or, direct,
			// to the connection, which may fail.
			if _, werr := bw.Write(buf[:m]); werr != nil {
				return werr
			}
			n -= int64(m)
		}
		if n == 0 {
			if err == io.EOF {
				return nil
			}
			break
		}
		if err == io.EOF {
			return &bodyReadError{fmt.Errorf("body ended %d bytes short of its ContentLength", n)}
		}
		if err != nil {
			return &bodyReadError{err}
		}
	}
	return checkBodyEnd(body, probe)
}

// checkBodyEnd reads once more (up to three times while a reader
// returns nothing) to see that a body of known length ends where it said: a
// longer body is the caller's error, as in net/http, not a request to
// send cut short. The caller has not flushed the last of the body yet,
// so a small request with a long body is never sent. The byte is read
// into probe, the connection's: a local would escape to the heap, body
// being an interface.
func checkBodyEnd(body io.Reader, probe *[1]byte) error {
	for range 3 {
		m, err := body.Read(probe[:])
		switch {
		case m > 0:
			return &bodyReadError{errors.New("body longer than its ContentLength")}
		case err == io.EOF:
			return nil
		case err != nil:
			return &bodyReadError{err}
		}
	}
	// A reader that keeps returning nothing: no excess seen, and what
	// was sent matches the length.
	return nil
}

var chunkBufs = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// writeChunked sends body as chunks, flushing each as it is read so that
// a streamed body streams, then the last chunk and the trailers.
func writeChunked(bw *bufio.Writer, body io.Reader, trailer http.Header) error {
	bp := chunkBufs.Get().(*[]byte)
	defer chunkBufs.Put(bp)
	buf := *bp
	for {
		n, err := body.Read(buf)
		if n > 0 {
			bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(n), 16))
			bw.WriteString("\r\n")
			bw.Write(buf[:n])
			bw.WriteString("\r\n")
			if ferr := bw.Flush(); ferr != nil {
				return ferr
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return &bodyReadError{err}
		}
	}
	bw.WriteString("0\r\n")
	for k, vv := range trailer {
		// Fields may be added while the body is read: check them again.
		if err := checkTrailerName(k); err != nil {
			return &bodyReadError{err}
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return &bodyReadError{fmt.Errorf("invalid trailer field value for %q", k)}
			}
			bw.WriteString(http.CanonicalHeaderKey(k))
			bw.WriteString(": ")
			bw.WriteString(strings.Trim(v, " \t"))
			bw.WriteString("\r\n")
		}
	}
	bw.WriteString("\r\n")
	return bw.Flush()
}

// prefixedBody is a body with its first byte already read.
type prefixedBody struct {
	b    byte
	done bool
	rc   io.ReadCloser
}

func (p *prefixedBody) Read(b []byte) (int, error) {
	if !p.done {
		if len(b) == 0 {
			return 0, nil
		}
		b[0] = p.b
		p.done = true
		return 1, nil
	}
	return p.rc.Read(b)
}

func (p *prefixedBody) Close() error { return p.rc.Close() }
