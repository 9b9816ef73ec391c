package h2server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// ctxReport is what a handler saw of its stream's context and of the
// children it made on it, once the context ended.
type ctxReport struct {
	err, cause           error
	childErr, childCause error // context.WithCancel
	timeoutErr           error // context.WithTimeout(an hour)
	afterFuncRan         bool  // context.AfterFunc, by the time Done was closed plus a wait
	value                any   // Value(ctxKey{})
	localAddr            any   // Value(http.LocalAddrContextKey)
}

type ctxKey struct{}

// waitingHandler blocks each request until its context ends, with a
// WithCancel child, a WithTimeout child and a context.AfterFunc on it,
// then reports what it saw on reports. started receives each context as
// its handler starts waiting.
func waitingHandler(started chan<- context.Context, reports chan<- ctxReport) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		child, cancelChild := context.WithCancel(ctx)
		defer cancelChild()
		timeout, cancelTimeout := context.WithTimeout(ctx, time.Hour)
		defer cancelTimeout()
		ran := make(chan struct{})
		context.AfterFunc(ctx, func() { close(ran) })
		started <- ctx
		<-ctx.Done()
		rep := ctxReport{err: ctx.Err(), cause: context.Cause(ctx)}
		<-child.Done()
		<-timeout.Done()
		rep.childErr, rep.childCause, rep.timeoutErr = child.Err(), context.Cause(child), timeout.Err()
		select {
		case <-ran:
			rep.afterFuncRan = true
		case <-time.After(5 * time.Second):
		}
		rep.value, rep.localAddr = ctx.Value(ctxKey{}), ctx.Value(http.LocalAddrContextKey)
		reports <- rep
	})
}

func within[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// checkCanceled fails unless rep is of a context that ended with
// context.Canceled and cause, as did its children.
func checkCanceled(t *testing.T, rep ctxReport, cause error) {
	t.Helper()
	if rep.err != context.Canceled || rep.cause != cause {
		t.Fatalf("stream context: err %v, cause %v; want %v, %v", rep.err, rep.cause, context.Canceled, cause)
	}
	if rep.childErr != context.Canceled || rep.childCause != cause || rep.timeoutErr != context.Canceled {
		t.Fatalf("children: WithCancel %v (cause %v), WithTimeout %v", rep.childErr, rep.childCause, rep.timeoutErr)
	}
	if !rep.afterFuncRan {
		t.Fatal("context.AfterFunc did not run")
	}
	if rep.localAddr == nil {
		t.Fatal("no http.LocalAddrContextKey value")
	}
}

func TestStreamContextEndsWhenHandlerReturns(t *testing.T) {
	type seen struct {
		ctx         context.Context
		child       context.Context
		cancelChild context.CancelFunc
		ran         chan struct{}
	}
	seenc := make(chan seen, 1)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if ctx.Err() != nil {
			t.Error("a running handler's context has ended")
		}
		if _, ok := ctx.Deadline(); ok {
			t.Error("a deadline without one on the connection")
		}
		child, cancelChild := context.WithCancel(ctx)
		s := seen{ctx: ctx, child: child, cancelChild: cancelChild, ran: make(chan struct{})}
		context.AfterFunc(ctx, func() { close(s.ran) })
		seenc <- s
	}))
	rc := dialRaw(t, ts.addr)
	rc.get(1, "/")
	if status, _, _, _ := rc.response(1); status != "200" {
		t.Fatalf("status %s", status)
	}
	s := within(t, "the handler", seenc)
	defer s.cancelChild()
	within(t, "the stream context's end", s.ctx.Done())
	within(t, "the child's end", s.child.Done())
	within(t, "context.AfterFunc", s.ran)
	if s.ctx.Err() != context.Canceled || context.Cause(s.ctx) != context.Canceled {
		t.Fatalf("err %v, cause %v", s.ctx.Err(), context.Cause(s.ctx))
	}
	if s.child.Err() != context.Canceled || context.Cause(s.child) != context.Canceled {
		t.Fatalf("child: err %v, cause %v", s.child.Err(), context.Cause(s.child))
	}
}

func TestStreamContextEndsOnClientReset(t *testing.T) {
	started := make(chan context.Context, 1)
	reports := make(chan ctxReport, 1)
	ts := start(t, waitingHandler(started, reports))
	rc := dialRaw(t, ts.addr)
	rc.post(1, "/")
	ctx := within(t, "the handler", started)
	if ctx.Err() != nil {
		t.Fatalf("live stream: %v", ctx.Err())
	}
	rc.fr.WriteRSTStream(1, http2.ErrCodeCancel)
	checkCanceled(t, within(t, "the report", reports), context.Canceled)
	// The connection goes on.
	rc.get(3, "/")
	within(t, "the second stream", started)
	rc.fr.WriteRSTStream(3, http2.ErrCodeCancel)
	within(t, "the second report", reports)
}

