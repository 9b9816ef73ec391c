// Package proxy is Outrigger's data path: it takes HTTP/1.1, HTTP/2 (h2c)
// and gRPC requests on the outbound and inbound listeners, matches them
// against the routes of the applied configuration and forwards them to an
// endpoint of the chosen cluster, with timeouts, retries, circuit breaking,
// resource limits and outlier ejection on the way.
//
// Shape. [Proxy.Apply] compiles a config.Config into an immutable snapshot
// (route tables per listener, clusters with their endpoints, connection
// pools and resilience objects) and publishes it with one atomic pointer
// store. A request loads the snapshot once and uses only it, so a reload
// never changes a request in flight. Objects with run-time state that must
// outlive a reload — connection pools (keyed by every setting a connection
// depends on) and each cluster's breaker, limits and outlier detector
// (keyed by the cluster's blocks) — are carried over when their inputs are
// unchanged and retired otherwise; a retired pool closes its idle
// connections when its last request ends, and a kept pool closes those
// to the endpoints its cluster no longer has, each once idle.
//
// The forwarder is written by hand, after net/http/httputil's checklist:
// it builds a new outbound request (the inbound one is never mutated),
// strips hop-by-hop headers (Connection tokens, then the fixed list) but
// keeps "TE: trailers", announces and forwards trailers (unannounced ones
// through http.TrailerPrefix), forwards 1xx responses, flushes streaming
// responses per read, and aborts a response whose upstream body fails
// midway with http.ErrAbortHandler. Bodies stream; only a request body
// that may be retried is kept, up to the retry buffer limit.
//
// Other route actions. A composition route is served by a
// composer.Composition built at Apply over that snapshot's clusters
// (compose.go): each backend call runs through the same forwarding code as
// a proxied request, with the route's per-try timeout and retry policy, and
// is captured in memory for the join. A route's fallback (fallback.go)
// answers, with a fixed response or another cluster, the requests the
// primary cluster never got to its application (breaker open, limit full,
// no healthy endpoint, connect failure after retries); it never chains.
//
// Downstream connections. Each listener's max_connections caps the client
// connections open on it, across the servers Serve runs for it
// (connlimit.go): the one gate per listener, kept by the Proxy across
// reloads, admits each accepted connection or closes it at once, and
// Apply only changes its cap, so a lowered cap closes nothing.
//
// Retries draw on one budget per cluster, the breaker package's
// max_retries / retry_budget limit, shared by every route to the cluster.
//
// Invariants:
//   - A response's headers are written downstream at most once, after the
//     last attempt: a retry never follows bytes sent to the client.
//   - Every upstream attempt asks the cluster's breaker first and reports
//     its outcome, classified by the cluster's one failure classifier, to
//     the breaker and the outlier detector exactly once (or cancels its
//     permit when the client went away). gRPC calls whose status is in the
//     trailers are classified after the body has been copied.
//   - Local replies (the proxy answering itself) carry x-outrigger-error
//     with a stable code; for gRPC requests they are trailers-only
//     responses with a gRPC status. The matched route's response header
//     edits apply to them, without overriding the reply's own headers.
//   - A request reaches a fallback only when no attempt's upstream
//     application saw it, and only with its whole body.
//   - Metric children are resolved at Apply time; the per-request path does
//     no label lookups.
//
// Wire protocols, all hand-written: HTTP/1.1 is spoken by proxy/h1server
// (downstream) and proxy/h1client (upstream), each running a request on
// one goroutine; HTTP/2 and gRPC by proxy/h2server (downstream) and
// proxy/h2client (upstream), which write the frames of many streams in one
// system call. Frame parsing and HPACK come from golang.org/x/net/http2.
//
// Goroutines: Serve runs an h1server.Server per listener until Shutdown;
// the first Handler call starts the outlier evaluator, which Shutdown
// stops and joins. Shutdown also waits, by the proxy's own count, for
// requests on hijacked connections, which the server does not track.
package proxy
