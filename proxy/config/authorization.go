package config

import (
	"fmt"
	"net/netip"
	"strings"
)

// Authorization refuses requests by who sends them and what they ask
// for, as Istio's AuthorizationPolicy (Envoy's RBAC filter) does for a
// workload: a request that matches any Deny rule is refused; then, when
// Allow has a rule for the request's listener, a request that matches
// none of them is refused too; any other request is allowed. A refused
// request is answered 403 rbac_denied by the sidecar.
//
// Unlike Istio, where an ALLOW policy without rules refuses every
// request, an Allow list that is empty (or has no rule for a listener)
// allows every request: to refuse every request, write a Deny rule
// with no conditions.
type Authorization struct {
	// Deny lists the rules a request must match none of. Empty means
	// none.
	Deny []AuthorizationRule `yaml:"deny,omitempty" json:"deny,omitempty"`

	// Allow lists the rules a request must match one of, on the
	// listeners they name. Empty means every request not denied is
	// allowed.
	Allow []AuthorizationRule `yaml:"allow,omitempty" json:"allow,omitempty"`
}

// AuthorizationRule matches a request when every part given matches
// (From, To and When, and within them every field set), a field with a
// list matching when any of its entries does. A rule with no part
// matches every request of its listeners.
type AuthorizationRule struct {
	// Name identifies the rule in metrics and the access log: 1-255
	// printable ASCII characters without spaces, unique among the
	// deny and allow rules, and not "none" (the access log's name for
	// a request no allow rule matched). Required.
	Name string `yaml:"name" json:"name"`

	// Listeners are the listeners whose requests the rule applies to:
	// "inbound" and "outbound". Empty means [inbound].
	Listeners []Direction `yaml:"listeners,omitempty" json:"listeners,omitempty"`

	// From matches who sends the request.
	From AuthorizationSource `yaml:"from,omitempty" json:"from,omitempty"`

	// To matches what the request asks for.
	To AuthorizationOperation `yaml:"to,omitempty" json:"to,omitempty"`

	// When matches the request's headers.
	When AuthorizationCondition `yaml:"when,omitempty" json:"when,omitempty"`
}

// AuthorizationSource matches the request's client. Its principal is
// the first URI SAN of the client certificate the listener verified on
// the request's connection (see ListenerTLS.ClientCAFile), the SPIFFE
// id an Istio or SPIFFE workload's certificate carries
// ("spiffe://cluster.local/ns/shop/sa/orders"); a request without one
// (a plaintext connection, a client that sent no certificate, one
// without a URI SAN) has no principal. A client's own
// x-forwarded-client-cert header is never read.
//
// Patterns, as Istio writes them: "v" is v exactly, "v*" any value
// that begins with v, "*v" any that ends with v, and "*" any value at
// all; a "*" elsewhere is refused.
type AuthorizationSource struct {
	// Principals match the request's principal, written whole, scheme
	// included (Istio's principals leave out "spiffe://": write
	// "spiffe://cluster.local/ns/shop/sa/orders" for its
	// "cluster.local/ns/shop/sa/orders"). A request without a principal
	// matches none of them, "*" included. Empty means any client.
	Principals []string `yaml:"principals,omitempty" json:"principals,omitempty"`

	// NotPrincipals refuse the match to a request whose principal any
	// of them matches; a request without a principal matches none of
	// them, so that not_principals: ["*"] matches the requests that have
	// no identity. Empty means none.
	NotPrincipals []string `yaml:"not_principals,omitempty" json:"not_principals,omitempty"`

	// Namespaces match the namespace of the request's principal: the
	// path segment after "/ns/" of a "spiffe://" principal ("shop" of
	// spiffe://cluster.local/ns/shop/sa/orders). A request without a
	// principal, or with one that names no namespace, matches none of
	// them. Empty means any client.
	Namespaces []string `yaml:"namespaces,omitempty" json:"namespaces,omitempty"`

	// IPBlocks match the address of the connection's peer (not
	// X-Forwarded-For): a CIDR block ("10.0.0.0/8") or one address.
	// Empty means any address.
	IPBlocks []string `yaml:"ip_blocks,omitempty" json:"ip_blocks,omitempty"`
}

