package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// Request mirroring (routes[].mirror), as Envoy's request_mirror_policies
// and Istio's VirtualService mirror: a copy of a share of a route's
// requests goes to each mirror cluster, fire and forget. The copy is the
// request as the primary cluster is sent it (after the route's
// prefix_rewrite or regex_rewrite and request_headers, with the same
// x-request-id), its Host (host_rewrite's, else the client's) with
// "-shadow" appended, and its body when that is whole within
// mirrorBodyCap. Each copy runs on a goroutine of its own through the
// same forwarding code as any request (the mirror cluster's load
// balancer, breaker, limits, outlier detection and pool), with no
// retries, bounded by the route timeout, and its response is read and
// thrown away: the client's response is the primary's alone, never
// waits for a mirror, and never shows a mirror's failure.
//
// The copies in flight are the Proxy's (mirrorRunner): bounded in
// number, and cancelled and joined by Shutdown.

// mirrorBodyCap is the largest request body copied to a mirror. A
// larger body goes to the primary as it streams and is not mirrored: a
// copy of it would be held in memory for as long as it streams.
const mirrorBodyCap = 64 << 10

// defaultMaxMirrors bounds the mirrored requests in flight per proxy;
// past it, copies are dropped. With mirrorBodyCap it bounds their
// bodies' memory (64 MiB).
const defaultMaxMirrors = 1024

// mirrorResult is what became of one copy of a request for a mirror.
type mirrorResult uint8

const (
	// mirrorSent: the mirror cluster answered, whatever its status.
	mirrorSent mirrorResult = iota
	// mirrorFailed: it did not (breaker or limit refusal, no healthy
	// endpoint, connect failure, timeout, reset, Shutdown).
	mirrorFailed
	// mirrorDroppedBody: not sent, as the body could not be copied: over
	// mirrorBodyCap, not whole when the primary's request ended, broken,
	// or a protocol switch's stream.
	mirrorDroppedBody
	// mirrorDroppedOverflow: not sent, as defaultMaxMirrors were in
	// flight or the proxy was shutting down.
	mirrorDroppedOverflow
	numMirrorResults
)

var mirrorResultNames = [numMirrorResults]string{"sent", "failed", "dropped_body", "dropped_overflow"}

// routeMirror is one compiled mirror of a route.
type routeMirror struct {
	c *cluster
	// perMillion of every million requests are copied; 1_000_000 (or
	// more): every one, without a draw.
	perMillion int
	// rt is the route as the copies see it: the route timeout (or the
	// default one when the route has none, so that a copy never lives
	// forever), its attempt count header (a copy's one attempt is 1), no
	// retries, no rewrite or header edits (the copy carries the
	// primary's).
	rt     *route
	counts [numMirrorResults]prometheus.Counter
}

// compileMirrors compiles rt's mirrors over the clusters of s. It runs
// after compileFallback: the fallback's copy of the route must not
// mirror again a request the primary mirrored.
func (p *Proxy) compileMirrors(lname string, rt *route, ms []config.Mirror, s *snapshot) ([]routeMirror, error) {
	if len(rt.clusters) == 0 {
		return nil, fmt.Errorf("only routes with cluster or weighted_clusters have a mirror")
	}
	timeout := rt.timeout
	if timeout == 0 {
		timeout = defaultRouteTimeout
	}
	out := make([]routeMirror, 0, len(ms))
	for i, mc := range ms {
		c, ok := s.clusters[mc.Cluster]
		if !ok {
			return nil, fmt.Errorf("mirror[%d].cluster: unknown cluster %q", i, mc.Cluster)
		}
		m := routeMirror{c: c, perMillion: perMillion(mc.MirrorPercent()),
			rt: &route{name: rt.name, timeout: timeout, attemptCount: rt.attemptCount, inbound: rt.inbound}}
		for r := range numMirrorResults {
			m.counts[r] = p.m.mirrored.WithLabelValues(lname, rt.name, c.name, mirrorResultNames[r])
		}
		p.m.next.mirrors[[3]string{lname, rt.name, c.name}] = struct{}{}
		out = append(out, m)
	}
	return out, nil
}

// mirrorRunner owns the goroutines of the mirrored requests in flight:
// start bounds them, stop (from Shutdown) cancels and joins them.
type mirrorRunner struct {
	// ctx is every copy's request context; stop cancels it. It is the
	// runner's own, not a caller's: a copy outlives the request it
	// copies.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	max     int  // most copies in flight
	running int  // copies in flight
	stopped bool // stop ran: no copy starts
}

func newMirrorRunner() *mirrorRunner {
	r := &mirrorRunner{max: defaultMaxMirrors}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	return r
}

// start runs fn on a goroutine of its own with the runner's context,
// unless max copies are in flight or stop ran; it reports whether fn
// runs.
func (r *mirrorRunner) start(fn func(ctx context.Context)) bool {
	r.mu.Lock()
	if r.stopped || r.running >= r.max {
		r.mu.Unlock()
		return false
	}
	r.running++
	r.wg.Add(1)
	r.mu.Unlock()
	go func() {
		defer func() {
			r.mu.Lock()
			r.running--
			r.mu.Unlock()
			r.wg.Done()
		}()
		fn(r.ctx)
	}()
	return true
}

