package proxy

// Acceptance tests for circuit breaking, resource limits and outlier
// ejection (docs/circuit-breaking.md), end to end: configs parsed from
// YAML, real upstreams on loopback (net/http and grpc-go), a real client in
// front of the proxy. Arrivals at each upstream are counted, so "never
// reaches the upstream" is observed, not inferred. Conditions are awaited
// by polling with a deadline; every loop is bounded in count and time.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// parseConfig builds a config the way the sidecar does: YAML through
// config.Parse (validation and defaults included).
func parseConfig(t testing.TB, format string, args ...any) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(fmt.Sprintf(format, args...)), "acceptance.yaml")
	if err != nil {
		t.Fatalf("config.Parse: %v", err)
	}
	return cfg
}

// verdict is what one call through the proxy came back as.
type verdict int

const (
	answered       verdict = iota // the upstream answered with success
	failedUpstream                // the failure mode's failure reached the client
	rejectedOpen                  // refused by the open breaker, with its headers
	rejectedProbe                 // refused: half-open and its probe in flight
)

func (v verdict) String() string {
	return [...]string{"answered", "failed upstream", "rejected open", "rejected half_open"}[v]
}

// acceptanceCluster is the cluster name in the acceptance configs; gRPC
// rejections must name it.
const acceptanceCluster = "inventory"

// httpCall makes one GET through the proxy and classifies the answer;
// failStatus is the status the failure mode produces downstream.
func httpCall(t *testing.T, h *harness, failStatus int) verdict {
	t.Helper()
	resp, body := do(t, h.h1, http.MethodGet, h.url("/item"), nil)
	switch {
	case resp.StatusCode == http.StatusOK:
		return answered
	case resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("X-Outrigger-Breaker") == "open":
		if !positiveInt(resp.Header.Get("Retry-After")) {
			t.Fatalf("open breaker reply without a valid retry-after: %v", resp.Header)
		}
		if resp.Header.Get("X-Outrigger-Error") != "breaker_open" {
			t.Fatalf("open breaker reply: %v", resp.Header)
		}
		return rejectedOpen
	case resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("X-Outrigger-Breaker") == "half_open":
		return rejectedProbe
	case resp.StatusCode == failStatus:
		return failedUpstream
	}
	t.Fatalf("unexpected answer %d %v %q", resp.StatusCode, resp.Header, body)
	return 0
}

func positiveInt(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n >= 1
}

// flakyStreamer is a gRPC upstream whose server-streaming call always
// sends one message first, so that its status travels in the trailers
// (never trailers-only), and then fails UNAVAILABLE while fail is set.
type flakyStreamer struct {
	testpb.UnimplementedTestServiceServer
	fail     atomic.Bool
	arrivals atomic.Int64
}

func (s *flakyStreamer) StreamingOutputCall(req *testpb.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	s.arrivals.Add(1)
	if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: []byte("x")}}); err != nil {
		return err
	}
	if s.fail.Load() {
		return status.Error(codes.Unavailable, "backend draining")
	}
	return nil
}

func (s *flakyStreamer) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	s.arrivals.Add(1)
	if s.fail.Load() {
		return nil, status.Error(codes.Unavailable, "backend draining")
	}
	return &testpb.SimpleResponse{}, nil
}

func (s *flakyStreamer) FullDuplexCall(stream grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) error {
	s.arrivals.Add(1)
	for {
		if _, err := stream.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

func startFlakyGRPC(t *testing.T, svc *flakyStreamer) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	testpb.RegisterTestServiceServer(s, svc)
	done := make(chan struct{})
	go func() { _ = s.Serve(ln); close(done) }()
	t.Cleanup(func() { s.Stop(); <-done })
	return ln.Addr().String()
}

// grpcStreamCall makes one server-streaming call through the proxy and
// classifies it. A rejection must be UNAVAILABLE naming the cluster, with
// x-outrigger-breaker and retry-after in its (trailers-only) metadata.
func grpcStreamCall(t *testing.T, client testpb.TestServiceClient) verdict {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := client.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: 1}}})
	if err != nil {
		t.Fatalf("start call: %v", err)
	}
	if _, err := st.Recv(); err != nil {
		s := status.Convert(err)
		tr := st.Trailer()
		reason := tr.Get("x-outrigger-breaker")
		if s.Code() != codes.Unavailable || len(reason) != 1 || !strings.Contains(s.Message(), acceptanceCluster) {
			t.Fatalf("call refused with %v %q, trailers %v", s.Code(), s.Message(), tr)
		}
		switch reason[0] {
		case "open":
			if ra := tr.Get("retry-after"); len(ra) != 1 || !positiveInt(ra[0]) {
				t.Fatalf("open breaker reply without a valid retry-after: %v", tr)
			}
			return rejectedOpen
		case "half_open":
			return rejectedProbe
		}
		t.Fatalf("unexpected x-outrigger-breaker %q", reason[0])
	}
	_, err = st.Recv()
	if errors.Is(err, io.EOF) {
		return answered
	}
	if s := status.Convert(err); s.Code() == codes.Unavailable && s.Message() == "backend draining" {
		return failedUpstream
	}
	t.Fatalf("second Recv: %v", err)
	return 0
}

