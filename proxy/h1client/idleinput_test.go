package h1client

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"sync"
	"testing"

	"github.com/outrigger-mesh/outrigger/proxy/internal/sockio"
)

// An upstream that writes a second, unasked response on a connection
// after answering (as one does to a request smuggled past it): the
// connection is not reused, however short its idle spell, and the next
// request, another client's perhaps, gets its own answer, not that one.
// The pool knows of the bytes from the socket (InputPender) without a
// system call.
func TestUnaskedResponseOnIdleConnectionIsNotReadAsTheNext(t *testing.T) {
	read, written := make(chan struct{}), make(chan struct{})
	rs := startRaw(t, func(c net.Conn, br *bufio.Reader, n int) {
		for {
			if _, _, err := readRequest(br); err != nil {
				return
			}
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nconn%d", n)
			if n == 0 {
				<-read // after the client has read the answer, as a late one
				fmt.Fprint(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfake!")
				close(written)
			}
		}
	})
	var (
		mu    sync.Mutex
		conns []*sockio.Conn
	)
	tr := newTransport(t, func(tr *Transport) {
		tr.noSweep = true
		tr.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			w := sockio.Wrap(c)
			if sc, ok := w.(*sockio.Conn); ok {
				mu.Lock()
				conns = append(conns, sc)
				mu.Unlock()
			}
			return w, nil
		}
	})
	url := "http://" + rs.addr
	if _, body := get(t, tr, url); body != "conn0" {
		t.Fatalf("first answer %q", body)
	}
	close(read)
	<-written
	mu.Lock()
	if len(conns) != 1 {
		mu.Unlock()
		t.Skip("the socket cannot be watched here")
	}
	first := conns[0]
	mu.Unlock()
	eventually(t, "the unasked bytes to be seen", first.InputPending)
	if _, body := get(t, tr, url); body != "conn1" {
		t.Fatalf("second request answered %q, want conn1 from a new connection", body)
	}
}
