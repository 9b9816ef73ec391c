package h1server

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// bigHead is a GET whose head is about 8 KiB: over a 1 KiB limit with
// its 4 KiB of read-ahead, well under the 1 MiB default.
func bigHead(path string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("b", 8<<10) + "\r\n\r\n"
}

func pathHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.URL.Path) })
}

// get sends a request on c and fails unless it is answered status.
func (c *rawConn) get(t *testing.T, req string, status int) {
	t.Helper()
	c.send(t, req)
	if resp, body := c.response(t, "GET"); resp.StatusCode != status {
		t.Fatalf("status %d (%q), want %d", resp.StatusCode, body, status)
	}
}

// After SetLimits, a new HTTP/1.1 connection gets the new header limit,
// idle timeout and read-header timeout, while one accepted before keeps
// those it was accepted with.
func TestSetLimitsHTTP1AppliesToNewConnections(t *testing.T) {
	ts := start(t, pathHandler()) // 1 MiB heads, no timeouts
	old := dial(t, ts.addr)
	old.get(t, "GET /old HTTP/1.1\r\nHost: x\r\n\r\n", http.StatusOK)

	// Timeouts of a second, not less: a new connection's first request
	// must be read within the read-header timeout of its accept, and
	// the server's answer written within the idle timeout, which a
	// loaded machine could miss.
	ts.SetLimits(Limits{MaxHeaderBytes: 1 << 10, ReadHeaderTimeout: time.Second, IdleTimeout: time.Second})
	if ts.MaxHeaderBytes != 0 || ts.ReadHeaderTimeout != 0 || ts.IdleTimeout != 0 {
		t.Fatalf("SetLimits changed the fields: %d %v %v", ts.MaxHeaderBytes, ts.ReadHeaderTimeout, ts.IdleTimeout)
	}

	// The old connection still takes a head over the new limit.
	old.get(t, bigHead("/old-big"), http.StatusOK)

	// A new one refuses it.
	refused := dial(t, ts.addr)
	refused.get(t, bigHead("/new-big"), http.StatusRequestHeaderFieldsTooLarge)

	// A new one is closed after the new idle timeout.
	idle := dial(t, ts.addr)
	idle.get(t, "GET /new HTTP/1.1\r\nHost: x\r\n\r\n", http.StatusOK)
	if !idle.closed(5 * time.Second) {
		t.Fatal("new connection not closed after the new idle timeout")
	}
	// The old one has been idle since before the new one's request, and
	// had no idle timeout.
	old.get(t, "GET /old-again HTTP/1.1\r\nHost: x\r\n\r\n", http.StatusOK)

	// A new one that sends half a head is closed after the new
	// read-header timeout.
	slow := dial(t, ts.addr)
	slow.send(t, "GET /slow HTTP/1.1\r\n")
	if !slow.closed(5 * time.Second) {
		t.Fatal("new connection not closed after the new read-header timeout")
	}
}

// SetLimits called before Serve applies to the first connections.
func TestSetLimitsBeforeServe(t *testing.T) {
	ts := start(t, pathHandler(), func(s *Server) {
		s.MaxHeaderBytes = 1 << 20
		s.SetLimits(Limits{MaxHeaderBytes: 1 << 10})
	})
	c := dial(t, ts.addr)
	c.get(t, bigHead("/big"), http.StatusRequestHeaderFieldsTooLarge)
}

// h2Conn is a hand-driven HTTP/2 prior-knowledge client connection.
type h2Conn struct {
	t   *testing.T
	nc  net.Conn
	fr  *http2.Framer
	enc *hpack.Encoder
	eb  bytes.Buffer
	dec *hpack.Decoder
	// maxHeaderList is the server's SETTINGS_MAX_HEADER_LIST_SIZE.
	maxHeaderList uint32
}

func dialH2(t *testing.T, addr string) *h2Conn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	c := &h2Conn{t: t, nc: nc, fr: http2.NewFramer(nc, nc), dec: hpack.NewDecoder(4096, nil)}
	c.enc = hpack.NewEncoder(&c.eb)
	if _, err := io.WriteString(nc, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := c.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	for {
		f := c.read("server SETTINGS")
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			v, ok := sf.Value(http2.SettingMaxHeaderListSize)
			if !ok {
				t.Fatal("SETTINGS without MAX_HEADER_LIST_SIZE")
			}
			c.maxHeaderList = v
			if err := c.fr.WriteSettingsAck(); err != nil {
				t.Fatal(err)
			}
			return c
		}
	}
}

