package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/outrigger-mesh/outrigger/proxy/internal/wire"
)

// upgradeProtocol returns the protocols an HTTP/1.1 request offers to
// switch to (RFC 9110 §7.8: "Connection: upgrade" plus "Upgrade:" with a
// list of protocols in order of preference, over one or more lines), as
// one comma-separated list, or "" when it offers none, or none the proxy
// passes on:
//
//   - an HTTP/1.0 request's Upgrade is ignored, as §7.8 requires (an
//     HTTP/1.0 intermediary may have passed it on without knowing it);
//   - an Upgrade with an element that is not a protocol (a token, and an
//     optional "/" and version token) is ignored whole;
//   - h2c is never tunnelled. The listener serves an h2c upgrade itself
//     when its Connection names HTTP2-Settings; any other that names h2c
//     would, once the upstream switched, give the client an HTTP/2
//     connection to the upstream whose every later stream bypasses the
//     routes, header edits, breakers and limits ("h2c smuggling"). As
//     Envoy does, such a request goes on without its switch headers
//     (Upgrade and HTTP2-Settings are hop-by-hop).
func upgradeProtocol(r *http.Request) string {
	if r.ProtoMajor != 1 || r.ProtoMinor < 1 || !httpguts.HeaderValuesContainsToken(r.Header["Connection"], "upgrade") {
		return ""
	}
	offer, ok := protocolList(r.Header["Upgrade"])
	if !ok || len(offer) == 0 {
		return ""
	}
	for _, p := range offer {
		name, _, _ := strings.Cut(p, "/")
		if strings.EqualFold(name, "h2c") {
			return ""
		}
	}
	return strings.Join(offer, ", ")
}

// protocolList splits Upgrade field lines into their protocols, empty
// elements left out (RFC 9110 §5.6.1); ok is false when an element is
// not a protocol.
func protocolList(lines []string) (list []string, ok bool) {
	for _, line := range lines {
		for p := range strings.SplitSeq(line, ",") {
			p = wire.TrimOWS(p)
			if p == "" {
				continue
			}
			name, version, versioned := strings.Cut(p, "/")
			if !wire.IsToken(name) || versioned && !wire.IsToken(version) {
				return nil, false
			}
			list = append(list, p)
		}
	}
	return list, true
}

// switchedConn returns the upstream connection of a 101 response and
// the protocols it switched to, once every one of them is seen to be
// one the client offered (RFC 9110 §15.2.2: a server switches only to
// protocols the request's Upgrade listed; several name layers of one
// stack, lowest first); else it closes the response and says why.
func (f *forwarding) switchedConn(resp *http.Response) (io.ReadWriteCloser, string, error) {
	back, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		resp.Body.Close()
		return nil, "", fmt.Errorf("upstream 101 body is not writable")
	}
	got, ok := protocolList(resp.Header["Upgrade"])
	if !ok || len(got) == 0 {
		back.Close()
		return nil, "", fmt.Errorf("upstream 101 names no protocol: %q", resp.Header["Upgrade"])
	}
	offer, _ := protocolList([]string{f.upgrade})
	for _, p := range got {
		if !slices.ContainsFunc(offer, func(o string) bool { return strings.EqualFold(o, p) }) {
			back.Close()
			return nil, "", fmt.Errorf("upstream switched to %q, client offered %q", p, f.upgrade)
		}
	}
	return back, strings.Join(got, ", "), nil
}

