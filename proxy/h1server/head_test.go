package h1server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"reflect"
	"sort"
	"strings"
	"testing"

	"golang.org/x/net/http/httpguts"

	"github.com/outrigger-mesh/outrigger/proxy/h2server"
)

// readRequestTextproto is readRequest as it was with net/textproto
// reading the head (ReadLine, url.ParseRequestURI, ReadMIMEHeader, then
// httpguts checks): the model that the head reader is held to, answer
// for answer, read for read. What follows the head (newRequest) is
// shared.
func (c *conn) readRequestTextproto() (*response, error) {
	tp := textproto.Reader{R: c.br}
	if err := c.skipEmptyLines(); err != nil {
		return nil, err
	}
	line, err := tp.ReadLine()
	if err != nil {
		return nil, err
	}
	method, rest, ok1 := strings.Cut(line, " ")
	uri, proto, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || method == "" || uri == "" {
		return nil, badRequest("malformed request line")
	}
	if !httpguts.ValidHeaderFieldName(method) { // a method is a token
		return nil, badRequest("invalid method")
	}
	major, minor, ok := http.ParseHTTPVersion(proto)
	if !ok {
		return nil, badRequest("malformed HTTP version")
	}
	if major != 1 {
		return nil, &httpError{http.StatusHTTPVersionNotSupported, "unsupported protocol version"}
	}
	switch proto {
	case "HTTP/1.1":
		proto = "HTTP/1.1" // share the constant rather than the line
	case "HTTP/1.0":
		proto = "HTTP/1.0"
	}
	// The asterisk-form is for a server-wide OPTIONS only (RFC 9112
	// §3.2.4); forwarded with another method it means nothing upstream.
	if uri == "*" && method != http.MethodOptions {
		return nil, badRequest("asterisk-form target for a method other than OPTIONS")
	}
	// RFC 9112 §3.2: no form of request target has a fragment.
	if strings.IndexByte(uri, '#') >= 0 {
		return nil, badRequest("fragment in request target")
	}
	// CONNECT's target is an authority (RFC 9112 §3.2.3), parsed as
	// net/http does.
	rawurl := uri
	authority := method == "CONNECT" && !strings.HasPrefix(uri, "/")
	if authority {
		rawurl = "http://" + uri
	}
	u, err := url.ParseRequestURI(rawurl)
	if err != nil {
		return nil, badRequest("malformed request target")
	}
	if authority {
		u.Scheme = ""
	}

	mh, err := tp.ReadMIMEHeader()
	if err != nil {
		if c.cr.hitMax {
			return nil, err
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF || isNetError(err) {
			return nil, err
		}
		return nil, badRequest("malformed header")
	}
	// The head is read: what follows (an h2c upgrade's body, read here)
	// is not held to MaxHeaderBytes.
	c.cr.noLimit()
	h := http.Header(mh)
	for k, vv := range h {
		if !httpguts.ValidHeaderFieldName(k) {
			return nil, badRequest("invalid header name")
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return nil, badRequest("invalid header value")
			}
		}
	}

	hd := head{method: method, target: uri, proto: proto, major: major, minor: minor, url: u, header: h, hosts: h["Host"]}
	delete(h, "Host")
	return c.newRequest(&hd)
}

// chunkReader returns at most n bytes per Read (any number if n is 0),
// as a connection receiving small segments does.
type chunkReader struct {
	r io.Reader
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if c.n > 0 && len(p) > c.n {
		p = p[:c.n]
	}
	return c.r.Read(p)
}

// headCase is one way of feeding a connection's bytes to the parser.
type headCase struct {
	data    string
	chunk   int // bytes per read, 0: as many as asked
	bufSize int // the bufio.Reader's size (16 at least)
	limit   int // the header-size limit, 0: the server's
}

// reqOutcome is what the serve loop and a handler see of one
// readRequest call.
type reqOutcome struct {
	err      string // "" if none; 431 when the limit was hit
	req      http.Request
	url      url.URL
	consumed int    // bytes of the input read by the time it returned a request
	body     string // the body, read after
	bodyErr  string
}

