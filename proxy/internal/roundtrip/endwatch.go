package roundtrip

// EndWatcher is a context that runs a function at its end without the
// allocations of context.AfterFunc (an afterFuncCtx, its stop function,
// and on a cancelCtx a children map and a Done channel made to be looked
// at): proxy/internal/reqctx's Context, which proxy/h1server and
// proxy/h2server give their requests. The transports find it by this
// method set on the round trip's context.
//
// WatchEnd registers f, which runs at most once, when the context ends:
// synchronously on the goroutine that ends it, or on WatchEnd's caller's
// if it has ended already. StopWatch unregisters it and reports whether
// it did so before f ran; false means f has run, is running or is about
// to run.
type EndWatcher interface {
	WatchEnd(f func()) (token uint64)
	StopWatch(token uint64) bool
}
