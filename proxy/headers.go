package proxy

import (
	"net"
	"net/http"
	"net/textproto"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// hopHeaders are the hop-by-hop headers of RFC 9110 §7.6.1 plus the
// non-standard ones every proxy strips (the list net/http/httputil uses).
// They describe one connection and are never forwarded.
var hopHeaders = [...]string{
	"Connection",
	"Proxy-Connection", // non-standard, sent by old user agents
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",      // canonical form of "TE"
	"Trailer", // not "Trailers", per RFC 9110 §6.6.2
	"Transfer-Encoding",
	"Upgrade",
}

// Headers the proxy reads or sets on every request.
const (
	hdrRequestID      = "X-Request-Id"
	hdrForwardedFor   = "X-Forwarded-For"
	hdrForwardedProto = "X-Forwarded-Proto"
	hdrError          = "X-Outrigger-Error"
	hdrBreaker        = "X-Outrigger-Breaker"
	hdrGRPCTimeout    = "Grpc-Timeout"
)

// copyRequestHeader copies src into a fresh header for the outbound request,
// leaving out hop-by-hop headers: first every header named by a Connection
// token (RFC 9110 §7.6.1), then the fixed list. "TE: trailers" is kept
// because gRPC requires it end to end (it tells the server that the client
// understands trailers).
func copyRequestHeader(src http.Header) http.Header {
	dst := make(http.Header, len(src)+3)
	for k, vv := range src {
		dst[k] = vv // values are not mutated; sharing the slices is safe
	}
	removeHopHeaders(dst)
	if teTrailers(src) {
		dst["Te"] = []string{"trailers"}
	}
	return dst
}

// removeHopHeaders deletes, in h, the headers named in Connection and the
// fixed hop-by-hop list.
func removeHopHeaders(h http.Header) {
	for _, f := range h["Connection"] {
		for sf := range strings.SplitSeq(f, ",") {
			if sf = textproto.TrimString(sf); sf != "" {
				delete(h, http.CanonicalHeaderKey(sf))
			}
		}
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
}

func teTrailers(h http.Header) bool {
	for _, v := range h["Te"] {
		if httpguts.HeaderValuesContainsToken([]string{v}, "trailers") {
			return true
		}
	}
	return false
}

// appendForwardedFor appends the client's IP to X-Forwarded-For, keeping
// any list an earlier proxy built (as net/http/httputil does). The new
// value goes into slot (length and capacity 1), which becomes the header's
// value slice, so a caller can give several headers' values one
// allocation.
func appendForwardedFor(h http.Header, remoteAddr string, slot []string) {
	ip, _, err := net.SplitHostPort(remoteAddr)
	if err != nil || ip == "" {
		return
	}
	prior := h[hdrForwardedFor]
	if len(prior) > 0 {
		ip = strings.Join(prior, ", ") + ", " + ip
	}
	slot[0] = ip
	h[hdrForwardedFor] = slot
}

// copyResponseHeader copies an upstream response's headers to the
// downstream writer's header map, dropping hop-by-hop headers.
func copyResponseHeader(dst, src http.Header) {
	skip := connectionTokens(src)
	for k, vv := range src {
		if isHop(k) || skip != nil && skip[k] {
			continue
		}
		if prev := dst[k]; len(prev) > 0 {
			dst[k] = append(prev[:len(prev):len(prev)], vv...)
		} else {
			// The response is the proxy's own and is dropped after
			// this copy: share its value slices instead of copying.
			dst[k] = vv
		}
	}
}

func connectionTokens(h http.Header) map[string]bool {
	c := h["Connection"]
	if len(c) == 0 {
		return nil
	}
	m := map[string]bool{}
	for _, f := range c {
		for sf := range strings.SplitSeq(f, ",") {
			if sf = textproto.TrimString(sf); sf != "" {
				m[http.CanonicalHeaderKey(sf)] = true
			}
		}
	}
	return m
}

func isHop(k string) bool {
	for _, h := range hopHeaders {
		if h == k {
			return true
		}
	}
	return false
}
