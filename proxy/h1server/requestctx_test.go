package h1server

import (
	"context"
	"errors"
	"math"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testReqCtx is a request context of a connection that is not served,
// as readRequest makes it; cancelling the returned function ends the
// connection's context with cause.
func testReqCtx(t *testing.T) (*requestCtx, context.CancelCauseFunc) {
	t.Helper()
	c := &conn{}
	var cancel context.CancelCauseFunc
	c.ctx, cancel = context.WithCancelCause(context.WithValue(context.Background(), http.LocalAddrContextKey, "here"))
	c.cancel = func() { cancel(nil) }
	t.Cleanup(func() {
		c.stopReqWatch()
		cancel(nil)
	})
	rc := &requestCtx{}
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

func TestRequestContextCancelEndsItWithCanceled(t *testing.T) {
	rc, _ := testReqCtx(t)
	early := rc.Done() // made before the end, closed by it
	if rc.Err() != nil || isClosed(early) || context.Cause(rc) != nil {
		t.Fatal("a new request context has ended")
	}
	if v := rc.Value(http.LocalAddrContextKey); v != "here" {
		t.Fatalf("value %v, want the connection's", v)
	}
	if _, ok := rc.Deadline(); ok {
		t.Fatal("deadline without one on the connection")
	}
	rc.cancel()
	rc.cancel() // idempotent
	if rc.Err() != context.Canceled || !isClosed(early) || !isClosed(rc.Done()) {
		t.Fatalf("after cancel: err %v", rc.Err())
	}
	if c := context.Cause(rc); c != context.Canceled {
		t.Fatalf("cause %v, want context.Canceled", c)
	}
	if v := rc.Value(http.LocalAddrContextKey); v != "here" {
		t.Fatalf("value after the end %v", v)
	}
}

// Ended by itself first, a request context keeps context.Canceled as its
// cause when the connection later ends with another, as a cancelCtx
// would.
func TestRequestContextCauseIsItsOwnWhenItEndedFirst(t *testing.T) {
	rc, cancelConn := testReqCtx(t)
	rc.cancel()
	cancelConn(errors.New("connection cause"))
	if c := context.Cause(rc); c != context.Canceled {
		t.Fatalf("cause %v, want context.Canceled", c)
	}
}

func TestRequestContextEndsWithTheConnectionAndItsCause(t *testing.T) {
	rc, cancelConn := testReqCtx(t)
	done := rc.Done()
	cause := errors.New("server closed")
	cancelConn(cause)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the request context outlived its connection's")
	}
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
	rc := &requestCtx{}
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
	rc := &requestCtx{}
	c.watchConnEnd(rc)
	defer c.stopReqWatch()
	if got, ok := rc.Deadline(); !ok || !got.Equal(dl) {
		t.Fatalf("deadline %v %v", got, ok)
	}
	select {
	case <-rc.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("not ended at the connection's deadline")
	}
	if rc.Err() != context.DeadlineExceeded || context.Cause(rc) != context.DeadlineExceeded {
		t.Fatalf("err %v cause %v", rc.Err(), context.Cause(rc))
	}
}

// Children register a function in the request context's slots (its
// AfterFunc method), not a goroutine, end with it, and unregister when
// cancelled first.
func TestRequestContextChildren(t *testing.T) {
	rc, _ := testReqCtx(t)
	c1, cancel1 := context.WithCancel(rc)
	defer cancel1()
	c2, cancel2 := context.WithDeadline(rc, time.Now().Add(time.Hour))
	defer cancel2()
	ran := make(chan struct{})
	stop3 := context.AfterFunc(rc, func() { close(ran) })
	if n := rc.registered(); n != 3 {
		t.Fatalf("%d functions registered, want 3", n)
	}
	c4, cancel4 := context.WithCancel(rc)
	cancel4()
	if n := rc.registered(); n != 3 || c4.Err() != context.Canceled {
		t.Fatalf("a cancelled child left %d registered", n)
	}
	rc.cancel()
	for _, c := range []context.Context{c1, c2} {
		select {
		case <-c.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("a child outlived its request context")
		}
		if c.Err() != context.Canceled || context.Cause(c) != context.Canceled {
			t.Fatalf("child err %v cause %v", c.Err(), context.Cause(c))
		}
	}
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		t.Fatal("context.AfterFunc did not run")
	}
	if stop3() {
		t.Fatal("stop after the end reported it stopped the function")
	}
	// Made after the end: ended at once.
	c5, cancel5 := context.WithTimeout(rc, time.Hour)
	defer cancel5()
	if c5.Err() != context.Canceled {
		t.Fatalf("late child err %v", c5.Err())
	}
	if n := rc.registered(); n != 0 {
		t.Fatalf("%d functions registered after the end", n)
	}
}

