package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"go.uber.org/zap"
	"golang.org/x/net/http2"

	"github.com/outrigger-mesh/outrigger/breaker"
	"github.com/outrigger-mesh/outrigger/proxy/config"
	"github.com/outrigger-mesh/outrigger/proxy/h1client"
	"github.com/outrigger-mesh/outrigger/proxy/h2client"
	"github.com/outrigger-mesh/outrigger/proxy/internal/normpath"
	"github.com/outrigger-mesh/outrigger/proxy/internal/roundtrip"
	"github.com/outrigger-mesh/outrigger/proxy/internal/wire"
)

// Listener names the listener a request arrived on; each has its own
// route table.
type Listener uint8

// The listeners.
const (
	Outbound Listener = iota // the local app's calls to other services
	Inbound                  // traffic for the local app
	numListeners
)

func (l Listener) String() string {
	if l == Inbound {
		return "inbound"
	}
	return "outbound"
}

// statusClientClosed is recorded (never sent) when the downstream client
// went away before the response: nginx's 499 convention.
const statusClientClosed = 499

var errPerTryTimeout = errors.New("per-try timeout")

func noCancel(error) {}

// bufPool holds the 32 KiB buffers response bodies are copied through.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

type listenerHandler struct {
	p *Proxy
	l Listener
}

// refuse answers a request that no route takes (refused before routing,
// or matching none) with lr, and counts it as the listener's answer
// without a route. start is when the request was taken.
func (h *listenerHandler) refuse(s *snapshot, w http.ResponseWriter, grpc bool, lr localReply, start time.Time) {
	status := h.p.localReply(w, grpc, lr)
	s.noRoute[h.l].record(status, h.p.now().Sub(start).Seconds())
}

// deny answers a request the listener's authorization rules refused,
// 403 rbac_denied, as the listener's answer without a route, and tells
// an AuthorizationRecorder which rule refused it (nil: no allow rule
// matched). Out of line: most requests are not refused.
//
//go:noinline
func (h *listenerHandler) deny(s *snapshot, w http.ResponseWriter, grpc bool, rule *authzRule, start time.Time) {
	if ar, ok := w.(AuthorizationRecorder); ok {
		name := ""
		if rule != nil {
			name = rule.name
		}
		ar.RecordDenial(name)
	}
	h.refuse(s, w, grpc, localReply{reason: ReasonRBACDenied}, start)
}

// Handler returns the handler of listener l. It serves HTTP/1.1 and, when
// the server delivers them (see Serve), HTTP/2 requests. The first call
// starts the goroutine that runs outlier detection at its interval;
// Shutdown stops and joins it, so a Proxy whose Handler was used must be
// shut down. The handler edits a forwarded request's header in place
// into the one it sends upstream (hop-by-hop headers out, forwarding
// headers and the route's edits in), and its URL's path into the
// normalized one it routes on (listeners.path_normalization and
// path_with_escaped_slashes); under a listener's headers_with_underscores
// drop or reject, it deletes header fields and may wrap the request's
// Body to check the trailers that end it. A caller that needs the header
// or path as received reads them first.
func (p *Proxy) Handler(l Listener) http.Handler {
	p.srvMu.Lock()
	stopped := p.shutdown
	p.srvMu.Unlock()
	if !stopped {
		p.evalOnce.Do(func() { go p.evaluateOutliers() })
	}
	return &listenerHandler{p: p, l: l}
}

func (h *listenerHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := h.p
	p.inflight.Add(1)
	defer p.inflight.Add(-1)
	start := p.now()

	s := p.snap.Load()
	grpc := isGRPC(r.Header)
	if s == nil {
		p.localReply(w, grpc, localReply{reason: ReasonNoRoute, detail: "no configuration applied yet"})
		return
	}
	if r.Method == http.MethodConnect {
		// A 2xx answer to CONNECT makes the connection (an HTTP/2
		// stream) a tunnel for the client, whose response ends with its
		// header block (RFC 9112 §6.3, RFC 9113 §8.5). The proxy tunnels
		// nothing: it would read what the client sends into its tunnel
		// as requests, and an upstream would be asked for "CONNECT /".
		// Refused before routing, so that no action answers it with a
		// 2xx, and the connection is closed after the answer.
		h.refuse(s, w, grpc, localReply{reason: ReasonInvalidRequest, detail: "CONNECT is not supported",
			extra: [][2]string{{"Connection", "close"}}}, start)
		return
	}
	if a := s.underscores[h.l]; a != underscoresAllow {
		// Before routing, as Envoy's codec does it: a dropped field is
		// seen by no route match, and a refused request by no route.
		if name, trailer := applyUnderscores(a, r, p.m.underscoresDropped[h.l]); name != "" {
			h.refuse(s, w, grpc, underscoreReply(name, trailer), start)
			return
		}
	}
	if strings.IndexByte(r.URL.Path, 0) >= 0 {
		// A NUL (%00) in the decoded path: no route should match it,
		// nor a rule pass it, since upstreams written in C, or with a
		// file system behind them, end the path at it (/admin%00.png is
		// /admin to them). Refused, as Spring's and GitLab's firewalls
		// refuse it, before anything reads the path.
		h.refuse(s, w, grpc, localReply{reason: ReasonInvalidRequest, detail: "path has a NUL (%00)"}, start)
		return
	}
	var redirect bool
	if a := s.escapedSlashes; a != escapedSlashesKeep {
		// Before normalization, as Envoy does it: normalizing decodes
		// no "%2F", and the dots an unescaped one exposes are removed
		// with the others.
		var reject bool
		if reject, redirect = applyEscapedSlashes(a, r.URL); reject {
			h.refuse(s, w, grpc, localReply{reason: ReasonPathWithEscapedSlash}, start)
			return
		}
	}
	if s.normalizePath {
		u := r.URL
		u.Path, u.RawPath, _ = normpath.Normalize(u.Path, u.RawPath, s.mergeSlashes)
	}
	if redirect {
		status := p.writeEscapedSlashRedirect(w, grpc, r.URL)
		s.noRoute[h.l].record(status, p.now().Sub(start).Seconds())
		return
	}
	if az := s.authz[h.l]; az != nil {
		// After normalization, on the path the routes see, and before
		// routing, as Envoy's RBAC filter runs before its router.
		if rule, ok := az.check(r); !ok {
			h.deny(s, w, grpc, rule, start)
			return
		}
	}
	rt := s.tables[h.l].find(r)
	if rt == nil {
		h.refuse(s, w, grpc, localReply{reason: ReasonNoRoute}, start)
		return
	}
	rr, recordRoute := w.(RouteRecorder)
	if recordRoute && (rt.clusters == nil || rt.fault != nil || rt.rateLimit != nil) {
		// Before the fault and the rate limit too: their replies are
		// the route's, before any cluster is picked.
		rr.RecordRoute(rt.name, "")
	}
	// routeStart is when the route's action begins: after a fault's
	// delay, which the route timeout does not include (Envoy's fault
	// filter runs before its router) while the request's duration does.
	routeStart := start
	if rt.fault != nil {
		if answered := p.serveFault(w, r, rt, grpc, start); answered {
			return
		}
		routeStart = p.now()
	}
	// After the fault, as Envoy's local rate limit filter is placed
	// after its fault filter: a request the fault answered never reaches
	// the action and spends no token, and one it delayed spends its
	// token when it goes on.
	if rt.rateLimit != nil && p.serveRateLimit(w, rt, grpc, start, routeStart) {
		return
	}
	if rt.direct != nil {
		status := p.writeDirect(w, rt)
		rt.localStats.record(status, p.now().Sub(start).Seconds())
		return
	}
	if rt.compose != nil {
		p.serveComposite(w, r, rt, start)
		return
	}
	wc := rt.pickCluster(p.intn)
	if recordRoute {
		rr.RecordRoute(rt.name, wc.c.name)
	}
	// f goes to the heap (the transport is handed its out request), so
	// it is made there and filled in place: a composite literal would be
	// built in this frame first and copied, which would cost as much
	// stack as f's size on every handler goroutine.
	f := new(forwarding)
	f.p, f.s, f.rt, f.c, f.w, f.r, f.grpc = p, s, rt, wc.c, w, r, grpc
	// A fallback cluster is sent the request as it came: the header is
	// then copied, not edited (see ownHeader).
	f.ownHeader = rt.fallback == nil
	if h.l == Outbound && s.envoyHeaders {
		f.ov = envoyOverrides(r.Header, rt)
	}
	stats := wc.stats
	defer func() {
		// Runs during an ErrAbortHandler panic too, so aborted streams count.
		stats.record(f.status, p.now().Sub(start).Seconds())
		if ar, ok := w.(AttemptRecorder); ok {
			ar.RecordAttempts(int(f.attempts))
		}
	}()
	f.run(routeStart)
	if f.deferred != nil {
		stats = rt.fallback.stats
		p.serveFallback(f)
	}
}

func (p *Proxy) writeDirect(w http.ResponseWriter, rt *route) int {
	return p.writeDirectResponse(w, rt.direct, &rt.respHeaders)
}

// writeDirectResponse writes d with the route's response header edits.
func (p *Proxy) writeDirectResponse(w http.ResponseWriter, d *directResponse, edit *headerEdit) int {
	h := w.Header()
	for k, v := range d.header {
		h[k] = v
	}
	edit.apply(h)
	p.m.localByCode[ReasonDirectResponse].Inc()
	w.WriteHeader(d.status)
	if len(d.body) > 0 {
		_, _ = w.Write(d.body)
	}
	return d.status
}

func (p *Proxy) localReply(w http.ResponseWriter, grpc bool, lr localReply) int {
	p.m.localByCode[lr.reason].Inc()
	return writeLocalReply(w, grpc, lr)
}

// forwarding is the state of one request on its way upstream and back.
type forwarding struct {
	p    *Proxy
	s    *snapshot
	rt   *route
	c    *cluster
	w    http.ResponseWriter
	r    *http.Request
	grpc bool
	// ownHeader: r came from a listener and its header is sent upstream
	// by no one else, so outboundHeader edits it in place into the
	// outbound header instead of copying it into a new map, as Envoy
	// edits a request's headers. A composition call's header and a
	// request that may go on to a route's fallback are copied.
	ownHeader bool
	// reached: an earlier attempt may have reached the upstream's
	// application (it answered, or broke after the request went out),
	// so a route's fallback no longer applies (see fail).
	reached bool
	// attempts counts the attempts sent upstream for the request, a
	// fallback cluster's going on from the primary's.
	attempts uint16
	// sentDL is the deadline the last attempt's grpc-timeout named, in
	// wall-clock Unix nanoseconds (a time.Time would take forwarding out
	// of its size class); 0: none was sent.
	sentDL int64

	// ctx is the route deadline (min of route timeout and grpc-timeout).
	// forwarding lives for one request only, so it may hold it. nil until
	// needed when the transport takes the deadline itself (see
	// routeCtx); cancel, when set, releases it.
	ctx     context.Context
	cancel  context.CancelFunc
	upgrade string // protocol an HTTP/1.1 upgrade asks for, or ""
	status  int    // status sent downstream, for metrics
	// deadlineNs, when set, also bounds the request (a composition
	// call's deadline, wall-clock Unix nanoseconds, as sentDL: a
	// time.Time would take forwarding out of its size class); its expiry
	// is an upstream timeout, not a client gone. See callDeadline.
	deadlineNs int64
	// local is the local reply sent, if the proxy answered itself.
	local *localReply
	// deferred is the local reply left for the route's fallback (see fail).
	deferred *localReply
	// touch records whether any attempt read the request body (nil: no body).
	touch *touchReader
	// dl is the route deadline, zero for none; a fallback cluster gets
	// what is left of it.
	dl time.Time

	// ov: the request's Envoy headers override its route's timeouts or
	// retries (see envoyOverrides).
	ov      *requestOverrides
	limited *limitedBody
	replay  *replayBody
	view    *bodyView
	set     attemptSet

	// out and url serve the first attempt, trace every attempt, sparing
	// an allocation each.
	out   http.Request
	url   url.URL
	trace attemptTrace
}

