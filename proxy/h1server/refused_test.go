package h1server

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// A request the server answers itself, before any handler, is reported
// to Refused once, after the answer, with what was read of its head:
// nothing of a request line that did not parse, the method, Host, path
// and protocol of one that did. The proxy's access log and request
// metrics are made of it.
func TestRefusedRequestsAreReportedWithWhatWasRead(t *testing.T) {
	refused := make(chan Refusal, 4)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("handler ran for %s %s", r.Method, r.URL)
	}), func(s *Server) {
		s.MaxHeaderBytes = 1024
		s.Refused = func(r Refusal) { refused <- r }
	})
	big := strings.Repeat("a", 8<<10)
	for _, tc := range []struct {
		name, req string
		want      Refusal
	}{
		{"garbage", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
			Refusal{Status: 400, Detail: "malformed request line"}},
		{"HTTP/2.0 request line", "GET / HTTP/2.0\r\nHost: x\r\n\r\n",
			Refusal{Status: 505, Detail: "unsupported protocol version"}},
		{"header without colon", "GET /a/b?q=1 HTTP/1.1\r\nHost: svc\r\nNoColon\r\n\r\n",
			Refusal{Method: "GET", Host: "svc", Path: "/a/b", Proto: "HTTP/1.1", Status: 400, Detail: "malformed header"}},
		{"two Host fields", "GET /h HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
			Refusal{Method: "GET", Path: "/h", Proto: "HTTP/1.1", Status: 400, Detail: "too many Host headers"}},
		{"absolute-form target", "GET http://up.example/p HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
			Refusal{Method: "GET", Host: "up.example", Path: "/p", Proto: "HTTP/1.1", Status: 400, Detail: "malformed header"}},
		{"header block too large", "GET /big HTTP/1.1\r\nHost: x\r\nX-Big: " + big + "\r\n\r\n",
			Refusal{Method: "GET", Host: "x", Path: "/big", Proto: "HTTP/1.1", Status: 431, Detail: "Request Header Fields Too Large"}},
		{"Content-Length and Transfer-Encoding", "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
			Refusal{Method: "POST", Host: "x", Path: "/up", Proto: "HTTP/1.1", Status: 400, Detail: "both Transfer-Encoding and Content-Length"}},
		{"Transfer-Encoding in HTTP/1.0", "POST /up HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
			Refusal{Method: "POST", Path: "/up", Proto: "HTTP/1.0", Status: 400, Detail: "Transfer-Encoding in an HTTP/1.0 request"}},
		{"two transfer codings", "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
			Refusal{Method: "POST", Host: "x", Path: "/up", Proto: "HTTP/1.1", Status: 501, Detail: "unsupported transfer encoding"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, ts.addr)
			c.send(t, tc.req)
			resp, body := c.response(t, "GET")
			got := within(t, 5*time.Second, "the refusal", refused)
			if got.RemoteAddr != c.LocalAddr().String() {
				t.Errorf("RemoteAddr %q, want the client's %q", got.RemoteAddr, c.LocalAddr())
			}
			if got.Bytes != len(body) || got.Duration <= 0 {
				t.Errorf("Bytes %d, Duration %v; want the body's %d and the time to write it", got.Bytes, got.Duration, len(body))
			}
			if resp.StatusCode != got.Status {
				t.Errorf("answered %d, reported %d", resp.StatusCode, got.Status)
			}
			got.RemoteAddr, got.Bytes, got.Duration = "", 0, 0
			if got != tc.want {
				t.Errorf("reported %+v\nwant       %+v", got, tc.want)
			}
			c.closed(5 * time.Second)
			select {
			case r := <-refused:
				t.Errorf("reported again: %+v", r)
			default:
			}
		})
	}
}

// Nothing is reported for a request the handler serves, nor for a
// connection that ends without a whole request (EOF, a read-header
// timeout): no answer went out.
func TestServedOrUnansweredRequestsAreNotReportedRefused(t *testing.T) {
	refused := make(chan Refusal, 4)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(400)
	}), func(s *Server) {
		// A second, not less: the first request must be read within it
		// of the accept, which a loaded machine could miss.
		s.ReadHeaderTimeout = time.Second
		s.Refused = func(r Refusal) { refused <- r }
	})
	c := dial(t, ts.addr)
	c.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, _ := c.response(t, "GET"); resp.StatusCode != 400 {
		t.Fatalf("%d", resp.StatusCode)
	}
	c.send(t, "GET /half HTTP/1.1\r\nHost:")
	if !c.closed(5 * time.Second) {
		t.Fatal("read-header timeout did not close the connection")
	}
	c = dial(t, ts.addr)
	c.send(t, "GET /cut HTTP/1.1\r\n")
	c.Close()
	waitNoConns(t, ts.Server)
	select {
	case r := <-refused:
		t.Fatalf("reported %+v", r)
	default:
	}
	// And the hook works on this server.
	c = dial(t, ts.addr)
	c.send(t, "BAD\r\n\r\n")
	c.response(t, "GET")
	if r := within(t, 5*time.Second, "the refusal", refused); r.Detail != "malformed request line" {
		t.Fatalf("reported %+v", r)
	}
}
