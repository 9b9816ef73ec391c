package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"

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
