package proxy

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// A reload that removes a mirror cluster while a copy waits for its
// body to be whole: the copy still goes, through the removed cluster's
// pool, and that pool, retired, closes the connection the copy used once
// the copy is done, as it does for the requests still in flight when it
// was retired. A connection left idle there would never be closed.
func TestMirrorCopyAfterItsClusterWasRemovedLeavesNoConnection(t *testing.T) {
	arrived := make(chan struct{}, 1)
	p := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "primary")
	})
	var open atomic.Int64
	got := make(chan struct{}, 1)
	ss := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		got <- struct{}{}
	}))
	ss.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	ss.Start()
	t.Cleanup(ss.Close)
	h := startProxy(t, mirrorConfig(addr(p), addr(ss), nil))

	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest("POST", h.url("/"), pr)
		resp, err := h.h1.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		done <- err
	}()
	if _, err := pw.Write([]byte("first half ")); err != nil {
		t.Fatal(err)
	}
	<-arrived
	// The mirror cluster goes while the body streams.
	if err := h.p.Apply(simpleConfig(config.Cluster{Endpoints: eps(addr(p))})); err != nil {
		t.Fatal(err)
	}
	_, _ = pw.Write([]byte("second half"))
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the copy did not reach the mirror")
	}
	eventually(t, 10*time.Second, "the removed mirror cluster's connection to be closed", func() bool { return open.Load() == 0 })
}