func TestStreamContextEndsWhenClientCloses(t *testing.T) {
	started := make(chan context.Context, 1)
	reports := make(chan ctxReport, 1)
	ts := start(t, waitingHandler(started, reports))
	rc := dialRaw(t, ts.addr)
	rc.get(1, "/")
	within(t, "the handler", started)
	rc.nc.Close()
	checkCanceled(t, within(t, "the report", reports), context.Canceled)
}

func TestStreamContextEndsOnServerClose(t *testing.T) {
	started := make(chan context.Context, 1)
	reports := make(chan ctxReport, 1)
	ts := start(t, waitingHandler(started, reports))
	rc := dialRaw(t, ts.addr)
	rc.get(1, "/")
	within(t, "the handler", started)
	ts.Close()
	checkCanceled(t, within(t, "the report", reports), context.Canceled)
	rc.expectClosed()
}

// Shutdown leaves running streams' contexts live; the ones its deadline
// cuts off end.
func TestStreamContextThroughShutdown(t *testing.T) {
	started := make(chan context.Context, 1)
	reports := make(chan ctxReport, 1)
	ts := start(t, waitingHandler(started, reports))
	rc := dialRaw(t, ts.addr)
	rc.get(1, "/")
	ctx := within(t, "the handler", started)
	// Its deadline must not pass before the test has read the notice
	// and looked at the context: a second, which a loaded machine does
	// not take (300 ms could end the context before the look).
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- ts.Shutdown(sctx) }()
	if e := rc.goAway(); e.code != http2.ErrCodeNo {
		t.Fatalf("GOAWAY %v", e.code)
	}
	if ctx.Err() != nil {
		t.Fatalf("Shutdown ended a running stream's context at once: %v", ctx.Err())
	}
	if err := within(t, "Shutdown", shut); err != context.DeadlineExceeded {
		t.Fatalf("Shutdown: %v", err)
	}
	checkCanceled(t, within(t, "the report", reports), context.Canceled)
}

// The connection's context (ConnOpts.Context) gives the stream contexts
// their values and deadline; its end ends them with its error and cause,
// and their children with that cause too. A stream context that ended
// by itself first keeps context.Canceled as its cause.
func TestStreamContextEndsWithTheConnectionContext(t *testing.T) {
	parent, cancelParent := context.WithCancelCause(context.WithValue(context.Background(), ctxKey{}, "conn"))
	defer cancelParent(nil)
	started := make(chan context.Context, 2)
	reports := make(chan ctxReport, 1)
	wait := waitingHandler(started, reports)
	early := make(chan context.Context, 1)
	s := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/early" {
			early <- r.Context()
			return
		}
		wait.ServeHTTP(w, r)
	})}
	addr := serveOne(t, s, func() *ConnOpts { return &ConnOpts{Context: parent} })
	rc := dialRaw(t, addr)
	rc.get(1, "/early")
	if status, _, _, _ := rc.response(1); status != "200" {
		t.Fatalf("status %s", status)
	}
	first := within(t, "the first handler", early)
	rc.get(3, "/")
	within(t, "the second handler", started)
	cause := errors.New("the connection's cause")
	cancelParent(cause)
	rep := within(t, "the report", reports)
	checkCanceled(t, rep, cause)
	if rep.value != "conn" {
		t.Fatalf("value %v, want the connection context's", rep.value)
	}
	waitFor(t, "the first stream's end", func() bool { return first.Err() != nil })
	if first.Err() != context.Canceled || context.Cause(first) != context.Canceled || first.Value(ctxKey{}) != "conn" {
		t.Fatalf("first stream: err %v, cause %v, value %v", first.Err(), context.Cause(first), first.Value(ctxKey{}))
	}
	rc.expectClosed()
}

func TestStreamContextTakesTheConnectionDeadline(t *testing.T) {
	// The handler must start before the deadline, dial and accept
	// included: a second, which a loaded machine does not take (with
	// 300 ms the connection could end before stream 1 was read).
	dl := time.Now().Add(time.Second)
	parent, cancel := context.WithDeadline(context.Background(), dl)
	defer cancel()
	started := make(chan context.Context, 1)
	reports := make(chan ctxReport, 1)
	s := &Server{Handler: waitingHandler(started, reports)}
	addr := serveOne(t, s, func() *ConnOpts { return &ConnOpts{Context: parent} })
	rc := dialRaw(t, addr)
	rc.get(1, "/")
	ctx := within(t, "the handler", started)
	if got, ok := ctx.Deadline(); !ok || !got.Equal(dl) {
		t.Fatalf("deadline %v %v, want %v", got, ok, dl)
	}
	rep := within(t, "the report", reports)
	if rep.err != context.DeadlineExceeded || rep.cause != context.DeadlineExceeded {
		t.Fatalf("err %v, cause %v", rep.err, rep.cause)
	}
	if rep.childErr != context.DeadlineExceeded || rep.timeoutErr != context.DeadlineExceeded {
		t.Fatalf("children: %v, %v", rep.childErr, rep.timeoutErr)
	}
}

