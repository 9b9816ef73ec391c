package h2client

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

func TestTLSConnectionSendsSchemeHTTPS(t *testing.T) {
	// httptest's certificate, on a hand-driven HTTP/2 server that answers
	// with the request's :scheme.
	cert := httptest.NewUnstartedServer(http.NotFoundHandler())
	cert.StartTLS()
	cfg := cert.TLS.Clone()
	cert.Close()
	cfg.NextProtos = []string{"h2"}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		if _, err := io.ReadFull(br, make([]byte, len(http2.ClientPreface))); err != nil {
			return
		}
		rc := &rawConn{Conn: c, hbuf: &bytesBuffer{}}
		rc.fr = http2.NewFramer(c, br)
		rc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
		rc.enc = hpack.NewEncoder(rc.hbuf)
		rc.fr.WriteSettings()
		h, err := rc.readRequestHeaders()
		if err != nil {
			return
		}
		rc.respond(h.StreamID, h.PseudoValue("scheme"))
		io.Copy(io.Discard, rc)
	}()
	defer func() { ln.Close(); <-done }()
	tr := newTransport(t, func(tr *Transport) {
		tr.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			raw, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			c := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
			if err := c.HandshakeContext(ctx); err != nil {
				raw.Close()
				return nil, err
			}
			return c, nil
		}
	})
	// The URL says http; the connection is TLS.
	if _, body := get(t, tr, "http://"+ln.Addr().String()+"/"); body != "https" {
		t.Fatalf(":scheme %q, want https", body)
	}
	tr.closeAllForTest()
}
