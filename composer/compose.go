package composer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Options are the parts of a Composition that are not config.
type Options struct {
	// Name labels the composition's metrics (the route's name). Empty: "default".
	Name string
	// Registry receives the outrigger_composer_* metrics. Compositions on the same
	// registry share the collectors, and those of the same Name the series;
	// DeleteSeries deletes those a reload no longer uses. Nil: metrics are
	// kept but not registered.
	Registry prometheus.Registerer
	// Now is the clock of the result cache. Nil: time.Now.
	Now func() time.Time
	// CacheMaxEntries bounds the result cache of this composition. Zero: 1024.
	CacheMaxEntries int
	// CacheMaxBytes bounds the bytes held by the result cache. Zero: 32 MiB.
	CacheMaxBytes int64
}

// Composition serves one composite endpoint. It is safe for concurrent use and
// holds no goroutine between requests. Build a new one on config reload; the
// old one keeps serving the requests it has.
type Composition struct {
	name    string
	plan    *plan
	backend Backend
	now     func() time.Time
	cache   *resultCache // nil when no call caches
	m       *metrics
	series  *compositionSeries
}

// New validates spec (without a cluster check: the proxy checks clusters with
// Spec.Validate when it loads config) and compiles it.
func New(spec Spec, backend Backend, opts Options) (*Composition, error) {
	if backend == nil {
		return nil, errors.New("composer: nil backend")
	}
	p, err := compile(spec, nil)
	if err != nil {
		return nil, fmt.Errorf("composer: invalid composition: %w", err)
	}
	m, err := newMetrics(opts.Registry)
	if err != nil {
		return nil, fmt.Errorf("composer: %w", err)
	}
	c := &Composition{name: opts.Name, plan: p, backend: backend, now: opts.Now, m: m}
	if c.name == "" {
		c.name = "default"
	}
	if c.now == nil {
		c.now = time.Now
	}
	c.series = m.seriesOf(c.name, p)
	for _, cp := range p.calls {
		if cp.cacheTTL > 0 {
			n, b := opts.CacheMaxEntries, opts.CacheMaxBytes
			if n <= 0 {
				n = 1024
			}
			if b <= 0 {
				b = 32 << 20
			}
			c.cache = newResultCache(n, b)
			break
		}
	}
	return c, nil
}

// Name returns the composition's metric label.
func (c *Composition) Name() string { return c.name }

// errRequiredFailed cancels the remaining calls once a required call
// failed. It is a context.Canceled: a Backend that returns its context's
// cause (the proxy's does) has the calls it ended reported as canceled,
// not as upstream errors that could be taken for the request's own.
var errRequiredFailed = fmt.Errorf("a required call failed: %w", context.Canceled)

// run is the state of one composite request.
type run struct {
	c        *Composition
	in       *http.Request
	query    url.Values
	body     any             // the incoming JSON body, when the plan uses it
	deadline context.Context // the overall deadline
	ctx      context.Context // deadline, also canceled when a required call fails
	cancel   context.CancelCauseFunc
	sem      chan struct{}
	budget   atomic.Int64 // bytes left of max_total_bytes
	res      []callResult
	done     []chan struct{}
}

// callResult is written only by the call's own goroutine, and read by others
// after done[i] is closed.
type callResult struct {
	ok         bool
	value      any
	header     http.Header // pass-through headers of this call
	status     int         // backend status when there was a response
	reason     Reason
	httpStatus int
	detail     string
	dependency string // for ReasonDependency
	// errBody and errHeader keep a non-2xx answer for pass-through.
	errBody     []byte
	errHeader   http.Header
	fromRequest bool // ReasonInvalidValue caused by the incoming request
	ran         bool
	elapsed     time.Duration
}

// ServeHTTP runs the composition for r. Path parameters are read with
// r.PathValue: the proxy's router sets them (http.ServeMux does for its
// patterns; another router calls r.SetPathValue for each) before calling.
func (c *Composition) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	p := c.plan
	deadline, cancelDeadline := context.WithTimeout(r.Context(), p.limits.deadline())
	defer cancelDeadline()
	ctx, cancel := context.WithCancelCause(deadline)
	defer cancel(nil)
	rn := &run{
		c: c, in: r, query: r.URL.Query(), deadline: deadline, ctx: ctx, cancel: cancel,
		sem:  make(chan struct{}, p.limits.maxConcurrency()),
		res:  make([]callResult, len(p.calls)),
		done: make([]chan struct{}, len(p.calls)),
	}
	rn.budget.Store(p.limits.maxTotalBytes())
	if p.usesBody {
		if status, err := rn.readIncoming(w); err != nil {
			result := resultCanceled
			if !clientGone(r) {
				code := ErrorBadRequest
				switch status {
				case http.StatusRequestEntityTooLarge:
					code = ErrorRequestTooLarge
				case http.StatusRequestTimeout:
					code = ErrorRequestTimeout
				}
				writeError(w, status, errorBody{Error: code, Message: err.Error()})
				result = resultError
			}
			c.series.requests[result].Inc()
			c.series.duration.Observe(time.Since(start).Seconds())
			return
		}
	}
	for i := range rn.done {
		rn.done[i] = make(chan struct{})
	}
	var wg sync.WaitGroup
	for _, level := range p.levels {
		for _, i := range level {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rn.exec(i)
			}()
		}
	}
	wg.Wait()
	if clientGone(r) {
		// No one reads the answer, and writing one would have the
		// server's access log and metrics record a status the client
		// never got: a 502 for the calls its leaving canceled.
		c.observe(rn, resultCanceled, time.Since(start))
		return
	}
	result := rn.respond(w)
	c.observe(rn, result, time.Since(start))
}

