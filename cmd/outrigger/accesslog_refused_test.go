package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// sendRaw writes req on a new connection to addr and returns the status
// of the answer, read before the server closes the connection.
func sendRaw(t *testing.T, addr, req string) int {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%q: %v", req, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// sendMalformedH2 opens an HTTP/2 connection with prior knowledge and
// sends on stream 1 a GET carrying a Connection field, which RFC 9113
// §8.2.2 makes malformed; it returns the code of the RST_STREAM that
// answers it.
func sendMalformedH2(t *testing.T, addr string) http2.ErrCode {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, http2.ClientPreface)
	fr := http2.NewFramer(c, c)
	fr.WriteSettings()
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, kv := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "svc"}, {":path", "/h2"}, {"user-agent", "h2probe/4"}, {"connection", "close"}} {
		enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("no RST_STREAM for the malformed request: %v", err)
		}
		if rst, ok := f.(*http2.RSTStreamFrame); ok && rst.StreamID == 1 {
			return rst.ErrCode
		}
	}
}

// Requests the listener's server refuses before the proxy sees them
// (a malformed header, a request line that is none, a transfer coding
// it does not implement, a malformed HTTP/2 stream) each get one access
// log line, with what is known of them and the reason
// downstream_protocol_error (the User-Agent too when it was read before
// the fault), and are counted as the proxy's own answers
// without a route. They went unseen: no line, no count.
func TestRefusedRequestsAreLoggedAndCounted(t *testing.T) {
	up := newUpstream(t, "a")
	logPath := filepath.Join(t.TempDir(), "access.log")
	extra := fmt.Sprintf("logging:\n  access_log:\n    enabled: true\n    path: %s\n", logPath)
	p := start(t, "run", "-c", writeConfig(t, sidecarConfig(up.addr(), up.addr(), extra)))

	// The line is written once the answer is sent, so a client can have
	// the answer before the line is there: each request waits for its
	// line before the next is sent, which keeps the lines in the order
	// of want below.
	var lines []map[string]any
	waitLines := func(n int) {
		t.Helper()
		waitFor(t, 10*time.Second, fmt.Sprintf("%d access log lines", n), func() bool {
			b, err := os.ReadFile(logPath)
			if err != nil || strings.Count(string(b), "\n") < n {
				return false
			}
			lines = readAccessLog(t, logPath)
			return true
		})
	}
	if s := sendRaw(t, p.addrs.Outbound, "GET /a/b?q=1 HTTP/1.1\r\nHost: svc\r\nUser-Agent: probe/1\r\nNoColon\r\n\r\n"); s != 400 {
		t.Fatalf("malformed header: %d", s)
	}
	waitLines(1)
	if s := sendRaw(t, p.addrs.Outbound, "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n"); s != 400 {
		t.Fatalf("garbage: %d", s)
	}
	waitLines(2)
	if s := sendRaw(t, p.addrs.Outbound, "POST /up HTTP/1.1\r\nHost: svc\r\nUser-Agent: probe/3\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"); s != 501 {
		t.Fatalf("unknown transfer coding: %d", s)
	}
	waitLines(3)
	if code := sendMalformedH2(t, p.addrs.Outbound); code != http2.ErrCodeProtocol {
		t.Fatalf("malformed HTTP/2 request reset %v", code)
	}
	waitLines(4)
	if len(lines) != 4 {
		t.Fatalf("%d lines, want 4: %v", len(lines), lines)
	}
	want := []map[string]any{
		{"method": "GET", "authority": "svc", "path": "/a/b", "protocol": "HTTP/1.1", "status": 400.0, "detail": "malformed header", "user_agent": "probe/1"},
		{"method": "", "authority": "", "path": "", "protocol": "", "status": 400.0, "detail": "malformed request line", "user_agent": ""},
		{"method": "POST", "authority": "svc", "path": "/up", "protocol": "HTTP/1.1", "status": 501.0, "detail": "unsupported transfer encoding", "user_agent": "probe/3"},
		{"method": "GET", "authority": "svc", "path": "/h2", "protocol": "HTTP/2.0", "status": 0.0, "detail": "malformed request", "bytes": 0.0, "user_agent": "h2probe/4"},
	}
	for i, l := range lines {
		for k, v := range want[i] {
			if l[k] != v {
				t.Errorf("line %d: %s is %v, want %v: %v", i, k, l[k], v, l)
			}
		}
		for k, v := range map[string]any{"listener": "outbound", "error": "downstream_protocol_error", "route": "", "cluster": "",
			"upstream_host": "", "upstream_error": "", "request_id": ""} {
			if l[k] != v {
				t.Errorf("line %d: %s is %v, want %v: %v", i, k, l[k], v, l)
			}
		}
		if r, _ := l["remote"].(string); !strings.HasPrefix(r, "127.0.0.1:") {
			t.Errorf("line %d: remote %v", i, l["remote"])
		}
		if _, ok := l["duration_ms"].(float64); !ok {
			t.Errorf("line %d: no duration_ms: %v", i, l)
		}
		if _, ok := l["ts"].(string); !ok {
			t.Errorf("line %d: no ts: %v", i, l)
		}
	}
	if b, _ := lines[0]["bytes"].(float64); b == 0 {
		t.Errorf("the 400's body is not counted: %v", lines[0])
	}

	c := newClient(t)
	for sample, want := range map[string]float64{
		`outrigger_proxy_requests_total{cluster="",code_class="4xx",listener="outbound",route=""}`:   2,
		`outrigger_proxy_requests_total{cluster="",code_class="5xx",listener="outbound",route=""}`:   1,
		`outrigger_proxy_requests_total{cluster="",code_class="other",listener="outbound",route=""}`: 1,
		`outrigger_proxy_local_replies_total{reason="downstream_protocol_error"}`:                    4,
		`outrigger_proxy_request_duration_seconds_count{cluster="",listener="outbound",route=""}`:    4,
	} {
		if got := metric(t, c, p.addrs.Admin, sample); got != want {
			t.Errorf("%s = %v, want %v", sample, got, want)
		}
	}
}
