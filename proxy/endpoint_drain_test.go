package proxy

import (
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/outrigger-mesh/outrigger/breaker"
	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// connCountingListener counts the connections it accepted that are still
// open on the server's side.
type connCountingListener struct {
	net.Listener
	mu   sync.Mutex
	open int
}

type countingConn struct {
	net.Conn
	l    *connCountingListener
	once sync.Once
}

func (c *countingConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		c.l.open--
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

func (l *connCountingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.open++
	l.mu.Unlock()
	return &countingConn{Conn: c, l: l}, nil
}

func (l *connCountingListener) openConns() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// countedGRPCServer is startGRPCServer with the connections open to it
// counted.
func countedGRPCServer(t *testing.T) (string, *connCountingListener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &connCountingListener{Listener: ln}
	s := grpc.NewServer()
	testpb.RegisterTestServiceServer(s, &testService{})
	done := make(chan struct{})
	go func() { _ = s.Serve(cl); close(done) }()
	t.Cleanup(func() { s.Stop(); <-done })
	return ln.Addr().String(), cl
}

// exchange sends one message on a bidi stream and reads its answer.
func exchange(t *testing.T, st grpc.BidiStreamingClient[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) {
	t.Helper()
	if err := st.Send(&testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: 10}}}); err != nil {
		t.Fatalf("send: %v", err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatalf("recv: %v", err)
	}
}

// A reload that replaces a gRPC cluster's endpoint closes the
// connection to the removed one: at once when it is idle, when its last
// stream ends when a stream is open on it (a bidi call goes on across
// the reload to its end). Under max_connections 1 the next call then
// reaches the new endpoint. The connection stayed in the pool, idle,
// for the pool's idle timeout (90 s by default), holding the cluster's
// one max_connections slot, so every call to the new endpoint was
// refused max_connections meanwhile (a rollout that replaces every
// endpoint at once had a cluster refuse all its calls).
func TestRemovedEndpointsH2ConnectionClosesAndFreesItsSlot(t *testing.T) {
	for _, inUse := range []bool{false, true} {
		name := "idle"
		if inUse {
			name = "stream in flight"
		}
		t.Run(name, func(t *testing.T) {
			a, aConns := countedGRPCServer(t)
			b, _ := countedGRPCServer(t)
			mk := func(ep string) *config.Config {
				cfg := grpcConfig(ep)
				cl := cfg.Clusters["grpc"]
				cl.Limits.MaxConnections = 1
				cfg.Clusters["grpc"] = cl
				return cfg
			}
			h := startProxy(t, mk(a))
			c := grpcClient(t, h.out)
			var st grpc.BidiStreamingClient[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]
			if inUse {
				var err error
				if st, err = c.FullDuplexCall(ctxT(t, 10*time.Second)); err != nil {
					t.Fatal(err)
				}
				exchange(t, st)
			} else if _, err := c.UnaryCall(ctxT(t, 5*time.Second), &testpb.SimpleRequest{}); err != nil {
				t.Fatal(err)
			}
			if n := aConns.openConns(); n != 1 {
				t.Fatalf("%d connections open to a, want 1", n)
			}

			if err := h.p.Apply(mk(b)); err != nil {
				t.Fatal(err)
			}
			if inUse {
				exchange(t, st)
				if n := aConns.openConns(); n != 1 {
					t.Fatalf("%d connections open to a while its stream goes on, want 1", n)
				}
				if err := st.CloseSend(); err != nil {
					t.Fatal(err)
				}
				if _, err := st.Recv(); err == nil {
					t.Fatal("the stream sent a message after its end")
				}
			}
			eventually(t, 5*time.Second, "the connection to the removed endpoint to close", func() bool {
				return aConns.openConns() == 0
			})
			if _, err := c.UnaryCall(ctxT(t, 5*time.Second), &testpb.SimpleRequest{}); err != nil {
				t.Fatalf("a call to the new endpoint: %v", err)
			}
			eventually(t, 5*time.Second, "the counts to settle", func() bool {
				in := h.p.snap.Load().clusters["grpc"].res.limits.Snapshot().InUse
				return in == [breaker.NumLimits]int64{breaker.LimitConnections: 1}
			})
		})
	}
}

// The same for an HTTP/1.1 cluster: the keep-alive connection to an
// endpoint a reload removes is closed at once when idle, at the end of
// its request when one is in flight, and no longer holds the
// max_connections slot the new endpoint needs.
func TestRemovedEndpointsH1ConnectionClosesAndFreesItsSlot(t *testing.T) {
	for _, inUse := range []bool{false, true} {
		name := "idle"
		if inUse {
			name = "request in flight"
		}
		t.Run(name, func(t *testing.T) {
			a, b := newHeldUpstream(t), newHeldUpstream(t)
			mk := func(ep string) *config.Config {
				return simpleConfig(config.Cluster{Endpoints: eps(ep), Limits: breaker.LimitsConfig{MaxConnections: 1}},
					func(r *config.Route) { r.Timeout = 10 * time.Second })
			}
			h := startProxy(t, mk(a.addr))
			a.unblockOnCleanup(t)
			b.unblockOnCleanup(t)
			res := send(h, 1)
			eventually(t, 5*time.Second, "the call upstream", func() bool { return a.entered.Load() == 1 })
			if !inUse {
				a.release <- struct{}{}
				if r := <-res; r[0] != "200 OK" {
					t.Fatalf("before the reload: %v", r)
				}
			}

			if err := h.p.Apply(mk(b.addr)); err != nil {
				t.Fatal(err)
			}
			if inUse {
				a.release <- struct{}{}
				if r := <-res; r[0] != "200 OK" {
					t.Fatalf("the call in flight across the reload: %v", r)
				}
			}
			eventually(t, 5*time.Second, "the connection to the removed endpoint to close", func() bool {
				a.mu.Lock()
				defer a.mu.Unlock()
				return a.open == 0
			})
			res = send(h, 1)
			eventually(t, 5*time.Second, "the call to reach the new endpoint", func() bool {
				select {
				case r := <-res:
					t.Fatalf("a call after the reload: %v", r)
				default:
				}
				return b.entered.Load() == 1
			})
			b.release <- struct{}{}
			if r := <-res; r[0] != "200 OK" {
				t.Fatalf("a call to the new endpoint: %v", r)
			}
		})
	}
}
