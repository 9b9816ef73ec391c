package h1server

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestMalformedRequests pins the answer to each kind of bad request: its
// status, "Connection: close", a closed connection, and a handler that
// never runs.
func TestMalformedRequests(t *testing.T) {
	var handled atomic.Int32
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handled.Add(1)
		io.ReadAll(r.Body)
		io.WriteString(w, "handled")
	}), func(s *Server) { s.MaxHeaderBytes = 1024 })
	big := strings.Repeat("a", 8<<10)
	for _, tc := range []struct {
		name, req string
		status    int
	}{
		{"no spaces in request line", "GET\r\nHost: x\r\n\r\n", 400},
		{"missing version", "GET /\r\nHost: x\r\n\r\n", 400},
		{"bad version", "GET / HTTP/x.y\r\nHost: x\r\n\r\n", 400},
		{"HTTP/2.0 request line", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505},
		{"HTTP/3.0", "GET / HTTP/3.0\r\nHost: x\r\n\r\n", 505},
		{"HTTP/0.9", "GET / HTTP/0.9\r\nHost: x\r\n\r\n", 505},
		{"two-digit minor version", "GET / HTTP/1.10\r\nHost: x\r\n\r\n", 400},
		{"lower-case protocol name", "GET / http/1.1\r\nHost: x\r\n\r\n", 400},
		{"bare CR after version", "GET / HTTP/1.1\rHost: x\r\n\r\n", 400},
		{"method not a token", "G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"space in target", "GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"control byte in target", "GET /a\x01 HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"asterisk-form for GET", "GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"relative target", "GET a/b HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		// RFC 9112 §3.2: a target has no fragment; an upstream that
		// reads one would not see the query (or path) routed.
		{"fragment in target's query", "GET /api?x#y HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"fragment in target's path", "GET /api#y HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"fragment in absolute-form target", "GET http://x/api#y HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		// RFC 9112 §3.2.3: the authority-form is for CONNECT only.
		{"authority-form for GET", "GET example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 400},
		{"authority-form for POST", "POST localhost:8080 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 400},
		{"absolute-form without a path", "GET mailto:a@b HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"absolute-form of another scheme", "GET ftp://a/b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		// RFC 9110 §4.2.1 (empty host) and §4.2.4 (userinfo).
		{"absolute-form without a host", "GET http:///b HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"absolute-form with userinfo", "GET http://x@evil/b HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"CONNECT with userinfo", "CONNECT user@example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 400},
		{"CONNECT with a path", "CONNECT example.com:443/x HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 400},
		{"CONNECT without a port", "CONNECT example.com HTTP/1.1\r\nHost: example.com\r\n\r\n", 400},
		{"CONNECT to an escaped non-ASCII host", "CONNECT %ff:443 HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"absolute-form with an escaped non-ASCII host", "GET http://%ff/b HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"missing Host in HTTP/1.1", "GET / HTTP/1.1\r\n\r\n", 400},
		{"two Host headers", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"malformed Host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
		{"header without colon", "GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n", 400},
		{"space before colon", "GET / HTTP/1.1\r\nHost: x\r\nX-A : 1\r\n\r\n", 400},
		{"invalid header name", "GET / HTTP/1.1\r\nHost: x\r\nX(A): 1\r\n\r\n", 400},
		{"control byte in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400},
		{"first line folded", "GET / HTTP/1.1\r\n continued\r\nHost: x\r\n\r\n", 400},
		{"header block too large", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + big + "\r\n\r\n", 431},
		{"request line too large", "GET /" + big + " HTTP/1.1\r\nHost: x\r\n\r\n", 431},
		{"Content-Length and Transfer-Encoding", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"differing Content-Lengths", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400},
		{"negative Content-Length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400},
		{"signed Content-Length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc", 400},
		{"Content-Length list", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc", 400},
		{"overflowing Content-Length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n", 400},
		// RFC 9112 §6.1: a request whose final transfer coding is not
		// chunked has no length one can trust: 400, not 501.
		{"gzip transfer coding", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400},
		{"identity transfer coding", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\nabc", 400},
		{"chunked before gzip", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 400},
		{"gzip on a second field line", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n", 400},
		{"empty Transfer-Encoding", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \r\n\r\n0\r\n\r\n", 400},
		{"chunked with parameter", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked;x=1\r\n\r\n0\r\n\r\n", 400},
		{"Kelvin sign in chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chun\u212aed\r\n\r\n0\r\n\r\n", 400},
		{"no-break space after chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\u00a0\r\n\r\n0\r\n\r\n", 400},
		{"next-line after chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\u0085\r\n\r\n0\r\n\r\n", 400},
		// Chunked twice (a sender MUST NOT), or chunked spelled so that
		// a hop in front may read the list another way, is not read as
		// chunked.
		{"chunked twice", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n0\r\n\r\n", 400},
		{"chunked on two field lines", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"chunked after an empty field line", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"chunked with an empty element", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked,\r\n\r\n0\r\n\r\n", 400},
		// An unknown coding before a final chunked is a coding this
		// server does not implement (SHOULD 501).
		{"two transfer codings", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
		{"two transfer codings on two field lines", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", 501},
		{"Transfer-Encoding in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"trailer name with a space announced", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: X T\r\n\r\n0\r\n\r\n", 400},
		{"trailer name not a token announced", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: X-A, X(B)\r\n\r\n0\r\n\r\n", 400},
		{"bad trailer key announced", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: Content-Length\r\n\r\n0\r\n\r\n", 400},
		{"unknown Expect", "POST / HTTP/1.1\r\nHost: x\r\nExpect: magic\r\nContent-Length: 1\r\n\r\na", 417},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := handled.Load()
			c := dial(t, ts.addr)
			c.send(t, tc.req)
			resp, _ := c.response(t, "GET")
			if resp.StatusCode != tc.status || !resp.Close {
				t.Fatalf("got %d close=%v, want %d with Connection: close", resp.StatusCode, resp.Close, tc.status)
			}
			if !c.closed(5 * time.Second) {
				t.Fatal("connection left open")
			}
			if handled.Load() != before {
				t.Fatal("handler ran")
			}
		})
	}
}

// TestMalformedChunkedBodies: the head is fine, so the handler runs, but
// its body read fails and the connection closes rather than reading the
// rest as another request.
func TestMalformedChunkedBodies(t *testing.T) {
	errs := make(chan error, 1)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		errs <- err
		if err != nil {
			http.Error(w, "bad body", 400)
		}
	}))
	for _, tc := range []struct{ name, body string }{
		{"non-hex size", "zz\r\nabc\r\n0\r\n\r\n"},
		{"overflowing size", "fffffffffffffffffff\r\nabc\r\n0\r\n\r\n"},
		{"sixteen hex digits of leading zeros", "00000000000000003\r\nabc\r\n0\r\n\r\n"},
		{"signed size", "+3\r\nabc\r\n0\r\n\r\n"},
		{"0x size", "0x3\r\nabc\r\n0\r\n\r\n"},
		{"space before size", " 3\r\nabc\r\n0\r\n\r\n"},
		// A bare LF is no line end in chunk framing (RFC 9112 §7.1,
		// erratum 7633): the chunk line and the CRLF after the data.
		{"bare LF after size", "3\nabc\r\n0\r\n\r\n"},
		{"bare LF after data", "3\r\nabc\n0\r\n\r\n"},
		{"bare CR in chunk line", "3\rX\r\nabc\r\n0\r\n\r\n"},
		{"bare LF after last chunk", "3\r\nabc\r\n0\n\r\n"},
		{"too much chunk extension", strings.Repeat("1;"+strings.Repeat("e", 1000)+"\r\nx\r\n", 40) + "0\r\n\r\n"},
		{"missing chunk CRLF", "3\r\nabcX0\r\n\r\n"},
		{"bad trailer", "0\r\nno colon\r\n\r\n"},
		// RFC 9112 §5.1, in the trailer section as in the head.
		{"space before colon in trailer", "0\r\nX-T : 1\r\n\r\n"},
		{"framing name with space in trailer", "0\r\nContent-Length : 5\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, ts.addr)
			c.send(t, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"+tc.body+"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
			if err := within(t, 5*time.Second, "handler", errs); err == nil {
				t.Fatal("malformed chunked body read without error")
			}
			if resp, _ := c.response(t, "POST"); resp.StatusCode != 400 || !resp.Close {
				t.Fatalf("%d close=%v", resp.StatusCode, resp.Close)
			}
			if !c.closed(5 * time.Second) {
				t.Fatal("connection left open: the rest could be read as a request")
			}
		})
	}
}

func TestDuplicateEqualContentLengthsAccepted(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, string(b)+" "+strings.Join(r.Header["Content-Length"], ","))
	}))
	c := dial(t, ts.addr)
	c.send(t, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc")
	if _, body := c.response(t, "POST"); body != "abc 3" {
		t.Fatalf("%q", body)
	}
}

// TestAsteriskFormForOptions: "OPTIONS *" (RFC 9112 §3.2.4) reaches the
// handler.
func TestAsteriskFormForOptions(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Method+" "+r.RequestURI+" "+r.URL.Path)
	}))
	c := dial(t, ts.addr)
	c.send(t, "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, body := c.response(t, "OPTIONS"); resp.StatusCode != 200 || body != "OPTIONS * *" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
}

// TestAbsoluteFormTarget: an http or https URI as the target (RFC 9112
// §3.2.2) is served, its authority taking the place of the Host field,
// which the server MUST then ignore.
func TestAbsoluteFormTarget(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Host+" "+r.URL.Path+"?"+r.URL.RawQuery)
	}))
	c := dial(t, ts.addr)
	c.send(t, "GET http://a.example:81/p?q HTTP/1.1\r\nHost: other\r\n\r\n"+
		"GET HTTPS://b.example/r HTTP/1.1\r\nHost: b.example\r\n\r\n")
	for _, want := range []string{"a.example:81 /p?q", "b.example /r?"} {
		if resp, body := c.response(t, "GET"); resp.StatusCode != 200 || body != want {
			t.Fatalf("%d %q, want 200 %q", resp.StatusCode, body, want)
		}
	}
}

// TestAbsoluteFormTargetWithEmptyPath: an absolute-form target with an
// empty path ("http://a.example", with a query or without) has the path
// "/" (RFC 9110 §4.2.3: the two are the same URI; RFC 9112 §3.2.1: a
// client sends "/" in origin-form for it), as an HTTP/2 request's :path
// never lacks one. Left empty, it matched no route on "/" (the proxy
// answered 404) and was told apart from the origin-form request.
func TestAbsoluteFormTargetWithEmptyPath(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Host+" "+r.URL.Path+"?"+r.URL.RawQuery+" "+r.RequestURI)
	}))
	c := dial(t, ts.addr)
	c.send(t, "GET http://a.example HTTP/1.1\r\nHost: other\r\n\r\n"+
		"GET http://a.example:81?q=1 HTTP/1.1\r\nHost: other\r\n\r\n")
	for _, want := range []string{"a.example /? http://a.example", "a.example:81 /?q=1 http://a.example:81?q=1"} {
		if resp, body := c.response(t, "GET"); resp.StatusCode != 200 || body != want {
			t.Fatalf("%d %q, want 200 %q", resp.StatusCode, body, want)
		}
	}
}

// TestChunkedBodyEndingInBareLF: a chunked body whose empty trailer
// section ends with a bare LF (RFC 9112 §2.2) ends there: the server
// neither waits for a byte past it nor loses the next request.
func TestChunkedBodyEndingInBareLF(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		io.WriteString(w, r.URL.Path+":"+string(b))
	}))
	c := dial(t, ts.addr)
	c.send(t, "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\n")
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if resp, body := c.response(t, "POST"); resp.StatusCode != 200 || body != "/a:abc" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	c.send(t, "GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, body := c.response(t, "GET"); resp.StatusCode != 200 || body != "/b:" {
		t.Fatalf("next request: %d %q", resp.StatusCode, body)
	}
}

