package health

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
)

// Close must not wait out a check's timeout: it cancels the check in
// flight, over a real connection, for each kind that can hang.

func TestCloseCancelsHungHTTPCheck(t *testing.T) {
	entered := make(chan struct{}, 1)
	srv := newStatusServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-r.Context().Done()
	})
	cfg := fastConfig(HTTP)
	cfg.Timeout = time.Hour
	c := startChecker(t, cfg, []string{srv.addr()})
	<-entered
	closeWithin(t, c, 5*time.Second)
	if st := c.Status(0); st.Checked {
		t.Fatalf("the cancelled check was recorded: %+v", st)
	}
}

// blockingHealth answers Check only when the call's context ends, and
// records the metadata it was called with.
type blockingHealth struct {
	healthpb.UnimplementedHealthServer
	entered chan metadata.MD
}

func (h *blockingHealth) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	select {
	case h.entered <- md:
	default:
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestCloseCancelsHungGRPCCheckAndAuthorityIsSent(t *testing.T) {
	ln := listen(t)
	h := &blockingHealth{entered: make(chan metadata.MD, 1)}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, h)
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Stop(); <-done })

	cfg := fastConfig(GRPC)
	cfg.Timeout = time.Hour
	cfg.Host = "payments.internal"
	c := startChecker(t, cfg, []string{ln.Addr().String()})
	md := <-h.entered
	if a := md.Get(":authority"); len(a) != 1 || a[0] != "payments.internal" {
		t.Errorf(":authority %q, want payments.internal", a)
	}
	if ua := md.Get("user-agent"); len(ua) != 1 || len(ua[0]) < len(userAgent) || ua[0][:len(userAgent)] != userAgent {
		t.Errorf("user-agent %q, want it to start with %s", ua, userAgent)
	}
	closeWithin(t, c, 5*time.Second)
}

func closeWithin(t *testing.T, c *Checker, limit time.Duration) {
	t.Helper()
	closed := make(chan struct{})
	go func() { c.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(limit):
		t.Fatalf("Close still waiting after %v for a check with a one-hour timeout", limit)
	}
}

// A TLS handshake that hangs belongs to the check: the check's timeout
// ends it, and Close cancels it and returns only after it has.
func TestHungTLSHandshakeEndsWithTheCheck(t *testing.T) {
	_, roots := selfSigned(t)
	ln := listen(t)
	accepted := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c // never answers the ClientHello
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		for c := range accepted {
			c.Close()
		}
	})

	for _, h2 := range []bool{false, true} {
		cfg := fastConfig(HTTP)
		cfg.HTTP2 = h2
		cfg.TLS = &tls.Config{RootCAs: roots}
		cfg.Timeout = 200 * time.Millisecond
		first := newChecker(t, cfg, []string{ln.Addr().String()})
		err := checkNow(t, first, 0)
		if cause, reason := causeOf(t, err); cause != CauseTimeout {
			t.Fatalf("http2=%v: hung handshake: %q (cause %q), want a timeout", h2, reason, cause)
		}
		// The check returned at its timeout; its dial's goroutine ends
		// on its own a moment later. Closing joins it, so what the stack
		// checks below see is the second checker's alone.
		first.Close()
		if inStack("health.dialTLS(") {
			t.Fatalf("http2=%v: the timed-out check's handshake still running after Close returned", h2)
		}

		cfg.Timeout = time.Hour
		c := startChecker(t, cfg, []string{ln.Addr().String()})
		waitFor(t, "a handshake under way", func() bool { return inStack("health.dialTLS(") })
		closeWithin(t, c, 5*time.Second)
		if inStack("health.dialTLS(") || inStack("health.(*httpProber).bound.func") {
			t.Fatalf("http2=%v: a dial or handshake still running after Close returned", h2)
		}
	}
}

// inStack reports whether a goroutine's stack has a frame containing fn.
func inStack(fn string) bool {
	buf := make([]byte, 1<<20)
	return strings.Contains(string(buf[:runtime.Stack(buf, true)]), fn)
}
