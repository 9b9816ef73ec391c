package proxy

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// fieldRecorder is an upstream that records, for each request it takes,
// the header names with an underscore and the trailer it read after the
// whole body.
type fieldRecorder struct {
	mu       sync.Mutex
	headers  [][]string    // lower-case names with "_", sorted, per request
	trailers []http.Header // r.Trailer after a body read to its end
	okHeader []string      // the X-Ok values seen
	calls    atomic.Int64
}

func (u *fieldRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.calls.Add(1)
	_, err := io.Copy(io.Discard, r.Body)
	u.mu.Lock()
	u.headers = append(u.headers, underscoreNames(r.Header))
	u.okHeader = append(u.okHeader, r.Header.Get("X-Ok"))
	if err == nil {
		u.trailers = append(u.trailers, r.Trailer.Clone())
	}
	u.mu.Unlock()
	if err != nil {
		return
	}
	_, _ = io.WriteString(w, "ok")
}

func (u *fieldRecorder) last(t *testing.T) (names []string, ok string) {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.headers) == 0 {
		t.Fatal("the upstream saw no request")
	}
	return u.headers[len(u.headers)-1], u.okHeader[len(u.okHeader)-1]
}

func underscoreNames(h http.Header) []string {
	var names []string
	for k := range h {
		if strings.Contains(k, "_") {
			names = append(names, strings.ToLower(k))
		}
	}
	slices.Sort(names)
	return names
}

func droppedUnderscores(h *harness, l Listener) float64 {
	return testutil.ToFloat64(h.p.m.underscoresDropped[l])
}

func rejectedUnderscores(h *harness) float64 {
	return testutil.ToFloat64(h.p.m.localByCode[ReasonHeaderWithUnderscore])
}

// An underscore twin of a header the sidecar sets (X_Forwarded_For) or
// that frames the message (Transfer_Encoding) is forwarded as it came
// under allow, taken out under drop, and refused 400 under reject, on
// HTTP/1.1 and h2c alike; the other headers go on untouched.
func TestHeadersWithUnderscoresAllowDropReject(t *testing.T) {
	up := &fieldRecorder{}
	srv := upstream(t, true, up.ServeHTTP)
	for _, client := range []string{"h1", "h2c"} {
		proto := config.ProtocolHTTP1
		if client == "h2c" {
			proto = config.ProtocolHTTP2
		}
		for _, action := range []config.HeadersWithUnderscores{"", config.HeadersWithUnderscoresAllow, config.HeadersWithUnderscoresDrop, config.HeadersWithUnderscoresReject} {
			t.Run(client+"/"+string(action), func(t *testing.T) {
				cfg := simpleConfig(config.Cluster{Endpoints: eps(addr(srv)), Protocol: proto})
				cfg.Listeners.Outbound.HeadersWithUnderscores = action
				h := startProxy(t, cfg)
				calls := up.calls.Load()

				req, err := http.NewRequest(http.MethodGet, h.url("/x"), nil)
				if err != nil {
					t.Fatal(err)
				}
				req.Header["X_Forwarded_For"] = []string{"203.0.113.7"}
				req.Header["Transfer_Encoding"] = []string{"chunked"}
				req.Header.Set("X-Ok", "yes")
				resp, err := h.client(client).Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body := readAll(t, resp)

				switch action {
				case "", config.HeadersWithUnderscoresAllow:
					if resp.StatusCode != 200 {
						t.Fatalf("status %d %q, want 200", resp.StatusCode, body)
					}
					names, ok := up.last(t)
					if want := []string{"transfer_encoding", "x_forwarded_for"}; !slices.Equal(names, want) || ok != "yes" {
						t.Errorf("upstream saw %v, X-Ok %q; want %v, yes", names, ok, want)
					}
					if n := droppedUnderscores(h, Outbound); n != 0 {
						t.Errorf("dropped counter %v, want 0", n)
					}
				case config.HeadersWithUnderscoresDrop:
					if resp.StatusCode != 200 {
						t.Fatalf("status %d %q, want 200", resp.StatusCode, body)
					}
					names, ok := up.last(t)
					if len(names) != 0 || ok != "yes" {
						t.Errorf("upstream saw %v, X-Ok %q; want none, yes", names, ok)
					}
					if n := droppedUnderscores(h, Outbound); n != 2 {
						t.Errorf("dropped counter %v, want 2 (one per header)", n)
					}
				case config.HeadersWithUnderscoresReject:
					if resp.StatusCode != http.StatusBadRequest || resp.Header.Get(HeaderError) != "header_with_underscore" {
						t.Fatalf("status %d, x-outrigger-error %q; want 400 header_with_underscore", resp.StatusCode, resp.Header.Get(HeaderError))
					}
					if !strings.HasPrefix(body, "request header ") || !strings.Contains(body, "has an underscore in its name") {
						t.Errorf("body %q does not name the header", body)
					}
					if n := up.calls.Load() - calls; n != 0 {
						t.Errorf("the upstream was called %d times", n)
					}
					if n := rejectedUnderscores(h); n != 1 {
						t.Errorf("local replies header_with_underscore %v, want 1", n)
					}
					if n := droppedUnderscores(h, Outbound); n != 0 {
						t.Errorf("dropped counter %v, want 0", n)
					}
				}
			})
		}
	}
}

