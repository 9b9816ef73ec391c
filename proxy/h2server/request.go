package h2server

import (
	"errors"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/outrigger-mesh/outrigger/proxy/internal/reqctx"
	"github.com/outrigger-mesh/outrigger/proxy/internal/wire"
)

// stream is a request whose handler runs. Fields below the line are
// guarded by sc.mu.
type stream struct {
	sc *serverConn
	id uint32
	// ctx is the request's context, ended by the server (see
	// endContextLocked, endStream): it is reached only through the
	// stream, which is never reused, so a context a handler keeps stays
	// valid.
	ctx    reqctx.Context
	req    *http.Request
	isHead bool
	opened time.Time // when its HEADERS arrived (rapid-reset rule)

	remoteClosed bool  // END_STREAM or RST_STREAM received (or sent)
	reset        bool  // RST_STREAM sent or received: no more frames
	peerReset    bool  // RST_STREAM received: a later frame is an error (RFC 9113 §5.1)
	localEnded   bool  // END_STREAM sent
	respStarted  bool  // the final response's HEADERS are queued
	sendWindow   int64 // may go negative (RFC 9113 §6.9.2)
	// The handler waits to send on sendWake (made at its first wait)
	// while sendWaiting says for what (see waitSendLocked), and, for
	// window, how much it has to send (sendNeed).
	sendWake    chan struct{}
	sendWaiting sendWait
	sendNeed    int

	// Request body: DATA not yet read, and what ends it.
	rbuf         []byte
	roff         int
	rerr         error       // io.EOF after END_STREAM, or why the body failed
	trailer      http.Header // received trailers, merged into req.Trailer at EOF
	declTrailer  bool        // the request declared trailers (Trailer header)
	recvAvail    int32       // what the client may still send
	recvUnacked  int32       // read by the handler, not yet returned
	declCL       int64       // content-length, or -1
	got          int64       // DATA bytes received
	bodyClosed   bool        // closed, or the handler returned: DATA is dropped
	needContinue bool        // "Expect: 100-continue": 100 on the first Read
	readCond     sync.Cond   // L is &sc.mu; signalled when the body changes

	// dl holds the handler's deadlines (SetReadDeadline,
	// SetWriteDeadline; see deadline.go), made when the first is set:
	// most streams set none. It is stored and its fields change under
	// sc.mu; the handler's buffered writes load it without the lock.
	// ended: the handler returned.
	dl    atomic.Pointer[deadlines]
	ended bool

	// Allocated with the stream: its ResponseWriter, Request.Body, and
	// the Request and URL that req points to.
	rw      responseWriter
	body    requestBody
	reqData http.Request
	url     url.URL
	// vals backs the request's first header values when it has no more
	// regular fields than this: a client's usual few (user-agent,
	// accept, or gRPC's content-type, te, user-agent). Four fill the
	// stream's size class (TestStreamFitsItsSizeClass).
	vals [4]string
}

// requestBody is a stream's Request.Body.
type requestBody struct{ st *stream }

func (b *requestBody) Read(p []byte) (int, error) {
	st := b.st
	sc := st.sc
	sc.mu.Lock()
	if st.readExpiredLocked() {
		sc.mu.Unlock()
		return 0, errReadDeadline
	}
	if st.needContinue {
		st.needContinue = false
		if !st.reset && !sc.dead && !st.respStarted {
			sc.appendHeadersLocked(st.id, http.StatusContinue, nil, false)
			sc.queueLocked()
		}
	}
	for st.roff == len(st.rbuf) && st.rerr == nil && !st.readExpiredLocked() {
		st.readCond.Wait()
	}
	if st.readExpiredLocked() {
		sc.mu.Unlock()
		return 0, errReadDeadline
	}
	if st.roff < len(st.rbuf) && !st.bodyClosed {
		n := copy(p, st.rbuf[st.roff:])
		st.roff += n
		if st.roff == len(st.rbuf) {
			st.rbuf, st.roff = st.rbuf[:0], 0
			if cap(st.rbuf) > keptBodyBuf {
				// Grown by a burst the handler has now read: holding it
				// while the stream lasts would let a client that bursts
				// on one stream after another have the server hold a
				// window's worth per stream, not per connection.
				st.rbuf = nil
			}
		} else if c, left := cap(st.rbuf), len(st.rbuf)-st.roff; c > keptBodyBuf && left <= c/4 {
			// Little is left of a burst: move it to a buffer its size.
			// A handler that stops reading here (its upstream stalls)
			// would otherwise have the stream hold the burst's buffer
			// around a few bytes, a window's worth per stream. Each move
			// at least halves the buffer, so a handler that reads in
			// small pieces copies less than a third of the burst again.
			b := make([]byte, left, max(2*left, keptBodyBuf))
			copy(b, st.rbuf[st.roff:])
			st.rbuf, st.roff = b, 0
		}
		sc.consumedLocked(st, n)
		sc.mu.Unlock()
		return n, nil
	}
	err := st.rerr
	tr := st.trailer
	if err == io.EOF {
		st.trailer = nil
	}
	sc.mu.Unlock()
	if err == io.EOF && tr != nil && st.req.Trailer != nil {
		// As x/net/http2: trailers the request declared in its "Trailer"
		// header are kept, on the goroutine that reads the body.
		for k, vv := range tr {
			st.req.Trailer[k] = vv
		}
	}
	return 0, err
}

