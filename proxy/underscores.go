package proxy

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// underscoreAction is a listener's headers_with_underscores, compiled:
// what becomes of a request header or trailer field whose name has an
// underscore. RFC 9110 §5.1 allows "_" in a field name, but upstreams
// that fold "_" and "-" together (CGI and WSGI, nginx with
// underscores_in_headers) read X_Forwarded_For as X-Forwarded-For, so a
// client could spoof a field the sidecar sets or a route matches on.
// This is Envoy's headers_with_underscores_action, which applies to
// request headers and trailers alike.
type underscoreAction uint8

const (
	underscoresAllow  underscoreAction = iota // forwarded as they came
	underscoresDrop                           // deleted and counted
	underscoresReject                         // the request is answered 400
)

func compileUnderscores(a config.HeadersWithUnderscores) underscoreAction {
	switch a {
	case config.HeadersWithUnderscoresDrop:
		return underscoresDrop
	case config.HeadersWithUnderscoresReject:
		return underscoresReject
	}
	return underscoresAllow
}

// applyUnderscores applies a (drop or reject) to r before it is routed:
// to its header fields, and to the trailer fields its Trailer header
// announced. Under reject it returns the name of a field that has an
// underscore (trailer: a trailer's), or "" when none has. Under drop it
// deletes each such field, counting those with a value in dropped (an
// announced name is only taken out of the announcement; its value, when
// it comes, is counted then). In both cases, when r's body can end with
// trailers, r.Body is wrapped so that the trailers that arrive with it
// are held to a as well (see underscoreTrailers).
//
// A name is looked at byte by byte, without allocating: a request
// without underscores costs one pass over its header's keys.
func applyUnderscores(a underscoreAction, r *http.Request, dropped prometheus.Counter) (name string, trailer bool) {
	for k := range r.Header {
		if strings.IndexByte(k, '_') < 0 {
			continue
		}
		if a == underscoresReject {
			return k, false
		}
		delete(r.Header, k) // deleting while ranging is safe (Go spec)
		dropped.Inc()
	}
	for k, vv := range r.Trailer {
		if strings.IndexByte(k, '_') < 0 {
			continue
		}
		if a == underscoresReject {
			return k, true
		}
		delete(r.Trailer, k)
		if vv != nil {
			// Received already: an h2c upgrade's body is read
			// before the handler has the request.
			dropped.Inc()
		}
	}
	// Trailers reach the handler in r.Trailer, filled as the body ends:
	// with HTTP/2, only when the request announced some (h2server drops
	// the others, as x/net/http2 does); with HTTP/1.1, after a chunked
	// body, announced or not.
	if r.Body != nil && r.Body != http.NoBody && (r.Trailer != nil || r.ProtoMajor == 1 && r.ContentLength < 0) {
		r.Body = &underscoreTrailers{ReadCloser: r.Body, r: r, a: a, dropped: dropped}
	}
	return "", false
}

// underscoreReply is the local reply to a request refused for the field
// name (trailer: a trailer field's).
func underscoreReply(name string, trailer bool) localReply {
	kind := "request header "
	if trailer {
		kind = "request trailer "
	}
	return localReply{reason: ReasonHeaderWithUnderscore, detail: kind + name + " has an underscore in its name"}
}

// errUnderscoreTrailer ends a request body whose trailers have a field
// with an underscore under reject: the transport then abandons the
// upstream request instead of sending the trailers.
var errUnderscoreTrailer = errors.New("request trailer field name has an underscore")

// underscoreTrailers is a request body that applies a listener's drop or
// reject to the trailer fields that come with its end. The servers fill
// Request.Trailer in the read that returns io.EOF, and the transports
// read it only after that read, to send the trailers on: so a field
// deleted here before io.EOF is returned is never sent, and an error
// returned instead of io.EOF makes the transport abandon the upstream
// request, which the forwarding then answers as rejected (see
// rejectedTrailer).
type underscoreTrailers struct {
	io.ReadCloser
	r       *http.Request
	a       underscoreAction // drop or reject
	dropped prometheus.Counter
	// rejected is the name of the field the body was rejected for; set
	// on the transport's goroutine, read on the handler's.
	rejected atomic.Pointer[string]
}

func (b *underscoreTrailers) Read(p []byte) (int, error) {
	if b.rejected.Load() != nil {
		return 0, errUnderscoreTrailer
	}
	n, err := b.ReadCloser.Read(p)
	if err != io.EOF {
		return n, err
	}
	for k := range b.r.Trailer {
		if strings.IndexByte(k, '_') < 0 {
			continue
		}
		if b.a == underscoresReject {
			b.rejected.Store(&k)
			return n, errUnderscoreTrailer
		}
		delete(b.r.Trailer, k)
		b.dropped.Inc()
	}
	return n, err
}

// rejectedTrailer returns the name of the trailer field r's body was
// rejected for, or "".
func rejectedTrailer(r *http.Request) string {
	if ut, ok := r.Body.(*underscoreTrailers); ok {
		if k := ut.rejected.Load(); k != nil {
			return *k
		}
	}
	return ""
}