var headServer = func() *Server {
	s := &Server{Handler: http.NotFoundHandler(), MaxHeaderBytes: 1 << 10, H2: &h2server.Server{}}
	s.init()
	return s
}()

// readRequests reads up to 4 pipelined requests from hc's bytes with
// readRequest, or with readRequestTextproto if model is set, the way
// the serve loop does, and reports what each gave.
func readRequests(hc headCase, model bool) []reqOutcome {
	s := headServer
	c := &conn{s: s, lim: s.limits.Load(), remote: "192.0.2.1:1234"}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	defer func() {
		if c.stopReqWatch != nil {
			c.stopReqWatch()
		}
		c.cancel()
	}()
	src := strings.NewReader(hc.data)
	c.cr.src = &chunkReader{r: src, n: hc.chunk}
	c.br = bufio.NewReaderSize(&c.cr, max(hc.bufSize, 16))
	c.bw = bufio.NewWriter(io.Discard)
	var out []reqOutcome
	for i := 0; i < 4; i++ {
		limit := hc.limit
		if limit == 0 {
			limit = s.maxHeaderBytes() + readBufSize
		}
		c.cr.setLimit(limit)
		w, err := c.readRequestWith(model)
		var o reqOutcome
		o.consumed = len(hc.data) - src.Len() - c.br.Buffered()
		if c.cr.hitMax {
			// The serve loop answers 431, whatever readRequest said.
			out = append(out, reqOutcome{err: "431"})
			return out
		}
		c.cr.noLimit()
		if err != nil {
			var he *httpError
			if errors.As(err, &he) {
				o.err = fmt.Sprint(he.code, " ", he.msg)
			} else {
				o.err = fmt.Sprintf("%T %v", err, err)
			}
			// What is left in the buffer then is never read: the
			// connection is answered (or not) and closed.
			o.consumed = 0
			return append(out, o)
		}
		o.req = *w.req
		o.req.Body, o.req.GetBody = nil, nil
		o.req = *o.req.WithContext(context.Background())
		o.url = *w.req.URL
		o.req.URL = nil
		b, err := io.ReadAll(io.LimitReader(w.req.Body, int64(len(hc.data))+1))
		o.body = string(b)
		if err != nil {
			o.bodyErr = err.Error()
		}
		w.ctx.Cancel()
		out = append(out, o)
		if err != nil || w.h2cSettings != nil {
			return out
		}
	}
	return out
}

// checkHead holds readRequest to readRequestTextproto on hc.
func checkHead(t *testing.T, hc headCase) {
	t.Helper()
	want := readRequests(hc, true)
	got := readRequests(hc, false)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%+q (chunk %d, buffer %d, limit %d):\n got  %s\n want %s",
			clip(hc.data), hc.chunk, hc.bufSize, hc.limit, describe(got), describe(want))
	}
}

func clip(s string) string {
	if len(s) > 300 {
		return fmt.Sprintf("%s...(%d bytes)...%s", s[:200], len(s)-300, s[len(s)-100:])
	}
	return s
}

func describe(os []reqOutcome) string {
	var b strings.Builder
	for i, o := range os {
		fmt.Fprintf(&b, "\n  #%d err=%q consumed=%d", i, o.err, o.consumed)
		if o.err == "" {
			fmt.Fprintf(&b, " %s %q %s host=%q uri=%q url=%#v header=%q close=%v cl=%d te=%q trailer=%q body=%q bodyErr=%q",
				o.req.Method, o.req.RequestURI, o.req.Proto, o.req.Host, o.req.RequestURI, o.url, o.req.Header,
				o.req.Close, o.req.ContentLength, o.req.TransferEncoding, o.req.Trailer, o.body, o.bodyErr)
		}
	}
	return b.String()
}

