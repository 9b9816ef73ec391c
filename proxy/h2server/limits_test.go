package h2server

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// bigHeaders are about 1.5 KB of header fields (name and value lengths
// plus 32 each, as SETTINGS_MAX_HEADER_LIST_SIZE counts them).
func bigHeaders() []string {
	var kv []string
	for i := 0; i < 12; i++ {
		kv = append(kv, fmt.Sprintf("x-big-%d", i), strings.Repeat("a", 100))
	}
	return kv
}

// serverSettings reads the server's first SETTINGS frame.
func (rc *rawConn) serverSettings() map[http2.SettingID]uint32 {
	rc.t.Helper()
	e := rc.until("server SETTINGS", func(e event) bool { return e.typ == http2.FrameSettings && !e.ack })
	got := map[http2.SettingID]uint32{}
	for _, s := range e.setting {
		got[s.ID] = s.Val
	}
	return got
}

// ConnOpts.Limits replace the Server's header list limit and idle timeout
// for that connection alone: it announces and enforces its own
// SETTINGS_MAX_HEADER_LIST_SIZE and is closed after its own idle time,
// while a connection without them keeps the Server's.
func TestConnLimitsReplaceServerLimits(t *testing.T) {
	ts := start(t, okHandler()) // 1 MiB header lists, no idle timeout
	plain := dialRaw(t, ts.addr)
	if got := plain.serverSettings()[http2.SettingMaxHeaderListSize]; got != http.DefaultMaxHeaderBytes {
		t.Fatalf("plain connection: SETTINGS_MAX_HEADER_LIST_SIZE %d, want %d", got, http.DefaultMaxHeaderBytes)
	}

	// The limited connection's request must come within its idle
	// timeout, after a round trip on the plain one: a second, which a
	// loaded machine does not take (100 ms could close it first, GOAWAY
	// naming no stream).
	ts.opts.Store(&ConnOpts{Limits: &ConnLimits{MaxHeaderBytes: 1000, IdleTimeout: time.Second}})
	limited := dialRaw(t, ts.addr)
	if got := limited.serverSettings()[http2.SettingMaxHeaderListSize]; got != 1000 {
		t.Fatalf("limited connection: SETTINGS_MAX_HEADER_LIST_SIZE %d, want 1000", got)
	}

	plain.get(1, "/", bigHeaders()...)
	if status, body, _, _ := plain.response(1); status != "200" || body != "ok" {
		t.Fatalf("plain connection, big header list: %s %q", status, body)
	}
	limited.get(1, "/", bigHeaders()...)
	if status, _, _, _ := limited.response(1); status != "431" {
		t.Fatalf("limited connection, big header list: %s, want 431", status)
	}
	began := time.Now()
	if e := limited.goAway(); e.code != http2.ErrCodeNo || e.last != 1 {
		t.Fatalf("limited connection: GOAWAY %v last %d, want NO_ERROR last 1", e.code, e.last)
	}
	limited.expectClosed()
	if took := time.Since(began); took > 5*time.Second {
		t.Fatalf("idle connection closed after %v", took)
	}
	// The plain connection has been idle longer than the limited one was
	// when it was closed: it had no idle timeout to close it.
	plain.get(3, "/")
	if status, body, _, _ := plain.response(3); status != "200" || body != "ok" {
		t.Fatalf("plain connection after the other's idle close: %s %q", status, body)
	}
}

// ConnLimits' zero values mean the protocol defaults (1 MiB, no idle
// timeout), not the Server's fields.
func TestConnLimitsZeroMeansDefaults(t *testing.T) {
	// The Server's idle timeout must not pass before a connection
	// without Limits has sent its request: a second, not 100 ms, which a
	// loaded machine could take from the accept to the request.
	ts := start(t, okHandler(), func(s *Server) {
		s.MaxHeaderBytes = 1000
		s.IdleTimeout = time.Second
	})
	ts.opts.Store(&ConnOpts{Limits: &ConnLimits{}})
	zero := dialRaw(t, ts.addr)
	if got := zero.serverSettings()[http2.SettingMaxHeaderListSize]; got != http.DefaultMaxHeaderBytes {
		t.Fatalf("SETTINGS_MAX_HEADER_LIST_SIZE %d, want %d", got, http.DefaultMaxHeaderBytes)
	}
	zero.get(1, "/", bigHeaders()...)
	if status, body, _, _ := zero.response(1); status != "200" || body != "ok" {
		t.Fatalf("big header list: %s %q", status, body)
	}

	ts.opts.Store(nil)
	server := dialRaw(t, ts.addr)
	if got := server.serverSettings()[http2.SettingMaxHeaderListSize]; got != 1000 {
		t.Fatalf("connection without Limits: SETTINGS_MAX_HEADER_LIST_SIZE %d, want 1000", got)
	}
	server.get(1, "/")
	server.response(1)
	server.goAway()
	server.expectClosed()
	// Idle for longer than the Server's IdleTimeout, and still served.
	zero.get(3, "/")
	if status, body, _, _ := zero.response(3); status != "200" || body != "ok" {
		t.Fatalf("after the Server's idle timeout: %s %q", status, body)
	}
}

// A response header block or trailers over the client's
// SETTINGS_MAX_HEADER_LIST_SIZE is not sent: the stream is reset
// INTERNAL_ERROR (and the handler's writes fail from then on), and the
// connection's other streams go on. The block was sent, and a client that enforces
// its limit (grpc-go) ended the whole connection, COMPRESSION_ERROR.
func TestHeaderListOverClientLimitResetsOnlyTheStream(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		big := strings.Repeat("a", 2000)
		switch r.URL.Path {
		case "/big-header":
			w.Header().Set("X-Big", big)
			_, _ = w.Write([]byte("body"))
		case "/big-trailer":
			w.Header().Set("Trailer", "X-Big")
			_, _ = w.Write([]byte("body"))
			w.Header().Set("X-Big", big)
		default:
			w.Header().Set("X-Small", "ok")
			_, _ = w.Write([]byte("fine"))
		}
	}))
	rc := dialRaw(t, ts.addr, http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: 1024})
	rc.get(1, "/big-header")
	if _, _, _, rst := rc.response(1); rst == nil || *rst != http2.ErrCodeInternal {
		t.Fatalf("big header: reset %v, want INTERNAL_ERROR", rst)
	}
	rc.get(3, "/big-trailer")
	if status, body, _, rst := rc.response(3); status != "200" || body != "body" || rst == nil || *rst != http2.ErrCodeInternal {
		t.Fatalf("big trailer: %s %q reset %v, want 200, the body, then INTERNAL_ERROR", status, body, rst)
	}
	rc.get(5, "/small")
	if status, body, _, rst := rc.response(5); status != "200" || body != "fine" || rst != nil {
		t.Fatalf("next stream: %s %q reset %v", status, body, rst)
	}
}
