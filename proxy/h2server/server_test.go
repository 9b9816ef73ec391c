package h2server

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/net/http2"
)

func TestRequestFieldsAndEcho(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("read body: %v", err)
		}
		w.Header().Set("X-Seen", fmt.Sprintf("%s %d.%d %s %s %s cl=%d tls=%v remote=%v uri=%s cookie=%q",
			r.Proto, r.ProtoMajor, r.ProtoMinor, r.Method, r.Host, r.URL.Path, r.ContentLength,
			r.TLS != nil, r.RemoteAddr != "", r.RequestURI, r.Header.Get("Cookie")))
		w.Write(b)
	}))
	c, _ := h2Client(t)
	for i := 0; i < 3; i++ {
		req, _ := http.NewRequest("POST", ts.url("/p?q=1"), strings.NewReader("hello"))
		req.Header.Add("Cookie", "a=1")
		req.Header.Add("Cookie", "b=2")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := `HTTP/2.0 2.0 POST ` + ts.addr + ` /p cl=5 tls=false remote=true uri=/p?q=1 cookie="a=1; b=2"`
		if resp.ProtoMajor != 2 || string(b) != "hello" || resp.Header.Get("X-Seen") != want {
			t.Fatalf("%s %q %q", resp.Proto, b, resp.Header.Get("X-Seen"))
		}
		if resp.ContentLength != 5 {
			t.Fatalf("content-length %d", resp.ContentLength)
		}
	}
}

func TestGetHasNoBody(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := r.Body.Read(make([]byte, 1))
		fmt.Fprintf(w, "cl=%d nobody=%v n=%d err=%v", r.ContentLength, r.Body == http.NoBody, n, err)
	}))
	c, _ := h2Client(t)
	resp, err := c.Get(ts.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "cl=0 nobody=true n=0 err=EOF" {
		t.Fatalf("%q", b)
	}
}

func TestLargeBodiesBothWays(t *testing.T) {
	// Larger than every window: both sides must send WINDOW_UPDATEs.
	payload := make([]byte, 5<<20+123)
	rand.Read(payload)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("read: %v", err)
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(b)))
		w.Write(b)
	}), func(s *Server) { s.MaxUploadBufferPerStream = 64 << 10; s.MaxUploadBufferPerConnection = 100 << 10 })
	c, _ := h2Client(t)
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Post(ts.url("/"), "", bytes.NewReader(payload))
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil || !bytes.Equal(b, payload) || resp.ContentLength != int64(len(payload)) {
				t.Errorf("err=%v len=%d cl=%d", err, len(b), resp.ContentLength)
			}
		}()
	}
	wg.Wait()
}

func TestStreamingFlush(t *testing.T) {
	next := make(chan struct{})
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < 3; i++ {
			fmt.Fprintf(w, "chunk%d;", i)
			if err := http.NewResponseController(w).Flush(); err != nil {
				t.Errorf("flush: %v", err)
			}
			select {
			case <-next:
			case <-r.Context().Done():
				return
			}
		}
	}))
	c, _ := h2Client(t)
	resp, err := c.Get(ts.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 64)
	for i := 0; i < 3; i++ {
		n, err := resp.Body.Read(buf)
		if err != nil || string(buf[:n]) != fmt.Sprintf("chunk%d;", i) {
			t.Fatalf("%d: %q %v", i, buf[:n], err)
		}
		next <- struct{}{}
	}
	if _, err := io.ReadAll(resp.Body); err != nil {
		t.Fatal(err)
	}
}