// failureMode is one way an upstream fails. start starts the upstream
// failing and returns its address, a switch between failing and healthy,
// and its arrival counter (nil when a failing upstream cannot be reached
// at all, as for a refused connection).
type failureMode struct {
	name     string
	protocol config.Protocol
	route    string // extra YAML keys of the route
	start    func(t *testing.T) (addr string, setFailing func(bool), arrivals *atomic.Int64)
	// caller returns the function that makes one call through h.
	caller func(t *testing.T, h *harness) func() verdict
}

func failureModes() []failureMode {
	okOrFail := func(fail *atomic.Bool, n *atomic.Int64, onFail func(w http.ResponseWriter, r *http.Request)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			n.Add(1)
			if fail.Load() {
				onFail(w, r)
				return
			}
			_, _ = io.WriteString(w, "ok")
		}
	}
	httpMode := func(failStatus int) func(t *testing.T, h *harness) func() verdict {
		return func(t *testing.T, h *harness) func() verdict {
			return func() verdict { return httpCall(t, h, failStatus) }
		}
	}
	return []failureMode{{
		name:     "5xx",
		protocol: config.ProtocolHTTP1,
		start: func(t *testing.T) (string, func(bool), *atomic.Int64) {
			fail, n := new(atomic.Bool), new(atomic.Int64)
			fail.Store(true)
			up := upstream(t, false, okOrFail(fail, n, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusInternalServerError)
			}))
			return addr(up), fail.Store, n
		},
		caller: httpMode(http.StatusInternalServerError),
	}, {
		name:     "timeout",
		protocol: config.ProtocolHTTP1,
		route:    "per_try_timeout: " + acceptancePerTry.String(),
		start: func(t *testing.T) (string, func(bool), *atomic.Int64) {
			fail, n := new(atomic.Bool), new(atomic.Int64)
			fail.Store(true)
			stop := make(chan struct{})
			up := upstream(t, false, okOrFail(fail, n, func(w http.ResponseWriter, r *http.Request) {
				select { // hang past the per-try timeout
				case <-r.Context().Done():
				case <-stop:
				}
			}))
			t.Cleanup(func() { close(stop) }) // before up.Close, which waits for handlers
			return addr(up), fail.Store, n
		},
		caller: httpMode(http.StatusGatewayTimeout),
	}, {
		name:     "connection-refused",
		protocol: config.ProtocolHTTP1,
		start: func(t *testing.T) (string, func(bool), *atomic.Int64) {
			a, release := holdRefusedAddr(t)
			n := new(atomic.Int64)
			var srv *httptest.Server // used by the test goroutine only
			setFailing := func(fail bool) {
				if fail {
					if srv != nil {
						srv.Close()
						srv = nil
					}
					return
				}
				if srv != nil {
					return
				}
				release()
				ln, err := net.Listen("tcp", a)
				if err != nil {
					t.Fatalf("listen again on %s: %v", a, err)
				}
				srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					n.Add(1)
					_, _ = io.WriteString(w, "ok")
				}))
				srv.Listener.Close()
				srv.Listener = ln
				srv.Start()
			}
			t.Cleanup(func() { setFailing(true) })
			return a, setFailing, n
		},
		caller: httpMode(http.StatusBadGateway),
	}, {
		name:     "grpc-unavailable-in-trailers",
		protocol: config.ProtocolGRPC,
		start: func(t *testing.T) (string, func(bool), *atomic.Int64) {
			svc := &flakyStreamer{}
			svc.fail.Store(true)
			return startFlakyGRPC(t, svc), svc.fail.Store, &svc.arrivals
		},
		caller: func(t *testing.T, h *harness) func() verdict {
			client := grpcClient(t, h.out)
			return func() verdict { return grpcStreamCall(t, client) }
		},
	}}
}

