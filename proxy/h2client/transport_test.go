package h2client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"testing"

	"golang.org/x/net/http2"
)

func TestGetReusesOneConnection(t *testing.T) {
	s := startH2(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s %s %s", r.URL.Path, r.Proto, r.Host)
	})
	tr := newTransport(t)
	var reused []bool
	for i := range 4 {
		req, _ := http.NewRequest("GET", s.url(fmt.Sprintf("/p%d", i)), nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) { reused = append(reused, info.Reused) },
		}))
		resp, body := do(t, tr, req)
		if want := fmt.Sprintf("hello /p%d HTTP/2.0 %s", i, s.addr); resp.StatusCode != 200 || body != want {
			t.Fatalf("got %d %q, want %q", resp.StatusCode, body, want)
		}
		if resp.Proto != "HTTP/2.0" || resp.ProtoMajor != 2 || resp.Request != req || resp.Status != "200 OK" {
			t.Fatalf("Proto %q, Status %q, Request %p", resp.Proto, resp.Status, resp.Request)
		}
	}
	if n := s.opened.Load(); n != 1 {
		t.Fatalf("server saw %d connections, want 1", n)
	}
	if fmt.Sprint(reused) != "[false true true true]" {
		t.Fatalf("GotConn Reused = %v", reused)
	}
}

func TestRequestBodiesAndHeaders(t *testing.T) {
	s := startH2(t, func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("server reading body: %v", err)
		}
		w.Header().Set("X-Got-Length", fmt.Sprint(r.ContentLength))
		w.Header().Set("X-Got-Connection", r.Header.Get("Connection")+r.Header.Get("Keep-Alive")+r.Header.Get("Upgrade"))
		w.Header().Set("X-Got-Te", r.Header.Get("Te"))
		w.Header().Set("X-Got-Custom", strings.Join(r.Header.Values("X-Custom"), "|"))
		w.Header().Set("X-Got-Trailer", r.Trailer.Get("X-Sum"))
		w.Write(bytes.ToUpper(b))
		io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Got-Trailer", r.Trailer.Get("X-Sum"))
	})
	tr := newTransport(t)
	for _, size := range []int{0, 1, 100, 16 << 10, 16<<10 + 1, 300 << 10} {
		for _, known := range []bool{true, false} {
			payload := strings.Repeat("a", size)
			var body io.Reader = strings.NewReader(payload)
			if !known {
				body = io.MultiReader(body) // hides the length
			}
			req, _ := http.NewRequest("POST", s.url("/echo"), body)
			req.Header.Set("Connection", "keep-alive")
			req.Header.Set("Keep-Alive", "timeout=5")
			req.Header.Set("Upgrade", "foo")
			req.Header.Set("Te", "trailers")
			req.Header["X-Custom"] = []string{"a", "b"}
			resp, got := do(t, tr, req)
			if got != strings.ToUpper(payload) {
				t.Fatalf("size %d known %v: body of %d bytes", size, known, len(got))
			}
			wantLen := fmt.Sprint(size)
			if !known {
				wantLen = "-1"
			}
			if g := resp.Header.Get("X-Got-Length"); g != wantLen {
				t.Fatalf("size %d known %v: server saw ContentLength %s, want %s", size, known, g, wantLen)
			}
			if g := resp.Header.Get("X-Got-Connection"); g != "" {
				t.Fatalf("connection-specific headers reached the server: %q", g)
			}
			if resp.Header.Get("X-Got-Te") != "trailers" || resp.Header.Get("X-Got-Custom") != "a|b" {
				t.Fatalf("headers: %v", resp.Header)
			}
		}
	}
}

func TestRequestTrailers(t *testing.T) {
	s := startH2(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%s=%s", "X-Sum", r.Trailer.Get("X-Sum"))
	})
	tr := newTransport(t)
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", s.url("/t"), pr)
	req.Trailer = http.Header{"X-Sum": nil}
	go func() {
		pw.Write([]byte("data"))
		req.Trailer.Set("X-Sum", "42")
		pw.Close()
	}()
	_, body := do(t, tr, req)
	if body != "X-Sum=42" {
		t.Fatalf("server saw %q", body)
	}
}