func TestResponseTrailersDeclaredAndPrefixed(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Declared")
		w.WriteHeader(200)
		io.WriteString(w, "body")
		w.Header().Set("X-Declared", "d")
		w.Header().Set(http.TrailerPrefix+"X-Late", "l")
		// Never in a trailer: dropped.
		w.Header().Set(http.TrailerPrefix+"Content-Type", "text/evil")
		w.Header().Set(http.TrailerPrefix+"Authorization", "x")
	}))
	c, _ := h2Client(t)
	resp, err := c.Get(ts.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "body" || resp.Trailer.Get("X-Declared") != "d" || resp.Trailer.Get("X-Late") != "l" {
		t.Fatalf("%q %v", b, resp.Trailer)
	}
	if _, ok := resp.Trailer["Content-Type"]; ok || resp.Trailer.Get("Authorization") != "" {
		t.Fatalf("forbidden trailers sent: %v", resp.Trailer)
	}
}

func TestRequestTrailersBeforeEOF(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		before := r.Trailer.Get("X-T")
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s before=%q after=%q", b, before, r.Trailer.Get("X-T"))
	}))
	c, _ := h2Client(t)
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", ts.url("/"), pr)
	req.Trailer = http.Header{"X-T": nil}
	go func() {
		pw.Write([]byte("data"))
		req.Trailer.Set("X-T", "tv")
		pw.Close()
	}()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != `data before="" after="tv"` {
		t.Fatalf("%q", b)
	}
}

func TestInformationalResponses(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</a>")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		w.Header().Set("X-Final", "1")
		io.WriteString(w, "ok")
	}))
	c, _ := h2Client(t)
	var got []string
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			got = append(got, fmt.Sprint(code, h.Get("Link")))
			return nil
		},
	})
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.url("/"), nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "ok" || len(got) != 1 || got[0] != "103</a>" || resp.Header.Get("Link") != "" || resp.Header.Get("X-Final") != "1" {
		t.Fatalf("%q %v %v", b, got, resp.Header)
	}
}

func TestExpectContinue(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s expect=%q", b, r.Header.Get("Expect"))
	}))
	rc := dialRaw(t, ts.addr)
	rc.post(1, "/", "expect", "100-continue")
	got100 := rc.until("100", func(e event) bool { return e.typ == 1 && e.get(":status") == "100" })
	if got100.end {
		t.Fatal("100 ended the stream")
	}
	rc.fr.WriteData(1, true, []byte("body"))
	status, body, _, rst := rc.response(1)
	if status != "200" || body != `body expect=""` || rst != nil {
		t.Fatalf("%s %q %v", status, body, rst)
	}
}

func TestContentLengthHonoured(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/over":
			w.Header().Set("Content-Length", "4")
			_, err := io.WriteString(w, "fiver")
			fmt.Fprint(w, err == http.ErrContentLength)
		case "/short":
			w.Header().Set("Content-Length", "10")
			io.WriteString(w, "abc")
		case "/empty":
		case "/head":
			w.Header().Set("Content-Length", "42")
		}
	}))
	c, _ := h2Client(t)
	resp, err := c.Get(ts.url("/over"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "true" || resp.ContentLength != 4 {
		t.Fatalf("over: %q %d", b, resp.ContentLength)
	}
	resp, err = c.Get(ts.url("/short"))
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Fatal("a short body was taken as whole")
	}
	resp, err = c.Get(ts.url("/empty"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ContentLength != 0 {
		t.Fatalf("empty: %d", resp.ContentLength)
	}
	resp, err = c.Head(ts.url("/head"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ContentLength != 42 {
		t.Fatalf("head: %d", resp.ContentLength)
	}
}

func TestNoBodyEndsStreamOnHeaders(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Grpc-Status", "14")
		w.WriteHeader(204)
	}))
	rc := dialRaw(t, ts.addr)
	rc.get(1, "/")
	e := rc.until("HEADERS", func(e event) bool { return e.typ == 1 && e.id == 1 })
	if !e.end || e.get(":status") != "204" || e.get("grpc-status") != "14" {
		t.Fatalf("%+v", e)
	}
}

func TestContextCancelledOnReset(t *testing.T) {
	started := make(chan struct{})
	ended := make(chan error, 1)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done()
		_, err := r.Body.Read(make([]byte, 1))
		ended <- err
	}))
	rc := dialRaw(t, ts.addr)
	rc.post(1, "/")
	<-started
	rc.fr.WriteRSTStream(1, 8) // CANCEL
	select {
	case err := <-ended:
		if err == nil {
			t.Fatal("body read succeeded after reset")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("context not cancelled")
	}
}