const (
	acceptanceThreshold = 5
	acceptanceOpenBase  = 300 * time.Millisecond
	// acceptancePerTry is the per-try timeout of the timeout mode,
	// which its recovered upstream's answers must come within: 50ms
	// left a probe on a loaded machine under -race room to outlast it
	// and fail.
	acceptancePerTry = 500 * time.Millisecond
)

// breakerYAML is one cluster with a consecutive-failures breaker (the
// failure-rate policy is off so that only the threshold under test can
// trip it) and one route to it.
const breakerYAML = `
clusters:
  inventory:
    protocol: %s
    endpoints: ["%s"]
    connect_timeout: 500ms
    circuit_breaker:
      consecutive_failures: {threshold: %d}
      failure_rate: {disabled: true}
      open: {base: %s, max: 10s, multiplier: 2, jitter: 0}
      half_open: {max_probes: 1, successes_to_close: 2}
    outlier_detection: {disabled: true}
routes:
  - name: inventory
    cluster: inventory
    %s
`

// TestAcceptanceBreakerLifecycleForEachFailureMode drives one breaker
// through its whole life for each way an upstream fails: it stays closed
// for threshold-1 failures and opens on the threshold-th; while open it
// refuses at once (503 / UNAVAILABLE, x-outrigger-breaker: open,
// retry-after) and nothing reaches the upstream, even one that has
// recovered; after the open period a probe goes through; a probe that
// fails re-opens it for a longer period; and it closes once probes
// succeed. The proxy's clock is the test's, stopped but where the test
// moves it past an open period: on the real clock, a call begun inside
// the period on a loaded machine could end after it, as a probe.
func TestAcceptanceBreakerLifecycleForEachFailureMode(t *testing.T) {
	for _, m := range failureModes() {
		t.Run(m.name, func(t *testing.T) {
			upAddr, setFailing, arrivals := m.start(t)
			clock := &fakeClock{now: time.Unix(1e9, 0)}
			h := startProxy(t, parseConfig(t, breakerYAML, m.protocol, upAddr, acceptanceThreshold, acceptanceOpenBase, m.route),
				func(o *Options) { o.Now = clock.Now })
			call := m.caller(t, h)
			br := func() BreakerStatus { return h.p.Clusters()[0].Breaker }
			reached := func() int64 {
				return arrivals.Load()
			}

			// Closed: threshold-1 failures are tolerated, the threshold-th trips.
			for i := 1; i <= acceptanceThreshold; i++ {
				if v := call(); v != failedUpstream {
					t.Fatalf("call %d: %v, want the upstream's failure", i, v)
				}
				if i < acceptanceThreshold {
					eventually(t, 5*time.Second, fmt.Sprintf("failure %d recorded", i), func() bool { return br().ConsecutiveFailures == int64(i) })
					if s := br(); s.State != "closed" {
						t.Fatalf("after %d failures (threshold %d): %s", i, acceptanceThreshold, s.State)
					}
				}
			}
			eventually(t, 5*time.Second, "breaker open", func() bool { return br().State == "open" })
			first := br()
			if first.TimesOpened != 1 {
				t.Fatalf("times opened %d", first.TimesOpened)
			}
			period1 := first.OpenUntil.Sub(first.Since)
			if period1 <= 0 || period1 > acceptanceOpenBase {
				t.Fatalf("first open period %v, want open.base %v", period1, acceptanceOpenBase)
			}
			wantReached := int64(acceptanceThreshold)
			if m.name == "connection-refused" {
				wantReached = 0
			}
			if got := reached(); got != wantReached {
				t.Fatalf("upstream reached %d times before the trip, want %d", got, wantReached)
			}

			// Open: the upstream recovers at once, but no call reaches it
			// until the open period ends.
			setFailing(false)
			before := reached()
			const rejected = 20
			start := time.Now()
			for i := range rejected {
				if v := call(); v != rejectedOpen {
					t.Fatalf("call %d while open: %v", i, v)
				}
			}
			took := time.Since(start)
			if got := reached(); got != before {
				t.Fatalf("open breaker let %d calls reach the upstream", got-before)
			}
			// Fail fast: far below the per-try timeout of the timeout
			// mode, even on a busy machine under -race.
			if mean := took / rejected; mean > acceptancePerTry/5 {
				t.Fatalf("rejections took %v on average", mean)
			}
			if got := br().RejectedOpen; got != rejected {
				t.Fatalf("rejected_open %d, want %d", got, rejected)
			}

			// After the open period a probe reaches the recovered upstream;
			// with successes_to_close 2 the breaker stays half-open.
			clock.Add(first.OpenUntil.Sub(clock.Now()) + time.Millisecond)
			if v := call(); v != answered {
				t.Fatalf("first call after the open period: %v, want a probe the recovered upstream answers", v)
			}
			if got := reached(); got != before+1 {
				t.Fatalf("upstream reached %d times after the open period, want 1 probe", got-before)
			}
			if s := br().State; s != "half_open" {
				t.Fatalf("after one successful probe of two: %s", s)
			}

			// Flapping: the upstream fails again; the next probe fails and
			// the breaker re-opens for a longer period.
			setFailing(true)
			eventually(t, 5*time.Second, "a failing probe", func() bool {
				v := call()
				if v == answered || v == rejectedOpen {
					t.Fatalf("half-open breaker answered %v", v)
				}
				return v == failedUpstream
			})
			eventually(t, 5*time.Second, "breaker re-opened", func() bool { return br().State == "open" })
			second := br()
			period2 := second.OpenUntil.Sub(second.Since)
			if second.TimesOpened != 2 || period2 < period1*3/2 {
				t.Fatalf("re-opened %d times for %v; first period %v (want about twice as long)", second.TimesOpened, period2, period1)
			}
			setFailing(false)
			before = reached()
			if v := call(); v != rejectedOpen {
				t.Fatalf("call after re-opening: %v", v)
			}

			// Recovery: probes succeed and the breaker closes.
			clock.Add(second.OpenUntil.Sub(clock.Now()) + time.Millisecond)
			eventually(t, 10*time.Second, "breaker closed", func() bool {
				if v := call(); v == failedUpstream {
					t.Fatalf("recovered upstream failed")
				}
				return br().State == "closed"
			})
			if got := reached() - before; got < 2 {
				t.Fatalf("closed after %d probes, want successes_to_close 2", got)
			}
			if v := call(); v != answered {
				t.Fatalf("closed breaker: %v", v)
			}
			if s := br(); s.TimesOpened != 2 {
				t.Fatalf("times opened %d", s.TimesOpened)
			}
		})
	}
}

