package h1server

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"testing"

	"golang.org/x/net/http/httpguts"

	"github.com/outrigger-mesh/outrigger/proxy/h2server"
)

// FuzzReadRequest feeds arbitrary bytes to the request parser and reads
// each request's body, as the serve loop does: no input may panic or
// hang, a request it accepts is well-formed, and a body never yields more
// bytes than its framing allows.
func FuzzReadRequest(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /a?b=c HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n3;e=1\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
		"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
		"CONNECT example.com:443 HTTP/1.1\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET http://example.com/x HTTP/1.1\r\nHost: other\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
		"PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx",
		"\r\nGET / HTTP/1.1\r\nHost: x\r\n X: folded\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: \r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nX-T: 1\r\n\r\n",
		"GET example.com:80 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET http://u@a/ HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nX-T : 1\r\n\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	// With H2 set, so that h2c upgrade requests (whose body is read
	// before any handler runs) are parsed too.
	s := &Server{Handler: http.NotFoundHandler(), MaxHeaderBytes: 4 << 10, H2: &h2server.Server{}}
	s.init()
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &conn{s: s, lim: s.limits.Load(), remote: "192.0.2.1:1234"}
		c.ctx, c.cancel = context.WithCancel(context.Background())
		defer c.cancel()
		c.cr.src = bytes.NewReader(data)
		c.br = bufio.NewReaderSize(&c.cr, readBufSize)
		c.tp.R = c.br
		c.bw = bufio.NewWriter(io.Discard)
		for i := 0; i < 8; i++ { // pipelined requests, bounded
			c.cr.setLimit(s.maxHeaderBytes() + readBufSize)
			w, err := c.readRequest(new(head))
			c.cr.noLimit()
			if err != nil {
				var he *httpError
				if errors.As(err, &he) && (he.code < 400 || he.code > 599) {
					t.Fatalf("error status %d", he.code)
				}
				return
			}
			r := w.req
			if r.Method == "" || r.URL == nil || r.ProtoMajor != 1 && r.ProtoMajor != 2 || r.Header == nil || r.Body == nil {
				t.Fatalf("incomplete request %+v", r)
			}
			if r.Header["Host"] != nil || r.Header["Transfer-Encoding"] != nil {
				t.Fatal("Host or Transfer-Encoding left in Header")
			}
			if r.Method != "CONNECT" && (r.URL.Opaque != "" || r.URL.Scheme != "" && r.URL.Host == "") {
				t.Fatalf("target %q accepted without a path or host", r.RequestURI)
			}
			n, err := io.Copy(io.Discard, io.LimitReader(r.Body, int64(len(data))+1))
			if n > int64(len(data)) {
				t.Fatalf("body yielded %d bytes from %d of input", n, len(data))
			}
			if err == nil && r.ContentLength >= 0 && n != r.ContentLength && w.h2cSettings == nil {
				t.Fatalf("body of %d bytes with Content-Length %d", n, r.ContentLength)
			}
			for k := range r.Trailer {
				if !httpguts.ValidHeaderFieldName(k) {
					t.Fatalf("trailer with invalid name %q accepted", k)
				}
			}
			w.ctx.Cancel()
			if err != nil || w.h2cSettings != nil {
				return
			}
		}
	})
}
