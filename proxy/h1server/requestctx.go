package h1server

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// requestCtx is the context of one HTTP/1.1 request: what
// context.WithCancel of the connection's context was, without its
// allocations. It lives inside the request's response (no allocation of
// its own), makes its Done channel only when asked, as cancelCtx does,
// and keeps the functions to run at its end in a few fixed slots rather
// than in a children map, so that a transport's watch of it
// (WatchEnd) and context.AfterFunc, WithCancel or WithDeadline on it
// (through its AfterFunc method, which the context package uses when a
// parent has one) cost no map, no goroutine and, for WatchEnd, nothing.
//
// It ends with context.Canceled when the handler returns or the client
// goes away (cancel), and, with the connection context's error, when
// that context ends (endWithConn, run by the connection's one
// context.AfterFunc; see conn.watchConnEnd). Values and the deadline are
// the connection context's.
//
// context.Cause: the context package finds the cause through
// Value(&cancelCtxKey), the nearest cancelCtx. A live request context,
// and one that ended by itself, answer Value from
// context.WithoutCancel(conn), which hides the connection's cancelCtx,
// so Cause is Err (context.Canceled), as for the cancelCtx it replaces.
// One that ended with the connection answers from the connection's
// context, so Cause is the connection's cause, which a cancelCtx child
// would have copied. (The context package's parentCancelCtx also asks
// Value(&cancelCtxKey) to find a parent cancelCtx to join; it checks
// that the cancelCtx's Done channel is the parent's own, which ours
// never is, so it cannot take the connection's cancelCtx for this one.)
type requestCtx struct {
	// c is the connection: c.ctx gives the deadline and the end,
	// c.valCtx (context.WithoutCancel(c.ctx)) the values. (The response
	// this lives in holds c anyway.)
	c *conn

	// state is live, endedSelf or endedConn; set under mu just before
	// done is closed (see end and Err).
	state atomic.Uint32
	done  atomic.Value // chan struct{}, made on demand

	mu sync.Mutex
	// next is the last token handed out, less its async bit; it goes
	// up by 2 from 0, so 0 is never registered. 64 bits, so that it
	// never comes back around to a token still registered (nor to 0),
	// however many functions a long-lived request registers and stops.
	next    uint64
	connErr error // c.ctx.Err() at the end, for endedConn; set before state
	// slots hold the functions to run at the end: a transport's watch
	// and a route deadline's child fit; more holds the rest.
	slots [2]endFunc
	more  []endFunc
}

const (
	live uint32 = iota
	endedSelf
	endedConn
)

// endFunc is a function to run when a requestCtx ends. The token's low
// bit is set for AfterFunc's functions, which run in their own
// goroutine (a bool of its own would grow the response, in which the
// context lives, into the next allocation size class).
type endFunc struct {
	f     func()
	token uint64
}

const asyncBit = 1

func (e endFunc) async() bool { return e.token&asyncBit != 0 }

// closedChan is the Done channel of a context that ended before anyone
// asked for one.
var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

func (r *requestCtx) Deadline() (time.Time, bool) { return r.c.ctx.Deadline() }

