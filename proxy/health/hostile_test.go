package health

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protowire"
)

// Upstreams that answer checks badly, on purpose or not: each check stays
// bounded by its timeout, reads a bounded amount, and leaves no connection
// whose next answer could be taken for another check's.

// rawServer accepts connections on 127.0.0.1 and runs serve on each, for
// answers net/http's server would not give. Cleanup closes the listener
// and every connection, then waits for the serve calls.
func rawServer(t *testing.T, serve func(c net.Conn, br *bufio.Reader)) string {
	t.Helper()
	addr, _ := rawServerHangUp(t, serve)
	return addr
}

// rawServerHangUp is rawServer, and also returns a function that closes
// every connection accepted so far.
func rawServerHangUp(t *testing.T, serve func(c net.Conn, br *bufio.Reader)) (string, func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				serve(c, bufio.NewReader(c))
			}()
		}
	}()
	hangUp := func() {
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}
	t.Cleanup(func() {
		ln.Close()
		hangUp()
		wg.Wait()
	})
	return ln.Addr().String(), hangUp
}

// hold reads c until the peer closes it (or the test's cleanup does).
func hold(br *bufio.Reader) {
	for {
		if _, err := br.ReadByte(); err != nil {
			return
		}
	}
}

// checkWithin runs one check of endpoint 0 and fails the test when it has
// not returned within limit.
func checkWithin(t *testing.T, c *Checker, limit time.Duration) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { _, _, err := c.step(t.Context(), 0, time.Now()); done <- err }()
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
		t.Fatalf("check still running after %v (timeout %v)", limit, c.cfg.Timeout)
		return nil
	}
}

// A 101 hands the connection to the caller, out of net/http's reach: the
// check's context no longer bounds a read of it, so reading its "body"
// hung the check (and Close, and so a reload) for as long as the server
// kept the connection open.
func TestHTTPSwitchingProtocolsFailsAndClosesItsConnection(t *testing.T) {
	closed := make(chan struct{}, 4)
	addr := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"))
		hold(br)
		closed <- struct{}{}
	})
	cfg := fastConfig(HTTP)
	cfg.Timeout = time.Second
	cfg.Statuses = []StatusRange{{100, 599}} // even when any status passes
	c := newChecker(t, cfg, []string{addr})
	err := checkWithin(t, c, 5*time.Second)
	if cause, reason := causeOf(t, err); cause != CauseProtocol || reason != "http: 101 Switching Protocols to a check that asked for no upgrade" {
		t.Fatalf("a 101: %q (cause %q)", reason, cause)
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the switched connection was left open")
	}
}

func TestCloseEndsACheckGivenA101(t *testing.T) {
	answered := make(chan struct{}, 1)
	addr, hangUp := rawServerHangUp(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"))
		select {
		case answered <- struct{}{}:
		default:
		}
		hold(br)
	})
	cfg := fastConfig(HTTP)
	cfg.Timeout = time.Hour
	c := startChecker(t, cfg, []string{addr})
	t.Cleanup(hangUp) // before c's Close, should closeWithin fail
	<-answered
	// Close once the check holds the response (net/http cancels a request
	// closed before), or has already failed it.
	waitFor(t, "the check holds the 101", func() bool {
		return c.Status(0).Checked || inStack("net/http.(*readWriteCloserBody).Read")
	})
	closeWithin(t, c, 5*time.Second)
}

