package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// A 2xx answer to CONNECT makes the connection a tunnel for the client
// (RFC 9112 §6.3: the response ends with its header block, and what
// follows is the tunnel's), but the proxy tunnels nothing: the bytes the
// client then sends into its tunnel were read as requests and routed,
// and the body of the answer was tunnel data to the client. A CONNECT is
// refused, whatever the route's action, never sent upstream (where
// "CONNECT /" asked for something else again), and the connection is
// closed after the answer.
func TestConnectIsRefused(t *testing.T) {
	var mu sync.Mutex
	var got []string // the requests the upstream saw
	seen := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(got)
	}
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Method+" "+r.RequestURI)
		mu.Unlock()
		fmt.Fprint(w, "from upstream")
	})
	for _, tc := range []struct {
		name string
		cfg  *config.Config
	}{
		{"cluster", simpleConfig(config.Cluster{Endpoints: eps(addr(up))})},
		{"direct_response", &config.Config{Routes: []config.Route{{Name: "all", DirectResponse: &config.DirectResponse{Status: 200, Body: "direct"}}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startProxy(t, tc.cfg)
			c := dialRaw(t, h.out)
			fmt.Fprint(c, "CONNECT internal.example:443 HTTP/1.1\r\nHost: internal.example:443\r\n\r\n"+
				"GET /tunnelled HTTP/1.1\r\nHost: internal.example\r\n\r\n")
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode/100 == 2 {
				t.Fatalf("CONNECT answered %d: the client now tunnels, the proxy does not", resp.StatusCode)
			}
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get(hdrError) != "invalid_request" {
				t.Fatalf("CONNECT answered %d %q, want 400 invalid_request", resp.StatusCode, resp.Header.Get(hdrError))
			}
			readAll(t, resp)
			// Nothing after the answer: the bytes the client sent
			// after its CONNECT are not served as a request, and the
			// connection ends (a reset for the unread bytes ends it
			// too; a timeout does not).
			rest, err := io.ReadAll(br)
			var ne net.Error
			if len(rest) > 0 || errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("after the answer: %q, %v; want the connection closed", rest, err)
			}
		})
	}
	if s := seen(); len(s) > 0 {
		t.Fatalf("the upstream got %q, want nothing", s)
	}
	// Over HTTP/2 too (RFC 9113 §8.5: after a 2xx the stream's DATA is
	// the tunnel's).
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up))}))
	req, err := http.NewRequest(http.MethodConnect, "http://"+h.out, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "internal.example:443"
	resp, err := h.h2c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if s := seen(); resp.StatusCode != http.StatusBadRequest || len(s) > 0 {
		t.Fatalf("HTTP/2 CONNECT answered %d, the upstream got %q; want 400 and nothing", resp.StatusCode, s)
	}
}

// An upstream that sends bytes past the end of a response (a second
// response, to a request smuggled past it) in the same write as that
// response: when the response ends exactly where the proxy's read of
// it does, those bytes are still in the socket. A request queued for
// the endpoint's only connection (pool.max_connections_per_endpoint)
// is handed that connection at the response's end, and gets its own
// answer on a new connection, not those bytes; it read them as its
// response.
func TestUpstreamBytesPastResponseNotReadByQueuedRequest(t *testing.T) {
	const size = 4055 // with its head, the upstream read buffer's 4 KiB
	head := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", size)
	if len(head)+size != 4096 {
		t.Fatalf("precondition: the first response is %d bytes", len(head)+size)
	}
	got1, answer1 := make(chan struct{}), make(chan struct{})
	ln, err := netListen(t)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := 0; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				for i := 0; ; i++ {
					r, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					if n == 0 && i == 0 {
						close(got1)
						select {
						case <-answer1:
						case <-time.After(10 * time.Second):
							return
						}
						io.WriteString(c, head+strings.Repeat("a", size)+
							"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfake!")
						continue
					}
					body := fmt.Sprintf("%s on connection %d", r.URL.Path, n)
					fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
				}
			}()
		}
	}()
	cl := config.Cluster{Endpoints: eps(ln.Addr().String())}
	cl.Pool.MaxConnectionsPerEndpoint = 1
	h := startProxy(t, simpleConfig(cl))

	a := dialRaw(t, h.out)
	fmt.Fprint(a, "GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
	select {
	case <-got1:
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream never got the first request")
	}
	b := dialRaw(t, h.out)
	fmt.Fprint(b, "GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
	// The second request waits for the endpoint's one connection.
	eventually(t, 10*time.Second, "the second request to wait for a connection", func() bool {
		return h.p.Clusters()[0].Limits["max_pending_requests"].InUse == 1
	})
	close(answer1)
	resp, err := http.ReadResponse(bufio.NewReader(a), nil)
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp); len(body) != size {
		t.Fatalf("first response: %d bytes of body", len(body))
	}
	resp, err = http.ReadResponse(bufio.NewReader(b), nil)
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp); body != "/second on connection 1" {
		t.Fatalf("second response: %d %q, want the upstream's answer on a new connection", resp.StatusCode, body)
	}
}

// A client that half-closes its connection after its request reads, to
// the listener, as one gone: the upstream request is cancelled and the
// proxy records 499, sending nothing. The listener then sent the
// default "200 OK" with no body for the handler that wrote nothing, and
// the client, still reading, took it for the upstream's answer. It gets
// the connection's end instead.
func TestClientHalfCloseGetsNoSuccessTheUpstreamNeverGave(t *testing.T) {
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
		fmt.Fprint(w, "from upstream")
	})
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up))}))
	c := dialRaw(t, h.out)
	fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if len(got) > 0 || err != nil {
		t.Fatalf("the client got %q (%v), want the connection's end", got, err)
	}
}
