package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/breaker"
	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// uploadPerTry is the per-try timeout of these tests: long enough for an
// upstream on a loaded machine to answer within it once it has the body.
// A slow client sends a piece of its body every uploadPace, and takes
// longer than uploadPerTry to upload it.
const (
	uploadPerTry = time.Second
	uploadPace   = uploadPerTry / 3
)

// uploadSlowly sends a request with a body of pieces bytes to addr over
// a plain socket, one piece every pace (the client's own slowness, the
// behaviour under test, not a wait for anything), and reads the
// response. It returns the response, its body and the time from the
// first byte sent to the response read.
func uploadSlowly(t *testing.T, addr, method string, pieces int, pace time.Duration) (*http.Response, string, time.Duration) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	if _, err := fmt.Fprintf(c, "%s / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", method, pieces*10); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < pieces; i++ {
		if i > 0 {
			<-time.After(pace)
		}
		if _, err := fmt.Fprintf(c, "piece %03d\n", i); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("no response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("response body: %v", err)
	}
	return resp, string(b), time.Since(start)
}

// The per-try timeout runs from the end of the request, as Envoy's does:
// a client that takes longer than per_try_timeout to upload its body to
// an upstream that answers as soon as it has read it gets the answer,
// not a 504 upstream_timeout that is retried and counted against a
// healthy upstream. It ran from the attempt's start, upload included.
func TestPerTryTimeoutStartsAfterSlowUpload(t *testing.T) {
	for _, proto := range []config.Protocol{config.ProtocolHTTP1, config.ProtocolHTTP2} {
		t.Run(string(proto), func(t *testing.T) {
			up := upstream(t, proto == config.ProtocolHTTP2, func(w http.ResponseWriter, r *http.Request) {
				b, err := io.ReadAll(r.Body)
				if err != nil {
					return
				}
				fmt.Fprintf(w, "got %d", len(b))
			})
			cc := config.Cluster{Endpoints: eps(addr(up)), Protocol: proto, CircuitBreaker: tripsAfter(2)}
			h := startProxy(t, simpleConfig(cc, func(r *config.Route) {
				r.Timeout = 5 * time.Second
				r.PerTryTimeout = uploadPerTry
			}))
			for i := 0; i < 2; i++ {
				resp, body, took := uploadSlowly(t, h.out, "POST", 5, uploadPace)
				if resp.StatusCode != 200 || body != "got 50" {
					t.Fatalf("upload %d over %v: %d %q %q, want 200 %q", i, took, resp.StatusCode,
						resp.Header.Get(hdrError), body, "got 50")
				}
				if took <= uploadPerTry {
					t.Fatalf("upload %d took %v, not longer than the per-try timeout", i, took)
				}
			}
			if s := svcBreaker(h); s.State != breaker.StateClosed {
				t.Fatalf("breaker %v after slow uploads to a healthy upstream", s.State)
			}
		})
	}
}

// The other side: an upstream that is slow once it has the whole body
// still meets the per-try timeout, counted from the body's end.
func TestPerTryTimeoutBoundsUpstreamSlowAfterUpload(t *testing.T) {
	for _, proto := range []config.Protocol{config.ProtocolHTTP1, config.ProtocolHTTP2} {
		t.Run(string(proto), func(t *testing.T) {
			stop := make(chan struct{})
			up := upstream(t, proto == config.ProtocolHTTP2, func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				select {
				case <-r.Context().Done():
				case <-stop:
				}
			})
			t.Cleanup(func() { close(stop) })
			cc := config.Cluster{Endpoints: eps(addr(up)), Protocol: proto, CircuitBreaker: tripsAfter(1)}
			h := startProxy(t, simpleConfig(cc, func(r *config.Route) {
				r.Timeout = 10 * time.Second
				r.PerTryTimeout = uploadPerTry
			}))
			resp, _, took := uploadSlowly(t, h.out, "POST", 4, uploadPace)
			if resp.StatusCode != http.StatusGatewayTimeout || resp.Header.Get(hdrError) != "upstream_timeout" {
				t.Fatalf("%d %q, want 504 upstream_timeout", resp.StatusCode, resp.Header.Get(hdrError))
			}
			// The upload took 3 paces; the timeout then ran whole, and
			// well before the route's.
			if took < 3*uploadPace+uploadPerTry || took > 6*time.Second {
				t.Fatalf("504 after %v: the per-try timeout did not run from the upload's end", took)
			}
			// The upstream's timeout counts against it.
			if s := svcBreaker(h); s.State != breaker.StateOpen {
				t.Fatalf("breaker %v after the upstream's per-try timeout", s.State)
			}
		})
	}
}