func (c *h2Conn) read(what string) http2.Frame {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	f, err := c.fr.ReadFrame()
	if err != nil {
		c.t.Fatalf("waiting for %s: %v", what, err)
	}
	return f
}

// get sends a GET on stream id with extra header fields and returns the
// response's status; the frames of other streams are skipped.
func (c *h2Conn) get(id uint32, path string, extra ...string) string {
	c.t.Helper()
	c.eb.Reset()
	kv := append([]string{":method", "GET", ":scheme", "http", ":authority", "x", ":path", path}, extra...)
	for i := 0; i < len(kv); i += 2 {
		_ = c.enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.eb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		c.t.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		f := c.read(fmt.Sprintf("response of stream %d", id))
		switch f := f.(type) {
		case *http2.HeadersFrame:
			// Decoded whatever the stream, to keep the table in step.
			fields, err := c.dec.DecodeFull(f.HeaderBlockFragment())
			if err != nil {
				c.t.Fatal(err)
			}
			if f.StreamID != id {
				continue
			}
			for _, hf := range fields {
				if hf.Name == ":status" {
					return hf.Value
				}
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				c.t.Fatalf("stream %d reset: %v", id, f.ErrCode)
			}
		case *http2.GoAwayFrame:
			c.t.Fatalf("GOAWAY %v waiting for stream %d", f.ErrCode, id)
		}
	}
	c.t.Fatalf("no response on stream %d", id)
	return ""
}

// goAwayAndClose waits for a GOAWAY NO_ERROR and the connection's end.
func (c *h2Conn) goAwayAndClose() {
	c.t.Helper()
	sawGoAway := false
	for i := 0; i < 1000; i++ {
		_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		f, err := c.fr.ReadFrame()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				c.t.Fatal("connection not closed")
			}
			if !sawGoAway {
				c.t.Fatalf("connection closed without GOAWAY: %v", err)
			}
			return
		}
		if g, ok := f.(*http2.GoAwayFrame); ok {
			if g.ErrCode != http2.ErrCodeNo {
				c.t.Fatalf("GOAWAY %v", g.ErrCode)
			}
			sawGoAway = true
		}
	}
	c.t.Fatal("connection not closed")
}

// bigFields are about 1.5 KB of header list.
func bigFields() []string {
	var kv []string
	for i := 0; i < 12; i++ {
		kv = append(kv, fmt.Sprintf("x-big-%d", i), strings.Repeat("a", 100))
	}
	return kv
}

// After SetLimits, a new HTTP/2 prior-knowledge connection announces and
// enforces the new header list limit and is closed after the new idle
// timeout, while one accepted before keeps the old limits.
func TestSetLimitsHTTP2AppliesToNewConnections(t *testing.T) {
	ts := start(t, pathHandler()) // 1 MiB header lists, no idle timeout
	old := dialH2(t, ts.addr)
	if old.maxHeaderList != http.DefaultMaxHeaderBytes {
		t.Fatalf("old connection: SETTINGS_MAX_HEADER_LIST_SIZE %d, want %d", old.maxHeaderList, http.DefaultMaxHeaderBytes)
	}

	// An idle timeout of a second, not less: it runs from the new
	// connection's start, and its request must arrive within it, which a
	// loaded machine could miss.
	ts.SetLimits(Limits{MaxHeaderBytes: 1000, IdleTimeout: time.Second})

	if status := old.get(1, "/old-big", bigFields()...); status != "200" {
		t.Fatalf("old connection, big header list: %s", status)
	}
	c := dialH2(t, ts.addr)
	if c.maxHeaderList != 1000 {
		t.Fatalf("new connection: SETTINGS_MAX_HEADER_LIST_SIZE %d, want 1000", c.maxHeaderList)
	}
	if status := c.get(1, "/new-big", bigFields()...); status != "431" {
		t.Fatalf("new connection, big header list: %s, want 431", status)
	}
	c.goAwayAndClose()
	// Idle since before the new connection's request, and still served.
	if status := old.get(3, "/old-again"); status != "200" {
		t.Fatalf("old connection after the new one's idle close: %s", status)
	}
}