// reply answers the request with a local reply. The route's
// response_headers edits apply to it, as Envoy applies a route's response
// header edits to the local replies it generates after routing; they are
// applied first, so the reply's own headers (x-outrigger-*, content-type,
// content-length, grpc-status, grpc-message) win over an edit of the same
// name and a gRPC client always gets a well-formed status.
func (f *forwarding) reply(lr localReply) {
	f.local = &lr
	if !f.rt.respHeaders.empty() {
		f.rt.respHeaders.apply(f.w.Header())
	}
	f.status = f.p.localReply(f.w, f.grpc, lr)
}

// run forwards the request: it sets the route deadline up, takes the
// cluster's limits, then makes attempts until one's response goes
// downstream or the request fails.
//
// Every handler goroutine starts on a small stack, and run sits below
// the handler and above the whole upstream round trip: the bigger its
// frame, the earlier the stack is grown and copied. So the paths most
// requests do not take (local replies, retries, failures, protocol
// switches, httptrace, per-try timers) live in functions of their own,
// kept out of line, and composite literals are not built in this frame.
//
// start, when not zero, is the request's arrival by p.now: the first
// attempt's time, and the route deadline's base when p.now is the wall
// clock. A clock read costs 100-200 ns on some virtual machines.
func (f *forwarding) run(start time.Time) {
	r, c := f.r, f.c

	limit := f.s.maxRequestBody
	if limit > 0 && r.ContentLength > limit {
		f.replyReason(ReasonRequestTooLarge)
		return
	}

	hrt, _ := c.pool.rt.(hooksRoundTripper)
	ctx, direct, perTryTimeout := f.routeDeadline(hrt, start)

	// One deferred function releases, in reverse order of taking them,
	// what the request holds: each defer would take a closure's room in
	// this frame.
	res := c.res
	acquired, retryHeld := false, false
	var stall *stallWatch
	defer func() {
		if retryHeld {
			res.limits.Release(breaker.LimitRetries)
		}
		if stall != nil {
			stall.stop()
		}
		if acquired {
			c.m.active.Dec()
			c.active.Add(-1)
			c.pool.release()
			res.limits.Release(breaker.LimitRequests)
		}
		f.releaseRouteCtx()
	}()

	if err := res.limits.Acquire(breaker.LimitRequests); err != nil {
		f.failBreaker(err)
		return
	}
	c.active.Add(1)
	c.m.active.Inc()
	c.pool.users.Add(1)
	acquired = true

	var key hashKey
	if f.rt.hash != nil {
		// Before outboundHeader, which may edit r's header in place:
		// the key is the request's as the client sent it.
		key.v, key.ok = f.rt.hashKey(r)
	}
	hdr := f.outboundHeader()
	path, rawPath := r.URL.Path, r.URL.RawPath
	if np := f.rt.rewritePath(path); np != path {
		er := ""
		if rawPath != "" {
			// The path has escapes its decoded form would lose: the
			// escaped form is rewritten, and the decoded one taken from
			// it, as net/url sends Path alone when RawPath is not its
			// escaping (they differ where the rest begins with an
			// escaped '/', which joinRewrite merges only when real).
			if e, ok := f.rt.rewriteEscaped(rawPath); ok {
				if d, err := url.PathUnescape(e); err == nil {
					np, er = d, e
				}
			}
		}
		path, rawPath = np, er
	}
	if f.rt.regexRewrite != nil {
		var ok bool
		if path, rawPath, ok = f.regexRewritePath(); !ok {
			return
		}
	}

	var body io.Reader
	if hasBody(r) {
		body, stall = f.requestBody(ctx, direct, limit)
	}
	if f.rt.mirrors != nil {
		f.mirror(hdr, path, rawPath)
	}
	f.set.c = c

	for attempt := 0; ; attempt++ {
		now := start
		if attempt > 0 || now.IsZero() {
			now = f.p.now()
		}
		ep := c.pick(&f.set, now, key)
		if ep == nil {
			f.failNoHealthyUpstream()
			return
		}
		c.markTried(&f.set, ep)

		// Every attempt, retries included, asks the breaker: a cluster
		// that fails every attempt trips, and no retry goes to an open
		// breaker.
		permit, err := res.br.Allow(now)
		if err != nil {
			f.failBreaker(err)
			return
		}
		if err := res.limits.Acquire(breaker.LimitPendingRequests); err != nil {
			permit.Cancel()
			f.failBreaker(err)
			return
		}
		out := f.attemptRequest(attempt, hdr, body, ep, path, rawPath)

		// Only a per-try timeout needs a context of its own; without one
		// the attempt lives on the route context (an abandoned response is
		// ended by closing its body).
		actx, acancel := ctx, noCancel // ctx is r.Context() when direct
		var perTry *perTryTimer
		if perTryTimeout > 0 {
			actx, acancel, perTry = f.perTryContext(ctx, perTryTimeout, out)
		}

		ep.active.Add(1)
		// A hooks transport calls the hooks only before it returns, so
		// one attemptTrace serves every attempt of the request; another
		// transport may call httptrace hooks later, so each attempt
		// gets its own (see roundTripTrace).
		var resp *http.Response
		// unconnected: the attempt ended before it had a connection.
		var unconnected bool
		if hrt != nil {
			tr := &f.trace
			tr.init(f.infoWriter(), res.limits)
			var dl time.Time
			if direct {
				dl = f.dl
			}
			resp, err = hrt.RoundTripHooks(actx, out, attemptHooks(tr, perTry), dl)
			unconnected = tr.releasePending()
		} else {
			resp, unconnected, err = f.roundTripTrace(actx, out, attempt, perTry)
		}
		headersInTime := perTry == nil || perTry.Stop()
		if err == nil && !headersInTime {
			// The per-try timer fired as the headers arrived: the attempt
			// is already cancelled, so its body is unusable.
			resp.Body.Close()
			err = errPerTryTimeout
		}

		if err != nil {
			ep.active.Add(-1)
			acancel(nil)
			if f.attemptFailed(err, actx, attempt, permit, ep, &retryHeld, unconnected) {
				continue
			}
			return
		}
		if w := f.idle(); w != nil {
			w.touch() // the response's header block came
		}

		gs := -1
		trailersOnly := f.grpc && grpcTrailersOnly(resp)
		if trailersOnly {
			gs = grpcStatusFrom(resp.Header)
		}
		// gRPC carries its status in the trailers unless the response is
		// trailers-only (a grpc-status in a header block that did not end
		// the stream is not the call's): such a call is classified once
		// its body is copied.
		// A non-200 status is whole at its headers too: it carries no
		// response message (PROTOCOL-HTTP2.md; clients map it to a status).
		atHeaders := !f.grpc || gs >= 0 || resp.StatusCode != http.StatusOK
		// Retries are decided on the verdict at the headers, but a response
		// that goes downstream is reported to the breaker and the outlier
		// detector only once its body is copied: a body the upstream cuts
		// short is a failure whatever its status said, and slow_calls
		// measure the whole response. A retry candidate the classifier
		// calls a failure is reported at once, so that a breaker it trips
		// refuses the retry; one it calls a success (retried whatever it
		// says, see retryPolicy.regardless) only once it is retried, as
		// its body, if it goes downstream, may still make it a failure.
		var hv breaker.Verdict
		recorded := false
		// A gRPC response with trailers to come is retried at its
		// headers on the conditions they decide (a retriable_headers
		// match, x-envoy-ratelimited), as Envoy's router does; its
		// outcome for the breaker is its trailers', so a retry reports
		// it as an answer in good form (a success), as Envoy's outlier
		// detection takes its 200.
		if atHeaders || f.grpc && f.retryPolicy().on&(retryRetriableHeaders|retryEnvoyRateLimited) != 0 {
			if atHeaders {
				hv = f.classify(failNone, resp.StatusCode, gs)
			}
			if f.retryCandidate(attempt, failNone, resp.StatusCode, gs, resp.Header, hv) {
				if hv.Failure {
					f.report(permit, ep, hv)
					recorded = true
				}
				// A response whose reset header asks for a wait longer
				// than the route allows is the answer (see resetAllows).
				wait := time.Duration(-1)
				if f.canRetry(attempt, failNone, resp.StatusCode, gs, resp.Header, hv) && !overloaded(resp.Header) &&
					f.resetAllows(resp.Header, &wait) && f.takeRetry(&retryHeld) {
					if !recorded {
						f.report(permit, ep, hv)
					}
					f.reached = true
					// Closed, not read: a body that stalls would hold the
					// retry until the route deadline. Both transports
					// close without blocking (h1client keeps the
					// connection when the rest of a short body is
					// already buffered; h2client resets the stream).
					resp.Body.Close()
					ep.active.Add(-1)
					acancel(nil)
					if !f.prepareRetry(attempt, wait) {
						f.retryAbandoned(localReply{reason: ReasonUpstreamTimeout})
						return
					}
					continue
				}
			}
		}

		if f.upgrade != "" && resp.StatusCode == http.StatusSwitchingProtocols {
			f.switchProtocols(resp, permit, ep, atHeaders && !recorded, hv, acancel)
			return
		}

		copyErr := f.respond(resp, ep, trailersOnly)
		if !recorded {
			f.recordResponse(copyErr, permit, ep, resp, trailersOnly, atHeaders, hv)
		}
		ep.active.Add(-1)
		acancel(nil)
		if copyErr != nil && copyErr != errDeadlineTrailers && copyErr != errResetTrailers {
			// Nothing sensible can be sent after a partial body: abort the
			// downstream stream so the client sees an error, not a
			// truncated success (golang/go#23643).
			if ar, ok := f.w.(AbortRecorder); ok {
				if reason, ours := f.abortReason(); ours {
					ar.RecordAbort(reason.String())
				}
			}
			panic(http.ErrAbortHandler)
		}
		return
	}
}