func TestContextCancelledWhenConnectionDies(t *testing.T) {
	started := make(chan struct{})
	ended := make(chan struct{})
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done()
		close(ended)
	}))
	rc := dialRaw(t, ts.addr)
	rc.get(1, "/")
	<-started
	rc.nc.Close()
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("context not cancelled")
	}
}

// TestBodyCutByClientCloseFails: a client that closes its connection
// (a FIN at a frame boundary) before ending its request body leaves the
// handler a failed read, not the io.EOF of a complete body that a proxy
// would forward as whole.
func TestBodyCutByClientCloseFails(t *testing.T) {
	type result struct {
		body string
		err  error
	}
	got := make(chan result, 1)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		got <- result{string(b), err}
	}))
	rc := dialRaw(t, ts.addr)
	rc.post(1, "/")
	rc.fr.WriteData(1, false, []byte("part"))
	rc.nc.(*net.TCPConn).CloseWrite()
	select {
	case res := <-got:
		if res.err == nil || res.body != "part" {
			t.Fatalf("read %q, %v", res.body, res.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("handler's read did not end")
	}
}

func TestHandlerPanics(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/abort" {
			panic(http.ErrAbortHandler)
		}
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		panic("boom")
	}))
	rc := dialRaw(t, ts.addr)
	rc.get(1, "/abort")
	if e := rc.rst(1); e.code != 2 {
		t.Fatalf("abort: %v", e.code)
	}
	rc.get(3, "/boom")
	if _, _, _, rst := rc.response(3); rst == nil || *rst != 2 {
		t.Fatalf("boom: %v", rst)
	}
	waitFor(t, "panic logged", func() bool { return strings.Contains(ts.logs.String(), "boom") })
	if strings.Contains(ts.logs.String(), "abort") {
		t.Fatal("ErrAbortHandler logged")
	}
	// The connection still serves.
	rc.get(5, "/abort")
	rc.rst(5)
}

func TestUnreadBodyResetNoError(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "early")
	}))
	rc := dialRaw(t, ts.addr)
	rc.post(1, "/")
	rc.fr.WriteData(1, false, []byte("part"))
	status, body, _, _ := rc.response(1)
	if status != "200" || body != "early" {
		t.Fatalf("%s %q", status, body)
	}
	if e := rc.rst(1); e.code != 0 {
		t.Fatalf("%v", e.code)
	}
	// More of the body, sent before the client saw the reset: ignored.
	rc.fr.WriteData(1, true, []byte("rest"))
	rc.get(3, "/")
	if status, _, _, _ := rc.response(3); status != "200" {
		t.Fatal(status)
	}
}

// Hijack is not supported; EnableFullDuplex needs nothing (HTTP/2 is
// full duplex). (Deadlines: deadline_test.go.)
func TestResponseControllerHijackUnsupported(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		_, _, herr := rc.Hijack()
		fmt.Fprint(w, errors.Is(herr, http.ErrNotSupported), rc.EnableFullDuplex())
	}))
	c, _ := h2Client(t)
	resp, err := c.Get(ts.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "true <nil>" {
		t.Fatalf("%q", b)
	}
}

func TestManyConcurrentStreams(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(w, r.Body)
	}))
	c, _ := h2Client(t)
	var wg sync.WaitGroup
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := fmt.Sprintf("msg-%d", i)
			resp, err := c.Post(ts.url("/"), "", strings.NewReader(msg))
			if err != nil {
				t.Error(err)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != msg {
				t.Errorf("%q != %q", b, msg)
			}
		}()
	}
	wg.Wait()
}

