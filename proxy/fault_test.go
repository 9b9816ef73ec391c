package proxy

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// faultCall sends a GET (or, with grpc, a gRPC POST over h2c) through h
// and returns the response with its body read.
func faultCall(t *testing.T, h *harness, grpc bool) (*http.Response, string) {
	t.Helper()
	if !grpc {
		return do(t, h.h1, "GET", h.url("/"), nil)
	}
	req, _ := http.NewRequest("POST", h.url("/pkg.Svc/Call"), nil)
	req.Header.Set("Content-Type", "application/grpc")
	resp, err := h.h2c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp, readAll(t, resp)
}

// countingUpstream answers 200 and counts the requests it got.
func countingUpstream(t *testing.T) (string, *atomic.Int64) {
	n := new(atomic.Int64)
	up := upstream(t, true, func(w http.ResponseWriter, r *http.Request) { n.Add(1) })
	return addr(up), n
}

func withFault(f *config.Fault) func(*config.Route) {
	return func(r *config.Route) { r.Fault = f }
}

// An abort answers in place of the route's action, with the configured
// HTTP status, and a gRPC request with the configured gRPC status or,
// without one, the status a gRPC client reads from the HTTP status; with
// only a gRPC status, requests that are not gRPC go on.
func TestFaultAbortAnswersInPlaceOfTheRoute(t *testing.T) {
	for _, tc := range []struct {
		name       string
		abort      config.FaultAbort
		httpStatus int    // 0: forwarded
		grpcStatus string // "": forwarded
	}{
		{"http status", config.FaultAbort{HTTPStatus: 503, Percent: 100}, 503, "14"},
		{"http status mapped for grpc", config.FaultAbort{HTTPStatus: 404, Percent: 100}, 404, "12"},
		{"unmapped http status", config.FaultAbort{HTTPStatus: 500, Percent: 100}, 500, "2"},
		{"both", config.FaultAbort{HTTPStatus: 429, GRPCStatus: "RESOURCE_EXHAUSTED", Percent: 100}, 429, "8"},
		{"grpc only", config.FaultAbort{GRPCStatus: "4", Percent: 100}, 0, "4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, got := countingUpstream(t)
			h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(a)}, withFault(&config.Fault{Abort: &tc.abort})))
			resp, body := faultCall(t, h, false)
			switch {
			case tc.httpStatus == 0:
				if resp.StatusCode != 200 || got.Load() != 1 {
					t.Fatalf("HTTP: %d, %d upstream requests; want it forwarded", resp.StatusCode, got.Load())
				}
			case resp.StatusCode != tc.httpStatus || resp.Header.Get(HeaderError) != "fault_abort" || body != "fault injected\n":
				t.Fatalf("HTTP: %d %q %q, want %d fault_abort", resp.StatusCode, resp.Header.Get(HeaderError), body, tc.httpStatus)
			}
			before := got.Load()
			resp, _ = faultCall(t, h, true)
			if st := resp.Header.Get("Grpc-Status"); st != tc.grpcStatus || resp.Header.Get(HeaderError) != "fault_abort" {
				t.Fatalf("gRPC: grpc-status %q %q, want %s fault_abort", st, resp.Header.Get(HeaderError), tc.grpcStatus)
			}
			if got.Load() != before {
				t.Fatal("an aborted gRPC call reached the upstream")
			}
			if v := counterValue(h.p.m.faults.WithLabelValues("outbound", "all", "abort")); v != float64(1+min(tc.httpStatus, 1)) {
				t.Fatalf("faults_injected_total{fault=abort} = %v", v)
			}
		})
	}
	t.Run("no content", func(t *testing.T) {
		a, _ := countingUpstream(t)
		h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(a)},
			withFault(&config.Fault{Abort: &config.FaultAbort{HTTPStatus: 204, Percent: 100}})))
		resp, body := faultCall(t, h, false)
		if resp.StatusCode != 204 || body != "" || resp.Header.Get("Content-Length") != "" {
			t.Fatalf("%d %q content-length %q, want 204 without a body", resp.StatusCode, body, resp.Header.Get("Content-Length"))
		}
	})
}