// TestConnectAuthorityForm: CONNECT's authority-form target (RFC 9112
// §3.2.3) is its host; an origin-form one is taken as net/http takes it.
func TestConnectAuthorityForm(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Method+" "+r.Host+" "+r.URL.Path)
	}))
	c := dial(t, ts.addr)
	c.send(t, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"+
		"CONNECT [::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n"+
		"CONNECT /rpc HTTP/1.1\r\nHost: x\r\n\r\n")
	for _, want := range []string{"CONNECT example.com:443 ", "CONNECT [::1]:8443 ", "CONNECT x /rpc"} {
		if resp, body := c.response(t, "GET"); resp.StatusCode != 200 || body != want {
			t.Fatalf("%d %q, want 200 %q", resp.StatusCode, body, want)
		}
	}
}

// TestHigherMinorVersionServedAsHTTP11: RFC 9110 §2.5 — a request of a
// higher minor version is served as the highest this server speaks.
func TestHigherMinorVersionServedAsHTTP11(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto)
	}))
	c := dial(t, ts.addr)
	c.send(t, "GET / HTTP/1.2\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
	for i := 0; i < 2; i++ {
		resp, body := c.response(t, "GET")
		if resp.StatusCode != 200 || resp.Proto != "HTTP/1.1" || resp.Close {
			t.Fatalf("response %d: %d %s close=%v (%q)", i, resp.StatusCode, resp.Proto, resp.Close, body)
		}
	}
}