// headInputs are request heads at the edges of what is accepted.
var headInputs = []string{
	"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET / HTTP/1.1\nHost: x\n\n",
	"GET / HTTP/1.1\r\nHost: x\n\r\n",
	"GET /a/b?c=d&e HTTP/1.1\r\nHost: x\r\nUser-Agent: u\r\nAccept: */*\r\n\r\n",
	"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
	"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
	"\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
	"\n\n\n\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
	"\n\n\n\n\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
	"\r\r\r\rGET / HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET / HTTP/1.1\r\nhost: x\r\nx-a: 1\r\nX-A: 2\r\nx-A: 3\r\nCONTENT-type: t\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nSet-Cookie: a\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nX:\r\nY: \t \r\nZ:\tz\t\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nX: caf\xc3\xa9 \x80\xff\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nX: a\x7f\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nX-A : 1\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nX A: 1\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nX\tA: 1\r\n\r\n",
	"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nX(A): 1\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nCaf\xc3\xa9: 1\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\n: no name\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nX-A : 1\r\nNoColon\r\n\r\n",
	"GET / HTTP/1.1\r\n continued\r\nHost: x\r\n\r\n",
	"GET / HTTP/1.1\r\n\tcontinued\r\nHost: x\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nX-F: a\r\n b\r\n\t c \r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nX-F:\r\n b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nX-F: a\r\n \r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nX-F: a\r\n \r\n \r\n b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nX-F: a\r\n \x01\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nX-F: a\r\n b\rc\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n b: c\r\n\r\n",
	"GET / HTTP/1.1\r\nHost:\r\n x\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\n\r",
	"GET / HTTP/1.1\r\nHost: x\r\n",
	"GET / HTTP/1.1\r\nHost: x",
	"GET / HTTP/1.1\r\nHost: x\r\nX: \x01",
	"GET / HTTP/1.1\r\nHost: x\r\nBad",
	"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n ",
	"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r",
	"GET / HTTP/1.1\r\n",
	"GET / HTTP/1.1\r\n ",
	"GET / HTTP/1.1",
	"GET / HTTP/1.1\r",
	"BAD\x00 / HTTP/1.1",
	"GET / HTTP/1.1\r\r\nHost: x\r\n\r\n",
	"GET / HTTP/1.1 \r\nHost: x\r\n\r\n",
	"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET / HTTP/1.0\r\n\r\n",
	"GET / HTTP/1.2\r\nHost: x\r\n\r\n",
	"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
	"GET / HTTP/x.y\r\nHost: x\r\n\r\n",
	"GET\r\nHost: x\r\n\r\n",
	"G(T / HTTP/1.1\r\nHost: x\r\n\r\n",
	"\r\n",
	"",
	"GET * HTTP/1.1\r\nHost: x\r\n\r\n",
	"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
	"CONNECT example.com:443 HTTP/1.1\r\n\r\n",
	"CONNECT /path HTTP/1.1\r\nHost: x\r\n\r\n",
	"CONNECT [::1 HTTP/1.1\r\n\r\n",
	"GET http://example.com/x?y HTTP/1.1\r\nHost: other\r\n\r\n",
	"GET /a%20b HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET /a%2Fb?c%20d HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET /a%zz HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET /a#b HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET /a? HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET /\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET /a?\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET /a\"b HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET a/b HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
	"GET / HTTP/1.1\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /2 HTTP/1.1\r\nHost: y\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\r\nGET /2 HTTP/1.1\r\nHost: y\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\nGET / HTTP/1.0\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
	"PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx",
	"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("abcdefghij-", 8) + ": long name\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + strings.Repeat("v", 5000) + "\r\n\r\n",
	"GET /" + strings.Repeat("p", 5000) + " HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET / HTTP/1.1\r\n " + strings.Repeat("f", 5000) + "\r\nHost: x\r\n\r\n",
	"GET / HTTP/1.1\r\n " + strings.Repeat("f", 100) + "\r\nHost: x\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nX-F: a" + strings.Repeat("\r\n "+strings.Repeat("f", 300), 20) + "\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-Many: m\r\n", 300) + "\r\n",
}

