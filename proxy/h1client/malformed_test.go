package h1client

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestMalformedResponses serves each response from a raw TCP server and
// checks the error it produces, at RoundTrip or while reading the body.
func TestMalformedResponses(t *testing.T) {
	ok := "HTTP/1.1 200 OK\r\n"
	cases := []struct {
		name     string
		resp     string
		wantErr  string // substring of the error
		wantIs   error  // or an error it must wrap
		inBody   bool   // the error comes from reading the body
		maxBytes int    // MaxResponseHeaderBytes
	}{
		{name: "both framings", resp: ok + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", wantErr: "both Transfer-Encoding and Content-Length"},
		{name: "differing lengths", resp: ok + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", wantErr: "differing Content-Length"},
		{name: "differing lengths in one field", resp: ok + "Content-Length: 5, 6\r\n\r\nhello!", wantErr: "differing Content-Length"},
		{name: "negative length", resp: ok + "Content-Length: -1\r\n\r\n", wantErr: "invalid Content-Length"},
		{name: "signed length", resp: ok + "Content-Length: +5\r\n\r\nhello", wantErr: "invalid Content-Length"},
		{name: "huge length", resp: ok + "Content-Length: 99999999999999999999\r\n\r\n", wantErr: "invalid Content-Length"},
		{name: "unsupported coding", resp: ok + "Transfer-Encoding: gzip\r\n\r\n", wantErr: "unsupported transfer encoding"},
		{name: "Kelvin sign in chunked", resp: ok + "Transfer-Encoding: chun\u212aed\r\n\r\n5\r\nhello\r\n0\r\n\r\n", wantErr: "unsupported transfer encoding"},
		{name: "chunked twice", resp: ok + "Transfer-Encoding: chunked, chunked\r\n\r\n", wantErr: "unsupported transfer encoding"},
		{name: "coding in HTTP/1.0", resp: "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", wantErr: "HTTP/1.0 response"},
		{name: "bad chunk size", resp: ok + "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", wantErr: "invalid chunk size", inBody: true},
		{name: "chunk size with sign", resp: ok + "Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n", wantErr: "invalid chunk size", inBody: true},
		{name: "chunk size overflow", resp: ok + "Transfer-Encoding: chunked\r\n\r\n10000000000000000\r\n", wantErr: "chunk size too large", inBody: true},
		{name: "chunk without CRLF", resp: ok + "Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n", wantErr: "not followed by CRLF", inBody: true},
		{name: "chunk extensions outweigh the data", resp: ok + "Transfer-Encoding: chunked\r\n\r\n" + strings.Repeat("1;"+strings.Repeat("e", 1000)+"\r\nx\r\n", 40) + "0\r\n\r\n", wantErr: "too much framing", inBody: true},
		{name: "chunk line bare LF", resp: ok + "Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", wantErr: "not ended by CRLF", inBody: true},
		{name: "chunked cut short", resp: ok + "Transfer-Encoding: chunked\r\n\r\n5\r\nhel", wantIs: io.ErrUnexpectedEOF, inBody: true},
		{name: "length cut short", resp: ok + "Content-Length: 10\r\n\r\nabc", wantIs: io.ErrUnexpectedEOF, inBody: true},
		{name: "no status code", resp: "HTTP/1.1 OK\r\n\r\n", wantErr: "malformed status"},
		{name: "short status code", resp: "HTTP/1.1 20 OK\r\n\r\n", wantErr: "malformed status"},
		{name: "status below 100", resp: "HTTP/1.1 099 Odd\r\n\r\n", wantErr: "malformed status code"},
		{name: "HTTP/2 status line", resp: "HTTP/2.0 200 OK\r\n\r\n", wantErr: "unsupported protocol version"},
		{name: "not HTTP", resp: "ICY 200 OK\r\n\r\n", wantErr: "malformed status line"},
		{name: "control byte in reason", resp: "HTTP/1.1 200 O\x01K\r\n\r\n", wantErr: "control byte in reason phrase"},
		{name: "obsolete folding", resp: ok + "X-A: one\r\n two\r\nContent-Length: 0\r\n\r\n", wantErr: "obsolete line folding"},
		{name: "space before colon", resp: ok + "Content-Length : 5\r\n\r\nhello", wantErr: "invalid header field name"},
		{name: "no colon", resp: ok + "NoColonHere\r\n\r\n", wantErr: "malformed header line"},
		{name: "NUL in value", resp: ok + "X-A: a\x00b\r\nContent-Length: 0\r\n\r\n", wantErr: "invalid header field value"},
		{name: "bare CR in value", resp: ok + "X-A: a\rb\r\nContent-Length: 0\r\n\r\n", wantErr: "invalid header field value"},
		{name: "header too large", resp: ok + "X-Big: " + strings.Repeat("b", 600) + "\r\n\r\n", wantErr: "exceeds MaxResponseHeaderBytes", maxBytes: 256},
		{name: "header larger than buffer and limit", resp: ok + strings.Repeat("X-Many: "+strings.Repeat("m", 100)+"\r\n", 100) + "\r\n", wantErr: "exceeds MaxResponseHeaderBytes", maxBytes: 8 << 10},
		{name: "head cut short", resp: ok + "Content-Le", wantIs: io.ErrUnexpectedEOF},
		{name: "no response at all", resp: "", wantErr: "closed the connection before responding"},
		{name: "endless 1xx", resp: strings.Repeat("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", 12), wantErr: "too many 1xx"},
		{name: "forbidden trailer", resp: ok + "Transfer-Encoding: chunked\r\nTrailer: Content-Length\r\n\r\n0\r\n\r\n", wantErr: "announced as a trailer"},
		{name: "101 unasked", resp: "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nHTTP/1.1 200 OK\r\n\r\n", wantErr: "101 Switching Protocols to a request without Upgrade"},
		{name: "bad trailer line", resp: ok + "Transfer-Encoding: chunked\r\n\r\n0\r\nBad Trailer: x\r\n\r\n", wantErr: "invalid header field name", inBody: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rs := startRaw(t, func(conn net.Conn, br *bufio.Reader, _ int) {
				if _, _, err := readRequest(br); err != nil {
					return
				}
				io.WriteString(conn, c.resp)
			})
			tr := newTransport(t, func(tr *Transport) { tr.MaxResponseHeaderBytes = c.maxBytes })
			ctx := ctxTimeout(t, 10*time.Second)
			resp, err := tr.RoundTrip(mustRequest(t, "GET", "http://"+rs.addr, nil).WithContext(ctx))
			if c.inBody {
				if err != nil {
					t.Fatalf("RoundTrip: %v, want the error from the body", err)
				}
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			} else if err == nil {
				resp.Body.Close()
				t.Fatalf("RoundTrip succeeded with status %d", resp.StatusCode)
			}
			switch {
			case err == nil:
				t.Fatal("no error")
			case ctx.Err() != nil:
				t.Fatalf("hung until the test's deadline: %v", err)
			case c.wantIs != nil && !errors.Is(err, c.wantIs):
				t.Fatalf("err = %v, want one wrapping %v", err, c.wantIs)
			case c.wantErr != "" && !strings.Contains(err.Error(), c.wantErr):
				t.Fatalf("err = %v, want %q", err, c.wantErr)
			}
			// The broken connection is closed, not pooled.
			tr.mu.Lock()
			defer tr.mu.Unlock()
			for _, hp := range tr.hosts {
				if len(hp.idle) != 0 {
					t.Fatal("the connection went back to the pool")
				}
			}
		})
	}
}

// TestLenientButUnambiguous pins what is accepted although unusual.
func TestLenientButUnambiguous(t *testing.T) {
	for _, c := range []struct {
		name, resp, body string
		check            func(*http.Response) bool
	}{
		{"bare LF head", "HTTP/1.1 200 OK\nContent-Length: 2\n\nok", "ok", nil},
		{"repeated equal lengths", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2, 2\r\n\r\nok", "ok", nil},
		{"lower-case names", "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-custom-thing: v\r\n\r\nok", "ok", func(r *http.Response) bool {
			return r.Header.Get("X-Custom-Thing") == "v" && r.Header["Content-Length"] != nil
		}},
		{"no reason phrase", "HTTP/1.1 201\r\nContent-Length: 2\r\n\r\nok", "ok", func(r *http.Response) bool { return r.Status == "201" }},
		{"chunk extensions", "HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n2 ;name=value\r\nok\r\n0\r\n\r\n", "ok", nil},
		{"upper-case hex", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n", "0123456789", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			rs := startRaw(t, func(conn net.Conn, br *bufio.Reader, _ int) {
				if _, _, err := readRequest(br); err != nil {
					return
				}
				io.WriteString(conn, c.resp)
			})
			tr := newTransport(t)
			resp, body := get(t, tr, "http://"+rs.addr)
			if body != c.body || c.check != nil && !c.check(resp) {
				t.Fatalf("body %q, response %+v", body, resp)
			}
		})
	}
}