// clientGone reports whether r's context was canceled (the client went
// away, or the server closed its connection), not ended by a deadline:
// a router's timeout on the request is a deadline, answered as one.
func clientGone(r *http.Request) bool {
	return errors.Is(r.Context().Err(), context.Canceled)
}

func (c *Composition) observe(rn *run, out result, d time.Duration) {
	s := c.series
	s.requests[out].Inc()
	s.duration.Observe(d.Seconds())
	for i, cp := range c.plan.calls {
		res, cs := &rn.res[i], &s.calls[i]
		if res.ran {
			cs.duration.Observe(res.elapsed.Seconds())
		}
		if !res.ok {
			// A call fails with one of the Reason constants, all in
			// reasons: none goes uncounted.
			if k := reasonIndex(res.reason); k >= 0 {
				cs.failures[k].Inc()
			}
			if out == resultPartial && cp.optional {
				cs.partial.Inc()
			}
		}
	}
}

// exec runs call i once its dependencies are done.
func (rn *run) exec(i int) {
	defer close(rn.done[i])
	cp := rn.c.plan.calls[i]
	res := &rn.res[i]
	for _, d := range cp.deps {
		select {
		case <-rn.done[d]:
		case <-rn.ctx.Done():
			rn.fail(res, rn.ctxReason(), nil)
			return
		}
	}
	for _, d := range cp.deps {
		if !rn.res[d].ok {
			res.reason, res.dependency = ReasonDependency, rn.c.plan.calls[d].name
			res.detail = fmt.Sprintf("call %q did not succeed", res.dependency)
			rn.failed(cp)
			return
		}
	}
	start := time.Now()
	if cp.forEach != nil {
		rn.fanOut(cp, res)
	} else {
		rn.single(cp, res, nil, nil)
	}
	res.ran, res.elapsed = true, time.Since(start)
	if !res.ok {
		rn.failed(cp)
	}
}

// failed cancels the rest of the request when a required call failed.
func (rn *run) failed(cp *callPlan) {
	if !cp.optional {
		rn.cancel(errRequiredFailed)
	}
}

func (rn *run) fail(res *callResult, reason Reason, err error) {
	res.ok, res.reason = false, reason
	if res.httpStatus == 0 && reason != ReasonUpstreamStatus {
		res.httpStatus = statusFor(reason)
	}
	if err != nil {
		res.detail = err.Error()
	}
}

// ctxReason says why the request context ended.
func (rn *run) ctxReason() Reason {
	if errors.Is(context.Cause(rn.ctx), errRequiredFailed) {
		return ReasonCanceled
	}
	if errors.Is(rn.deadline.Err(), context.DeadlineExceeded) {
		return ReasonDeadline
	}
	return ReasonCanceled
}

// single makes one (possibly fan-out element or batch) call and decodes its result.
func (rn *run) single(cp *callPlan, res *callResult, each any, batch batchValues) {
	req, err := rn.render(cp, each, batch)
	if err != nil {
		rn.renderFailed(res, err)
		return
	}
	rn.call(rn.ctx, cp, req, res)
}

func (rn *run) renderFailed(res *callResult, err error) {
	var re *renderErr
	if errors.As(err, &re) {
		res.fromRequest = re.fromRequest
	}
	rn.fail(res, ReasonInvalidValue, err)
}

// readIncoming reads and parses the incoming JSON body within max_request_bytes
// and the deadline. It returns the status to answer with when the body cannot
// be used.
func (rn *run) readIncoming(w http.ResponseWriter) (int, error) {
	max := rn.c.plan.limits.maxRequestBytes()
	// A read of the body watches no context: a client that sends part of
	// it and then nothing would hold the request past any deadline. The
	// server's read deadline ends such a read (a writer without read
	// deadlines is not reading from a client).
	rc := http.NewResponseController(w)
	if dl, ok := rn.deadline.Deadline(); ok && rc.SetReadDeadline(dl) == nil {
		defer func() { _ = rc.SetReadDeadline(time.Time{}) }()
	}
	b, err := io.ReadAll(io.LimitReader(rn.in.Body, max+1))
	if err != nil {
		if rn.deadline.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
			return http.StatusRequestTimeout, errors.New("request body not received before the deadline")
		}
		return http.StatusBadRequest, fmt.Errorf("read request body: %w", err)
	}
	if int64(len(b)) > max {
		return http.StatusRequestEntityTooLarge, fmt.Errorf("request body larger than max_request_bytes (%d)", max)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&rn.body); err != nil {
		return http.StatusBadRequest, fmt.Errorf("request body is not JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return http.StatusBadRequest, errors.New("request body: data after the JSON value")
	}
	return 0, nil
}

