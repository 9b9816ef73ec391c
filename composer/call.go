package composer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// call makes one backend request (or answers it from the cache) on ctx,
// the request's or a fan-out's, reads its body within the byte caps and
// decodes it into res.
func (rn *run) call(ctx context.Context, cp *callPlan, req *Request, res *callResult) {
	c := rn.c
	var key string
	if cp.cacheTTL > 0 && c.cache != nil {
		// Keyed by the call too: what a call passes on (pass_headers) and
		// may read (max_response_bytes) are its own, so two calls that
		// render the same request do not answer from each other's entries.
		key = cp.name + "\x00" + cacheKey(req)
		if e, hit := c.cache.get(key, c.now()); hit {
			c.series.calls[cp.idx].hit.Inc()
			if rn.budget.Add(-int64(len(e.body))) < 0 {
				rn.fail(res, ReasonTotalTooLarge, fmt.Errorf("the request's total byte budget (%d) ran out", rn.c.plan.limits.maxTotalBytes()))
				return
			}
			// Entries are shared by requests: the header map is cloned because the
			// response writer and fan-out merging may write to it.
			rn.decode(res, e.body, e.status, e.header.Clone())
			return
		}
		c.series.calls[cp.idx].miss.Inc()
	}

	select {
	case rn.sem <- struct{}{}:
	case <-ctx.Done():
		reason := ReasonCanceled // a fan-out's element failed
		if rn.ctx.Err() != nil {
			reason = rn.ctxReason()
		}
		rn.fail(res, reason, nil)
		return
	}
	defer func() { <-rn.sem }()
	// What is left of the budget now bounds what the call may read, as its
	// cap does (a Backend that buffers the body reads no further).
	req.MaxResponseBytes = min(cp.maxBytes, max(rn.budget.Load(), 0))

	if cp.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cp.timeout)
		defer cancel()
	}
	resp, err := c.backend.Do(ctx, req)
	if err == nil && resp == nil {
		err = errors.New("backend returned neither a response nor an error")
	}
	if err != nil {
		rn.fail(res, rn.errReason(err), err)
		return
	}
	if resp.Body == nil {
		resp.Body = http.NoBody
	}
	defer resp.Body.Close()
	res.status = resp.Status
	if resp.Status < 200 || resp.Status > 299 {
		res.httpStatus = resp.Status
		if reason := localReplyReason(resp.Header); reason != "" {
			rn.fail(res, reason, fmt.Errorf("%s: the proxy answered %d (%s)", cp.cluster, resp.Status, resp.Header.Get(HeaderError)))
			return
		}
		if cp.passErrors || rn.c.plan.passThrough {
			// Keep the answer to pass it through; read within the same caps.
			if body, reason, err := rn.readBody(resp.Body, cp.maxBytes); reason == "" {
				res.errBody, res.errHeader = body, resp.Header.Clone()
			} else {
				rn.fail(res, reason, err)
				return
			}
		}
		rn.fail(res, ReasonUpstreamStatus, fmt.Errorf("%s answered %d", cp.cluster, resp.Status))
		return
	}
	if ce := resp.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		// Asked for unencoded and answered encoded anyway: the bytes
		// are not JSON, whatever they decode to.
		rn.fail(res, ReasonInvalidJSON, fmt.Errorf("%s answered with content-encoding %q, not the identity the call asked for", cp.cluster, ce))
		return
	}
	body, reason, err := rn.readBody(resp.Body, cp.maxBytes)
	if reason != "" {
		rn.fail(res, reason, err)
		return
	}
	hdr := pick(resp.Header, cp.passHeaders)
	if rn.decode(res, body, resp.Status, hdr) && key != "" {
		c.cache.put(&cacheEntry{key: key, body: body, header: hdr, status: resp.Status, expires: c.now().Add(cp.cacheTTL)})
	}
}

// errReason classifies a call error, telling the composition's own deadline and
// cancellation apart from the call's timeout.
func (rn *run) errReason(err error) Reason {
	if rn.ctx.Err() != nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || ClassifyError(err) == ReasonTimeout) {
		return rn.ctxReason()
	}
	reason := ClassifyError(err)
	// A Backend may end the call at the composition's deadline with a timer
	// of its own (the proxy's connection deadline), which can fire a moment
	// before the deadline's context does: by the clock, it is the deadline.
	if dl, ok := rn.deadline.Deadline(); ok && reason == ReasonTimeout && !time.Now().Before(dl) {
		return ReasonDeadline
	}
	return reason
}

// readStart is the first buffer size for a body; it doubles up to the cap.
// Most composed bodies are small: starting large costs every call.
const readStart = 2 << 10

