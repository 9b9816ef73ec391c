package h1server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

func TestHTTP2PriorKnowledge(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Trailer", "X-T")
		fmt.Fprintf(w, "%s %s %s", r.Proto, r.Method, b)
		w.Header().Set("X-T", "t")
	}))
	c, _ := h2Client(t)
	for i := 0; i < 3; i++ {
		resp, err := c.Post(ts.url("/"), "text/plain", strings.NewReader("ping"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "HTTP/2.0 POST ping" || resp.ProtoMajor != 2 || resp.Trailer.Get("X-T") != "t" {
			t.Fatalf("%s %q %v", resp.Proto, b, resp.Trailer)
		}
	}
}

func TestShortHTTP1RequestNotHeldForPreface(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	c := dial(t, ts.addr)
	c.send(t, "GET / HTTP/1.0\r\n\r\n") // 18 bytes, shorter than the preface
	if _, body := c.response(t, "GET"); body != "ok" {
		t.Fatalf("%q", body)
	}
}

// h2cUpgrade sends an "Upgrade: h2c" request and reads the response of
// stream 1 after the 101 (and a 100 Continue before it).
func h2cUpgrade(t *testing.T, addr, req string) (status101 int, status, body string, fr *http2.Framer, c *rawConn) {
	t.Helper()
	c = dial(t, addr)
	c.send(t, req)
	resp, err := http.ReadResponse(c.br, nil)
	if err == nil && resp.StatusCode == http.StatusContinue {
		resp, err = http.ReadResponse(c.br, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, "", string(b), nil, c
	}
	c.send(t, http2.ClientPreface)
	fr = http2.NewFramer(c, c.br)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	dec := hpack.NewDecoder(4096, nil)
	var out bytes.Buffer
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("read frame: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.HeadersFrame:
			if f.StreamID != 1 {
				continue
			}
			fields, err := dec.DecodeFull(f.HeaderBlockFragment())
			if err != nil {
				t.Fatal(err)
			}
			for _, hf := range fields {
				if hf.Name == ":status" {
					status = hf.Value
				}
			}
			if f.StreamEnded() {
				return 101, status, out.String(), fr, c
			}
		case *http2.DataFrame:
			if f.StreamID == 1 {
				out.Write(f.Data())
				if f.StreamEnded() {
					return 101, status, out.String(), fr, c
				}
			}
		}
	}
}

func TestH2CUpgradeServesRequestAsStream1(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %q upgrade=%q settings=%q", r.Proto, r.URL.Path, b, r.Header.Get("Upgrade"), r.Header.Get("Http2-Settings"))
	}))
	// An empty SETTINGS payload is an empty base64url string.
	code, status, body, _, _ := h2cUpgrade(t, ts.addr, "POST /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: \r\nContent-Length: 4\r\n\r\nbody")
	if code != 101 || status != "200" || body != `HTTP/2.0 /up "body" upgrade="" settings=""` {
		t.Fatalf("%d %s %q", code, status, body)
	}
	// A malformed HTTP2-Settings is a bad request, not a switch.
	code, _, _, _, _ = h2cUpgrade(t, ts.addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: !!\r\n\r\n")
	if code != 400 {
		t.Fatalf("bad settings answered %d", code)
	}
}

// An upgrade request's "Expect: 100-continue" is answered by the server,
// which reads the body whole before the switch: the request the handler
// gets on stream 1 no longer has it, as an HTTP/2 request whose 100 the
// server sends has not. Left in, a proxy would send it on, and wait for
// an upstream's 100 (a second one for the client) for a body it holds.
func TestH2CUpgradeRequestLosesTheExpectItsServerAnswered(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%q expect=%q", b, r.Header.Get("Expect"))
	}))
	code, status, body, _, _ := h2cUpgrade(t, ts.addr, "POST /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: \r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nbody")
	if code != 101 || status != "200" || body != `"body" expect=""` {
		t.Fatalf("%d %s %q", code, status, body)
	}
}

// TestH2CUpgradeChunkedBodyWithTrailer: an upgrade request's chunked
// body may end in a trailer the request did not announce; it reaches the
// handler, as any request's does.
func TestH2CUpgradeChunkedBodyWithTrailer(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%q t=%q", b, r.Trailer.Get("X-T"))
	}))
	code, status, body, _, _ := h2cUpgrade(t, ts.addr, "POST /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: \r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n")
	if code != 101 || status != "200" || body != `"abc" t="1"` {
		t.Fatalf("%d %s %q", code, status, body)
	}
	if logs := ts.logs.String(); logs != "" {
		t.Fatalf("logged: %s", logs)
	}
}