// FuzzReadResponse serves arbitrary bytes as the response to a GET and
// reads whatever the client makes of them: it must neither panic nor
// hang, and a response it accepts must be self-consistent.
func FuzzReadResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n5\r\nhello\r\n0\r\nX-T: v\r\n\r\n",
		"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\nuntil close",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\nraw",
		"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
		"HTTP/1.1 200 OK\nX: a\n b\n\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			return
		}
		tr := &Transport{
			MaxResponseHeaderBytes: 4 << 10,
			Dial: func(context.Context, string, string) (net.Conn, error) {
				client, srv := net.Pipe()
				go func() {
					defer srv.Close()
					// Read the request concurrently: net.Pipe has no buffer.
					done := make(chan struct{})
					go func() {
						defer close(done)
						_, _ = io.Copy(io.Discard, srv)
					}()
					_, _ = srv.Write(data)
					srv.Close()
					<-done
				}()
				return client, nil
			},
		}
		defer tr.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://fuzz.test/", nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			if ctx.Err() != nil {
				t.Fatalf("hung: %v", err)
			}
			return
		}
		if resp.StatusCode < 100 || resp.StatusCode > 999 || resp.Header == nil || resp.Body == nil {
			t.Fatalf("inconsistent response: %+v", resp)
		}
		n, err := io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if ctx.Err() != nil {
			t.Fatalf("hung reading the body: %v", err)
		}
		if err == nil && resp.StatusCode != 101 && resp.ContentLength >= 0 && resp.Body != http.NoBody && n != resp.ContentLength {
			t.Fatalf("read %d bytes of a %d-byte body without error", n, resp.ContentLength)
		}
		if n > int64(len(data)) {
			t.Fatalf("read %d body bytes from %d bytes of input", n, len(data))
		}
	})
}
