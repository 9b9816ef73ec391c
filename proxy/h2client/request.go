package h2client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2/hpack"

	"github.com/outrigger-mesh/outrigger/proxy/internal/roundtrip"
)

// smallBody is the largest request body of known length read ahead and
// sent with its HEADERS in one piece.
const smallBody = defaultMaxFrame

// field is a header field to encode.
type field struct{ name, value string }

// outgoing is a request as it goes out: its header fields, checked and
// lowercased once (a retry reuses them), and its body.
type outgoing struct {
	fields []field
	// body is sent by a goroutine; data, when not nil, is the whole body,
	// read ahead.
	body    io.ReadCloser
	data    []byte
	clen    int64 // the body's length, -1 when unknown
	head    bool  // a HEAD request
	expect  bool  // "Expect: 100-continue"
	trailer http.Header
	// sender is closed when the goroutine sending body has returned.
	sender chan struct{}
}

func (o *outgoing) closeBody() {
	if o.body != nil && o.sender == nil {
		o.body.Close()
	}
}

// rewind prepares o for sending again, and reports whether it can be:
// when its body was never started (none, read ahead, or no sender yet),
// or Request.GetBody gives it anew.
//
// The old body's sender must have returned first; its stream has ended,
// and the body was closed, but a body whose Close does not end a Read in
// progress keeps the sender until that Read returns: it is waited for
// only until ctx ends or deadline (zero: none) passes (the sender then
// closes the old body on its own).
func (o *outgoing) rewind(ctx context.Context, deadline time.Time, req *http.Request) bool {
	if o.body == nil || o.sender == nil {
		return true
	}
	if req.GetBody == nil {
		return false
	}
	ctx, cancel := roundtrip.WithDeadline(ctx, deadline)
	defer cancel()
	select {
	case <-o.sender:
	case <-ctx.Done():
		return false
	}
	o.sender = nil
	b, err := req.GetBody()
	if err != nil {
		o.body = nil
		return false
	}
	o.body = b
	return true
}