func TestResponseTrailersDeclaredAndUndeclared(t *testing.T) {
	s := startH2(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Declared")
		w.Write([]byte("body"))
		w.(http.Flusher).Flush()
		w.Header().Set("X-Declared", "d")
		w.Header().Set(http.TrailerPrefix+"X-Undeclared", "u")
	})
	tr := newTransport(t)
	req, _ := http.NewRequest("GET", s.url("/"), nil)
	resp := roundTrip(t, tr, req)
	if v, ok := resp.Trailer["X-Declared"]; !ok || v != nil || len(resp.Trailer) != 1 {
		t.Fatalf("Trailer before the body: %v", resp.Trailer)
	}
	if _, ok := resp.Header["Trailer"]; ok {
		t.Fatalf("Trailer kept in the header: %v", resp.Header)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(b) != "body" {
		t.Fatalf("body %q, %v", b, err)
	}
	if resp.Trailer.Get("X-Declared") != "d" || resp.Trailer.Get("X-Undeclared") != "u" {
		t.Fatalf("Trailer at EOF: %v", resp.Trailer)
	}
}

func TestConcurrentStreamsShareOneConnection(t *testing.T) {
	s := startH2(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	}, func(s *http2.Server) { s.MaxConcurrentStreams = 1000 })
	tr := newTransport(t)
	const n = 300
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			want := strings.Repeat(fmt.Sprint(i%10), i%50+1)
			req, _ := http.NewRequest("POST", s.url("/"), strings.NewReader(want))
			resp, err := tr.RoundTrip(req)
			if err != nil {
				errs <- err
				return
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || string(b) != want {
				errs <- fmt.Errorf("stream %d: %q, %v", i, b, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := s.opened.Load(); got != 1 {
		t.Fatalf("server saw %d connections, want 1", got)
	}
}

func TestResponsesWithoutContent(t *testing.T) {
	s := startH2(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "42")
		switch r.URL.Path {
		case "/304":
			w.WriteHeader(http.StatusNotModified)
		case "/204":
			w.Header().Del("Content-Length")
			w.WriteHeader(http.StatusNoContent)
		default:
			w.WriteHeader(200)
		}
	})
	tr := newTransport(t)
	for _, c := range []struct{ method, path string }{{"HEAD", "/"}, {"GET", "/304"}, {"GET", "/204"}} {
		req, _ := http.NewRequest(c.method, s.url(c.path), nil)
		resp, body := do(t, tr, req)
		if body != "" || resp.Body != http.NoBody {
			t.Fatalf("%s %s: body %q (%T)", c.method, c.path, body, resp.Body)
		}
		if c.path != "/204" && resp.ContentLength != 42 {
			t.Fatalf("%s %s: ContentLength %d", c.method, c.path, resp.ContentLength)
		}
	}
}

func TestHostWithoutPortDialsSchemePort(t *testing.T) {
	var got []string
	tr := newTransport(t, func(tr *Transport) {
		tr.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			got = append(got, addr)
			return nil, errors.New("no")
		}
	})
	for _, u := range []string{"http://example.test/", "https://example.test/x", "http://[::1]/"} {
		req, _ := http.NewRequest("GET", u, nil)
		tr.RoundTrip(req)
	}
	if want := "[example.test:80 example.test:443 [::1]:80]"; fmt.Sprint(got) != want {
		t.Fatalf("dialled %v, want %v", got, want)
	}
}

// TE may go to an HTTP/2 server only as "trailers" (RFC 9113 §8.2.2): a
// request whose TE lists trailers among other codings sends "te:
// trailers" (gRPC servers may require it), and one without the token
// sends none.
func TestTEKeepsOnlyTheTrailersToken(t *testing.T) {
	s := startH2(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Got-Te", strings.Join(r.Header.Values("Te"), "|"))
	})
	tr := newTransport(t)
	for _, tc := range []struct {
		te   []string
		want string
	}{
		{[]string{"trailers"}, "trailers"},
		{[]string{"Trailers"}, "trailers"},
		{[]string{"trailers, deflate"}, "trailers"},
		{[]string{"deflate;q=0.5, trailers"}, "trailers"},
		{[]string{"gzip", " trailers "}, "trailers"},
		{[]string{"deflate", "gzip"}, ""},
		{[]string{"trailersx, xtrailers"}, ""},
	} {
		req, _ := http.NewRequest("GET", s.url("/"), nil)
		req.Header["Te"] = tc.te
		resp, _ := do(t, tr, req)
		if got := resp.Header.Get("X-Got-Te"); got != tc.want {
			t.Errorf("TE %q: the server got %q, want %q", tc.te, got, tc.want)
		}
	}
}