// stop keeps further copies from starting, cancels those in flight (a
// copy so cancelled counts as failed, and is not held against its
// cluster's breaker, as a client gone) and waits for them to return.
func (r *mirrorRunner) stop() {
	r.mu.Lock()
	r.stopped = true
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
}

// setMax sets the most copies in flight (tests).
func (r *mirrorRunner) setMax(n int) {
	r.mu.Lock()
	r.max = n
	r.mu.Unlock()
}

// mirrorCopy is one request's copy for the mirrors drawn for it. Its
// body, when there is one, is gathered as the primary's attempts read
// the client's body (Read, put below every other reader of it), and the
// copies start once it is whole; until then the copy is pending, and
// the first of start and drop decides its fate.
type mirrorCopy struct {
	mirrorRequest
	to []*routeMirror

	// made is when the copy was readied: the time a gRPC call's body
	// then takes to end is charged to its grpc-timeout (see start). Wall
	// clock time, as a deadline's: Options.Now is the metrics' clock.
	made time.Time

	decided atomic.Bool
	// For a body: src is the client's body, read through Read; length
	// its declared length (-1: unknown), limit the most it may be.
	src    io.Reader
	length int64
	limit  int64
}

// mirrorRequest is what a copy's requests are made of: start hands each
// a mirrorRequest of its own, never the mirrorCopy, whose src holds the
// client's request body (and with it the client's connection, its
// buffers and its response writer) for as long as the copies take.
type mirrorRequest struct {
	p *Proxy
	s *snapshot

	method, host string
	path, raw    string // the primary's path, rewritten, and its escaped form
	query        string
	forceQuery   bool
	header       http.Header // a copy of the primary's outbound header
	grpc         bool
	// tls is the client connection's TLS state: the copy's forwarding
	// sets x-forwarded-client-cert from it, as the primary's did (it
	// removes any other, as a client's own).
	tls *tls.ConnectionState
	// body is what was read of the client's body, whole when the copy
	// starts.
	body []byte
}

// mirror draws the route's mirrors for f's request and readies a copy
// for those drawn: hdr, path and rawPath are the primary's outbound
// header and path. A request without a body is copied at once; one with
// a body once the primary's attempts have read it whole (see
// mirrorCopy). Nothing here waits: the primary goes on at once.
//
//go:noinline
func (f *forwarding) mirror(hdr http.Header, path, rawPath string) {
	p, r := f.p, f.r
	var to []*routeMirror
	for i := range f.rt.mirrors {
		m := &f.rt.mirrors[i]
		if m.perMillion >= 1_000_000 || p.intn(1_000_000) < m.perMillion {
			to = append(to, m)
		}
	}
	if len(to) == 0 {
		return
	}
	mc := &mirrorCopy{to: to, mirrorRequest: mirrorRequest{p: p, s: f.s, method: r.Method, host: shadowHost(f.mirrorHost()),
		path: path, raw: rawPath, query: r.URL.RawQuery, forceQuery: r.URL.ForceQuery,
		header: hdr.Clone(), grpc: f.grpc, tls: r.TLS}}
	if f.grpc {
		mc.made = time.Now()
	}
	// The copy's body is whole in memory when it goes: asking the
	// mirror whether to send it would only wait for its 100 Continue.
	delete(mc.header, "Expect")
	switch {
	case f.upgrade != "":
		// A protocol switch's stream is not a body that can be copied,
		// and a mirror's switch would have no one to tunnel to.
		mc.drop(mirrorDroppedBody)
	case f.touch == nil:
		mc.start()
	default:
		mc.limit = mirrorBodyCap
		if l := f.s.maxRequestBody; l > 0 && l < mc.limit {
			// A body over it is refused to the client: not copied.
			mc.limit = l
		}
		if mc.length = r.ContentLength; mc.length > mc.limit {
			mc.drop(mirrorDroppedBody)
			return
		}
		mc.src = f.touch.r
		f.touch.r = mc
		// The request ends before its body was read whole (the upstream
		// answered without reading it all, the client went away): no
		// copy. Once decided, the watch does nothing; it goes with the
		// request's context.
		context.AfterFunc(r.Context(), func() { mc.drop(mirrorDroppedBody) })
	}
}

// mirrorHost is the Host a copy is sent with, before its "-shadow":
// the route's host_rewrite, as Envoy's copies carry the primary's
// rewritten host; else the client's, auto_host_rewrite's being the
// primary's endpoint, of another cluster than the copy's.
func (f *forwarding) mirrorHost() string {
	if f.rt.hostRewrite != "" {
		return f.rt.hostRewrite
	}
	return f.r.Host
}

