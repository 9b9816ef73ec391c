package proxy

import (
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/outrigger-mesh/outrigger/composer"
)

// authorityMatcher matches the request's host case-insensitively:
// "api.example.com" (exact), "*.example.com" (any name ending in
// ".example.com") or "*" (anything), each optionally with ":port". A
// pattern without a port matches any port; a request's host without one
// is on port 80 (see routeTable.find). A trailing dot is no part of
// the name, in a pattern as in a request's host (see routeTable.find).
// Ports and IPv6 addresses compare by value: "08080" is port 8080 (RFC
// 3986 §3.2.3) and "[0::1]" is "[::1]" (RFC 4291 §2.2), so that no other
// spelling of an authority passes by its routes.
type authorityMatcher struct {
	exact  string     // no port
	ip     netip.Addr // exact as an IPv6 address, when it is one
	suffix string     // ".example.com" for "*.example.com"
	any    bool
	port   string // without leading zeros; "" matches any port
}

func compileAuthority(s string) authorityMatcher {
	s = strings.ToLower(strings.TrimSpace(s))
	host, port := splitHostPort(s)
	if len(host) > 1 && host[len(host)-1] == '.' {
		host = host[:len(host)-1]
	}
	a := authorityMatcher{port: trimPortZeros(port)}
	switch {
	case host == "*" || host == "":
		a.any = true
	case strings.HasPrefix(host, "*."):
		a.suffix = host[1:]
	default:
		a.exact = host
		if ip, err := netip.ParseAddr(host); err == nil && ip.Is6() {
			a.ip = ip
		}
	}
	return a
}

func (a *authorityMatcher) match(host, port string) bool {
	if a.port != "" && port != a.port {
		return false
	}
	if a.any {
		return true
	}
	if a.suffix != "" {
		return len(host) > len(a.suffix) && hasSuffixFold(host, a.suffix)
	}
	if a.ip.IsValid() && host != a.exact {
		ip, err := netip.ParseAddr(host)
		return err == nil && ip == a.ip
	}
	return strings.EqualFold(host, a.exact)
}

// trimPortZeros returns port without its leading zeros ("08080" is
// 8080), so that ports compare as numbers.
func trimPortZeros(port string) string {
	for len(port) > 1 && port[0] == '0' {
		port = port[1:]
	}
	return port
}

func hasSuffixFold(s, suffix string) bool {
	return len(s) >= len(suffix) && strings.EqualFold(s[len(s)-len(suffix):], suffix)
}

// splitHostPort splits "host:port", "[v6]:port", "host" or "[v6]" without
// allocating (net.SplitHostPort allocates an error for a missing port).
func splitHostPort(hp string) (host, port string) {
	if strings.HasPrefix(hp, "[") {
		end := strings.IndexByte(hp, ']')
		if end < 0 {
			return hp, ""
		}
		host = hp[1:end]
		if rest := hp[end+1:]; strings.HasPrefix(rest, ":") {
			port = rest[1:]
		}
		return host, port
	}
	i := strings.LastIndexByte(hp, ':')
	if i < 0 || strings.IndexByte(hp[:i], ':') >= 0 {
		return hp, "" // no port, or a bare IPv6 address
	}
	return hp[:i], hp[i+1:]
}

type pathKind uint8

const (
	pathAny pathKind = iota
	pathExact
	pathPrefix
	pathRegex
)

type headerKind uint8

const (
	headerExact headerKind = iota
	headerPrefix
	headerRegex
	headerPresent
)

type headerMatcher struct {
	name   string // canonical
	pseudo string // ":authority", ":method", ":path" or ":scheme"; "" for a header
	kind   headerKind
	value  string
	re     *regexp.Regexp
	invert bool
}

func (m *headerMatcher) match(r *http.Request) bool {
	vv, ok := r.Header[m.name]
	if m.pseudo != "" {
		vv, ok = []string{pseudoHeader(r, m.pseudo)}, true
	}
	return m.test(vv, ok)
}

// matchHeader reports whether header h (a response's: no pseudo-headers)
// satisfies m.
func (m *headerMatcher) matchHeader(h http.Header) bool {
	vv, ok := h[m.name]
	return m.test(vv, ok)
}