// AfterFunc's f runs in its own goroutine: one that waits for the end
// to return does not hold it up. More functions than slots all run, and
// stopped ones do not.
func TestRequestContextAfterFuncs(t *testing.T) {
	rc, _ := testReqCtx(t)
	const n = 7
	var ran [n]atomic.Bool
	returned := make(chan struct{})
	var wg sync.WaitGroup
	stops := make([]func() bool, n)
	for i := range n {
		wg.Add(1)
		stops[i] = rc.AfterFunc(func() {
			defer wg.Done()
			<-returned
			ran[i].Store(true)
		})
	}
	for _, i := range []int{1, 4, 6} {
		if !stops[i]() {
			t.Fatalf("stop %d before the end reported false", i)
		}
		if stops[i]() {
			t.Fatalf("second stop %d reported true", i)
		}
		wg.Done()
	}
	rc.cancel()
	close(returned)
	wg.Wait()
	for i := range n {
		stopped := i == 1 || i == 4 || i == 6
		if ran[i].Load() == stopped {
			t.Fatalf("function %d: ran %v, stopped %v", i, ran[i].Load(), stopped)
		}
		if stops[i]() {
			t.Fatalf("stop %d after the end reported true", i)
		}
	}
	// On an ended context f still runs, in its own goroutine.
	late := make(chan struct{})
	if rc.AfterFunc(func() { close(late) })() {
		t.Fatal("stop of a late AfterFunc reported true")
	}
	select {
	case <-late:
	case <-time.After(5 * time.Second):
		t.Fatal("AfterFunc on an ended context did not run")
	}
}

// WatchEnd's function runs on the ending goroutine, before the end
// returns, or at once on an ended context.
func TestRequestContextWatchEndRunsSynchronously(t *testing.T) {
	rc, _ := testReqCtx(t)
	var a, b atomic.Int32
	ta := rc.WatchEnd(func() { a.Add(1) })
	tb := rc.WatchEnd(func() { b.Add(1) })
	if !rc.StopWatch(tb) || rc.StopWatch(tb) {
		t.Fatal("StopWatch before the end")
	}
	rc.cancel()
	if a.Load() != 1 || b.Load() != 0 {
		t.Fatalf("ran %d and %d times", a.Load(), b.Load())
	}
	if rc.StopWatch(ta) {
		t.Fatal("StopWatch after its function ran reported true")
	}
	var late atomic.Int32
	tl := rc.WatchEnd(func() { late.Add(1) })
	if late.Load() != 1 || rc.StopWatch(tl) {
		t.Fatal("WatchEnd on an ended context")
	}
}

// StopWatch racing with the end (by cancel or by the connection's end):
// exactly one of "StopWatch reported true" and "the function ran" holds
// for each registration, each time.
func TestRequestContextStopWatchRacesTheEnd(t *testing.T) {
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < 2000 && time.Now().Before(deadline); i++ {
		// No AfterFunc on the connection's context: the racing
		// goroutine ends the request context itself, so that every
		// end has returned once both goroutines have.
		ctx, cancelConn := context.WithCancel(context.Background())
		c := &conn{ctx: ctx, valCtx: context.WithoutCancel(ctx)}
		rc := &requestCtx{c: c}
		var ran atomic.Int32
		var tokens [3]uint64
		for j := range tokens {
			tokens[j] = rc.WatchEnd(func() { ran.Add(1) })
		}
		var stopped atomic.Int32
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			for _, tok := range tokens {
				if rc.StopWatch(tok) {
					stopped.Add(1)
				}
			}
		}()
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				rc.cancel()
			} else {
				cancelConn()
				rc.endWithConn()
			}
		}()
		wg.Wait()
		cancelConn()
		if got := ran.Load() + stopped.Load(); got != int32(len(tokens)) {
			t.Fatalf("iteration %d: ran %d + stopped %d", i, ran.Load(), stopped.Load())
		}
		if rc.registered() != 0 {
			t.Fatalf("iteration %d: functions left registered", i)
		}
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

// registered counts the functions waiting for rc's end.
func (r *requestCtx) registered() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(r.more)
	for _, e := range r.slots {
		if e.f != nil {
			n++
		}
	}
	return n
}