// routeDeadline works out the route deadline (the route timeout, bounded
// by grpc-timeout, the composition call's deadline and the request's
// own) into f.dl, and returns the context attempts run on, whether the
// transport takes the deadline itself (direct), and the per-try timeout.
// A context it makes is released by releaseRouteCtx. The route timeout
// runs from start (see run) when that is a wall-clock time, else from now.
//
//go:noinline
func (f *forwarding) routeDeadline(hrt hooksRoundTripper, start time.Time) (ctx context.Context, direct bool, perTryTimeout time.Duration) {
	r, rt := f.r, f.rt
	// The route deadline covers every attempt and the response body.
	ctx = r.Context()
	timeout := rt.timeout
	perTryTimeout = rt.perTryTimeout
	if ov := f.ov; ov != nil {
		if ov.hasTimeout {
			timeout = ov.timeout // 0: none, as Envoy takes it
		}
		// A per-try timeout not under the route timeout leaves none,
		// the route's included, as Envoy sets its per-try timeout to
		// zero then (router.cc, FilterUtility::finalTimeout).
		if ov.hasPerTry && timeout > 0 && ov.perTry >= timeout {
			ov.perTry = 0
		}
		if ov.hasPerTry {
			perTryTimeout = ov.perTry
		}
	}
	// The route timeout bounds an upgrade request as any other until its
	// response: its body, the wait for the 101, a refusal's body. A
	// switched protocol then lives as long as its peers want, within the
	// tunnel's idle timeout (see tunnel), on the request's context.
	if f.upgrade = upgradeProtocol(r); f.c.protocol != protoHTTP1 {
		f.upgrade = ""
	}
	if f.grpc {
		if vv := r.Header[hdrGRPCTimeout]; len(vv) > 0 && vv[0] != "" {
			if d, err := parseGRPCTimeout(vv[0]); err == nil && (timeout == 0 || d < timeout) {
				// Zero is a deadline already past (grpc-go's encoder
				// writes "0n" for one, and its server fails such a call
				// at once), not "no deadline": here timeout 0 is none.
				timeout = max(d, time.Nanosecond)
			}
		}
	}
	// h1client takes the route deadline as its connection's deadline,
	// h2client as a timer on the stream, so a plain attempt through
	// either needs no context of its own: the request's context cancels
	// it, the deadline ends it, and f.ctx is made only if something else
	// needs it (see routeCtx). A per-try timeout and a protocol switch
	// keep the route context.
	direct = hrt != nil && perTryTimeout == 0 && f.upgrade == "" && rt.idleTimeout == 0
	if direct {
		if timeout > 0 {
			f.dl = wallStart(f.p, start).Add(timeout)
		}
		f.dl = earliest(f.dl, f.callDeadline())
		if dl, ok := ctx.Deadline(); ok {
			f.dl = earliest(f.dl, dl)
		}
		return ctx, true, perTryTimeout
	}
	// One context for the earlier of the route timeout and the
	// composition call's deadline; releaseRouteCtx releases it.
	var dl time.Time
	if timeout > 0 {
		dl = wallStart(f.p, start).Add(timeout)
	}
	if dl = earliest(dl, f.callDeadline()); !dl.IsZero() {
		ctx, f.cancel = context.WithDeadline(ctx, dl)
	}
	if rt.idleTimeout > 0 {
		ctx = f.streamIdle(ctx, rt.idleTimeout)
	}
	f.ctx = ctx
	f.dl, _ = ctx.Deadline()
	return ctx, false, perTryTimeout
}

// callDeadline is the deadline that bounds the request besides its
// route's (see deadlineNs); zero for none.
func (f *forwarding) callDeadline() time.Time {
	if f.deadlineNs == 0 {
		return time.Time{}
	}
	return time.Unix(0, f.deadlineNs)
}

// setCallDeadline sets the deadline callDeadline returns; a zero dl
// sets none.
func (f *forwarding) setCallDeadline(dl time.Time) {
	if dl.IsZero() {
		f.deadlineNs = 0
		return
	}
	f.deadlineNs = dl.UnixNano()
}

// errStreamIdle is the route context's cause when the route's
// idle_timeout ended the request.
var errStreamIdle = errors.New("stream idle timeout")

// streamIdle watches the request for the route's idle_timeout d (Envoy's
// route idle_timeout): the client's body read (or replayed for a retry),
// an attempt's response header block, the response's body read and
// written (see touchReader, bodyView, run and copyBody) each restart it,
// and the wait for an attempt's response headers does not. When d passes
// with no bytes moved, the returned context, a child of ctx that the
// attempts run on, is cancelled with errStreamIdle, so the attempt or
// the body copy under way ends, and a read of the client's body blocked
// now is ended by its read deadline (as watchBodyStall does at the route
// deadline). A response write blocked on a client that does not read is
// bounded by its write deadline, which copyBody moves to d from each
// write. releaseRouteCtx stops the watch. The watch rides in the context
// (an idleCtx), not in a field of forwarding, which would take it out of
// its size class.
//
//go:noinline
func (f *forwarding) streamIdle(ctx context.Context, d time.Duration) context.Context {
	ctx, cancel := context.WithCancelCause(ctx)
	if prev := f.cancel; prev != nil {
		f.cancel = func() { cancel(nil); prev() }
	} else {
		f.cancel = func() { cancel(nil) }
	}
	w, rctx := f.w, f.r.Context()
	ic := &idleCtx{Context: ctx, watch: newIdleWatch(d, func() {
		cancel(errStreamIdle)
		if rctx.Err() == nil {
			_ = http.NewResponseController(w).SetReadDeadline(time.Now())
		}
	})}
	ic.info = informational{ResponseWriter: w, watch: ic.watch}
	return ic
}

// idleCtx is the route context of a route with an idle_timeout: it
// carries the watch that cancels it, and the writer of the attempts'
// informational responses, which are bytes moved too.
type idleCtx struct {
	context.Context
	watch *idleWatch
	info  informational
}

// informational is the response writer an attempt's 1xx responses go
// to on a route with an idle_timeout: each restarts the watch as it
// arrives and once it is written (102 Processing sent while an upstream
// works on a long answer keeps the request alive).
type informational struct {
	http.ResponseWriter
	watch *idleWatch
}

func (i *informational) WriteHeader(code int) {
	i.watch.touch()
	i.ResponseWriter.WriteHeader(code)
	i.watch.touch()
}

// infoWriter is the writer of the attempts' 1xx responses (see
// attemptTrace.Got1xxResponse).
func (f *forwarding) infoWriter() http.ResponseWriter {
	if ic, ok := f.ctx.(*idleCtx); ok {
		return &ic.info
	}
	return f.w
}

// idle is the request's idle watch, nil when its route has none.
func (f *forwarding) idle() *idleWatch {
	if ic, ok := f.ctx.(*idleCtx); ok {
		return ic.watch
	}
	return nil
}

// idleEnded reports whether the route's idle_timeout ended the request.
func (f *forwarding) idleEnded() bool {
	_, ok := f.ctx.(*idleCtx)
	return ok && context.Cause(f.ctx) == errStreamIdle
}

// timeoutReason is the local reply of a request whose route context
// ended: the idle timeout's, or the route deadline's.
func (f *forwarding) timeoutReason() Reason {
	if f.idleEnded() {
		return ReasonStreamIdleTimeout
	}
	return ReasonUpstreamTimeout
}

// wallStart is start as wall-clock time when p's clock is the wall
// clock and start is set, else the time now.
func wallStart(p *Proxy, start time.Time) time.Time {
	if p.wallClock && !start.IsZero() {
		return start
	}
	return time.Now()
}

// releaseRouteCtx releases the route context routeDeadline or routeCtx
// made, if any.
func (f *forwarding) releaseRouteCtx() {
	if w := f.idle(); w != nil {
		w.stop()
	}
	if f.cancel != nil {
		f.cancel()
	}
}

// requestBody wraps the request body for the attempts: it notes whether
// it was read, enforces max_request_body_bytes (limit > 0) and keeps it
// for replay when the route retries. stall, when not nil, is the watch
// of a stalled body, for the caller to stop (see watchBodyStall).
//
//go:noinline
func (f *forwarding) requestBody(ctx context.Context, direct bool, limit int64) (body io.Reader, stall *stallWatch) {
	r := f.r
	f.touch = &touchReader{r: r.Body, idle: f.idle()}
	body = f.touch
	if limit > 0 {
		f.limited = &limitedBody{r: f.touch, remaining: limit}
		body = f.limited
	}
	if rp := f.retryPolicy(); rp.maxRetries > 0 {
		f.replay = newReplayBody(body, rp.maxBuffered, r.ContentLength)
		f.replay.idle = f.touch.idle
	}
	return body, f.watchBodyStall(ctx, direct)
}

// attemptRequest builds the request of one attempt: hdr (a copy of it
// for a retry), the attempt's number when the route includes it, the
// attempt's grpc-timeout, the body (a replay view when
// the route retries) and the endpoint's URL. The first attempt's request
// and URL live in f; a retry's are new, as, like hdr, the previous
// attempt's may still be held by its transport. They are filled in
// place, field by field: a composite literal assigned through a pointer
// is built on the stack first.
func (f *forwarding) attemptRequest(attempt int, hdr http.Header, body io.Reader, ep *endpoint, path, rawPath string) *http.Request {
	r := f.r
	h := hdr
	if attempt > 0 {
		h = hdr.Clone()
	}
	f.attempts++
	if f.rt.attemptCount {
		setAttemptCount(h, f.attempts)
	}
	var reqBody io.ReadCloser
	if f.replay != nil {
		f.view = f.replay.view()
		reqBody = f.view
	} else if body != nil {
		reqBody = io.NopCloser(body)
	}
	if f.grpc {
		f.setGRPCTimeout(h, reqBody != nil)
	}

	out, u := &f.out, &f.url
	if attempt > 0 {
		out, u = new(http.Request), new(url.URL)
	}
	*u = url.URL{}
	u.Scheme = f.c.scheme
	u.Host = ep.addr
	u.Path = path
	u.RawPath = rawPath
	u.RawQuery = r.URL.RawQuery
	u.ForceQuery = r.URL.ForceQuery // "/a?" goes on as sent
	*out = http.Request{}
	out.Method = r.Method
	out.URL = u
	out.Proto = "HTTP/1.1"
	out.ProtoMajor = 1
	out.ProtoMinor = 1
	out.Header = h
	out.Body = reqBody
	out.Host = r.Host
	if f.rt.hostRewrite != "" {
		out.Host = f.rt.hostRewrite
	} else if f.rt.autoHost {
		out.Host = ep.authority
	}
	out.Trailer = r.Trailer
	if reqBody != nil {
		out.ContentLength = r.ContentLength
	}
	return out
}

// regexRewritePath applies the route's regex_rewrite to the request's
// path, decoded and normalized, and returns the path to send, decoded
// and escaped (rawPath "" when it has no escapes of its own). A result
// that does not begin with "/" is no path an upstream can be sent, nor
// is one that begins with an escaped '/' ("%2F", which the pattern saw
// as '/', but which stays escaped): the request is answered
// invalid_request, and ok is false.
//
//go:noinline
func (f *forwarding) regexRewritePath() (path, rawPath string, ok bool) {
	u := f.r.URL
	path, escaped, changed := f.rt.regexRewrite.rewrite(u.Path, u.EscapedPath())
	if !changed {
		return u.Path, u.RawPath, true
	}
	if !strings.HasPrefix(escaped, "/") {
		f.reply(localReply{reason: ReasonInvalidRequest, detail: "the route's regex_rewrite made a path that does not begin with \"/\""})
		return "", "", false
	}
	if u.RawPath == "" {
		// Then the path had no escapes of its own, nor has the new one:
		// escaped is how net/url sends path.
		escaped = ""
	}
	return path, escaped, true
}

// setGRPCTimeout sets the grpc-timeout of an attempt (hasBody: it sends
// a body) in h: the time to the route deadline, or the route's per-try
// timeout when shorter and the route asks for it (grpc_timeout_per_try)
// and the attempt's body is whole (see bodyWhole). Envoy sends the
// smaller of the two as well (its "expected timeout"), but its per-try
// timer starts once the downstream request is complete, whatever the
// upstream was told; here the upstream's deadline runs from the
// headers, the per-try timer from the body's end, so a body still
// streaming from the client would have its upload cut by the upstream
// before the proxy's own timer would end the attempt.
//
//go:noinline
func (f *forwarding) setGRPCTimeout(h http.Header, hasBody bool) {
	now := time.Now()
	d, set := time.Duration(0), false
	if !f.dl.IsZero() {
		d, set = f.dl.Sub(now), true
	}
	if pt := f.perTryTimeout(); f.rt.grpcPerTry && pt > 0 && (!set || pt < d) && (!hasBody || f.bodyWhole()) {
		d, set = pt, true
	}
	if !set {
		// No deadline although the header may be there: its value is
		// malformed (a valid one sets the deadline), and ignored, so it
		// is not sent on for the upstream to fail the call with.
		delete(h, hdrGRPCTimeout)
		f.sentDL = 0
		return
	}
	h[hdrGRPCTimeout] = []string{formatGRPCTimeout(d)}
	f.sentDL = now.Add(d).UnixNano()
}