// The share drawn is the configured one: with draws that go round the
// quarters of the million, 25 % of 40 requests are aborted, no more, no
// less.
func TestFaultAbortPercent(t *testing.T) {
	a, got := countingUpstream(t)
	var next atomic.Int64
	draw := func(n int64) int64 { return (next.Add(1) - 1) % 4 * (n / 4) }
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(a)},
		withFault(&config.Fault{Abort: &config.FaultAbort{HTTPStatus: 503, Percent: 25}})),
		func(o *Options) { o.Int63n = draw })
	aborted := 0
	for range 40 {
		if resp, _ := faultCall(t, h, false); resp.StatusCode == 503 {
			aborted++
		}
	}
	if aborted != 10 || got.Load() != 30 {
		t.Fatalf("%d aborted and %d forwarded, want 10 and 30", aborted, got.Load())
	}
}

// A delay holds the request before the route's action, and the route
// timeout starts after it: a delay longer than the timeout still gets
// the upstream's answer. A direct response with a delay is a slow mock.
// The route timeout is a second, which the upstream is to answer
// within: 100ms left a loaded machine under -race room to miss it.
func TestFaultDelayHoldsTheRequestOutsideTheRouteTimeout(t *testing.T) {
	a, got := countingUpstream(t)
	const timeout = time.Second
	const delay = timeout + 100*time.Millisecond
	cfg := simpleConfig(config.Cluster{Endpoints: eps(a)}, withFault(&config.Fault{Delay: &config.FaultDelay{Fixed: delay, Percent: 100}}),
		func(r *config.Route) { r.Timeout = timeout })
	cfg.Routes = append([]config.Route{{Name: "mock", Match: config.RouteMatch{Path: config.PathMatch{Exact: "/mock"}},
		DirectResponse: &config.DirectResponse{Status: 200, Body: "mocked"},
		Fault:          &config.Fault{Delay: &config.FaultDelay{Fixed: delay, Percent: 100}}}}, cfg.Routes...)
	h := startProxy(t, cfg)
	for _, path := range []string{"/", "/mock"} {
		start := time.Now()
		resp, body := do(t, h.h1, "GET", h.url(path), nil)
		if took := time.Since(start); took < delay {
			t.Fatalf("%s answered after %v, before the %v delay", path, took, delay)
		}
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %q, want 200: the route timeout counted the delay", path, resp.StatusCode, body)
		}
	}
	if got.Load() != 1 {
		t.Fatalf("%d upstream requests, want 1", got.Load())
	}
	if v := counterValue(h.p.m.faults.WithLabelValues("outbound", "mock", "delay")); v != 1 {
		t.Fatalf("delays on mock: %v, want 1", v)
	}
}

// max_active caps the requests held at once: past it, a request goes on
// undelayed. A client that goes away ends its delay, and the request
// goes no further.
func TestFaultDelayMaxActiveAndClientGone(t *testing.T) {
	a, got := countingUpstream(t)
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(a)},
		withFault(&config.Fault{MaxActive: 1, Delay: &config.FaultDelay{Fixed: time.Hour, Percent: 100}})))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	held := holdRequest(t, h, ctx)
	delays := h.p.m.faults.WithLabelValues("outbound", "all", "delay")
	if resp, body := do(t, h.h1, "GET", h.url("/next"), nil); resp.StatusCode != 200 || got.Load() != 1 {
		t.Fatalf("past max_active: %d %q, %d upstream requests; want it forwarded at once", resp.StatusCode, body, got.Load())
	}
	select {
	case err := <-held:
		t.Fatalf("the held request ended (%v) while its delay ran", err)
	default:
	}
	cancel()
	if err := <-held; err == nil {
		t.Fatal("the held request got a response after its client left")
	}
	eventually(t, 10*time.Second, "the abandoned request to be counted", func() bool {
		return counterValue(h.p.m.requests.WithLabelValues("outbound", "all", "", "4xx")) == 1 // 499
	})
	if got.Load() != 1 || counterValue(delays) != 1 {
		t.Fatalf("%d upstream requests and %v delays, want 1 and 1", got.Load(), counterValue(delays))
	}
}

