package h1client

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/outrigger-mesh/outrigger/proxy/internal/proxytest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// server is a real net/http server on loopback that counts connections.
type server struct {
	*httptest.Server
	opened atomic.Int32 // connections accepted
	closed atomic.Int32 // connections closed or hijacked
}

func startServer(t testing.TB, h http.HandlerFunc) *server {
	t.Helper()
	s := &server{Server: httptest.NewUnstartedServer(h)}
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			s.opened.Add(1)
		case http.StateClosed, http.StateHijacked:
			s.closed.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// newTransport returns a Transport whose idle connections are closed
// when the test ends (before the servers it used are closed).
func newTransport(t testing.TB, mod ...func(*Transport)) *Transport {
	tr := &Transport{}
	for _, f := range mod {
		f(tr)
	}
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// rawServer accepts TCP connections and runs handle on each (n counts
// from 0). Cleanup closes the listener and every connection, then waits
// for the handlers.
type rawServer struct {
	addr     string
	accepted atomic.Int32
}

func startRaw(t testing.TB, handle func(c net.Conn, br *bufio.Reader, n int)) *rawServer {
	t.Helper()
	rs := &rawServer{}
	rs.addr = proxytest.Serve(t, func(c net.Conn, n int) {
		rs.accepted.Add(1)
		handle(c, bufio.NewReader(c), n)
	})
	return rs
}

// readRequest reads one request and its body from a raw connection.
func readRequest(br *bufio.Reader) (*http.Request, []byte, error) {
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, nil, err
	}
	body, err := io.ReadAll(req.Body)
	return req, body, err
}

func get(t testing.TB, tr http.RoundTripper, url string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return do(t, tr, req)
}

func do(t testing.TB, tr http.RoundTripper, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("RoundTrip: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return resp, string(b)
}

// eventually polls cond until it holds or a deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
