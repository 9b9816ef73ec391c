package proxy

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// grpcMessage frames m as one gRPC message.
func grpcMessage(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, 5, 5+len(b))
	binary.BigEndian.PutUint32(out[1:], uint32(len(b)))
	return append(out, b...)
}

// An upstream whose stream is reset after whole messages: the client
// gets the messages, then the status a client of the upstream would
// have had (INTERNAL for INTERNAL_ERROR) in trailers that say the
// proxy's reason; one whose stream is reset inside a message gets the
// stream reset, not a message cut short.
func TestGRPCUpstreamResetBetweenMessagesEndsWithTrailers(t *testing.T) {
	msg := grpcMessage(t, &testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: []byte("hello")}})
	for _, tc := range []struct {
		name     string
		tail     []byte // written after two whole messages, before the reset
		trailers bool
	}{
		{"between messages", nil, true},
		{"inside a message", msg[:len(msg)-2], false},
		{"inside a prefix", msg[:3], false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/grpc")
				w.WriteHeader(200)
				w.Write(msg)
				w.Write(msg)
				w.Write(tc.tail)
				http.NewResponseController(w).Flush()
				panic(http.ErrAbortHandler) // RST_STREAM INTERNAL_ERROR
			})
			h := startProxy(t, grpcConfig(addr(up)))
			c := grpcClient(t, h.out)
			st, err := c.StreamingOutputCall(ctxT(t, 10*time.Second), &testpb.StreamingOutputCallRequest{})
			if err != nil {
				t.Fatal(err)
			}
			for i := range 2 {
				if m, err := st.Recv(); err != nil || string(m.GetPayload().GetBody()) != "hello" {
					t.Fatalf("message %d: %v %v", i, m, err)
				}
			}
			_, err = st.Recv()
			if status.Code(err) != codes.Internal {
				t.Fatalf("after the messages: %v, want Internal", err)
			}
			got := st.Trailer().Get("x-outrigger-error")
			if tc.trailers {
				if msg := status.Convert(err).Message(); msg != "upstream reset the stream: INTERNAL_ERROR" || len(got) != 1 || got[0] != "upstream_reset" {
					t.Fatalf("status message %q, x-outrigger-error %q: want the proxy's trailers", msg, got)
				}
			} else if !strings.Contains(err.Error(), "RST_STREAM") || len(got) != 0 {
				t.Fatalf("%v (x-outrigger-error %q): want the stream reset", err, got)
			}
		})
	}
}

// connTracker is a listener that keeps the connections it accepts, so
// a test can cut them.
type connTracker struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *connTracker) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

func (l *connTracker) cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.Close()
	}
}

// A gRPC server whose connection is lost mid-stream, between messages:
// the call ends UNAVAILABLE through the proxy, as it does for a client
// connected to the server directly.
func TestGRPCUpstreamConnectionLostMidStream(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl := &connTracker{Listener: ln}
	s := grpc.NewServer()
	testpb.RegisterTestServiceServer(s, &testService{})
	done := make(chan struct{})
	go func() { _ = s.Serve(tl); close(done) }()
	t.Cleanup(func() { s.Stop(); <-done })

	h := startProxy(t, grpcConfig(ln.Addr().String()))
	c := grpcClient(t, h.out)
	req := &testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{
		{Size: 3}, {Size: 3}, {Size: 3, IntervalUs: 60e6}}}
	st, err := c.StreamingOutputCall(ctxT(t, 30*time.Second), req)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, err := st.Recv(); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	tl.cut()
	_, err = st.Recv()
	if status.Code(err) != codes.Unavailable || status.Convert(err).Message() != "upstream reset the connection" {
		t.Fatalf("after the connection was lost: %v, want Unavailable from the proxy", err)
	}
}

// grpcFrames tells a body's message ends however the body is split.
func TestGRPCFramesFindsMessageEnds(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 500 {
		var body []byte
		ends := map[int]bool{0: true}
		for range rng.IntN(5) {
			m := make([]byte, 5+rng.IntN(300))
			binary.BigEndian.PutUint32(m[1:], uint32(len(m)-5))
			body = append(body, m...)
			ends[len(body)] = true
		}
		var g grpcFrames
		for at := 0; at < len(body); {
			n := min(1+rng.IntN(40), len(body)-at)
			g.feed(body[at : at+n])
			at += n
			if g.between() != ends[at] {
				t.Fatalf("round %d: between() = %v after %d of %d bytes", round, g.between(), at, len(body))
			}
		}
	}
}
