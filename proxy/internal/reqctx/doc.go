// Package reqctx is the context of one request served by the proxy's
// servers (an HTTP/1.1 request of proxy/h1server, a stream of
// proxy/h2server): what context.WithCancel of the connection's context
// was, without its costs.
//
// A Context lives inside a struct the server allocates per request
// anyway (h1server's response, h2server's stream), makes its Done channel
// only when asked, and keeps the functions to run at its end in a few
// fixed slots rather than in a children map. It is not a child of the
// connection's context: the server, which knows its requests, ends it.
// So a request costs the connection's context no children map entry,
// and a transport's watch of it (WatchEnd), context.AfterFunc on it, and
// WithCancel or WithDeadline children of it (through its AfterFunc
// method, which the context package uses when a parent has one) cost no
// map and no goroutine, and WatchEnd no allocation.
//
// The server decides the end:
//   - Cancel, when the request ends by itself (the handler returned, the
//     client went away, the stream was reset): Err and context.Cause are
//     context.Canceled, as for the cancelCtx this replaces.
//   - EndWithConn, when the connection's context has ended (the server
//     watches it with one context.AfterFunc per connection, or checks
//     it when it ends a request): Err is that context's error and
//     context.Cause its cause, which a cancelCtx child would have
//     copied.
//
// The first end wins; later ones do nothing. The end cancels the
// request's children (the functions its AfterFunc method registered for
// the context package) before it returns, as a cancelCtx does, so that
// a goroutine woken after the end finds them ended too. End and Notify
// split an end in two for a server that ends a request under a lock of
// its own (so that whoever takes the lock next finds it and its children
// ended) but must not run WatchEnd's functions there: they may be
// another package's (h1client's cancellation of an upstream exchange).
// Cancelling a child takes only that child's lock (and its own
// children's), and starts context.AfterFunc's functions in goroutines
// of their own.
//
// Invariants: Done is closed only after Err is non-nil, and Err is
// non-nil only once Done is closed (Err waits for an end in progress).
// Each function registered (AfterFunc, WatchEnd) either runs exactly
// once after the end or is stopped by a stop that reports true, never
// both. Values and the deadline are the connection context's, before
// and after the end. A Context is never reused: one a handler retained
// past its request stays ended and valid.
//
// context.Cause finds a cause through Value(&cancelCtxKey), the nearest
// cancelCtx. A live Context, and one that ended by itself, answer Value
// from context.WithoutCancel of the connection's context, which hides
// the connection's cancelCtx, so Cause is Err. One that ended with the
// connection answers from the connection's context, so Cause is the
// connection's cause. (The context package's parentCancelCtx also asks
// Value(&cancelCtxKey) to find a parent cancelCtx to join; it checks that
// the cancelCtx's Done channel is the parent's own, which a Context's
// never is, so it cannot take the connection's cancelCtx for a request's.)
package reqctx
