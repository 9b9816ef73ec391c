package health

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// h2cHangServer is an h2c server that counts its open connections and
// whose handler hangs until its stream ends.
func h2cHangServer(t *testing.T) (*httptest.Server, *atomic.Int64, chan struct{}) {
	var open atomic.Int64
	entered := make(chan struct{}, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-r.Context().Done()
	}))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &open, entered
}

// h2Checker is a Checker of one h2c endpoint whose handler hangs, with
// checks that never time out, and the server's open connections.
func h2Checker(t *testing.T) (*Checker, *atomic.Int64, chan struct{}) {
	srv, open, entered := h2cHangServer(t)
	cfg := fastConfig(HTTP)
	cfg.HTTP2 = true
	cfg.Timeout = time.Hour
	c, err := New(cfg, []string{srv.Listener.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	return c, open, entered
}

// waitAllClosed polls until the server has no connection left open.
func waitAllClosed(t *testing.T, open *atomic.Int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for open.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := open.Load(); n != 0 {
		t.Errorf("%d HTTP/2 connection(s) still open 5s after Close returned", n)
	}
}

// Close during a hung HTTP/2 check closes the check's connection: net/http
// ends a cancelled HTTP/2 stream on a goroutine of its own, so the
// connection may still look busy when Close closes the idle ones.
func TestCloseClosesTheHTTP2ConnectionOfAHungCheck(t *testing.T) {
	c, open, entered := h2Checker(t)
	c.Start()
	<-entered
	c.Close()
	waitAllClosed(t, open)
}

// wconn blocks its first Write until release is closed.
type wconn struct {
	net.Conn
	release chan struct{}
}

func (w *wconn) Write(b []byte) (int, error) { <-w.release; return w.Conn.Write(b) }

// A dial that succeeds as Close cancels its check becomes an HTTP/2
// connection only after the dial function returned (after close waited for
// the dials and closed the idle connections); Close still closes it.
func TestCloseClosesAnHTTP2ConnectionDialedAsItCloses(t *testing.T) {
	c, open, _ := h2Checker(t)
	p := c.prober.(*httpProber)
	release := make(chan struct{})
	dialing := make(chan struct{})
	p.transports[0].DialContext = p.bound(func(ctx context.Context, addr string) (net.Conn, error) {
		raw, err := p.dialTracked(context.Background(), 0, addr)
		if err != nil {
			return nil, err
		}
		close(dialing)
		<-ctx.Done() // the check ended (Close)
		return &wconn{Conn: raw, release: release}, nil
	})
	c.Start()
	<-dialing
	c.Close()
	close(release)
	waitAllClosed(t, open)
}