// TestAcceptanceOutlierEjectionMovesTrafficAndReturns: of three endpoints
// the one that fails is ejected after consecutive_5xx failures, gets no
// traffic while ejected (the two others share it), and gets traffic again
// once it has recovered and its ejection time is over. The proxy's clock
// is the test's, stopped inside the ejection until the test moves it
// past: on the real clock, a request begun inside the ejection on a
// loaded machine could end after it, at the endpoint still failing.
func TestAcceptanceOutlierEjectionMovesTrafficAndReturns(t *testing.T) {
	const ejection = 600 * time.Millisecond
	var bad atomic.Bool
	bad.Store(true)
	var hits [3]atomic.Int64
	var ups [3]string
	for i := range ups {
		i := i
		ups[i] = addr(upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
			hits[i].Add(1)
			if i == 0 && bad.Load() {
				w.WriteHeader(http.StatusInternalServerError)
				return
			}
			_, _ = io.WriteString(w, "ok")
		}))
	}
	clock := &fakeClock{now: time.Unix(1e9, 0)}
	h := startProxy(t, parseConfig(t, `
clusters:
  inventory:
    endpoints: ["%s", "%s", "%s"]
    lb_policy: round_robin
    circuit_breaker: {disabled: true}
    outlier_detection:
      consecutive_5xx: 3
      interval: 20ms
      base_ejection_time: %s
      max_ejection_time: 10s
routes:
  - name: inventory
    cluster: inventory
`, ups[0], ups[1], ups[2], ejection), func(o *Options) { o.Now = clock.Now })
	get := func() int {
		resp, _ := do(t, h.h1, http.MethodGet, h.url("/item"), nil)
		return resp.StatusCode
	}
	ep := func() EndpointStatus { return h.p.Clusters()[0].Endpoints[0] }

	// Round robin brings every third request to the bad endpoint: it is
	// ejected on its third failure.
	for i := 0; i < 30 && hits[0].Load() < 3; i++ {
		get()
	}
	if hits[0].Load() != 3 {
		t.Fatalf("bad endpoint hit %d times", hits[0].Load())
	}
	eventually(t, 5*time.Second, "ejection", func() bool { return ep().State == "ejected" })
	until := ep().EjectedUntil

	// While ejected every request succeeds on the two others.
	var before [3]int64
	for i := range hits {
		before[i] = hits[i].Load()
	}
	const sent = 60
	for i := range sent {
		if code := get(); code != http.StatusOK {
			t.Fatalf("request %d while ejected: %d", i, code)
		}
	}
	if n := hits[0].Load() - before[0]; n != 0 {
		t.Fatalf("ejected endpoint got %d of %d requests", n, sent)
	}
	for i := 1; i < 3; i++ {
		if n := hits[i].Load() - before[i]; n < int64(sent)/3 {
			t.Fatalf("endpoint %d got %d of %d requests; the two healthy ones should share them", i, n, sent)
		}
	}

	// It recovers; when its ejection ends it is picked again.
	bad.Store(false)
	clock.Add(until.Sub(clock.Now()) + time.Millisecond)
	eventually(t, 5*time.Second, "ejection over", func() bool { return ep().State == "healthy" })
	back := hits[0].Load()
	for i := 0; i < 30 && hits[0].Load() == back; i++ {
		if code := get(); code != http.StatusOK {
			t.Fatalf("after return: %d", code)
		}
	}
	if hits[0].Load() == back {
		t.Fatal("returned endpoint gets no traffic")
	}
	if s := ep(); s.State != "healthy" || s.TimesEjected != 1 {
		t.Fatalf("endpoint after return %+v", s)
	}
}

