package proxy

import (
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outrigger-mesh/outrigger/proxy/config"
	"github.com/outrigger-mesh/outrigger/proxy/internal/normpath"
)

// Authorization (config.Authorization) is Istio's AuthorizationPolicy,
// as Envoy's RBAC filter enforces it: each listener has the deny and
// allow rules that name it, compiled once per Apply into the snapshot.
// A request is checked before routing, as Envoy's RBAC filter runs
// before its router (Istio puts it first among the HTTP filters, before
// fault injection and rate limits): a refused request is answered 403
// rbac_denied whatever route it would have matched, or none, and no
// route's fault, rate limit or action sees it. A listener without rules
// has a nil policy, which costs its requests one nil check.

// patternKind is how an authorization pattern matches.
type patternKind uint8

const (
	patternExact  patternKind = iota // "v"
	patternPrefix                    // "v*"
	patternSuffix                    // "*v"
	patternAny                       // "*"
)

// pattern is one compiled authorization pattern (config.AuthorizationSource):
// Istio's exact, prefix, suffix and any.
type pattern struct {
	kind  patternKind
	value string // without its "*"
}

// compilePattern compiles s, which config.PatternProblem accepts. A
// pattern it refuses (a "*" inside, built by hand) is taken as exact:
// it then matches only itself, and never more than was written.
func compilePattern(s string) pattern {
	switch {
	case s == "*":
		return pattern{kind: patternAny}
	case config.PatternProblem(s) != "":
		return pattern{kind: patternExact, value: s}
	case strings.HasSuffix(s, "*"):
		return pattern{kind: patternPrefix, value: s[:len(s)-1]}
	case strings.HasPrefix(s, "*"):
		return pattern{kind: patternSuffix, value: s[1:]}
	}
	return pattern{kind: patternExact, value: s}
}

// match reports whether v matches p.
func (p *pattern) match(v string) bool {
	switch p.kind {
	case patternAny:
		return true
	case patternPrefix:
		return strings.HasPrefix(v, p.value)
	case patternSuffix:
		return strings.HasSuffix(v, p.value)
	}
	return v == p.value
}

// compilePatterns compiles a list of patterns; nil for none.
func compilePatterns(ss []string) []pattern {
	if len(ss) == 0 {
		return nil
	}
	out := make([]pattern, len(ss))
	for i, s := range ss {
		out[i] = compilePattern(s)
	}
	return out
}

// matchAny reports whether v matches any of ps.
func matchAny(ps []pattern, v string) bool {
	for i := range ps {
		if ps[i].match(v) {
			return true
		}
	}
	return false
}

// authzRule is one compiled rule. A nil or empty list is a condition
// not given, which every request meets.
type authzRule struct {
	name                                  string
	principals, notPrincipals, namespaces []pattern
	ipBlocks                              []netip.Prefix
	methods                               []string
	paths, notPaths                       []pattern
	headers                               []headerMatcher
	// denied counts the requests the rule refused (a deny rule's);
	// nil for an allow rule.
	denied prometheus.Counter
}

// authzPolicy is one listener's rules.
type authzPolicy struct {
	deny, allow []authzRule
	// noAllow counts the requests refused for matching no allow rule
	// (rule=""); nil when the listener has no allow rule. allowed
	// counts the requests let through.
	noAllow, allowed prometheus.Counter
	// normalize and mergeSlashes are the listeners' path_normalization
	// (see escapedSlashReading).
	normalize, mergeSlashes bool
}

// peer is what the rules know of a request's client, read once for
// all the rules and only when one asks for it.
type peer struct {
	r *http.Request
	// path is the path the rules match: the request's, or the other
	// reading of one with an escaped slash (see check).
	path string
	// principal is the first URI SAN of the verified client
	// certificate, has whether there is one; read once readPrincipal.
	principal          string
	has, readPrincipal bool
	addr               netip.Addr
	addrOK, readAddr   bool
}

// principalOf is the principal of r: the first URI SAN of the client
// certificate its connection verified, as x-forwarded-client-cert
// names it (see clientCertField); ok is false for a request without a
// verified certificate or one without a URI SAN. The certificate is
// the connection's own: no header the client sends is read.
func principalOf(r *http.Request) (string, bool) {
	st := r.TLS
	if st == nil || len(st.VerifiedChains) == 0 || len(st.PeerCertificates) == 0 {
		return "", false
	}
	c := st.PeerCertificates[0]
	if len(c.URIs) == 0 {
		return "", false
	}
	return c.URIs[0].String(), true
}