// TestReadRequestMatchesTextproto runs the edge cases through both
// readers, whole and in small reads, with buffers and limits that put
// the head in the buffer, past its end and past the limit.
func TestReadRequestMatchesTextproto(t *testing.T) {
	for _, data := range headInputs {
		for _, chunk := range []int{0, 1, 2, 7, 64} {
			for _, bufSize := range []int{16, 64, readBufSize} {
				for _, limit := range []int{0, 40, 300, 5000} {
					checkHead(t, headCase{data, chunk, bufSize, limit})
				}
			}
		}
	}
}

// FuzzReadRequestHead holds readRequest to readRequestTextproto on
// arbitrary bytes, read in arbitrary sizes, with arbitrary buffer sizes
// and header-size limits: the same answer, request, URL, header map,
// framing and body, and the same bytes consumed.
func FuzzReadRequestHead(f *testing.F) {
	for _, data := range headInputs {
		if len(data) < 1000 {
			f.Add(data, uint8(0), uint8(255), uint16(0))
			f.Add(data, uint8(3), uint8(1), uint16(60))
		}
	}
	f.Fuzz(func(t *testing.T, data string, chunk, bufSize uint8, limit uint16) {
		checkHead(t, headCase{
			data:    data,
			chunk:   int(chunk % 32),
			bufSize: 16 + int(bufSize)*16,
			limit:   int(limit % 2048),
		})
	})
}

// benchHeads are request heads as a load generator (wrk) and a browser
// send them.
var benchHeads = []struct{ name, head string }{
	{"wrk", "GET /bench HTTP/1.1\r\nHost: bench\r\n\r\n"},
	{"browser", "GET /static/app.js?v=3 HTTP/1.1\r\nHost: example.com\r\n" +
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n" +
		"Accept: */*\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n" +
		"Referer: https://example.com/\r\nConnection: keep-alive\r\nCookie: session=0123456789abcdef\r\n" +
		"Sec-Fetch-Dest: script\r\nSec-Fetch-Mode: no-cors\r\nSec-Fetch-Site: same-origin\r\n\r\n"},
}

// loopConn is a connection whose client sends the same bytes again
// whenever the last ones are read.
func loopConn(tb testing.TB, data string) (*conn, func()) {
	c := &conn{s: headServer, lim: headServer.limits.Load(), remote: "192.0.2.1:1234"}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	src := strings.NewReader(data)
	c.cr.src = src
	c.br = bufio.NewReaderSize(&c.cr, readBufSize)
	c.bw = bufio.NewWriter(io.Discard)
	tb.Cleanup(func() {
		if c.stopReqWatch != nil {
			c.stopReqWatch()
		}
		c.cancel()
	})
	return c, func() {
		if c.br.Buffered() == 0 {
			src.Reset(data)
		}
		c.cr.setLimit(headServer.maxHeaderBytes() + readBufSize)
	}
}

// readRequestWith reads a request with the textproto reader this
// server had (the model) or with readRequest.
func (c *conn) readRequestWith(model bool) (*response, error) {
	if model {
		return c.readRequestTextproto()
	}
	var hd head
	return c.readRequest(&hd)
}

// BenchmarkReadRequest is readRequest on heads whole in the read
// buffer, against the textproto reader it replaced.
func BenchmarkReadRequest(b *testing.B) {
	for _, bh := range benchHeads {
		for _, model := range []bool{false, true} {
			name := bh.name + "/head"
			if model {
				name = bh.name + "/textproto"
			}
			b.Run(name, func(b *testing.B) {
				c, next := loopConn(b, bh.head)
				b.ReportAllocs()
				for b.Loop() {
					next()
					w, err := c.readRequestWith(model)
					if err != nil {
						b.Fatal(err)
					}
					w.ctx.Cancel()
				}
			})
		}
	}
}