// Children of a stream context cost no goroutine each: the context
// package starts one per child only for a parent it cannot watch
// otherwise.
func TestStreamContextChildrenStartNoGoroutines(t *testing.T) {
	const n = 64
	delta := make(chan int, 1)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		before := runtime.NumGoroutine()
		var cancels []context.CancelFunc
		for i := range n {
			var cancel context.CancelFunc
			switch i % 3 {
			case 0:
				_, cancel = context.WithCancel(ctx)
			case 1:
				_, cancel = context.WithTimeout(ctx, time.Hour)
			default:
				stop := context.AfterFunc(ctx, func() {})
				cancel = func() { stop() }
			}
			cancels = append(cancels, cancel)
		}
		delta <- runtime.NumGoroutine() - before
		for _, c := range cancels {
			c()
		}
	}))
	rc := dialRaw(t, ts.addr)
	rc.get(1, "/")
	if d := within(t, "the handler", delta); d > n/4 {
		t.Fatalf("%d children started %d goroutines", n, d)
	}
	rc.response(1)
}

// A context a handler keeps after its stream (and its connection) are
// gone stays usable: ended, with its values, running AfterFunc and
// ending new children at once.
func TestStreamContextRetainedAfterTheConnection(t *testing.T) {
	ctxs := make(chan context.Context, 1)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ctxs <- r.Context() }))
	rc := dialRaw(t, ts.addr)
	rc.get(1, "/")
	rc.response(1)
	ctx := within(t, "the handler", ctxs)
	rc.nc.Close()
	waitFor(t, "the connection's end", func() bool {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		return len(ts.conns) == 0
	})
	if ctx.Err() != context.Canceled || context.Cause(ctx) != context.Canceled {
		t.Fatalf("err %v, cause %v", ctx.Err(), context.Cause(ctx))
	}
	if _, ok := ctx.Value(http.LocalAddrContextKey).(net.Addr); !ok {
		t.Fatal("no local address value")
	}
	ran := make(chan struct{})
	if context.AfterFunc(ctx, func() { close(ran) })() {
		t.Fatal("stop of an AfterFunc on an ended context reported true")
	}
	within(t, "AfterFunc on a retained context", ran)
	child, cancel := context.WithTimeout(ctx, time.Hour)
	defer cancel()
	if child.Err() != context.Canceled || context.Cause(child) != context.Canceled {
		t.Fatalf("child: err %v, cause %v", child.Err(), context.Cause(child))
	}
}

// A stream context has WatchEnd and StopWatch (the method set
// proxy/h1client uses instead of context.AfterFunc): a stopped function
// does not run; a watching one runs when the client resets the stream,
// or when the connection ends, on the goroutine that ends the context
// but not under the connection's lock (it is another package's code),
// before the handler goes on; on an ended context it runs at once.
func TestStreamContextWatchEnd(t *testing.T) {
	for _, end := range []string{"client reset", "server close"} {
		t.Run(end, func(t *testing.T) {
			started := make(chan context.Context, 1)
			lockFree := make(chan bool, 1)
			release := make(chan struct{})
			ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ew, ok := r.Context().(endWatcher)
				if !ok {
					started <- r.Context()
					return
				}
				sc := w.(*responseWriter).sc
				tok := ew.WatchEnd(func() { t.Error("a stopped function ran") })
				if !ew.StopWatch(tok) || ew.StopWatch(tok) {
					t.Error("StopWatch before the end")
				}
				ew.WatchEnd(func() {
					// Another goroutine takes the lock while this one
					// waits: it can if this one does not hold it
					// (the connection's writer, woken by the end, may
					// hold it for a moment), never if it does.
					got := make(chan struct{})
					go func() {
						sc.mu.Lock()
						sc.mu.Unlock()
						close(got)
					}()
					select {
					case <-got:
						lockFree <- true
					case <-time.After(2 * time.Second):
						lockFree <- false
					}
				})
				started <- r.Context()
				<-release
			}))
			rc := dialRaw(t, ts.addr)
			rc.post(1, "/")
			ctx := within(t, "the handler", started)
			if _, ok := ctx.(endWatcher); !ok {
				t.Fatalf("stream context %T has no WatchEnd/StopWatch", ctx)
			}
			if end == "client reset" {
				rc.fr.WriteRSTStream(1, http2.ErrCodeCancel)
			} else {
				ts.Close()
			}
			if !within(t, "the watching function", lockFree) {
				t.Error("the watching function ran under the connection's lock")
			}
			if ctx.Err() != context.Canceled {
				t.Errorf("err %v", ctx.Err())
			}
			close(release)
			ew := ctx.(endWatcher)
			ran := false
			if ew.StopWatch(ew.WatchEnd(func() { ran = true })) || !ran {
				t.Error("WatchEnd on an ended context did not run its function at once")
			}
		})
	}
}

