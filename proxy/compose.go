package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/outrigger-mesh/outrigger/composer"
)

// Composite routes. A route whose action is a composition is served by a
// composer.Composition built at Apply; its backend calls go through
// composeBackend, which runs each call through the same forwarding code as
// any proxied request (load balancing, the cluster's breaker, limits,
// outlier detection and classifier, the route's per-try timeout and retry
// policy) and captures the answer in memory for the composer to join.

// composeBackend implements composer.Backend over one snapshot's clusters.
// It belongs to the snapshot it was compiled with, so a reload never
// changes the clusters a composite request in flight calls.
type composeBackend struct {
	p *Proxy
	s *snapshot
	// rt carries the composition route's per-try timeout and retry policy
	// to each call; it has no match, header edits or rewrite.
	rt *route
}

// compositeCaller is what a composite request's calls carry of it: its
// x-request-id, and the client's address for X-Forwarded-For. It is its
// own context key.
type compositeCaller struct {
	requestID, remoteAddr string
}

// errCaptureFull stops the copy of a call's response at its cap.
var errCaptureFull = errors.New("call response exceeds the composition's cap")

// Do implements composer.Backend. Request.Path goes on the wire as is (it
// is set as URL.RawPath, so an escaped '/' stays inside its segment). A
// call the proxy refused or could not complete returns an error wrapping
// composer.ErrBreakerOpen (breaker open or a limit overflowed),
// composer.ErrTimeout (route, per-try or call deadline) or
// composer.ErrConnect (no healthy endpoint, connection failed).
func (b *composeBackend) Do(ctx context.Context, call *composer.Request) (*composer.Response, error) {
	c, ok := b.s.clusters[call.Cluster]
	if !ok {
		return nil, fmt.Errorf("%w: unknown cluster %q", composer.ErrConnect, call.Cluster)
	}
	path, err := url.PathUnescape(call.Path)
	if err != nil {
		return nil, fmt.Errorf("call path %q: %w", call.Path, err)
	}
	// The call's deadline (composition deadline, call timeout) becomes the
	// forwarding deadline, so that its expiry is recorded as a timeout by
	// the breaker; only a cancellation (client gone, a required call
	// failed) cancels the call as a client that went away.
	base, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			cancel()
		}
	})
	defer stop()

	hdr := call.Header
	if hdr == nil {
		hdr = http.Header{}
	}
	// The composite request's id, unless the call's own headers (a
	// template, forward_headers) give it one.
	caller, _ := ctx.Value(compositeCaller{}).(*compositeCaller)
	if caller != nil && emptyField(hdr[hdrRequestID]) {
		hdr[hdrRequestID] = []string{caller.requestID}
	}
	r := &http.Request{
		Method:     call.Method,
		URL:        &url.URL{Path: path, RawPath: call.Path, RawQuery: call.RawQuery},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     hdr, // the call's own; copied by outboundHeader
		Host:       call.Cluster,
	}
	if caller != nil {
		r.RemoteAddr = caller.remoteAddr
	}
	if call.Body != nil {
		r.Body = io.NopCloser(bytes.NewReader(call.Body))
		r.ContentLength = int64(len(call.Body))
	}
	r = r.WithContext(base)

	// One byte past what the call may use, so that the composer still sees
	// an oversized body as too large rather than as an error; reading on
	// would buffer what the call may not have, and wait for it.
	cw := &captureWriter{h: http.Header{}, limit: call.MaxResponseBytes + 1}
	// Made in place on the heap, as in ServeHTTP.
	f := new(forwarding)
	f.p, f.s, f.rt, f.c, f.w, f.r = b.p, b.s, b.rt, c, cw, r
	if dl, ok := ctx.Deadline(); ok {
		f.setCallDeadline(dl)
	}
	aborted := runForwarding(f)

	switch {
	case f.local != nil:
		return nil, localReplyError(f.local)
	case f.status == statusClientClosed || cw.status == 0 && ctx.Err() != nil:
		return nil, fmt.Errorf("call to cluster %s: %w", c.name, context.Cause(ctx))
	case aborted && !cw.full && ctx.Err() != nil:
		return nil, fmt.Errorf("call to cluster %s: body cut short: %w", c.name, context.Cause(ctx))
	case aborted && !cw.full && f.deadlineNs != 0 && !time.Now().Before(f.callDeadline()):
		// The call's deadline cut the body short. h1client ends the read at
		// that deadline itself, which can be a moment before ctx's own timer
		// fires: the call timed out either way, the upstream did nothing wrong.
		return nil, fmt.Errorf("%w: call to cluster %s: body cut short at the call's deadline", composer.ErrTimeout, c.name)
	case aborted && !cw.full:
		return nil, fmt.Errorf("call to cluster %s: upstream body cut short", c.name)
	case cw.status == 0:
		return nil, fmt.Errorf("call to cluster %s: no response", c.name)
	}
	return &composer.Response{Status: cw.status, Header: cw.h, Body: io.NopCloser(bytes.NewReader(cw.body.Bytes()))}, nil
}