// tunnel completes a protocol switch (WebSocket and the like): it sends the
// upstream's 101 response to the client on the hijacked connection, then
// copies bytes both ways until both directions have ended, either side
// fails, the tunnel has been idle for the route's idle_timeout (the
// listener's when the route has none), or ctx
// ends (forced shutdown). back is the upstream connection of host and
// protocol what it switched to (see switchedConn).
//
// A direction ends when its source sends EOF (a TCP half-close): the end
// is passed on to the other peer (CloseWrite) and the other direction
// goes on, as a TCP relay does; when the destination cannot be half
// closed, the tunnel is closed whole.
func (f *forwarding) tunnel(ctx context.Context, resp *http.Response, back io.ReadWriteCloser, protocol, host string) error {
	conn, brw, err := http.NewResponseController(f.w).Hijack()
	if err != nil {
		back.Close()
		return fmt.Errorf("hijack: %w", err)
	}
	// The 101 is the upstream's, its header copied below: an access log
	// names host as the endpoint that answered.
	if m, ok := f.w.(UpstreamMarker); ok {
		m.MarkUpstream(f.c.name, host)
	}
	h := http.Header{}
	copyResponseHeader(h, resp.Header)
	if !f.rt.respHeaders.empty() {
		f.rt.respHeaders.apply(h)
	}
	// RFC 9110 §8.6: no Content-Length in a 1xx response; what follows
	// is the new protocol, not a body it could describe.
	delete(h, "Content-Length")
	h["Connection"] = []string{"Upgrade"}
	h["Upgrade"] = []string{protocol}
	d := f.s.limits.withDefaults().idleTimeout
	if f.rt.idleTimeout > 0 {
		d = f.rt.idleTimeout
	}
	// The hijacked connection has no deadline, and the idle watch below
	// starts with the copies: the 101 waits for a client that takes
	// nothing (one that pipelined requests and read none of the answers
	// has the socket's buffers full) at most the idle timeout, or the
	// tunnel's upstream connection was held for good.
	_ = conn.SetWriteDeadline(time.Now().Add(d))
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\n")
	_ = h.Write(brw)
	_, _ = brw.WriteString("\r\n")
	if err := brw.Flush(); err != nil {
		conn.Close()
		back.Close()
		return err
	}
	_ = conn.SetWriteDeadline(time.Time{})
	f.status = http.StatusSwitchingProtocols

	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			conn.Close()
			back.Close()
		})
	}
	stop := context.AfterFunc(ctx, closeBoth)
	defer stop()
	idle := newIdleWatch(d, closeBoth)
	defer idle.stop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		relay(conn, back, idle, closeBoth)
	}()
	// Bytes the client sent after its request are already in brw.
	relay(back, clientReader(conn, brw.Reader), idle, closeBoth)
	<-done
	closeBoth()
	return nil
}

// closeWriter is a connection that can end its sending direction alone
// (TCP's half-close): *net.TCPConn, *tls.Conn.
type closeWriter interface{ CloseWrite() error }

// relay copies one direction of a tunnel. At src's EOF it passes the end
// on to dst and returns, leaving the other direction open; on any failure,
// or when dst cannot be half closed, it closes the tunnel.
func relay(dst io.Writer, src io.Reader, idle *idleWatch, closeBoth func()) {
	if pump(dst, src, idle) == nil {
		if cw, ok := dst.(closeWriter); ok && cw.CloseWrite() == nil {
			return
		}
	}
	closeBoth()
}

// idleWatch closes a tunnel in which no bytes went either way for d, as
// Envoy's stream idle timeout closes an upgraded stream: once switched,
// no route timeout applies, and a tunnel holds a goroutine pair, an
// upstream connection and a max_requests slot. The copies note each
// transfer's time; one timer checks it when it could have expired.
type idleWatch struct {
	d       time.Duration
	base    time.Time    // the watch's start, with its monotonic reading
	last    atomic.Int64 // time since base of the last transfer
	t       *time.Timer
	close   func()
	stopped atomic.Bool
}

func newIdleWatch(d time.Duration, close func()) *idleWatch {
	w := &idleWatch{d: d, base: time.Now(), close: close}
	// Made stopped, then armed: check may use w.t as soon as it runs.
	w.t = time.AfterFunc(time.Duration(math.MaxInt64), w.check)
	w.t.Reset(d)
	return w
}

func (w *idleWatch) touch() { w.last.Store(int64(time.Since(w.base))) }

// check closes the tunnel if it has been idle for d, else waits for the
// rest of d from the last transfer.
func (w *idleWatch) check() {
	if w.stopped.Load() {
		return
	}
	if left := w.d - (time.Since(w.base) - time.Duration(w.last.Load())); left > 0 {
		w.t.Reset(left)
		if w.stopped.Load() {
			// stop ran meanwhile, its Stop before this Reset.
			w.t.Stop()
		}
		return
	}
	w.close()
}

// stop ends the watch; a check already running then neither re-arms nor
// closes.
func (w *idleWatch) stop() {
	w.stopped.Store(true)
	w.t.Stop()
}

// clientReader reads what the server's bufio.Reader holds, then the
// connection.
func clientReader(c net.Conn, br *bufio.Reader) io.Reader {
	if br.Buffered() == 0 {
		return c
	}
	return io.MultiReader(io.LimitReader(br, int64(br.Buffered())), c)
}

// pump copies src to dst through a pooled buffer until src's EOF (nil)
// or a failure, noting each transfer in idle.
func pump(dst io.Writer, src io.Reader, idle *idleWatch) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			idle.touch()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}
