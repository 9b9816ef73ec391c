// Package catalog is the example application that `outrigger demo` and the
// documentation put behind the sidecar: a small product catalog served as JSON
// over HTTP/1.1 and HTTP/2 cleartext, with the standard gRPC health service on
// the same port.
//
// It is deliberately ordinary: it knows nothing about Outrigger. Its routes
// exist to show what the sidecar does with real traffic:
//
//	GET  /items            every item
//	GET  /items/{id}       one item, or 404
//	POST /items            add an item (JSON body; id of A-Z a-z 0-9 _ -), 201
//	GET  /slow?d=800ms     answers after d (at most 30s): watch a drain or a timeout
//	GET  /status/{code}    answers with that status: trip a circuit breaker
//	GET  /headers          echoes the request headers: see x-outrigger-* added
//	GET  /healthz          200 "ok"
//	gRPC grpc.health.v1.Health/Check
//
// The store is in memory and guarded by one mutex; the handler starts no
// goroutine of its own (net/http and grpc-go own the per-request ones).
package catalog
