package health

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Failures come in two kinds, as in Envoy: an answer that says the
// endpoint is unhealthy ejects it at once, whatever unhealthy_threshold;
// timeouts, connection and protocol failures count toward it.

// expectState runs one check of endpoint 0 and fails the test unless the
// endpoint is then healthy as want says, with failures consecutive
// failures.
func expectState(t *testing.T, c *Checker, what string, want bool, failures int) error {
	t.Helper()
	err := checkNow(t, c, 0)
	if st := c.Status(0); st.Healthy != want || st.Failures != failures || c.Healthy(0) != want {
		t.Fatalf("%s: %+v (check error %v), want healthy=%v with %d failures", what, st, err, want, failures)
	}
	return err
}

func TestHTTPStatusEjectsAtOnceAndTimeoutsCount(t *testing.T) {
	var (
		hang   atomic.Bool
		status atomic.Int64
	)
	status.Store(http.StatusOK)
	release := make(chan struct{})
	srv := newStatusServer(t, func(w http.ResponseWriter, r *http.Request) {
		if hang.Load() {
			select {
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		w.WriteHeader(int(status.Load()))
		io.WriteString(w, "draining\n")
	})
	defer close(release) // before the server's Close, which waits for handlers
	cfg := fastConfig(HTTP)
	cfg.HealthyThreshold, cfg.UnhealthyThreshold = 2, 3
	// The checks that are answered must end, dial included, within
	// their timeout, which a loaded machine could stretch past 100 ms:
	// they get 5 s, and the hung ones 100 ms below.
	cfg.Timeout = 5 * time.Second
	c := newChecker(t, cfg, []string{srv.addr()})

	expectState(t, c, "first check", true, 0)
	status.Store(http.StatusServiceUnavailable)
	err := expectState(t, c, "one 503 with unhealthy_threshold 3", false, 1)
	if ce := err.(*CheckError); ce.Cause != CauseStatus || ce.Reason != "status 503" || !ce.Immediate {
		t.Fatalf("a 503: %+v, want an immediate status failure", ce)
	}

	status.Store(http.StatusOK)
	expectState(t, c, "one success with healthy_threshold 2", false, 0)
	expectState(t, c, "two successes", true, 0)

	hang.Store(true)
	c.cfg.Timeout = 100 * time.Millisecond
	for k := 1; k <= 2; k++ {
		err := expectState(t, c, "timeouts below the threshold", true, k)
		if ce := err.(*CheckError); ce.Cause != CauseTimeout || ce.Immediate {
			t.Fatalf("a timeout: %+v, want a counted timeout", ce)
		}
	}
	expectState(t, c, "the third timeout", false, 3)
}

func TestHTTPConnectionFailuresCount(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	cfg := fastConfig(HTTP)
	cfg.UnhealthyThreshold = 3
	c := newChecker(t, cfg, []string{addr})
	expectState(t, c, "first check", true, 0)
	srv.Close()
	<-done
	expectState(t, c, "one refused connection", true, 1)
	expectState(t, c, "two", true, 2)
	expectState(t, c, "three", false, 3)
}

// A retriable status counts toward the threshold; a status neither
// expected nor retriable still ejects at once, and an expected one passes
// even when it is retriable too.
func TestHTTPRetriableStatusesCount(t *testing.T) {
	srv := newStatusServer(t, nil)
	cfg := fastConfig(HTTP)
	cfg.HealthyThreshold, cfg.UnhealthyThreshold = 1, 3
	cfg.Statuses = []StatusRange{{200, 200}, {429, 429}}
	cfg.RetriableStatuses = []StatusRange{{429, 429}, {502, 504}}
	c := newChecker(t, cfg, []string{srv.addr()})

	expectState(t, c, "first check", true, 0)
	srv.status.Store(http.StatusServiceUnavailable)
	for k := 1; k <= 2; k++ {
		err := expectState(t, c, "retriable 503s below the threshold", true, k)
		if ce := err.(*CheckError); ce.Cause != CauseStatus || ce.Reason != "status 503" || ce.Immediate {
			t.Fatalf("a retriable 503: %+v, want a counted status failure", ce)
		}
	}
	expectState(t, c, "the third 503", false, 3)

	srv.status.Store(http.StatusTooManyRequests)
	expectState(t, c, "429, expected and retriable", true, 0)
	srv.status.Store(http.StatusInternalServerError)
	expectState(t, c, "a 500, not retriable", false, 1)
}

// An answer whose body breaks off is not judged by its status: it counts,
// as a protocol failure.
func TestHTTPStatusWithABrokenBodyCounts(t *testing.T) {
	var broken atomic.Bool
	addr := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		for {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			if broken.Load() {
				io.WriteString(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 10\r\n\r\nabc")
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		}
	})
	cfg := fastConfig(HTTP)
	cfg.UnhealthyThreshold = 2
	c := newChecker(t, cfg, []string{addr})
	expectState(t, c, "first check", true, 0)
	broken.Store(true)
	err := expectState(t, c, "a 503 whose body breaks off", true, 1)
	if ce := err.(*CheckError); ce.Cause != CauseProtocol || ce.Immediate {
		t.Fatalf("a 503 whose body breaks off: %+v, want a counted protocol failure", ce)
	}
	expectState(t, c, "the second", false, 2)
}

// statusHealth answers Check with the status it holds.
type statusHealth struct {
	healthpb.UnimplementedHealthServer
	status atomic.Int32
}

func (h *statusHealth) Check(context.Context, *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_ServingStatus(h.status.Load())}, nil
}

func TestGRPCAnswerOtherThanServingEjectsAtOnce(t *testing.T) {
	for _, answer := range []healthpb.HealthCheckResponse_ServingStatus{
		healthpb.HealthCheckResponse_NOT_SERVING,
		healthpb.HealthCheckResponse_SERVICE_UNKNOWN,
		healthpb.HealthCheckResponse_UNKNOWN,
	} {
		t.Run(answer.String(), func(t *testing.T) {
			ln := listen(t)
			h := &statusHealth{}
			h.status.Store(int32(healthpb.HealthCheckResponse_SERVING))
			srv := grpc.NewServer()
			healthpb.RegisterHealthServer(srv, h)
			done := make(chan struct{})
			go func() { defer close(done); srv.Serve(ln) }()
			cfg := fastConfig(GRPC)
			cfg.HealthyThreshold, cfg.UnhealthyThreshold = 2, 3
			c := newChecker(t, cfg, []string{ln.Addr().String()})
			t.Cleanup(func() { c.Close(); srv.Stop(); <-done })

			expectState(t, c, "first check", true, 0)
			h.status.Store(int32(answer))
			err := expectState(t, c, "one answer with unhealthy_threshold 3", false, 1)
			if ce := err.(*CheckError); ce.Cause != CauseGRPC || ce.Reason != "grpc: "+answer.String() || !ce.Immediate {
				t.Fatalf("answer %v: %+v, want an immediate grpc failure", answer, ce)
			}
			h.status.Store(int32(healthpb.HealthCheckResponse_SERVING))
			expectState(t, c, "one SERVING with healthy_threshold 2", false, 0)
			expectState(t, c, "two", true, 0)
		})
	}
}

func TestGRPCStandardServerDrainEjectsAtOnceAndConnectFailuresCount(t *testing.T) {
	ln := listen(t)
	hs := serveHealth(t, ln)
	hs.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	cfg := fastConfig(GRPC)
	cfg.HealthyThreshold, cfg.UnhealthyThreshold = 1, 3
	c := newChecker(t, cfg, []string{ln.Addr().String()})

	expectState(t, c, "first check", true, 0)
	hs.health.Shutdown() // NOT_SERVING, as an app about to stop sets it
	expectState(t, c, "the drained server", false, 1)
	hs.health.Resume()
	expectState(t, c, "serving again", true, 0)

	hs.stop()
	for k := 1; k <= 2; k++ {
		err := expectState(t, c, "a stopped server, below the threshold", true, k)
		if ce := err.(*CheckError); ce.Immediate {
			t.Fatalf("a stopped server: %+v, want a counted failure", ce)
		}
	}
	expectState(t, c, "the third failure", false, 3)
}