// bodyReceived is a request body that can tell whether the client has
// sent all of it, so that reading the rest never waits for the client
// (h2server's bodies can).
type bodyReceived interface{ Received() bool }

// bodyWhole reports whether every read of the request body an attempt
// sends is served without waiting for the client: the body is kept
// whole for replay, or the downstream body has been received to its
// end (a unary call's message, as a rule, which gRPC clients send right
// behind the headers).
func (f *forwarding) bodyWhole() bool {
	if f.replay != nil && f.replay.complete() {
		return true
	}
	b, ok := f.r.Body.(bodyReceived)
	return ok && b.Received()
}

// attemptCountValues are the values of x-outrigger-attempt-count, shared
// so that setting one does not allocate (see protoHTTP for why sharing
// is safe): [n] is "n", up to the most attempts a valid config makes,
// the primary's and a fallback cluster's.
var attemptCountValues = func() (v [2*(1+config.MaxRetryAttempts) + 1][]string) {
	for i := range v {
		v[i] = []string{strconv.Itoa(i)}[:1:1]
	}
	return v
}()

// setAttemptCount sets x-outrigger-attempt-count in h to n, replacing a
// value the client sent.
//
//go:noinline
func setAttemptCount(h http.Header, n uint16) {
	if int(n) < len(attemptCountValues) {
		h[hdrAttemptCount] = attemptCountValues[n]
		return
	}
	h[hdrAttemptCount] = []string{strconv.Itoa(int(n))}
}

// timerStopper is an attempt's per-try timer: a *time.Timer, or an
// uploadTimer when the request has a body. Stop disarms it.
type timerStopper interface{ Stop() bool }

// perTryTimer is an attempt's per-try timer together with the hooks the
// attempt is made with: its attemptTrace (set by attemptHooks), and a
// gate between the timer's end and a 1xx response passed on to the
// client, whichever comes first. Once a 1xx went to the client the
// response has started and the per-try timeout no longer applies, only
// the route's: Envoy ignores a per-try timeout once the downstream
// response started, so an upstream that sends 102 Processing or 103
// Early Hints before a slow answer is not cut (nor retried, see
// retryCandidate). The gate is here rather than in attemptTrace, which
// forwarding embeds and has no room for it (see
// TestForwardingFitsItsSizeClass).
type perTryTimer struct {
	*attemptTrace
	t      timerStopper
	cancel context.CancelCauseFunc
	state  atomic.Int32 // perTryRunning, then perTryFired or perTryHeld
}

// perTryTimer.state's values.
const (
	perTryRunning int32 = iota
	perTryFired         // the timer ended the attempt
	perTryHeld          // headers or a 1xx came first: the timer no longer counts
)

// expire is the timer's end: it cancels the attempt with
// errPerTryTimeout unless its response is under way.
func (p *perTryTimer) expire() {
	if p.state.CompareAndSwap(perTryRunning, perTryFired) {
		p.cancel(errPerTryTimeout)
	}
}

// hold takes the attempt out of the timer's reach; it reports false when
// the timer ended the attempt first.
func (p *perTryTimer) hold() bool {
	return p.state.CompareAndSwap(perTryRunning, perTryHeld) || p.state.Load() == perTryHeld
}

// Got1xxResponse passes an interim response on to the client, which ends
// the per-try timeout's hold on the attempt; one that comes after the
// timer ended the attempt is not passed on (it ends the round trip), so
// that the attempt may still be retried. A composition call passes
// nothing on to a client: its per-try timeout goes on.
func (p *perTryTimer) Got1xxResponse(code int, header textproto.MIMEHeader) error {
	if p.toClient() && !p.hold() {
		return errPerTryTimeout
	}
	return p.attemptTrace.Got1xxResponse(code, header)
}

// attemptHooks is what an attempt made with trace tr reports its events
// to: tr, or under a per-try timer, the timer, which gates tr's 1xx
// responses.
func attemptHooks(tr *attemptTrace, perTry *perTryTimer) roundtrip.Hooks {
	if perTry == nil {
		return tr
	}
	perTry.attemptTrace = tr
	return perTry
}

// Stop disarms the timer as the attempt's response headers arrive (or
// the attempt failed); it reports whether the timer had not ended the
// attempt, which from then on it cannot.
func (p *perTryTimer) Stop() bool {
	p.t.Stop()
	return p.hold()
}

// perTryContext is an attempt's context under a per-try timeout: a timer
// cancels it with errPerTryTimeout unless the attempt's response headers,
// or a 1xx passed on to the client, came first (see perTryTimer). As
// Envoy's per-try timeout, the timer runs from the end of the request,
// not from the attempt's start: at
// once for a request without a body; for one with a body, once the
// attempt has read the whole body (out.Body is wrapped to see it), so
// that a client's slow upload is never taken for the upstream's
// slowness (which would be retried and reported to the breaker and the
// outlier detector). Before the body's end the same timeout bounds each
// wait on the upstream instead: the time from the attempt's start, or
// from a piece of the body read, to the next read of it (an upstream
// that stops taking the body holds the transport in its write). Only
// the time blocked reading the client's body is not counted: that wait
// is bounded by the route deadline and the stalled body watch (see
// watchBodyStall). A retry's body is replayed from memory, so its
// reads never wait on the client.
//
//go:noinline
func (f *forwarding) perTryContext(ctx context.Context, d time.Duration, out *http.Request) (context.Context, context.CancelCauseFunc, *perTryTimer) {
	actx, acancel := context.WithCancelCause(ctx)
	pt := &perTryTimer{cancel: acancel}
	if out.Body == nil {
		pt.t = time.AfterFunc(d, pt.expire)
		return actx, acancel, pt
	}
	u := &uploadTimer{body: out.Body, left: -1, d: d, pt: pt}
	if out.ContentLength > 0 {
		u.left = out.ContentLength
	}
	u.mu.Lock()
	u.t = time.AfterFunc(d, u.expire)
	u.mu.Unlock()
	out.Body = u
	pt.t = u
	return actx, acancel, pt
}

// uploadTimer is the request body of an attempt under a per-try
// timeout, and that attempt's per-try timer. The timer is paused while a
// read of the body is in progress and restarted, for the whole timeout,
// when one returns; after the read that ends the body (io.EOF, or the
// last byte of a declared length: a transport need not read on to EOF)
// it runs on undisturbed. The transport reads the body on a goroutine
// of its choosing, possibly after RoundTrip returned; Stop, from the
// forwarder, disarms the timer for good.
type uploadTimer struct {
	body io.ReadCloser
	left int64 // bytes to the declared length; -1 when unknown
	d    time.Duration
	pt   *perTryTimer // ends the attempt

	mu      sync.Mutex
	t       *time.Timer
	ended   bool // the body was read whole: the timer runs on
	stopped bool
	fired   bool
}

func (u *uploadTimer) Read(p []byte) (int, error) {
	u.pause()
	n, err := u.body.Read(p)
	end := err == io.EOF
	if u.left > 0 {
		if u.left -= int64(n); u.left <= 0 {
			end = true
		}
	}
	u.resume(end)
	return n, err
}

// Close closes the attempt's body (a replay view or the downstream
// body's wrapper, neither of which closes the downstream body).
func (u *uploadTimer) Close() error { return u.body.Close() }

// pause holds the timer while the body is read, unless the body has
// ended already.
func (u *uploadTimer) pause() {
	u.mu.Lock()
	if !u.ended && !u.stopped && !u.fired {
		u.t.Stop()
	}
	u.mu.Unlock()
}

// resume restarts the timer for the whole timeout after a read; end
// marks the body's end, after which reads no longer touch it.
func (u *uploadTimer) resume(end bool) {
	u.mu.Lock()
	if !u.ended && !u.stopped && !u.fired {
		u.ended = end
		u.t.Reset(u.d)
	}
	u.mu.Unlock()
}

func (u *uploadTimer) expire() {
	u.mu.Lock()
	if u.stopped {
		u.mu.Unlock()
		return
	}
	u.fired = true
	u.mu.Unlock()
	u.pt.expire()
}

// Stop disarms the timer for good; it reports whether the timer had not
// fired.
func (u *uploadTimer) Stop() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.stopped = true
	u.t.Stop()
	return !u.fired
}

// roundTripTrace makes an attempt, under its per-try timer perTry (nil:
// none), through a transport that reports through httptrace, with an
// attemptTrace of its own: the first attempt has f's, which no other
// attempt then uses, a retry a new one.
//
//go:noinline
func (f *forwarding) roundTripTrace(actx context.Context, out *http.Request, attempt int, perTry *perTryTimer) (resp *http.Response, unconnected bool, err error) {
	tr := &f.trace
	if attempt > 0 {
		tr = new(attemptTrace)
	}
	tr.init(f.infoWriter(), f.c.res.limits)
	resp, err = f.c.pool.rt.RoundTrip(out.WithContext(httptrace.WithClientTrace(actx, clientTrace(attemptHooks(tr, perTry)))))
	unconnected = tr.releasePending()
	if tr != &f.trace && tr.info1xx.Load() {
		// retryCandidate reads f's.
		f.trace.info1xx.Store(true)
	}
	return resp, unconnected, err
}

