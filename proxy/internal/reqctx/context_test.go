package reqctx

import (
	"context"
	"errors"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type key struct{}

// newCtx is a request context of a connection that is not served; as a
// server would, one context.AfterFunc on the connection's context ends
// it with the connection. Cancelling the returned function ends the
// connection's context with cause.
func newCtx(t *testing.T) (*Context, context.CancelCauseFunc) {
	t.Helper()
	ctx, cancel := context.WithCancelCause(context.WithValue(context.Background(), key{}, "here"))
	r := newCtxOf(ctx)
	stop := context.AfterFunc(ctx, r.EndWithConn)
	t.Cleanup(func() {
		stop()
		cancel(nil)
	})
	return r, cancel
}

// newCtxOf is a request context of a connection whose context is ctx,
// which nothing watches: the test ends it.
func newCtxOf(ctx context.Context) *Context {
	c := &Conn{}
	c.Init(ctx)
	r := &Context{}
	r.Init(c)
	return r
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func within(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// registered counts the functions waiting for r's end (or, after End,
// for Notify).
func (r *Context) registered() int {
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

func TestCancelEndsItWithCanceled(t *testing.T) {
	r, _ := newCtx(t)
	early := r.Done() // made before the end, closed by it
	if r.Err() != nil || isClosed(early) || context.Cause(r) != nil {
		t.Fatal("a new request context has ended")
	}
	if v := r.Value(key{}); v != "here" {
		t.Fatalf("value %v, want the connection's", v)
	}
	if _, ok := r.Deadline(); ok {
		t.Fatal("deadline without one on the connection")
	}
	r.Cancel()
	r.Cancel() // idempotent
	if r.Err() != context.Canceled || !isClosed(early) || !isClosed(r.Done()) {
		t.Fatalf("after Cancel: err %v", r.Err())
	}
	if c := context.Cause(r); c != context.Canceled {
		t.Fatalf("cause %v, want context.Canceled", c)
	}
	if v := r.Value(key{}); v != "here" {
		t.Fatalf("value after the end %v", v)
	}
}

// Ended by itself first, a request context keeps context.Canceled as its
// cause when the connection later ends with another, as a cancelCtx
// would.
func TestCauseIsItsOwnWhenItEndedFirst(t *testing.T) {
	r, cancelConn := newCtx(t)
	r.Cancel()
	cancelConn(errors.New("connection cause"))
	r.EndWithConn()
	if c := context.Cause(r); c != context.Canceled {
		t.Fatalf("cause %v, want context.Canceled", c)
	}
}

func TestEndWithConnTakesTheConnectionsErrorAndCause(t *testing.T) {
	r, cancelConn := newCtx(t)
	done := r.Done()
	child, cancelChild := context.WithCancel(r)
	defer cancelChild()
	cause := errors.New("server closed")
	cancelConn(cause)
	within(t, "the request context's end", done)
	within(t, "the child's end", child.Done())
	if r.Err() != context.Canceled {
		t.Fatalf("err %v", r.Err())
	}
	if c := context.Cause(r); c != cause {
		t.Fatalf("cause %v, want the connection's", c)
	}
	if c := context.Cause(child); c != cause {
		t.Fatalf("child's cause %v, want the connection's", c)
	}
	if v := r.Value(key{}); v != "here" {
		t.Fatalf("value after the connection's end %v", v)
	}
}

// The connection's deadline is the request context's, and its expiry,
// passed on by EndWithConn, ends it with context.DeadlineExceeded.
func TestTakesTheConnectionsDeadline(t *testing.T) {
	dl := time.Now().Add(50 * time.Millisecond)
	ctx, cancel := context.WithDeadline(context.Background(), dl)
	defer cancel()
	r := newCtxOf(ctx)
	stop := context.AfterFunc(ctx, r.EndWithConn)
	defer stop()
	if got, ok := r.Deadline(); !ok || !got.Equal(dl) {
		t.Fatalf("deadline %v %v", got, ok)
	}
	within(t, "the end at the connection's deadline", r.Done())
	if r.Err() != context.DeadlineExceeded || context.Cause(r) != context.DeadlineExceeded {
		t.Fatalf("err %v cause %v", r.Err(), context.Cause(r))
	}
}

// EndWithConn on a connection whose context has not ended (a server's
// mistake) still ends with an error.
func TestEndWithConnOnALiveConnectionCancels(t *testing.T) {
	r := newCtxOf(context.Background())
	r.EndWithConn()
	if r.Err() != context.Canceled || context.Cause(r) != context.Canceled || !isClosed(r.Done()) {
		t.Fatalf("err %v cause %v", r.Err(), context.Cause(r))
	}
}

// Children register a function in the request context's slots (its
// AfterFunc method), not a goroutine, end with it, and unregister when
// cancelled first.
func TestChildren(t *testing.T) {
	r, _ := newCtx(t)
	c1, cancel1 := context.WithCancel(r)
	defer cancel1()
	c2, cancel2 := context.WithDeadline(r, time.Now().Add(time.Hour))
	defer cancel2()
	ran := make(chan struct{})
	stop3 := context.AfterFunc(r, func() { close(ran) })
	if n := r.registered(); n != 3 {
		t.Fatalf("%d functions registered, want 3", n)
	}
	c4, cancel4 := context.WithCancel(r)
	cancel4()
	if n := r.registered(); n != 3 || c4.Err() != context.Canceled {
		t.Fatalf("a cancelled child left %d registered", n)
	}
	r.Cancel()
	for _, c := range []context.Context{c1, c2} {
		within(t, "a child's end", c.Done())
		if c.Err() != context.Canceled || context.Cause(c) != context.Canceled {
			t.Fatalf("child err %v cause %v", c.Err(), context.Cause(c))
		}
	}
	within(t, "context.AfterFunc", ran)
	if stop3() {
		t.Fatal("stop after the end reported it stopped the function")
	}
	// Made after the end: ended at once.
	c5, cancel5 := context.WithTimeout(r, time.Hour)
	defer cancel5()
	if c5.Err() != context.Canceled {
		t.Fatalf("late child err %v", c5.Err())
	}
	if n := r.registered(); n != 0 {
		t.Fatalf("%d functions registered after the end", n)
	}
}

// AfterFunc's f runs on the ending goroutine before the end returns, as
// a cancelCtx cancels its children. More functions than slots all run,
// and stopped ones do not.
func TestAfterFuncs(t *testing.T) {
	r, _ := newCtx(t)
	const n = 7
	var ran [n]atomic.Bool
	stops := make([]func() bool, n)
	for i := range n {
		stops[i] = r.AfterFunc(func() { ran[i].Store(true) })
	}
	for _, i := range []int{1, 4, 6} {
		if !stops[i]() {
			t.Fatalf("stop %d before the end reported false", i)
		}
		if stops[i]() {
			t.Fatalf("second stop %d reported true", i)
		}
	}
	r.Cancel()
	for i := range n {
		stopped := i == 1 || i == 4 || i == 6
		if ran[i].Load() == stopped {
			t.Fatalf("function %d: ran %v by the end's return, stopped %v", i, ran[i].Load(), stopped)
		}
		if stops[i]() {
			t.Fatalf("stop %d after the end reported true", i)
		}
	}
	// On an ended context f still runs, in its own goroutine (the context
	// package registers a child's cancel holding the child's lock).
	late := make(chan struct{})
	if r.AfterFunc(func() { close(late) })() {
		t.Fatal("stop of a late AfterFunc reported true")
	}
	within(t, "AfterFunc on an ended context", late)
}

// End cancels the children before it returns, under its caller's lock,
// and leaves WatchEnd's functions to Notify: a goroutine that takes the
// lock after the end finds the children ended.
func TestEndCancelsChildrenAndLeavesWatchesToNotify(t *testing.T) {
	r, _ := newCtx(t)
	child, cancel := context.WithCancel(r)
	defer cancel()
	timeout, cancelTimeout := context.WithTimeout(r, time.Hour)
	defer cancelTimeout()
	ran := make(chan struct{})
	context.AfterFunc(r, func() { close(ran) })
	var watched atomic.Bool
	r.WatchEnd(func() { watched.Store(true) })
	var mu sync.Mutex
	mu.Lock()
	notify := r.End(false)
	mu.Unlock()
	if !notify {
		t.Fatal("End reported no function for Notify")
	}
	if child.Err() != context.Canceled || timeout.Err() != context.Canceled {
		t.Fatalf("children after End: %v, %v", child.Err(), timeout.Err())
	}
	if watched.Load() {
		t.Fatal("End ran WatchEnd's function")
	}
	within(t, "context.AfterFunc's function", ran)
	r.Notify()
	if !watched.Load() {
		t.Fatal("Notify did not run WatchEnd's function")
	}
	// Only children: nothing is left for Notify.
	r2, _ := newCtx(t)
	c2, cancel2 := context.WithCancel(r2)
	defer cancel2()
	if r2.End(true) || c2.Err() == nil {
		t.Fatalf("End with only a child: notify, child err %v", c2.Err())
	}
}

// WatchEnd's function runs on the ending goroutine, before the end
// returns, or at once on an ended context.
func TestWatchEndRunsSynchronously(t *testing.T) {
	r, _ := newCtx(t)
	var a, b atomic.Int32
	ta := r.WatchEnd(func() { a.Add(1) })
	tb := r.WatchEnd(func() { b.Add(1) })
	if !r.StopWatch(tb) || r.StopWatch(tb) {
		t.Fatal("StopWatch before the end")
	}
	r.Cancel()
	if a.Load() != 1 || b.Load() != 0 {
		t.Fatalf("ran %d and %d times", a.Load(), b.Load())
	}
	if r.StopWatch(ta) {
		t.Fatal("StopWatch after its function ran reported true")
	}
	var late atomic.Int32
	tl := r.WatchEnd(func() { late.Add(1) })
	if late.Load() != 1 || r.StopWatch(tl) {
		t.Fatal("WatchEnd on an ended context")
	}
}

// End ends the context (Err, Done, its children, children made
// afterwards) but leaves WatchEnd's functions registered before it to
// Notify, which runs each once; meanwhile their stops report false, as
// for functions about to run.
func TestEndLeavesTheFunctionsToNotify(t *testing.T) {
	r, _ := newCtx(t)
	var watched atomic.Int32
	tok := r.WatchEnd(func() { watched.Add(1) })
	ran := make(chan struct{})
	stopAF := r.AfterFunc(func() { close(ran) })
	child, cancelChild := context.WithCancel(r)
	defer cancelChild()
	if !r.End(false) {
		t.Fatal("End with functions registered reported none")
	}
	if r.End(true) {
		t.Fatal("a second End reported functions")
	}
	if r.Err() != context.Canceled || !isClosed(r.Done()) || context.Cause(r) != context.Canceled {
		t.Fatalf("after End: err %v, cause %v", r.Err(), context.Cause(r))
	}
	if watched.Load() != 0 {
		t.Fatal("WatchEnd's function ran before Notify")
	}
	if !isClosed(ran) || child.Err() != context.Canceled {
		t.Fatalf("after End: AfterFunc's function ran %v, child err %v", isClosed(ran), child.Err())
	}
	if r.StopWatch(tok) || stopAF() {
		t.Fatal("a stop between End and Notify reported true")
	}
	r.Cancel() // after End: nothing to do, and it does not run them either
	if watched.Load() != 0 {
		t.Fatal("Cancel after End ran the functions")
	}
	r.Notify()
	r.Notify()
	if watched.Load() != 1 {
		t.Fatalf("WatchEnd's function ran %d times", watched.Load())
	}
	within(t, "context.AfterFunc", ran)
	within(t, "the child's end", child.Done())
	if child.Err() != context.Canceled {
		t.Fatalf("child err %v", child.Err())
	}
	if r.registered() != 0 {
		t.Fatal("functions left registered after Notify")
	}
	// Without functions End says so; Notify on a live context does
	// nothing.
	r2, _ := newCtx(t)
	r2.Notify()
	if r2.Err() != nil {
		t.Fatal("Notify ended a live context")
	}
	if r2.End(false) {
		t.Fatal("End without functions reported some")
	}
}

// endOneWay ends r in the way i picks of a server's three: Cancel,
// EndWithConn once the connection's context (cancelConn's) has ended, or
// End then Notify, with a yield between them that widens the window in
// which the end has taken place and its functions have not run.
func endOneWay(r *Context, i int, cancelConn context.CancelFunc) {
	switch i % 3 {
	case 0:
		r.Cancel()
	case 1:
		cancelConn()
		r.EndWithConn()
	default:
		if r.End(false) {
			runtime.Gosched()
			r.Notify()
		}
	}
}

// StopWatch racing with the end (Cancel, EndWithConn, or End then
// Notify): exactly one of "StopWatch reported true" and "the function
// ran" holds for each registration, each time.
func TestStopWatchRacesTheEnd(t *testing.T) {
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < 2000 && time.Now().Before(deadline); i++ {
		ctx, cancelConn := context.WithCancel(context.Background())
		r := newCtxOf(ctx)
		var ran atomic.Int32
		var tokens [3]uint64
		for j := range tokens {
			tokens[j] = r.WatchEnd(func() { ran.Add(1) })
		}
		var stopped atomic.Int32
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			for _, tok := range tokens {
				if r.StopWatch(tok) {
					stopped.Add(1)
				}
			}
		}()
		go func() {
			defer wg.Done()
			endOneWay(r, i, cancelConn)
		}()
		wg.Wait()
		cancelConn()
		if got := ran.Load() + stopped.Load(); got != int32(len(tokens)) {
			t.Fatalf("iteration %d: ran %d + stopped %d", i, ran.Load(), stopped.Load())
		}
		if r.registered() != 0 {
			t.Fatalf("iteration %d: functions left registered", i)
		}
	}
}

// A goroutine woken by Done must find Err non-nil, and Err must stay
// nil until Done is closed: the context package's contract.
func TestErrAgreesWithDone(t *testing.T) {
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < 2000 && time.Now().Before(deadline); i++ {
		r := newCtxOf(context.Background())
		done := r.Done()
		woke := make(chan error, 1)
		go func() {
			<-done
			woke <- r.Err()
		}()
		early := make(chan error, 1)
		go func() {
			// Err before Done is closed must be nil.
			for {
				err := r.Err()
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
		r.Cancel()
		if err := <-woke; err != context.Canceled {
			t.Fatalf("iteration %d: Err after Done = %v, want context.Canceled", i, err)
		}
		if err := <-early; err != nil {
			t.Fatalf("iteration %d: Err = %v while Done was open", i, err)
		}
	}
}

// Tokens never repeat within a request, however many functions come and
// go (a long-lived stream may make a context.WithTimeout child per
// message): one that came back around to an earlier, still registered
// token would make StopWatch or a child's stop remove that earlier
// function, which then never ran at the end, and a token of 0 would be
// one no stop could remove. (The counter is set forward here rather
// than run through 2^32 registrations.)
func TestTokensDoNotWrap(t *testing.T) {
	r, _ := newCtx(t)
	var first, late, last atomic.Int32
	tFirst := r.WatchEnd(func() { first.Add(1) }) // stays registered
	r.next = math.MaxUint32 - 1
	tLate := r.WatchEnd(func() { late.Add(1) })
	tLast := r.WatchEnd(func() { last.Add(1) })
	if tLate == 0 || tLast == 0 || tLate == tFirst || tLast == tFirst || tLate == tLast {
		t.Fatalf("tokens %d, %d, %d: a zero or a repeat", tFirst, tLate, tLast)
	}
	if !r.StopWatch(tLate) || !r.StopWatch(tLast) {
		t.Fatal("StopWatch of a registered function reported false")
	}
	r.Cancel()
	if first.Load() != 1 || late.Load() != 0 || last.Load() != 0 {
		t.Fatalf("ran: first %d, stopped %d and %d (want 1, 0, 0)", first.Load(), late.Load(), last.Load())
	}
}

// AfterFunc's stop racing with the end, directly and through
// context.AfterFunc and a child's cancel: a stop that reports true kept
// its function from ever running; one that reports false leaves it to
// run exactly once.
func TestAfterFuncStopRacesTheEnd(t *testing.T) {
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < 1000 && time.Now().Before(deadline); i++ {
		ctx, cancelConn := context.WithCancel(context.Background())
		r := newCtxOf(ctx)
		const n = 4
		var ran [n]atomic.Int32
		var wg sync.WaitGroup // the functions that will run
		stops := make([]func() bool, n)
		wg.Add(n)
		for j := range n {
			f := func() { ran[j].Add(1); wg.Done() }
			if j%2 == 0 {
				stops[j] = r.AfterFunc(f)
			} else {
				stops[j] = context.AfterFunc(r, f)
			}
		}
		child, cancelChild := context.WithCancel(r)
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
			endOneWay(r, i, cancelConn)
		}()
		race.Wait()
		for j := range n {
			if stopped[j] {
				wg.Done()
			}
		}
		waitDone := make(chan struct{})
		go func() { wg.Wait(); close(waitDone) }()
		within(t, "the functions not stopped", waitDone)
		for j := range n {
			want := int32(1)
			if stopped[j] {
				want = 0
			}
			if got := ran[j].Load(); got != want {
				t.Fatalf("iteration %d, function %d: stop reported %v, ran %d times", i, j, stopped[j], got)
			}
		}
		if child.Err() == nil || r.registered() != 0 {
			t.Fatalf("iteration %d: child err %v, %d functions left registered", i, child.Err(), r.registered())
		}
		cancelConn()
	}
}

// A Context costs nothing to make, end and watch: it lives in its
// owner's struct, and WatchEnd/StopWatch and Cancel allocate nothing.
func TestWatchAndEndAllocateNothing(t *testing.T) {
	c := &Conn{}
	c.Init(context.Background())
	var r Context
	f := func() {}
	allocs := testing.AllocsPerRun(100, func() {
		r = Context{}
		r.Init(c)
		r.StopWatch(r.WatchEnd(f))
		r.WatchEnd(f)
		r.Cancel()
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per request", allocs)
	}
}

// Value looks a key up without allocating, whatever the key (a
// transport asks for its client trace on every request), and still
// finds the connection's values.
func TestValueAllocatesNothing(t *testing.T) {
	r, cancel := newCtx(t)
	defer cancel(nil)
	type absent struct{}
	var got any
	allocs := testing.AllocsPerRun(100, func() {
		got = r.Value(key{})
		_ = r.Value(absent{})
		_ = context.Cause(r)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per lookup", allocs)
	}
	if got != "here" {
		t.Fatalf("Value(key{}) = %v, want the connection's value", got)
	}
}