// AuthorizationOperation matches what the request asks for.
type AuthorizationOperation struct {
	// Methods lists the HTTP methods matched, upper case. Empty means
	// any method.
	Methods []string `yaml:"methods,omitempty" json:"methods,omitempty"`

	// Paths match the request's path, without its query, decoded and
	// normalized as the routes see it (listeners.path_normalization),
	// with the patterns of AuthorizationSource: "/items" exactly,
	// "/items/*" beginning with "/items/", "*/health" ending with
	// "/health", "*" any path. Written decoded, without "%", "?" or
	// "#". Empty means any path.
	Paths []string `yaml:"paths,omitempty" json:"paths,omitempty"`

	// NotPaths refuse the match to a request whose path any of them
	// matches. Empty means none.
	NotPaths []string `yaml:"not_paths,omitempty" json:"not_paths,omitempty"`
}

// AuthorizationCondition matches the request's headers.
type AuthorizationCondition struct {
	// Headers must all match, as a route's match.headers. Empty means
	// any headers.
	Headers []HeaderMatch `yaml:"headers,omitempty" json:"headers,omitempty"`
}

// AuthorizationNone is the name the access log gives a request no
// allow rule matched; no rule may take it.
const AuthorizationNone = "none"

// RuleListeners is the listeners rule r applies to, its default filled
// in.
func (r *AuthorizationRule) RuleListeners() []Direction {
	if len(r.Listeners) == 0 {
		return []Direction{Inbound}
	}
	return r.Listeners
}

// NeedsPrincipal reports whether r matches on the client's principal.
func (r *AuthorizationRule) NeedsPrincipal() bool {
	f := &r.From
	return len(f.Principals)+len(f.NotPrincipals)+len(f.Namespaces) > 0
}

func (a *Authorization) validate(p *problems, path string) {
	names := map[string]string{}
	for _, list := range []struct {
		key   string
		rules []AuthorizationRule
	}{{"deny", a.Deny}, {"allow", a.Allow}} {
		for i := range list.rules {
			rp := indexPath(path+"."+list.key, i)
			r := &list.rules[i]
			switch {
			case r.Name == "":
				p.add(rp+".name", "required: the rule's name in metrics and the access log")
			case !validRouteName(r.Name):
				p.addf(rp+".name", "invalid rule name %q: use 1-%d printable ASCII characters without spaces", r.Name, maxNameLen)
			case r.Name == AuthorizationNone:
				p.addf(rp+".name", "%q names a request no allow rule matched in the access log: choose another name", r.Name)
			case names[r.Name] != "":
				p.addf(rp+".name", "duplicate rule name %q (also %s)", r.Name, names[r.Name])
			default:
				names[r.Name] = rp
			}
			r.validate(p, rp)
		}
	}
}

func (r *AuthorizationRule) validate(p *problems, path string) {
	seen := map[Direction]bool{}
	for i, l := range r.Listeners {
		lp := indexPath(path+".listeners", i)
		switch {
		case l != Inbound && l != Outbound:
			p.addf(lp, "unknown listener %q (valid: inbound, outbound)", l)
		case seen[l]:
			p.addf(lp, "duplicate listener %q", l)
		}
		seen[l] = true
	}
	fp := path + ".from"
	for i, v := range r.From.Principals {
		checkPrincipalPattern(p, indexPath(fp+".principals", i), v)
	}
	for i, v := range r.From.NotPrincipals {
		checkPrincipalPattern(p, indexPath(fp+".not_principals", i), v)
	}
	for i, v := range r.From.Namespaces {
		ip := indexPath(fp+".namespaces", i)
		if msg := PatternProblem(v); msg != "" {
			p.add(ip, msg)
		} else if strings.Contains(v, "/") {
			p.addf(ip, "a namespace is one segment of the principal's path, without \"/\": got %q", v)
		}
	}
	for i, v := range r.From.IPBlocks {
		if _, err := netip.ParsePrefix(v); err == nil {
			continue
		}
		if _, err := netip.ParseAddr(v); err != nil {
			p.addf(indexPath(fp+".ip_blocks", i), "%q is not an IP address or CIDR block (10.0.0.0/8, fd00::/8, 10.1.2.3)", v)
		}
	}
	tp := path + ".to"
	checkMethods(p, tp+".methods", r.To.Methods)
	for i, v := range r.To.Paths {
		checkPathPattern(p, indexPath(tp+".paths", i), v)
	}
	for i, v := range r.To.NotPaths {
		checkPathPattern(p, indexPath(tp+".not_paths", i), v)
	}
	checkHeaderMatches(p, path+".when.headers", r.When.Headers)
	for i, h := range r.When.Headers {
		// Rules run before the proxy replaces the client's own (Envoy
		// sets it before its RBAC filter runs): a matcher on it would
		// trust what any client writes.
		if strings.EqualFold(h.Name, "x-forwarded-client-cert") {
			p.add(indexPath(path+".when.headers", i)+".name", "the rules see the client's own x-forwarded-client-cert, which any client can write and the proxy replaces before forwarding: match the verified certificate's URI SAN with from.principals")
		}
	}
}