// TestAcceptanceMaxRequestsOverflowFailsFastAndHoldsMemory: with
// max_requests 4 and four requests held by a slow upstream, 2,000 more get
// an immediate 503 max_requests; the upstream never sees more than four at
// once, and the overflow leaves neither heap nor goroutines behind.
func TestAcceptanceMaxRequestsOverflowFailsFastAndHoldsMemory(t *testing.T) {
	const (
		maxRequests = 4
		overflow    = 2000
		workers     = 8
	)
	release := make(chan struct{})
	var releaseOnce sync.Once
	releaseAll := func() { releaseOnce.Do(func() { close(release) }) }
	entered := make(chan struct{}, maxRequests)
	var cur, peak, total atomic.Int64
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		total.Add(1)
		n := cur.Add(1)
		defer cur.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		entered <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		_, _ = io.WriteString(w, "slow ok")
	})
	t.Cleanup(releaseAll) // before up.Close
	h := startProxy(t, parseConfig(t, `
clusters:
  inventory:
    endpoints: ["%s"]
    limits: {max_requests: %d}
routes:
  - name: inventory
    cluster: inventory
`, addr(up), maxRequests))

	held := make(chan int, maxRequests)
	for i := 0; i < maxRequests; i++ {
		go func() {
			resp, err := h.h1.Get(h.url("/slow"))
			if err != nil {
				held <- -1
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			held <- resp.StatusCode
		}()
	}
	deadline := time.After(10 * time.Second)
	for i := 0; i < maxRequests; i++ {
		select {
		case <-entered:
		case <-deadline:
			releaseAll()
			t.Fatalf("only %d requests reached the upstream", i)
		}
	}

	goroutines := runtime.NumGoroutine()
	heap := heapInuse()
	var wg sync.WaitGroup
	var wrong atomic.Int64
	var firstWrong atomic.Value
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < overflow/workers; i++ {
				resp, err := h.h1.Get(h.url("/overflow"))
				if err != nil {
					wrong.Add(1)
					firstWrong.CompareAndSwap(nil, err.Error())
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("X-Outrigger-Breaker") != "max_requests" {
					wrong.Add(1)
					firstWrong.CompareAndSwap(nil, fmt.Sprintf("%d %v", resp.StatusCode, resp.Header))
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if n := wrong.Load(); n != 0 {
		releaseAll()
		t.Fatalf("%d overflow requests not refused with max_requests; first: %v", n, firstWrong.Load())
	}
	// The overflow requests were all answered while the four were still
	// held: none waited for a slot.
	if got := total.Load(); got != maxRequests {
		t.Fatalf("upstream saw %d requests, want %d", got, maxRequests)
	}
	heapAfter := heapInuse()
	if heapAfter > heap && heapAfter-heap > 16<<20 {
		t.Fatalf("heap in use grew by %d bytes over %d refusals", heapAfter-heap, overflow)
	}
	if ov := h.p.Clusters()[0].Limits["max_requests"]; ov.Overflows != overflow || ov.InUse != maxRequests {
		t.Fatalf("max_requests status %+v", ov)
	}
	t.Logf("%d refusals in %v (%v each, %d workers); heap in use %d -> %d", overflow, elapsed, elapsed/overflow, workers, heap, heapAfter)

	releaseAll()
	for i := 0; i < maxRequests; i++ {
		if code := <-held; code != http.StatusOK {
			t.Fatalf("held request: %d", code)
		}
	}
	if p := peak.Load(); p != maxRequests {
		t.Fatalf("upstream saw %d requests at once, want %d", p, maxRequests)
	}
	// The workers' connections stay idle in the client pool; allow for
	// them (client and server side) but not for one goroutine per refusal.
	eventually(t, 5*time.Second, "goroutines back", func() bool { return runtime.NumGoroutine() < goroutines+4*workers+10 })
}

// TestAcceptanceGRPCOpenBreakerIsUnavailableNamingCluster: once the breaker
// has opened on UNAVAILABLE answers, a real grpc-go client gets
// UNAVAILABLE naming the cluster on unary, server-streaming and
// bidirectional calls alike, and the server is not called.
func TestAcceptanceGRPCOpenBreakerIsUnavailableNamingCluster(t *testing.T) {
	svc := &flakyStreamer{}
	svc.fail.Store(true)
	h := startProxy(t, parseConfig(t, `
clusters:
  inventory:
    protocol: grpc
    endpoints: ["%s"]
    circuit_breaker:
      consecutive_failures: {threshold: 3}
      open: {base: 1m}
routes:
  - name: inventory
    cluster: inventory
`, startFlakyGRPC(t, svc)))
	client := grpcClient(t, h.out)
	for i := 0; i < 3; i++ {
		_, err := client.UnaryCall(ctxT(t, 10*time.Second), &testpb.SimpleRequest{})
		if s := status.Convert(err); s.Code() != codes.Unavailable || s.Message() != "backend draining" {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	eventually(t, 5*time.Second, "breaker open", func() bool { return h.p.Clusters()[0].Breaker.State == "open" })
	calls := svc.arrivals.Load()
	want := "circuit breaker open for cluster " + acceptanceCluster

	var tr metadata.MD
	_, err := client.UnaryCall(ctxT(t, 10*time.Second), &testpb.SimpleRequest{}, grpc.Trailer(&tr))
	if s := status.Convert(err); s.Code() != codes.Unavailable || s.Message() != want {
		t.Fatalf("unary: %v %q", s.Code(), s.Message())
	}
	if v := tr.Get("x-outrigger-breaker"); len(v) != 1 || v[0] != "open" {
		t.Fatalf("unary trailers %v", tr)
	}
	if v := tr.Get("retry-after"); len(v) != 1 {
		t.Fatalf("unary trailers %v", tr)
	} else if n, err := strconv.Atoi(v[0]); err != nil || n < 1 || n > 60 {
		t.Fatalf("retry-after %q", v[0])
	}

	if v := grpcStreamCall(t, client); v != rejectedOpen {
		t.Fatalf("server streaming: %v", v)
	}

	bidi, err := client.FullDuplexCall(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	_ = bidi.Send(&testpb.StreamingOutputCallRequest{}) // may fail once the reply is in
	_, err = bidi.Recv()
	if s := status.Convert(err); s.Code() != codes.Unavailable || s.Message() != want {
		t.Fatalf("bidi: %v %q", s.Code(), s.Message())
	}
	if got := svc.arrivals.Load(); got != calls {
		t.Fatalf("open breaker let %d calls reach the server", got-calls)
	}
}

// TestAcceptanceRetriesNeverGoToAnOpenBreaker: a retry is a call of its own
// for the breaker. When the breaker trips between attempts the remaining
// retries are not made, and when it is open (forced by an operator) a
// request with a retry policy is refused at once without any attempt.
func TestAcceptanceRetriesNeverGoToAnOpenBreaker(t *testing.T) {
	bad := failing(500)
	up := upstream(t, false, bad.ServeHTTP)
	h := startProxy(t, parseConfig(t, `
clusters:
  inventory:
    endpoints: ["%s"]
    circuit_breaker:
      consecutive_failures: {threshold: 2}
      failure_rate: {disabled: true}
      open: {base: 1m}
    outlier_detection: {disabled: true}
routes:
  - name: inventory
    cluster: inventory
    retry:
      attempts: 5
      retry_on: [5xx]
      backoff: {base: 1ms, max: 2ms}
`, addr(up)))
	br := func() BreakerStatus { return h.p.Clusters()[0].Breaker }

	// Tripped mid-request: the second attempt opens the breaker, so of five
	// retries only one is made; the client gets the last upstream answer.
	resp, _ := do(t, h.h1, http.MethodGet, h.url("/item"), nil)
	if resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("status %d %v", resp.StatusCode, resp.Header)
	}
	if n := bad.n.Load(); n != 2 {
		t.Fatalf("upstream reached %d times; attempts after the trip must not be made", n)
	}
	if s := br(); s.State != "open" || s.TimesOpened != 1 {
		t.Fatalf("breaker %s, opened %d times", s.State, s.TimesOpened)
	}

	// Forced open: not a single attempt.
	if err := h.p.SetBreaker(acceptanceCluster, "reset"); err != nil {
		t.Fatal(err)
	}
	if err := h.p.SetBreaker(acceptanceCluster, "open"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		start := time.Now()
		resp, _ := do(t, h.h1, http.MethodGet, h.url("/item"), nil)
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("X-Outrigger-Breaker") != "open" {
			t.Fatalf("forced open: %d %v", resp.StatusCode, resp.Header)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("refusal took %v", d)
		}
	}
	if n := bad.n.Load(); n != 2 {
		t.Fatalf("forced-open breaker let %d attempts through", n-2)
	}
	if v := counterValue(h.p.m.retries.WithLabelValues(acceptanceCluster)); v != 1 {
		t.Fatalf("retries counted %v, want the one retry before the trip", v)
	}
}

// TestAcceptanceHalfOpenAdmitsMaxProbes: after the open period exactly
// max_probes calls reach the upstream at once; the next is refused with
// x-outrigger-breaker: half_open (and no retry-after); when the probes
// succeed the breaker closes.
func TestAcceptanceHalfOpenAdmitsMaxProbes(t *testing.T) {
	var fail atomic.Bool
	fail.Store(true)
	release := make(chan struct{})
	var releaseOnce sync.Once
	releaseAll := func() { releaseOnce.Do(func() { close(release) }) }
	entered := make(chan struct{}, 2)
	var arrivals atomic.Int64
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		arrivals.Add(1)
		if fail.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		entered <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		_, _ = io.WriteString(w, "ok")
	})
	t.Cleanup(releaseAll) // before up.Close
	h := startProxy(t, parseConfig(t, `
clusters:
  inventory:
    endpoints: ["%s"]
    circuit_breaker:
      consecutive_failures: {threshold: 2}
      failure_rate: {disabled: true}
      open: {base: 100ms}
      half_open: {max_probes: 2, successes_to_close: 2}
    outlier_detection: {disabled: true}
routes:
  - name: inventory
    cluster: inventory
`, addr(up)))
	br := func() BreakerStatus { return h.p.Clusters()[0].Breaker }
	for i := 0; i < 2; i++ {
		do(t, h.h1, http.MethodGet, h.url("/item"), nil)
	}
	eventually(t, 5*time.Second, "breaker open", func() bool { return br().State == "open" })
	until := br().OpenUntil
	fail.Store(false)
	eventually(t, 5*time.Second, "open period over", func() bool { return time.Now().After(until) })

	probes := make(chan int, 2)
	for i := 0; i < 2; i++ {
		go func() {
			resp, err := h.h1.Get(h.url("/item"))
			if err != nil {
				probes <- -1
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			probes <- resp.StatusCode
		}()
	}
	deadline := time.After(10 * time.Second)
	for i := 0; i < 2; i++ {
		select {
		case <-entered:
		case <-deadline:
			releaseAll()
			t.Fatalf("%d of 2 probes reached the upstream", i)
		}
	}
	resp, _ := do(t, h.h1, http.MethodGet, h.url("/item"), nil)
	releaseAll()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("X-Outrigger-Breaker") != "half_open" || resp.Header.Get("Retry-After") != "" {
		t.Fatalf("third call while 2 probes in flight: %d %v", resp.StatusCode, resp.Header)
	}
	for i := 0; i < 2; i++ {
		if code := <-probes; code != http.StatusOK {
			t.Fatalf("probe: %d", code)
		}
	}
	if n := arrivals.Load(); n != 4 {
		t.Fatalf("upstream reached %d times, want 2 failures and 2 probes", n)
	}
	eventually(t, 5*time.Second, "breaker closed", func() bool { return br().State == "closed" })
	if s := br(); s.RejectedProbes != 1 {
		t.Fatalf("rejected_probes %d", s.RejectedProbes)
	}
}

// TestAcceptanceClientCancelCountsNeitherWay: a call the client abandons
// before the upstream answered is neither a success (which would end the
// run of failures) nor a failure (which would trip the breaker).
func TestAcceptanceClientCancelCountsNeitherWay(t *testing.T) {
	var hang atomic.Bool
	stop := make(chan struct{})
	entered := make(chan struct{}, 1)
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		if hang.Load() {
			entered <- struct{}{}
			select {
			case <-r.Context().Done():
			case <-stop:
			}
			return
		}
		w.WriteHeader(http.StatusInternalServerError)
	})
	t.Cleanup(func() { close(stop) }) // before up.Close
	h := startProxy(t, parseConfig(t, `
clusters:
  inventory:
    endpoints: ["%s"]
    circuit_breaker:
      consecutive_failures: {threshold: 2}
      failure_rate: {disabled: true}
      open: {base: 1m}
    outlier_detection: {disabled: true}
routes:
  - name: inventory
    cluster: inventory
`, addr(up)))
	cs := func() ClusterStatus { return h.p.Clusters()[0] }

	do(t, h.h1, http.MethodGet, h.url("/item"), nil)
	eventually(t, 5*time.Second, "first failure recorded", func() bool { return cs().Breaker.ConsecutiveFailures == 1 })

	hang.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.url("/item"), nil)
	errc := make(chan error, 1)
	go func() {
		resp, err := h.h1.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the call never reached the upstream")
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("abandoned call: %v", err)
	}
	eventually(t, 5*time.Second, "abandoned call finished in the proxy", func() bool { return cs().ActiveRequests == 0 })
	if b := cs().Breaker; b.State != "closed" || b.ConsecutiveFailures != 1 || b.Calls != 1 {
		t.Fatalf("after an abandoned call: %s, %d consecutive failures, %d calls", b.State, b.ConsecutiveFailures, b.Calls)
	}

	hang.Store(false)
	do(t, h.h1, http.MethodGet, h.url("/item"), nil)
	eventually(t, 5*time.Second, "breaker open on the second failure", func() bool { return cs().Breaker.State == "open" })
}

// TestAcceptanceHTTPBodyResetAfterHeadersCountsAsFailure: a 200 whose
// upstream connection is cut mid-body reaches the client as an aborted
// response, and the breaker counts it as the failure it is, not as the
// success its headers promised.
func TestAcceptanceHTTPBodyResetAfterHeadersCountsAsFailure(t *testing.T) {
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("partial"))
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		conn.Close()
	})
	h := startProxy(t, parseConfig(t, `
clusters:
  inventory:
    endpoints: ["%s"]
    circuit_breaker:
      consecutive_failures: {threshold: 3}
      failure_rate: {disabled: true}
      open: {base: 1m}
    outlier_detection: {disabled: true}
routes:
  - name: inventory
    cluster: inventory
`, addr(up)))
	for i := 0; i < 3; i++ {
		req, _ := http.NewRequest(http.MethodGet, h.url("/item"), nil)
		resp, err := h.h1.Do(req)
		if err != nil {
			continue // the proxy may abort before the client has the headers
		}
		_, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		if rerr == nil {
			t.Fatalf("call %d: a body cut short upstream arrived whole", i)
		}
	}
	eventually(t, 10*time.Second, "breaker open after three bodies cut short", func() bool {
		return h.p.Clusters()[0].Breaker.State == "open"
	})
}

