package proxy

import (
	"net/http"
	"net/textproto"
	"strings"

	"github.com/outrigger-mesh/outrigger/proxy/config"
	"github.com/outrigger-mesh/outrigger/proxy/lb"
)

// A route's hash_policy makes the key by which a maglev cluster picks
// the endpoint of a request (see lb.Maglev), as Envoy's route
// hash_policy does: each policy that finds its value in the request
// hashes it, the hashes are combined in order (lb.Combine), and a
// terminal policy ends the evaluation once there is a hash. A request
// none of them finds a value in has no key, and the cluster picks a
// random endpoint.

type hashKind uint8

const (
	hashHeader hashKind = iota
	hashCookie
	hashSourceIP
	hashQuery
)

// hashPolicy is one compiled hash_policy entry.
type hashPolicy struct {
	kind hashKind
	// name is the header's canonical name, the pseudo-header
	// (":authority", ...), the cookie's or the query parameter's.
	name     string
	pseudo   bool
	terminal bool
}

// compileHashPolicy compiles a route's hash_policy, validated; nil for
// none.
func compileHashPolicy(hps []config.HashPolicy) []hashPolicy {
	if len(hps) == 0 {
		return nil
	}
	out := make([]hashPolicy, 0, len(hps))
	for _, h := range hps {
		hp := hashPolicy{terminal: h.Terminal}
		switch {
		case h.Header != "":
			hp.kind = hashHeader
			if strings.HasPrefix(h.Header, ":") {
				hp.name, hp.pseudo = strings.ToLower(h.Header), true
			} else {
				hp.name = textproto.CanonicalMIMEHeaderKey(h.Header)
			}
		case h.Cookie != "":
			hp.kind, hp.name = hashCookie, h.Cookie
		case h.SourceIP:
			hp.kind = hashSourceIP
		case h.QueryParameter != "":
			hp.kind, hp.name = hashQuery, h.QueryParameter
		default:
			continue // refused by validation
		}
		out = append(out, hp)
	}
	return out
}

// hashKey returns r's hash key under rt's hash_policy, and ok false when
// no policy found its value. It reads r as the client sent it and
// allocates nothing.
func (rt *route) hashKey(r *http.Request) (key uint64, ok bool) {
	for i := range rt.hash {
		hp := &rt.hash[i]
		if h, found := hp.eval(r); found {
			key, ok = lb.Combine(key, h), true
		}
		// Envoy stops at a terminal policy when a hash has been made,
		// by it or a policy before it.
		if hp.terminal && ok {
			break
		}
	}
	return key, ok
}

// eval returns the hash of hp's value in r, and found false when r has
// none.
func (hp *hashPolicy) eval(r *http.Request) (uint64, bool) {
	switch hp.kind {
	case hashHeader:
		if hp.pseudo {
			return lb.Hash(pseudoHeader(r, hp.name)), true
		}
		vv := r.Header[hp.name]
		switch len(vv) {
		case 0:
			return 0, false
		case 1:
			return lb.Hash(vv[0]), true
		}
		// Each value hashed, the hashes summed: the same key whatever
		// the order of the values (Envoy sorts them), without a copy.
		var sum uint64
		for _, v := range vv {
			sum += lb.Hash(v)
		}
		return sum, true
	case hashCookie:
		// An empty value is no key (as in Envoy): a client that sends
		// "session=" before it has a session would otherwise go, with
		// every other such client, to one endpoint.
		if v, ok := cookieValue(r.Header, hp.name); ok && v != "" {
			return lb.Hash(v), true
		}
	case hashSourceIP:
		if host, _ := splitHostPort(r.RemoteAddr); host != "" {
			return lb.Hash(host), true
		}
	case hashQuery:
		if v, ok := queryValue(r.URL.RawQuery, hp.name); ok {
			return lb.Hash(v), true
		}
	}
	return 0, false
}

// cookieValue returns the value of the first cookie named name in h's
// Cookie fields, without the double quotes a value may have (as
// net/http's Request.Cookie gives it), without parsing the others into
// Cookie values (Request.Cookie allocates each).
func cookieValue(h http.Header, name string) (string, bool) {
	for _, line := range h["Cookie"] {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
			if !ok || k != name {
				continue
			}
			if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			return v, true
		}
	}
	return "", false
}

// queryValue returns the value of the first parameter named name in
// query, both as written (escapes not decoded); a parameter without "="
// has the empty value.
func queryValue(query, name string) (string, bool) {
	for query != "" {
		var part string
		part, query, _ = strings.Cut(query, "&")
		k, v, _ := strings.Cut(part, "=")
		if k == name {
			return v, true
		}
	}
	return "", false
}
