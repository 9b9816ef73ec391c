package reqctx

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/internal/roundtrip"
)

// Conn is what the request contexts of one connection share: the
// connection's context, which gives them their deadline, their values
// and, when it ends, their error and cause. A server keeps one per
// connection and sets it with Init before the first request; it does not
// change afterwards.
type Conn struct {
	ctx context.Context
	// values is context.WithoutCancel(ctx): Value's answer while a
	// request context is live or ended by itself (see doc.go). It is
	// wrapped in a context.WithValue of a key no one asks for: the
	// value context's Value hands the lookup on to WithoutCancel's
	// context already in an interface, whereas WithoutCancel's own
	// Value puts its receiver in a new interface, an allocation on each
	// lookup (httptrace.ContextClientTrace, on every upstream request).
	values context.Context
}

// noKey is the key of Conn.values' wrapper, for which nobody asks.
type noKey struct{}

// Init sets the connection's context.
func (c *Conn) Init(ctx context.Context) {
	c.ctx = ctx
	c.values = context.WithValue(context.WithoutCancel(ctx), noKey{}, nil)
}

// Context is one request's context (see the package documentation). Its
// zero value is not usable: Init it with its connection first. It must
// not be copied after Init, nor reused for another request.
type Context struct {
	// conn is the connection's side; the struct a Context lives in
	// holds the connection anyway, so the pointer keeps nothing alive
	// that would not be.
	conn *Conn

	// state is live, endedSelf or endedConn; set under mu just before
	// done is closed (see end and Err).
	state atomic.Uint32
	done  atomic.Value // chan struct{}, made on demand

	mu sync.Mutex
	// next is the last token handed out, less its child bit; it goes
	// up by 2 from 0, so 0 is never registered. 64 bits, so that it
	// never comes back around to a token still registered (nor to 0),
	// however many functions a long-lived request registers and stops.
	next    uint64
	connErr error // conn.ctx.Err() at the end, for endedConn; set before state
	// slots hold the functions to run at the end: a transport's watch
	// and a route deadline's child fit; more holds the rest. After the
	// end they wait there for Notify, which empties them.
	slots [endSlots]endFunc
	more  []endFunc
}

const (
	live uint32 = iota
	endedSelf
	endedConn
)

// endFunc is a function to run when a Context ends. The token's low bit
// is set for AfterFunc's functions, which the end runs before WatchEnd's
// (a bool of its own would grow h1server's response, in which a Context
// lives, into the next allocation size class).
type endFunc struct {
	f     func()
	token uint64
}

const childBit = 1

// endSlots is the number of functions a Context holds without the more
// slice.
const endSlots = 2

func (e endFunc) child() bool { return e.token&childBit != 0 }

func (e endFunc) run() {
	if e.f != nil {
		e.f()
	}
}

// closedChan is the Done channel of a context that ended before anyone
// asked for one.
var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// Init makes r a live context of the connection c, whose Init has run.
func (r *Context) Init(c *Conn) { r.conn = c }

func (r *Context) Deadline() (time.Time, bool) { return r.conn.ctx.Deadline() }