// resolver returns the value of a reference for this request.
func (rn *run) resolver(each any, batch batchValues) resolver {
	return func(r *ref) (any, bool) {
		switch r.kind {
		case refPathParam:
			return rn.in.PathValue(r.name), true
		case refQuery:
			return rn.query.Get(r.name), true
		case refHeader:
			return rn.in.Header.Get(r.name), true
		case refBody:
			if r.path == nil {
				return rn.body, rn.body != nil
			}
			return r.path.getOne(rn.body)
		case refEach:
			if batch != nil {
				return batch, true
			}
			if r.path == nil {
				return each, each != nil
			}
			return r.path.getOne(each)
		}
		j := rn.c.plan.byName[r.name]
		dep := &rn.res[j]
		if !dep.ok {
			return nil, false
		}
		if r.path == nil {
			return dep.value, true
		}
		return r.path.getOne(dep.value)
	}
}

// render builds the backend request. Every substituted value is escaped for
// where it goes; the cluster and the literal path come from config only.
func (rn *run) render(cp *callPlan, each any, batch batchValues) (*Request, error) {
	resolve := rn.resolver(each, batch)
	path, err := cp.path.render(escPath, resolve, cp.batchSep)
	if err != nil {
		return nil, err
	}
	// A literal next to a value could still form a dot segment ("/a/.{x}" with
	// x="."); values cannot contain '/', so the segments seen here are final.
	for _, seg := range strings.Split(path, "/") {
		if seg == "." || seg == ".." {
			return nil, fmt.Errorf("rendered path %q contains a dot segment", path)
		}
	}
	// Without Accept-Encoding any coding is acceptable (RFC 9110
	// §12.5.3): the composer decodes bodies as JSON, so it asks for them
	// unencoded.
	req := &Request{Cluster: cp.cluster, Method: cp.method, Path: path, Header: http.Header{"Accept-Encoding": identity}}
	if len(cp.query) > 0 {
		var q strings.Builder
		for i, kv := range cp.query {
			v, err := kv.val.render(escQuery, resolve, cp.batchSep)
			if err != nil {
				return nil, err
			}
			if i > 0 {
				q.WriteByte('&')
			}
			q.WriteString(url.QueryEscape(kv.key))
			q.WriteByte('=')
			q.WriteString(v)
		}
		req.RawQuery = q.String()
	}
	for _, h := range rn.c.plan.fwd {
		if vs := rn.in.Header.Values(h); len(vs) > 0 {
			req.Header[h] = append([]string(nil), vs...)
		}
	}
	for _, kv := range cp.headers {
		v, err := kv.val.render(escHeader, resolve, cp.batchSep)
		if err != nil {
			return nil, err
		}
		// A value's edge whitespace is not part of it (HTTP/1.1 drops
		// it) and makes an HTTP/2 message malformed (RFC 9113 §8.2.1):
		// a referenced " x " goes as "x" to either.
		req.Header.Set(kv.key, strings.Trim(v, " \t"))
	}
	if cp.body != nil {
		v, err := cp.body.render(resolve, cp.batchSep)
		if err != nil {
			return nil, err
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("encode body: %w", err)
		}
		req.Body = b
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}

// identity is every call's Accept-Encoding. Shared: no one writes a
// request's header values.
var identity = []string{"identity"}

// perRequestHeaders differ on every request without changing the answer
// (tracing and request ids). They are left out of the cache key, or forwarding
// them would make every lookup a miss.
var perRequestHeaders = map[string]bool{
	"Traceparent": true, "Tracestate": true, "Baggage": true, "X-Request-Id": true,
	"B3": true, "X-B3-Traceid": true, "X-B3-Spanid": true, "X-B3-Parentspanid": true,
	"X-B3-Sampled": true, "X-B3-Flags": true, "X-Cloud-Trace-Context": true, "Uber-Trace-Id": true,
}

// cacheKey identifies a rendered request. It also de-duplicates fan-out
// requests, which differ only by the element, never by per-request headers.
func cacheKey(req *Request) string {
	var b strings.Builder
	b.WriteString(req.Cluster)
	b.WriteByte(0)
	b.WriteString(req.Method)
	b.WriteByte(0)
	b.WriteString(req.Path)
	b.WriteByte('?')
	b.WriteString(req.RawQuery)
	for _, k := range sortedHeaderKeys(req.Header) {
		if perRequestHeaders[k] {
			continue
		}
		for _, v := range req.Header[k] {
			b.WriteByte(0)
			b.WriteString(k)
			b.WriteByte(':')
			b.WriteString(v)
		}
	}
	b.WriteByte(0)
	b.Write(req.Body)
	return b.String()
}

func sortedHeaderKeys(h http.Header) []string {
	m := make(map[string]any, len(h))
	for k := range h {
		m[k] = nil
	}
	return sortedAnyKeys(m)
}

var _ http.Handler = (*Composition)(nil)
