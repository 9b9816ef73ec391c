// Package breaker decides whether a call to an upstream should be made: a
// circuit breaker per cluster, Envoy-style resource limits per cluster,
// outlier ejection per endpoint, and the one failure classifier that all of
// them — and the proxy's retries — share.
//
// It is a pure core: it owns no goroutine, reads no clock (every method that
// needs the time takes now, so tests inject time by passing it), does not log,
// and imports nothing from the proxy. State changes are reported through
// hooks and snapshots; the caller logs and exports metrics.
//
// # Circuit breaker
//
// A Breaker is closed, open or half-open (or forced open or closed by an
// operator). While closed it admits every call and counts outcomes; it opens
// when any enabled trip policy fires: a run of consecutive failures, the
// failure rate over a sliding window, or the slow-call rate over the same
// window (both only once the window holds minimum_calls calls). The policies
// are checked when a failed or slow call is recorded, as in sony/gobreaker:
// successes skip the check, so a trip that a success would complete (by
// bringing the window to minimum_calls) waits for the next failed call. The
// window is count-based (the last N calls) or time-based (the last T, in
// buckets).
// While open it rejects calls with an *OpenError that says when the open
// period ends. The open period grows exponentially over successive openings
// (base × multiplier^(n−1), capped, minus random jitter) and returns to base
// once the breaker closes. When the period is over, the next Allow moves it
// to half-open, where at most max_probes probe calls are in flight; after
// successes_to_close successful probes it closes with an empty window, and
// any failed probe opens it again for a longer period.
//
// Invariants: the closed-state path (Allow, then Permit.Done) takes no lock
// and does not allocate — the state is one atomic word (state and
// generation), the window is rings of atomic counters; the mutex is taken
// only for transitions and in half-open. Every transition starts a new
// generation: an outcome reported for a call admitted in an earlier
// generation is ignored, so a slow call from before a trip can neither fail
// a probe nor pollute the next closed period. Half-open never has more than
// max_probes permits outstanding. The state-change hook is never called with
// a lock held; hook calls are serialized and in transition order. Window
// counts are exact once concurrent records have returned.
//
// # Resource limits
//
// Limits caps connections, pending requests, requests and retries in flight
// toward a cluster (Envoy's circuit_breakers thresholds), optionally with a
// retry budget (retries at most a percentage of active requests, never
// fewer than a minimum). Acquire fails fast with a *LimitError naming the
// limit; acquire and release are lock-free and never let the count exceed
// the limit.
//
// # Outlier ejection
//
// A Detector ejects endpoints of a cluster on consecutive failures,
// consecutive gateway errors, or a success rate below mean − factor × stdev
// of their peers, evaluated at an interval. Ejections grow with each repeat
// and end by themselves. At least one endpoint always stays in, and when too
// few remain (below the panic threshold) the load balancer is told to use all
// of them. See Detector for the exact rules.
//
// # Failure classification
//
// A Classifier turns an Outcome (transport error kind, HTTP status, gRPC
// status from headers or trailers) into a Verdict: failure or not, gateway
// error or not, and a short reason. Build one per cluster and feed the same
// Verdict to the breaker, the retry policy and the outlier detector.
//
// # How the proxy uses it
//
// Per cluster, at config load: NewClassifier(cluster.failure_classifier),
// New(cluster.circuit_breaker, WithStateChangeHook(log and count)),
// NewLimits(cluster.limits), NewDetector(cluster.outlier_detection,
// len(endpoints), WithEjectionHook(log)). Validate errors are FieldErrors;
// report them with WithPrefix("clusters.<name>.circuit_breaker") and so on.
// On a config or endpoint change, build new values (Detector.CarryFrom keeps
// the ejections of endpoints that stay; Limits.Reconfigure puts new limits
// on the counts of the resources in use) and swap them in.
//
// Per request:
//
//	now := time.Now()
//	permit, err := br.Allow(now)
//	if err != nil {
//		// 503 (or gRPC UNAVAILABLE, trailers-only) with
//		// x-outrigger-breaker: RejectReason(err); for an *OpenError,
//		// retry-after: seconds of oe.RetryAfter(now).
//	}
//	if err := limits.Acquire(breaker.LimitRequests); err != nil {
//		permit.Cancel() // the call is not made
//		// 503 with x-outrigger-breaker: RejectReason(err) ("max_requests")
//	}
//	defer limits.Release(breaker.LimitRequests)
//	ep := lb.Pick(detector.Eligible(now, buf[:0])) // or Ejected(i, now) + Panic(now)
//	... forward; while waiting for a connection hold LimitPendingRequests,
//	... for each new connection LimitConnections, for each retry LimitRetries ...
//	end := time.Now()
//	v := classifier.Classify(breaker.Outcome{Transport: kind, HTTPStatus: status,
//		GRPCStatus: breaker.ParseGRPCStatus(resp.Header, resp.Trailer)})
//	permit.Done(end, v.Failure)   // exactly once per successful Allow
//	detector.Record(ep, end, v)   // per attempt, for the endpoint used
//	// the retry policy looks at v too
//
// Every Interval (a timer the proxy owns): detector.Evaluate(time.Now()).
// For the admin page and metrics: br.Snapshot(now), limits.Snapshot(),
// detector.Snapshot(now); counters in the snapshots only grow, so they can
// back Prometheus counters.
//
// Each retry attempt is a call of its own: Allow and Done it against the
// breaker too, so that a cluster that fails every attempt trips. A call
// cancelled by the downstream client before the upstream answered is neither
// a success nor a failure: Cancel its permit instead of Done.
package breaker