func TestContextCancelledWhenHandlerReturns(t *testing.T) {
	ctxs := make(chan context.Context, 1)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ctxs <- r.Context() }))
	c, _ := h2Client(t)
	resp, err := c.Get(ts.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ctx := <-ctxs
	waitFor(t, "the context's end", func() bool { return ctx.Err() != nil })
}

func TestHostFromHostHeaderWithoutAuthority(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %q %s", r.Host, r.Header.Get("Host"), r.RequestURI)
	}))
	rc := dialRaw(t, ts.addr)
	rc.writeHeaders(1, true, ":method", "GET", ":scheme", "http", ":path", "/a?b", "host", "h.example")
	if status, body, _, _ := rc.response(1); status != "200" || body != `h.example "" /a?b` {
		t.Fatalf("%s %q", status, body)
	}
	// A Host that disagrees with :authority is malformed.
	rc.writeHeaders(3, true, ":method", "GET", ":scheme", "http", ":authority", "a", ":path", "/", "host", "b")
	if e := rc.rst(3); e.code != 1 {
		t.Fatalf("%v", e.code)
	}
	// One that differs only in case names the same host.
	rc.writeHeaders(5, true, ":method", "GET", ":scheme", "http", ":authority", "H.example:80", ":path", "/c", "host", "h.EXAMPLE:80")
	if status, body, _, _ := rc.response(5); status != "200" || body != `H.example:80 "" /c` {
		t.Fatalf("%s %q", status, body)
	}
}

// A HEAD response whose handler wrote a short body announces its length,
// as the GET response would and as x/net/http2 does.
func TestHeadResponseAnnouncesContentLength(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") }))
	rc := dialRaw(t, ts.addr)
	rc.writeHeaders(1, true, ":method", "HEAD", ":scheme", "http", ":authority", "x", ":path", "/")
	e := rc.until("HEADERS", func(e event) bool { return e.typ == http2.FrameHeaders && e.id == 1 })
	if e.get("content-length") != "5" || !e.end {
		t.Fatalf("%+v", e)
	}
}

// A handler that reads its body steadily but never quite catches up (an
// upload relayed to a slower upstream) holds what is unread, not the
// whole body received so far.
func TestLaggingReaderBufferStaysBounded(t *testing.T) {
	const chunk, rounds = 16 << 10, 256 // 4 MiB through a reader always 16 KiB behind
	sent := make(chan struct{})
	maxLen := make(chan int, 1)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := r.Body.(*requestBody).st
		p := make([]byte, chunk)
		most := 0
		for i := 0; i < rounds; i++ {
			<-sent
			// Both chunks are in: the read leaves one behind.
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Microsecond) {
				st.sc.mu.Lock()
				unread := len(st.rbuf) - st.roff
				st.sc.mu.Unlock()
				if unread >= 2*chunk || time.Now().After(deadline) {
					break
				}
			}
			if _, err := io.ReadFull(r.Body, p); err != nil {
				t.Error(err)
				break
			}
			st.sc.mu.Lock()
			most = max(most, cap(st.rbuf))
			st.sc.mu.Unlock()
		}
		maxLen <- most
	}))
	rc := dialRaw(t, ts.addr)
	rc.post(1, "/")
	p := make([]byte, chunk)
	rc.fr.WriteData(1, false, p)
	for i := 0; i < rounds; i++ {
		rc.fr.WriteData(1, false, p)
		sent <- struct{}{}
	}
	if n := <-maxLen; n > 1<<20 {
		t.Fatalf("request body buffer grew to %d bytes while at most 32 KiB was unread", n)
	}
}

// TestStreamFitsItsSizeClass: a stream holds its request, URL, writer
// and a few header values in one 1024-byte allocation (the runtime adds
// an 8-byte header to objects with pointers over 512 bytes); a field
// added beyond it would cost the next size class (1152 bytes) per stream.
func TestStreamFitsItsSizeClass(t *testing.T) {
	if n := unsafe.Sizeof(stream{}) + 8; n > 1024 {
		t.Fatalf("stream takes %d bytes", n)
	}
}