// TestAcceptanceClientCancelMidBodyCountsNeitherWay: a client that goes
// away while a 200's body is streaming makes the call neither a success
// nor a failure, though its headers said success.
func TestAcceptanceClientCancelMidBodyCountsNeitherWay(t *testing.T) {
	stop := make(chan struct{})
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		// No length: the proxy flushes a streamed body as it arrives.
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("partial"))
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	})
	t.Cleanup(func() { close(stop) }) // before up.Close
	h := startProxy(t, parseConfig(t, `
clusters:
  inventory:
    endpoints: ["%s"]
    circuit_breaker:
      consecutive_failures: {threshold: 2}
      failure_rate: {disabled: true}
      open: {base: 1m}
    outlier_detection: {disabled: true}
routes:
  - name: inventory
    cluster: inventory
`, addr(up)))
	cs := func() ClusterStatus { return h.p.Clusters()[0] }

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.url("/item"), nil)
	resp, err := h.h1.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 7)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "partial" {
		t.Fatalf("first bytes %q: %v", buf, err)
	}
	cancel()
	resp.Body.Close()
	eventually(t, 5*time.Second, "abandoned call finished in the proxy", func() bool { return cs().ActiveRequests == 0 })
	if b := cs().Breaker; b.State != "closed" || b.ConsecutiveFailures != 0 || b.Calls != 0 {
		t.Fatalf("after a call abandoned mid-body: %s, %d consecutive failures, %d calls", b.State, b.ConsecutiveFailures, b.Calls)
	}
}
