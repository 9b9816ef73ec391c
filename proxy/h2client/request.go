package h2client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2/hpack"
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
func (o *outgoing) rewind(req *http.Request) bool {
	if o.body == nil || o.sender == nil {
		return true
	}
	if req.GetBody == nil {
		return false
	}
	// The sender stopped with its stream; it closes the old body.
	<-o.sender
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
			// Only "trailers" may go (RFC 9113 §8.2.2).
			for _, v := range vv {
				if strings.EqualFold(strings.TrimSpace(v), "trailers") {
					o.fields = append(o.fields, field{"te", "trailers"})
					break
				}
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

// errUnusable fails a request whose reserved connection went away before
// the request was queued; it is retried.
var errUnusable = errors.New("h2client: connection no longer usable")

// roundTrip opens a stream for req (its slot already reserved), queues
// its HEADERS (with the whole body when it is small and fits the
// windows), starts the body sender if needed, and waits for the final
// response head. retry reports that the server did not process the
// request.
func (c *conn) roundTrip(req *http.Request, o *outgoing, trace *httptrace.ClientTrace) (_ *http.Response, retry bool, _ error) {
	ctx := req.Context()
	s := &stream{
		c:         c,
		clen:      -1,
		recvAvail: streamWindow,
		recvWake:  make(chan struct{}, 1),
	}
	c.mu.Lock()
	if c.closed || c.goAway {
		c.releaseLocked()
		c.unlock()
		return nil, true, errUnusable
	}
	s.id = c.nextID
	c.nextID += 2
	s.sendWindow = c.peerInitWindow
	s.noBody = o.head
	c.hbuf.Reset()
	for _, f := range o.fields {
		if f.name == ":scheme" && (f.value == "" || c.scheme == "https") {
			f.value = c.scheme
		}
		c.writeFieldLocked(f.name, f.value)
	}
	n := int64(len(o.data))
	inline := o.data != nil && n <= s.sendWindow && n <= c.sendWindow && n <= int64(c.peerMaxFrame)
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
	if ctx.Done() != nil {
		s.stopCtx = context.AfterFunc(ctx, func() { c.cancel(s, ctx) })
	}
	if !s.sentEnd {
		s.body = o.body
		if s.body == nil {
			// A small body the windows could not take at once.
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
	c.mu.Unlock()

	for {
		<-s.recvWake
		c.mu.Lock()
		infos := s.info
		s.info = nil
		resp, err, retry := s.resp, s.err, s.retry
		c.mu.Unlock()
		for _, in := range infos {
			if trace == nil {
				break
			}
			if trace.Got1xxResponse != nil {
				if err := trace.Got1xxResponse(in.code, textproto.MIMEHeader(in.header)); err != nil {
					s.fail(err)
					return nil, false, err
				}
			}
			if in.code == http.StatusContinue && trace.Got100Continue != nil {
				trace.Got100Continue()
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