// Handlers that watch and unwatch their contexts while the client resets
// their streams: each function either ran once or was stopped (StopWatch
// reported true), never both, never neither.
func TestStreamContextWatchRacesTheReset(t *testing.T) {
	const streams, perStream = 50, 3
	bad := make(chan string, streams)
	done := make(chan struct{}, streams)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { done <- struct{}{} }()
		ew, ok := r.Context().(endWatcher)
		if !ok {
			bad <- "no WatchEnd/StopWatch"
			return
		}
		var ran [perStream]chan struct{}
		var toks [perStream]uint64
		for i := range toks {
			ran[i] = make(chan struct{}, 2)
			toks[i] = ew.WatchEnd(func() { ran[i] <- struct{}{} })
		}
		var stopped [perStream]bool
		for i, tok := range toks {
			runtime.Gosched()
			stopped[i] = ew.StopWatch(tok)
		}
		<-r.Context().Done()
		// A function StopWatch did not stop runs (maybe a little after
		// Done is closed: it may be about to run), once.
		for i := range toks {
			if stopped[i] {
				continue
			}
			select {
			case <-ran[i]:
			case <-time.After(5 * time.Second):
				bad <- "a function StopWatch reported it did not stop never ran"
				return
			}
		}
		for i := range toks {
			if n := len(ran[i]); n != 0 {
				bad <- fmt.Sprintf("stopped %v, ran once more (%d)", stopped[i], n)
			}
		}
	}))
	rc := dialRaw(t, ts.addr)
	for i := range streams {
		id := uint32(2*i + 1)
		rc.post(id, "/")
		rc.fr.WriteRSTStream(id, http2.ErrCodeCancel)
	}
	for range streams {
		within(t, "the handlers", done)
	}
	select {
	case b := <-bad:
		t.Fatal(b)
	default:
	}
}

// A handler blocked in a body Read (or a write waiting for flow control)
// that the client's reset wakes finds its context ended already: the
// reset ends it before it wakes anyone.
func TestStreamContextEndedWhenResetWakesTheHandler(t *testing.T) {
	const streams = 20
	errs := make(chan error, streams)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b [1]byte
		if _, err := r.Body.Read(b[:]); err == nil {
			errs <- errors.New("a body read succeeded without DATA")
			return
		}
		errs <- r.Context().Err()
	}))
	rc := dialRaw(t, ts.addr)
	for i := range streams {
		id := uint32(2*i + 1)
		rc.post(id, "/")
		rc.fr.WriteRSTStream(id, http2.ErrCodeCancel)
	}
	for range streams {
		if err := within(t, "a handler", errs); err != context.Canceled {
			t.Fatalf("context after the reset woke the body read: %v", err)
		}
	}
}

// The children a handler made on its stream's context (a route
// deadline, a cancellable call) have ended too when the client's reset
// wakes the handler from a body Read, as a cancelCtx's children would
// have: the reset cancels them before it wakes anyone.
func TestStreamContextChildrenEndedWhenResetWakesTheHandler(t *testing.T) {
	const streams = 20
	started := make(chan struct{}, 1)
	errs := make(chan error, 1)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		child, cancel := context.WithCancel(r.Context())
		defer cancel()
		timeout, cancelTimeout := context.WithTimeout(r.Context(), time.Hour)
		defer cancelTimeout()
		started <- struct{}{}
		var b [1]byte
		if _, err := r.Body.Read(b[:]); err == nil {
			errs <- errors.New("a body read succeeded without DATA")
			return
		}
		switch {
		case child.Err() != context.Canceled:
			errs <- fmt.Errorf("WithCancel child: %v", child.Err())
		case timeout.Err() != context.Canceled:
			errs <- fmt.Errorf("WithTimeout child: %v", timeout.Err())
		default:
			errs <- nil
		}
	}))
	rc := dialRaw(t, ts.addr)
	for i := range streams {
		id := uint32(2*i + 1)
		rc.post(id, "/")
		within(t, "the handler", started)
		rc.fr.WriteRSTStream(id, http2.ErrCodeCancel)
		if err := within(t, "the handler's report", errs); err != nil {
			t.Fatalf("stream %d: after the reset woke the body read: %v", id, err)
		}
	}
}