// prepare checks req and builds its header fields, reading a small body
// of known length ahead.
func prepare(req *http.Request) (*outgoing, error) {
	if req.URL == nil {
		return nil, errors.New("h2client: request has no URL")
	}
	if req.Header == nil {
		return nil, errors.New("h2client: request has no Header")
	}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	if method == http.MethodConnect {
		return nil, errors.New("h2client: CONNECT is not supported")
	}
	if !httpguts.ValidHeaderFieldName(method) {
		return nil, fmt.Errorf("h2client: invalid method %q", method)
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	if !httpguts.ValidHostHeader(host) {
		return nil, fmt.Errorf("h2client: invalid host %q", host)
	}
	path := req.URL.RequestURI()
	if !(strings.HasPrefix(path, "/") || path == "*" && method == http.MethodOptions) || strings.ContainsAny(path, " \t\r\n") {
		return nil, fmt.Errorf("h2client: invalid request target %q", path)
	}
	// :scheme is "https" over TLS, else the URL's ("http" when it is
	// neither).
	scheme := req.URL.Scheme
	if scheme != "http" && scheme != "https" {
		scheme = ""
	}

	o := &outgoing{clen: -1, head: method == http.MethodHead}
	if vv := req.Header["Expect"]; vv != nil {
		o.expect = httpguts.HeaderValuesContainsToken(vv, "100-continue")
	}
	o.fields = make([]field, 0, 4+len(req.Header)+2)
	o.fields = append(o.fields, field{":method", method}, field{":scheme", scheme}, field{":authority", host}, field{":path", path})
	sendTrailer := len(req.Trailer) > 0
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return nil, fmt.Errorf("h2client: invalid header name %q", k)
		}
		lk := lowerKey(k)
		switch lk {
		case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host", "content-length":
			// Connection-specific (RFC 9113 §8.2.2) or set below.
			continue
		case "te":
			// Only "trailers" may go (RFC 9113 §8.2.2): kept when it is
			// one of the codings listed, as the proxy's header edit and
			// Envoy keep it.
			if httpguts.HeaderValuesContainsToken(vv, "trailers") {
				o.fields = append(o.fields, field{"te", "trailers"})
			}
			continue
		case "trailer":
			if sendTrailer {
				continue
			}
		case "user-agent":
			if len(vv) == 1 && vv[0] == "" {
				continue
			}
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return nil, fmt.Errorf("h2client: invalid value for header %q", k)
			}
			o.fields = append(o.fields, field{lk, v})
		}
	}
	if sendTrailer {
		keys := make([]string, 0, len(req.Trailer))
		for k := range req.Trailer {
			if !httpguts.ValidHeaderFieldName(k) || !httpguts.ValidTrailerHeader(k) {
				return nil, fmt.Errorf("h2client: invalid trailer name %q", k)
			}
			keys = append(keys, lowerKey(k))
		}
		sort.Strings(keys)
		o.fields = append(o.fields, field{"trailer", strings.Join(keys, ",")})
		o.trailer = req.Trailer
	}

	// The body's length, as x/net/http2 works it out: 0 without a body,
	// ContentLength when set, else unknown.
	if req.Body != nil && req.Body != http.NoBody {
		o.body = req.Body
		if req.ContentLength != 0 {
			o.clen = req.ContentLength
		}
	} else {
		o.clen = 0
	}
	switch {
	case o.clen > 0:
		o.fields = append(o.fields, field{"content-length", strconv.FormatInt(o.clen, 10)})
	case o.clen == 0 && (method == "POST" || method == "PUT" || method == "PATCH"):
		o.fields = append(o.fields, field{"content-length", "0"})
	}
	if o.clen > 0 && o.clen <= smallBody && !sendTrailer {
		if err := o.readAhead(); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// readAhead reads a small body whole, checking that it ends at its length.
func (o *outgoing) readAhead() error {
	b := o.body
	o.body = nil
	defer b.Close()
	o.data = make([]byte, o.clen)
	if n, err := io.ReadFull(b, o.data); err != nil {
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			return fmt.Errorf("h2client: request body of %d bytes, shorter than its ContentLength %d", n, o.clen)
		}
		return fmt.Errorf("h2client: reading request body: %w", err)
	}
	var one [1]byte
	for range 4 {
		n, err := b.Read(one[:])
		if n > 0 {
			return fmt.Errorf("h2client: request body longer than its ContentLength %d", o.clen)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("h2client: reading request body: %w", err)
		}
	}
	return fmt.Errorf("h2client: request body did not end after its ContentLength %d", o.clen)
}

// writeFieldLocked HPACK-encodes one field into hbuf. Fields that carry
// credentials are never indexed (RFC 7541 §7.1.3); nor are those whose
// value differs on every request: indexing them would only evict the
// entries that do repeat, and costs the encoder a table update each.
func (c *conn) writeFieldLocked(name, value string) {
	c.henc.WriteField(hpack.HeaderField{Name: name, Value: value, Sensitive: unindexed[name]})
}

var unindexed = map[string]bool{
	"authorization":       true,
	"proxy-authorization": true,
	"cookie":              true,
	"x-request-id":        true,
	"grpc-timeout":        true,
	"traceparent":         true,
	"tracestate":          true,
	"x-b3-traceid":        true,
	"x-b3-spanid":         true,
	"x-b3-parentspanid":   true,
	"x-amzn-trace-id":     true,
}

// errUnusable fails a request whose reserved connection went away, or
// lost the slot to a lowered SETTINGS_MAX_CONCURRENT_STREAMS, before the
// request was queued; it is retried.
var errUnusable = errors.New("h2client: connection no longer usable")