// A goroutine woken by Done must find Err non-nil, and Err must stay
// nil until Done is closed: the context package's contract, which the
// handler's client-gone check relies on.
func TestRequestContextErrAgreesWithDone(t *testing.T) {
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < 2000 && time.Now().Before(deadline); i++ {
		ctx, cancelConn := context.WithCancel(context.Background())
		c := &conn{ctx: ctx, valCtx: context.WithoutCancel(ctx)}
		rc := &requestCtx{c: c}
		done := rc.Done()
		woke := make(chan error, 1)
		go func() {
			<-done
			woke <- rc.Err()
		}()
		early := make(chan error, 1)
		go func() {
			// Err before Done is closed must be nil.
			for {
				err := rc.Err()
				closed := isClosed(done)
				if err != nil && !closed {
					early <- err
					return
				}
				if closed {
					early <- nil
					return
				}
				runtime.Gosched()
			}
		}()
		rc.cancel()
		if err := <-woke; err != context.Canceled {
			t.Fatalf("iteration %d: Err after Done = %v, want context.Canceled", i, err)
		}
		if err := <-early; err != nil {
			t.Fatalf("iteration %d: Err = %v while Done was open", i, err)
		}
		cancelConn()
	}
}

// Tokens never repeat within a request, however many functions come and
// go (a long-lived stream may make a context.WithTimeout child per
// message): one that came back around to an earlier, still registered
// token would make StopWatch or a child's stop remove that earlier
// function, which then never ran at the end, and a token of 0 would be
// one no stop could remove. (The counter is set forward here rather
// than run through 2^32 registrations.)
func TestRequestContextTokensDoNotWrap(t *testing.T) {
	rc, _ := testReqCtx(t)
	var first, late, last atomic.Int32
	tFirst := rc.WatchEnd(func() { first.Add(1) }) // stays registered
	rc.next = math.MaxUint32 - 1
	tLate := rc.WatchEnd(func() { late.Add(1) })
	tLast := rc.WatchEnd(func() { last.Add(1) })
	if tLate == 0 || tLast == 0 || tLate == tFirst || tLast == tFirst || tLate == tLast {
		t.Fatalf("tokens %d, %d, %d: a zero or a repeat", tFirst, tLate, tLast)
	}
	if !rc.StopWatch(tLate) || !rc.StopWatch(tLast) {
		t.Fatal("StopWatch of a registered function reported false")
	}
	rc.cancel()
	if first.Load() != 1 || late.Load() != 0 || last.Load() != 0 {
		t.Fatalf("ran: first %d, stopped %d and %d (want 1, 0, 0)", first.Load(), late.Load(), last.Load())
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

// AfterFunc's stop racing with the end, directly and through
// context.AfterFunc and a child's cancel: a stop that reports true kept
// its function from ever running; one that reports false leaves it to
// run exactly once.
func TestRequestContextAfterFuncStopRacesTheEnd(t *testing.T) {
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < 1000 && time.Now().Before(deadline); i++ {
		ctx, cancelConn := context.WithCancel(context.Background())
		c := &conn{ctx: ctx, valCtx: context.WithoutCancel(ctx)}
		rc := &requestCtx{c: c}
		const n = 4
		var ran [n]atomic.Int32
		var wg sync.WaitGroup // the functions that will run
		stops := make([]func() bool, n)
		wg.Add(n)
		for j := range n {
			f := func() { ran[j].Add(1); wg.Done() }
			if j%2 == 0 {
				stops[j] = rc.AfterFunc(f)
			} else {
				stops[j] = context.AfterFunc(rc, f)
			}
		}
		child, cancelChild := context.WithCancel(rc)
		var stopped [n]bool
		var race sync.WaitGroup
		race.Add(2)
		go func() {
			defer race.Done()
			for j := range stops {
				stopped[j] = stops[j]()
			}
			cancelChild()
		}()
		go func() {
			defer race.Done()
			if i%2 == 0 {
				rc.cancel()
			} else {
				cancelConn()
				rc.endWithConn()
			}
		}()
		race.Wait()
		for j := range n {
			if stopped[j] {
				wg.Done()
			}
		}
		waitDone := make(chan struct{})
		go func() { wg.Wait(); close(waitDone) }()
		within(t, 5*time.Second, "the functions not stopped", waitDone)
		for j := range n {
			want := int32(1)
			if stopped[j] {
				want = 0
			}
			if got := ran[j].Load(); got != want {
				t.Fatalf("iteration %d, function %d: stop reported %v, ran %d times", i, j, stopped[j], got)
			}
		}
		if child.Err() == nil || rc.registered() != 0 {
			t.Fatalf("iteration %d: child err %v, %d functions left registered", i, child.Err(), rc.registered())
		}
		cancelConn()
	}
}