func (r *requestCtx) Done() <-chan struct{} {
	if d := r.done.Load(); d != nil {
		return d.(chan struct{})
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if d := r.done.Load(); d != nil {
		return d.(chan struct{})
	}
	d := closedChan
	if r.state.Load() == live {
		d = make(chan struct{})
	}
	r.done.Store(d)
	return d
}

func (r *requestCtx) Err() error {
	st := r.state.Load()
	if st == live {
		return nil
	}
	// An end in progress holds mu until Done is closed.
	r.mu.Lock()
	r.mu.Unlock()
	switch st {
	case endedSelf:
		return context.Canceled
	default:
		return r.connErr // written before state
	}
}

func (r *requestCtx) Value(key any) any {
	if r.state.Load() == endedConn {
		return r.c.ctx.Value(key)
	}
	return r.c.valCtx.Value(key)
}

func (r *requestCtx) String() string { return "h1server.requestContext" }

// cancel ends the context with context.Canceled, if it has not ended.
func (r *requestCtx) cancel() { r.end(endedSelf) }

// endWithConn ends the context because the connection's context ended.
func (r *requestCtx) endWithConn() { r.end(endedConn) }

func (r *requestCtx) end(how uint32) {
	r.mu.Lock()
	if r.state.Load() != live {
		r.mu.Unlock()
		return
	}
	if how == endedConn {
		r.connErr = r.c.ctx.Err()
	}
	// The state first: whoever sees Done closed must find Err non-nil.
	// Err waits for mu before it reports an end, so nobody finds Err
	// non-nil while Done is still open either.
	r.state.Store(how)
	if d := r.done.Load(); d != nil {
		close(d.(chan struct{}))
	} else {
		r.done.Store(closedChan)
	}
	slots := r.slots
	r.slots = [len(r.slots)]endFunc{}
	more := r.more
	r.more = nil
	r.mu.Unlock()
	// Outside the lock: a function may use the context.
	for _, e := range slots {
		e.run()
	}
	for _, e := range more {
		e.run()
	}
}

func (e endFunc) run() {
	switch {
	case e.f == nil:
	case e.async():
		go e.f()
	default:
		e.f()
	}
}

// register arranges for f to run at the end. If the context has ended
// already, f runs now (in its own goroutine when async) and the token is
// 0, which stops nothing.
func (r *requestCtx) register(f func(), async bool) uint64 {
	var bit uint64
	if async {
		bit = asyncBit
	}
	r.mu.Lock()
	if r.state.Load() != live {
		r.mu.Unlock()
		endFunc{f: f, token: bit}.run()
		return 0
	}
	r.next += 2
	e := endFunc{f: f, token: r.next | bit}
	placed := false
	for i := range r.slots {
		if r.slots[i].f == nil {
			r.slots[i], placed = e, true
			break
		}
	}
	if !placed {
		r.more = append(r.more, e)
	}
	r.mu.Unlock()
	return e.token
}

// unregister removes the function registered with token and reports
// whether it did; false means it has run, is running, or is about to
// run (the end took it), or was removed already.
func (r *requestCtx) unregister(token uint64) bool {
	if token == 0 {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.slots {
		if r.slots[i].token == token && r.slots[i].f != nil {
			r.slots[i] = endFunc{}
			return true
		}
	}
	for i, e := range r.more {
		if e.token == token {
			last := len(r.more) - 1
			r.more[i] = r.more[last]
			r.more[last] = endFunc{}
			r.more = r.more[:last]
			return true
		}
	}
	return false
}

// AfterFunc is context.AfterFunc's schedule for this context, which the
// context package calls (for context.AfterFunc, and for the children
// WithCancel, WithDeadline and the like make) instead of watching Done
// with a goroutine: f runs once, in its own goroutine, after the context
// ends (at once if it has); stop reports whether it kept f from running.
func (r *requestCtx) AfterFunc(f func()) (stop func() bool) {
	token := r.register(f, true)
	return func() bool { return r.unregister(token) }
}

// WatchEnd registers f to run when the context ends, without allocating,
// for a transport that must end an exchange with the request (package
// h1client finds it by its method set). Unlike AfterFunc, f runs
// synchronously on the goroutine that ends the context (the handler's
// return, the client-gone watcher, a failed write, the connection's end),
// or on WatchEnd's caller's if the context has ended already; so f must
// not block, and must not wait for anything the ending goroutine does.
// It runs at most once. The token is for StopWatch.
func (r *requestCtx) WatchEnd(f func()) (token uint64) { return r.register(f, false) }

// StopWatch unregisters the function WatchEnd registered with token and
// reports whether it did so before it ran. False means f has run, is
// running, or is about to run on another goroutine (or was stopped
// already): the caller must assume the end reached it.
func (r *requestCtx) StopWatch(token uint64) bool { return r.unregister(token) }

var _ context.Context = (*requestCtx)(nil)
