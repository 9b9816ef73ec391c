package proxy

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"weak"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// trackedBody is a client's request body whose collection a test can
// watch.
type trackedBody struct {
	r io.Reader
	_ [4096]byte // as a server's body holds its connection's buffers
}

func (b *trackedBody) Read(p []byte) (int, error) { return b.r.Read(p) }
func (b *trackedBody) Close() error               { return nil }

// A copy in flight to a slow mirror holds its own copy of the request,
// not the client's request body (which holds a server's connection, its
// buffers and its response writer): those are freed when the primary's
// request ends, however long the copy takes.
func TestMirrorCopyDoesNotHoldTheClientsRequest(t *testing.T) {
	p := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "primary")
	})
	var held atomic.Int64
	shadow, got := mirrorUpstream(t, func(r *http.Request) {
		held.Add(1)
		<-r.Context().Done()
	})
	h := startProxy(t, mirrorConfig(addr(p), shadow, nil, func(r *config.Route) { r.Timeout = time.Minute }))

	var wb weak.Pointer[trackedBody]
	func() {
		ctx, cancel := context.WithCancel(context.Background())
		b := &trackedBody{r: strings.NewReader("hello mirror")}
		wb = weak.Make(b)
		req := httptest.NewRequestWithContext(ctx, "POST", "http://svc/", nil)
		req.Body, req.ContentLength = b, 12
		rec := httptest.NewRecorder()
		h.p.Handler(Outbound).ServeHTTP(rec, req)
		// As a server does when the handler returns.
		cancel()
		if rec.Code != 200 || rec.Body.String() != "primary" {
			t.Fatalf("%d %q, want the primary's 200", rec.Code, rec.Body.String())
		}
	}()
	if m := receive(t, got); m.body != "hello mirror" {
		t.Fatalf("mirror got body %q", m.body)
	}
	eventually(t, 10*time.Second, "the mirror upstream to hold the copy", func() bool { return held.Load() == 1 })
	eventually(t, 10*time.Second, "the client's body to be collected while the copy is in flight", func() bool {
		runtime.GC()
		return wb.Value() == nil
	})
}

// The watch of a stalled body lets go of the request's writer and
// context once stopped, so that a stopped timer the runtime keeps until
// its time would have come (the route deadline) does not keep the
// request with it; whichever of expire and stop comes first has them.
func TestStallWatchLetsTheRequestGoWhenStopped(t *testing.T) {
	for _, direct := range []bool{true, false} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "http://svc/", strings.NewReader("x"))
		f := &forwarding{w: rec, r: req, dl: time.Now().Add(time.Minute)}
		ctx, cancel := context.WithCancel(context.Background())
		sw := f.watchBodyStall(ctx, direct)
		if !sw.stop() {
			t.Fatalf("direct %v: stop before the deadline reports the watch ended already", direct)
		}
		if sw.w != nil || sw.rctx != nil {
			t.Fatalf("direct %v: the stopped watch keeps the request's writer or context", direct)
		}
		sw.expire() // as a timer that fires late would: no effect
		cancel()
		if sw.stop() {
			t.Fatalf("direct %v: a second stop reports it stopped the watch", direct)
		}
	}
	// Expired first: stop then reports the watch had ended.
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "http://svc/", strings.NewReader("x"))
	ctx, cancel := context.WithCancel(context.Background())
	sw := (&forwarding{w: rec, r: req, dl: time.Now().Add(time.Minute)}).watchBodyStall(ctx, false)
	cancel()
	eventually(t, 10*time.Second, "the watch to expire with its context", func() bool { return sw.done.Load() })
	if sw.stop() {
		t.Fatal("stop after expire reports it stopped the watch")
	}
}
