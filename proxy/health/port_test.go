package health

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	grpchealth "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// portOf is the port of a "host:port".
func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// An HTTP check with Port goes to the endpoint's host on that port: the
// endpoint's own port sees no check, the Host is the address dialed, and
// the endpoint turns unhealthy when only the health port fails while its
// own port keeps serving. Transitions and statuses still name the
// endpoint by its own address.
func TestHTTPChecksGoToThePort(t *testing.T) {
	var trafficHits atomic.Int64
	traffic := newStatusServer(t, func(w http.ResponseWriter, r *http.Request) { trafficHits.Add(1) })
	var mu sync.Mutex
	var hosts []string
	var mgmtStatus atomic.Int64
	mgmtStatus.Store(http.StatusOK)
	mgmt := newStatusServer(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hosts = append(hosts, r.Host)
		mu.Unlock()
		w.WriteHeader(int(mgmtStatus.Load()))
	})

	var log transitions
	cfg := fastConfig(HTTP)
	cfg.Port = portOf(t, mgmt.addr())
	c := startChecker(t, cfg, []string{traffic.addr()}, log.option())

	waitFor(t, "the first check succeeds", func() bool { return c.Status(0).Checked })
	if st := c.Status(0); !st.Healthy || st.Addr != traffic.addr() || st.Target != mgmt.addr() {
		t.Fatalf("status %+v, want healthy, known as %s and probed at %s", st, traffic.addr(), mgmt.addr())
	}
	mgmtStatus.Store(http.StatusServiceUnavailable)
	waitFor(t, "the endpoint turns unhealthy", func() bool { return !c.Healthy(0) })

	// The endpoint's own port serves all along and never saw a check.
	req, err := http.NewRequest(http.MethodGet, "http://"+traffic.addr()+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Close = true // keeps no connection in the default transport
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || trafficHits.Load() != 1 {
		t.Fatalf("traffic port: status %d, %d requests (want 200 and only this one)", resp.StatusCode, trafficHits.Load())
	}
	waitFor(t, "the transition reaches the hook", func() bool { return len(log.list()) >= 1 })
	want := Transition{Endpoint: 0, Addr: traffic.addr(), Healthy: false, Reason: "status 503"}
	if got := log.list(); got[0] != want {
		t.Fatalf("transition %+v, want %+v", got[0], want)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, h := range hosts {
		if h != mgmt.addr() {
			t.Fatalf("Host %q, want the address dialed %q", h, mgmt.addr())
		}
	}
}

// countingHealthServer is a grpc-go health server that counts the calls
// it answers.
type countingHealthServer struct {
	health *grpchealth.Server
	calls  atomic.Int64
	addr   string
}

func serveCountingHealth(t *testing.T) *countingHealthServer {
	t.Helper()
	ln := listen(t)
	hs := &countingHealthServer{health: grpchealth.NewServer(), addr: ln.Addr().String()}
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		hs.calls.Add(1)
		return h(ctx, req)
	}))
	healthpb.RegisterHealthServer(srv, hs.health)
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return hs
}

// A gRPC check with Port asks the health server on that port, not the
// one on the endpoint's own port, and the endpoint turns unhealthy when
// only the former stops serving.
func TestGRPCChecksGoToThePort(t *testing.T) {
	traffic := serveCountingHealth(t)
	traffic.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	mgmt := serveCountingHealth(t)
	mgmt.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)

	var log transitions
	cfg := fastConfig(GRPC)
	cfg.Port = portOf(t, mgmt.addr)
	c := startChecker(t, cfg, []string{traffic.addr}, log.option())

	waitFor(t, "the first check succeeds", func() bool { return c.Status(0).Checked })
	if !c.Healthy(0) {
		t.Fatalf("status %+v", c.Status(0))
	}
	mgmt.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	waitFor(t, "the endpoint turns unhealthy", func() bool { return !c.Healthy(0) })
	if n := traffic.calls.Load(); n != 0 {
		t.Fatalf("the endpoint's own port answered %d checks", n)
	}
	if mgmt.calls.Load() < 2 {
		t.Fatalf("the health port answered %d checks", mgmt.calls.Load())
	}
	waitFor(t, "the transition reaches the hook", func() bool { return len(log.list()) >= 1 })
	want := Transition{Endpoint: 0, Addr: traffic.addr, Healthy: false, Reason: "grpc: NOT_SERVING"}
	if got := log.list(); got[0] != want {
		t.Fatalf("transition %+v, want %+v", got[0], want)
	}
}

// A TCP check with Port connects to that port only: an endpoint whose own
// port refuses is healthy when the health port accepts, and one whose own
// port accepts is unhealthy when the health port refuses.
func TestTCPChecksGoToThePort(t *testing.T) {
	open := listen(t)
	t.Cleanup(func() { open.Close() })
	refused := refusedAddr(t)

	cfg := fastConfig(TCP)
	cfg.Port = portOf(t, open.Addr().String())
	if err := checkNow(t, newChecker(t, cfg, []string{refused}), 0); err != nil {
		t.Fatalf("health port open, own port refusing: %v", err)
	}

	cfg.Port = portOf(t, refused)
	c := newChecker(t, cfg, []string{open.Addr().String()})
	err := checkNow(t, c, 0)
	if cause, reason := causeOf(t, err); cause != CauseConnect || reason != "connect: connection refused" {
		t.Fatalf("health port refusing, own port open: %v %q", cause, reason)
	}
	if st := c.Status(0); st.Healthy || st.Addr != open.Addr().String() {
		t.Fatalf("status %+v", st)
	}
}

func TestProbeTargets(t *testing.T) {
	addrs := []string{"10.0.0.1:8080", "[::1]:8080", "svc.internal:80"}
	if got := probeTargets(addrs, 0); &got[0] != &addrs[0] {
		t.Fatal("without a port the endpoints' addresses are not dialed as they are")
	}
	got := probeTargets(addrs, 9901)
	want := []string{"10.0.0.1:9901", "[::1]:9901", "svc.internal:9901"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("targets %q, want %q", got, want)
		}
	}
	if addrs[0] != "10.0.0.1:8080" {
		t.Fatal("probeTargets changed its input")
	}
}