// A gRPC call with underscored metadata is answered as the other local
// replies are: trailers-only, INTERNAL, with x-outrigger-error; under
// drop the call goes through without it.
func TestHeadersWithUnderscoresGRPC(t *testing.T) {
	svc := &testService{}
	target := startGRPCServer(t, svc)

	cfg := grpcConfig(target)
	cfg.Listeners.Outbound.HeadersWithUnderscores = config.HeadersWithUnderscoresReject
	h := startProxy(t, cfg)
	ctx := metadata.AppendToOutgoingContext(ctxT(t, 5*time.Second), "x-user", "alice", "x_user", "mallory")
	var tr metadata.MD
	_, err := grpcClient(t, h.out).UnaryCall(ctx, &testpb.SimpleRequest{}, grpc.Trailer(&tr))
	st := status.Convert(err)
	if st.Code() != codes.Internal || !strings.Contains(st.Message(), "X_user") {
		t.Fatalf("reject: %v %q, want INTERNAL naming X_user", st.Code(), st.Message())
	}
	if v := tr.Get("x-outrigger-error"); len(v) != 1 || v[0] != "header_with_underscore" {
		t.Errorf("x-outrigger-error %v", tr)
	}
	if n := svc.calls.Load(); n != 0 {
		t.Errorf("the service was called %d times", n)
	}

	cfg = grpcConfig(target)
	cfg.Listeners.Outbound.HeadersWithUnderscores = config.HeadersWithUnderscoresDrop
	hd := startProxy(t, cfg)
	resp, err := grpcClient(t, hd.out).UnaryCall(ctx, &testpb.SimpleRequest{})
	if err != nil {
		t.Fatalf("drop: %v", err)
	}
	if resp.GetUsername() != "alice" {
		t.Errorf("x-user reached the service as %q, want alice", resp.GetUsername())
	}
	if n := droppedUnderscores(hd, Outbound); n != 1 {
		t.Errorf("dropped counter %v, want 1", n)
	}
}

// Each listener has its own action, and a reload changes it for the
// requests that start after it.
func TestHeadersWithUnderscoresPerListener(t *testing.T) {
	up := &fieldRecorder{}
	srv := upstream(t, false, up.ServeHTTP)
	cfg := simpleConfig(config.Cluster{Endpoints: eps(addr(srv))})
	cfg.Listeners.Inbound.App = addr(srv)
	cfg.Listeners.Outbound.HeadersWithUnderscores = config.HeadersWithUnderscoresReject
	h := startProxy(t, cfg)

	get := func(hostport string) int {
		resp := mustGet(t, h.h1, "http://"+hostport+"/x", "X_Tenant", "other")
		readAll(t, resp)
		return resp.StatusCode
	}
	if s := get(h.out); s != http.StatusBadRequest {
		t.Errorf("outbound (reject): status %d, want 400", s)
	}
	if s := get(h.in); s != 200 {
		t.Fatalf("inbound (allow): status %d, want 200", s)
	}
	if names, _ := up.last(t); !slices.Equal(names, []string{"x_tenant"}) {
		t.Errorf("inbound (allow): upstream saw %v", names)
	}

	cfg.Listeners.Inbound.HeadersWithUnderscores = config.HeadersWithUnderscoresDrop
	cfg.Listeners.Outbound.HeadersWithUnderscores = ""
	if err := h.p.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if s := get(h.in); s != 200 {
		t.Fatalf("inbound (drop): status %d, want 200", s)
	}
	if names, _ := up.last(t); len(names) != 0 {
		t.Errorf("inbound (drop): upstream saw %v", names)
	}
	if n := droppedUnderscores(h, Inbound); n != 1 {
		t.Errorf("inbound dropped counter %v, want 1", n)
	}
	if s := get(h.out); s != 200 {
		t.Errorf("outbound (allow after the reload): status %d, want 200", s)
	}
	if n := droppedUnderscores(h, Outbound); n != 0 {
		t.Errorf("outbound dropped counter %v, want 0", n)
	}
}

