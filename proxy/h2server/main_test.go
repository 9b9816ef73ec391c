package h2server

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/outrigger-mesh/outrigger/proxy/internal/proxytest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testServer is a Server on a loopback port, closed by the test's cleanup.
type testServer struct {
	*Server
	addr string
	logs *proxytest.Log
	wg   sync.WaitGroup
	ln   net.Listener
	// opts are the ConnOpts of the connections accepted from now on.
	opts atomic.Pointer[ConnOpts]
}

func start(t testing.TB, h http.Handler, mod ...func(*Server)) *testServer {
	t.Helper()
	ts := &testServer{logs: &proxytest.Log{}}
	ts.Server = &Server{Handler: h, ErrorLog: ts.logs.Log}
	for _, f := range mod {
		f(ts.Server)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts.ln = ln
	ts.addr = ln.Addr().String()
	ts.wg.Add(1)
	go func() {
		defer ts.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ts.wg.Add(1)
			go func() {
				defer ts.wg.Done()
				ts.ServeConn(c, ts.opts.Load())
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		ts.Close()
		ts.wg.Wait()
	})
	return ts
}

func (ts *testServer) url(path string) string { return "http://" + ts.addr + path }

// h2Client is an x/net/http2 client speaking h2c with prior knowledge.
func h2Client(t testing.TB) (*http.Client, *http2.Transport) {
	tr := &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}, tr
}

// rawConn is a hand-driven HTTP/2 client connection.
type rawConn struct {
	t   testing.TB
	nc  net.Conn
	fr  *http2.Framer
	dec *hpack.Decoder
	enc *hpack.Encoder
	eb  bytes.Buffer
}

// dialRaw connects, sends the preface and an empty SETTINGS, and, unless
// skipped, reads the server's SETTINGS.
func dialRaw(t testing.TB, addr string, settings ...http2.Setting) *rawConn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	rc := &rawConn{t: t, nc: nc}
	rc.fr = http2.NewFramer(nc, nc)
	rc.dec = hpack.NewDecoder(4096, nil)
	rc.enc = hpack.NewEncoder(&rc.eb)
	if _, err := nc.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	if err := rc.fr.WriteSettings(settings...); err != nil {
		t.Fatal(err)
	}
	return rc
}

func (rc *rawConn) readFrame() (http2.Frame, error) {
	rc.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	return rc.fr.ReadFrame()
}

// headerBlock hpack-encodes fields given as name, value pairs.
func (rc *rawConn) headerBlock(kv ...string) []byte {
	rc.eb.Reset()
	for i := 0; i < len(kv); i += 2 {
		rc.enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	return append([]byte(nil), rc.eb.Bytes()...)
}

func (rc *rawConn) writeHeaders(id uint32, end bool, kv ...string) {
	rc.t.Helper()
	if err := rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: rc.headerBlock(kv...), EndStream: end, EndHeaders: true}); err != nil {
		rc.t.Fatal(err)
	}
}

// get sends a GET for path on stream id.
func (rc *rawConn) get(id uint32, path string, extra ...string) {
	rc.t.Helper()
	rc.writeHeaders(id, true, append([]string{":method", "GET", ":scheme", "http", ":authority", "x", ":path", path}, extra...)...)
}

// post opens a POST on stream id without ending it.
func (rc *rawConn) post(id uint32, path string, extra ...string) {
	rc.t.Helper()
	rc.writeHeaders(id, false, append([]string{":method", "POST", ":scheme", "http", ":authority", "x", ":path", path}, extra...)...)
}

// event is what the client saw of a frame.
type event struct {
	typ     http2.FrameType
	id      uint32
	end     bool
	code    http2.ErrCode // RST_STREAM, GOAWAY
	last    uint32        // GOAWAY
	fields  []hpack.HeaderField
	data    []byte
	inc     uint32 // WINDOW_UPDATE
	ack     bool
	setting []http2.Setting
}

