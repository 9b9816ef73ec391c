package h1server

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"testing"
	"time"
)

// A body Read blocked on a client that stopped sending is ended by a read
// deadline set from another goroutine; the handler still answers, and
// the connection, whose body framing is lost, closes after the response.
func TestSetReadDeadlineEndsBlockedBodyRead(t *testing.T) {
	for _, tc := range []struct{ name, head, part string }{
		{"content-length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n", "0123456789"},
		{"chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", "a\r\n0123456789\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			readErr := make(chan error, 1)
			ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				buf := make([]byte, 10)
				if _, err := io.ReadFull(r.Body, buf); err != nil {
					readErr <- err
					return
				}
				rc := http.NewResponseController(w)
				// From another goroutine, as a timer would.
				go func() { _ = rc.SetReadDeadline(time.Now()) }()
				_, err := io.ReadAll(r.Body)
				readErr <- err
				w.WriteHeader(http.StatusGatewayTimeout)
			}))
			c := dial(t, ts.addr)
			c.send(t, tc.head+tc.part)
			err := within(t, 5*time.Second, "body read", readErr)
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("body read: %v, want os.ErrDeadlineExceeded", err)
			}
			if resp, _ := c.response(t, "POST"); resp.StatusCode != http.StatusGatewayTimeout {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if !c.closed(5 * time.Second) {
				t.Fatal("connection kept after a body cut short")
			}
		})
	}
}

// A zero deadline clears one already passed: the body reads on, and the
// connection serves the next request.
func TestSetReadDeadlineZeroClears(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if err := rc.SetReadDeadline(time.Now().Add(-time.Second)); err != nil {
			t.Error(err)
		}
		if err := rc.SetReadDeadline(time.Time{}); err != nil {
			t.Error(err)
		}
		b, err := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %q %v", r.URL.Path, b, err)
	}))
	c := dial(t, ts.addr)
	c.send(t, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhel")
	// The rest comes only after the handler has set and cleared its
	// deadline (a Read is then waiting for it).
	time.AfterFunc(20*time.Millisecond, func() { _, _ = io.WriteString(c, "lo") })
	if _, body := c.response(t, "POST"); body != `/a "hello" <nil>` {
		t.Fatalf("got %q", body)
	}
	c.send(t, "GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, body := c.response(t, "GET"); body != `/b "" <nil>` {
		t.Fatalf("got %q", body)
	}
}

// A deadline the handler set after reading the whole body, while the
// connection is watched for the client leaving, is not the client
// leaving: the request's context lives on and the next request on the
// connection is served, with no deadline left over.
func TestHandlerReadDeadlineIsNotClientGone(t *testing.T) {
	done := make(chan error, 1)
	var s *Server
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/slow" {
			fmt.Fprint(w, "next")
			return
		}
		_, _ = io.ReadAll(r.Body)
		waitWatching(t, s)
		_ = http.NewResponseController(w).SetReadDeadline(time.Now())
		select {
		case <-r.Context().Done():
			done <- r.Context().Err()
			return
		case <-time.After(200 * time.Millisecond):
			// Long enough for the watcher to see its deadline.
		}
		done <- nil
		fmt.Fprint(w, "slow")
	}), func(srv *Server) { s = srv })
	c := dial(t, ts.addr)
	c.send(t, "POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
	if err := within(t, 5*time.Second, "handler", done); err != nil {
		t.Fatalf("request context ended: %v", err)
	}
	if _, body := c.response(t, "POST"); body != "slow" {
		t.Fatalf("got %q", body)
	}
	c.send(t, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, body := c.response(t, "GET"); body != "next" {
		t.Fatalf("got %q", body)
	}
}

// Once the handler has returned, a SetReadDeadline from a goroutine it
// left behind fails and cannot cut the next request short.
func TestSetReadDeadlineAfterHandlerFails(t *testing.T) {
	rcs := make(chan *http.ResponseController, 1)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/first" {
			rcs <- http.NewResponseController(w)
		}
		fmt.Fprint(w, r.URL.Path)
	}))
	c := dial(t, ts.addr)
	c.send(t, "GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, body := c.response(t, "GET"); body != "/first" {
		t.Fatalf("got %q", body)
	}
	if err := (<-rcs).SetReadDeadline(time.Now()); !errors.Is(err, errHandlerDone) {
		t.Fatalf("SetReadDeadline after the handler: %v", err)
	}
	c.send(t, "GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, body := c.response(t, "GET"); body != "/second" {
		t.Fatalf("got %q", body)
	}
}