// A retry after a per-try timeout replays the body kept from the slow
// upload: its own timer runs from its (fast) replay, so the retry gets
// the answer. Both attempts used to be cut while the client was still
// uploading.
func TestRetryAfterPerTryTimeoutReplaysSlowUpload(t *testing.T) {
	var calls atomic.Int32
	stop := make(chan struct{})
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		if calls.Add(1) == 1 {
			select {
			case <-r.Context().Done():
			case <-stop:
			}
			return
		}
		fmt.Fprintf(w, "got %d %s", len(b), strings.TrimSpace(string(b[len(b)-10:])))
	})
	t.Cleanup(func() { close(stop) })
	rp := config.RetryPolicy{Attempts: 1, RetryOn: []config.RetryCondition{"gateway-error"},
		Backoff: config.Backoff{Base: time.Microsecond}}
	h := startProxy(t, retryCfg([]string{addr(up)}, rp, func(r *config.Route) {
		r.Timeout = 10 * time.Second
		r.PerTryTimeout = uploadPerTry
	}))
	resp, body, took := uploadSlowly(t, h.out, "PUT", 5, uploadPace)
	if resp.StatusCode != 200 || body != "got 50 piece 004" || calls.Load() != 2 {
		t.Fatalf("after %v: %d %q %q, %d calls; want 200 %q from the retry", took, resp.StatusCode,
			resp.Header.Get(hdrError), body, calls.Load(), "got 50 piece 004")
	}
}

// sendUnread sends a request of method with a body of size bytes to
// addr over a plain socket, writing it on a goroutine of its own (it
// blocks once the path to an upstream that does not read is full), and
// returns the response and how long it took to come.
func sendUnread(t *testing.T, addr, method string, size int) (*http.Response, time.Duration) {
	t.Helper()
	c := dialRaw(t, addr)
	// Tens of MiB through the proxy, twice for a retry, under the race
	// detector on a busy machine: more than dialRaw's 10 s at times.
	_ = c.SetDeadline(time.Now().Add(40 * time.Second))
	start := time.Now()
	go func() {
		if _, err := fmt.Fprintf(c, "%s / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", method, size); err != nil {
			return
		}
		piece := make([]byte, 64<<10)
		for left := size; left > 0; left -= len(piece) {
			if _, err := c.Write(piece[:min(left, len(piece))]); err != nil {
				return // the proxy answered and closed
			}
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("no response: %v", err)
	}
	resp.Body.Close()
	return resp, time.Since(start)
}

// An upstream that stops taking the request body holds the attempt in
// its write, before the body's end: the per-try timeout bounds that wait
// too (it is the upstream's, not the client's), so the attempt ends a
// per-try timeout, counted against the upstream, even with no route
// timeout. The timer used to wait for the body's end, which never came.
func TestPerTryTimeoutBoundsUpstreamThatStopsReading(t *testing.T) {
	for _, proto := range []config.Protocol{config.ProtocolHTTP1, config.ProtocolHTTP2} {
		t.Run(string(proto), func(t *testing.T) {
			stop := make(chan struct{})
			up := upstream(t, proto == config.ProtocolHTTP2, func(w http.ResponseWriter, r *http.Request) {
				<-stop // never reads the body
			})
			t.Cleanup(func() { close(stop) })
			cc := config.Cluster{Endpoints: eps(addr(up)), Protocol: proto, CircuitBreaker: tripsAfter(1)}
			h := startProxy(t, simpleConfig(cc, func(r *config.Route) {
				r.TimeoutDisabled = true
				r.PerTryTimeout = 200 * time.Millisecond
			}))
			resp, took := sendUnread(t, h.out, "POST", 32<<20)
			if resp.StatusCode != http.StatusGatewayTimeout || resp.Header.Get(hdrError) != "upstream_timeout" {
				t.Fatalf("after %v: %d %q, want 504 upstream_timeout", took, resp.StatusCode, resp.Header.Get(hdrError))
			}
			if s := svcBreaker(h); s.State != breaker.StateOpen {
				t.Fatalf("breaker %v after the upstream's per-try timeout", s.State)
			}
		})
	}
}

// The attempt cut short that way is retried when the body can be
// replayed: the retry reads the rest of the body from the client after
// the part kept from the first attempt, and its upstream gets all of it.
func TestRetryAfterUpstreamStoppedReadingBody(t *testing.T) {
	const size = 24 << 20
	stop := make(chan struct{})
	var stuck, got atomic.Int64
	a := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		stuck.Add(1)
		<-stop
	})
	b := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			return
		}
		got.Store(n)
		fmt.Fprintf(w, "got %d", n)
	})
	t.Cleanup(func() { close(stop) })
	rp := config.RetryPolicy{Attempts: 1, RetryOn: []config.RetryCondition{"gateway-error"},
		Backoff: config.Backoff{Base: time.Microsecond}, MaxBufferedBodyBytes: size}
	h := startProxy(t, retryCfg([]string{addr(a), addr(b)}, rp, func(r *config.Route) {
		r.TimeoutDisabled = true
		// The retry's each wait on its upstream, and its answer, must come
		// within it on a loaded machine too.
		r.PerTryTimeout = time.Second
	}))
	resp, took := sendUnread(t, h.out, "PUT", size)
	if resp.StatusCode != 200 || stuck.Load() != 1 || got.Load() != size {
		t.Fatalf("after %v: %d %q; stuck upstream called %d times, the other got %d bytes, want 200 and %d",
			took, resp.StatusCode, resp.Header.Get(hdrError), stuck.Load(), got.Load(), size)
	}
}