// echoHead answers with what the handler sees of the request's head.
var echoHead = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	keys := make([]string, 0, len(r.Header))
	for k := range r.Header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintf(w, "%s %s path=%q query=%q force=%v raw=%q %s host=%q", r.Method, r.RequestURI,
		r.URL.Path, r.URL.RawQuery, r.URL.ForceQuery, r.URL.RawPath, r.Proto, r.Host)
	for _, k := range keys {
		fmt.Fprintf(w, "\n%s=%q", k, r.Header[k])
	}
})

// TestRequestHeadEdges pins what a handler sees, or the answer, for the
// edges of the head syntax, over a real connection.
func TestRequestHeadEdges(t *testing.T) {
	ts := start(t, echoHead, func(s *Server) { s.MaxHeaderBytes = 2 << 10 })
	for _, tc := range []struct {
		name, req string
		status    int
		body      string
	}{
		{"bare LF", "GET /a?b=c HTTP/1.1\nHost: x\nX-A: 1\n\n", 200,
			"GET /a?b=c path=\"/a\" query=\"b=c\" force=false raw=\"\" HTTP/1.1 host=\"x\"\nX-A=[\"1\"]"},
		{"mixed line ends", "GET / HTTP/1.1\r\nHost: x\nX-A: 1\r\n\n", 200,
			"GET / path=\"/\" query=\"\" force=false raw=\"\" HTTP/1.1 host=\"x\"\nX-A=[\"1\"]"},
		{"leading empty lines", "\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", 200,
			"GET / path=\"/\" query=\"\" force=false raw=\"\" HTTP/1.1 host=\"x\""},
		{"five leading line feeds", "\n\n\n\n\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", 400,
			"Bad Request: malformed request line"},
		{"duplicate and non-canonical names", "GET / HTTP/1.1\r\nhost: x\r\nx-a: 1\r\nX-A: 2\r\nx-A:3\r\nCONTENT-TYPE: t\r\nwww-authenticate: w\r\n\r\n", 200,
			"GET / path=\"/\" query=\"\" force=false raw=\"\" HTTP/1.1 host=\"x\"\nContent-Type=[\"t\"]\nWww-Authenticate=[\"w\"]\nX-A=[\"1\" \"2\" \"3\"]"},
		{"whitespace around values", "GET / HTTP/1.1\r\nHost: x\r\nX-A: \t 1 2 \t\r\nX-B:\r\n\r\n", 200,
			"GET / path=\"/\" query=\"\" force=false raw=\"\" HTTP/1.1 host=\"x\"\nX-A=[\"1 2\"]\nX-B=[\"\"]"},
		{"folded value", "GET / HTTP/1.1\r\nHost: x\r\nX-F: a\r\n  b \r\n\tc\r\n\r\n", 200,
			"GET / path=\"/\" query=\"\" force=false raw=\"\" HTTP/1.1 host=\"x\"\nX-F=[\"a b c\"]"},
		{"escaped target", "GET /a%2Fb?c HTTP/1.1\r\nHost: x\r\n\r\n", 200,
			"GET /a%2Fb?c path=\"/a/b\" query=\"c\" force=false raw=\"/a%2Fb\" HTTP/1.1 host=\"x\""},
		{"empty query", "GET /a? HTTP/1.1\r\nHost: x\r\n\r\n", 200,
			"GET /a? path=\"/a\" query=\"\" force=true raw=\"\" HTTP/1.1 host=\"x\""},
		{"obs-text value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: caf\xc3\xa9\xff\r\n\r\n", 200,
			"GET / path=\"/\" query=\"\" force=false raw=\"\" HTTP/1.1 host=\"x\"\nX-A=[\"caf\xc3\xa9\\xff\"]"},
		{"NUL in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400, "Bad Request: malformed header"},
		{"CR in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", 400, "Bad Request: malformed header"},
		{"DEL in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x7f\r\n\r\n", 400, "Bad Request: malformed header"},
		{"control byte in folded line", "GET / HTTP/1.1\r\nHost: x\r\nX-F: a\r\n \x01\r\n\r\n", 400, "Bad Request: malformed header"},
		{"space before colon", "GET / HTTP/1.1\r\nHost: x\r\nX-A : 1\r\n\r\n", 400, "Bad Request: invalid header name"},
		{"space in name", "GET / HTTP/1.1\r\nHost: x\r\nX A: 1\r\n\r\n", 400, "Bad Request: invalid header name"},
		{"tab before colon", "GET / HTTP/1.1\r\nHost: x\r\nX-A\t: 1\r\n\r\n", 400, "Bad Request: malformed header"},
		{"non-token name", "GET / HTTP/1.1\r\nHost: x\r\nX(A): 1\r\n\r\n", 400, "Bad Request: malformed header"},
		{"non-ASCII name", "GET / HTTP/1.1\r\nHost: x\r\nCaf\xc3\xa9: 1\r\n\r\n", 400, "Bad Request: malformed header"},
		{"empty name", "GET / HTTP/1.1\r\nHost: x\r\n: 1\r\n\r\n", 400, "Bad Request: malformed header"},
		{"first field line folded", "GET / HTTP/1.1\r\n X: 1\r\nHost: x\r\n\r\n", 400, "Bad Request: malformed header"},
		{"head over MaxHeaderBytes", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("b", 8<<10) + "\r\n\r\n", 431,
			"Request Header Fields Too Large"},
		{"many lines over MaxHeaderBytes", "GET / HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-M: m\r\n", 1500) + "\r\n", 431,
			"Request Header Fields Too Large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, ts.addr)
			c.send(t, tc.req)
			resp, body := c.response(t, "GET")
			if resp.StatusCode != tc.status || body != tc.body {
				t.Fatalf("%d %q, want %d %q", resp.StatusCode, body, tc.status, tc.body)
			}
		})
	}
}