// attemptFailed handles an attempt that got no usable response: it
// records the failure and either answers the request (false) or readies
// a retry (true). unconnected: the attempt ended before it had a
// connection.
//
//go:noinline
func (f *forwarding) attemptFailed(err error, actx context.Context, attempt int, permit breaker.Permit, ep *endpoint, retryHeld *bool, unconnected bool) (retry bool) {
	var le *breaker.LimitError
	if errors.As(err, &le) {
		// max_connections refused the dial: the call was not made.
		permit.Cancel()
		f.failBreaker(le)
		return false
	}
	kind := f.failKind(err, actx)
	// A wait for one of the endpoint's connections (at max_connections
	// or max_connections_per_endpoint) that ran out never reached the
	// endpoint: neither the breaker nor outlier detection counts it, as
	// Envoy's router tells outlier detection nothing of a request still
	// pending in its pool. It is answered, or retried, as its kind says.
	// So is an attempt whose route or per-try deadline passed before it
	// had a connection, bar the connection's failure (a dial or
	// handshake that failed, timed out included, is the endpoint's):
	// one that passed before the transport looked for one. A connection
	// the endpoint made but gave no stream to (an HTTP/2 server that
	// allows none) failed the attempt on the endpoint's side: it counts.
	waited := errors.Is(err, h1client.ErrConnectionWait) || errors.Is(err, h2client.ErrConnectionWait) ||
		unconnected && (kind == failTimeout || kind != failConnect && f.routeDone())
	if kind == failConnect && f.r.Context().Err() == nil {
		f.connectFailed(err, actx)
	}
	switch {
	case f.r.Context().Err() != nil:
		// The client went away: neither success nor failure.
		permit.Cancel()
		f.status = statusClientClosed
		return false
	case f.limited != nil && f.limited.crossed.Load():
		permit.Cancel()
		f.replyReason(ReasonRequestTooLarge)
		return false
	case f.clientBodyBroke():
		// The client's body broke (malformed framing, a failed read, a
		// trailer field headers_with_underscores rejects) before the
		// route deadline: the client's doing, which the endpoint is not
		// blamed for and no retry can mend.
		permit.Cancel()
		if name := rejectedTrailer(f.r); name != "" {
			f.reply(underscoreReply(name, true))
			return false
		}
		f.reply(localReply{reason: ReasonInvalidRequest, detail: "request body could not be read from the client"})
		return false
	case errors.Is(err, h1client.ErrInvalidRequest):
		// Refused before any connection: a field, Host or target that
		// an HTTP/1.1 message cannot carry (the servers refuse those
		// first, so this is a second line). The upstream never saw it.
		permit.Cancel()
		f.replyReason(ReasonInvalidRequest)
		return false
	case errors.Is(err, h2client.ErrHeaderListTooLarge):
		// Over the header list limit the upstream announced: the
		// request was not sent. It is the request's doing, so it is
		// neither the endpoint's failure nor retried (a cluster's
		// endpoints share their settings, as a rule).
		permit.Cancel()
		f.replyReason(ReasonRequestHeadersTooLarge)
		return false
	case f.routeDone():
		if waited || f.touch != nil && f.touch.awaitingClient() {
			// The deadline passed while the client's body was awaited
			// (see watchBodyStall): the client's doing, not the
			// endpoint's, so it counts neither way, as a client gone.
			permit.Cancel()
		} else {
			f.record(permit, ep, failTimeout, 0, -1)
		}
		f.replyReason(f.timeoutReason())
		return false
	}
	var v breaker.Verdict
	if waited {
		permit.Cancel()
		v = f.classify(kind, 0, -1)
	} else {
		v = f.record(permit, ep, kind, 0, -1)
	}
	if f.canRetry(attempt, kind, 0, -1, nil, v) && f.takeRetry(retryHeld) {
		// An attempt that had no connection (or stream) never reached
		// the application, whatever failed it.
		if !unconnected && kind != failConnect && kind != failRefused {
			f.reached = true
		}
		if !f.prepareRetry(attempt, -1) {
			f.retryAbandoned(failureReply(kind, err))
			return false
		}
		return true
	}
	f.fail(failureReply(kind, err))
	return false
}

// clientBodyBroke reports whether the request body from the client
// failed before the route deadline: it crossed max_request_body_bytes,
// or a read of it failed (not the stall watch's read deadline, which
// comes with the route deadline).
func (f *forwarding) clientBodyBroke() bool {
	return f.limited != nil && f.limited.crossed.Load() ||
		f.touch != nil && f.touch.failed.Load() && !f.routeDone()
}

// retryAbandoned answers a request whose retry prepareRetry gave up on:
// a client gone meanwhile is recorded as such (499, nothing sent), a
// route deadline passed is a timeout, else lr (the body can no longer be
// replayed).
//
//go:noinline
func (f *forwarding) retryAbandoned(lr localReply) {
	switch {
	case f.r.Context().Err() != nil:
		f.status = statusClientClosed
	case f.routeDone():
		f.replyReason(f.timeoutReason())
	default:
		f.fail(lr)
	}
}

// switchProtocols serves a 101 response to an upgrade: the switch itself
// is the outcome (reported now when report is set), and the tunnel lives
// as long as its peers want.
//
//go:noinline
func (f *forwarding) switchProtocols(resp *http.Response, permit breaker.Permit, ep *endpoint, report bool, hv breaker.Verdict, acancel context.CancelCauseFunc) {
	back, protocol, err := f.switchedConn(resp)
	if err != nil {
		// A switch the client did not ask for is the upstream's
		// failure, not a success.
		if report {
			f.record(permit, ep, failReset, resp.StatusCode, -1)
		}
		ep.active.Add(-1)
		acancel(nil)
		f.p.log.Debug("protocol switch refused", zap.String("cluster", f.c.name), zap.Error(err))
		f.replyReason(ReasonUpstreamReset)
		return
	}
	if report {
		f.report(permit, ep, hv)
	}
	// The route deadline bounded the switch; the tunnel has its own
	// bounds, and ends with the request's context (forced shutdown).
	if w := f.idle(); w != nil {
		w.stop() // the tunnel watches its own idleness
	}
	err = f.tunnel(f.r.Context(), resp, back, protocol, ep.addr)
	ep.active.Add(-1)
	acancel(nil)
	if err != nil && f.status == 0 {
		f.p.log.Debug("protocol switch failed", zap.String("cluster", f.c.name), zap.Error(err))
		f.replyReason(ReasonUpstreamReset)
	}
}

// recordResponse reports the outcome of a response sent downstream,
// once its body is copied (copyErr: what cut it short, if anything).
func (f *forwarding) recordResponse(copyErr error, permit breaker.Permit, ep *endpoint, resp *http.Response, trailersOnly, atHeaders bool, hv breaker.Verdict) {
	if copyErr == errCaptureFull {
		// A composition call's cap stopped the copy (see captureWriter):
		// the body was fine as far as it was read, and the call wants no
		// more of it. Its being too large is the composition's failure,
		// not the upstream's.
		copyErr = nil
	}
	switch {
	case copyErr != nil && f.r.Context().Err() != nil:
		// The client went away mid-body: neither success nor failure.
		permit.Cancel()
	case copyErr != nil && f.clientBodyBroke():
		// The client's body went over max_request_body_bytes or broke
		// while the response streamed (full duplex): the upstream saw
		// its request cut short by the client, so neither way either.
		permit.Cancel()
	case copyErr != nil && f.idleEnded() && f.touch != nil && f.touch.awaitingClient():
		// The idle timeout passed while the client's body was awaited
		// (a stream both of whose sides went quiet, the client's still
		// open): the client's doing as much as the upstream's, so
		// neither way, as before the response (see attemptFailed).
		permit.Cancel()
	case copyErr == errDeadlineTrailers || (copyErr != nil && f.routeDone()):
		f.record(permit, ep, failTimeout, resp.StatusCode, -1)
	case copyErr != nil:
		f.record(permit, ep, failReset, resp.StatusCode, -1)
	case atHeaders:
		f.report(permit, ep, hv)
	default:
		// A gRPC call's status is in its trailers, or in the header
		// block of a trailers-only answer (here when its grpc-status is
		// malformed, which counts as UNKNOWN); not in another header
		// block.
		var h http.Header
		if trailersOnly {
			h = resp.Header
		}
		gs := breaker.ParseGRPCStatus(h, resp.Trailer)
		if gs < 0 {
			// The stream ended without a status: the call failed,
			// whatever the HTTP status said. gRPC requires the status
			// even for OK (PROTOCOL-HTTP2.md, "Trailers"), and grpc-go's
			// client ends such a call INTERNAL ("server closed the
			// stream without sending trailers").
			gs = grpcInternal
		}
		f.record(permit, ep, failNone, resp.StatusCode, gs)
	}
}

// replyReason answers the request with the local reply of reason; it
// builds the reply in its own frame, not in run's.
//
//go:noinline
func (f *forwarding) replyReason(reason Reason) {
	f.reply(localReply{reason: reason})
}

// failBreaker fails the request with the local reply of a breaker or
// resource limit refusal (see fail).
//
//go:noinline
func (f *forwarding) failBreaker(err error) {
	f.fail(f.breakerReply(err))
}

// failNoHealthyUpstream fails the request for want of an endpoint to
// try (see fail).
//
//go:noinline
func (f *forwarding) failNoHealthyUpstream() {
	f.fail(localReply{reason: ReasonNoHealthyUpstream, detail: "no healthy upstream in cluster " + f.c.name})
}

// watchBodyStall bounds the request body by the route deadline. A
// transport reads the downstream body on its own goroutine or the
// request's, and such a read watches no context: a client that sends
// headers and part of a body, then nothing, would hold the attempt (its
// goroutine, breaker permits and upstream connection) past any deadline.
// When the deadline passes, the downstream read deadline is set to now
// (http.ResponseController, as net/http's servers and ours support), so
// the blocked read fails; routeDone then holds, and the attempt ends as a
// route timeout (504 upstream_timeout, gRPC DEADLINE_EXCEEDED), or is
// aborted if the response has started. Only requests with a body pay for
// this: a timer when the transport takes the deadline itself (direct, no
// route context), else a context.AfterFunc on the route context. It
// returns nil when there is no deadline.
func (f *forwarding) watchBodyStall(ctx context.Context, direct bool) *stallWatch {
	if f.dl.IsZero() {
		return nil
	}
	sw := &stallWatch{w: f.w, rctx: f.r.Context()}
	if direct {
		// Fires at or after f.dl, so routeDone holds by then.
		sw.t = time.AfterFunc(time.Until(f.dl), sw.expire)
	} else {
		// Runs once ctx is done, so routeDone holds by then.
		sw.stopAfter = context.AfterFunc(ctx, sw.expire)
	}
	return sw
}

// stallWatch is watchBodyStall's watch of one request. Stopped, it lets
// go of the request's writer and context: a stopped timer can stay in
// the runtime's timer heap, with its function, until its time would have
// come (the route deadline), and through the writer it would keep the
// whole request (its body, its connection's buffers, the response)
// from being collected.
type stallWatch struct {
	w    http.ResponseWriter
	rctx context.Context
	// t or stopAfter is the watch: a timer, or a context.AfterFunc.
	t         *time.Timer
	stopAfter func() bool
	// done is taken by whichever of expire and stop comes first: only it
	// reads or clears w and rctx.
	done atomic.Bool
}

// expire sets the client's read deadline to now, unless stop came first.
func (sw *stallWatch) expire() {
	if !sw.done.CompareAndSwap(false, true) {
		return
	}
	w, rctx := sw.w, sw.rctx
	sw.w, sw.rctx = nil, nil
	if rctx.Err() != nil {
		// The client went away: its body has ended already.
		return
	}
	// A writer without read deadlines (ErrNotSupported) is left as
	// it is: its body is not read from a client.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now())
}

// stop ends the watch; false means expire ran or is running.
func (sw *stallWatch) stop() bool {
	if sw.t != nil {
		sw.t.Stop()
	} else {
		sw.stopAfter()
	}
	if !sw.done.CompareAndSwap(false, true) {
		return false
	}
	sw.w, sw.rctx = nil, nil
	return true
}

// routeCtx returns the route context: the request's context bounded by
// the route deadline, made on first use when run did not need it.
func (f *forwarding) routeCtx() context.Context {
	if f.ctx == nil {
		f.ctx = f.r.Context()
		if !f.dl.IsZero() {
			f.ctx, f.cancel = context.WithDeadline(f.ctx, f.dl)
		}
	}
	return f.ctx
}

// routeDone reports whether the request's context ended or the route
// deadline passed: routeCtx().Err() != nil, without making the context.
func (f *forwarding) routeDone() bool {
	if f.ctx != nil {
		return f.ctx.Err() != nil
	}
	return f.r.Context().Err() != nil || !f.dl.IsZero() && !time.Now().Before(f.dl)
}

// earliest is the earlier of two deadlines, zero meaning none.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || !b.IsZero() && b.Before(a) {
		return b
	}
	return a
}

// record classifies one attempt's outcome with the cluster's classifier
// and reports it to the breaker and the outlier detector.
func (f *forwarding) record(permit breaker.Permit, ep *endpoint, kind failKind, status, grpcStatus int) breaker.Verdict {
	v := f.classify(kind, status, grpcStatus)
	f.report(permit, ep, v)
	return v
}

// classify is the cluster classifier's verdict on one attempt's outcome,
// without reporting it.
func (f *forwarding) classify(kind failKind, status, grpcStatus int) breaker.Verdict {
	return f.c.res.cls.Classify(outcome(kind, status, grpcStatus))
}

