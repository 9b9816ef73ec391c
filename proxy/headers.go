package proxy

import (
	"net"
	"net/http"
	"net/textproto"
	"slices"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/outrigger-mesh/outrigger/proxy/internal/wire"
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
	// RFC 7540 §3.2.1: a connection-specific field that goes with
	// "Upgrade: h2c" (deprecated by RFC 9113 §3.1), which is never
	// passed on (see upgradeProtocol).
	"Http2-Settings",
}

// HeaderError is the header (or trailer) that names the reason when the
// proxy answers a request itself: "x-outrigger-error: no_route".
const HeaderError = "X-Outrigger-Error"

// Headers the proxy reads or sets on every request.
const (
	hdrRequestID      = "X-Request-Id"
	hdrForwardedFor   = "X-Forwarded-For"
	hdrForwardedProto = "X-Forwarded-Proto"
	hdrForwardedHost  = "X-Forwarded-Host"
	hdrError          = HeaderError
	hdrBreaker        = "X-Outrigger-Breaker"
	hdrGRPCTimeout    = "Grpc-Timeout"
	hdrAttemptCount   = "X-Outrigger-Attempt-Count"
)

// copyRequestHeader copies src into a fresh header for the outbound
// request, sized for the names in add too (headers the caller sets
// next), and leaves out what stripRequestHeader deletes. found is as
// stripRequestHeader's. The proxy copies only a header it does not own
// (a composition call's, a request that may go on to its route's
// fallback); it edits its own in place.
func copyRequestHeader(src http.Header, add []string) (http.Header, uint32) {
	// A map of up to mapGroupSlots entries is one group, allocated at
	// its first insert whatever the hint; beyond that the hint sizes the
	// table, so it counts only what the map will hold.
	n := len(src) + len(add)
	if n > mapGroupSlots {
		n = 0
		for k := range src {
			if !isHop(k) || k == "Te" {
				n++
			}
		}
		for _, k := range add {
			if _, ok := src[k]; !ok {
				n++
			}
		}
	}
	dst := make(http.Header, n)
	for k, vv := range src {
		dst[k] = vv // values are not mutated; sharing the slices is safe
	}
	return dst, stripRequestHeader(dst, add)
}

// mapGroupSlots is the number of entries in a map's group (Go's
// internal/abi.MapGroupSlots): the most a map holds before it needs a
// table.
const mapGroupSlots = 8

// stripRequestHeader edits h in place into the header sent upstream
// without hop-by-hop headers: every header named by a Connection token
// (RFC 9110 §7.6.1) and the fixed list go. "TE: trailers" is kept because
// gRPC requires it end to end (it tells the server that the client
// understands trailers). found has bit i set when add[i] is left in h
// (at most 32 names), which spares the caller a lookup each. The fixed
// list is recognised as the map is walked (isHop), not looked up: most
// requests carry none of the nine names.
func stripRequestHeader(h http.Header, add []string) (found uint32) {
	var conn, te []string
	for k, vv := range h {
		if isHop(k) {
			switch k {
			case "Connection":
				conn = vv
			case "Te":
				te = vv
			}
			delete(h, k)
			continue
		}
		for i, a := range add {
			if k == a {
				found |= 1 << i
			}
		}
	}
	if len(conn) > 0 {
		var buf [4]string
		for _, name := range connectionNames(conn, buf[:0]) {
			delete(h, name)
			for i, a := range add {
				if name == a {
					found &^= 1 << i
				}
			}
		}
	}
	if len(te) > 0 && httpguts.HeaderValuesContainsToken(te, "trailers") {
		h["Te"] = teTrailersValue
	}
	return found
}

// teTrailersValue is the shared "TE: trailers" value (see the shared
// values beside outboundHeader).
var teTrailersValue = []string{"trailers"}[:1:1]

// connectionNames appends to names the canonical names of the headers
// that the Connection values conn list (RFC 9110 §7.6.1), except
// hop-by-hop names, which are dropped anyway; a caller passes a small
// array to append to, so that the common Connection values ("close",
// "keep-alive", "Upgrade") cost no allocation.
func connectionNames(conn []string, names []string) []string {
	for _, f := range conn {
		for sf := range strings.SplitSeq(f, ",") {
			if sf = textproto.TrimString(sf); sf != "" && !isHopToken(sf) {
				names = append(names, http.CanonicalHeaderKey(sf))
			}
		}
	}
	return names
}

// appendForwardedFor appends the client's IP to X-Forwarded-For, keeping
// the list prior (h's X-Forwarded-For values) an earlier proxy built (as
// net/http/httputil does). The new value goes into slot (length and
// capacity 1), which becomes the header's value slice, so a caller can
// give several headers' values one allocation.
//
// A field line that is empty (or whitespace) is left out of the joined
// list: joined as is, it would be an empty element, which RFC 9110
// §5.6.1 has a sender never generate (", 10.0.0.7" has "" first, where
// many readers look for the client), as Envoy leaves an empty
// X-Forwarded-For out.
func appendForwardedFor(h http.Header, prior []string, remoteAddr string, slot []string) {
	ip, _, err := net.SplitHostPort(remoteAddr)
	if err != nil || ip == "" {
		return
	}
	slot[0] = appendList(prior, ip)
	h[hdrForwardedFor] = slot
}