// TestRequestHeadByteByByte: a head written a byte at a time (most
// reads then return one byte) is read as a head sent at once, and so is
// the next request, pipelined the same way.
func TestRequestHeadByteByByte(t *testing.T) {
	ts := start(t, echoHead)
	c := dial(t, ts.addr)
	req := "GET /x?y=z HTTP/1.1\r\nHost: h\r\nuser-agent: slow\r\nX-F: a\r\n b\r\nX-D: 1\r\nX-D: 2\r\n\r\n" +
		"GET /2 HTTP/1.1\r\nHost: h2\r\n\r\n"
	if tc, ok := c.Conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	for i := 0; i < len(req); i++ {
		c.send(t, req[i:i+1])
	}
	_, body := c.response(t, "GET")
	want := "GET /x?y=z path=\"/x\" query=\"y=z\" force=false raw=\"\" HTTP/1.1 host=\"h\"\n" +
		"User-Agent=[\"slow\"]\nX-D=[\"1\" \"2\"]\nX-F=[\"a b\"]"
	if body != want {
		t.Fatalf("first response %q, want %q", body, want)
	}
	_, body = c.response(t, "GET")
	if want := "GET /2 path=\"/2\" query=\"\" force=false raw=\"\" HTTP/1.1 host=\"h2\""; body != want {
		t.Fatalf("second response %q, want %q", body, want)
	}
}