// An h2c upgrade accepted after SetLimits is closed after the new idle
// timeout once its stream 1 is done.
func TestSetLimitsH2CUpgrade(t *testing.T) {
	ts := start(t, pathHandler())
	// An idle timeout of a second, not less: it bounds the write of the
	// 101, which a loaded machine could start past a shorter one.
	ts.SetLimits(Limits{IdleTimeout: time.Second})
	code, status, body, _, c := h2cUpgrade(t, ts.addr, "GET /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: \r\n\r\n")
	if code != 101 || status != "200" || body != "/up" {
		t.Fatalf("%d %s %q", code, status, body)
	}
	if !c.closed(5 * time.Second) {
		t.Fatal("upgraded connection not closed after the new idle timeout")
	}
}

// SetLimits may be called while Serve accepts HTTP/1.1 and HTTP/2
// connections (run with -race): every request is served (both limits
// allow it), and connections accepted after the last call get its
// limits.
func TestSetLimitsConcurrentWithAccept(t *testing.T) {
	ts := start(t, pathHandler())
	a := Limits{MaxHeaderBytes: 64 << 10, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second}
	b := Limits{MaxHeaderBytes: 128 << 10, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 10 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	setterDone := make(chan struct{})
	go func() {
		defer close(setterDone)
		for i := 0; i < 100000 && ctx.Err() == nil; i++ {
			if i%2 == 0 {
				ts.SetLimits(a)
			} else {
				ts.SetLimits(b)
			}
			if i%64 == 0 {
				time.Sleep(100 * time.Microsecond) // let the accepts in
			}
		}
	}()

	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				if err := oneRequestConn(ts.addr, i%2 == 0); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	cancel()
	<-setterDone
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	ts.SetLimits(Limits{MaxHeaderBytes: 1000})
	if c := dialH2(t, ts.addr); c.maxHeaderList != 1000 {
		t.Fatalf("after the last SetLimits: SETTINGS_MAX_HEADER_LIST_SIZE %d, want 1000", c.maxHeaderList)
	}
	c := dial(t, ts.addr)
	c.get(t, bigHead("/big"), http.StatusRequestHeaderFieldsTooLarge)
}

// oneRequestConn makes one request on a new connection, HTTP/2 with
// prior knowledge or HTTP/1.1, and checks its answer.
func oneRequestConn(addr string, h2 bool) error {
	var rt http.RoundTripper
	if h2 {
		tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, n, a string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, n, a)
		}}
		defer tr.CloseIdleConnections()
		rt = tr
	} else {
		tr := &http.Transport{DisableKeepAlives: true}
		defer tr.CloseIdleConnections()
		rt = tr
	}
	c := &http.Client{Transport: rt, Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + "/concurrent")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || string(body) != "/concurrent" {
		return fmt.Errorf("h2=%v: %d %q", h2, resp.StatusCode, body)
	}
	return nil
}

// trailerPost is a chunked POST whose trailer block is about n bytes.
func trailerPost(n int) string {
	return "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"5\r\nhello\r\n0\r\nX-Big: " + strings.Repeat("t", n) + "\r\n\r\n"
}

// The trailer block of a chunked body is held to the header limit of its
// connection: SetLimits's for one accepted after it, the old one for one
// accepted before.
func TestSetLimitsTrailerLimit(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, err.Error())
		}
	}))
	old := dial(t, ts.addr)
	old.get(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", http.StatusOK) // accepted now
	ts.SetLimits(Limits{MaxHeaderBytes: 1 << 10})
	old.get(t, trailerPost(8<<10), http.StatusOK)
	c := dial(t, ts.addr)
	c.get(t, trailerPost(8<<10), http.StatusBadRequest)
	c = dial(t, ts.addr)
	c.get(t, trailerPost(100), http.StatusOK)
}

