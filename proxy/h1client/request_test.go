package h1client

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A body longer than its ContentLength is an error, as in net/http:
// sending the first ContentLength bytes would forward a request the
// caller did not make.
func TestLongRequestBodyIsAnError(t *testing.T) {
	for _, c := range []struct {
		name string
		n    int64
		body string
	}{
		{"fits the buffer", 3, "hello"},
		{"larger than the buffer", 6000, strings.Repeat("x", 7000)},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := startServer(t, func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) })
			tr := newTransport(t)
			req, _ := http.NewRequest("POST", s.URL, io.NopCloser(strings.NewReader(c.body)))
			req.ContentLength = c.n
			resp, err := tr.RoundTrip(req)
			if err == nil {
				resp.Body.Close()
				t.Fatal("RoundTrip succeeded")
			}
			if !strings.Contains(err.Error(), "longer than its ContentLength") {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

// An exact-length body that reports io.EOF only on the next read still
// goes (the check for excess reads once more).
func TestExactRequestBodyWithLateEOF(t *testing.T) {
	got := make(chan string, 1)
	s := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- string(b)
	})
	tr := newTransport(t)
	pr, pw := io.Pipe()
	go func() {
		pw.Write([]byte("hello"))
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", s.URL, pr)
	req.ContentLength = 5
	do(t, tr, req)
	if b := <-got; b != "hello" {
		t.Fatalf("server got %q", b)
	}
}

// headLines reads one request head from a raw connection, as lines.
func headLines(br *bufio.Reader) ([]string, error) {
	var lines []string
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return lines, err
		}
		l = strings.TrimRight(l, "\r\n")
		if l == "" {
			return lines, nil
		}
		lines = append(lines, l)
	}
}

// Framing fields are the transport's to write, whatever the case of the
// caller's map key: a non-canonical "transfer-encoding" next to the
// transport's Content-Length would frame the body two ways.
func TestNonCanonicalFramingHeadersNotSent(t *testing.T) {
	heads := make(chan []string, 1)
	rs := startRaw(t, func(c net.Conn, br *bufio.Reader, _ int) {
		lines, err := headLines(br)
		heads <- lines
		if err != nil {
			return
		}
		io.ReadFull(br, make([]byte, 5))
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	})
	tr := newTransport(t)
	req, _ := http.NewRequest("POST", "http://"+rs.addr, strings.NewReader("hello"))
	req.Header["transfer-encoding"] = []string{"chunked"}
	req.Header["content-length"] = []string{"0"}
	req.Header["HOST"] = []string{"evil.example"}
	req.Header["trailer"] = []string{"X-T"}
	tr.RoundTrip(req.WithContext(ctxTimeout(t, 5*time.Second)))
	count := map[string]int{}
	for _, l := range <-heads {
		if k, _, ok := strings.Cut(l, ":"); ok {
			count[textproto.CanonicalMIMEHeaderKey(k)]++
		}
	}
	if count["Content-Length"] != 1 || count["Transfer-Encoding"] != 0 || count["Host"] != 1 || count["Trailer"] != 0 {
		t.Fatalf("framing fields sent: %v", count)
	}
}

// lateTrailer sets a trailer field when the body ends, as a caller may.
type lateTrailer struct {
	r   io.Reader
	req *http.Request
	k   string
}

func (l *lateTrailer) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	if err == io.EOF {
		l.req.Trailer[l.k] = []string{"v"}
	}
	return n, err
}

// Trailer fields added while the body is read are checked as the ones
// declared up front are: no CR or LF in a name, no framing field.
func TestLateTrailerFieldsChecked(t *testing.T) {
	for _, k := range []string{"X-Evil\r\nInjected", "Content-Length"} {
		t.Run(k, func(t *testing.T) {
			var sawInjected atomic.Bool
			rs := startRaw(t, func(c net.Conn, br *bufio.Reader, _ int) {
				b, _ := io.ReadAll(br)
				sawInjected.Store(strings.Contains(string(b), "Injected") || strings.Contains(string(b), "\r\nContent-Length"))
			})
			tr := newTransport(t)
			req, _ := http.NewRequest("PUT", "http://"+rs.addr, nil)
			req.Body = io.NopCloser(&lateTrailer{r: strings.NewReader("body"), req: req, k: k})
			req.ContentLength = -1
			req.Trailer = http.Header{"X-Ok": nil}
			resp, err := tr.RoundTrip(req.WithContext(ctxTimeout(t, 5*time.Second)))
			if err == nil {
				resp.Body.Close()
				t.Fatal("RoundTrip succeeded")
			}
			if !strings.Contains(err.Error(), "trailer") {
				t.Fatalf("err = %v", err)
			}
			eventually(t, "server done", func() bool { return rs.accepted.Load() == 1 })
			if sawInjected.Load() {
				t.Fatal("the bad trailer reached the server")
			}
		})
	}
}

