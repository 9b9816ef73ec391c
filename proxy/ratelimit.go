package proxy

import (
	"encoding/json"
	"math"
	"math/bits"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// tokenBucket is a route's local rate limit (routes[].rate_limit), as
// Envoy's local rate limit filter: one bucket for every request the
// route takes, which starts full, loses a token per request let through
// and gains fill tokens every interval, spread evenly over it (Envoy's
// bucket refills continuously as well, at tokens_per_fill per
// fill_interval), up to max.
//
// It has no timer: the tokens refilled are computed from the time each
// request comes, and the state is one counter changed by compare and
// swap, so that the requests of every connection share it without a
// lock. With e nanoseconds since base, filled(e) = ⌊e·fill/interval⌋
// tokens have come in, spent of them are gone (taken, or lost to a full
// bucket), and filled(e) − spent are left. Both count modulo 2⁶⁴: only
// their difference matters, and it stays far inside that range.
type tokenBucket struct {
	// spent counts the tokens taken since base, and those a full bucket
	// did not hold; it starts at −max, a full bucket.
	spent atomic.Uint64

	base     time.Time
	max      uint64
	fill     uint64
	interval uint64 // nanoseconds, at least config.MinRateLimitFillInterval

	// limit is the configuration the bucket was made for: a reload that
	// keeps it keeps the bucket (see compileRateLimit).
	limit config.RateLimit
}

// newTokenBucket returns a full bucket for rl, its refills counted from
// now.
func newTokenBucket(rl config.RateLimit, now time.Time) *tokenBucket {
	b := &tokenBucket{base: now, max: uint64(rl.MaxTokens), fill: uint64(rl.Fill()),
		interval: uint64(rl.FillInterval), limit: rl}
	b.spent.Store(-b.max)
	return b
}

// filled is the tokens added in the first e nanoseconds, modulo 2⁶⁴, and
// rem the part of the next one added so far, in units of 1/interval of
// a token. The 128-bit product cannot overflow: r·fill/interval < fill.
func (b *tokenBucket) filled(e uint64) (n, rem uint64) {
	q, r := e/b.interval, e%b.interval
	hi, lo := bits.Mul64(r, b.fill)
	part, rem := bits.Div64(hi, lo, b.interval)
	return q*b.fill + part, rem
}

// elapsed is now's time since base in nanoseconds; a clock reading
// before base (an injected clock set back) counts as base.
func (b *tokenBucket) elapsed(now time.Time) uint64 {
	return uint64(max(now.Sub(b.base), 0))
}

// take spends a token at now, and reports whether there was one; when
// there was not, wait is the time until there is.
func (b *tokenBucket) take(now time.Time) (ok bool, wait time.Duration) {
	e := b.elapsed(now)
	f, rem := b.filled(e)
	for {
		s := b.spent.Load()
		left := int64(f - s)
		if left <= 0 {
			// left is below zero when a request that read a later clock
			// took the token filled in between.
			return false, b.waitFor(uint64(1-left), rem)
		}
		next := s + 1
		if left > int64(b.max) {
			// The tokens a full bucket did not hold are lost.
			next = f - b.max + 1
		}
		if b.spent.CompareAndSwap(s, next) {
			return true, 0
		}
	}
}

// waitFor is the time until need more tokens have come in, when rem
// (see filled) of the next one has: ⌈(need·interval − rem)/fill⌉
// nanoseconds, at least 1.
func (b *tokenBucket) waitFor(need, rem uint64) time.Duration {
	hi, lo := bits.Mul64(need, b.interval)
	lo, borrow := bits.Sub64(lo, rem, 0)
	hi -= borrow
	lo, carry := bits.Add64(lo, b.fill-1, 0)
	hi += carry
	if hi >= b.fill {
		return math.MaxInt64
	}
	ns, _ := bits.Div64(hi, lo, b.fill)
	return time.Duration(min(max(ns, 1), math.MaxInt64))
}

// tokens is the count left at now, for the gauge.
func (b *tokenBucket) tokens(now time.Time) uint64 {
	f, _ := b.filled(b.elapsed(now))
	left := int64(f - b.spent.Load())
	return uint64(min(max(left, 0), int64(b.max)))
}

// retryAfterSeconds is the Retry-After value for wait: whole seconds, rounded
// up, so that a client that comes back then finds a token. The
// remainder is rounded apart, as adding a second less a nanosecond to
// the longest wait (math.MaxInt64) would wrap it negative.
func retryAfterSeconds(wait time.Duration) string {
	s := int64(wait / time.Second)
	if wait%time.Second != 0 {
		s++
	}
	return strconv.FormatInt(s, 10)
}

// compileRateLimit returns the bucket of the route key names: the one
// the route of the same key had in the snapshot serving now when its
// rate_limit is the same, so that a reload (a control plane pushes them
// often) does not hand out another max_tokens; a new, full one when the
// route is new or its rate_limit changed. prev indexes the serving
// snapshot's routes, made once per compile (see prevRoutes).
func (p *Proxy) compileRateLimit(key routeKey, rl config.RateLimit, prev map[routeKey]*route) *tokenBucket {
	// Compared with its default written in: a tokens_per_fill of 0 is
	// the same limit as one of 1.
	rl.TokensPerFill = rl.Fill()
	if r := prev[key]; r != nil && r.rateLimit != nil && r.rateLimit.limit == rl {
		return r.rateLimit
	}
	return newTokenBucket(rl, p.now())
}

// routeKey names a route across snapshots: its listener and name, and
// for a route left without a name, its match too. Such a route is named
// by its index, which a reload that inserts or removes a route before it
// gives to another route: the match keeps that one from taking over
// the state of the route that was there (an emptied bucket would refuse
// requests it never let through).
type routeKey struct {
	l     Listener
	name  string
	match string // the unnamed route's match, as JSON; "" for a named one
}

// newRouteKey is the key of rc, named name, on listener l.
func newRouteKey(l Listener, name string, rc *config.Route) routeKey {
	k := routeKey{l: l, name: name}
	if rc.Name == "" {
		// Plain data: marshalling it cannot fail.
		b, _ := json.Marshal(&rc.Match)
		k.match = string(b)
	}
	return k
}

// prevRoutes indexes the routes of the snapshot serving now that hold
// state a reload carries over (a rate limit's bucket, a fault's count of
// the requests it holds), by their key, so that compiling each
// route looks its own up in constant time; nil when none has any.
func (p *Proxy) prevRoutes() map[routeKey]*route {
	s := p.snap.Load()
	if s == nil {
		return nil
	}
	var m map[routeKey]*route
	for _, t := range s.tables {
		if t == nil {
			continue
		}
		for _, rt := range t.routes {
			if rt.rateLimit == nil && rt.fault == nil {
				continue
			}
			if m == nil {
				m = map[routeKey]*route{}
			}
			m[rt.key] = rt
		}
	}
	return m
}

// serveRateLimit takes a token from rt's bucket for r at now, and when
// there is none answers the request itself, 429 rate_limited with
// Retry-After, and reports that it did; the route's cluster="" series
// count those, from start. The route's response_headers edits apply to
// the reply, as to its other local replies.
//
//go:noinline
func (p *Proxy) serveRateLimit(w http.ResponseWriter, rt *route, grpc bool, start, now time.Time) bool {
	ok, wait := rt.rateLimit.take(now)
	if ok {
		return false
	}
	if !rt.respHeaders.empty() {
		rt.respHeaders.apply(w.Header())
	}
	status := p.localReply(w, grpc, localReply{reason: ReasonRateLimited,
		extra: [][2]string{{"Retry-After", retryAfterSeconds(wait)}}})
	rt.localStats.record(status, p.now().Sub(start).Seconds())
	return true
}
