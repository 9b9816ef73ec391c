package h1client

import (
	"io"
	"net/http"
	"sync"
	"testing"
)

// Retain closes the idle connections to the hosts it lets go, and a
// connection to such a host is closed at the end of its exchange instead
// of kept idle, one in use at the time or dialled later alike; a host it
// keeps goes on being pooled, and one a later Retain keeps again is
// pooled as before.
func TestRetainClosesTheConnectionsOfHostsLetGo(t *testing.T) {
	release, entered := make(chan struct{}), make(chan struct{}, 1)
	a := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			entered <- struct{}{}
			<-release
		}
	})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock) // before the server's Close, which waits for it
	b := startServer(t, func(w http.ResponseWriter, r *http.Request) {})
	tr := newTransport(t)
	roundTrip := func(url string) { t.Helper(); get(t, tr, url) }
	roundTrip(b.URL + "/")
	held := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest("GET", a.URL+"/hold", nil)
		resp, err := tr.RoundTrip(req)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		held <- err
	}()
	<-entered
	roundTrip(a.URL + "/") // on a second connection, idle after

	tr.Retain(func(addr string) bool { return addr == b.Listener.Addr().String() })
	eventually(t, "the idle connection to a to close", func() bool { return a.closed.Load() == 1 })
	unblock()
	if err := <-held; err != nil {
		t.Fatalf("the request in flight: %v", err)
	}
	eventually(t, "the connection in use to close at its end", func() bool { return a.closed.Load() == 2 })
	roundTrip(a.URL + "/")
	eventually(t, "a connection dialled later to close at its end", func() bool { return a.closed.Load() == 3 })
	roundTrip(b.URL + "/")
	if n := b.opened.Load(); n != 1 {
		t.Fatalf("%d connections opened to b, want its one kept", n)
	}

	tr.Retain(nil)
	roundTrip(a.URL + "/")
	roundTrip(a.URL + "/")
	if o, c := a.opened.Load(), a.closed.Load(); o != 4 || c != 3 {
		t.Fatalf("a kept again: %d connections opened, %d closed, want 4 and 3", o, c)
	}
}