// report ends the attempt's breaker permit and tells the outlier detector
// with verdict v.
func (f *forwarding) report(permit breaker.Permit, ep *endpoint, v breaker.Verdict) {
	now := f.p.now()
	permit.Done(now, v.Failure)
	f.c.res.det.Record(ep.idx, now, v)
}

// attemptTrace follows one upstream attempt: it forwards 1xx responses
// and frees the max_pending_requests slot once a connection is had.
type attemptTrace struct {
	w       http.ResponseWriter
	limits  *breaker.Limits
	pending atomic.Bool
	// info1xx: a 1xx response went to the client, so the response has
	// started and the attempt is the request's last (see
	// retryCandidate). f's trace keeps it from attempt to attempt.
	info1xx atomic.Bool
}

// hooksRoundTripper is a transport that reports an attempt's events
// to roundtrip.Hooks directly (h1client's and h2client's Transports
// do), sparing the context value, ClientTrace and closures httptrace
// needs per attempt, and that takes the context and a deadline (zero:
// none) beside the request, sparing a context per request and the
// request's copy that WithContext makes. Other transports get the same
// hooks through httptrace, and the deadline on the context.
type hooksRoundTripper interface {
	RoundTripHooks(ctx context.Context, req *http.Request, h roundtrip.Hooks, deadline time.Time) (*http.Response, error)
}

var (
	_ hooksRoundTripper = (*h1client.Transport)(nil)
	_ hooksRoundTripper = (*h2client.Transport)(nil)
)

// init readies a for an attempt that holds a max_pending_requests slot.
func (a *attemptTrace) init(w http.ResponseWriter, limits *breaker.Limits) {
	a.w = w
	a.limits = limits
	a.pending.Store(true)
}

// GotConn frees the pending slot: the attempt has its connection.
func (a *attemptTrace) GotConn() { a.releasePending() }

// Got1xxResponse sends an informational response (103 Early Hints, 102
// Processing) downstream as it arrives, as net/http/httputil does.
//
// The response has then started: as Envoy's router, which gives up its
// retries once it passes a 1xx on, the proxy makes the attempt the
// request's last (a retry's upstream would answer its 1xx again, or
// other hints, for one response), and the per-try timeout no longer
// applies to it (see perTryTimer). A composition call's writer keeps no
// 1xx: nothing goes to a client, so the call's retries go on.
func (a *attemptTrace) Got1xxResponse(code int, header textproto.MIMEHeader) error {
	if !a.toClient() {
		return nil
	}
	a.info1xx.Store(true)
	h := a.w.Header()
	// Hop-by-hop fields (and those its Connection names) are the
	// upstream hop's, as in a final response.
	copyResponseHeader(h, http.Header(header))
	a.w.WriteHeader(code)
	// WriteHeader does not clear the map for 1xx responses.
	clear(h)
	return nil
}

// toClient reports whether a 1xx response written to a.w goes to the
// client: a composition call's captureWriter keeps none.
func (a *attemptTrace) toClient() bool {
	_, captured := a.w.(*captureWriter)
	return !captured
}

// releasePending frees the pending slot if GotConn has not, and reports
// whether it did: the attempt ended without a connection.
func (a *attemptTrace) releasePending() (unconnected bool) {
	if a.pending.CompareAndSwap(true, false) {
		a.limits.Release(breaker.LimitPendingRequests)
		return true
	}
	return false
}

// clientTrace is h for a transport that reports through httptrace.
func clientTrace(h roundtrip.Hooks) *httptrace.ClientTrace {
	return &httptrace.ClientTrace{
		GotConn:        func(httptrace.GotConnInfo) { h.GotConn() },
		Got1xxResponse: h.Got1xxResponse,
	}
}

// Shared header values set on every request, so that setting them does
// not allocate. Their length equals their capacity, so an append (a
// route's header edit, net/http's Header.Add) copies instead of writing
// into them; nothing else writes to header values in place.
var (
	protoHTTP  = []string{"http"}[:1:1]
	protoHTTPS = []string{"https"}[:1:1]
	emptyValue = []string{""}[:1:1]
)

// outboundValues are the values outboundHeader makes for a request, in
// one allocation: X-Forwarded-For's and x-request-id's value slices and
// the bytes of the id.
type outboundValues struct {
	vals [2]string
	id   [32]byte
}

// addedRequestHeaders are the headers outboundHeader sets when the
// request lacks them; copyRequestHeader reports which it has by these
// positions.
var addedRequestHeaders = [...]string{hdrForwardedFor, hdrForwardedProto, hdrRequestID, "User-Agent"}

const (
	hasForwardedFor = 1 << iota
	hasForwardedProto
	hasRequestID
	hasUserAgent
)

// outboundHeader builds the header block sent upstream: the inbound one
// minus hop-by-hop headers, plus x-forwarded-* (x-forwarded-client-cert
// only for a verified client certificate), x-request-id and the route's
// edits. traceparent and tracestate pass through untouched.
func (f *forwarding) outboundHeader() http.Header {
	r := f.r
	var h http.Header
	var has uint32
	if f.ownHeader && r.Header != nil {
		h = r.Header
		has = stripRequestHeader(h, addedRequestHeaders[:])
	} else {
		h, has = copyRequestHeader(r.Header, addedRequestHeaders[:])
	}
	var prior []string
	if has&hasForwardedFor != 0 {
		prior = h[hdrForwardedFor]
	}
	// An empty id or scheme says nothing: the request is given one as a
	// request without any is (and RequestIDRecorder is told the id).
	if has&hasRequestID != 0 && emptyField(h[hdrRequestID]) {
		has &^= hasRequestID
	}
	if has&hasForwardedProto != 0 && emptyField(h[hdrForwardedProto]) {
		has &^= hasForwardedProto
	}
	if has&hasRequestID != 0 {
		// One id goes up, the first, which the access log records: an
		// upstream reading another line (or all of them joined) would
		// trace the request under an id the proxy never logged.
		if ids := h[hdrRequestID]; len(ids) > 1 {
			h[hdrRequestID] = ids[:1:1]
		}
		appendForwardedFor(h, prior, r.RemoteAddr, make([]string, 1))
	} else {
		// The X-Forwarded-For and x-request-id values share one
		// allocation with the id's bytes, cut to length and capacity
		// one each.
		v := new(outboundValues)
		appendForwardedFor(h, prior, r.RemoteAddr, v.vals[0:1:1])
		putRequestID(&v.id)
		// The id's bytes are never written again, so the string may be
		// them rather than a copy.
		v.vals[1] = unsafe.String(&v.id[0], len(v.id))
		h[hdrRequestID] = v.vals[1:2:2]
		if rr, ok := f.w.(RequestIDRecorder); ok {
			rr.RecordRequestID(v.vals[1])
		}
	}
	if has&hasForwardedProto == 0 {
		h[hdrForwardedProto] = protoHTTP
		if r.TLS != nil {
			h[hdrForwardedProto] = protoHTTPS
		}
	}
	// x-forwarded-client-cert names the certificate the inbound
	// listener verified, or nothing: a client's own would be a forged
	// identity (Envoy's SANITIZE_SET), and the outbound listener's
	// client, the app, is not named to other services (Envoy's sidecar
	// outbound SANITIZE). Not among addedRequestHeaders, which size the
	// header's map: it is rarely set, and one more name there would
	// grow the map of a request with a few fields past one group.
	delete(h, hdrClientCert)
	if r.TLS != nil && f.rt.inbound {
		if v := clientCertField(r.TLS); v != "" {
			h[hdrClientCert] = []string{v}
		}
	}
	if f.upgrade != "" {
		// Hop-by-hop, but the switch is what the client asks the
		// upstream for: pass it on.
		h["Connection"] = []string{"Upgrade"}
		h["Upgrade"] = []string{f.upgrade}
	}
	if !f.rt.reqHeaders.empty() {
		f.rt.reqHeaders.apply(h)
		// The edits may have set or removed it.
		has &^= hasUserAgent
		if _, ok := h["User-Agent"]; ok {
			has |= hasUserAgent
		}
	}
	if f.rt.appendXFH {
		// After the route's edits, as Envoy rewrites the Host after
		// them. Here, in the header every attempt copies, the client's
		// Host goes in once: a retry, whose Host auto_host_rewrite
		// takes from another endpoint, carries the same list.
		appendForwardedHost(h, r.Host)
	}
	if has&hasUserAgent == 0 {
		// An empty value stops net/http from adding its own
		// User-Agent. It goes in after the route's edits, which would
		// otherwise append a User-Agent to it and send an empty one
		// beside theirs.
		h["User-Agent"] = emptyValue
	}
	return h
}

// emptyField reports whether a field's first value, the one readers
// take, is empty or whitespace.
func emptyField(vv []string) bool {
	return len(vv) == 0 || wire.TrimOWS(vv[0]) == ""
}

func (f *forwarding) failKind(err error, actx context.Context) failKind {
	// A connection not made is a connect failure even when the per-try
	// timeout cut the dial or handshake short: the upstream never saw the
	// request, so a retry is safe whatever the method.
	var ce *connectError
	var he *h1client.HandshakeError
	var h2he *h2client.HandshakeError
	if errors.As(err, &ce) || errors.As(err, &he) || errors.As(err, &h2he) {
		return failConnect
	}
	if errors.Is(err, errPerTryTimeout) || errors.Is(context.Cause(actx), errPerTryTimeout) {
		return failTimeout
	}
	if errors.Is(err, h2client.ErrUnprocessed) {
		// The upstream did not process the request (REFUSED_STREAM, or
		// above a GOAWAY's last stream id): safe to send again. A stream
		// refused after the upstream sent a 1xx fails as a bare
		// StreamError REFUSED_STREAM, without ErrUnprocessed: the
		// upstream answered, so it may have begun the request, and it
		// is a reset (see h2client's unansweredLocked).
		return failRefused
	}
	if f.upstreamDeadline(err) {
		return failTimeout
	}
	return failReset
}

// tlsFailure is why the TLS handshake that err failed in did; empty when
// err is not a TLS handshake's failure. The "tls: " most crypto/tls
// errors begin with is dropped, the reply saying TLS already; a handshake
// a timeout cut short (connect_timeout, the per-try timeout) timed out.
func tlsFailure(err error) string {
	var cause error
	var he *h1client.HandshakeError
	var ce *connectError
	var h2he *h2client.HandshakeError
	switch {
	case errors.As(err, &he):
		cause = he.Err
	case errors.As(err, &ce) && ce.tls:
		cause = ce.err
	case errors.As(err, &h2he) && remoteAlert(h2he.Err) != nil:
		cause = remoteAlert(h2he.Err)
	default:
		return ""
	}
	if errors.Is(cause, context.DeadlineExceeded) || errors.Is(cause, context.Canceled) {
		return "timed out"
	}
	return strings.TrimPrefix(cause.Error(), "tls: ")
}

// connectFailed counts an attempt's failure to connect by its reason
// and tells an access log why its TLS handshake failed, if it did.
//
//go:noinline
func (f *forwarding) connectFailed(err error, actx context.Context) {
	f.c.m.connectFail[connectFailure(err, actx)].Inc()
	if why := tlsFailure(err); why != "" {
		if tr, ok := f.w.(TransportFailureRecorder); ok {
			tr.RecordTransportFailure("TLS handshake: " + why)
		}
	}
}

// deadlineSkew is how close to the call's deadline an upstream's
// cancellation counts as that deadline (see upstreamDeadline).
const deadlineSkew = 100 * time.Millisecond