// appendList returns the field lines prior joined as one list with v
// last: prior's lines joined with ", " and then v, in one allocation,
// the empty (or whitespace) lines left out (see appendForwardedFor); v
// alone, without allocating, when there are none.
func appendList(prior []string, v string) string {
	n := 0
	for _, p := range prior {
		if wire.TrimOWS(p) != "" {
			n += len(p) + len(", ")
		}
	}
	if n == 0 {
		return v
	}
	var b strings.Builder
	b.Grow(n + len(v))
	for _, p := range prior {
		if wire.TrimOWS(p) != "" {
			b.WriteString(p)
			b.WriteString(", ")
		}
	}
	b.WriteString(v)
	return b.String()
}

// appendForwardedHost appends host, the client's Host, to
// x-forwarded-host, as a route that rewrites the Host asks
// (append_x_forwarded_host), after the list earlier proxies built,
// joined as X-Forwarded-For is. A list that ends with host already is
// left as it is, as Envoy leaves it: a chain of proxies that each
// rewrite the Host names the client's once.
func appendForwardedHost(h http.Header, host string) {
	if host == "" {
		return
	}
	prior := h[hdrForwardedHost]
	if lastListElement(prior) == host {
		return
	}
	h[hdrForwardedHost] = []string{appendList(prior, host)}
}

// lastListElement returns the last element of the list that the field
// lines vv make (RFC 9110 §5.6.1), empty elements skipped; "" when
// there is none.
func lastListElement(vv []string) string {
	for i := len(vv) - 1; i >= 0; i-- {
		v := vv[i]
		for {
			j := strings.LastIndexByte(v, ',')
			if e := wire.TrimOWS(v[j+1:]); e != "" {
				return e
			}
			if j < 0 {
				break
			}
			v = v[:j]
		}
	}
	return ""
}

// copyResponseHeader copies an upstream response's headers to the
// downstream writer's header map, dropping hop-by-hop headers.
func copyResponseHeader(dst, src http.Header) {
	var buf [4]string
	named := connectionNames(src["Connection"], buf[:0])
	for k, vv := range src {
		if isHop(k) || len(named) > 0 && slices.Contains(named, k) {
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

// headerAdopter is a ResponseWriter that can take a header map whole
// (h1server's and h2server's can): see responseHeader.
type headerAdopter interface {
	AdoptHeader(h http.Header) bool
}

// responseHeader makes src, an upstream response's header, the header of
// w, minus the hop-by-hop headers, and returns w's header map. When w
// adopts maps, src itself becomes it, stripped in place: the response is
// the proxy's own and is dropped after it is forwarded, so one map is
// made per response instead of two. Otherwise src is copied into
// w.Header().
func responseHeader(w http.ResponseWriter, src http.Header) http.Header {
	if a, ok := w.(headerAdopter); ok && a.AdoptHeader(src) {
		stripHopHeaders(src)
		return src
	}
	h := w.Header()
	copyResponseHeader(h, src)
	return h
}

// stripHopHeaders deletes from h, in place, the headers
// copyResponseHeader skips.
func stripHopHeaders(h http.Header) {
	var buf [4]string
	named := connectionNames(h["Connection"], buf[:0])
	for k := range h {
		if isHop(k) || len(named) > 0 && slices.Contains(named, k) {
			delete(h, k)
		}
	}
}

// isHop reports whether k, a header map key, is one of hopHeaders. It
// looks at the length first: few keys have the length of a hop-by-hop
// name, so most are told apart without comparing bytes.
func isHop(k string) bool {
	switch len(k) {
	case 2:
		return k == "Te"
	case 7:
		return k == "Trailer" || k == "Upgrade"
	case 10:
		return k == "Connection" || k == "Keep-Alive"
	case 14:
		return k == "Http2-Settings"
	case 16:
		return k == "Proxy-Connection"
	case 17:
		return k == "Transfer-Encoding"
	case 18:
		return k == "Proxy-Authenticate"
	case 19:
		return k == "Proxy-Authorization"
	}
	return false
}

// isHopToken reports whether a Connection token names a hop-by-hop
// header: whether its canonical form is one of hopHeaders. Those names
// are letters and hyphens, which is all such a token can hold, and a
// token of letters and hyphens canonicalises by ASCII case alone.
func isHopToken(tok string) bool {
	for _, h := range hopHeaders {
		if len(tok) == len(h) && wire.EqualFold(tok, h) {
			return true
		}
	}
	return false
}