// TestConcurrentStreamsKeepTheirOwnHeaders: requests of several sizes
// (header values held in the stream or beyond it, paths with and
// without queries or escapes) and their responses' header blocks (from
// a shared pool of buffers) do not mix across concurrent streams.
func TestConcurrentStreamsKeepTheirOwnHeaders(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var got []string
		for k, vv := range r.Header {
			if strings.HasPrefix(k, "X-F") {
				got = append(got, k+"="+strings.Join(vv, ","))
			}
		}
		sort.Strings(got)
		w.Header().Set("X-Got", strings.Join(got, ";"))
		w.Header().Set("X-Url", r.URL.Path+"|"+r.URL.RawPath+"|"+r.URL.RawQuery+"|"+r.RequestURI)
		w.Write([]byte(r.URL.Query().Get("n")))
	}))
	c, _ := h2Client(t)
	var wg sync.WaitGroup
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path, raw := fmt.Sprintf("/p/%d", i), ""
			if i%3 == 0 {
				path, raw = fmt.Sprintf("/p%%2F%d", i), fmt.Sprintf("/p%%2F%d", i)
			}
			req, _ := http.NewRequest("GET", ts.url(path+fmt.Sprintf("?n=%d", i)), nil)
			var want []string
			for k := 0; k < i%8; k++ {
				name := fmt.Sprintf("X-F%d", k)
				req.Header.Add(name, fmt.Sprintf("%d-%d", i, k))
				v := fmt.Sprintf("%d-%d", i, k)
				if k%2 == 1 {
					req.Header.Add(name, "again")
					v += ",again"
				}
				want = append(want, name+"="+v)
			}
			sort.Strings(want)
			resp, err := c.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			wantPath := fmt.Sprintf("/p/%d", i)
			wantURL := fmt.Sprintf("%s|%s|n=%d|%s?n=%d", wantPath, raw, i, path, i)
			if g := resp.Header.Get("X-Got"); g != strings.Join(want, ";") {
				t.Errorf("request %d: fields %q, want %q", i, g, strings.Join(want, ";"))
			}
			if g := resp.Header.Get("X-Url"); g != wantURL {
				t.Errorf("request %d: URL %q, want %q", i, g, wantURL)
			}
			if string(b) != fmt.Sprint(i) || resp.ContentLength != int64(len(b)) {
				t.Errorf("request %d: body %q, content-length %d", i, b, resp.ContentLength)
			}
		}()
	}
	wg.Wait()
}

// TestRequestKeptAfterHandlerReturns: a request a handler keeps (its
// method, URL, header values) stays as it was while the connection
// serves other streams.
func TestRequestKeptAfterHandlerReturns(t *testing.T) {
	kept := make(chan *http.Request, 1)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/keep" {
			kept <- r
		}
	}))
	c, _ := h2Client(t)
	get := func(path, v string) {
		req, _ := http.NewRequest("PUT", ts.url(path), strings.NewReader("x"))
		req.Header.Set("X-A", v)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	get("/keep?a=1", "kept")
	r := <-kept
	for i := 0; i < 20; i++ {
		get(fmt.Sprintf("/other%d?b=%d", i, i), fmt.Sprint(i))
	}
	if r.Method != "PUT" || r.URL.String() != "/keep?a=1" || r.Header.Get("X-A") != "kept" || r.RequestURI != "/keep?a=1" {
		t.Fatalf("kept request changed: %s %s %q %s", r.Method, r.URL, r.Header.Get("X-A"), r.RequestURI)
	}
}