// test reports whether a header's values vv (ok: it is present) satisfy
// m.
func (m *headerMatcher) test(vv []string, ok bool) bool {
	var got bool
	switch m.kind {
	case headerPresent:
		got = ok
	default:
		// Several values match as their comma-joined form, as RFC 9110
		// §5.3 defines the combined field value.
		v := ""
		if len(vv) == 1 {
			v = vv[0]
		} else if len(vv) > 1 {
			v = strings.Join(vv, ",")
		}
		switch {
		case !ok:
			got = false
		case m.kind == headerExact:
			got = v == m.value
		case m.kind == headerPrefix:
			got = strings.HasPrefix(v, m.value)
		case m.kind == headerRegex:
			got = m.re.MatchString(v) // anchored at compile time
		}
	}
	return got != m.invert
}

// queryMatcher matches one parameter of the request's query: the first
// of its name, both compared decoded (see config.QueryParameterMatch).
// Envoy compares them as written; here a value matches however the
// client spelled it ("?role=%61dmin" is "?role=admin"), as paths are
// matched decoded, so that no other spelling passes by a route.
type queryMatcher struct {
	name  string
	kind  headerKind
	value string
	re    *regexp.Regexp
	// invert turns the result around (invert, present: false): a query
	// without the parameter matches.
	invert bool
}

// match reports whether the query rawQuery (as sent, without "?")
// satisfies m. It allocates only to decode a value with escapes for a
// regex.
func (m *queryMatcher) match(rawQuery string) bool {
	return m.test(rawQuery) != m.invert
}

// test reports whether the query rawQuery has the parameter and its
// value passes m's test, before any inversion.
func (m *queryMatcher) test(rawQuery string) bool {
	v, ok := queryParam(rawQuery, m.name)
	if !ok {
		return false
	}
	switch m.kind {
	case headerPresent:
		return true
	case headerExact:
		eq, _ := decodedHasPrefix(v, m.value, true)
		return eq
	case headerPrefix:
		eq, _ := decodedHasPrefix(v, m.value, false)
		return eq
	}
	if strings.ContainsAny(v, "%+") {
		d, err := url.QueryUnescape(v)
		if err != nil {
			return false
		}
		v = d
	}
	return m.re.MatchString(v) // anchored at compile time
}

// queryParam returns the value, as written, of the first parameter of
// rawQuery whose decoded name is name ("" for one written without "=").
// Parameters are separated by "&" alone, as Envoy splits them; one
// whose name or value has a malformed escape is skipped, as Go's
// url.ParseQuery skips it.
func queryParam(rawQuery, name string) (string, bool) {
	for rawQuery != "" {
		var kv string
		kv, rawQuery, _ = strings.Cut(rawQuery, "&")
		k, v, _ := strings.Cut(kv, "=")
		if eq, ok := decodedHasPrefix(k, name, true); !eq || !ok {
			continue
		}
		if _, ok := decodedHasPrefix(v, "", false); ok {
			return v, true
		}
	}
	return "", false
}

// decodedHasPrefix reports whether raw, a query name or value as
// written, decodes ("%XX" escapes, "+" a space) to a string that begins
// with want (whole: that is want), without allocating. ok is false when
// raw has a malformed escape, wherever it is.
func decodedHasPrefix(raw, want string, whole bool) (match, ok bool) {
	match = true
	n := 0 // bytes of the decoded form so far
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch c {
		case '%':
			if i+2 >= len(raw) || !isHex(raw[i+1]) || !isHex(raw[i+2]) {
				return false, false
			}
			c = unhex(raw[i+1])<<4 | unhex(raw[i+2])
			i += 2
		case '+':
			c = ' '
		}
		if n < len(want) {
			match = match && c == want[n]
		} else if whole {
			match = false
		}
		n++
	}
	return match && n >= len(want), true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// routeMatch is the compiled match of one route. Every present condition
