package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"

	"golang.org/x/net/http/httpguts"
)

// upgradeProtocol returns the protocol an HTTP/1.1 request asks to switch
// to (RFC 9110 §7.8: "Connection: upgrade" plus "Upgrade: <protocol>"), or
// "" when it asks for none. The h2c upgrade never gets here: the listener
// serves it as HTTP/2 itself.
func upgradeProtocol(r *http.Request) string {
	if r.ProtoMajor != 1 || !httpguts.HeaderValuesContainsToken(r.Header["Connection"], "upgrade") {
		return ""
	}
	return r.Header.Get("Upgrade")
}

// tunnel completes a protocol switch (WebSocket and the like): it sends the
// upstream's 101 response to the client on the hijacked connection, then
// copies bytes both ways until either side closes or ctx ends (client gone,
// forced shutdown). resp.Body is the upstream connection, as net/http
// returns it for a 101.
func (f *forwarding) tunnel(ctx context.Context, resp *http.Response) error {
	back, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		resp.Body.Close()
		return fmt.Errorf("upstream 101 body is not writable")
	}
	if got := resp.Header.Get("Upgrade"); !strings.EqualFold(got, f.upgrade) {
		back.Close()
		return fmt.Errorf("upstream switched to %q, client asked for %q", got, f.upgrade)
	}
	conn, brw, err := http.NewResponseController(f.w).Hijack()
	if err != nil {
		back.Close()
		return fmt.Errorf("hijack: %w", err)
	}
	h := http.Header{}
	copyResponseHeader(h, resp.Header)
	if !f.rt.respHeaders.empty() {
		f.rt.respHeaders.apply(h)
	}
	h["Connection"] = []string{"Upgrade"}
	h["Upgrade"] = []string{f.upgrade}
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\n")
	_ = h.Write(brw)
	_, _ = brw.WriteString("\r\n")
	if err := brw.Flush(); err != nil {
		conn.Close()
		back.Close()
		return err
	}
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
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = pump(conn, back)
		closeBoth()
	}()
	// Bytes the client sent after its request are already in brw.
	_ = pump(back, clientReader(conn, brw.Reader))
	closeBoth()
	<-done
	return nil
}

// clientReader reads what the server's bufio.Reader holds, then the
// connection.
func clientReader(c net.Conn, br *bufio.Reader) io.Reader {
	if br.Buffered() == 0 {
		return c
	}
	return io.MultiReader(io.LimitReader(br, int64(br.Buffered())), c)
}

func pump(dst io.Writer, src io.Reader) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	_, err := io.CopyBuffer(dst, src, *bp)
	return err
}