func (b *requestBody) Close() error {
	st := b.st
	sc := st.sc
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if unread := len(st.rbuf) - st.roff; unread > 0 {
		sc.creditConnLocked(int32(unread))
	}
	st.rbuf, st.roff = nil, 0
	st.bodyClosed = true
	if st.rerr == nil || st.rerr == io.EOF {
		st.rerr = errBodyClosed
	}
	st.readCond.Broadcast()
	return nil
}

// Received reports whether the client has sent the whole body: its end
// (END_STREAM) has arrived and what the handler has not read of it yet
// is buffered, so reads return without waiting for the client. The
// proxy asks it before it tells an upstream a deadline that runs from
// the body's end (see the proxy's per-try grpc-timeout).
func (b *requestBody) Received() bool {
	st := b.st
	st.sc.mu.Lock()
	defer st.sc.mu.Unlock()
	return st.rerr == io.EOF
}

// keptBodyBuf bounds the request body buffer a stream keeps once its
// handler has read all of it: a frame's worth, what a handler that keeps
// up needs.
const keptBodyBuf = defaultMaxFrame

var errMalformed = errors.New("h2server: malformed request")

// newRequest builds st's request from its HEADERS. A malformed request
// is an error (a stream error PROTOCOL_ERROR, RFC 9113 §8.1.1); a header
// list over the limit is status 431.
func (sc *serverConn) newRequest(st *stream, f *headerBlock) (status int, err error) {
	if f.Truncated {
		return http.StatusRequestHeaderFieldsTooLarge, nil
	}
	if f.hasPriority && f.priority.StreamDep == f.streamID {
		// RFC 9113 §5.3.1: a stream cannot depend on itself.
		return 0, errMalformed
	}
	// (Each appears at most once: h2fields.Decoder.End checks it.)
	var method, scheme, authority, path, protocol, pstatus string
	pseudo := f.PseudoFields()
	for _, hf := range pseudo {
		switch hf.Name {
		case ":method":
			method = hf.Value
		case ":scheme":
			scheme = hf.Value
		case ":authority":
			authority = hf.Value
		case ":path":
			path = hf.Value
		case ":protocol":
			protocol = hf.Value
		case ":status":
			pstatus = hf.Value
		}
	}
	if protocol != "" || pstatus != "" {
		// Extended CONNECT is not announced (RFC 8441 §3).
		return 0, errMalformed
	}
	isConnect := method == "CONNECT"
	if isConnect {
		if path != "" || scheme != "" || authority == "" {
			return 0, errMalformed
		}
	} else if method == "" || path == "" || (scheme != "http" && scheme != "https") {
		return 0, errMalformed
	}
	if !httpguts.ValidHeaderFieldName(method) { // a method is a token, as a field name is
		return 0, errMalformed
	}

	regular := f.Fields[len(pseudo):]
	h := make(http.Header, len(regular))
	// One backing array for the values (the stream's for a few): a
	// field's first value takes a one-element slice of it
	// (capacity-limited, so that a second value copies), as
	// net/textproto does.
	var vals []string
	if len(regular) <= len(st.vals) {
		vals = st.vals[:len(regular)]
	} else {
		vals = make([]string, len(regular))
	}
	var cookies int
	for i, hf := range regular {
		switch hf.Name {
		case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
			// RFC 9113 §8.2.2: connection-specific fields are malformed.
			return 0, errMalformed
		case "te":
			if hf.Value != "trailers" {
				return 0, errMalformed
			}
		case "cookie":
			cookies++
		}
		k := canonicalHeader(hf.Name)
		if vv, ok := h[k]; ok {
			h[k] = append(vv, hf.Value)
		} else {
			vals[i] = hf.Value
			h[k] = vals[i : i+1 : i+1]
		}
	}
	if cookies > 1 {
		// RFC 9113 §8.2.3: split cookie fields join with "; ".
		h["Cookie"] = []string{strings.Join(h["Cookie"], "; ")}
	}
	if hosts := h["Host"]; len(hosts) == 1 {
		if authority == "" {
			authority = hosts[0]
		} else if !strings.EqualFold(hosts[0], authority) {
			// RFC 9113 §8.3.1: a Host naming another entity is
			// malformed; host names compare without case (RFC 3986
			// §3.2.2).
			return 0, errMalformed
		}
		delete(h, "Host")
	} else if len(hosts) > 1 {
		return 0, errMalformed
	}
	if !wire.ValidAuthority(authority) {
		return 0, errMalformed
	}
	if authority == "" {
		// RFC 9113 §8.3.1: an http or https request names its
		// authority, in :authority or Host, and an http URI's host is
		// never empty (RFC 9110 §4.2.1); CONNECT's was checked above.
		return 0, errMalformed
	}

	u := &st.url
	requestURI := path
	if isConnect {
		*u = url.URL{Host: authority}
		requestURI = authority
	} else {
		if path[0] != '/' && !(path == "*" && method == "OPTIONS") {
			return 0, errMalformed
		}
		if strings.IndexByte(path, ' ') >= 0 {
			// RFC 3986 §2 has no space in a URI, and no HTTP/1.1
			// request target can carry one (net/url, which rejects
			// control characters, lets it by).
			return 0, errMalformed
		}
		if strings.IndexByte(path, '#') >= 0 {
			// RFC 9113 §8.3.1: :path is the target's path and query,
			// which have no fragment (RFC 3986 §3.4), as in an HTTP/1.1
			// request target.
			return 0, errMalformed
		}
		if parseRequestURI(path, u) != nil {
			return 0, errMalformed
		}
	}

	req := &http.Request{
		Method:     method,
		URL:        u,
		Proto:      "HTTP/2.0",
		ProtoMajor: 2,
		Header:     h,
		Host:       authority,
		RemoteAddr: sc.remote,
		RequestURI: requestURI,
		TLS:        sc.tls,
	}
	if vv, ok := h["Trailer"]; ok {
		for _, v := range vv {
			for _, k := range strings.Split(v, ",") {
				k = textproto.CanonicalMIMEHeaderKey(textproto.TrimString(k))
				switch k {
				case "Transfer-Encoding", "Trailer", "Content-Length", "":
				default:
					if !httpguts.ValidHeaderFieldName(k) {
						// RFC 9110 §6.6.2: Trailer lists field names.
						return 0, errMalformed
					}
					if req.Trailer == nil {
						req.Trailer = http.Header{}
					}
					req.Trailer[k] = nil
				}
			}
		}
		delete(h, "Trailer")
		st.declTrailer = req.Trailer != nil
	}
	if vv, ok := h["Content-Length"]; ok {
		for _, v := range vv[1:] {
			if v != vv[0] {
				return 0, errMalformed
			}
		}
		cl, ok := wire.ParseDecimal(vv[0])
		if !ok {
			return 0, errMalformed
		}
		st.declCL = cl
	}
	if f.endStream {
		if st.declCL > 0 {
			return 0, errMalformed
		}
		st.remoteClosed = true
		st.rerr = io.EOF
		req.ContentLength = 0
		req.Body = http.NoBody
	} else {
		req.ContentLength = st.declCL
		st.body.st = st
		req.Body = &st.body
		if e, ok := h["Expect"]; ok && len(e) == 1 && strings.EqualFold(e[0], "100-continue") {
			delete(h, "Expect")
			st.needContinue = true
		}
	}
	st.isHead = method == "HEAD"
	// WithContext's copy is made in the stream: a request handed to a
	// handler needs no allocation of its own.
	st.reqData = *req.WithContext(&st.ctx)
	st.req = &st.reqData
	return 0, nil
}

