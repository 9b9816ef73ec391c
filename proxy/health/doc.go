// Package health checks a cluster's endpoints actively, as Envoy's
// health_checks and HAProxy's check do: a Checker per cluster probes every
// endpoint on an interval, and the load balancer leaves out the endpoints
// it reports unhealthy (Healthy(i) is false).
//
// # Shape
//
// The rules live in a pure tracker per endpoint (no goroutine, clock or
// I/O): it is fed each check's outcome and says whether the endpoint turned
// healthy or unhealthy. The Checker is the shell around it: after Start it
// owns one goroutine per endpoint, which waits, checks and records. Close
// cancels checks in flight, joins every endpoint goroutine, and every dial
// and TLS handshake of an HTTP check (which net/http runs on goroutines of
// its own), and closes the connections kept for checks. The goroutines
// that net/http keeps per connection, and those of a gRPC ClientConn (its
// connection attempts included), are cancelled by that closing and end by
// themselves, shortly after Close returns. The package does not log and
// exports no metrics: the transition hook reports each change of state
// (with the last failure's reason), the result hook each check, and Status
// the state of an endpoint for an admin page.
//
// # Rules of state
//
//   - An endpoint starts healthy and unchecked, so that a new cluster takes
//     traffic at once (HAProxy does the same). One that CarryFrom adds to
//     a checked cluster starts pending instead: unhealthy and unchecked,
//     so that it takes no traffic before a check has passed (Envoy does
//     the same); PendingCount says how many are.
//   - Its first check decides alone: a failure makes it unhealthy at once, a
//     success confirms it healthy.
//   - From then on a failure is of one of two kinds, as in Envoy. An
//     answer that says the endpoint is unhealthy (an HTTP status in
//     neither Statuses nor RetriableStatuses, read whole; a gRPC answer
//     other than SERVING) turns a
//     healthy endpoint unhealthy at once, whatever UnhealthyThreshold:
//     an app that answers 503 to be drained is out at the next check.
//     Any other failure (a timeout; a connection, TLS or protocol
//     failure, a body that breaks off or is malformed included; a status
//     in RetriableStatuses; a gRPC RPC error) counts, and UnhealthyThreshold consecutive failures of
//     either kind turn a healthy endpoint unhealthy. An unhealthy one
//     turns healthy after HealthyThreshold consecutive successes,
//     whichever kind of failure made it unhealthy.
//   - A success resets the count of consecutive failures to zero and a
//     failure the count of successes; the counts keep growing past their
//     threshold.
//   - A check that does not finish within Timeout (connecting included) is
//     a failure with the reason "timeout". A check cut short by Close is no
//     outcome at all.
//   - CarryFrom gives the endpoints a reload keeps the state (and the
//     schedule) they had in the old Checker; new endpoints start as above.
//
// # Scheduling
//
// Each endpoint's first check comes after a random delay in [0,
// min(Interval, 1s)), so that a large cluster is not probed all at once.
// An endpoint whose state CarryFrom carried keeps its schedule as well:
// its first check comes when its next one was due in the old Checker (at
// once if a check was under way), and no later than its interval from
// Start, so that frequent reloads neither add checks nor hold them back.
// (Reloads that keep coming faster than a check takes still cut it short
// each time: the endpoint keeps its state without a new outcome.) After
// each check the endpoint's goroutine waits Interval while the endpoint
// is healthy and UnhealthyInterval while it is not, each wait
// lengthened by a random [0, Jitter). Waits count from the end of a check:
// one endpoint is never checked twice at once.
//
// # Kinds
//
//   - HTTP: a GET of Path with Host as the Host header (the address
//     dialed when empty), the Headers given, and User-Agent:
//     outrigger-health-check unless Headers has one, over HTTP/1.1, or
//     HTTP/2 (prior knowledge in clear, h2 by ALPN over TLS) when HTTP2 is
//     set. It passes when the status is in Statuses (200 when empty),
//     and the body could be read (a body that breaks off or is
//     malformed fails the check as a protocol failure, whatever the
//     status). A
//     101 Switching Protocols fails it whatever Statuses says (the check
//     asks for no upgrade) and closes its connection. Redirects are not
//     followed: a 3xx is judged by its status. A response head over 64
//     KiB (informational responses included) fails the check. The body is
//     read and discarded, at most 64 KiB and one byte of it (the extra
//     byte tells a body of exactly 64 KiB, read to its end, from a longer
//     one). A longer body is not read to its end: over HTTP/1.1 its
//     connection is closed rather than reused; over HTTP/2 its stream is
//     reset and the connection kept. One connection per endpoint is kept
//     alive between checks, also after a check failed by its status (the
//     answer was read whole), so an endpoint that keeps answering 503
//     over TLS costs no handshake per check; after any other failure (a
//     timeout, a connection, TLS or protocol failure) it is closed, so
//     the next check dials afresh, and an answer that comes after its
//     check timed out is never read as another's. No proxy from the environment, no
//     compression.
//   - GRPC: grpc.health.v1.Health/Check for Service ("" is the server as a
//     whole) on a ClientConn per endpoint, kept between checks until one
//     times out: the next check then dials afresh, as the connection may
//     be one the network silently stopped carrying. Its :authority is
//     Host when set, else TLS's ServerName when set, else the address
//     dialed. It passes when the answer is SERVING; any RPC error
//     or other status fails ("grpc: NOT_SERVING", "grpc: UNIMPLEMENTED"),
//     and so does an answer whose message or headers exceed 64 KiB. The
//     call does not wait for a connection to become ready, and
//     reconnection back-off is capped by the check interval, so an
//     endpoint that restarts is seen within about one interval.
//   - TCP: a connection opens within Timeout; it is closed at once.
//
// Every kind dials the endpoint's address, or, when Port is set, the
// endpoint's host with Port (an app that answers checks on a management
// port). The endpoint is known by its own address all the same: in
// transitions, statuses and CarryFrom's mapping; only the dial, and what
// defaults to the address dialed (an HTTP check's Host, a GRPC check's
// :authority), change.
//
// With TLS set, HTTP and GRPC checks run over TLS; TCP checks only
// connect. The server name (sent as SNI unless it is an IP address, and
// the name the certificate must be valid for) is TLS's ServerName when
// set. When it is empty, an HTTP check uses the host of the endpoint's
// address (Host does not change it), and a GRPC check the host of its
// :authority: Host when set, else the address dialed. A failed
// handshake fails the check with the cause tls and a reason starting
// "tls: ", for gRPC as for HTTP.
//
// # Invariants
//
// Healthy and UnhealthyCount are lock-free and allocation-free (atomics
// mirroring the trackers, written with them under one mutex). Hooks are
// never called with a lock held; transition hook calls never overlap and
// come in the order the transitions happened; no hook starts after Close
// returns. A failed check's *CheckError carries a Cause from a small fixed
// set (Causes, for metric labels) and a short Reason without the address.
package health
