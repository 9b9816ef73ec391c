package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"
)

// callingApp is a local app whose every request calls the cluster "svc"
// through the sidecar's outbound listener (set once it is known), twice:
// on a keep-alive connection opened before (warm, by warmUp) and on a new
// one. Each request is announced on arrived and waits for proceed before
// it calls out.
type callingApp struct {
	*httptest.Server
	outbound    string
	warm, fresh *http.Client
	arrived     chan struct{}
	proceed     chan struct{}
}

func newCallingApp(t *testing.T) *callingApp {
	a := &callingApp{
		warm:    &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second},
		fresh:   &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second},
		arrived: make(chan struct{}, 1),
		proceed: make(chan struct{}),
	}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.arrived <- struct{}{}
		select {
		case <-a.proceed:
		case <-r.Context().Done():
			return
		}
		var got []string
		for _, c := range []*http.Client{a.warm, a.fresh} {
			body, err := a.call(c)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			got = append(got, body)
		}
		fmt.Fprint(w, strings.Join(got, ", "))
	}))
	t.Cleanup(func() {
		a.Close()
		a.warm.CloseIdleConnections()
	})
	return a
}

// call makes one request to "svc" through the outbound listener.
func (a *callingApp) call(c *http.Client) (string, error) {
	req, _ := http.NewRequest("GET", "http://"+a.outbound+"/dep", nil)
	req.Host = "svc"
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return string(b), err
}

// A request in flight on the inbound listener at SIGTERM may need the
// local app to call out through the outbound listener before it can be
// answered. The outbound listener goes on accepting and serving, its
// idle connections kept, until the inbound requests are done; it stopped
// accepting, and closed its idle connections, at the same moment as the
// inbound listener, so the app's calls were refused and the request in
// flight failed although the drain had time for it.
func TestSIGTERMKeepsTheOutboundListenerForTheInboundRequestsInFlight(t *testing.T) {
	dep := newUpstream(t, "dep")
	app := newCallingApp(t)
	p := start(t, "run", "-c", writeConfig(t, sidecarConfig(dep.addr(), strings.TrimPrefix(app.URL, "http://"), "")))
	app.outbound = p.addrs.Outbound
	if _, err := app.call(app.warm); err != nil {
		t.Fatalf("before the drain: %v", err)
	}

	c := newClient(t)
	req, _ := http.NewRequest("GET", "http://"+p.addrs.Inbound+"/order", nil)
	res := doAsync(c, req)
	select {
	case <-app.arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the inbound request never reached the app")
	}
	p.signal(syscall.SIGTERM)
	waitFor(t, 5*time.Second, "the inbound listener to stop accepting", func() bool {
		conn, err := net.Dial("tcp", p.addrs.Inbound)
		if err != nil {
			return true
		}
		conn.Close()
		return false
	})
	close(app.proceed)

	select {
	case r := <-res:
		if r.err != nil || r.code != 200 || r.body != "dep /dep, dep /dep" {
			t.Fatalf("the inbound request in flight: %+v", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the inbound request in flight did not end")
	}
	if code := p.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
}
