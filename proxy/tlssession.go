package proxy

import (
	"crypto/tls"
	"sync"
)

// maxTLSSessions bounds the sessions a cache keeps: one per endpoint
// address and server name, so it only fills for a cluster of that many
// endpoints (or one whose endpoints come and go); past it, an arbitrary
// one makes room.
const maxTLSSessions = 1024

// tlsSessions keeps the TLS sessions of a cluster's upstream connections
// for resumption, as Envoy's upstream TLS context does by default: a new
// connection to an endpoint resumes the last session made with it
// (TLS 1.3 tickets, TLS 1.2 session tickets) instead of a full handshake,
// which spares both sides the certificate checks and key exchange when
// connections are renewed (max_requests_per_connection,
// max_connection_duration, idle expiry, an upstream closing them).
//
// crypto/tls keys its cache by server name alone, so that every endpoint
// of a cluster with a tls.server_name would share one session, and a
// connection to one endpoint would offer the ticket of another, which
// its server cannot read: resumption would fail all the time under
// round robin. Each dial gets instead a view keyed by its address too
// (forAddr).
//
// A cache belongs to one pool, made with its tls.Config (active health
// checks make their connections without one), so a reload that changes
// the cluster's TLS settings or files starts an empty cache with its new
// pool: a session verified against CAs a reload removed is never
// resumed. crypto/tls itself
// refuses a cached session whose certificate expired or does not cover
// the server name.
type tlsSessions struct {
	mu sync.Mutex
	m  map[tlsSessionKey]*tls.ClientSessionState // guarded by mu
}

type tlsSessionKey struct{ addr, name string }

// forAddr is the cache a connection to addr ("host:port") resumes from
// and stores its session in.
func (s *tlsSessions) forAddr(addr string) tls.ClientSessionCache {
	return addrSessions{s: s, addr: addr}
}

// addrSessions is tlsSessions seen by the connections to one address.
type addrSessions struct {
	s    *tlsSessions
	addr string
}

// Get returns the session stored for the address and sessionKey (the
// server name crypto/tls asks about).
func (a addrSessions) Get(sessionKey string) (*tls.ClientSessionState, bool) {
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	cs, ok := a.s.m[tlsSessionKey{a.addr, sessionKey}]
	return cs, ok
}

// Put stores cs for the address and sessionKey; a nil cs removes the
// entry (crypto/tls's way of dropping a session it found unusable).
func (a addrSessions) Put(sessionKey string, cs *tls.ClientSessionState) {
	k := tlsSessionKey{a.addr, sessionKey}
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	if cs == nil {
		delete(a.s.m, k)
		return
	}
	if a.s.m == nil {
		a.s.m = make(map[tlsSessionKey]*tls.ClientSessionState)
	}
	if _, ok := a.s.m[k]; !ok && len(a.s.m) >= maxTLSSessions {
		for old := range a.s.m {
			delete(a.s.m, old)
			break
		}
	}
	a.s.m[k] = cs
}

var _ tls.ClientSessionCache = addrSessions{}
