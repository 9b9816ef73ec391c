package h1server

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// TestShutdownAndCloseConcurrently: Shutdown and Close racing with busy,
// idle, half-sent and just-dialed connections all return, end every
// connection goroutine (goleak checks at exit), and refuse new
// connections.
func TestShutdownAndCloseConcurrently(t *testing.T) {
	for round := 0; round < 5; round++ {
		entered := make(chan struct{}, 8)
		ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/slow" {
				entered <- struct{}{}
				<-r.Context().Done()
				return
			}
			io.WriteString(w, "ok")
		}))
		var conns []*rawConn
		for i := 0; i < 3; i++ {
			c := dial(t, ts.addr)
			c.send(t, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
			conns = append(conns, c)
		}
		for i := 0; i < 3; i++ {
			within(t, 5*time.Second, "slow handler", entered)
		}
		idle := dial(t, ts.addr)
		idle.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		idle.response(t, "GET")
		half := dial(t, ts.addr)
		half.send(t, "GET / HTTP/1.1\r\nHo")
		conns = append(conns, idle, half, dial(t, ts.addr))

		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			ts.Shutdown(ctx)
		}()
		go func() {
			defer wg.Done()
			ts.Close()
		}()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		within(t, 10*time.Second, "Shutdown and Close", done)
		for i, c := range conns {
			if !c.closed(5 * time.Second) {
				t.Fatalf("round %d: connection %d left open", round, i)
			}
		}
		if c, err := net.DialTimeout("tcp", ts.addr, time.Second); err == nil {
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			_, rerr := c.Read(make([]byte, 1))
			c.Close()
			if rerr == nil {
				t.Fatal("a connection after Close was served")
			}
		}
		waitNoConns(t, ts.Server)
	}
}