// A server that sends an interim response other than 100 (a 103 Early
// Hints) and then waits for the body gets it once ExpectContinueTimeout
// has passed, as with net/http: an interim response does not stop the
// wait's clock.
func TestExpectContinueTimeoutAfterEarlyHints(t *testing.T) {
	got := make(chan string, 1)
	rs := startRaw(t, func(c net.Conn, br *bufio.Reader, _ int) {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </style.css>\r\n\r\n")
		b, err := io.ReadAll(req.Body)
		if err != nil {
			return
		}
		got <- string(b)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	})
	tr := newTransport(t, func(tr *Transport) { tr.ExpectContinueTimeout = 50 * time.Millisecond })
	req := mustRequest(t, "POST", "http://"+rs.addr, strings.NewReader("late body"))
	req.Header.Set("Expect", "100-continue")
	resp, err := tr.RoundTrip(req.WithContext(ctxTimeout(t, 3*time.Second)))
	if err != nil {
		t.Fatalf("RoundTrip: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if b := <-got; b != "late body" {
		t.Fatalf("server got %q", b)
	}
}

// An idempotent request with "Expect: 100-continue" that meets a stale
// keep-alive connection is sent again on a new one, as one without it
// is: the server closed the connection before any byte of an answer.
func TestExpectContinueOnStaleConnectionRetried(t *testing.T) {
	rs := closeAfterOne(t)
	tr := newTransport(t, func(tr *Transport) {
		tr.noSweep = true                                 // the stale connection must stay
		tr.ExpectContinueTimeout = 100 * time.Millisecond // the server never says 100 Continue
	})
	url := "http://" + rs.addr
	for i := range 3 {
		get(t, tr, url) // leaves an idle connection the server closes
		eventually(t, "the server to close the idle connection", func() bool {
			tr.mu.Lock()
			defer tr.mu.Unlock()
			for _, hp := range tr.hosts {
				return len(hp.idle) == 1 && !peekAlive(hp.idle[0].raw, false)
			}
			return false
		})
		req := mustRequest(t, "PUT", url, strings.NewReader("payload"))
		req.Header.Set("Idempotency-Key", "k")
		req.Header.Set("Expect", "100-continue")
		resp, err := tr.RoundTrip(req.WithContext(ctxTimeout(t, 5*time.Second)))
		if err != nil {
			t.Fatalf("attempt %d: %v", i, err)
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
	}
}

// A request with "TE: trailers" names TE in its Connection field (RFC
// 9110 §10.1.4: TE is for the connection it is sent on), together with
// close when the request closes the connection; one without TE has no
// Connection field of the transport's.
func TestTENamedInConnection(t *testing.T) {
	for _, tc := range []struct {
		name  string
		te    bool
		close bool
		want  string // the Connection field, "" for none
	}{
		{"te", true, false, "TE"},
		{"te and close", true, true, "TE, close"},
		{"close", false, true, "close"},
		{"neither", false, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			heads := make(chan []string, 1)
			rs := startRaw(t, func(c net.Conn, br *bufio.Reader, _ int) {
				lines, err := headLines(br)
				heads <- lines
				if err != nil {
					return
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
			})
			tr := newTransport(t)
			req, _ := http.NewRequest("GET", "http://"+rs.addr, nil)
			if tc.te {
				req.Header["Te"] = []string{"trailers"}
			}
			req.Close = tc.close
			if resp, err := tr.RoundTrip(req.WithContext(ctxTimeout(t, 5*time.Second))); err == nil {
				resp.Body.Close()
			}
			var conn []string
			for _, l := range <-heads {
				if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(k, "Connection") {
					conn = append(conn, strings.TrimSpace(v))
				}
			}
			if got := strings.Join(conn, "|"); got != tc.want {
				t.Fatalf("Connection %q, want %q", got, tc.want)
			}
		})
	}
}
