// Package admin is the sidecar's operator endpoint: liveness, readiness,
// Prometheus metrics, the effective configuration, upstream cluster state,
// breaker overrides, messaging topics and groups, and Go's pprof profiles.
//
// The package owns no state and starts no goroutine. [New] builds an
// [http.Handler] from an [Options] struct of small functions supplied by the
// wiring in cmd/outrigger; each route calls one of them per request, so the
// handler is tested with httptest and plain closures. A route whose function is
// nil is not mounted and answers 404, so a sidecar without messaging has no
// /topics; /live and the index need nothing and are always there.
//
// Invariants:
//   - /ready answers 200 only while Options.Ready returns nil; otherwise 503 with
//     the reason as the body. Load balancers and kubelet probes rely on this.
//   - /live answers 200 whenever the handler runs, whatever /ready says: a
//     liveness probe on it never restarts a sidecar that is starting or
//     stopping.
//   - Routes that change behaviour (breaker overrides), /config (the
//     configuration's values as written) and /debug/pprof/ answer
//     only requests from a loopback address, even when the admin listener was
//     bound to a wider address by configuration: they are for the operator on
//     the host, never for the network. Their writes also refuse what a
//     browser sends for another site's page (Sec-Fetch-Site, Origin): a
//     web page the host's browser shows is on loopback too. They refuse a
//     Host that is a name other than localhost as well: a page can reach
//     127.0.0.1 under a name of its own (DNS rebinding).
//   - Every response has a write deadline, Options.WriteTimeout from the
//     request's arrival, plus the seconds a profile collects for: a
//     client that stops reading holds no goroutine past it.
//   - JSON responses are indented and end in a newline, for curl users.
package admin
