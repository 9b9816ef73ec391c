package proxy

import (
	"context"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/outrigger-mesh/outrigger/composer"
	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// attemptCounts records the x-outrigger-attempt-count values (each
// request's, joined by ","; "-" for none) that upstreams saw, in order.
type attemptCounts struct {
	mu   sync.Mutex
	seen []string
}

func (a *attemptCounts) add(vv []string) {
	v := "-"
	if len(vv) > 0 {
		v = strings.Join(vv, ",")
	}
	a.mu.Lock()
	a.seen = append(a.seen, v)
	a.mu.Unlock()
}

func (a *attemptCounts) get() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.seen...)
}

// recording is an upstream that records the attempt count it is sent and
// answers status.
func (a *attemptCounts) recording(status int) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		a.add(r.Header.Values("X-Outrigger-Attempt-Count"))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`{"ok":true}`))
	})
	return mux
}

// With include_request_attempt_count, every attempt carries its number:
// 1 on the first try, 2 on the retry, and a value the client sent is
// replaced on both.
func TestAttemptCountNumbersEachAttemptAndReplacesTheClients(t *testing.T) {
	for _, h2c := range []bool{false, true} {
		name := "http1"
		if h2c {
			name = "h2c"
		}
		t.Run(name, func(t *testing.T) {
			var seen attemptCounts
			bad := upstream(t, h2c, seen.recording(503).ServeHTTP)
			good := upstream(t, h2c, seen.recording(200).ServeHTTP)
			cfg := retryCfg([]string{addr(bad), addr(good)}, config.RetryPolicy{Attempts: 2,
				RetryOn: []config.RetryCondition{"5xx"}, Backoff: config.Backoff{Base: time.Microsecond}},
				func(r *config.Route) { r.IncludeRequestAttemptCount = true })
			if h2c {
				c := cfg.Clusters["svc"]
				c.Protocol = config.ProtocolHTTP2
				cfg.Clusters["svc"] = c
			}
			h := startProxy(t, cfg)
			resp := mustGet(t, h.h1, h.url("/"), "X-Outrigger-Attempt-Count", "7")
			readAll(t, resp)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if got, want := seen.get(), []string{"1", "2"}; !reflect.DeepEqual(got, want) {
				t.Fatalf("upstreams saw attempt counts %q, want %q", got, want)
			}
		})
	}
}

// Without include_request_attempt_count the proxy neither adds the
// header nor touches one the client sent (an outbound sidecar's count
// reaches the app through the inbound one).
func TestAttemptCountOffLeavesTheClientsHeader(t *testing.T) {
	var seen attemptCounts
	bad := upstream(t, false, seen.recording(503).ServeHTTP)
	good := upstream(t, false, seen.recording(200).ServeHTTP)
	h := startProxy(t, retryCfg([]string{addr(bad), addr(good)}, config.RetryPolicy{Attempts: 1,
		RetryOn: []config.RetryCondition{"5xx"}, Backoff: config.Backoff{Base: time.Microsecond}}))
	readAll(t, mustGet(t, h.h1, h.url("/"), "X-Outrigger-Attempt-Count", "7"))
	readAll(t, mustGet(t, h.h1, h.url("/")))
	if got, want := seen.get(), []string{"7", "7", "-", "-"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("upstreams saw attempt counts %q, want %q", got, want)
	}
}

// A fallback cluster's attempts go on counting from the primary's: two
// connect failures on the primary (the try and its retry) make the
// fallback's attempt the third.
func TestAttemptCountGoesOnInTheFallbackCluster(t *testing.T) {
	var seen attemptCounts
	spare := upstream(t, false, seen.recording(200).ServeHTTP)
	h := startProxy(t, fallbackConfig(refusedAddr(t), addr(spare), &config.Fallback{Cluster: "spare"},
		func(r *config.Route) {
			r.IncludeRequestAttemptCount = true
			r.Retry = &config.RetryPolicy{Attempts: 1, RetryOn: []config.RetryCondition{"connect-failure"},
				Backoff: config.Backoff{Base: time.Microsecond}}
		}))
	resp := mustGet(t, h.h1, h.url("/"))
	readAll(t, resp)
	if resp.StatusCode != 200 || resp.Header.Get("X-Outrigger-Fallback") != "upstream_connect_failure" {
		t.Fatalf("status %d, headers %v", resp.StatusCode, resp.Header)
	}
	if got, want := seen.get(), []string{"3"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("fallback cluster saw attempt counts %q, want %q", got, want)
	}
}

// Each backend call of a composition counts its own attempts.
func TestAttemptCountOnCompositionCalls(t *testing.T) {
	var seen attemptCounts
	bad := upstream(t, false, seen.recording(503).ServeHTTP)
	good := upstream(t, false, seen.recording(200).ServeHTTP)
	cfg := &config.Config{
		Clusters: map[string]config.Cluster{"svc": {Endpoints: eps(addr(bad), addr(good))}},
		Routes: []config.Route{{
			Name:                       "composed",
			Match:                      config.RouteMatch{Path: config.PathMatch{Exact: "/composed"}},
			IncludeRequestAttemptCount: true,
			Retry: &config.RetryPolicy{Attempts: 1, RetryOn: []config.RetryCondition{"5xx"},
				Backoff: config.Backoff{Base: time.Microsecond}},
			Composition: &composer.Spec{Calls: []composer.Call{{Name: "one", Cluster: "svc", Path: "/one"}}},
		}},
	}
	h := startProxy(t, cfg)
	resp := mustGet(t, h.h1, h.url("/composed"))
	if body := readAll(t, resp); resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if got, want := seen.get(), []string{"1", "2"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("backends saw attempt counts %q, want %q", got, want)
	}
}

// attemptService is a gRPC TestService whose UnaryCall records the
// attempt count in its metadata and fails the first failFirst calls
// UNAVAILABLE (trailers-only).
type attemptService struct {
	testService
	seen      attemptCounts
	mu        sync.Mutex
	failFirst int
}

func (s *attemptService) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	s.seen.add(md.Get("x-outrigger-attempt-count"))
	s.mu.Lock()
	fail := s.failFirst > 0
	s.failFirst--
	s.mu.Unlock()
	if fail {
		return nil, status.Error(codes.Unavailable, "warming up")
	}
	return &testpb.SimpleResponse{Payload: req.GetPayload()}, nil
}

// A gRPC call retried on a trailers-only UNAVAILABLE: the server sees
// attempt 1, then attempt 2, in its metadata.
func TestAttemptCountOnGRPCRetry(t *testing.T) {
	svc := &attemptService{failFirst: 1}
	target := startGRPCServer(t, svc)
	cfg := grpcConfig(target)
	cfg.Routes[0].IncludeRequestAttemptCount = true
	cfg.Routes[0].Retry = &config.RetryPolicy{Attempts: 1, RetryOn: []config.RetryCondition{"unavailable"},
		Backoff: config.Backoff{Base: time.Microsecond}}
	h := startProxy(t, cfg)
	c := grpcClient(t, h.out)
	ctx := metadata.AppendToOutgoingContext(ctxT(t, 5*time.Second), "x-outrigger-attempt-count", "9")
	if _, err := c.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("hi")}}); err != nil {
		t.Fatal(err)
	}
	if got, want := svc.seen.get(), []string{"1", "2"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("server saw attempt counts %q, want %q", got, want)
	}
}
