package health

import (
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	grpchealth "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// healthServer is a grpc-go server with the standard health service.
type healthServer struct {
	srv    *grpc.Server
	health *grpchealth.Server
	done   chan struct{}
}

// serveHealth serves the health service on ln until the test ends or stop.
func serveHealth(t *testing.T, ln net.Listener) *healthServer {
	t.Helper()
	hs := &healthServer{srv: grpc.NewServer(), health: grpchealth.NewServer(), done: make(chan struct{})}
	healthpb.RegisterHealthServer(hs.srv, hs.health)
	go func() {
		defer close(hs.done)
		hs.srv.Serve(ln)
	}()
	t.Cleanup(hs.stop)
	return hs
}

func (hs *healthServer) stop() {
	hs.srv.Stop()
	<-hs.done
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func TestGRPCFollowsServingStatus(t *testing.T) {
	ln := listen(t)
	hs := serveHealth(t, ln)
	hs.health.SetServingStatus("payments.v1.Payments", healthpb.HealthCheckResponse_SERVING)
	var log transitions
	cfg := fastConfig(GRPC)
	cfg.Service = "payments.v1.Payments"
	c := startChecker(t, cfg, []string{ln.Addr().String()}, log.option())

	waitFor(t, "the first check succeeds", func() bool { return c.Status(0).Checked })
	if !c.Healthy(0) {
		t.Fatalf("SERVING endpoint: %+v", c.Status(0))
	}
	hs.health.SetServingStatus("payments.v1.Payments", healthpb.HealthCheckResponse_NOT_SERVING)
	waitFor(t, "NOT_SERVING makes it unhealthy", func() bool { return !c.Healthy(0) })
	hs.health.SetServingStatus("payments.v1.Payments", healthpb.HealthCheckResponse_SERVING)
	waitFor(t, "SERVING makes it healthy", func() bool { return c.Healthy(0) })

	waitFor(t, "both transitions reach the hook", func() bool { return len(log.list()) >= 2 })
	want := []Transition{
		{Endpoint: 0, Addr: ln.Addr().String(), Healthy: false, Reason: "grpc: NOT_SERVING"},
		{Endpoint: 0, Addr: ln.Addr().String(), Healthy: true},
	}
	if got := log.list(); len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("transitions %+v, want %+v", got, want)
	}
}

func TestGRPCServiceAskedAbout(t *testing.T) {
	ln := listen(t)
	hs := serveHealth(t, ln)
	hs.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	addr := ln.Addr().String()

	if err := checkNow(t, newChecker(t, fastConfig(GRPC), []string{addr}), 0); err != nil {
		t.Fatalf("the server as a whole: %v", err)
	}
	unknown := fastConfig(GRPC)
	unknown.Service = "nope.v1.Nope"
	err := checkNow(t, newChecker(t, unknown, []string{addr}), 0)
	if cause, reason := causeOf(t, err); cause != CauseGRPC || reason != "grpc: NOT_FOUND" {
		t.Fatalf("an unknown service: %q (cause %q)", reason, cause)
	}
}

func TestGRPCServerWithoutHealthService(t *testing.T) {
	ln := listen(t)
	srv := grpc.NewServer()
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	defer func() { srv.Stop(); <-done }()
	c := newChecker(t, fastConfig(GRPC), []string{ln.Addr().String()})
	err := checkNow(t, c, 0)
	if cause, reason := causeOf(t, err); cause != CauseGRPC || reason != "grpc: UNIMPLEMENTED" {
		t.Fatalf("a server without the health service: %q (cause %q)", reason, cause)
	}
	c.Close() // before the server stops, as the deferred order would not
}

func TestGRPCConnectionRefused(t *testing.T) {
	err := checkNow(t, newChecker(t, fastConfig(GRPC), []string{refusedAddr(t)}), 0)
	if cause, reason := causeOf(t, err); cause != CauseConnect || reason != "connect: connection refused" {
		t.Fatalf("a closed port: %q (cause %q)", reason, cause)
	}
}

func TestGRPCNoticesRestartedServer(t *testing.T) {
	ln := listen(t)
	addr := ln.Addr().String()
	hs := serveHealth(t, ln)
	hs.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	cfg := fastConfig(GRPC)
	cfg.Interval = 20 * time.Millisecond
	cfg.Timeout = 500 * time.Millisecond
	c := startChecker(t, cfg, []string{addr})
	waitFor(t, "the first check succeeds", func() bool { return c.Status(0).Checked && c.Healthy(0) })

	hs.stop()
	waitFor(t, "the stopped server is unhealthy", func() bool { return !c.Healthy(0) })
	// Stay down long enough that grpc-go's default back-off (1 s, 1.6 s,
	// 2.6 s, ... between attempts) would hide the server's return for
	// about a second or more.
	down := time.Now()
	waitFor(t, "3.5s of failed checks", func() bool { return time.Since(down) > 3500*time.Millisecond })
	if st := c.Status(0); !strings.HasPrefix(st.LastError, "connect: ") && !strings.HasPrefix(st.LastError, "grpc: ") {
		t.Fatalf("down: %+v", st)
	}

	hs2 := serveHealth(t, listenAgain(t, addr))
	hs2.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	back := time.Now()
	waitFor(t, "the restarted server is healthy", func() bool { return c.Healthy(0) })
	if d := time.Since(back); d > time.Second {
		t.Fatalf("the restarted server was seen after %v, at a 20ms interval", d)
	}
}