// readBody reads at most max bytes of body, charging each chunk to the request's
// total budget. Nothing beyond max+1 bytes is read: a larger body fails with
// response_too_large without being buffered.
func (rn *run) readBody(body io.Reader, max int64) ([]byte, Reason, error) {
	lr := io.LimitReader(body, max+1)
	buf := make([]byte, 0, min(max+1, readStart))
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
			if int64(cap(buf)) > max+1 {
				buf = buf[: len(buf) : max+1]
			}
		}
		n, err := lr.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if n > 0 && rn.budget.Add(-int64(n)) < 0 {
			return nil, ReasonTotalTooLarge, fmt.Errorf("the request's total byte budget (%d) ran out", rn.c.plan.limits.maxTotalBytes())
		}
		if int64(len(buf)) > max {
			return nil, ReasonTooLarge, fmt.Errorf("response larger than %d bytes", max)
		}
		if err == io.EOF {
			return buf, "", nil
		}
		if err != nil {
			return nil, rn.errReason(err), fmt.Errorf("read response: %w", err)
		}
	}
}

// decode parses a 2xx body; an empty body is null.
func (rn *run) decode(res *callResult, body []byte, status int, hdr http.Header) bool {
	var v any
	if len(bytes.TrimSpace(body)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			rn.fail(res, ReasonInvalidJSON, err)
			return false
		}
		if _, err := dec.Token(); err != io.EOF {
			rn.fail(res, ReasonInvalidJSON, errors.New("data after the JSON value"))
			return false
		}
	}
	res.ok, res.value, res.status, res.header = true, v, status, hdr
	return true
}

func pick(h http.Header, names []string) http.Header {
	if len(names) == 0 {
		return nil
	}
	out := http.Header{}
	for _, n := range names {
		if vs := h.Values(n); len(vs) > 0 {
			out[n] = append([]string(nil), vs...)
		}
	}
	return out
}

// fanOut runs a for_each call: one request per distinct element (identical
// rendered requests are made once), or one batched request.
func (rn *run) fanOut(cp *callPlan, res *callResult) {
	limit := rn.c.plan.limits.maxFanOut()
	src := &rn.res[cp.forEach.call]
	var elems []any
	seen := map[string]bool{}
	for _, v := range cp.forEach.values(src.value) {
		k, err := json.Marshal(v)
		if err != nil || seen[string(k)] {
			continue
		}
		seen[string(k)] = true
		elems = append(elems, v)
	}
	if len(elems) == 0 {
		res.ok, res.value = true, []any{}
		return
	}
	if cp.batch {
		if len(elems) > limit {
			rn.fail(res, ReasonFanOut, fmt.Errorf("%d distinct elements at %s, max_fan_out is %d", len(elems), cp.forEach.raw, limit))
			return
		}
		for _, e := range elems {
			if _, ok := scalarText(e); !ok {
				rn.fail(res, ReasonInvalidValue, fmt.Errorf("batch element %s is not a string, number or boolean", mustJSON(e)))
				return
			}
		}
		rn.single(cp, res, nil, batchValues(elems))
		return
	}
	var reqs []*Request
	index := map[string]bool{}
	for _, e := range elems {
		req, err := rn.render(cp, e, nil)
		if err != nil {
			rn.renderFailed(res, err)
			return
		}
		k := cacheKey(req)
		if index[k] {
			continue
		}
		index[k] = true
		reqs = append(reqs, req)
		if len(reqs) > limit { // checked as requests are rendered: no more than limit+1 are built
			rn.fail(res, ReasonFanOut, fmt.Errorf("more than %d distinct calls for %s, max_fan_out is %d", limit, cp.forEach.raw, limit))
			return
		}
	}
	// The first element that fails fails the call: the others still in
	// flight or waiting for their turn are canceled, not waited for.
	ctx, cancel := context.WithCancelCause(rn.ctx)
	defer cancel(nil)
	parts := make([]callResult, len(reqs))
	var wg sync.WaitGroup
	for i, req := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rn.call(ctx, cp, req, &parts[i])
			if !parts[i].ok {
				cancel(errElementFailed)
			}
		}()
	}
	wg.Wait()
	// The call reports the first element, in order, that failed by
	// itself, not one canceled because another failed.
	failed := -1
	for i := range parts {
		if p := &parts[i]; !p.ok && (failed < 0 || parts[failed].reason == ReasonCanceled && p.reason != ReasonCanceled) {
			failed = i
		}
	}
	if failed >= 0 {
		*res = parts[failed]
		return
	}
	values := make([]any, len(parts))
	for i := range parts {
		p := &parts[i]
		values[i] = p.value
		for k, vs := range p.header { // the first element that has a header wins
			if res.header == nil {
				res.header = http.Header{}
			}
			if _, have := res.header[k]; !have {
				res.header[k] = vs
			}
		}
	}
	res.ok, res.value, res.status = true, values, http.StatusOK
}

// errElementFailed cancels the other elements of a fan-out when one
// failed. A context.Canceled, as errRequiredFailed is.
var errElementFailed = fmt.Errorf("another element of the fan-out failed: %w", context.Canceled)

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