// holdRequest sends GET /held, which the route's fault is to delay for
// good, until ctx ends; it waits for the delay to hold it, and the
// returned channel has the request's end, nil for a response.
func holdRequest(t *testing.T, h *harness, ctx context.Context) <-chan error {
	t.Helper()
	delays := h.p.m.faults.WithLabelValues("outbound", "all", "delay")
	before := counterValue(delays)
	held := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "GET", h.url("/held"), nil)
		resp, err := h.h1.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		held <- err
	}()
	eventually(t, 10*time.Second, "the request to be held", func() bool { return counterValue(delays) == before+1 })
	return held
}

// A reload that removes a route's fault removes its series.
func TestFaultSeriesGoWithTheFault(t *testing.T) {
	a, _ := countingUpstream(t)
	f := &config.Fault{Abort: &config.FaultAbort{HTTPStatus: 503, Percent: 100}}
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(a)}, withFault(f)))
	faultCall(t, h, false)
	if n := countSeries(t, h, "outrigger_proxy_faults_injected_total", "route", "all"); n != 1 {
		t.Fatalf("%d fault series, want 1", n)
	}
	if err := h.p.Apply(simpleConfig(config.Cluster{Endpoints: eps(a)})); err != nil {
		t.Fatal(err)
	}
	if n := countSeries(t, h, "outrigger_proxy_faults_injected_total", "route", "all"); n != 0 {
		t.Fatalf("%d fault series after the fault was removed, want 0", n)
	}
	if resp, _ := faultCall(t, h, false); resp.StatusCode != 200 {
		t.Fatalf("%d after the fault was removed, want 200", resp.StatusCode)
	}
}

// max_active counts the requests a route's delay holds across reloads,
// as Envoy's active_faults gauge does: the requests a delay holds when a
// reload comes still count against the reloaded route's cap, so that a
// control plane's pushes do not let the held requests grow past it.
func TestFaultMaxActiveHoldsAcrossReloads(t *testing.T) {
	a, got := countingUpstream(t)
	cfg := simpleConfig(config.Cluster{Endpoints: eps(a)},
		withFault(&config.Fault{MaxActive: 1, Delay: &config.FaultDelay{Fixed: time.Hour, Percent: 100}}))
	h := startProxy(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	held := holdRequest(t, h, ctx)
	if err := h.p.Apply(simpleConfig(config.Cluster{Endpoints: eps(a)},
		withFault(&config.Fault{MaxActive: 1, Delay: &config.FaultDelay{Fixed: time.Hour, Percent: 100}}))); err != nil {
		t.Fatal(err)
	}
	nextForwardedAtOnce(t, h, got)
	cancel()
	<-held
	// The held request's end is counted: the cap is free again.
	eventually(t, 10*time.Second, "the held request to end", func() bool {
		return counterValue(h.p.m.requests.WithLabelValues("outbound", "all", "", "4xx")) == 1
	})
	if f := h.p.snap.Load().tables[Outbound].routes[0].fault; f.active.Load() != 0 {
		t.Fatalf("%d requests counted held after the last one ended", f.active.Load())
	}
}

// nextForwardedAtOnce sends one more request through h, with a delay
// holding another past max_active 1, and fails unless it is forwarded
// at once (within 3 s, the only request upstream counted by got).
func nextForwardedAtOnce(t *testing.T, h *harness, got *atomic.Int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", h.url("/next"), nil)
	resp, err := h.h1.Do(req)
	if err != nil {
		t.Fatalf("%v; a second request was held past max_active 1", err)
	}
	readAll(t, resp)
	if resp.StatusCode != 200 || got.Load() != 1 {
		t.Fatalf("%d, %d upstream requests; want it forwarded at once", resp.StatusCode, got.Load())
	}
}

// The requests a route's delay holds count against its max_active
// whatever the reloads between: one that removes the fault and a later
// one that adds it back while a request is still held, or one that
// gives a fault without max_active a cap while its delay holds a
// request. In both, the next request goes on undelayed.
func TestFaultMaxActiveCountsTheRequestsHeldBeforeAnyReload(t *testing.T) {
	capped := &config.Fault{MaxActive: 1, Delay: &config.FaultDelay{Fixed: time.Hour, Percent: 100}}
	uncapped := &config.Fault{Delay: &config.FaultDelay{Fixed: time.Hour, Percent: 100}}
	for _, tc := range []struct {
		name  string
		first *config.Fault
		then  []*config.Fault // the reloads' faults, nil for none
	}{
		{"removed then added back", capped, []*config.Fault{nil, capped}},
		{"removed, changed, then added back", capped, []*config.Fault{nil, {Abort: &config.FaultAbort{GRPCStatus: "4", Percent: 100}}, nil, capped}},
		{"capped by a reload", uncapped, []*config.Fault{capped}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, got := countingUpstream(t)
			h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(a)}, withFault(tc.first)))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			held := holdRequest(t, h, ctx)
			for _, f := range tc.then {
				var mod []func(*config.Route)
				if f != nil {
					mod = append(mod, withFault(f))
				}
				if err := h.p.Apply(simpleConfig(config.Cluster{Endpoints: eps(a)}, mod...)); err != nil {
					t.Fatal(err)
				}
			}
			nextForwardedAtOnce(t, h, got)
			cancel()
			<-held
			f := h.p.snap.Load().tables[Outbound].routes[0].fault
			eventually(t, 10*time.Second, "the held request's end to free the cap", func() bool { return f.active.Load() == 0 })
			// The count of a fault a reload removed is kept only while
			// its delay holds requests.
			if err := h.p.Apply(simpleConfig(config.Cluster{Endpoints: eps(a)})); err != nil {
				t.Fatal(err)
			}
			if err := h.p.Apply(simpleConfig(config.Cluster{Endpoints: eps(a)})); err != nil {
				t.Fatal(err)
			}
			h.p.applyMu.Lock()
			n := len(h.p.heldFaults)
			h.p.applyMu.Unlock()
			if n != 0 {
				t.Fatalf("%d counts of removed faults kept with no request held", n)
			}
		})
	}
}