// ErrHeaderListTooLarge fails a request whose header list, or whose
// trailers, would exceed the SETTINGS_MAX_HEADER_LIST_SIZE the server
// announced (sized as RFC 9113 §6.5.2 says: each field's name and value
// lengths plus 32, pseudo-fields included). A request whose header list
// is too large is not sent at all (no stream is opened, and the
// connection and its other streams carry on); one whose trailers are too
// large has its stream reset with CANCEL instead of sending them. The
// error returned wraps it, so test with errors.Is. It is not retried:
// every connection to the server is likely to say the same.
var ErrHeaderListTooLarge = errors.New("h2client: request header list larger than the server's SETTINGS_MAX_HEADER_LIST_SIZE")

// headerListTooLarge is ErrHeaderListTooLarge with the figures.
func headerListTooLarge(what string, size, limit uint64) error {
	return fmt.Errorf("%w (%s of %d bytes, limit %d)", ErrHeaderListTooLarge, what, size, limit)
}

// fieldSize is a field's size in a header list (RFC 9113 §6.5.2), as
// hpack.HeaderField.Size computes it.
func fieldSize(name, value string) uint64 { return uint64(len(name) + len(value) + 32) }

// schemeFor is the :scheme value sent on c for the request's own v.
func (c *conn) schemeFor(v string) string {
	if v == "" || c.scheme == "https" {
		return c.scheme
	}
	return v
}

// listSize is the size of a header list (or trailers) as sent on c.
func (c *conn) listSize(fields []field) uint64 {
	var n uint64
	for _, f := range fields {
		if f.name == ":scheme" {
			f.value = c.schemeFor(f.value)
		}
		n += fieldSize(f.name, f.value)
	}
	return n
}

// Waiting for "100 Continue" (stream.expect): the states of a request
// sent with "Expect: 100-continue" while the Transport holds its body
// back.
const (
	expectNone     = iota // no wait: the body goes with or right after the HEADERS
	expectWaiting         // HEADERS sent, body held back
	expectSend            // a 100 came, or ExpectContinueTimeout passed: send the body
	expectDeclined        // a final response came first: the body is never sent
)

