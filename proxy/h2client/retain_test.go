package h2client

import (
	"net/http"
	"testing"
)

// Retain closes the idle connections to the hosts it lets go, takes no
// new stream on them, and closes a connection dialled to such a host
// afterwards once its stream ends; a host it keeps goes on being pooled,
// and one a later Retain keeps again is pooled as before.
func TestRetainClosesTheConnectionsOfHostsLetGo(t *testing.T) {
	a := startH2(t, func(w http.ResponseWriter, r *http.Request) {})
	b := startH2(t, func(w http.ResponseWriter, r *http.Request) {})
	tr := newTransport(t)
	get(t, tr, a.url("/"))
	get(t, tr, b.url("/"))
	conns := func(addr string) int {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		if hp := tr.hosts[addr]; hp != nil {
			return len(hp.conns)
		}
		return 0
	}

	tr.Retain(func(addr string) bool { return addr == b.addr })
	eventually(t, "the idle connection to a to close", func() bool { return conns(a.addr) == 0 })
	if conns(b.addr) != 1 {
		t.Fatal("the connection to the kept host was closed")
	}

	// A request that still goes to a dials, and its connection closes
	// with its stream.
	get(t, tr, a.url("/"))
	eventually(t, "the new connection to a to close", func() bool { return conns(a.addr) == 0 })
	if n := a.opened.Load(); n != 2 {
		t.Fatalf("%d connections opened to a, want 2", n)
	}
	get(t, tr, b.url("/"))
	if n := b.opened.Load(); n != 1 {
		t.Fatalf("%d connections opened to b, want its one kept", n)
	}

	tr.Retain(nil)
	get(t, tr, a.url("/"))
	get(t, tr, a.url("/"))
	if n, c := a.opened.Load(), conns(a.addr); n != 3 || c != 1 {
		t.Fatalf("a kept again: %d connections opened, %d pooled, want 3 and 1", n, c)
	}
}