// upstreamDeadline reports whether err is a gRPC upstream ending the call
// at the deadline the proxy propagated (the route deadline, or the
// per-try timeout; see setGRPCTimeout): a server whose grpc-timeout ran
// out cancels the stream (RST_STREAM CANCEL), about when the proxy's own
// timer fires, often a moment before. A cancellation within deadlineSkew
// of the deadline is the deadline, not a reset.
func (f *forwarding) upstreamDeadline(err error) bool {
	var se http2.StreamError
	return f.grpc && f.sentDL != 0 && errors.As(err, &se) && se.Code == http2.ErrCodeCancel &&
		f.sentDL-time.Now().UnixNano() <= int64(deadlineSkew)
}

// failureReply is the local reply of an attempt that failed with err,
// of kind k. A connect failure in the TLS handshake says why it failed,
// as Envoy's reply gives its transport failure reason: a certificate
// that does not verify is otherwise not told from a refused connection.
func failureReply(k failKind, err error) localReply {
	switch k {
	case failConnect:
		lr := localReply{reason: ReasonUpstreamConnectFailure}
		if why := tlsFailure(err); why != "" {
			lr.detail = reasonInfo[lr.reason].text + ": TLS handshake: " + why
		}
		return lr
	case failTimeout:
		return localReply{reason: ReasonUpstreamTimeout}
	}
	return localReply{reason: ReasonUpstreamReset}
}

// canRetry decides, without side effects, whether the result of attempt
// (0-based) warrants another one: attempts left, a retry_on condition, a
// method that may be repeated, and a body that can be sent again.
func (f *forwarding) canRetry(attempt int, kind failKind, status, grpcStatus int, h http.Header, v breaker.Verdict) bool {
	if !f.retryCandidate(attempt, kind, status, grpcStatus, h, v) {
		return false
	}
	if st := f.c.res.br.State(); st == breaker.StateOpen || st == breaker.StateForcedOpen {
		return false
	}
	p := f.retryPolicy()
	// Connect failures and refused streams never reached the application,
	// so they are safe to retry whatever the method. So is a gRPC call the
	// server ended trailers-only with a status gRPC's own retry policy
	// retries (gRFC A6: the server chose to answer before sending any
	// response message; every gRPC call is a POST): the body must be kept
	// whole, which the replay check below requires after any response.
	safe := kind == failConnect || kind == failRefused ||
		f.grpc && kind == failNone && grpcStatus >= 0 && p.grpcRetriable(grpcStatus)
	if !safe && !p.allowAnyMethod && !idempotent(f.r.Method) {
		return false
	}
	switch {
	case f.replay != nil && kind == failNone:
		// The upstream answered; retry only if the whole body is kept, as
		// waiting for the rest of it could stall behind a server that has
		// stopped reading.
		return f.replay.complete()
	case f.replay != nil:
		return f.replay.replayable()
	case hasBody(f.r):
		return false
	}
	return true
}

// retryCandidate is canRetry's first test, which does not depend on the
// breaker's state: attempts left, no 1xx response passed on to the
// client (the response has started, see attemptTrace.Got1xxResponse),
// and either a retry_on condition on a classifier failure or one of the
// conditions retried whatever the classifier says (retryPolicy.regardless).
// The cluster's classifier has the last word on the other conditions:
// what it does not call a failure is not retried, whatever retry_on
// lists. A status of retriable_status_codes, a 409 of retriable-4xx and
// a header of retriable_headers are retried whatever it says, as
// Envoy's are apart from its outlier detection, so that a route may
// retry a 409 without its cluster's breaker and outlier detector
// counting one a failure: they are told the classifier's verdict, v, as
// of any attempt. h is the response's header, nil without one.
func (f *forwarding) retryCandidate(attempt int, kind failKind, status, grpcStatus int, h http.Header, v breaker.Verdict) bool {
	p := f.retryPolicy()
	if attempt >= p.maxRetries || f.trace.info1xx.Load() || status == http.StatusSwitchingProtocols {
		// (A 101 is the tunnel the client asked for, whatever a
		// retriable_headers matcher says of its header.)
		return false
	}
	return p.retries(kind, status, grpcStatus, h, v.Failure)
}

// takeRetry reserves, for the rest of this request (one slot however many
// retries it makes), a slot of the cluster's retry limit: its
// limits.retry_budget when set, else limits.max_retries. This is the one
// retry budget; it is per cluster, so every route to the cluster shares it.
func (f *forwarding) takeRetry(held *bool) bool {
	if *held {
		return true
	}
	if err := f.c.res.limits.Acquire(breaker.LimitRetries); err != nil {
		f.c.res.countReject(breaker.RejectReason(err))
		return false
	}
	*held = true
	return true
}

// overloaded reports whether a response says that the upstream is
// overloaded: another Outrigger's overflow local reply (a resource limit
// of its cluster was full), or Envoy's x-envoy-overloaded. Such an
// answer is not retried, as Envoy does not retry x-envoy-overloaded: a
// retry would add load where there is too much already.
func overloaded(h http.Header) bool {
	if _, ok := h[hdrEnvoyOverloaded]; ok {
		return true
	}
	v := h[hdrError]
	return len(v) > 0 && v[0] == ReasonOverflow.String()
}

// resetAllows reports whether a response whose header is h may be
// retried as far as its rate-limit reset header goes (see
// retryPolicy.resetWait), and sets *wait to the wait it names (left
// alone, < 0, for the exponential back-off). It refuses the retry when
// the header asks for more than max_interval, or for a wait that would
// reach the route deadline or last the route's idle_timeout (the idle
// watch restarted at the response's header block, and nothing moves
// during the wait): the retry could then only end in a local reply,
// where the upstream's answer says when to come back.
//
//go:noinline
func (f *forwarding) resetAllows(h http.Header, wait *time.Duration) bool {
	p := f.retryPolicy()
	if len(p.resetHeaders) == 0 {
		return true
	}
	now := time.Now()
	d, ok := p.resetWait(h, now, f.p.int63n)
	switch {
	case !ok:
		return false
	case d < 0:
		return true
	case !f.dl.IsZero() && !now.Add(d).Before(f.dl):
		return false
	case f.rt.idleTimeout > 0 && d >= f.rt.idleTimeout:
		return false
	}
	*wait = d
	return true
}

// prepareRetry detaches the previous attempt's body, checks the body can
// still be replayed and waits: wait when it is >= 0 (a rate-limited
// response's), else the exponential back-off. False: give up.
func (f *forwarding) prepareRetry(attempt int, wait time.Duration) bool {
	if f.view != nil {
		// Not waiting for a Read of it in progress: the transport may
		// have left one behind that waits for the client, which may
		// itself wait for the response (see replayBody).
		f.view.release()
		f.view = nil
		if !f.replay.replayable() {
			return false
		}
	}
	if wait < 0 {
		wait = f.retryPolicy().backoff(attempt+1, f.p.int63n)
	}
	if !sleepCtx(f.routeCtx(), wait) {
		return false
	}
	f.c.m.retries.Inc()
	return true
}

// UpstreamMarker is a ResponseWriter that is told when the response it
// carries is an upstream's (its header copied from the upstream's
// response) rather than one the proxy made itself, and whose: the
// cluster and the endpoint (host:port) that answered. An access log uses
// it to tell the proxy's own x-outrigger-error from one an upstream
// Outrigger sent, and to say who answered. MarkUpstream is called once
// the response that goes downstream is taken, its header block just
// arrived, before the header is copied (for a tunnel's 101, once the
// client's connection is hijacked), so the time of the call is the
// header's, to within the proxy's own work; a route's fallback calls it
// again for the fallback cluster's response.
type UpstreamMarker interface {
	MarkUpstream(cluster, host string)
}

// RouteRecorder is a ResponseWriter that is told the route a request
// matched and the cluster it picked for it ("" for a direct response or
// a composition), as soon as they are known: an access log names them
// for local replies too.
type RouteRecorder interface {
	RecordRoute(route, cluster string)
}

// RequestIDRecorder is a ResponseWriter that is told the x-request-id
// the proxy made for a request that came without one (the id it sends
// upstream, on every attempt; a route's fallback, which goes on only
// when no attempt reached the upstream's application, makes another);
// an access log uses it to log the id the upstream saw.
type RequestIDRecorder interface {
	RecordRequestID(id string)
}

// AttemptRecorder is a ResponseWriter that is told, once the proxy is
// done with a forwarded request (a tunnel's once it has closed), how many
// upstream attempts it made: the first try and each retry, a connection
// that failed included, and a route's fallback cluster's going on from
// the primary's, as x-outrigger-attempt-count numbers them. It is not
// told of a request the proxy answered before it picked a cluster, nor of
// a composition's calls: those made no attempt of their own. An access
// log uses it as Envoy's UPSTREAM_REQUEST_ATTEMPT_COUNT.
type AttemptRecorder interface {
	RecordAttempts(n int)
}

// TransportFailureRecorder is a ResponseWriter that is told why an
// upstream attempt's TLS handshake failed ("TLS handshake: " and
// crypto/tls's words), once for each attempt whose handshake failed, the
// last one telling last. An access log uses it as Envoy's
// UPSTREAM_TRANSPORT_FAILURE_REASON.
type TransportFailureRecorder interface {
	RecordTransportFailure(reason string)
}

// AuthorizationRecorder is a ResponseWriter that is told, before the
// 403 rbac_denied is written, the authorization rule that refused a
// request: the deny rule's name, or "" when the listener has allow
// rules and the request matched none. An access log uses it as Envoy's
// rbac_access_denied_matched_policy[...] response code details.
type AuthorizationRecorder interface {
	RecordDenial(rule string)
}

// AbortRecorder is a ResponseWriter that is told why the proxy cut a
// response short after its header (the abort with http.ErrAbortHandler):
// the reason its local reply would have had before the header
// (upstream_reset, upstream_timeout, ...). It is not told of a client that
// went away. An access log uses it as Envoy's response flags (UR, UT).
type AbortRecorder interface {
	RecordAbort(reason string)
}

// abortReason is why f's response, its header sent, is cut short, and
// whether the proxy's (false: the client went away).
func (f *forwarding) abortReason() (Reason, bool) {
	switch {
	case f.r.Context().Err() != nil:
		return 0, false
	case f.limited != nil && f.limited.crossed.Load():
		return ReasonRequestTooLarge, true
	case f.clientBodyBroke():
		return ReasonInvalidRequest, true
	case f.routeDone():
		return f.timeoutReason(), true
	}
	return ReasonUpstreamReset, true
}

// errDeadlineTrailers and errResetTrailers report that the proxy ended
// a gRPC stream with trailers, DEADLINE_EXCEEDED or UNAVAILABLE, when
// the upstream's body did not end (see bodyCutShort).
var (
	errDeadlineTrailers = errors.New("grpc deadline exceeded mid-stream")
	errResetTrailers    = errors.New("grpc upstream reset between messages")
)