// trailerBody is a request body of unknown length that, as it ends,
// gives its request's trailers their values, and adds late, which the
// request did not announce.
type trailerBody struct {
	req  *http.Request
	late string
	done bool
}

func (b *trailerBody) Read(p []byte) (int, error) {
	if !b.done {
		b.done = true
		return copy(p, "payload"), nil
	}
	for k := range b.req.Trailer {
		b.req.Trailer[k] = []string{"v-" + k}
	}
	if b.late != "" {
		b.req.Trailer[b.late] = []string{"late"}
	}
	return 0, io.EOF
}

// Request trailers are held to the listener's action as headers are
// (Envoy applies headers_with_underscores_action to both): under drop
// the upstream gets the others, under reject the request is refused,
// before it is forwarded when the Trailer header announced the name,
// and when the trailers arrive otherwise, in which case the upstream's
// request is cut short and never carries the field.
func TestHeadersWithUnderscoresInRequestTrailers(t *testing.T) {
	up := &fieldRecorder{}
	srv := upstream(t, false, up.ServeHTTP)
	for _, client := range []string{"h1", "h2c"} {
		for _, tc := range []struct {
			name      string
			action    config.HeadersWithUnderscores
			announced []string
			late      string
		}{
			{"drop/announced", config.HeadersWithUnderscoresDrop, []string{"X-Sum", "X_Sig"}, ""},
			{"drop/late", config.HeadersWithUnderscoresDrop, []string{"X-Sum"}, "X_Sig"},
			{"reject/announced", config.HeadersWithUnderscoresReject, []string{"X-Sum", "X_Sig"}, ""},
			{"reject/late", config.HeadersWithUnderscoresReject, []string{"X-Sum"}, "X_Sig"},
			{"reject/none-announced", config.HeadersWithUnderscoresReject, nil, "X_Sig"},
		} {
			if client == "h2c" && tc.announced == nil {
				// An HTTP/2 request's trailers that no Trailer header
				// announced are dropped by the listener (as
				// x/net/http2 does), so they never reach the check.
				continue
			}
			t.Run(client+"/"+tc.name, func(t *testing.T) {
				cfg := simpleConfig(config.Cluster{Endpoints: eps(addr(srv))})
				cfg.Listeners.Outbound.HeadersWithUnderscores = tc.action
				h := startProxy(t, cfg)
				calls := up.calls.Load()
				up.mu.Lock()
				up.trailers = nil
				up.mu.Unlock()

				req, err := http.NewRequest(http.MethodPost, h.url("/upload"), nil)
				if err != nil {
					t.Fatal(err)
				}
				req.Trailer = http.Header{}
				for _, k := range tc.announced {
					req.Trailer[k] = nil
				}
				req.Body = io.NopCloser(&trailerBody{req: req, late: tc.late})
				req.ContentLength = -1
				resp, err := h.client(client).Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body := readAll(t, resp)

				up.mu.Lock()
				trailers := up.trailers
				up.mu.Unlock()
				for _, tr := range trailers {
					if names := underscoreNames(tr); len(names) > 0 {
						t.Errorf("the upstream read trailers %v", names)
					}
				}
				switch tc.action {
				case config.HeadersWithUnderscoresDrop:
					if resp.StatusCode != 200 {
						t.Fatalf("status %d %q, want 200", resp.StatusCode, body)
					}
					if len(trailers) != 1 || trailers[0].Get("X-Sum") != "v-X-Sum" {
						t.Errorf("upstream trailers %v, want X-Sum: v-X-Sum", trailers)
					}
					if n := droppedUnderscores(h, Outbound); n != 1 {
						t.Errorf("dropped counter %v, want 1", n)
					}
				case config.HeadersWithUnderscoresReject:
					if resp.StatusCode != http.StatusBadRequest || resp.Header.Get(HeaderError) != "header_with_underscore" {
						t.Fatalf("status %d, x-outrigger-error %q (%q); want 400 header_with_underscore", resp.StatusCode, resp.Header.Get(HeaderError), body)
					}
					if want := "request trailer X_Sig has an underscore in its name\n"; !strings.EqualFold(body, want) {
						t.Errorf("body %q, want %q", body, want)
					}
					if tc.late == "" {
						if n := up.calls.Load() - calls; n != 0 {
							t.Errorf("announced: the upstream was called %d times", n)
						}
					}
					if len(trailers) != 0 {
						t.Errorf("the upstream read a whole body, trailers %v", trailers)
					}
					if n := rejectedUnderscores(h); n != 1 {
						t.Errorf("local replies header_with_underscore %v, want 1", n)
					}
				}
			})
		}
	}
}