// must hold.
type routeMatch struct {
	authorities []authorityMatcher // empty: any
	path        pathKind
	pathValue   string
	pathRe      *regexp.Regexp
	methods     []string // empty: any
	headers     []headerMatcher
	queries     []queryMatcher
	// exactRewrite: prefix_rewrite on an exact path replaces the whole path.
	exactRewrite bool
}

func pseudoHeader(r *http.Request, name string) string {
	switch name {
	case ":authority":
		return r.Host
	case ":method":
		return r.Method
	case ":path":
		return r.URL.RequestURI()
	case ":scheme":
		if r.TLS != nil {
			return "https"
		}
		return "http"
	}
	return ""
}

func (m *routeMatch) match(host, port, path string, r *http.Request) bool {
	if len(m.authorities) > 0 {
		ok := false
		for i := range m.authorities {
			if m.authorities[i].match(host, port) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	switch m.path {
	case pathExact:
		if path != m.pathValue {
			return false
		}
	case pathPrefix:
		if !strings.HasPrefix(path, m.pathValue) {
			return false
		}
	case pathRegex:
		// Anchored at compile time: the regex must match the whole path.
		if !m.pathRe.MatchString(path) {
			return false
		}
	}
	if len(m.methods) > 0 {
		ok := false
		for _, x := range m.methods {
			if x == r.Method {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for i := range m.headers {
		if !m.headers[i].match(r) {
			return false
		}
	}
	for i := range m.queries {
		if !m.queries[i].match(r.URL.RawQuery) {
			return false
		}
	}
	return true
}

type headerValue struct {
	name, value string
	append      bool // added next to the values there; else replaces them
}

// headerEdit is a route's header manipulation for one direction.
type headerEdit struct {
	remove []string
	// add is applied in the order written, as Envoy applies
	// headers_to_add: an entry that replaces replaces what the entries
	// before it appended too.
	add []headerValue
}

func (e *headerEdit) apply(h http.Header) {
	for _, k := range e.remove {
		delete(h, k)
	}
	for _, kv := range e.add {
		if !kv.append {
			h[kv.name] = []string{kv.value}
			continue
		}
		// Cap the old slice so append copies: its array may be shared
		// with the inbound request or a compiled direct response.
		old := h[kv.name]
		h[kv.name] = append(old[:len(old):len(old)], kv.value)
	}
}

func (e *headerEdit) empty() bool { return len(e.add)+len(e.remove) == 0 }

type weightedCluster struct {
	c      *cluster
	weight uint32
	stats  *routeStats
}

type directResponse struct {
	status int
	body   []byte
	header http.Header
}

// route is one compiled route. Immutable once in a snapshot.
type route struct {
	name string
	// key finds the route's state in the next snapshot (see routeKey).
	key   routeKey
	match routeMatch

	// Exactly one action.
	clusters []weightedCluster // one entry for a plain cluster action
	total    uint32            // sum of weights
	direct   *directResponse
	compose  *composer.Composition

	fallback *routeFallback // nil: none

	prefixRewrite string // replaces the matched path prefix when set
	// prefixRewriteEscaped is prefixRewrite in its escaped form, for a
	// path that keeps its escapes (see rewriteEscaped).
	prefixRewriteEscaped string
	regexRewrite         *regexRewrite // nil: none
	// hostRewrite replaces the Host sent upstream when set
	// (host_rewrite); autoHost sends the endpoint's (auto_host_rewrite).
	hostRewrite string
	autoHost    bool
	// appendXFH appends the client's Host to x-forwarded-host, the
	// route rewriting it (append_x_forwarded_host).
	appendXFH   bool
	reqHeaders  headerEdit
	respHeaders headerEdit
	// hash makes the request's hash key for a maglev cluster
	// (hash_policy); nil: the request has none. A fallback cluster's
	// route, a copy, has it too.
	hash []hashPolicy

	timeout       time.Duration // whole request incl. retries; 0: none
	perTryTimeout time.Duration // each attempt until response headers; 0: none
	// idleTimeout ends a request no bytes moved for in either direction
	// for this long (see streamIdle); 0: none.
	idleTimeout time.Duration
	retry       retryPolicy
	// grpcPerTry: a gRPC attempt whose body is whole tells the upstream
	// the per-try timeout when shorter (grpc_timeout_per_try).
	grpcPerTry bool
	// attemptCount: each attempt's request carries its number in
	// x-outrigger-attempt-count (include_request_attempt_count).
	attemptCount bool

	maxRequestBody int64 // 0: unlimited

	localStats *routeStats // local replies on this route (cluster label ""); nil for a cluster route without a direct-response fallback, a fault or a rate limit

	fault *routeFault // nil: none
	// rateLimit is the route's token bucket (rate_limit), shared by all
	// its requests and kept across reloads that keep the setting; nil:
	// none.
	rateLimit *tokenBucket

	mirrors []routeMirror // nil: none (see mirror.go)

	// inbound: the route is the inbound listener's, whose requests carry
	// the identity of a client certificate it verified on to the app
	// (x-forwarded-client-cert). An outbound route's go to other
	// services, which are not told the app's certificate (as Envoy's
	// sidecar outbound sanitizes it).
	inbound bool
}

// pickCluster chooses among weighted clusters with the injected rand.
func (r *route) pickCluster(intn func(int) int) *weightedCluster {
	if len(r.clusters) == 1 {
		return &r.clusters[0]
	}
	n := uint32(intn(int(r.total)))
	for i := range r.clusters {
		if n < r.clusters[i].weight {
			return &r.clusters[i]
		}
		n -= r.clusters[i].weight
	}
	return &r.clusters[len(r.clusters)-1]
}

// rewritePath applies the prefix rewrite to path.
func (r *route) rewritePath(path string) string {
	if r.prefixRewrite == "" {
		return path
	}
	if r.match.exactRewrite {
		return r.prefixRewrite
	}
	if r.match.path != pathPrefix {
		return path
	}
	return joinRewrite(r.prefixRewrite, path[len(r.match.pathValue):])
}

// joinRewrite puts a rewritten prefix before the rest of the path,
// with one '/' between them where both bring one.
func joinRewrite(prefix, rest string) string {
	if strings.HasSuffix(prefix, "/") && strings.HasPrefix(rest, "/") {
		rest = rest[1:]
	}
	return prefix + rest
}

// rewriteEscaped applies a prefix rewrite to escaped, the escaped form
// of a path whose decoded form the prefix matched (URL.RawPath): what
// follows the prefix keeps its escapes (an escaped '/' stays inside its
// segment, "%2e%2e" stays escaped), as the path does without a rewrite.
// An escaped '/' that the prefix's last '/' matched stays too, before
// the rest: what follows it was inside its segment, and would otherwise
// begin one after the rewrite ("/api%2F../admin", matched by "/api/"
// and rewritten to "/v1/", would be sent as "/v1/../admin", out of
// /v1/, where it is "/v1/%2F../admin"). ok is false when the route
// rewrites no prefix.
func (r *route) rewriteEscaped(escaped string) (string, bool) {
	if r.prefixRewrite == "" || r.match.exactRewrite || r.match.path != pathPrefix {
		return "", false
	}
	// Each escape ("%XX") decodes to one byte of the matched prefix.
	i, n, esc := 0, 0, false
	for n < len(r.match.pathValue) && i < len(escaped) {
		if esc = escaped[i] == '%'; esc {
			i += 3
		} else {
			i++
		}
		n++
	}
	if n != len(r.match.pathValue) || i > len(escaped) {
		return "", false
	}
	if esc && r.match.pathValue[n-1] == '/' {
		i -= 3 // the escaped slash begins the rest
	}
	return joinRewrite(r.prefixRewriteEscaped, escaped[i:]), true
}

// routeTable is the ordered routes of one listener; first match wins.
type routeTable struct {
	routes []*route
}

func (t *routeTable) find(r *http.Request) *route {
	host := r.Host
	if host == "" {
		host = r.URL.Host
	}
	h, port := splitHostPort(host)
	// A fully qualified name's trailing dot names the same host
	// ("admin.example.com." is "admin.example.com"): without it gone, a
	// route for the host could be passed by with the dot.
	if len(h) > 1 && h[len(h)-1] == '.' {
		h = h[:len(h)-1]
	}
	if port = trimPortZeros(port); port == "" {
		// No port is the http scheme's default, the only one the
		// listeners serve (RFC 9110 §4.2.1): "api:80" matches "api".
		port = "80"
	}
	path := r.URL.Path
	for _, rt := range t.routes {
		if rt.match.match(h, port, path, r) {
			return rt
		}
	}
	return nil
}

// regexRewrite is a route's regex_rewrite: every match of re in the
// decoded path is replaced by sub.
type regexRewrite struct {
	re  *regexp.Regexp
	sub []subPiece
}

// subPiece is one part of a substitution: a group of the match (group
// >= 0; 0 the whole match) or text, decoded and escaped as sent.
type subPiece struct {
	group         int
	text, escaped string
}

// compileSubstitution splits sub, as config.RegexRewrite writes it,
// into its pieces; groups is the number of groups of the pattern.
func compileSubstitution(sub string, groups int) ([]subPiece, error) {
	var out []subPiece
	var text strings.Builder
	flush := func() {
		if text.Len() > 0 {
			t := text.String()
			out = append(out, subPiece{group: -1, text: t, escaped: (&url.URL{Path: t}).EscapedPath()})
			text.Reset()
		}
	}
	for i := 0; i < len(sub); i++ {
		c := sub[i]
		if c != '\\' {
			text.WriteByte(c)
			continue
		}
		if i++; i == len(sub) {
			return nil, fmt.Errorf("substitution ends with a lone backslash")
		}
		switch c = sub[i]; {
		case c == '\\':
			text.WriteByte(c)
		case c >= '0' && c <= '9' && int(c-'0') <= groups:
			flush()
			out = append(out, subPiece{group: int(c - '0')})
		default:
			return nil, fmt.Errorf("substitution: \\%c names no group of the pattern", c)
		}
	}
	flush()
	return out, nil
}

// rewrite replaces the matches in path, the decoded path, and returns
// the new path decoded and escaped; escaped is path's escaped form. The
// pattern sees the decoded path, as route matching does, but what the
// new path takes from the old one (the text between matches, the
// groups) keeps its escapes, so that an escaped '/' ("%2F") stays
// inside its segment rather than becoming a separator; the
// substitution's text is escaped as a path is sent. changed is false
// when nothing matched.
func (w *regexRewrite) rewrite(path, escaped string) (np, ne string, changed bool) {
	ms := w.re.FindAllStringSubmatchIndex(path, -1)
	if ms == nil {
		return path, escaped, false
	}
	off, ok := escapeOffsets(path, escaped)
	if !ok {
		// Not an escaping of path: take the one net/url would send.
		escaped = (&url.URL{Path: path}).EscapedPath()
		off, _ = escapeOffsets(path, escaped)
	}
	var d, e strings.Builder
	d.Grow(len(path))
	e.Grow(len(escaped))
	last := 0
	for _, m := range ms {
		d.WriteString(path[last:m[0]])
		e.WriteString(escaped[off[last]:off[m[0]]])
		for _, pc := range w.sub {
			if pc.group < 0 {
				d.WriteString(pc.text)
				e.WriteString(pc.escaped)
				continue
			}
			a, b := m[2*pc.group], m[2*pc.group+1]
			if a < 0 {
				continue // the group took no part in the match: empty
			}
			d.WriteString(path[a:b])
			e.WriteString(escaped[off[a]:off[b]])
		}
		last = m[1]
	}
	d.WriteString(path[last:])
	e.WriteString(escaped[off[last]:])
	return d.String(), e.String(), true
}

// escapeOffsets maps each byte offset of path to the offset of its
// escaped form in escaped, where each byte of path is itself or one
// "%XX" (off[len(path)] is len(escaped)). ok is false when escaped is
// not such a form of path.
func escapeOffsets(path, escaped string) (off []int, ok bool) {
	off = make([]int, len(path)+1)
	j := 0
	for i := 0; i < len(path); i++ {
		off[i] = j
		if j < len(escaped) && escaped[j] == '%' {
			j += 3
		} else {
			j++
		}
	}
	off[len(path)] = j
	return off, j == len(escaped)
}