func (e event) get(name string) string {
	for _, f := range e.fields {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}

// next reads one frame; SETTINGS from the server are acknowledged.
func (rc *rawConn) next() (event, error) {
	f, err := rc.readFrame()
	if err != nil {
		return event{}, err
	}
	e := event{typ: f.Header().Type, id: f.Header().StreamID}
	switch f := f.(type) {
	case *http2.HeadersFrame:
		e.end = f.StreamEnded()
		block := append([]byte(nil), f.HeaderBlockFragment()...)
		for !f.HeadersEnded() {
			cf, err := rc.readFrame()
			if err != nil {
				return e, err
			}
			c := cf.(*http2.ContinuationFrame)
			block = append(block, c.HeaderBlockFragment()...)
			if c.HeadersEnded() {
				break
			}
		}
		e.fields, err = rc.dec.DecodeFull(block)
		if err != nil {
			return e, err
		}
	case *http2.DataFrame:
		e.end = f.StreamEnded()
		e.data = append([]byte(nil), f.Data()...)
	case *http2.RSTStreamFrame:
		e.code = f.ErrCode
	case *http2.GoAwayFrame:
		e.code, e.last = f.ErrCode, f.LastStreamID
	case *http2.WindowUpdateFrame:
		e.inc = f.Increment
	case *http2.SettingsFrame:
		e.ack = f.IsAck()
		f.ForeachSetting(func(s http2.Setting) error { e.setting = append(e.setting, s); return nil })
		if !e.ack {
			rc.fr.WriteSettingsAck()
		}
	case *http2.PingFrame:
		e.ack = f.IsAck()
		e.data = f.Data[:]
	}
	return e, nil
}

// until reads frames until match returns true, failing on error.
func (rc *rawConn) until(what string, match func(event) bool) event {
	rc.t.Helper()
	for i := 0; i < 10000; i++ {
		e, err := rc.next()
		if err != nil {
			rc.t.Fatalf("waiting for %s: %v", what, err)
		}
		if match(e) {
			return e
		}
	}
	rc.t.Fatalf("waiting for %s: too many frames", what)
	return event{}
}

func (rc *rawConn) goAway() event {
	rc.t.Helper()
	return rc.until("GOAWAY", func(e event) bool { return e.typ == http2.FrameGoAway })
}

// shutdownNotice reads the first GOAWAY of a graceful shutdown, which
// must be NO_ERROR naming maxStreamID, and the PING after it, whose data
// it returns unacknowledged.
func (rc *rawConn) shutdownNotice() [8]byte {
	rc.t.Helper()
	if e := rc.goAway(); e.code != http2.ErrCodeNo || e.last != maxStreamID {
		rc.t.Fatalf("first GOAWAY %v last %d, want NO_ERROR last %d", e.code, e.last, uint32(maxStreamID))
	}
	e := rc.until("PING", func(e event) bool { return e.typ == http2.FramePing })
	if e.ack {
		rc.t.Fatal("PING after the notice is an acknowledgement")
	}
	return [8]byte(e.data)
}

// finalGoAway reads the shutdown notice, acknowledges its PING and
// returns the GOAWAY that follows.
func (rc *rawConn) finalGoAway() event {
	rc.t.Helper()
	data := rc.shutdownNotice()
	if err := rc.fr.WritePing(true, data); err != nil {
		rc.t.Fatal(err)
	}
	return rc.goAway()
}

func (rc *rawConn) rst(id uint32) event {
	rc.t.Helper()
	return rc.until("RST_STREAM", func(e event) bool { return e.typ == http2.FrameRSTStream && e.id == id })
}

// response reads stream id's response: status, body, trailers, and
// whether it ended with a reset (code).
func (rc *rawConn) response(id uint32) (status string, body string, trailers map[string]string, rst *http2.ErrCode) {
	rc.t.Helper()
	var b bytes.Buffer
	for i := 0; i < 10000; i++ {
		e, err := rc.next()
		if err != nil {
			rc.t.Fatalf("reading response of stream %d: %v", id, err)
		}
		if e.id != id {
			continue
		}
		switch e.typ {
		case http2.FrameHeaders:
			if s := e.get(":status"); s != "" {
				if s[0] == '1' {
					continue
				}
				status = s
			} else {
				trailers = map[string]string{}
				for _, f := range e.fields {
					trailers[f.Name] = f.Value
				}
			}
		case http2.FrameData:
			b.Write(e.data)
		case http2.FrameRSTStream:
			c := e.code
			return status, b.String(), trailers, &c
		}
		if e.end {
			return status, b.String(), trailers, nil
		}
	}
	rc.t.Fatal("too many frames")
	return
}

// expectClosed waits for the server to close the connection.
func (rc *rawConn) expectClosed() {
	rc.t.Helper()
	for i := 0; i < 10000; i++ {
		if _, err := rc.next(); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				rc.t.Fatal("connection not closed")
			}
			return
		}
	}
	rc.t.Fatal("connection not closed")
}

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for d := time.Millisecond; !cond(); d = min(2*d, 50*time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(d)
	}
}

func dialDecoder() *hpack.Decoder { return hpack.NewDecoder(4096, nil) }

// conn waits for ts to serve a connection and returns it (the one, or
// any, of those it serves).
func (ts *testServer) conn(t testing.TB) *serverConn {
	t.Helper()
	var sc *serverConn
	waitFor(t, "the connection", func() bool {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		for c := range ts.conns {
			sc = c
		}
		return sc != nil
	})
	return sc
}

// locked runs f under sc.mu and returns its result.
func (sc *serverConn) locked(f func() bool) bool {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return f()
}