// TestRequestHeadBiggerThanReadBuffer: a head several times the read
// buffer's size is read whole, and the connection serves a small one
// after it.
func TestRequestHeadBiggerThanReadBuffer(t *testing.T) {
	ts := start(t, echoHead)
	c := dial(t, ts.addr)
	cookie := strings.Repeat("c", 3*readBufSize)
	var b strings.Builder
	b.WriteString("GET /" + strings.Repeat("p", readBufSize) + " HTTP/1.1\r\nHost: x\r\nCookie: " + cookie + "\r\n")
	for i := 0; i < 200; i++ {
		fmt.Fprintf(&b, "x-n%d: %d\r\n", i, i)
	}
	b.WriteString("\r\n")
	c.send(t, b.String()+"GET /small HTTP/1.1\r\nHost: y\r\n\r\n")
	resp, body := c.response(t, "GET")
	if resp.StatusCode != 200 || !strings.Contains(body, "\nCookie=[\""+cookie+"\"]") ||
		!strings.Contains(body, "\nX-N0=[\"0\"]") || !strings.Contains(body, "\nX-N199=[\"199\"]") ||
		strings.Count(body, "\n") != 201 {
		t.Fatalf("%d %.300q", resp.StatusCode, body)
	}
	_, body = c.response(t, "GET")
	if want := "GET /small path=\"/small\" query=\"\" force=false raw=\"\" HTTP/1.1 host=\"y\""; body != want {
		t.Fatalf("second response %q, want %q", body, want)
	}
}

// TestRequestHeadOutlivesNextRequest: a request kept past its handler
// (as by a goroutine it left) keeps its URL and header when the
// connection reads the next request, whose own are apart; values of
// one field can be appended to without touching another's.
func TestRequestHeadOutlivesNextRequest(t *testing.T) {
	kept := make(chan *http.Request, 2)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kept <- r
	}))
	c := dial(t, ts.addr)
	c.send(t, "GET /one?a HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nX-B: 2\r\n\r\n")
	c.response(t, "GET")
	c.send(t, "GET /two?b HTTP/1.1\r\nHost: x\r\nX-A: 3\r\nX-B: 4\r\n\r\n")
	c.response(t, "GET")
	r1, r2 := <-kept, <-kept
	if r1.URL == r2.URL || r1.URL.Path != "/one" || r1.URL.RawQuery != "a" || r2.URL.Path != "/two" {
		t.Fatalf("URLs %p %+v and %p %+v", r1.URL, r1.URL, r2.URL, r2.URL)
	}
	r1.Header["X-A"] = append(r1.Header["X-A"], "appended")
	if got := fmt.Sprint(r1.Header["X-A"], r1.Header["X-B"], r2.Header["X-A"], r2.Header["X-B"]); got != "[1 appended] [2] [3] [4]" {
		t.Fatalf("headers %s", got)
	}
}

// TestReadRequestAllocations pins the allocations of reading a small
// head that is whole in the read buffer, with Host as its only field:
// the head's string, its reqHead, the (empty) header map and the
// response. (The textproto reader made seven.)
func TestReadRequestAllocations(t *testing.T) {
	c, next := loopConn(t, benchHeads[0].head)
	n := testing.AllocsPerRun(100, func() {
		next()
		var hd head
		w, err := c.readRequest(&hd)
		if err != nil {
			t.Fatal(err)
		}
		w.ctx.Cancel()
	})
	if n > 4 {
		t.Fatalf("%v allocations per request, want 4", n)
	}
}

// TestBadHeadLineAnsweredBeforeHeadEnds: a bad line is answered as soon
// as it has arrived (as net/textproto's reader did), not once the rest
// of the head, which may never come, has.
func TestBadHeadLineAnsweredBeforeHeadEnds(t *testing.T) {
	ts := start(t, echoHead)
	for _, tc := range []struct{ name, part, body string }{
		{"request line", "G(T / HTTP/1.1\r\nHost: x\r\n", "Bad Request: invalid method"},
		{"field line", "GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\nX-A: 1\r\n", "Bad Request: malformed header"},
		{"field value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: \x01\r\nX", "Bad Request: malformed header"},
		{"folded first line", "GET / HTTP/1.1\r\n folded\r\n", "Bad Request: malformed header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, ts.addr)
			c.send(t, tc.part)
			resp, body := c.response(t, "GET")
			if resp.StatusCode != 400 || body != tc.body {
				t.Fatalf("%d %q, want 400 %q", resp.StatusCode, body, tc.body)
			}
		})
	}
}