// On a kept-alive connection, the read-header timeout SetLimits gave it
// bounds a later request's head, not the (longer) idle timeout.
func TestSetLimitsReadHeaderTimeoutOnKeptAliveConnection(t *testing.T) {
	ts := start(t, pathHandler())
	// A read-header timeout of a second, not less: the first request
	// must be read within it of the accept, which a loaded machine could
	// miss.
	ts.SetLimits(Limits{ReadHeaderTimeout: time.Second, IdleTimeout: time.Minute})
	c := dial(t, ts.addr)
	c.get(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", http.StatusOK)
	c.send(t, "GET /second HTTP/1.1\r\n")
	if !c.closed(5 * time.Second) {
		t.Fatal("half a head kept a kept-alive connection past the read-header timeout")
	}
}

// upgradeH2CLimit upgrades c with "Upgrade: h2c" and returns the server's
// SETTINGS_MAX_HEADER_LIST_SIZE and the framer (stream 1's frames are
// left unread).
func upgradeH2CLimit(t *testing.T, c *rawConn) (uint32, *http2.Framer) {
	t.Helper()
	c.send(t, "GET /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: \r\n\r\n")
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade answered %d", resp.StatusCode)
	}
	c.send(t, http2.ClientPreface)
	fr := http2.NewFramer(c, c.br)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			v, ok := sf.Value(http2.SettingMaxHeaderListSize)
			if !ok {
				t.Fatal("SETTINGS without MAX_HEADER_LIST_SIZE")
			}
			if err := fr.WriteSettingsAck(); err != nil {
				t.Fatal(err)
			}
			return v, fr
		}
	}
	t.Fatal("no SETTINGS")
	return 0, nil
}

// An h2c upgrade takes the limits its connection was accepted with, not
// those in force at the upgrade: one accepted before SetLimits keeps the
// old header list limit, one accepted after announces and enforces the
// new one on its later streams.
func TestSetLimitsH2CUpgradeHeaderLimit(t *testing.T) {
	ts := start(t, pathHandler())
	old := dial(t, ts.addr)
	old.get(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", http.StatusOK) // accepted now
	ts.SetLimits(Limits{MaxHeaderBytes: 1000})
	if v, _ := upgradeH2CLimit(t, old); v != http.DefaultMaxHeaderBytes {
		t.Fatalf("connection accepted before SetLimits: SETTINGS_MAX_HEADER_LIST_SIZE %d, want %d", v, http.DefaultMaxHeaderBytes)
	}
	c := dial(t, ts.addr)
	v, fr := upgradeH2CLimit(t, c)
	if v != 1000 {
		t.Fatalf("connection accepted after SetLimits: SETTINGS_MAX_HEADER_LIST_SIZE %d, want 1000", v)
	}
	var eb bytes.Buffer
	enc := hpack.NewEncoder(&eb)
	kv := append([]string{":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/big"}, bigFields()...)
	for i := 0; i < len(kv); i += 2 {
		_ = enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: eb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	dec := hpack.NewDecoder(4096, nil)
	for i := 0; i < 100; i++ {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		h, ok := f.(*http2.HeadersFrame)
		if !ok {
			continue
		}
		fields, err := dec.DecodeFull(h.HeaderBlockFragment())
		if err != nil {
			t.Fatal(err)
		}
		if h.StreamID != 3 {
			continue
		}
		for _, hf := range fields {
			if hf.Name == ":status" && hf.Value != "431" {
				t.Fatalf("stream 3 with a big header list: %s, want 431", hf.Value)
			}
		}
		return
	}
	t.Fatal("no response on stream 3")
}

// Without a read-header timeout, the idle timeout bounds only the wait
// for a kept-alive connection's next request: once its first byte is
// in, the rest of the head may take longer than what was left of the
// idle wait (as with net/http).
func TestIdleTimeoutEndsAtNextRequestsFirstByte(t *testing.T) {
	const idle = 500 * time.Millisecond
	ts := start(t, pathHandler())
	ts.SetLimits(Limits{IdleTimeout: idle})
	c := dial(t, ts.addr)
	c.get(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", http.StatusOK)
	time.Sleep(idle / 5) // the client's own pace, not a wait for the server
	c.send(t, "GET /second HTTP/1.1\r\n")
	time.Sleep(idle * 7 / 5) // past the idle wait's end, had it gone on
	c.send(t, "Host: x\r\n\r\n")
	if resp, body := c.response(t, "GET"); resp.StatusCode != http.StatusOK || body != "/second" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
}

// A header limit too large to add the read-ahead to is no limit to
// speak of, not a limit every head exceeds.
func TestSetLimitsHugeHeaderLimit(t *testing.T) {
	ts := start(t, pathHandler())
	ts.SetLimits(Limits{MaxHeaderBytes: math.MaxInt})
	c := dial(t, ts.addr)
	c.get(t, "GET /huge HTTP/1.1\r\nHost: x\r\n\r\n", http.StatusOK)
	if v := dialH2(t, ts.addr).maxHeaderList; v != 1<<30 {
		t.Fatalf("SETTINGS_MAX_HEADER_LIST_SIZE %d, want %d", v, 1<<30)
	}
}