// TestH2CUpgradeBodyNotCountedAsHeader: the upgrade request's body,
// read before the switch, is not held to MaxHeaderBytes.
func TestH2CUpgradeBodyNotCountedAsHeader(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprint(w, len(b))
	}), func(s *Server) { s.MaxHeaderBytes = 1 << 10 })
	body := strings.Repeat("b", 16<<10)
	code, status, got, _, _ := h2cUpgrade(t, ts.addr, "POST /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: \r\nContent-Length: 16384\r\n\r\n"+body)
	if code != 101 || status != "200" || got != "16384" {
		t.Fatalf("%d %s %q", code, status, got)
	}
}

// TestH2CUpgradeBodyBoundedByReadHeaderTimeout: the body an upgrade
// request promises is read before any handler runs, so nothing else
// bounds the wait for it.
func TestH2CUpgradeBodyBoundedByReadHeaderTimeout(t *testing.T) {
	// A second, not less: the first request must be read within it of
	// the accept, which a loaded machine could miss.
	const timeout = time.Second
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}),
		func(s *Server) { s.ReadHeaderTimeout = timeout })
	c := dial(t, ts.addr)
	// A second request on the connection, its head arriving whole: no
	// header deadline is needed, nor left from the accept.
	c.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	c.response(t, "GET")
	c.send(t, "POST /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: \r\nContent-Length: 100\r\n\r\nonly this")
	if !c.closed(10 * timeout) {
		t.Fatal("connection held waiting for the upgrade body")
	}
}

func TestWithoutH2UpgradeIsPlainHTTP1(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Proto) }),
		func(s *Server) { s.H2 = nil })
	code, _, body, _, _ := h2cUpgrade(t, ts.addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: \r\n\r\n")
	if code != 200 || body != "HTTP/1.1" {
		t.Fatalf("%d %q", code, body)
	}
	c := dial(t, ts.addr)
	c.send(t, http2.ClientPreface)
	if resp, _ := c.response(t, "GET"); resp.StatusCode != http.StatusHTTPVersionNotSupported {
		t.Fatalf("preface without H2: %d", resp.StatusCode)
	}
}

func TestShutdownSendsGoAwayAndWaitsForH2Streams(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(entered)
			<-release
		}
		io.WriteString(w, "done")
	}))
	// A raw HTTP/2 client, to see the GOAWAY frame itself.
	c := dial(t, ts.addr)
	c.send(t, http2.ClientPreface)
	fr := http2.NewFramer(c, c.br)
	fr.WriteSettings()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, kv := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "x"}, {":path", "/slow"}} {
		enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
	within(t, 5*time.Second, "h2 request", entered)

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- ts.Shutdown(ctx)
	}()
	var goAway *http2.GoAwayFrame
	for goAway == nil {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("read frame: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.GoAwayFrame:
			goAway = f
		}
	}
	if goAway.ErrCode != http2.ErrCodeNo {
		t.Fatalf("GOAWAY %v", goAway.ErrCode)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with an HTTP/2 stream open", err)
	default:
	}
	close(release)
	var body bytes.Buffer
	for ended := false; !ended; {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("read frame: %v", err)
		}
		if d, ok := f.(*http2.DataFrame); ok && d.StreamID == 1 {
			body.Write(d.Data())
			ended = d.StreamEnded()
		}
	}
	if body.String() != "done" {
		t.Fatalf("stream body %q", body.String())
	}
	if err := within(t, 5*time.Second, "Shutdown", shut); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func TestH2GetsTheBytesBufferedAfterThePreface(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.URL.Path) }))
	// The preface, SETTINGS and a request in one write: the HTTP/1.1
	// reader has all of it buffered when it sees the preface.
	var out bytes.Buffer
	out.WriteString(http2.ClientPreface)
	fr := http2.NewFramer(&out, nil)
	fr.WriteSettings()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, kv := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "x"}, {":path", "/buffered"}} {
		enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
	c := dial(t, ts.addr)
	c.send(t, out.String())
	rfr := http2.NewFramer(c, c.br)
	for {
		f, err := rfr.ReadFrame()
		if err != nil {
			t.Fatalf("read frame: %v", err)
		}
		if d, ok := f.(*http2.DataFrame); ok && d.StreamID == 1 {
			if string(d.Data()) != "/buffered" {
				t.Fatalf("%q", d.Data())
			}
			return
		}
	}
}
