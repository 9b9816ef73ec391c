package composer

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
)

// callReport is one entry of the partial-response section and of error bodies.
type callReport struct {
	Name       string `json:"name"`
	Status     string `json:"status"` // failed | skipped
	Reason     Reason `json:"reason"`
	HTTPStatus int    `json:"http_status,omitempty"`
	Dependency string `json:"dependency,omitempty"`
}

// errorBody is the JSON body of a failed composite request.
type errorBody struct {
	Error      string `json:"error"`
	Call       string `json:"call,omitempty"`
	Reason     Reason `json:"reason,omitempty"`
	HTTPStatus int    `json:"http_status,omitempty"`
	Message    string `json:"message"`
}

func (rn *run) report(i int) callReport {
	res := &rn.res[i]
	r := callReport{Name: rn.c.plan.calls[i].name, Status: "failed", Reason: res.reason, HTTPStatus: res.httpStatus}
	if res.reason == ReasonDependency {
		r.Status, r.HTTPStatus, r.Dependency = "skipped", 0, res.dependency
	}
	return r
}

// respond writes the composite response and returns the request's result.
func (rn *run) respond(w http.ResponseWriter) result {
	p := rn.c.plan
	if i, ok := rn.primaryFailure(); ok {
		rn.writeFailure(w, i)
		return resultError
	}
	results := make([]any, len(p.calls))
	oks := make([]bool, len(p.calls))
	names := make([]string, len(p.calls))
	var missing []int
	for i, cp := range p.calls {
		results[i], oks[i], names[i] = rn.res[i].value, rn.res[i].ok, cp.name
		if !oks[i] {
			missing = append(missing, i)
		}
	}
	out, err := p.out.shape(results, oks, names)
	if err != nil {
		var ce *conflictError
		if errors.As(err, &ce) {
			writeError(w, http.StatusBadGateway, errorBody{Error: ErrorConflict, Message: err.Error()})
			return resultError
		}
		writeError(w, http.StatusBadGateway, errorBody{Error: ErrorCallFailed, Message: err.Error()})
		return resultError
	}
	h := w.Header()
	if len(missing) > 0 {
		reports := make([]callReport, len(missing))
		names := make([]string, len(missing))
		for k, i := range missing {
			reports[k], names[k] = rn.report(i), p.calls[i].name
		}
		h.Set(HeaderPartial, strings.Join(names, ","))
		if obj, isObj := out.(map[string]any); isObj && !p.out.headerOnly {
			obj[p.out.partialField] = map[string]any{"partial": true, "calls": reports}
		}
	}
	body, err := encodeCapped(out, p.limits.maxTotalBytes())
	if err != nil {
		h.Del(HeaderPartial)
		msg := "composed body exceeds max_total_bytes"
		if !errors.Is(err, errCapExceeded) {
			msg = "encode composed body: " + err.Error()
		}
		writeError(w, http.StatusBadGateway, errorBody{Error: ErrorTooLarge, Message: msg})
		return resultError
	}
	for i := range p.calls {
		for k, vs := range rn.res[i].header {
			if _, have := h[k]; !have {
				h[k] = vs
			}
		}
	}
	status := http.StatusOK
	// Only a result's status passes through: a failed optional call's status
	// came with no body to pass, and the response is partial.
	if p.passThrough && rn.res[0].ok && rn.res[0].status != 0 {
		status = rn.res[0].status
	}
	if !bodyAllowed(status) { // a passed-through 204 or 304
		w.WriteHeader(status)
		return resultOK
	}
	// The body is the composition's own: a call's validators describe
	// that call's body, not it. Its ETag is made from its bytes, and a
	// GET or HEAD whose If-None-Match names it is answered 304.
	h.Del("Last-Modified")
	etag := entityTag(body)
	h.Set("Etag", etag)
	if m := rn.in.Method; (m == http.MethodGet || m == http.MethodHead) && status == http.StatusOK &&
		noneMatch(rn.in.Header.Values("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return resultOK
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
	if len(missing) > 0 {
		return resultPartial
	}
	return resultOK
}

// entityTag is the strong entity tag of a composed body: 128 bits of its
// SHA-256, so that equal bodies have equal tags and different ones, in
// practice, never do.
func entityTag(body []byte) string {
	sum := sha256.Sum256(body)
	var b [24]byte // a quote, 22 characters of base64, a quote
	t := append(b[:0], '"')
	t = base64.RawURLEncoding.AppendEncode(t, sum[:16])
	return string(append(t, '"'))
}

// noneMatch reports whether an If-None-Match field (its lines) names etag
// or is "*", by the weak comparison RFC 9110 §13.1.2 asks for: a W/
// prefix is ignored. A malformed entry matches nothing.
func noneMatch(lines []string, etag string) bool {
	for _, line := range lines {
		for _, tag := range strings.Split(line, ",") {
			tag = strings.TrimSpace(tag)
			if tag == "*" || strings.TrimPrefix(tag, "W/") == etag {
				return true
			}
		}
	}
	return false
}

// primaryFailure picks the required call whose failure the response reports:
// the first, in declaration order, that failed by itself (not canceled because
// another call failed, not skipped), else the first failed required call.
func (rn *run) primaryFailure() (int, bool) {
	first := -1
	for i, cp := range rn.c.plan.calls {
		res := &rn.res[i]
		if cp.optional || res.ok {
			continue
		}
		if first < 0 {
			first = i
		}
		if res.reason != ReasonCanceled && res.reason != ReasonDependency {
			return i, true
		}
	}
	return first, first >= 0
}

func (rn *run) writeFailure(w http.ResponseWriter, i int) {
	p := rn.c.plan
	cp, res := p.calls[i], &rn.res[i]
	if res.reason == ReasonUpstreamStatus && res.errHeader != nil && (cp.passErrors || p.passThrough) {
		h := w.Header()
		for _, k := range []string{"Content-Type", "Retry-After", "Www-Authenticate", "Location", "Etag", "Cache-Control"} {
			if v := res.errHeader.Values(k); len(v) > 0 {
				h[k] = v
			}
		}
		if !bodyAllowed(res.status) {
			w.WriteHeader(res.status)
			return
		}
		h.Set("Content-Length", strconv.Itoa(len(res.errBody)))
		w.WriteHeader(res.status)
		_, _ = w.Write(res.errBody)
		return
	}
	if res.reason == ReasonInvalidValue && res.fromRequest {
		writeError(w, http.StatusBadRequest, errorBody{Error: ErrorBadRequest, Call: cp.name, Reason: res.reason, Message: res.detail})
		return
	}
	status := statusFor(res.reason)
	writeError(w, status, errorBody{
		Error: ErrorCallFailed, Call: cp.name, Reason: res.reason, HTTPStatus: res.httpStatus,
		Message: "required call " + strconv.Quote(cp.name) + " failed: " + string(res.reason) + detailSuffix(res.detail),
	})
}

// bodyAllowed: RFC 9110 sections 15.3.5 and 15.4.5 forbid a body with 204 and 304.
func bodyAllowed(status int) bool {
	return status != http.StatusNoContent && status != http.StatusNotModified && status >= 200
}

func detailSuffix(d string) string {
	if d == "" {
		return ""
	}
	return " (" + d + ")"
}

func writeError(w http.ResponseWriter, status int, body errorBody) {
	b, _ := json.Marshal(body)
	h := w.Header()
	h.Set(HeaderError, body.Error)
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