func (r *Context) Done() <-chan struct{} {
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

func (r *Context) Err() error {
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

func (r *Context) Value(key any) any {
	if r.state.Load() == endedConn {
		return r.conn.ctx.Value(key)
	}
	return r.conn.values.Value(key)
}

func (r *Context) String() string { return "reqctx.Context" }

// Cancel ends r with context.Canceled, if it has not ended, and runs the
// functions registered for its end: the request ended by itself.
func (r *Context) Cancel() {
	if r.End(false) {
		r.Notify()
	}
}

// EndWithConn ends r, if it has not ended, because the connection's
// context has: Err is that context's error and context.Cause its cause.
// It then runs the functions registered for the end.
func (r *Context) EndWithConn() {
	if r.End(true) {
		r.Notify()
	}
}

// End ends r as Cancel does, or as EndWithConn does when withConn is
// set, and runs the functions AfterFunc registered, which cancel r's
// children: as with a cancelCtx, they have ended when End returns (a
// server that ends r under its lock wakes nobody who could find a child
// live). It does not run WatchEnd's functions: it reports whether there
// are any, in which case the caller must call Notify, once it may run
// them (not under a lock of its own). Until then StopWatch reports false
// for them, as for functions about to run.
func (r *Context) End(withConn bool) (notify bool) {
	how := endedSelf
	if withConn {
		how = endedConn
	}
	kids, more, notify := r.end(how)
	for _, e := range kids {
		e.run()
	}
	for _, e := range more {
		e.run()
	}
	return notify
}

// Notify runs the functions registered before the end that End left, in
// the calling goroutine. Each runs once, whoever calls Notify, however
// often.
func (r *Context) Notify() {
	r.mu.Lock()
	if r.state.Load() == live {
		r.mu.Unlock()
		return
	}
	slots := r.slots
	r.slots = [len(r.slots)]endFunc{}
	more := r.more
	r.more = nil
	r.mu.Unlock()
	for _, e := range slots {
		e.run()
	}
	for _, e := range more {
		e.run()
	}
}

// end sets r's state and closes Done. If it ended r, it takes out the
// functions AfterFunc registered, for the caller to run once r.mu is
// released (they call Err), and reports whether WatchEnd's wait for
// Notify.
func (r *Context) end(how uint32) (kids [endSlots]endFunc, more []endFunc, notify bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state.Load() != live {
		return kids, nil, false
	}
	if how == endedConn {
		r.connErr = r.conn.ctx.Err()
		if r.connErr == nil {
			// Not ended after all (a caller's mistake): an error must
			// come with the end.
			how = endedSelf
		}
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
	for i, e := range r.slots {
		switch {
		case e.f == nil:
		case e.child():
			kids[i], r.slots[i] = e, endFunc{}
		default:
			notify = true
		}
	}
	if len(r.more) > 0 {
		// (More than the slots hold: rare enough to allocate.)
		rest := r.more[:0]
		for _, e := range r.more {
			if e.child() {
				more = append(more, e)
			} else {
				rest = append(rest, e)
			}
		}
		clear(r.more[len(rest):])
		r.more = rest
		if len(rest) == 0 {
			r.more = nil
		}
		notify = notify || len(rest) > 0
	}
	return kids, more, notify
}

// register arranges for f to run at the end. If the context has ended
// already, f runs now (in its own goroutine for AfterFunc: the context
// package calls AfterFunc holding the lock of the child that f cancels)
// and the token is 0, which stops nothing.
func (r *Context) register(f func(), child bool) uint64 {
	var bit uint64
	if child {
		bit = childBit
	}
	r.mu.Lock()
	if r.state.Load() != live {
		r.mu.Unlock()
		if child {
			go f()
		} else {
			f()
		}
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
func (r *Context) unregister(token uint64) bool {
	if token == 0 {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state.Load() != live {
		// Whatever is still registered waits for Notify.
		return false
	}
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
// with a goroutine: f runs once after the context ends, on the goroutine
// that ends it and before End returns, as a cancelCtx cancels its
// children; so f must not block (the context package's f cancels a
// child, and context.AfterFunc's own function gets a goroutine of its
// own from the context package). On an ended context f runs at once, in
// a goroutine of its own. stop reports whether it kept f from running.
func (r *Context) AfterFunc(f func()) (stop func() bool) {
	token := r.register(f, true)
	return func() bool { return r.unregister(token) }
}

// WatchEnd registers f to run when the context ends, without allocating,
// for a transport that must end an exchange with the request
// (proxy/h1client finds it by its method set). Unlike AfterFunc, f runs
// synchronously on the goroutine that ends the context (or that calls
// Notify after End), or on WatchEnd's caller's if the context has ended
// already; so f must not block, and must not wait for anything the
// ending goroutine does. It runs at most once. The token is for
// StopWatch.
func (r *Context) WatchEnd(f func()) (token uint64) { return r.register(f, false) }

// StopWatch unregisters the function WatchEnd registered with token and
// reports whether it did so before it ran. False means f has run, is
// running, or is about to run on another goroutine (or was stopped
// already): the caller must assume the end reached it.
func (r *Context) StopWatch(token uint64) bool { return r.unregister(token) }

var (
	_ context.Context      = (*Context)(nil)
	_ roundtrip.EndWatcher = (*Context)(nil) // what the transports look for
)