// roundTrip opens a stream for req (its slot already reserved), queues
// its HEADERS (with the whole body when it is small and fits the
// windows), starts the body sender if needed, and waits for the final
// response head. retry reports that the server did not process the
// request.
//
// A request with a body and "Expect: 100-continue", when the Transport
// has an ExpectContinueTimeout, sends its HEADERS alone and starts the
// body only after a 100 Continue or the timeout; a final response that
// comes first means the body is never sent (see endRecvLocked for how
// the stream then ends).
func (c *conn) roundTrip(ctx context.Context, deadline time.Time, req *http.Request, o *outgoing, ev *events) (_ *http.Response, retry bool, _ error) {
	wait := o.expect && c.t.ExpectContinueTimeout > 0 && (o.body != nil || o.data != nil)
	s := &stream{
		c:         c,
		clen:      -1,
		recvAvail: streamWindow,
		recvWake:  make(chan struct{}, 1),
	}
	// Watched before c.mu is taken: a context that has ended runs
	// cancel, which takes c.mu, at once (see watch).
	s.watch(ctx)
	c.mu.Lock()
	if s.err != nil {
		// The context ended before the stream opened (see cancel).
		c.releaseLocked()
		c.unlock()
		return nil, false, s.err
	}
	if c.closed || c.goAway {
		s.unwatch()
		c.releaseLocked()
		c.unlock()
		return nil, true, errUnusable
	}
	if uint32(len(c.streams)) >= c.maxStreams {
		// The server lowered SETTINGS_MAX_CONCURRENT_STREAMS after the
		// slot was reserved, and its acknowledgement is already queued
		// ahead of these HEADERS: the server may count on the new limit
		// (RFC 9113 §5.1.2, §6.5.3). Nothing was sent; another
		// connection takes the request.
		s.unwatch()
		c.releaseLocked()
		c.unlock()
		return nil, true, errUnusable
	}
	if limit := c.peerMaxHeaderList; limit != noHeaderListLimit {
		// Checked before anything is encoded: a refused request leaves
		// the HPACK state, the stream ids and the wire untouched.
		if size := c.listSize(o.fields); size > limit {
			s.unwatch()
			c.releaseLocked()
			c.unlock()
			return nil, false, headerListTooLarge("header list", size, limit)
		}
	}
	s.id = c.nextID
	c.nextID += 2
	s.sendWindow = c.peerInitWindow
	s.noBody = o.head
	c.hbuf.Reset()
	for _, f := range o.fields {
		if f.name == ":scheme" {
			f.value = c.schemeFor(f.value)
		}
		c.writeFieldLocked(f.name, f.value)
	}
	n := int64(len(o.data))
	inline := o.data != nil && !wait && n <= s.sendWindow && n <= c.sendWindow && n <= int64(c.peerMaxFrame)
	switch {
	case o.body == nil && o.data == nil:
		c.appendHeaderBlockLocked(s.id, c.hbuf.Bytes(), true)
		s.sentEnd = true
	case inline:
		c.appendHeaderBlockLocked(s.id, c.hbuf.Bytes(), false)
		c.appendDataLocked(s.id, o.data, true)
		s.sendWindow -= n
		c.sendWindow -= n
		s.sentEnd = true
	default:
		c.appendHeaderBlockLocked(s.id, c.hbuf.Bytes(), false)
	}
	c.appended++
	s.seq = c.appended
	c.streams[s.id] = s
	c.wakeWriterLocked()
	if !deadline.IsZero() {
		// One timer for the round trip and the body: it resets the
		// stream as a context's deadline would (see expire), and the
		// stream's end stops it.
		s.deadline = time.AfterFunc(time.Until(deadline), s.expire)
	}
	switch {
	case wait:
		s.expect = expectWaiting
	case !s.sentEnd:
		c.startSendLocked(s, o)
	}
	c.mu.Unlock()

	var timeout <-chan time.Time
	if wait {
		ev.wait100Continue()
		timer := time.NewTimer(c.t.ExpectContinueTimeout)
		defer timer.Stop()
		timeout = timer.C
	}
	for {
		select {
		case <-s.recvWake:
		case <-timeout:
			timeout = nil
			c.mu.Lock()
			if s.expect == expectWaiting {
				s.expect = expectSend
			}
			c.mu.Unlock()
		}
		c.mu.Lock()
		infos := s.info
		s.info = nil
		resp, err, retry := s.resp, s.err, s.retry
		c.mu.Unlock()
		for _, in := range infos {
			if err := ev.got1xx(in.code, in.header); err != nil {
				s.fail(err)
				return nil, false, err
			}
		}
		if wait && (resp != nil || err == nil) {
			// The body is sent, or, when it never will be, closed. On
			// an error it is left to RoundTrip, which may send it again
			// on another connection.
			c.mu.Lock()
			over := s.expect != expectWaiting
			send := s.expect == expectSend && !s.done && s.err == nil && !s.sendStopped
			if send {
				c.startSendLocked(s, o)
			}
			c.mu.Unlock()
			if over {
				wait, timeout = false, nil
				if !send {
					o.closeBody()
				}
			}
		}
		if resp != nil {
			resp.Request = req
			return resp, false, nil
		}
		if err != nil {
			return nil, retry, err
		}
	}
}

// startSendLocked starts the goroutine that sends the request body (and
// trailers) after the HEADERS.
func (c *conn) startSendLocked(s *stream, o *outgoing) {
	s.body = o.body
	if s.body == nil {
		// A small body the windows could not take at once, or one held
		// back for a 100 Continue.
		s.body = io.NopCloser(bytes.NewReader(o.data))
	}
	s.sending = true
	s.sendWake = make(chan struct{}, 1)
	done := make(chan struct{})
	if o.body != nil {
		o.sender = done
	}
	go s.sendBody(o.clen, o.trailer, done)
}
