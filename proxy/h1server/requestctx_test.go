package h1server

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/internal/reqctx"
)

// testReqCtx is a request context of a connection that is not served,
// as readRequest makes it; cancelling the returned function ends the
// connection's context with cause.
func testReqCtx(t *testing.T) (*reqctx.Context, context.CancelCauseFunc) {
	t.Helper()
	c := &conn{}
	var cancel context.CancelCauseFunc
	c.ctx, cancel = context.WithCancelCause(context.WithValue(context.Background(), http.LocalAddrContextKey, "here"))
	c.cancel = func() { cancel(nil) }
	t.Cleanup(func() {
		c.stopReqWatch()
		cancel(nil)
	})
	rc := &reqctx.Context{}
	c.watchConnEnd(rc)
	return rc, cancel
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestRequestContextEndsWithTheConnectionAndItsCause(t *testing.T) {
	rc, cancelConn := testReqCtx(t)
	done := rc.Done()
	cause := errors.New("server closed")
	cancelConn(cause)
	within(t, 5*time.Second, "the request context's end with its connection's", done)
	if rc.Err() != context.Canceled {
		t.Fatalf("err %v", rc.Err())
	}
	if c := context.Cause(rc); c != cause {
		t.Fatalf("cause %v, want the connection's", c)
	}
}

func TestRequestContextMadeAfterTheConnectionEndedStartsEnded(t *testing.T) {
	c := &conn{}
	var cancel context.CancelCauseFunc
	c.ctx, cancel = context.WithCancelCause(context.Background())
	cause := errors.New("gone")
	cancel(cause)
	rc := &reqctx.Context{}
	c.watchConnEnd(rc)
	c.stopReqWatch()
	if rc.Err() != context.Canceled || !isClosed(rc.Done()) || context.Cause(rc) != cause {
		t.Fatalf("err %v cause %v", rc.Err(), context.Cause(rc))
	}
}

// A deadline on the connection's context (BaseContext's) is the request
// context's, and its expiry ends it with context.DeadlineExceeded.
func TestRequestContextTakesTheConnectionsDeadline(t *testing.T) {
	c := &conn{}
	dl := time.Now().Add(50 * time.Millisecond)
	var cancel context.CancelFunc
	c.ctx, cancel = context.WithDeadline(context.Background(), dl)
	defer cancel()
	rc := &reqctx.Context{}
	c.watchConnEnd(rc)
	defer c.stopReqWatch()
	if got, ok := rc.Deadline(); !ok || !got.Equal(dl) {
		t.Fatalf("deadline %v %v", got, ok)
	}
	within(t, 5*time.Second, "the end at the connection's deadline", rc.Done())
	if rc.Err() != context.DeadlineExceeded || context.Cause(rc) != context.DeadlineExceeded {
		t.Fatalf("err %v cause %v", rc.Err(), context.Cause(rc))
	}
}

// Through the server: a request's context ends when its handler returns,
// and on Close (with the connection's end) while it runs; Shutdown lets
// it finish first.
func TestRequestContextThroughTheServer(t *testing.T) {
	ctxs := make(chan context.Context, 1)
	release := make(chan struct{})
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctxs <- r.Context()
		if r.URL.Path == "/wait" {
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}
	}))
	c := dial(t, ts.addr)
	c.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	ctx := within(t, 5*time.Second, "request", ctxs)
	c.response(t, "GET")
	waitFor(t, func() bool { return ctx.Err() == context.Canceled })

	// Shutdown waits for the running request, whose context stays live.
	c.send(t, "GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
	ctx = within(t, 5*time.Second, "request", ctxs)
	shut := make(chan error, 1)
	go func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- ts.Shutdown(sctx)
	}()
	// Once Shutdown has closed the listener, the request runs on.
	waitFor(t, func() bool {
		nc, err := net.DialTimeout("tcp", ts.addr, time.Second)
		if err == nil {
			nc.Close()
		}
		return err != nil
	})
	if ctx.Err() != nil {
		t.Fatalf("Shutdown ended a running request's context: %v", ctx.Err())
	}
	close(release)
	if err := within(t, 10*time.Second, "Shutdown", shut); err != nil {
		t.Fatal(err)
	}
	if ctx.Err() != context.Canceled {
		t.Fatalf("after Shutdown: %v", ctx.Err())
	}
}