// canonicalHeader turns a lowercase HTTP/2 field name into the form
// net/http handlers expect, without allocating for the common ones.
func canonicalHeader(name string) string {
	if k, ok := commonCanonical[name]; ok {
		return k
	}
	return textproto.CanonicalMIMEHeaderKey(name)
}

// lowerHeader is the HTTP/2 form of a header map key.
func lowerHeader(k string) string {
	if v, ok := commonLower[k]; ok {
		return v
	}
	return strings.ToLower(k)
}

var commonCanonical, commonLower = func() (map[string]string, map[string]string) {
	names := []string{
		"Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language", "Accept-Ranges",
		"Access-Control-Allow-Origin", "Age", "Allow", "Authorization", "Cache-Control",
		"Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length",
		"Content-Location", "Content-Range", "Content-Type", "Cookie", "Date", "Etag",
		"Expect", "Expires", "From", "Grpc-Accept-Encoding", "Grpc-Encoding", "Grpc-Message",
		"Grpc-Status", "Grpc-Timeout", "Grpc-Status-Details-Bin", "Host", "If-Match",
		"If-Modified-Since", "If-None-Match", "If-Unmodified-Since", "Last-Modified", "Link",
		"Location", "Max-Forwards", "Origin", "Proxy-Authenticate", "Proxy-Authorization",
		"Range", "Referer", "Refresh", "Retry-After", "Server", "Set-Cookie",
		"Strict-Transport-Security", "Te", "Trailer", "Transfer-Encoding", "User-Agent",
		"Vary", "Via", "Www-Authenticate", "X-Forwarded-For", "X-Forwarded-Proto",
		"X-Request-Id", "Traceparent", "Tracestate",
	}
	canon := make(map[string]string, len(names))
	lower := make(map[string]string, len(names))
	for _, n := range names {
		l := strings.ToLower(n)
		canon[l] = n
		lower[n] = l
	}
	return canon, lower
}()