// The check of a request without underscores in its field names costs
// no allocation, under drop and reject alike (a body that can end with
// trailers costs one, its wrapper).
func TestApplyUnderscoresDoesNotAllocateWithoutUnderscores(t *testing.T) {
	r, err := http.NewRequest(http.MethodGet, "http://svc.internal/x", nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Header = http.Header{"Accept": {"*/*"}, "User-Agent": {"test"}, "X-Request-Id": {"abc"}, "Traceparent": {"00-1-2-01"}}
	r.Body = http.NoBody
	dropped := prometheus.NewCounter(prometheus.CounterOpts{Name: "dropped"})
	for _, a := range []underscoreAction{underscoresDrop, underscoresReject} {
		if n := testing.AllocsPerRun(100, func() {
			if name, _ := applyUnderscores(a, r, dropped); name != "" {
				t.Fatalf("rejected for %q", name)
			}
		}); n != 0 {
			t.Errorf("action %d: %v allocations per request, want 0", a, n)
		}
	}
	if len(r.Header) != 4 || r.Body != http.NoBody {
		t.Errorf("request changed: %v, body %T", r.Header, r.Body)
	}
}

// A trailer field rejected after the upstream's response started cuts
// the response short instead of letting it end as if whole.
func TestHeadersWithUnderscoresTrailerRejectedMidResponse(t *testing.T) {
	srv := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		_, _ = io.WriteString(w, "started")
		w.(http.Flusher).Flush()
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			return
		}
		_, _ = io.WriteString(w, " and ended")
	})
	for _, client := range []string{"h1", "h2c"} {
		t.Run(client, func(t *testing.T) {
			// An HTTP/2 upstream: net/http's HTTP/1.1 server is not
			// full duplex unless asked.
			cfg := simpleConfig(config.Cluster{Endpoints: eps(addr(srv)), Protocol: config.ProtocolHTTP2})
			cfg.Listeners.Outbound.HeadersWithUnderscores = config.HeadersWithUnderscoresReject
			h := startProxy(t, cfg)
			req, err := http.NewRequest(http.MethodPost, h.url("/duplex"), nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Trailer = http.Header{"X-Sum": nil}
			pr, pw := io.Pipe()
			req.Body, req.ContentLength = pr, -1
			resp, err := h.client(client).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			buf := make([]byte, len("started"))
			if _, err := io.ReadFull(resp.Body, buf); err != nil || resp.StatusCode != 200 {
				t.Fatalf("status %d, %q, %v", resp.StatusCode, buf, err)
			}
			_, _ = pw.Write([]byte("payload"))
			req.Trailer["X_Sig"] = []string{"late"}
			pw.Close()
			rest, err := io.ReadAll(resp.Body)
			if err == nil {
				t.Errorf("the response ended as if whole: %q", rest)
			}
		})
	}
}
