package proxy

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/breaker"
	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// An upload announced with "Expect: 100-continue" and refused by an
// HTTP/2 upstream before it reads anything: the refusal reaches the
// client and the body is never asked for. Without the proxy's wait for
// the upstream's 100, it would read the body (sending the client its own
// 100) and send it upstream.
func TestExpectContinueToAnHTTP2UpstreamThatRefuses(t *testing.T) {
	up := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/accept" {
			b, _ := io.ReadAll(r.Body)
			w.Write(b)
			return
		}
		http.Error(w, "no uploads here", http.StatusUnauthorized)
	})
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up)), Protocol: config.ProtocolHTTP2}))
	tr := &http.Transport{ExpectContinueTimeout: 10 * time.Second}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 15 * time.Second}
	post := func(path string) (*http.Response, *touchReader) {
		t.Helper()
		body := &touchReader{r: strings.NewReader(strings.Repeat("x", 64<<10))}
		req, err := http.NewRequest("POST", h.url(path), body)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = 64 << 10
		req.Header.Set("Expect", "100-continue")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp, body
	}

	resp, body := post("/refuse")
	readAll(t, resp)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("refused upload: %d", resp.StatusCode)
	}
	if body.touched.Load() {
		t.Fatal("the body of a refused upload was read")
	}
	// An upstream that reads the body gets all of it.
	resp, body = post("/accept")
	if got := readAll(t, resp); resp.StatusCode != 200 || len(got) != 64<<10 || !body.touched.Load() {
		t.Fatalf("accepted upload: %d, %d bytes back", resp.StatusCode, len(got))
	}
}

// A request whose header list is over an HTTP/2 upstream's announced
// SETTINGS_MAX_HEADER_LIST_SIZE is not sent; the client gets 431
// request_headers_too_large, the endpoint is not counted as failing (an
// outlier detector ejecting after one reset would eject it), and the
// next request on the cluster goes through.
func TestHeaderListOverAnHTTP2UpstreamsLimit(t *testing.T) {
	var got atomic.Int32
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		w.Write([]byte("ok"))
	}))
	s.Config.Protocols = new(http.Protocols)
	s.Config.Protocols.SetUnencryptedHTTP2(true)
	s.Config.MaxHeaderBytes = 4 << 10
	s.Start()
	t.Cleanup(s.Close)
	// A breaker that opens on the first failure: the request over the
	// limit must not count as one.
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(s)), Protocol: config.ProtocolHTTP2,
		CircuitBreaker: breaker.Config{
			ConsecutiveFailures: breaker.ConsecutiveFailuresConfig{Threshold: 1},
			Open:                breaker.BackoffConfig{Base: time.Minute},
		}}))

	ok := func() {
		t.Helper()
		resp := mustGet(t, h.h1, h.url("/small"))
		if b := readAll(t, resp); resp.StatusCode != 200 || b != "ok" {
			t.Fatalf("a small request: %d %q", resp.StatusCode, b)
		}
	}
	ok() // the connection, and the server's SETTINGS, first
	before := got.Load()
	resp := mustGet(t, h.h1, h.url("/big"), "X-Big", string(bytes.Repeat([]byte("b"), 16<<10)))
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || resp.Header.Get("X-Outrigger-Error") != "request_headers_too_large" {
		t.Fatalf("over the limit: %d %q %q, want 431 request_headers_too_large", resp.StatusCode, resp.Header.Get("X-Outrigger-Error"), body)
	}
	if got.Load() != before {
		t.Fatal("the request over the limit reached the upstream")
	}
	ok()
}

// A request the HTTP/1.1 client cannot write intact (here a control byte
// in a header value, put there past the listener's own checks) is not
// sent; the client gets 400 invalid_request, and neither the endpoint nor
// the cluster's breaker counts it (a breaker that opens on one failure
// lets the next request through).
func TestRequestTheUpstreamClientRefusesIsNotTheEndpointsFailure(t *testing.T) {
	var got atomic.Int32
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		w.Write([]byte("ok"))
	})
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up)),
		CircuitBreaker: breaker.Config{
			ConsecutiveFailures: breaker.ConsecutiveFailuresConfig{Threshold: 1},
			Open:                breaker.BackoffConfig{Base: time.Minute},
		}}), func(o *Options) {
		o.Wrap = func(_ Listener, next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/bad" {
					r.Header["X-Bad"] = []string{"a\x01b"}
				}
				next.ServeHTTP(w, r)
			})
		}
	})
	for range 3 {
		resp := mustGet(t, h.h1, h.url("/bad"))
		body := readAll(t, resp)
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("X-Outrigger-Error") != "invalid_request" {
			t.Fatalf("bad header: %d %q %q, want 400 invalid_request", resp.StatusCode, resp.Header.Get("X-Outrigger-Error"), body)
		}
	}
	if got.Load() != 0 {
		t.Fatal("the invalid request reached the upstream")
	}
	resp := mustGet(t, h.h1, h.url("/good"))
	if b := readAll(t, resp); resp.StatusCode != 200 || b != "ok" {
		t.Fatalf("after invalid requests: %d %q (the breaker counted them?)", resp.StatusCode, b)
	}
}
