package proxy

import (
	"net"
	"net/http"
	"testing"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// The local app restarting fails the requests that reach it while it is
// down, and only those: the first request once it is back on its port is
// served. A circuit breaker in front of it (the default of any other
// cluster) opened after five failures and kept answering 503
// breaker_open for its open period after the app was back.
func TestInboundRequestsReachTheAppAsSoonAsItIsBack(t *testing.T) {
	// The app is down: nothing listens on its port, which no listener
	// the test starts meanwhile is given.
	appAddr, release := holdRefusedAddr(t)

	cfg := &config.Config{}
	cfg.Listeners.Inbound.App = appAddr
	h := startProxy(t, cfg)
	for i := range 8 {
		resp, err := h.h1.Get("http://" + h.in + "/")
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("request %d with the app down: %d %s", i, resp.StatusCode, resp.Header.Get("X-Outrigger-Error"))
		}
	}

	release()
	ln, err := net.Listen("tcp", appAddr)
	if err != nil {
		t.Skipf("the app's port was taken meanwhile: %v", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("back")) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	resp, err := h.h1.Get("http://" + h.in + "/")
	if err != nil {
		t.Fatal(err)
	}
	if b := readAll(t, resp); resp.StatusCode != http.StatusOK || b != "back" {
		t.Fatalf("first request after the app is back: %d %q (%s)", resp.StatusCode, b, resp.Header.Get("X-Outrigger-Error"))
	}
}