// Each way of not answering fails the check at its timeout: the request,
// the response head, and the body.
func TestHTTPStallsFailWithTimeout(t *testing.T) {
	stalls := map[string]func(c net.Conn, br *bufio.Reader){
		"accepts and never reads": func(c net.Conn, br *bufio.Reader) { hold(br) },
		"reads and never answers": func(c net.Conn, br *bufio.Reader) {
			http.ReadRequest(br)
			hold(br)
		},
		"half a status line": func(c net.Conn, br *bufio.Reader) {
			http.ReadRequest(br)
			c.Write([]byte("HTTP/1.1 20"))
			hold(br)
		},
		"headers never end": func(c net.Conn, br *bufio.Reader) {
			http.ReadRequest(br)
			c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"))
			hold(br)
		},
		"body shorter than its length": func(c net.Conn, br *bufio.Reader) {
			http.ReadRequest(br)
			c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"))
			hold(br)
		},
		"chunked body never ends": func(c net.Conn, br *bufio.Reader) {
			http.ReadRequest(br)
			c.Write([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n"))
			hold(br)
		},
		"body trickles": func(c net.Conn, br *bufio.Reader) {
			http.ReadRequest(br)
			c.Write([]byte("HTTP/1.1 200 OK\r\n\r\n"))
			for {
				if _, err := c.Write([]byte("x")); err != nil {
					return
				}
				time.Sleep(5 * time.Millisecond) // the stall under test, not synchronisation
			}
		},
	}
	for name, serve := range stalls {
		t.Run(name, func(t *testing.T) {
			addr := rawServer(t, serve)
			cfg := fastConfig(HTTP)
			cfg.Timeout = 100 * time.Millisecond
			c := newChecker(t, cfg, []string{addr})
			err := checkWithin(t, c, 5*time.Second)
			if cause, reason := causeOf(t, err); cause != CauseTimeout || reason != "timeout" {
				t.Fatalf("%q (cause %q), want a timeout", reason, cause)
			}
		})
	}
}

// Headers without end, or informational responses without end, are cut at
// the 64 KiB the check reads of a response head, well before the timeout.
func TestHTTPEndlessHeadersAreCut(t *testing.T) {
	heads := map[string]string{
		"one long header": "HTTP/1.1 200 OK\r\nX-Pad: ",
		"many headers":    "HTTP/1.1 200 OK\r\n",
		"1xx responses":   "",
	}
	for name, head := range heads {
		t.Run(name, func(t *testing.T) {
			var sent atomic.Int64
			addr := rawServer(t, func(c net.Conn, br *bufio.Reader) {
				http.ReadRequest(br)
				c.Write([]byte(head))
				for n := 0; ; n++ {
					var chunk string
					switch name {
					case "one long header":
						chunk = strings.Repeat("a", 1024)
					case "many headers":
						chunk = fmt.Sprintf("X-Pad-%d: %s\r\n", n, strings.Repeat("a", 1000))
					default:
						chunk = "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
					}
					if _, err := c.Write([]byte(chunk)); err != nil {
						return
					}
					sent.Add(int64(len(chunk)))
				}
			})
			cfg := fastConfig(HTTP)
			cfg.Timeout = 10 * time.Second
			c := newChecker(t, cfg, []string{addr})
			err := checkWithin(t, c, 5*time.Second)
			cause, reason := causeOf(t, err)
			if cause != CauseProtocol || !strings.Contains(reason, "exceeded") {
				t.Fatalf("%q (cause %q), want the headers refused", reason, cause)
			}
		})
	}
}

// A redirect is an answer, judged by its status: the check does not go
// where it points.
func TestHTTPRedirectIsNotFollowed(t *testing.T) {
	target := newStatusServer(t, nil)
	var asked atomic.Int64
	srv := newStatusServer(t, func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		http.Redirect(w, r, "http://"+target.addr()+"/healthz", http.StatusFound)
	})
	cfg := fastConfig(HTTP)
	c := newChecker(t, cfg, []string{srv.addr()})
	if cause, reason := causeOf(t, checkNow(t, c, 0)); cause != CauseStatus || reason != "status 302" {
		t.Fatalf("a redirect: %q (cause %q), want status 302", reason, cause)
	}
	cfg.Statuses = []StatusRange{{200, 399}}
	c = newChecker(t, cfg, []string{srv.addr()})
	if err := checkNow(t, c, 0); err != nil {
		t.Fatalf("a 302 among the expected statuses: %v", err)
	}
	if n := target.conns.Load(); n != 0 || asked.Load() != 2 {
		t.Fatalf("the redirect's target got %d connections (origin asked %d times), want 0 (2)", n, asked.Load())
	}
}

// A server that closes after each answer gets a new connection for each
// check, and each passes.
func TestHTTPConnectionCloseRedialsEachCheck(t *testing.T) {
	srv := newStatusServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		w.Write([]byte("ok"))
	})
	c := newChecker(t, fastConfig(HTTP), []string{srv.addr()})
	for k := range 3 {
		if err := checkNow(t, c, 0); err != nil {
			t.Fatalf("check %d: %v", k, err)
		}
	}
	if n := srv.conns.Load(); n != 3 {
		t.Fatalf("3 checks of a server that closes: %d connections, want 3", n)
	}
}

// An answer that comes after its check timed out is never read as the
// next check's: the timed-out check's connection is closed.
func TestHTTPLateAnswerIsNotTakenForTheNextCheck(t *testing.T) {
	// The first check's request is answered 200, late, and every other
	// request 503 at once. The test says which request is the first
	// check's, not the order in which connections are served: each is
	// served on a goroutine of its own, and the first check's could run
	// after the next check's connection is being served.
	var late atomic.Bool
	late.Store(true)
	addr := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		for {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			if late.CompareAndSwap(true, false) {
				time.Sleep(300 * time.Millisecond) // the late answer under test
				c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
				continue
			}
			c.Write([]byte("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"))
		}
	})
	cfg := fastConfig(HTTP)
	cfg.Timeout = 100 * time.Millisecond
	c := newChecker(t, cfg, []string{addr})
	if cause, _ := causeOf(t, checkNow(t, c, 0)); cause != CauseTimeout {
		t.Fatalf("the slow check: cause %q, want timeout", cause)
	}
	late.Store(false) // a request read only now is not the timed-out check's
	cfg.Timeout = 2 * time.Second
	c.cfg.Timeout = cfg.Timeout
	for k := range 3 {
		if cause, reason := causeOf(t, checkNow(t, c, 0)); reason != "status 503" {
			t.Fatalf("check %d after the timeout: %q (cause %q), want status 503 from a new connection", k, reason, cause)
		}
	}
}

