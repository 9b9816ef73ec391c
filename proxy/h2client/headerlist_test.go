package h2client

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// listSize is a header list's size as x/net/http2 measures it.
func listSize(kv ...string) int {
	n := 0
	for i := 0; i+1 < len(kv); i += 2 {
		n += int(hpack.HeaderField{Name: kv[i], Value: kv[i+1]}.Size())
	}
	return n
}

// A request whose header list exceeds the server's
// SETTINGS_MAX_HEADER_LIST_SIZE fails with ErrHeaderListTooLarge and
// nothing reaches the server: the next request takes the next stream
// id. One exactly at the limit goes. A stream open on the connection
// meanwhile is not disturbed.
func TestHeaderListOverServerLimit(t *testing.T) {
	const limit = 600
	type req struct {
		id   uint32
		path string
	}
	seen := make(chan req, 4)
	s := startRaw(t, []http2.Setting{{ID: http2.SettingMaxHeaderListSize, Val: limit}}, func(rc *rawConn, n int) {
		held := uint32(0)
		rc.serveEach(func(h *http2.MetaHeadersFrame) {
			seen <- req{h.StreamID, h.PseudoValue("path")}
			switch h.PseudoValue("path") {
			case "/hold":
				held = h.StreamID
				return
			case "/release":
				rc.respond(held, "held")
			}
			rc.respond(h.StreamID, "ok "+h.PseudoValue("path"))
		})
	})
	tr := newTransport(t)
	url := "http://" + s.addr

	// A stream held open across the failure.
	heldResp := make(chan outcome, 1)
	heldReq, _ := http.NewRequest("GET", url+"/hold", nil)
	go func() { heldResp <- fetch(tr, heldReq) }()
	if r := recv(t, seen); r.id != 1 || r.path != "/hold" {
		t.Fatalf("server saw %+v first", r)
	}

	base := listSize(":method", "GET", ":scheme", "http", ":authority", s.addr, ":path", "/big", "x-pad", "")
	padded := func(size int) *http.Request {
		r, _ := http.NewRequest("GET", url+"/big", nil)
		r.Header.Set("X-Pad", strings.Repeat("p", size-base))
		return r
	}
	_, err := tr.RoundTrip(padded(limit + 1))
	if !errors.Is(err, ErrHeaderListTooLarge) {
		t.Fatalf("err = %v, want ErrHeaderListTooLarge", err)
	}
	if want := fmt.Sprintf("header list of %d bytes, limit %d", limit+1, limit); !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %q, want it to say %q", err, want)
	}
	if resp, got := do(t, tr, padded(limit)); resp.StatusCode != 200 || got != "ok /big" {
		t.Fatalf("request at the limit: %d %q", resp.StatusCode, got)
	}
	if r := recv(t, seen); r.id != 3 {
		t.Fatalf("request at the limit went on stream %d, want 3: the refused one spent an id or reached the server", r.id)
	}

	// The held stream ends normally, on the same connection.
	if _, got := get(t, tr, url+"/release"); got != "ok /release" {
		t.Fatalf("release: %q", got)
	}
	if got := recv(t, heldResp); got.err != nil || got.body != "held" {
		t.Fatalf("held stream: %v", got)
	}
	if n := s.accepted.Load(); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
}

// Against x/net/http2's server, which announces a limit of 1 MiB plus
// 320 bytes: a large header list under it goes, one over it fails before
// it is sent, and the connection stays in use.
func TestHeaderListRealServerLimit(t *testing.T) {
	s := startH2(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, len(r.Header.Get("X-Pad")))
	})
	tr := newTransport(t)
	r, _ := http.NewRequest("GET", s.url("/"), nil)
	r.Header.Set("X-Pad", strings.Repeat("p", 64<<10))
	if _, got := do(t, tr, r); got != fmt.Sprint(64<<10) {
		t.Fatalf("got %q", got)
	}
	r, _ = http.NewRequest("GET", s.url("/"), nil)
	r.Header.Set("X-Pad", strings.Repeat("p", 2<<20))
	if _, err := tr.RoundTrip(r); !errors.Is(err, ErrHeaderListTooLarge) {
		t.Fatalf("err = %v, want ErrHeaderListTooLarge", err)
	}
	r, _ = http.NewRequest("GET", s.url("/"), nil)
	r.Header.Set("X-Pad", "small")
	if _, got := do(t, tr, r); got != "5" {
		t.Fatalf("got %q", got)
	}
	if n := s.opened.Load(); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
}

// Trailers over the server's limit are not sent: the stream is reset
// with CANCEL after the body, and the request fails with
// ErrHeaderListTooLarge.
func TestTrailersOverServerLimit(t *testing.T) {
	const limit = 300
	seen := make(chan streamSeen, 1)
	s := startRawForRequest(t, []http2.Setting{{ID: http2.SettingMaxHeaderListSize, Val: limit}}, func(rc *rawConn, h *http2.MetaHeadersFrame) {
		seen <- rc.readStream(h.StreamID, nil)
		rc.answerTheRest("next")
	})
	tr := newTransport(t)
	url := "http://" + s.addr
	r, _ := http.NewRequestWithContext(ctxTimeout(t, 10*time.Second), "POST", url+"/", strings.NewReader("body"))
	r.Trailer = http.Header{"X-Big": nil}
	r.Body = io.NopCloser(&trailerSetter{r: strings.NewReader("body"), set: func() {
		r.Trailer.Set("X-Big", strings.Repeat("t", limit))
	}})
	_, err := tr.RoundTrip(r)
	if !errors.Is(err, ErrHeaderListTooLarge) {
		t.Fatalf("err = %v, want ErrHeaderListTooLarge", err)
	}
	if ss := recv(t, seen); ss.err != nil || ss.data != "body" || ss.trailers || ss.ended || !ss.rst || ss.code != http2.ErrCodeCancel {
		t.Fatalf("server saw %+v, want the body, no trailers and RST_STREAM CANCEL", ss)
	}
	// The connection carries on.
	if _, got := get(t, tr, url+"/next"); got != "next" {
		t.Fatalf("next request got %q", got)
	}
}

// trailerSetter calls set at the end of its body, as a handler filling
// trailers while it streams.
type trailerSetter struct {
	r   io.Reader
	set func()
}

func (ts *trailerSetter) Read(p []byte) (int, error) {
	n, err := ts.r.Read(p)
	if err == io.EOF {
		ts.set()
	}
	return n, err
}

// Trailers within the server's limit are sent.
func TestTrailersUnderServerLimit(t *testing.T) {
	const limit = 300
	seen := make(chan streamSeen, 1)
	s := startRawForRequest(t, []http2.Setting{{ID: http2.SettingMaxHeaderListSize, Val: limit}}, func(rc *rawConn, h *http2.MetaHeadersFrame) {
		ss := rc.readStream(h.StreamID, nil)
		seen <- ss
		rc.respond(h.StreamID, "ok")
		io.Copy(io.Discard, rc)
	})
	tr := newTransport(t)
	r, _ := http.NewRequest("POST", "http://"+s.addr+"/", io.NopCloser(strings.NewReader("body")))
	r.Trailer = http.Header{"X-Small": []string{strings.Repeat("t", limit-listSize("x-small", ""))}}
	if _, got := do(t, tr, r); got != "ok" {
		t.Fatalf("got %q", got)
	}
	if ss := recv(t, seen); ss.data != "body" || !ss.trailers || !ss.ended {
		t.Fatalf("server saw %+v", ss)
	}
}