// A 204 or a 1xx carries no content-length (RFC 9110 §8.6: a server
// must not send one), whatever the handler's header says: a proxy
// forwards an HTTP/1.1 upstream's "204 No Content" with its
// "Content-Length: 5" (or an upstream's 1xx header) as it came, and an
// HTTP/2 client that checks, as nghttp2 (curl) does, takes a non-zero
// one for a malformed response and fails the request. A 304's describes
// the representation, and stays.
func TestNoContentLengthOn204Or1xx(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "5")
		w.Header().Set("Link", "</a>")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		switch r.URL.Path {
		case "/204":
			w.WriteHeader(http.StatusNoContent)
		case "/304":
			w.WriteHeader(http.StatusNotModified)
		}
	}))
	rc := dialRaw(t, ts.addr)
	for i, c := range []struct {
		path, status, length string
	}{
		{"/204", "204", ""},
		{"/304", "304", "5"},
	} {
		id := uint32(2*i + 1)
		rc.get(id, c.path)
		e := rc.until("103", func(e event) bool { return e.typ == http2.FrameHeaders && e.id == id })
		if e.get(":status") != "103" || e.get("link") != "</a>" || e.get("content-length") != "" {
			t.Errorf("%s: interim response %v, want 103 with link and no content-length", c.path, e.fields)
		}
		e = rc.until("final", func(e event) bool { return e.typ == http2.FrameHeaders && e.id == id })
		if e.get(":status") != c.status || e.get("content-length") != c.length || !e.end {
			t.Errorf("%s: final response %v (end %v), want %s with content-length %q", c.path, e.fields, e.end, c.status, c.length)
		}
	}
}

// A content-length the handler's header holds twice over (an HTTP/1.1
// upstream may repeat the field, RFC 9110 §8.6 lets a recipient take
// repeats of one value as one) goes out once: an HTTP/2 client that
// checks (nghttp2, so curl) takes a second content-length field for a
// malformed response, even of the same value.
func TestContentLengthSentOnce(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Length"] = []string{"5", "5"}
		io.WriteString(w, "hello")
	}))
	rc := dialRaw(t, ts.addr)
	rc.get(1, "/")
	e := rc.until("HEADERS", func(e event) bool { return e.typ == http2.FrameHeaders && e.id == 1 })
	n := 0
	for _, f := range e.fields {
		if f.Name == "content-length" {
			n++
		}
	}
	if n != 1 || e.get("content-length") != "5" {
		t.Fatalf("response fields %v, want one content-length: 5", e.fields)
	}
}

// A final response without Date gets one (RFC 9110 §6.6.1, as the
// HTTP/1.1 server adds it); one with its own keeps it, alone; a 1xx
// gets none.
func TestDateAddedWhenAbsent(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusEarlyHints)
		if r.URL.Path == "/own" {
			w.Header().Set("Date", "Tue, 01 Dec 2026 00:00:00 GMT")
		}
	}))
	rc := dialRaw(t, ts.addr)
	for i, path := range []string{"/", "/own"} {
		id := uint32(2*i + 1)
		before := time.Now().Add(-time.Second)
		rc.get(id, path)
		e := rc.until("103", func(e event) bool { return e.typ == http2.FrameHeaders && e.id == id })
		if e.get("date") != "" {
			t.Errorf("%s: 103 with date %q", path, e.get("date"))
		}
		e = rc.until("final", func(e event) bool { return e.typ == http2.FrameHeaders && e.id == id })
		var dates []string
		for _, f := range e.fields {
			if f.Name == "date" {
				dates = append(dates, f.Value)
			}
		}
		if len(dates) != 1 {
			t.Fatalf("%s: date fields %q, want one", path, dates)
		}
		if path == "/own" {
			if dates[0] != "Tue, 01 Dec 2026 00:00:00 GMT" {
				t.Errorf("%s: date %q, want the handler's", path, dates[0])
			}
			continue
		}
		d, err := http.ParseTime(dates[0])
		if err != nil || d.Before(before.Truncate(time.Second)) || d.After(time.Now().Add(time.Second)) {
			t.Errorf("%s: date %q (%v), want the time of the response", path, dates[0], err)
		}
	}
}