// inNamespace reports whether principal, a spiffe:// id, is in a
// namespace one of ps matches: a segment after "/ns/" in its path that
// a "/" follows, any of them, as Istio reads namespaces (the principal
// regex .*/ns/<namespace>/.*): spiffe://cluster.local/ns/shop/sa/orders
// is in shop; spiffe://td/ns/a/ns/b/sa/x in a and in b;
// spiffe://cluster.local/ns/shop, with nothing after, in none.
func inNamespace(ps []pattern, principal string) bool {
	rest, ok := strings.CutPrefix(principal, "spiffe://")
	if !ok {
		return false
	}
	i := strings.IndexByte(rest, '/')
	if i < 0 {
		return false
	}
	rest = rest[i:] // the path, from its first '/'
	for {
		j := strings.Index(rest, "/ns/")
		if j < 0 {
			return false
		}
		seg := rest[j+len("/ns/"):]
		if k := strings.IndexByte(seg, '/'); k > 0 && matchAny(ps, seg[:k]) {
			return true
		}
		// On from the next byte: "/ns/ns/x/" names ns and x.
		rest = rest[j+1:]
	}
}

func (c *peer) principalID() (string, bool) {
	if !c.readPrincipal {
		c.principal, c.has = principalOf(c.r)
		c.readPrincipal = true
	}
	return c.principal, c.has
}

func (c *peer) address() (netip.Addr, bool) {
	if !c.readAddr {
		if ap, err := netip.ParseAddrPort(c.r.RemoteAddr); err == nil {
			// Without its zone (a link-local client's "%eth0"): a
			// block holds none, and netip.Prefix.Contains refuses
			// every address that has one, which would let such a
			// client past a deny rule for its block.
			c.addr, c.addrOK = ap.Addr().Unmap().WithZone(""), true
		}
		c.readAddr = true
	}
	return c.addr, c.addrOK
}

// match reports whether the request of c meets every condition of a.
func (a *authzRule) match(c *peer) bool {
	r := c.r
	if len(a.principals)+len(a.notPrincipals)+len(a.namespaces) > 0 {
		id, ok := c.principalID()
		// Without a principal no pattern matches, "*" included: a
		// principals or namespaces list is not met, and every
		// not_principals entry is (Istio's notPrincipals: ["*"] is the
		// requests without an identity).
		if len(a.principals) > 0 && (!ok || !matchAny(a.principals, id)) {
			return false
		}
		if len(a.notPrincipals) > 0 && ok && matchAny(a.notPrincipals, id) {
			return false
		}
		if len(a.namespaces) > 0 && (!ok || !inNamespace(a.namespaces, id)) {
			return false
		}
	}
	if len(a.ipBlocks) > 0 {
		ip, ok := c.address()
		if !ok {
			return false
		}
		in := false
		for _, b := range a.ipBlocks {
			if b.Contains(ip) {
				in = true
				break
			}
		}
		if !in {
			return false
		}
	}
	if len(a.methods) > 0 {
		in := false
		for _, m := range a.methods {
			// Without case: methods are case-sensitive (RFC 9110 §9.1),
			// but an upstream that reads "delete" as DELETE must not see
			// it pass a deny rule for DELETE (Istio refuses such a
			// request outright).
			if strings.EqualFold(m, r.Method) {
				in = true
				break
			}
		}
		if !in {
			return false
		}
	}
	if len(a.paths) > 0 && !matchAny(a.paths, c.path) {
		return false
	}
	if len(a.notPaths) > 0 && matchAny(a.notPaths, c.path) {
		return false
	}
	for i := range a.headers {
		if !a.headers[i].match(r) {
			return false
		}
	}
	return true
}

// check decides r, and counts the decision. A path that still has an
// escaped slash (path_with_escaped_slashes keep) is read two ways
// upstream: as routed, "%2F" inside a segment, and by an upstream that
// decodes it first, as a separator ("/public%2F..%2Fadmin" is then
// "/admin"). r goes on only when the rules let both readings through,
// so that neither passes a deny rule or meets an allow rule the other
// would not; denied is the deny rule that refused it, or nil when no
// allow rule matched; ok is whether r may go on.
func (az *authzPolicy) check(r *http.Request) (denied *authzRule, ok bool) {
	c := peer{r: r, path: r.URL.Path}
	denied, ok = az.decide(&c)
	if ok && az.normalize {
		if p, other := escapedSlashReading(r.URL, az.mergeSlashes); other {
			c.path = p
			denied, ok = az.decide(&c)
		}
	}
	switch {
	case denied != nil:
		denied.denied.Inc()
	case ok:
		az.allowed.Inc()
	default:
		az.noAllow.Inc()
	}
	return denied, ok
}

