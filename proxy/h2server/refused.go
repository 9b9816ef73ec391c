package h2server

import (
	"net/url"
	"strings"
	"time"
)

// Refusal is a request the server ended itself before any handler ran,
// as Server.Refused reports it (package h1server reports its own with
// the same type). A client that sends nothing but malformed requests is
// seen only through these: no handler, and so no access log or metric
// of a handler's, ever sees them.
type Refusal struct {
	// RemoteAddr is the client's address, as a Request's RemoteAddr.
	RemoteAddr string
	// Method, Host, Path (decoded, as a Request's URL.Path, without the
	// query) and Proto are the request's as far as they were read before
	// the fault; those that were not are empty (all of them for an
	// HTTP/1.1 request line that does not parse, or an HTTP/2 header
	// block that does not decode).
	Method, Host, Path, Proto string
	// UserAgent is the request's User-Agent, when its header block was
	// read that far.
	UserAgent string
	// Status is the status answered; 0 for a stream reset (RST_STREAM
	// PROTOCOL_ERROR) that carries none.
	Status int
	// Detail says what was wrong in fixed words ("malformed header",
	// "invalid header field name"), one of a short list: the text of
	// the HTTP/1.1 answer's body after its status, or the HTTP/2 reset's
	// cause.
	Detail string
	// Bytes is the size of the answer's body.
	Bytes int
	// Duration is how long writing the answer took (HTTP/1.1); an
	// HTTP/2 answer is queued, not waited for, and has 0.
	Duration time.Duration
}

// refused reports to Server.Refused that stream id was ended before a
// handler ran, with status (0: reset) for the reason detail. f is the
// request's header block when it decoded; its fields are copied, as
// they are the connection's buffer's. sc.mu must not be held: Refused
// may log.
func (sc *serverConn) refused(f *headerBlock, status int, detail string) {
	fn := sc.srv.Refused
	if fn == nil {
		return
	}
	r := Refusal{RemoteAddr: sc.remote, Proto: "HTTP/2.0", Status: status, Detail: strings.TrimPrefix(detail, "h2server: ")}
	if f != nil {
		for _, hf := range f.PseudoFields() {
			switch hf.Name {
			case ":method":
				r.Method = strings.Clone(hf.Value)
			case ":authority":
				r.Host = strings.Clone(hf.Value)
			case ":path":
				r.Path = refusedPath(hf.Value)
			}
		}
		for _, hf := range f.RegularFields() {
			if hf.Name == "user-agent" {
				r.UserAgent = strings.Clone(hf.Value)
				break
			}
		}
	}
	fn(r)
}

// refusedPath is the path of a refused stream's :path value v as a served
// request's URL.Path has it, and as package h1server reports a refused
// request's: without the query, percent-decoded. A v that does not parse
// as a request target is kept as it is up to its '?'.
func refusedPath(v string) string {
	var u url.URL
	if v != "" && parseRequestURI(v, &u) == nil {
		return strings.Clone(u.Path)
	}
	p, _, _ := strings.Cut(v, "?")
	return strings.Clone(p)
}