// Read reads the client's body for the primary, keeping a copy of it;
// when it is whole, the copies start. The primary's attempts read the
// body one Read at a time (see replayBody), so body is only ever
// touched by one goroutine until the copies start with it.
func (mc *mirrorCopy) Read(p []byte) (int, error) {
	n, err := mc.src.Read(p)
	if mc.decided.Load() {
		return n, err
	}
	if int64(len(mc.body)+n) > mc.limit {
		mc.body = nil
		mc.drop(mirrorDroppedBody)
		return n, err
	}
	mc.body = append(mc.body, p[:n]...)
	switch {
	case err == io.EOF || err == nil && mc.length >= 0 && int64(len(mc.body)) == mc.length:
		// A transport need not read on to EOF after the declared length.
		mc.start()
	case err != nil:
		mc.drop(mirrorDroppedBody)
	}
	return n, err
}

// drop counts the copy as not sent, with result res, unless it was
// decided already.
func (mc *mirrorCopy) drop(res mirrorResult) {
	if !mc.decided.CompareAndSwap(false, true) {
		return
	}
	for _, m := range mc.to {
		m.counts[res].Inc()
	}
}

// start sends the copy to each mirror drawn, on goroutines of the
// proxy's mirrorRunner, unless it was decided already.
func (mc *mirrorCopy) start() {
	if !mc.decided.CompareAndSwap(false, true) {
		return
	}
	// The grpc-timeout in the header is what the primary was left when
	// it went; a client stream's copy goes when the stream has ended,
	// and the client's deadline ran meanwhile. The header is the
	// copies' to share from here on, read only.
	if mc.grpc && !spendGRPCTimeout(mc.header, time.Since(mc.made)) {
		for _, m := range mc.to {
			m.counts[mirrorFailed].Inc()
		}
		return
	}
	req := new(mirrorRequest)
	*req = mc.mirrorRequest
	for _, m := range mc.to {
		if !mc.p.mirrors.start(func(ctx context.Context) { req.send(ctx, m) }) {
			m.counts[mirrorDroppedOverflow].Inc()
		}
	}
}

// send makes one copy's request to m's cluster and counts its result.
// Its response is read and thrown away. A panic is the proxy's bug: it
// is logged, and ends the copy, not the process.
func (mr *mirrorRequest) send(ctx context.Context, m *routeMirror) {
	p := mr.p
	defer func() {
		if v := recover(); v != nil {
			p.log.Error("mirrored request panicked", zap.String("cluster", m.c.name),
				zap.String("route", m.rt.name), zap.Any("panic", v), zap.Stack("stack"))
			m.counts[mirrorFailed].Inc()
		}
	}()
	r := &http.Request{
		Method:     mr.method,
		URL:        &url.URL{Path: mr.path, RawPath: mr.raw, RawQuery: mr.query, ForceQuery: mr.forceQuery},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		// Read, not written: each copy's forwarding copies it (see
		// outboundHeader), and finds the forwarding headers the primary
		// was given there already. With no RemoteAddr, it adds no
		// second X-Forwarded-For hop.
		Header: mr.header,
		Host:   mr.host,
		TLS:    mr.tls,
	}
	if mr.body != nil {
		r.Body = io.NopCloser(bytes.NewReader(mr.body))
		r.ContentLength = int64(len(mr.body))
	}
	r = r.WithContext(ctx)
	// Made in place on the heap, as in ServeHTTP.
	f := new(forwarding)
	f.p, f.s, f.rt, f.c, f.w, f.r, f.grpc = p, mr.s, m.rt, m.c, new(discardWriter), r, mr.grpc
	aborted := runForwarding(f)
	res := mirrorSent
	if f.local != nil || aborted || f.status == statusClientClosed {
		res = mirrorFailed
		if f.local != nil {
			p.log.Debug("mirrored request failed", zap.String("cluster", m.c.name),
				zap.String("route", m.rt.name), zap.String("reason", f.local.reason.String()))
		}
	}
	m.counts[res].Inc()
}

// shadowHost is host with "-shadow" appended to its host part, before a
// port ("api:8080" becomes "api-shadow:8080"), as Envoy marks its shadow
// requests, so that the mirror's service and logs can tell them. An
// empty host (HTTP/1.0 without Host, HTTP/1.1 with an empty one) is
// "-shadow", as Envoy's shadow writer appends it to whatever host there
// is: left empty, the copy would go with its endpoint's address, as the
// primary does, and look like a request of the mirror's own.
func shadowHost(host string) string {
	// The port begins at the last ':' after any IPv6 literal's ']'.
	if i := strings.LastIndexByte(host, ':'); i > strings.LastIndexByte(host, ']') {
		return host[:i] + "-shadow" + host[i:]
	}
	return host + "-shadow"
}

// discardWriter is the http.ResponseWriter of a mirrored request: the
// response is read and thrown away.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header {
	if w.h == nil {
		w.h = http.Header{}
	}
	return w.h
}

func (w *discardWriter) WriteHeader(int) {}

func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }

// Flush is a no-op: nothing is sent anywhere.
func (w *discardWriter) Flush() {}

var (
	_ http.ResponseWriter = (*discardWriter)(nil)
	_ http.Flusher        = (*discardWriter)(nil)
	_ io.Reader           = (*mirrorCopy)(nil)
)
