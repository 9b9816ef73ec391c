package h2server

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// A stream's body Read blocked waiting for DATA is ended by the handler's
// read deadline, by its timer or set (already passed) from another
// goroutine; the handler answers, the stream is reset NO_ERROR after the
// response as for any unread body, and the connection serves on.
func TestSetReadDeadlineEndsBlockedStreamRead(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(rc *http.ResponseController)
	}{
		{"timer", func(rc *http.ResponseController) { _ = rc.SetReadDeadline(time.Now().Add(50 * time.Millisecond)) }},
		{"other goroutine", func(rc *http.ResponseController) {
			go func() { _ = rc.SetReadDeadline(time.Now()) }()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			readErr := make(chan error, 1)
			ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == "GET" {
					io.WriteString(w, "next")
					return
				}
				buf := make([]byte, 4)
				if _, err := io.ReadFull(r.Body, buf); err != nil {
					readErr <- err
					return
				}
				tc.set(http.NewResponseController(w))
				_, err := io.ReadAll(r.Body)
				readErr <- err
				w.WriteHeader(http.StatusGatewayTimeout)
			}))
			rc := dialRaw(t, ts.addr)
			rc.post(1, "/", "content-length", "100")
			rc.fr.WriteData(1, false, []byte("part"))
			select {
			case err := <-readErr:
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("body read: %v, want os.ErrDeadlineExceeded", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("body read still blocked")
			}
			if status, _, _, rst := rc.response(1); status != "504" || rst != nil {
				t.Fatalf("status %q, reset %v", status, rst)
			}
			if e := rc.rst(1); e.code != 0 {
				t.Fatalf("reset %v, want NO_ERROR", e.code)
			}
			rc.get(3, "/")
			if status, body, _, _ := rc.response(3); status != "200" || body != "next" {
				t.Fatalf("next stream: %s %q", status, body)
			}
		})
	}
}

// A deadline already passed fails a Read even with DATA waiting; a zero
// deadline clears it and the body reads on.
func TestSetReadDeadlineZeroClearsStreamDeadline(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		buf := make([]byte, 2)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			t.Error(err)
		}
		if err := rc.SetReadDeadline(time.Now().Add(-time.Second)); err != nil {
			t.Error(err)
		}
		_, expired := r.Body.Read(buf)
		// A later deadline, then none: its timer must not fire.
		_ = rc.SetReadDeadline(time.Now().Add(time.Millisecond))
		_ = rc.SetReadDeadline(time.Time{})
		rest, err := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%v %q %v", errors.Is(expired, os.ErrDeadlineExceeded), rest, err)
	}))
	rc := dialRaw(t, ts.addr)
	rc.post(1, "/")
	rc.fr.WriteData(1, false, []byte("pa"))
	rc.fr.WriteData(1, false, []byte("rt"))
	// The end comes after the cleared deadline would have passed.
	// (A framer of its own: rc.fr is reading meanwhile.)
	wf := http2.NewFramer(rc.nc, nil)
	time.AfterFunc(20*time.Millisecond, func() { wf.WriteData(1, true, []byte("!")) })
	if status, body, _, _ := rc.response(1); status != "200" || body != `true "rt!" <nil>` {
		t.Fatalf("%s %q", status, body)
	}
}

// Once the handler has returned, SetReadDeadline fails.
func TestSetReadDeadlineAfterHandlerFailsOnStream(t *testing.T) {
	rcs := make(chan *http.ResponseController, 1)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		// A timer left set when the handler returns is stopped.
		_ = rc.SetReadDeadline(time.Now().Add(time.Hour))
		rcs <- rc
	}))
	rc := dialRaw(t, ts.addr)
	rc.get(1, "/")
	if status, _, _, _ := rc.response(1); status != "200" {
		t.Fatal(status)
	}
	if err := (<-rcs).SetReadDeadline(time.Now()); !errors.Is(err, errHandlerDone) {
		t.Fatalf("SetReadDeadline after the handler: %v", err)
	}
}
