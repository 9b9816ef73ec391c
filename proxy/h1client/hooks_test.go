package h1client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"testing"
	"time"
)

// recordingHooks notes the events of one round trip, in order.
type recordingHooks struct {
	events []string
	err    error // returned by Got1xxResponse
}

func (h *recordingHooks) GotConn() { h.events = append(h.events, "conn") }

func (h *recordingHooks) Got1xxResponse(code int, header textproto.MIMEHeader) error {
	h.events = append(h.events, fmt.Sprintf("%d %s", code, header.Get("Link")))
	return h.err
}

func TestHooksSeeConnectionThenInterimResponses(t *testing.T) {
	s := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</a.css>")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Set("Link", "</b.css>")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		_, _ = w.Write([]byte("final"))
	})
	tr := newTransport(t)
	for i := range 2 { // a dialled connection, then an idle one
		var h recordingHooks
		var traced []string
		req := mustRequest(t, "GET", s.URL, nil)
		// A trace in the context is still called, before the hooks.
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(httptrace.GotConnInfo) { h.events = append(h.events, "trace conn") },
			Got1xxResponse: func(code int, _ textproto.MIMEHeader) error {
				traced = append(traced, fmt.Sprint(code))
				h.events = append(h.events, "trace 1xx")
				return nil
			},
		}))
		resp, err := tr.RoundTripHooks(req.Context(), req, &h, time.Time{})
		if err != nil {
			t.Fatalf("round trip %d: %v", i, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(b) != "final" || resp.StatusCode != 200 {
			t.Fatalf("round trip %d: %d %q %v", i, resp.StatusCode, b, err)
		}
		want := "trace conn|conn|trace 1xx|103 </a.css>|trace 1xx|103 </b.css>"
		if got := strings.Join(h.events, "|"); got != want {
			t.Fatalf("round trip %d: events %q, want %q", i, got, want)
		}
	}
	if n := s.opened.Load(); n != 1 {
		t.Fatalf("server saw %d connections, want 1", n)
	}
}

func TestHooksInterimResponseErrorEndsRoundTrip(t *testing.T) {
	s := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</a.css>")
		w.WriteHeader(http.StatusEarlyHints)
		_, _ = w.Write([]byte("final"))
	})
	tr := newTransport(t)
	stop := errors.New("no interim responses, thanks")
	h := recordingHooks{err: stop}
	resp, err := tr.RoundTripHooks(context.Background(), mustRequest(t, "GET", s.URL, nil), &h, time.Time{})
	if !errors.Is(err, stop) {
		if resp != nil {
			resp.Body.Close()
		}
		t.Fatalf("err %v, want the hook's error", err)
	}
	if got := strings.Join(h.events, "|"); got != "conn|103 </a.css>" {
		t.Fatalf("events %q", got)
	}
	// The connection the exchange failed on is not reused.
	resp, body := do(t, tr, mustRequest(t, "GET", s.URL, nil))
	if resp.StatusCode != 200 || body != "final" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	if n := s.opened.Load(); n != 2 {
		t.Fatalf("server saw %d connections, want 2", n)
	}
}

func TestHooksNotCalledWithoutConnection(t *testing.T) {
	tr := newTransport(t)
	var h recordingHooks
	req := mustRequest(t, "GET", "http://"+closedAddr(t)+"/", nil)
	if resp, err := tr.RoundTripHooks(req.Context(), req, &h, time.Time{}); err == nil {
		resp.Body.Close()
		t.Fatal("round trip to a closed port succeeded")
	}
	if len(h.events) != 0 {
		t.Fatalf("events %q, want none", h.events)
	}
}

func TestNilHooksIsRoundTrip(t *testing.T) {
	s := startServer(t, func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) })
	tr := newTransport(t)
	resp, err := tr.RoundTripHooks(context.Background(), mustRequest(t, "GET", s.URL, nil), nil, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "ok" {
		t.Fatalf("body %q", b)
	}
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

func TestRoundTripHooksIsGovernedByItsContextNotTheRequests(t *testing.T) {
	s := startServer(t, func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) })
	tr := newTransport(t)
	done, cancel := context.WithCancel(context.Background())
	cancel()
	// The request's own context has ended; the one given governs.
	req := mustRequest(t, "GET", s.URL, nil).WithContext(done)
	resp, err := tr.RoundTripHooks(context.Background(), req, nil, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "ok" {
		t.Fatalf("body %q", b)
	}
	if _, err := tr.RoundTripHooks(done, mustRequest(t, "GET", s.URL, nil), nil, time.Time{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want the given context's", err)
	}
}
