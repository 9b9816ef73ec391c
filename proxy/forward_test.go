package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

func TestForwardHTTP1HeadersAddedAndHopByHopStripped(t *testing.T) {
	got := make(chan http.Header, 1)
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Clone()
		h.Set("X-Seen-Host", r.Host)
		h.Set("X-Seen-Proto", r.Proto)
		h.Set("X-Seen-Path", r.URL.RequestURI())
		got <- h
		w.Header().Set("Connection", "X-Internal")
		w.Header().Set("X-Internal", "secret")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-App", "yes")
		fmt.Fprint(w, "hello")
	})
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up))}))

	req, _ := http.NewRequest(http.MethodGet, h.url("/a/b?q=1"), nil)
	req.Host = "svc.example"
	req.Header.Set("Connection", "X-Hop")
	req.Header.Set("X-Hop", "drop me")
	req.Header.Set("Proxy-Authorization", "Basic Zm9vOmJhcg==")
	req.Header.Set("Te", "trailers")
	req.Header.Set("X-Forwarded-For", "10.0.0.1")
	req.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	resp, err := h.h1.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp); body != "hello" {
		t.Fatalf("body %q", body)
	}
	for _, k := range []string{"X-Internal", "Keep-Alive"} {
		if v := resp.Header.Get(k); v != "" {
			t.Errorf("response hop-by-hop header %s=%q leaked", k, v)
		}
	}
	if resp.Header.Get("X-App") != "yes" {
		t.Errorf("X-App lost")
	}
	up1 := <-got
	for _, k := range []string{"X-Hop", "Proxy-Authorization"} {
		if v := up1.Get(k); v != "" {
			t.Errorf("request hop-by-hop header %s=%q forwarded", k, v)
		}
	}
	if v := up1.Get("Te"); v != "trailers" {
		t.Errorf("Te = %q, want trailers kept", v)
	}
	if v := up1.Get("X-Forwarded-For"); v != "10.0.0.1, 127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q", v)
	}
	if v := up1.Get("X-Forwarded-Proto"); v != "http" {
		t.Errorf("X-Forwarded-Proto = %q", v)
	}
	if v := up1.Get("X-Request-Id"); len(v) != 32 {
		t.Errorf("X-Request-Id = %q, want 32 hex chars", v)
	}
	if v := up1.Get("Traceparent"); v != "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" {
		t.Errorf("traceparent changed: %q", v)
	}
	if v := up1.Get("X-Seen-Host"); v != "svc.example" {
		t.Errorf("Host = %q, want the client's authority", v)
	}
	if v := up1.Get("X-Seen-Path"); v != "/a/b?q=1" {
		t.Errorf("path = %q", v)
	}
	if v := up1.Get("User-Agent"); v != "Go-http-client/1.1" {
		t.Errorf("User-Agent = %q, want the client's", v)
	}
}

func TestRequestIDKeptWhenPresent(t *testing.T) {
	got := make(chan string, 1)
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) { got <- r.Header.Get("X-Request-Id") })
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up))}))
	readAll(t, mustGet(t, h.h1, h.url("/"), "X-Request-Id", "abc-123"))
	if v := <-got; v != "abc-123" {
		t.Fatalf("x-request-id = %q", v)
	}
}

func TestH2CPriorKnowledgeDownstreamAndUpstream(t *testing.T) {
	up := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Upstream-Proto", r.Proto)
		fmt.Fprint(w, "ok")
	})
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up)), Protocol: config.ProtocolHTTP2}))
	resp := mustGet(t, h.h2c, h.url("/"))
	if resp.Proto != "HTTP/2.0" {
		t.Fatalf("downstream proto %s", resp.Proto)
	}
	if p := resp.Header.Get("X-Upstream-Proto"); p != "HTTP/2.0" {
		t.Fatalf("upstream proto %s", p)
	}
	if b := readAll(t, resp); b != "ok" {
		t.Fatalf("body %q", b)
	}
}

func TestH1DownstreamToH2CUpstream(t *testing.T) {
	up := upstream(t, true, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, r.Proto) })
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up)), Protocol: config.ProtocolHTTP2}))
	if b := readAll(t, mustGet(t, h.h1, h.url("/"))); b != "HTTP/2.0" {
		t.Fatalf("upstream saw %q", b)
	}
}

func TestH2CUpgradeDownstream(t *testing.T) {
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "upgraded") })
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up))}))
	status, body := h2cUpgradeGet(t, h.out, "/x")
	if status != "200" || body != "upgraded" {
		t.Fatalf("status %s body %q", status, body)
	}
}