// bloatedHealth answers SERVING with a large unknown field, or with large
// header metadata.
type bloatedHealth struct {
	healthpb.UnimplementedHealthServer
	message, header int
}

func (h *bloatedHealth) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if h.header > 0 {
		grpc.SetHeader(ctx, metadata.Pairs("x-pad", strings.Repeat("a", h.header)))
	}
	resp := &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}
	if h.message > 0 {
		pad := protowire.AppendTag(nil, 99, protowire.BytesType)
		resp.ProtoReflect().SetUnknown(protowire.AppendBytes(pad, make([]byte, h.message)))
	}
	return resp, nil
}

// A gRPC check reads no more than an HTTP check: a response message or
// headers over 64 KiB fail it (grpc-go would take 4 MiB and 16 MiB).
func TestGRPCLargeAnswersFail(t *testing.T) {
	for _, tc := range []struct {
		name            string
		message, header int
		ok              bool
	}{
		{"small", 1 << 10, 1 << 10, true},
		{"message of 1 MiB", 1 << 20, 0, false},
		{"header of 1 MiB", 0, 1 << 20, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln := listen(t)
			srv := grpc.NewServer()
			healthpb.RegisterHealthServer(srv, &bloatedHealth{message: tc.message, header: tc.header})
			done := make(chan struct{})
			go func() { defer close(done); srv.Serve(ln) }()
			t.Cleanup(func() { srv.Stop(); <-done })
			c := newChecker(t, fastConfig(GRPC), []string{ln.Addr().String()})
			err := checkNow(t, c, 0)
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if cause, reason := causeOf(t, err); cause != CauseGRPC {
				t.Fatalf("%q (cause %q), want the answer refused", reason, cause)
			}
		})
	}
}

// Over HTTP/2 too, a response head over 64 KiB fails the check rather
// than being read.
func TestHTTP2EndlessHeadersAreCut(t *testing.T) {
	srv := newH2CServer(t, func(w http.ResponseWriter, r *http.Request) {
		for n := range 200 {
			w.Header().Set(fmt.Sprintf("X-Pad-%d", n), strings.Repeat("a", 1000))
		}
	})
	cfg := fastConfig(HTTP)
	cfg.HTTP2 = true
	cfg.Timeout = 10 * time.Second
	c := newChecker(t, cfg, []string{srv})
	err := checkWithin(t, c, 5*time.Second)
	if cause, reason := causeOf(t, err); cause != CauseProtocol {
		t.Fatalf("%q (cause %q), want the headers refused", reason, cause)
	}
}

// newH2CServer serves h over h2c prior knowledge until the test ends.
func newH2CServer(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// An answer nobody asked for (a second response after the first) is not
// kept for the next check: the connection it came on is closed, and the
// next check gets its own answer on a new one.
func TestHTTPUnsolicitedAnswerIsNotTakenForTheNextCheck(t *testing.T) {
	closed := make(chan struct{}, 8)
	addr := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"))
		hold(br)
		closed <- struct{}{}
	})
	c := newChecker(t, fastConfig(HTTP), []string{addr})
	for k := range 3 {
		if err := checkNow(t, c, 0); err != nil {
			t.Fatalf("check %d: %v", k, err)
		}
		select {
		case <-closed:
		case <-time.After(5 * time.Second):
			t.Fatalf("check %d: the connection with an unsolicited answer is still open", k)
		}
	}
}

// A body that cannot be read fails the check with a reason that says what
// was wrong with it, whatever the status: a malformed chunk is not taken
// for the connection closing.
func TestHTTPBodyFailureReasons(t *testing.T) {
	tests := []struct {
		name, answer, reason string
	}{
		{"malformed chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX\r\n0\r\n\r\n", "http: body: malformed chunked encoding"},
		{"bad chunk size", "HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", "http: body: invalid byte in chunk length"},
		{"chunk line too long", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;" + strings.Repeat("x", 5000) + "\r\nabc\r\n0\r\n\r\n", "http: body: chunk line too long"},
		{"chunked body cut short", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab", "http: body: connection closed before its end"},
		{"body shorter than its length", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "http: body: connection closed before its end"},
		{"trailer cut short", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n", "http: body: unexpected EOF reading trailer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := rawServer(t, func(c net.Conn, br *bufio.Reader) {
				if _, err := http.ReadRequest(br); err == nil {
					c.Write([]byte(tt.answer))
				}
			})
			err := checkNow(t, newChecker(t, fastConfig(HTTP), []string{addr}), 0)
			if cause, reason := causeOf(t, err); cause != CauseProtocol || reason != tt.reason {
				t.Fatalf("got %q (cause %q), want %q (protocol)", reason, cause, tt.reason)
			}
		})
	}
}