// decide decides the request of c on c.path: deny rules first, then,
// when there are allow rules, one of them must match. denied is the
// deny rule that refused it, or nil when no allow rule matched; ok is
// whether it may go on.
func (az *authzPolicy) decide(c *peer) (denied *authzRule, ok bool) {
	for i := range az.deny {
		if az.deny[i].match(c) {
			return &az.deny[i], false
		}
	}
	if len(az.allow) == 0 {
		return nil, true
	}
	for i := range az.allow {
		if az.allow[i].match(c) {
			return nil, true
		}
	}
	return nil, false
}

// escapedSlashReading is the path of u (normalized) as an upstream that
// takes "%2F" for a separator reads it: each made one, then normalized
// again as the listeners normalize (mergeSlashes), which removes the
// dot segments that exposes; other is false when that is u's path (no
// "%2F" is left, as after path_with_escaped_slashes unescape_*). It
// allocates only for a path with a "%2F".
func escapedSlashReading(u *url.URL, mergeSlashes bool) (path string, other bool) {
	p, raw, unescaped := normpath.UnescapeSlashes(u.Path, u.RawPath)
	if !unescaped {
		return "", false
	}
	p, _, _ = normpath.Normalize(p, raw, mergeSlashes)
	return p, p != u.Path
}

// compileAuthorization builds listener l's policy from a: nil when no
// rule names l. normalize and mergeSlashes are the listeners'
// path_normalization.
func (p *Proxy) compileAuthorization(l Listener, a config.Authorization, normalize, mergeSlashes bool) (*authzPolicy, error) {
	want := config.Outbound
	if l == Inbound {
		want = config.Inbound
	}
	lname := l.String()
	var az authzPolicy
	for _, list := range []struct {
		key   string
		rules []config.AuthorizationRule
		out   *[]authzRule
	}{{"deny", a.Deny, &az.deny}, {"allow", a.Allow, &az.allow}} {
		for i := range list.rules {
			rc := &list.rules[i]
			applies := false
			for _, d := range rc.RuleListeners() {
				applies = applies || d == want
			}
			if !applies {
				continue
			}
			ar, err := compileAuthzRule(rc)
			if err != nil {
				return nil, fmt.Errorf("authorization.%s[%d].%w", list.key, i, err)
			}
			if list.key == "deny" {
				ar.denied = p.m.authzDeniedSeries(lname, rc.Name)
			}
			*list.out = append(*list.out, ar)
		}
	}
	if len(az.deny)+len(az.allow) == 0 {
		return nil, nil
	}
	if len(az.allow) > 0 {
		az.noAllow = p.m.authzDeniedSeries(lname, "")
	}
	az.allowed = p.m.authzAllowed[l]
	az.normalize = normalize
	az.mergeSlashes = mergeSlashes
	return &az, nil
}

// compileAuthzRule compiles one rule; its error's path is relative to
// the rule.
func compileAuthzRule(rc *config.AuthorizationRule) (authzRule, error) {
	ar := authzRule{
		name:          rc.Name,
		principals:    compilePatterns(rc.From.Principals),
		notPrincipals: compilePatterns(rc.From.NotPrincipals),
		namespaces:    compilePatterns(rc.From.Namespaces),
		paths:         compilePatterns(rc.To.Paths),
		notPaths:      compilePatterns(rc.To.NotPaths),
		methods:       append([]string(nil), rc.To.Methods...),
	}
	for i, s := range rc.From.IPBlocks {
		b, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return ar, fmt.Errorf("from.ip_blocks[%d]: %q is not an IP address or CIDR block", i, s)
			}
			b = netip.PrefixFrom(a, a.BitLen())
		}
		// The client's address is unmapped (an IPv4 client of a dual
		// stack socket is ::ffff:a.b.c.d): so is the block's.
		if b.Addr().Is4In6() {
			b = netip.PrefixFrom(b.Addr().Unmap(), max(b.Bits()-96, 0))
		}
		ar.ipBlocks = append(ar.ipBlocks, b.Masked())
	}
	hm, err := compileHeaderMatchers(rc.When.Headers)
	if err != nil {
		return ar, fmt.Errorf("when.%w", err)
	}
	ar.headers = hm
	return ar, nil
}