func TestTrailersForwardedHTTP1AndH2(t *testing.T) {
	for _, proto := range []config.Protocol{config.ProtocolHTTP1, config.ProtocolHTTP2} {
		t.Run(string(proto), func(t *testing.T) {
			up := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Trailer", "X-Announced")
				fmt.Fprint(w, "body")
				w.Header().Set("X-Announced", "a")
				w.Header().Set(http.TrailerPrefix+"X-Late", "b")
			})
			h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up)), Protocol: proto}))
			for _, c := range []*http.Client{h.h1, h.h2c} {
				resp := mustGet(t, c, h.url("/"), "Te", "trailers")
				if b := readAll(t, resp); b != "body" {
					t.Fatalf("body %q", b)
				}
				if v := resp.Trailer.Get("X-Announced"); v != "a" {
					t.Errorf("%s: announced trailer = %q (%v)", resp.Proto, v, resp.Trailer)
				}
				if v := resp.Trailer.Get("X-Late"); v != "b" {
					t.Errorf("%s: unannounced trailer = %q (%v)", resp.Proto, v, resp.Trailer)
				}
			}
		})
	}
}

// An upstream's 1xx goes downstream as it arrives, without its
// hop-by-hop fields (and those its Connection names), as a final
// response goes; they were forwarded.
func TestInformationalResponsesForwarded(t *testing.T) {
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.Header().Set("Connection", "X-Hop")
		w.Header().Set("X-Hop", "secret")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.WriteHeader(http.StatusEarlyHints)
		for _, k := range []string{"Link", "Connection", "X-Hop", "Keep-Alive"} {
			w.Header().Del(k)
		}
		fmt.Fprint(w, "final")
	})
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up))}))
	var hints []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, hdr textproto.MIMEHeader) error {
		hints = append(hints, fmt.Sprintf("%d %s", code, hdr.Get("Link")))
		for _, k := range []string{"Connection", "X-Hop", "Keep-Alive"} {
			if v := hdr.Get(k); v != "" {
				hints = append(hints, "hop-by-hop "+k+": "+v)
			}
		}
		return nil
	}}
	req, _ := http.NewRequest(http.MethodGet, h.url("/"), nil)
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
	resp, err := h.h1.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if b := readAll(t, resp); b != "final" {
		t.Fatalf("body %q", b)
	}
	if len(hints) != 1 || hints[0] != "103 </style.css>; rel=preload" {
		t.Fatalf("1xx seen: %q", hints)
	}
}

func TestStreamingResponseFlushedPerChunk(t *testing.T) {
	next := make(chan struct{})
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 0; i < 3; i++ {
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
			select {
			case <-next:
			case <-r.Context().Done():
				return
			case <-time.After(10 * time.Second):
				return
			}
		}
	})
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up))}))
	resp := mustGet(t, h.h1, h.url("/events"))
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for i := 0; i < 3; i++ {
		// The upstream sends event i+1 only after we got event i: without
		// per-chunk flushing this deadlocks until the 10s fallback.
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("data: %d\n", i); line != want {
			t.Fatalf("got %q want %q", line, want)
		}
		_, _ = br.ReadString('\n')
		next <- struct{}{}
	}
}

func TestUpstreamMidStreamFailureAbortsDownstream(t *testing.T) {
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		fmt.Fprint(w, "partial")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	})
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up))}))
	// The error shows either before the headers (they were still
	// buffered when the proxy aborted) or while reading the body; never
	// as a complete response.
	resp, err := h.h1.Get(h.url("/"))
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Fatal("truncated upstream body read as complete downstream")
	}
}

// h2cUpgradeGet performs GET path over HTTP/1.1 with "Upgrade: h2c"
// (RFC 7540 §3.2) and reads the response from stream 1 after the switch.
func h2cUpgradeGet(t *testing.T, addr, path string) (status, body string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	// HTTP2-Settings: an empty SETTINGS payload, base64url.
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: \r\n\r\n", path, addr)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade answered %s", resp.Status)
	}
	return readH2Stream1(t, c, br)
}

func TestRoutingLocalReplyNoRoute(t *testing.T) {
	cfg := simpleConfig(config.Cluster{Endpoints: eps("127.0.0.1:1")}, func(r *config.Route) {
		r.Match.Path.Prefix = "/only/"
	})
	h := startProxy(t, cfg)
	resp := mustGet(t, h.h1, h.url("/elsewhere"))
	body := readAll(t, resp)
	if resp.StatusCode != 404 || resp.Header.Get("X-Outrigger-Error") != "no_route" || !strings.Contains(body, "no route") {
		t.Fatalf("got %d %q %q", resp.StatusCode, resp.Header.Get("X-Outrigger-Error"), body)
	}
}

func TestHasBodyLeavesOutEmptyBodies(t *testing.T) {
	eof := io.NopCloser(strings.NewReader(""))
	for _, c := range []struct {
		name string
		r    *http.Request
		want bool
	}{
		{"nil body", &http.Request{ContentLength: 0}, false},
		{"NoBody", &http.Request{Body: http.NoBody}, false},
		{"h2 stream ended with headers", &http.Request{Body: eof, ContentLength: 0}, false},
		{"unknown length", &http.Request{Body: eof, ContentLength: -1}, true},
		{"known length", &http.Request{Body: eof, ContentLength: 3}, true},
		{"empty with trailers", &http.Request{Body: eof, ContentLength: 0, Trailer: http.Header{"X-T": nil}}, true},
	} {
		if got := hasBody(c.r); got != c.want {
			t.Errorf("%s: hasBody = %v, want %v", c.name, got, c.want)
		}
	}
}