// respond sends resp downstream: headers, body (flushed as it arrives for
// streams), then trailers; trailersOnly, a gRPC answer whose status
// ended it at its header block, goes as a header block alone. It returns
// the error that cut the body short; the caller must then abort the
// downstream stream.
func (f *forwarding) respond(resp *http.Response, ep *endpoint, trailersOnly bool) error {
	defer resp.Body.Close()
	w := f.w
	// What the upstream's header says is read before the route's edits,
	// which may go into that very map (see responseHeader).
	flush := f.grpc || resp.ContentLength == -1 || isEventStream(resp.Header)
	if m, ok := w.(UpstreamMarker); ok {
		m.MarkUpstream(f.c.name, ep.addr)
	}
	h := responseHeader(w, resp.Header)
	if !f.rt.respHeaders.empty() {
		f.rt.respHeaders.apply(h)
	}
	announced := len(resp.Trailer)
	if announced > 0 {
		announceTrailers(h, resp.Trailer)
	}
	f.status = resp.StatusCode
	if trailersOnly {
		// Trailers-only gRPC response (status in the header block, no
		// body): write it as one HEADERS frame with END_STREAM, as gRPC
		// requires, which the server does when the handler returns
		// without having flushed. A body the upstream sent anyway is
		// dropped, and with it any Content-Length, which the server
		// would otherwise find unmet and reset the stream.
		delete(h, "Content-Length")
		w.WriteHeader(resp.StatusCode)
		return nil
	}
	w.WriteHeader(resp.StatusCode)

	var frames *grpcFrames
	if f.grpc {
		frames = new(grpcFrames)
	}
	bounded, upstream, err := copyBody(w, resp.Body, flush, f.dl, frames, f.idle())
	if err != nil {
		return f.bodyCutShort(h, err, upstream && frames != nil && frames.between())
	}
	if bounded && !f.dl.IsZero() && !time.Now().Before(f.dl) {
		// The body came whole as the deadline passed (a gRPC upstream
		// ends the call at the deadline it was sent, as the route
		// does): its end and trailers get endGrace to be written, past
		// the write deadline copyBody set, which would cut them.
		f.extendWrites()
	}
	if len(resp.Trailer) > 0 {
		copyTrailers(h, resp.Trailer, len(resp.Trailer) == announced)
	}
	return nil
}

// isEventStream reports whether h's Content-Type is text/event-stream
// (server-sent events), whose events must not wait in a buffer. The
// header map's keys are canonical, as is the literal: one direct lookup
// is Header.Get without its key canonicalisation.
func isEventStream(h http.Header) bool {
	ct := h["Content-Type"]
	return len(ct) > 0 && strings.HasPrefix(ct[0], "text/event-stream")
}

// announceTrailers declares, in the response header h, the trailers the
// upstream announced.
//
//go:noinline
func announceTrailers(h, trailer http.Header) {
	keys := make([]string, 0, len(trailer))
	for k := range trailer {
		keys = append(keys, k)
	}
	h["Trailer"] = []string{strings.Join(keys, ", ")}
	// Trailers need a framing that can carry them: an HTTP/1.1
	// downstream must use chunked encoding, not Content-Length.
	delete(h, "Content-Length")
}

// copyTrailers passes the upstream's trailers on through h: as they are
// when all were announced, else each under http.TrailerPrefix.
//
//go:noinline
func copyTrailers(h, trailer http.Header, announced bool) {
	if announced {
		for k, vv := range trailer {
			h[k] = vv
		}
		return
	}
	for k, vv := range trailer {
		h[http.TrailerPrefix+k] = vv
	}
}

// bodyCutShort is respond's answer to a response body that ended with
// err before its end: errDeadlineTrailers when the gRPC call's deadline
// passed (the stream is then ended with DEADLINE_EXCEEDED trailers, in
// h); errResetTrailers when the upstream broke a gRPC body between two
// messages (between; ended with UNAVAILABLE trailers); else err.
//
//go:noinline
func (f *forwarding) bodyCutShort(h http.Header, err error, between bool) error {
	if !f.grpc || f.r.Context().Err() != nil {
		return err
	}
	if errors.Is(f.routeCtx().Err(), context.DeadlineExceeded) || f.upstreamDeadline(err) || f.idleEnded() {
		// The call's deadline (or its idle timeout) passed mid-stream:
		// end it the way a gRPC server would, with DEADLINE_EXCEEDED in
		// the trailers.
		reason := f.timeoutReason()
		grpcEndTrailers(h, grpcDeadlineExceeded, reasonInfo[reason].text, reason)
		// The response writes are bounded by the same deadline (see
		// copyBody), now passed: the trailers get endGrace to be sent,
		// else the server would reset the stream INTERNAL_ERROR in
		// their stead.
		f.extendWrites()
		return errDeadlineTrailers
	}
	if between && !f.clientBodyBroke() {
		// The upstream broke the body between two messages: end the
		// call with the status a client connected to the upstream
		// would have seen, the messages sent so far delivered. Cut
		// inside a message, the stream is reset instead: a message
		// cannot be completed.
		code, msg := grpcUnavailable, reasonInfo[ReasonUpstreamReset].text
		var se http2.StreamError
		if errors.As(err, &se) {
			code, msg = grpcStatusOfReset(se.Code), "upstream reset the stream: "+se.Code.String()
		}
		grpcEndTrailers(h, code, msg, ReasonUpstreamReset)
		return errResetTrailers
	}
	return err
}

// grpcEndTrailers sets, in the response header h, the trailers with which
// the proxy ends a gRPC stream it took over from the upstream: the
// status, its message and the reason in x-outrigger-error.
func grpcEndTrailers(h http.Header, code int, msg string, reason Reason) {
	h[http.TrailerPrefix+"Grpc-Status"] = []string{strconv.Itoa(code)}
	h[http.TrailerPrefix+"Grpc-Message"] = []string{encodeGRPCMessage(msg)}
	h[http.TrailerPrefix+hdrError] = []string{reason.String()}
}

// endGrace is how long past the route deadline the end of a response
// has to be written to the client once nothing more is awaited from the
// upstream: a gRPC call's DEADLINE_EXCEEDED trailers, or the end of a
// body that came whole just as the deadline passed.
const endGrace = time.Second

// extendWrites moves the response's write deadline to endGrace from
// now (see endGrace). A writer without write deadlines is left as is.
//
//go:noinline
func (f *forwarding) extendWrites() {
	_ = http.NewResponseController(f.w).SetWriteDeadline(time.Now().Add(endGrace))
}

// copyBody streams src to w through a pooled buffer; with flush it pushes
// each chunk to the client at once. dl, when set, is the route deadline,
// which also bounds the writes to a client that stops reading; bounded
// reports whether it was set as the write deadline. frames, when set, is
// fed what was written. upstream reports that err came from src, not
// from w. idle, when set, is told of each read and write, and its timeout
// bounds the header block, each write, and the end of the response from
// the body's end.
func copyBody(w http.ResponseWriter, src io.Reader, flush bool, dl time.Time, frames *grpcFrames, idle *idleWatch) (bounded, upstream bool, err error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var rc *http.ResponseController
	// The deadline comes before the first write, the header block's
	// included. On HTTP/1.1 a write blocks on a client that does not
	// read what it was sent, and the socket's buffers may be full before
	// this response's first byte: a client that pipelines requests and
	// reads none of the answers has them filled by the earlier ones. On
	// HTTP/2 any write waits for the stream's flow-control window, which
	// a client may announce as 0 and never open (and the header block
	// waits for room on a connection whose client does not read). The
	// server clears it when the handler returns; an HTTP/2 stream whose
	// deadline passes is reset INTERNAL_ERROR. A writer without write
	// deadlines reports ErrNotSupported and is left as is.
	switch {
	case idle != nil:
		// The header block, pushed below or sent with the first write,
		// may wait for the client too (for room on a connection whose
		// client does not read): the idle timeout bounds it, as each
		// write below.
		rc = http.NewResponseController(w)
		bounded = rc.SetWriteDeadline(earliest(dl, time.Now().Add(idle.d))) == nil
	case !dl.IsZero():
		rc = http.NewResponseController(w)
		bounded = rc.SetWriteDeadline(dl) == nil
	}
	if flush {
		if rc == nil {
			rc = http.NewResponseController(w)
		}
		// Push the headers now: a gRPC client or an event stream waits
		// for them before the first message.
		_ = rc.Flush()
	}
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			if idle != nil {
				// Each write gets the idle timeout: a client that takes
				// nothing for that long is idle too.
				idle.touch()
				if rc == nil {
					rc = http.NewResponseController(w)
				}
				bounded = rc.SetWriteDeadline(earliest(dl, time.Now().Add(idle.d))) == nil
			}
			if _, werr := w.Write(buf[:n]); werr != nil {
				return bounded, false, werr
			}
			if flush {
				if err := rc.Flush(); err != nil {
					return bounded, false, err
				}
			}
			if idle != nil {
				idle.touch()
			}
			if frames != nil {
				frames.feed(buf[:n])
			}
		}
		if rerr == io.EOF {
			if idle != nil {
				// The end of the response (what the server holds back,
				// END_STREAM, the trailers) is written once the handler
				// returns: it may wait for the client the idle timeout
				// from now, not what is left of the last write's.
				bounded = rc.SetWriteDeadline(earliest(dl, time.Now().Add(idle.d))) == nil
			}
			return bounded, false, nil
		}
		if rerr != nil {
			return bounded, true, rerr
		}
	}
}

// hasBody reports whether r may carry a request body worth sending
// upstream. An HTTP/2 request whose HEADERS frame ended the stream (a
// plain GET) has ContentLength 0 but a non-nil Body that returns EOF;
// handing such a body to http.Transport makes it probe the body with a
// goroutine and a timer on every request (transferWriter.probeRequestBody).
// ContentLength 0 is a promise of no bytes in both HTTP/1.1 and HTTP/2
// (RFC 9113 §8.1.1 makes extra DATA a stream error), so the body is left
// out; a request that declares trailers keeps it, for the trailers ride
// after the body.
func hasBody(r *http.Request) bool {
	if r.Body == nil || r.Body == http.NoBody {
		return false
	}
	return r.ContentLength != 0 || r.Trailer != nil
}

var errTooLarge = errors.New("request body too large")

// limitedBody enforces max_request_body_bytes on a streamed body.
type limitedBody struct {
	r         io.Reader
	remaining int64
	crossed   atomic.Bool
}

func (l *limitedBody) Read(p []byte) (int, error) {
	if l.remaining < 0 {
		return 0, errTooLarge
	}
	if int64(len(p)) > l.remaining+1 {
		p = p[:l.remaining+1]
	}
	n, err := l.r.Read(p)
	l.remaining -= int64(n)
	if l.remaining < 0 {
		l.crossed.Store(true)
		return n, errTooLarge
	}
	return n, err
}

// touchReader notes that its reader was read at all: a request body no
// attempt touched can still be sent elsewhere whole (a route's fallback).
// It also notes whether a read of the downstream body is in progress or
// failed, which tells a client that stalls its body from an upstream
// that does not answer (see awaitingClient).
type touchReader struct {
	r       io.Reader
	idle    *idleWatch // told of each read that brought bytes; nil: none
	touched atomic.Bool
	reading atomic.Bool
	failed  atomic.Bool
}

func (t *touchReader) Read(p []byte) (int, error) {
	t.touched.Store(true)
	t.reading.Store(true)
	n, err := t.r.Read(p)
	// failed before reading is cleared: a read ended by the idle
	// timeout's read deadline must not look, for a moment, like none
	// awaited, to a response copy that the same timeout ended and that
	// asks awaitingClient meanwhile (the upstream was then blamed).
	if err != nil && err != io.EOF {
		t.failed.Store(true)
	}
	t.reading.Store(false)
	if n > 0 && t.idle != nil {
		t.idle.touch()
	}
	return n, err
}

// awaitingClient reports whether the attempt is held by the client's
// body: a read of it is blocked now, or one failed (the read deadline
// watchBodyStall sets ends a blocked one with an error).
func (t *touchReader) awaitingClient() bool {
	return t.reading.Load() || t.failed.Load()
}