func TestCloseEndsRunningRequestContexts(t *testing.T) {
	ctxs := make(chan context.Context, 1)
	ended := make(chan error, 1)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		child, cancel := context.WithTimeout(r.Context(), time.Hour)
		defer cancel()
		ctxs <- r.Context()
		<-child.Done()
		ended <- child.Err()
	}))
	c := dial(t, ts.addr)
	c.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	ctx := within(t, 5*time.Second, "request", ctxs)
	ts.Close()
	if err := within(t, 5*time.Second, "the child's end", ended); err != context.Canceled {
		t.Fatalf("child: %v", err)
	}
	if ctx.Err() != context.Canceled || context.Cause(ctx) != context.Canceled {
		t.Fatalf("request context: %v, cause %v", ctx.Err(), context.Cause(ctx))
	}
}

// waitFor polls cond until it holds, failing after 5 s.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

// Pipelined requests on one connection, each with a context of its own:
// the first's has ended (by itself) before the second's handler runs and
// keeps context.Canceled as its cause when the connection later ends
// with another; the second's ends with the connection's cause, and so
// do children made on top of it through context.WithValue;
// context.WithoutCancel on it stays live with its values; a context
// retained past its handler still runs context.AfterFunc and ends new
// children at once.
func TestPipelinedRequestContexts(t *testing.T) {
	type key struct{}
	base, cancelBase := context.WithCancelCause(context.WithValue(context.Background(), key{}, "base"))
	defer cancelBase(nil)
	connCause := errors.New("base context ended")
	type result struct {
		err, cause, childErr, childCause error
		detachedErr                      error
		detachedVal                      any
	}
	first := make(chan context.Context, 1)
	running := make(chan struct{}, 1)
	results := make(chan result, 1)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/a" {
			first <- r.Context()
			return
		}
		child, cancel := context.WithCancel(context.WithValue(r.Context(), key{}, "child"))
		defer cancel()
		detached := context.WithoutCancel(r.Context())
		running <- struct{}{}
		<-r.Context().Done()
		<-child.Done()
		results <- result{
			err: r.Context().Err(), cause: context.Cause(r.Context()),
			childErr: child.Err(), childCause: context.Cause(child),
			detachedErr: detached.Err(), detachedVal: detached.Value(key{}),
		}
	}), func(s *Server) { s.BaseContext = base })
	c := dial(t, ts.addr)
	c.send(t, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
	a := within(t, 5*time.Second, "the first request", first)
	within(t, 5*time.Second, "the second request", running)
	if a.Err() != context.Canceled || !isClosed(a.Done()) {
		t.Fatalf("first request's context while the second runs: %v", a.Err())
	}
	cancelBase(connCause)
	res := within(t, 5*time.Second, "the second request's end", results)
	if res.err != context.Canceled || res.cause != connCause {
		t.Fatalf("second request: err %v, cause %v; want context.Canceled, %v", res.err, res.cause, connCause)
	}
	if res.childErr != context.Canceled || res.childCause != connCause {
		t.Fatalf("its child: err %v, cause %v", res.childErr, res.childCause)
	}
	if res.detachedErr != nil || res.detachedVal != "base" {
		t.Fatalf("WithoutCancel on it: err %v, value %v", res.detachedErr, res.detachedVal)
	}
	if a.Err() != context.Canceled || context.Cause(a) != context.Canceled || a.Value(key{}) != "base" {
		t.Fatalf("first request after the connection's end: err %v, cause %v, value %v", a.Err(), context.Cause(a), a.Value(key{}))
	}
	ran := make(chan struct{})
	if context.AfterFunc(a, func() { close(ran) })() {
		t.Fatal("stop of an AfterFunc on an ended context reported true")
	}
	within(t, 5*time.Second, "AfterFunc on a retained context", ran)
	late, cancel := context.WithTimeout(a, time.Hour)
	defer cancel()
	if late.Err() != context.Canceled || context.Cause(late) != context.Canceled {
		t.Fatalf("child of a retained context: err %v, cause %v", late.Err(), context.Cause(late))
	}
}