// runForwarding runs f and reports whether it aborted the response
// (the panic with http.ErrAbortHandler that a handler uses for that).
func runForwarding(f *forwarding) (aborted bool) {
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler { //nolint:errorlint // the sentinel itself is the panic value
				panic(v)
			}
			aborted = true
		}
	}()
	f.run(time.Time{})
	return false
}

// localReplyError maps a local reply the proxy gave for a call to the
// composer's sentinel errors.
func localReplyError(lr *localReply) error {
	msg := lr.detail
	if msg == "" {
		msg = reasonInfo[lr.reason].text
	}
	var sentinel error
	switch lr.reason {
	case ReasonBreakerOpen, ReasonOverflow:
		sentinel = composer.ErrBreakerOpen
	case ReasonUpstreamTimeout:
		sentinel = composer.ErrTimeout
	case ReasonNoHealthyUpstream, ReasonUpstreamConnectFailure:
		sentinel = composer.ErrConnect
	default:
		return fmt.Errorf("%s: %s", lr.reason, msg)
	}
	return fmt.Errorf("%w: %s", sentinel, msg)
}

// captureWriter is the http.ResponseWriter a composition call's
// forwarding writes to: it keeps the final status, headers and up to limit
// body bytes. 1xx responses are dropped.
type captureWriter struct {
	h      http.Header
	status int
	body   bytes.Buffer
	limit  int64
	full   bool
}

func (w *captureWriter) Header() http.Header { return w.h }

func (w *captureWriter) WriteHeader(code int) {
	if code < 200 || w.status != 0 {
		return
	}
	w.status = code
}

func (w *captureWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if room := w.limit - int64(w.body.Len()); int64(len(p)) > room {
		w.body.Write(p[:max(room, 0)])
		w.full = true
		return int(max(room, 0)), errCaptureFull
	}
	return w.body.Write(p)
}

// Flush is a no-op: the body is kept whole until the call ends.
func (w *captureWriter) Flush() {}

// serveComposite answers r with rt's composition. Path parameters are the
// named groups of the route's path regex, matched against the decoded path
// as routing did; the composer escapes each as one path segment when it
// substitutes it. r itself is not changed: the values go on a shallow copy,
// and so does its header without the hop-by-hop fields.
func (p *Proxy) serveComposite(w http.ResponseWriter, r *http.Request, rt *route, start time.Time) {
	ctx := r.Context()
	if rt.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, rt.timeout)
		defer cancel()
	}
	// One request id for the composite request and every call it makes
	// (Do sets it on a call that has none): the client's, or one made
	// here, which the access log is told, as for a forwarded request.
	// The calls are made for the client: X-Forwarded-For names it.
	caller := &compositeCaller{remoteAddr: r.RemoteAddr}
	if ids := r.Header[hdrRequestID]; !emptyField(ids) {
		caller.requestID = ids[0]
	} else {
		caller.requestID = newRequestID()
		if rr, ok := w.(RequestIDRecorder); ok {
			rr.RecordRequestID(caller.requestID)
		}
	}
	ctx = context.WithValue(ctx, compositeCaller{}, caller)
	in := r.WithContext(ctx)
	if _, ok := r.Header["Connection"]; ok {
		// The fields the client's Connection names are for this hop
		// (RFC 9110 §7.6.1): neither forward_headers nor a {header.*}
		// reference may carry them on to a call.
		in.Header = r.Header.Clone()
		stripRequestHeader(in.Header, nil)
	}
	if re := rt.match.pathRe; re != nil {
		if m := re.FindStringSubmatch(r.URL.Path); m != nil {
			for i, name := range re.SubexpNames() {
				if name != "" && i < len(m) {
					in.SetPathValue(name, m[i])
				}
			}
		}
	}
	sw := &compositeWriter{ResponseWriter: w, edit: &rt.respHeaders}
	defer func() {
		st := sw.status
		if st == 0 && r.Context().Err() != nil {
			st = statusClientClosed
		}
		rt.localStats.record(st, p.now().Sub(start).Seconds())
	}()
	rt.compose.ServeHTTP(sw, in)
}

// compositeWriter applies the route's response header edits to the
// composed response and remembers its status for the route metrics.
type compositeWriter struct {
	http.ResponseWriter
	edit   *headerEdit
	status int
}

func (w *compositeWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
		if !w.edit.empty() {
			w.edit.apply(w.ResponseWriter.Header())
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *compositeWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *compositeWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

var (
	_ composer.Backend    = (*composeBackend)(nil)
	_ http.ResponseWriter = (*captureWriter)(nil)
	_ http.Flusher        = (*captureWriter)(nil)
)
