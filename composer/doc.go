// Package composer serves composite endpoints: one incoming request fans out to
// the backend services that own the data, and their JSON results are joined in
// memory into one response.
//
// A composition is declared by a Spec (plain config, embedded by the sidecar
// config under a route's `composition:` key). New compiles it into a plan: a DAG
// of named calls whose edges are the references between them ({order.customerId}
// in a path makes the call depend on the call named order). The plan is pure: it
// owns no goroutine, socket or clock. A Composition executes the plan for each
// request: every call starts as soon as the calls it depends on are done, so
// independent calls run in parallel and the latency of a composite request is
// close to that of its slowest chain, not to the sum of its calls.
//
// Templates in paths, queries, headers and bodies refer to the incoming request
// ({id} path parameters, {query.x}, {header.X}, {body.x}) and to earlier
// results ({order.customerId}); a for_each call fans out over a collection, one
// call per distinct element or one batched call. Output shaping (merge with a
// declared conflict rule, nest, hash joins, select, rename, drop) is a pure
// function of the results, pinned by golden files in testdata/golden.
//
// Every backend call goes through a Backend, a one-method interface implemented
// by the proxy, so that each call gets the cluster's load balancing, timeouts,
// retries and circuit breaker. composer never imports the proxy.
//
// Invariants:
//   - Templating cannot reach a cluster or path the config did not name: the
//     cluster is fixed by config, a value substituted into a path is escaped as
//     exactly one path segment (and "", "." and ".." are refused), query values
//     are query-escaped, header values with a control character are refused
//     (edge spaces and tabs are trimmed).
//   - Results are joined deterministically: merge conflicts are resolved by
//     declaration order, never by which backend answered last; output objects
//     are encoded with sorted keys.
//   - Memory is bounded: each call's body is read through a limit of its cap
//     plus one byte, the bytes of all calls of a request share a total budget,
//     the composed body has the same cap, and fan-out has a cap.
//   - A failed optional call yields a partial response that says what is missing
//     (header x-outrigger-partial and a body section); a failed required call
//     fails the request with x-outrigger-error and a JSON error naming the call.
//   - A composed body's ETag is made from its bytes (a call's validators,
//     which describe that call's body, never label it), and a GET or HEAD
//     whose If-None-Match names it is answered 304.
//   - Every goroutine started for a request is joined before ServeHTTP returns.
//
// The package does not log; it reports through metrics on an injected
// prometheus registry (outrigger_composer_*) and through its responses. A
// Composition binds its series when it is built and writes no other; the
// caller that replaces compositions deletes the series of those it drops
// (DeleteSeries).
package composer
