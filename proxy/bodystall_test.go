package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// A client that sends its headers and part of a body, then stalls, must
// not hold the proxy past the route timeout: the transport's read of the
// downstream body is ended, the client gets 504 upstream_timeout, the
// upstream sees its request cut short, and the request leaves the active
// gauge. (A body an http2 cluster's transport streams from a goroutine
// of its own, one of unknown length, did not hold the request before
// either; its cases pin that it still ends the same way.)

type stallUpstream struct {
	arrived, aborted, completed atomic.Bool
}

func (s *stallUpstream) handler(w http.ResponseWriter, r *http.Request) {
	s.arrived.Store(true)
	if _, err := io.ReadAll(r.Body); err != nil {
		s.aborted.Store(true)
		return
	}
	s.completed.Store(true)
}

const stallTimeout = 200 * time.Millisecond

func startStallProxy(t *testing.T, proto config.Protocol) (*harness, *stallUpstream) {
	t.Helper()
	su := &stallUpstream{}
	up := upstream(t, proto == config.ProtocolHTTP2, su.handler)
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up)), Protocol: proto},
		func(r *config.Route) { r.Timeout = stallTimeout }))
	return h, su
}

// checkStallEnded checks what follows the 504: the upstream never got a
// whole body (and, if it got the request, saw it end), and nothing is
// left active in the proxy.
func checkStallEnded(t *testing.T, h *harness, su *stallUpstream, elapsed time.Duration) {
	t.Helper()
	if elapsed < stallTimeout || elapsed > 5*time.Second {
		t.Fatalf("answered after %v, want about the route timeout %v", elapsed, stallTimeout)
	}
	eventually(t, 5*time.Second, "the active-requests gauge back to 0", func() bool {
		return testutil.ToFloat64(h.p.m.active.WithLabelValues("svc")) == 0
	})
	if su.arrived.Load() {
		eventually(t, 5*time.Second, "the upstream to see its request end", su.aborted.Load)
	}
	if su.completed.Load() {
		t.Fatal("the upstream read a whole body")
	}
}

// sendStalledH2C POSTs over h2c to path a body that announces cl bytes
// and stalls after ten, and returns the response (its body read to the
// end) and how long that took.
func sendStalledH2C(t *testing.T, h *harness, path string, cl int64, hdr http.Header) (*http.Response, time.Duration) {
	t.Helper()
	pr, pw := io.Pipe()
	defer pw.CloseWithError(errors.New("client done"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", h.url(path), pr)
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.ContentLength = cl
	go func() { _, _ = pw.Write([]byte("0123456789")) }()
	start := time.Now()
	resp, err := h.h2c.Do(req)
	if err != nil {
		t.Fatalf("no response: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp, time.Since(start)
}

func TestStalledHTTP1RequestBodyEndsAtRouteTimeout(t *testing.T) {
	for _, proto := range []config.Protocol{config.ProtocolHTTP1, config.ProtocolHTTP2} {
		for _, tc := range []struct{ name, head, part string }{
			{"content-length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n", "0123456789"},
			{"chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", "a\r\n0123456789\r\n"},
		} {
			t.Run(string(proto)+"/"+tc.name, func(t *testing.T) {
				h, su := startStallProxy(t, proto)
				c, err := net.DialTimeout("tcp", h.out, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				start := time.Now()
				if _, err := io.WriteString(c, tc.head+tc.part); err != nil {
					t.Fatal(err)
				}
				// The client now sends nothing more and waits.
				resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: "POST"})
				if err != nil {
					t.Fatalf("no response: %v", err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				elapsed := time.Since(start)
				if resp.StatusCode != http.StatusGatewayTimeout || resp.Header.Get(hdrError) != "upstream_timeout" {
					t.Fatalf("got %d %q, want 504 upstream_timeout", resp.StatusCode, resp.Header.Get(hdrError))
				}
				checkStallEnded(t, h, su, elapsed)
			})
		}
	}
}

func TestStalledH2CRequestBodyEndsAtRouteTimeout(t *testing.T) {
	for _, proto := range []config.Protocol{config.ProtocolHTTP1, config.ProtocolHTTP2} {
		for _, cl := range []int64{100, -1} {
			name := string(proto) + "/content-length"
			if cl < 0 {
				name = string(proto) + "/no-content-length"
			}
			t.Run(name, func(t *testing.T) {
				h, su := startStallProxy(t, proto)
				resp, elapsed := sendStalledH2C(t, h, "/", cl, nil)
				if resp.StatusCode != http.StatusGatewayTimeout || resp.Header.Get(hdrError) != "upstream_timeout" {
					t.Fatalf("got %d %q, want 504 upstream_timeout", resp.StatusCode, resp.Header.Get(hdrError))
				}
				checkStallEnded(t, h, su, elapsed)
			})
		}
	}
}

func TestStalledGRPCRequestBodyEndsAtGRPCDeadline(t *testing.T) {
	su := &stallUpstream{}
	up := upstream(t, true, su.handler)
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up)), Protocol: config.ProtocolHTTP2}))
	resp, elapsed := sendStalledH2C(t, h, "/pkg.Svc/Call", 100, http.Header{
		"Content-Type": {"application/grpc"},
		"Te":           {"trailers"},
		"Grpc-Timeout": {"200m"},
	})
	if gs := resp.Header.Get("Grpc-Status"); gs != "4" || resp.Header.Get(hdrError) != "upstream_timeout" {
		t.Fatalf("got %d grpc-status %q %q, want DEADLINE_EXCEEDED upstream_timeout", resp.StatusCode, gs, resp.Header.Get(hdrError))
	}
	checkStallEnded(t, h, su, elapsed)
}
