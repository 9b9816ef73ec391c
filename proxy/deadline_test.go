package proxy

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/config"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// An attempt carries the route deadline on its upstream connection
// (HTTP/1.1) or as a timer on its stream (HTTP/2, gRPC) rather than on a
// context: these pin that the deadline passing mid-body still ends the
// upstream exchange, and that it leaves with its exchange
// (TestClientGoneCancelsUpstream pins the client leaving).

// The route deadline passing mid-body cuts the client's response, and
// the upstream sees its request end. The route timeout is a second: the
// response's header block must come within it, or the client gets a
// whole 504 in place of the cut body, and on a loaded machine it could
// come after 200 ms.
func TestRouteTimeoutMidBodyAbortsDownstream(t *testing.T) {
	const timeout = time.Second
	for _, proto := range []config.Protocol{config.ProtocolHTTP1, config.ProtocolHTTP2} {
		t.Run(string(proto), func(t *testing.T) {
			var upstreamGone atomic.Bool
			up := upstream(t, proto == config.ProtocolHTTP2, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", "1000")
				_, _ = io.WriteString(w, "partial")
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					upstreamGone.Store(true)
				case <-time.After(10 * time.Second):
				}
			})
			h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up)), Protocol: proto},
				func(r *config.Route) { r.Timeout = timeout }))
			start := time.Now()
			resp, err := h.h1.Get(h.url("/"))
			if err == nil {
				var b []byte
				b, err = io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil {
					t.Fatalf("body %q read as complete", b)
				}
			}
			if el := time.Since(start); el < timeout || el > 5*time.Second {
				t.Fatalf("ended after %v, want about the route timeout", el)
			}
			eventually(t, 5*time.Second, "the upstream to see its request end", upstreamGone.Load)
		})
	}
}

// A gRPC upstream that does not end the call at the grpc-timeout it was
// sent is ended by the proxy at the route deadline, mid-stream: the
// client gets DEADLINE_EXCEEDED after the messages that came, and the
// upstream sees its stream reset. The route timeout is a second: the
// first message must come within it, which on a loaded machine could
// come after 300 ms.
func TestRouteTimeoutEndsGRPCStreamOfUpstreamThatIgnoresIt(t *testing.T) {
	const timeout = time.Second
	var upstreamGone atomic.Bool
	msg, err := proto.Marshal(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: []byte("x")}})
	if err != nil {
		t.Fatal(err)
	}
	up := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Trailer", "Grpc-Status")
		frame := append([]byte{0, 0, 0, 0, byte(len(msg))}, msg...)
		_, _ = w.Write(frame)
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
			upstreamGone.Store(true)
		case <-time.After(10 * time.Second):
		}
	})
	cfg := grpcConfig(addr(up))
	cfg.Routes[0].Timeout = timeout
	h := startProxy(t, cfg)
	c := grpcClient(t, h.out)
	start := time.Now()
	st, err := c.StreamingOutputCall(ctxT(t, 10*time.Second), &testpb.StreamingOutputCallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := st.Recv(); err != nil || string(m.GetPayload().GetBody()) != "x" {
		t.Fatalf("first message %v, %v", m, err)
	}
	if _, err := st.Recv(); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("after the first message: %v, want DeadlineExceeded", err)
	}
	if el := time.Since(start); el < timeout || el > 5*time.Second {
		t.Fatalf("ended after %v, want about the route timeout", el)
	}
	eventually(t, 5*time.Second, "the upstream to see its stream reset", upstreamGone.Load)
}

// An upstream connection idle in between keeps no deadline of the
// request it last carried: the next request on it is answered however
// long past that deadline it takes. The first request's route timeout
// is a second, which it is to be answered within: 100ms left a loaded
// machine under -race room to miss it.
func TestIdleUpstreamConnectionOutlivesRouteTimeout(t *testing.T) {
	const fast = time.Second
	var conns atomic.Int32
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			// A slow server: longer than the first request's deadline
			// had left, which began before this one.
			time.Sleep(fast + 50*time.Millisecond)
		}
		_, _ = io.WriteString(w, "ok")
	}))
	up.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	up.Start()
	t.Cleanup(up.Close)
	cfg := &config.Config{
		Clusters: map[string]config.Cluster{"svc": {Endpoints: eps(addr(up))}},
		Routes: []config.Route{
			{Name: "fast", Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/fast"}}, Cluster: "svc", Timeout: fast},
			{Name: "slow", Match: config.RouteMatch{Path: config.PathMatch{Prefix: "/slow"}}, Cluster: "svc", Timeout: 5 * time.Second},
		},
	}
	h := startProxy(t, cfg)
	first := time.Now()
	if resp, body := do(t, h.h1, "GET", h.url("/fast"), nil); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("fast: %d %q", resp.StatusCode, body)
	}
	// The same upstream connection, idle in between, serves a request
	// that outlasts the first one's deadline.
	if resp, body := do(t, h.h1, "GET", h.url("/slow"), nil); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("slow: %d %q", resp.StatusCode, body)
	}
	if time.Since(first) < fast {
		t.Fatal("the first deadline had not passed yet")
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("upstream saw %d connections, want 1", n)
	}
}
