package h1client

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestRequestThatCannotBeResentSkipsConnectionClosedUnderTLS(t *testing.T) {
	var closed atomic.Int32
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateClosed {
			closed.Add(1)
		}
	}
	s.StartTLS()
	t.Cleanup(s.Close)
	tr := newTransport(t, func(tr *Transport) {
		tr.noSweep = true // the closed connection must stay idle
		tr.TLSClientConfig = s.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	})
	get(t, tr, s.URL)
	// The server closes the idle connection (a TLS server sends
	// close_notify first, as Go's and nginx's do).
	s.Config.SetKeepAlivesEnabled(false)
	eventually(t, "the server to close the idle connection", func() bool { return closed.Load() == 1 })
	eventually(t, "the server's close to reach the idle connection", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		for _, hp := range tr.hosts {
			return len(hp.idle) == 1 && !peekAlive(hp.idle[0].raw, false)
		}
		return false
	})
	s.Config.SetKeepAlivesEnabled(true)
	resp, err := tr.RoundTrip(mustRequest(t, "POST", s.URL, nil).WithContext(ctxTimeout(t, 5*time.Second)))
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
}

func TestIdleTLSConnectionClosedByServerIsSwept(t *testing.T) {
	s := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	t.Cleanup(s.Close)
	tr := newTransport(t, func(tr *Transport) {
		tr.MaxConnsPerHost = 1
		tr.TLSClientConfig = s.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	})
	get(t, tr, s.URL)
	s.Config.SetKeepAlivesEnabled(false) // closes the idle connection
	// No request comes: the sweep finds the closed connection, its
	// close_notify unread, and frees its socket and its slot.
	eventually(t, "idle connection swept", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		return len(tr.hosts) == 0
	})
}

// Under TLS, bytes waiting on an idle connection may be a post-handshake
// message, but the connection's taker reads them through TLS to tell:
// a body sent after a HEAD response is not read as the next response.
func TestUnsolicitedBytesUnderTLSAreNotReadAsNextResponse(t *testing.T) {
	ts := httptest.NewUnstartedServer(nil)
	ts.StartTLS()
	serverTLS := ts.TLS.Clone()
	clientTLS := ts.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	ts.Close()

	headRead, lateSent := make(chan struct{}), make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(headRead) }) }
	t.Cleanup(release) // before the server's, which waits for it
	rs := startRaw(t, func(c net.Conn, _ *bufio.Reader, n int) {
		tc := tls.Server(c, serverTLS)
		br := bufio.NewReader(tc)
		for i := 0; ; i++ {
			if _, _, err := readRequest(br); err != nil {
				return
			}
			if n == 0 && i == 0 {
				io.WriteString(tc, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
				<-headRead
				io.WriteString(tc, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfake!")
				close(lateSent)
				continue
			}
			io.WriteString(tc, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal")
		}
	})
	tr := newTransport(t, func(tr *Transport) {
		tr.noSweep = true
		tr.TLSClientConfig = clientTLS
	})
	url := "https://" + rs.addr + "/"
	resp, err := tr.RoundTrip(mustRequest(t, "HEAD", url, nil))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	release()
	<-lateSent
	eventually(t, "the late bytes to reach the idle connection", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		for _, hp := range tr.hosts {
			return len(hp.idle) == 1 && !peekAlive(hp.idle[0].raw, false)
		}
		return false
	})
	_, body := get(t, tr, url)
	if body != "real" {
		t.Fatalf("next response's body %q, want the server's answer to it", body)
	}
}

// timesOut reads nothing until its read deadline, as a TLS connection
// does when the bytes waiting were a post-handshake message.
type timesOut struct{ net.Conn }

func (timesOut) Read([]byte) (int, error) { return 0, os.ErrDeadlineExceeded }

func TestPostHandshakeMessageKeepsTLSConnectionAlive(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	raw, err := cc.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	sc.Write([]byte{0x17}) // a record's first byte
	eventually(t, "the byte to arrive", func() bool { return !peekAlive(raw, false) })
	c := &conn{nc: timesOut{cc}, raw: raw, tlsState: &tls.ConnectionState{}}
	if !c.alive() {
		t.Fatal("a TLS connection whose waiting bytes the TLS layer consumed was found dead")
	}
	c.tlsState = nil
	if c.alive() {
		t.Fatal("a plain connection with bytes waiting was found alive")
	}
}

// Bytes an upstream sent past a response in the TLS record that ends it
// are held by the TLS layer, not by the connection's read buffer or its
// socket: they are looked for too before the connection is pooled.
func TestBytesPastResponseInItsTLSRecordAreNotReadAsNextResponse(t *testing.T) {
	ts := httptest.NewUnstartedServer(nil)
	ts.StartTLS()
	serverTLS := ts.TLS.Clone()
	serverTLS.DynamicRecordSizingDisabled = true // records of up to 16 KiB
	clientTLS := ts.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	ts.Close()

	body := strings.Repeat("x", 10000)
	rs := startRaw(t, func(c net.Conn, _ *bufio.Reader, n int) {
		tc := tls.Server(c, serverTLS)
		br := bufio.NewReader(tc)
		for i := 0; ; i++ {
			if _, _, err := readRequest(br); err != nil {
				return
			}
			if n == 0 && i == 0 {
				// One write, one record: the response and another.
				io.WriteString(tc, "HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n"+body+
					"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfake!")
				continue
			}
			io.WriteString(tc, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal")
		}
	})
	tr := newTransport(t, func(tr *Transport) {
		tr.noSweep = true
		tr.TLSClientConfig = clientTLS
	})
	url := "https://" + rs.addr + "/"
	resp, err := tr.RoundTrip(mustRequest(t, "GET", url, nil))
	if err != nil {
		t.Fatal(err)
	}
	// Read as a proxy copies a body: in pieces larger than the read
	// buffer, so that the body's end is read straight from TLS.
	var got strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		got.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	resp.Body.Close()
	if got.String() != body {
		t.Fatalf("first body: %d bytes", got.Len())
	}
	if _, b := get(t, tr, url); b != "real" {
		t.Fatalf("next response's body %q, want the server's answer to it", b)
	}
}