// The route's response_headers edits apply to a fault's abort, as to the
// route's other local replies, and the reply's own fields win over them.
func TestFaultAbortCarriesTheRoutesResponseHeaders(t *testing.T) {
	a, _ := countingUpstream(t)
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(a)},
		withFault(&config.Fault{Abort: &config.FaultAbort{HTTPStatus: 503, Percent: 100}}),
		func(r *config.Route) {
			r.ResponseHeaders.Add = config.HeaderValues{{Name: "X-Route", Value: "all"}, {Name: HeaderError, Value: "edited"}}
		}))
	for _, grpc := range []bool{false, true} {
		resp, _ := faultCall(t, h, grpc)
		if resp.Header.Get("X-Route") != "all" || resp.Header.Get(HeaderError) != "fault_abort" {
			t.Fatalf("grpc %v: x-route %q, %s %q; want all and fault_abort", grpc, resp.Header.Get("X-Route"), HeaderError, resp.Header.Get(HeaderError))
		}
	}
}

// A reload that keeps a route's fault but drops one of its kinds removes
// that kind's series: the route exports a series for the kinds it
// injects, not one frozen at the count of a delay it no longer has.
func TestFaultSeriesGoWithTheKindRemoved(t *testing.T) {
	a, _ := countingUpstream(t)
	both := &config.Fault{Delay: &config.FaultDelay{Fixed: time.Millisecond, Percent: 100},
		Abort: &config.FaultAbort{HTTPStatus: 503, Percent: 100}}
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(a)}, withFault(both)))
	faultCall(t, h, false)
	if n := countSeries(t, h, "outrigger_proxy_faults_injected_total", "fault", "delay"); n != 1 {
		t.Fatalf("%d delay series, want 1", n)
	}
	if err := h.p.Apply(simpleConfig(config.Cluster{Endpoints: eps(a)},
		withFault(&config.Fault{Abort: &config.FaultAbort{HTTPStatus: 503, Percent: 100}}))); err != nil {
		t.Fatal(err)
	}
	if n := countSeries(t, h, "outrigger_proxy_faults_injected_total", "fault", "delay"); n != 0 {
		t.Fatalf("%d delay series after the delay was removed, want 0", n)
	}
	if n := countSeries(t, h, "outrigger_proxy_faults_injected_total", "fault", "abort"); n != 1 {
		t.Fatalf("%d abort series, want 1: the abort stays", n)
	}
}