// PatternProblem is what is wrong with an authorization pattern
// (see AuthorizationSource), or "" when it is valid.
func PatternProblem(v string) string {
	switch n := strings.Count(v, "*"); {
	case v == "":
		return `must not be empty ("*" matches any value)`
	case v == "*", n == 0:
	case n > 1 || v[0] != '*' && v[len(v)-1] != '*':
		return fmt.Sprintf(`a "*" may only begin or end a pattern, once ("v", "v*", "*v" or "*"): got %q`, v)
	}
	return ""
}

// checkPrincipalPattern checks a principals or not_principals entry: a
// pattern whose written part is the principal's beginning (exact or
// prefix) must begin with a URI scheme, as every URI SAN does.
func checkPrincipalPattern(p *problems, path, v string) {
	if msg := PatternProblem(v); msg != "" {
		p.add(path, msg)
		return
	}
	if v == "*" || v[0] == '*' {
		return
	}
	scheme, _, ok := strings.Cut(v, ":")
	if !ok || !validScheme(scheme) {
		p.addf(path, `a principal is the client certificate's whole URI SAN, scheme included: write "spiffe://%s" (Istio's principals leave "spiffe://" out), got %q`, strings.TrimSuffix(v, "*"), v)
	}
}

// validScheme reports whether s is a URI scheme (RFC 3986 §3.1).
func validScheme(s string) bool {
	if s == "" || !('a' <= s[0] && s[0] <= 'z' || 'A' <= s[0] && s[0] <= 'Z') {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '+' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// checkPathPattern checks a paths or not_paths entry: an exact or
// prefix pattern begins with "/", and the written part is a decoded
// path.
func checkPathPattern(p *problems, path, v string) {
	if msg := PatternProblem(v); msg != "" {
		p.add(path, msg)
		return
	}
	if v == "*" {
		return
	}
	if v[0] != '*' && v[0] != '/' {
		p.addf(path, `must start with "/" (or "*" for a suffix), got %q`, v)
		return
	}
	checkDecodedPath(p, path, strings.Trim(v, "*"), false)
}

// validateAuthorizationReferences refuses a rule that matches on the
// client's principal on a listener that verifies no client
// certificate: no request there has a principal, so such an allow rule
// never matches and a not_principals deny rule refuses everything.
func (c *Config) validateAuthorizationReferences(p *problems) {
	mtls := map[Direction]bool{
		Inbound:  c.Listeners.Inbound.TLS.Enabled && c.Listeners.Inbound.TLS.ClientCAFile != "",
		Outbound: c.Listeners.Outbound.TLS.Enabled && c.Listeners.Outbound.TLS.ClientCAFile != "",
	}
	for _, list := range []struct {
		key   string
		rules []AuthorizationRule
	}{{"deny", c.Authorization.Deny}, {"allow", c.Authorization.Allow}} {
		for i := range list.rules {
			r := &list.rules[i]
			if !r.NeedsPrincipal() {
				continue
			}
			for _, l := range r.RuleListeners() {
				if (l == Inbound || l == Outbound) && !mtls[l] {
					p.addf(indexPath("authorization."+list.key, i)+".from",
						"matches on the client's principal, but listener %s verifies no client certificate (listeners.%s.tls.client_ca_file is not set): no request on it has one", l, l)
					break
				}
			}
		}
	}
}
