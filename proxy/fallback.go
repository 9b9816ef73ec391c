package proxy

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Header the proxy sets on a response produced by a route's fallback; its
// value is the local-reply code that made the primary unusable.
const hdrFallback = "X-Outrigger-Fallback"

// routeFallback is a route's compiled fallback: a fixed response or
// another cluster (never both).
type routeFallback struct {
	direct *directResponse
	// rt is the route as the fallback cluster sees it: the same timeouts,
	// retry policy and header edits, one cluster, and no fallback (a
	// fallback never falls back further).
	rt    *route
	stats *routeStats // (listener, route, fallback cluster), or the route's local stats
	// used counts fallbacks by the reason of the primary's failure.
	used [numReasons]prometheus.Counter
}

// fallbackReason reports whether a local reply with reason r means the
// primary cluster never got the request to its application, which is when
// a fallback is used: the breaker or a limit refused it, no endpoint was
// healthy, or no connection could be made (after any retries). Timeouts,
// resets and upstream statuses are not: the upstream may have acted.
func fallbackReason(r Reason) bool {
	switch r {
	case ReasonBreakerOpen, ReasonOverflow, ReasonNoHealthyUpstream, ReasonUpstreamConnectFailure:
		return true
	}
	return false
}

// fail ends the request with lr, or, when the route has a fallback that
// applies, leaves lr for ServeHTTP to answer with the fallback once the
// primary's slots are released. A fallback applies only while no attempt
// may have reached the upstream's application: a retry refused after one
// did is answered with lr, or the request would run twice.
func (f *forwarding) fail(lr localReply) {
	fb := f.rt.fallback
	if fb == nil || f.reached || !fallbackReason(lr.reason) || fb.rt != nil && !f.bodyReusable() {
		f.reply(lr)
		return
	}
	f.deferred = &lr
}

// bodyReusable reports whether the request body can still be sent in
// full: there is none, no attempt has read it, or it is kept for replay.
func (f *forwarding) bodyReusable() bool {
	if f.touch == nil || !f.touch.touched.Load() {
		return true
	}
	return f.replay != nil && f.replay.replayable()
}

// serveFallback answers f's request with the route's fallback after the
// primary cluster failed with f.deferred, and sets f.status.
func (p *Proxy) serveFallback(f *forwarding) {
	lr := f.deferred
	fb := f.rt.fallback
	fb.used[lr.reason].Inc()
	fw := &fallbackWriter{ResponseWriter: f.w, set: [][2]string{{hdrFallback, lr.reason.String()}}}
	for _, kv := range lr.extra {
		if kv[0] == hdrBreaker {
			fw.set = append(fw.set, kv)
		}
	}
	if fb.direct != nil {
		f.status = p.writeDirectResponse(fw, fb.direct, &f.rt.respHeaders)
		return
	}
	r := f.r
	if f.touch != nil && f.touch.touched.Load() {
		// The primary's attempts read part of the body: resend it from
		// the replay buffer (bodyReusable checked that it is whole).
		if f.view != nil {
			f.view.release()
		}
		r = r.WithContext(r.Context())
		r.Body = f.replay.view()
	}
	c := fb.rt.clusters[0].c
	// Made in place on the heap, as in ServeHTTP.
	f2 := new(forwarding)
	f2.p, f2.s, f2.rt, f2.c, f2.w, f2.r, f2.grpc = p, f.s, fb.rt, c, fw, r, f.grpc
	f2.setCallDeadline(f.dl)
	// fb.rt has the route's timeouts and retry policy, so the request's
	// Envoy headers change them for the fallback as for the primary.
	f2.ov = f.ov
	// The fallback's attempts are further attempts of the same request
	// (x-outrigger-attempt-count goes on counting).
	f2.attempts = f.attempts
	defer func() { f.status, f.attempts = f2.status, f2.attempts }()
	f2.run(time.Time{})
}

// fallbackWriter adds the fallback headers to the final response header
// block, whoever writes it (the fallback cluster's response, or a local
// reply).
type fallbackWriter struct {
	http.ResponseWriter
	set  [][2]string
	done bool
}

func (w *fallbackWriter) WriteHeader(code int) {
	if code >= 200 && !w.done {
		w.done = true
		h := w.Header()
		for _, kv := range w.set {
			h.Set(kv[0], kv[1])
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *fallbackWriter) Write(b []byte) (int, error) {
	if !w.done {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// MarkUpstream passes on that the fallback cluster's response is an
// upstream's, and whose (UpstreamMarker).
func (w *fallbackWriter) MarkUpstream(cluster, host string) {
	if m, ok := w.ResponseWriter.(UpstreamMarker); ok {
		m.MarkUpstream(cluster, host)
	}
}

// RecordAbort passes on why the fallback cluster's response was cut
// short (AbortRecorder).
func (w *fallbackWriter) RecordAbort(reason string) {
	if r, ok := w.ResponseWriter.(AbortRecorder); ok {
		r.RecordAbort(reason)
	}
}

// RecordRequestID passes on the id the proxy made for the fallback
// cluster's request (RequestIDRecorder).
func (w *fallbackWriter) RecordRequestID(id string) {
	if r, ok := w.ResponseWriter.(RequestIDRecorder); ok {
		r.RecordRequestID(id)
	}
}

// Unwrap lets http.ResponseController reach the server's writer (flush,
// hijack).
func (w *fallbackWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

var (
	_ UpstreamMarker    = (*fallbackWriter)(nil)
	_ RequestIDRecorder = (*fallbackWriter)(nil)
	_ AbortRecorder     = (*fallbackWriter)(nil)
)
