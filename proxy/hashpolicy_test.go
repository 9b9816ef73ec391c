package proxy

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/config"
	"github.com/outrigger-mesh/outrigger/proxy/lb"
)

// selfBackend answers every request with its own address; /healthz with
// health, and everything else with fail when it is not 0.
type selfBackend struct {
	addr   string
	health atomic.Int32
	fail   atomic.Int32
	hits   atomic.Int64
}

// selfBackends starts n backends on loopback.
func selfBackends(t *testing.T, n int) ([]*selfBackend, []string) {
	t.Helper()
	var bs []*selfBackend
	var addrs []string
	for range n {
		b := &selfBackend{}
		b.health.Store(http.StatusOK)
		s := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/healthz" {
				w.WriteHeader(int(b.health.Load()))
				return
			}
			b.hits.Add(1)
			if code := b.fail.Load(); code != 0 {
				w.WriteHeader(int(code))
			}
			w.Write([]byte(b.addr))
		})
		b.addr = addr(s)
		bs = append(bs, b)
		addrs = append(addrs, b.addr)
	}
	return bs, addrs
}

// maglevConfig routes everything to a maglev cluster of addrs with the
// hash policies hps.
func maglevConfig(addrs []string, hps ...config.HashPolicy) *config.Config {
	return simpleConfig(config.Cluster{Endpoints: eps(addrs...), LBPolicy: config.LBMaglev}, func(r *config.Route) {
		r.HashPolicy = hps
	})
}

// via returns the address of the backend that answered a GET of path
// with the header pairs hdr.
func via(t *testing.T, h *harness, path string, hdr ...string) string {
	t.Helper()
	resp := mustGet(t, h.h1, h.url(path), hdr...)
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %q", path, resp.StatusCode, body)
	}
	return body
}

// owner is the address the table of addrs gives key.
func owner(addrs []string, key uint64) string {
	return addrs[lb.NewMaglev(addrs, nil, nil).Owner(key)]
}

// Requests with the same header value go to the same endpoint, the one
// the Maglev table of the endpoints gives the value's hash; different
// values reach every endpoint.
func TestMaglevSameHeaderSameEndpoint(t *testing.T) {
	_, addrs := selfBackends(t, 3)
	h := startProxy(t, maglevConfig(addrs, config.HashPolicy{Header: "x-user"}))
	seen := map[string]int{}
	for u := range 60 {
		user := fmt.Sprint("user-", u)
		want := owner(addrs, lb.Hash(user))
		for range 5 {
			if got := via(t, h, "/", "X-User", user); got != want {
				t.Fatalf("%s: answered by %s, want %s", user, got, want)
			}
		}
		seen[want]++
	}
	if len(seen) != 3 {
		t.Fatalf("60 users reached %d endpoints: %v", len(seen), seen)
	}
}

// Two proxies whose clusters list the same endpoints, in another order,
// send each key to the same endpoint.
func TestMaglevTwoProxiesAgree(t *testing.T) {
	_, addrs := selfBackends(t, 4)
	rev := []string{addrs[3], addrs[2], addrs[1], addrs[0]}
	h1 := startProxy(t, maglevConfig(addrs, config.HashPolicy{Header: "x-user"}))
	h2 := startProxy(t, maglevConfig(rev, config.HashPolicy{Header: "x-user"}))
	for u := range 40 {
		user := fmt.Sprint("user-", u)
		if a, b := via(t, h1, "/", "X-User", user), via(t, h2, "/", "X-User", user); a != b {
			t.Fatalf("%s: %s through one proxy, %s through the other", user, a, b)
		}
	}
}

// Requests without a key (the route has no hash_policy, or the request
// lacks the header) spread over every endpoint.
func TestMaglevWithoutKeySpreads(t *testing.T) {
	bs, addrs := selfBackends(t, 3)
	h := startProxy(t, maglevConfig(addrs, config.HashPolicy{Header: "x-user"}))
	for range 300 {
		via(t, h, "/")
	}
	for _, b := range bs {
		// Each gets 100 on average; fewer than 40 has odds below 1e-12.
		if n := b.hits.Load(); n < 40 {
			t.Fatalf("%s got %d of 300 requests without a key", b.addr, n)
		}
	}
}

// The cookie, query parameter and source IP policies hash the value the
// request carries; a request without it has no key.
func TestMaglevCookieQueryAndSourceIP(t *testing.T) {
	_, addrs := selfBackends(t, 5)
	t.Run("cookie", func(t *testing.T) {
		h := startProxy(t, maglevConfig(addrs, config.HashPolicy{Cookie: "session"}))
		for s := range 20 {
			sess := fmt.Sprint("s", s)
			want := owner(addrs, lb.Hash(sess))
			for _, c := range []string{"session=" + sess, "theme=dark; session=" + sess + "; lang=fr", `session="` + sess + `"`} {
				if got := via(t, h, "/", "Cookie", c); got != want {
					t.Fatalf("Cookie %q: answered by %s, want %s", c, got, want)
				}
			}
		}
	})
	t.Run("query_parameter", func(t *testing.T) {
		h := startProxy(t, maglevConfig(addrs, config.HashPolicy{QueryParameter: "user"}))
		for u := range 20 {
			user := fmt.Sprint("u", u)
			want := owner(addrs, lb.Hash(user))
			for _, q := range []string{"?user=" + user, "?a=1&user=" + user + "&user=other"} {
				if got := via(t, h, "/"+q); got != want {
					t.Fatalf("%s: answered by %s, want %s", q, got, want)
				}
			}
		}
	})
	t.Run("source_ip", func(t *testing.T) {
		h := startProxy(t, maglevConfig(addrs, config.HashPolicy{SourceIP: true}))
		want := owner(addrs, lb.Hash("127.0.0.1"))
		for range 20 {
			if got := via(t, h, "/"); got != want {
				t.Fatalf("answered by %s, want %s (the owner of 127.0.0.1)", got, want)
			}
		}
	})
}

// hashKey follows Envoy: hashes combine in order, a terminal policy ends
// the evaluation once a hash exists (its own or an earlier one's), and
// a request none of the policies finds a value in has no key.
func TestHashKeyPolicies(t *testing.T) {
	a, b := lb.Hash("A"), lb.Hash("B")
	req := func(hdr ...string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "http://svc/p?q=Q", nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			r.Header.Add(hdr[i], hdr[i+1])
		}
		return r
	}
	for _, tc := range []struct {
		name   string
		hps    []config.HashPolicy
		r      *http.Request
		want   uint64
		wantOK bool
	}{
		{"one header", []config.HashPolicy{{Header: "x-a"}}, req("X-A", "A"), a, true},
		{"absent", []config.HashPolicy{{Header: "x-a"}, {Cookie: "c"}}, req("X-B", "B"), 0, false},
		{"combined", []config.HashPolicy{{Header: "x-a"}, {Header: "x-b"}}, req("X-A", "A", "X-B", "B"), lb.Combine(a, b), true},
		{"terminal with a hash", []config.HashPolicy{{Header: "x-a", Terminal: true}, {Header: "x-b"}}, req("X-A", "A", "X-B", "B"), a, true},
		{"terminal without one", []config.HashPolicy{{Header: "x-a", Terminal: true}, {Header: "x-b"}}, req("X-B", "B"), b, true},
		{"terminal after a hash", []config.HashPolicy{{Header: "x-a"}, {Header: "x-c", Terminal: true}, {Header: "x-b"}}, req("X-A", "A", "X-B", "B"), a, true},
		{"same value twice does not cancel", []config.HashPolicy{{Header: "x-a"}, {Header: "x-b"}}, req("X-A", "A", "X-B", "A"), lb.Combine(a, a), true},
		{"values in any order", []config.HashPolicy{{Header: "x-a"}}, req("X-A", "B", "X-A", "A"), a + b, true},
		{"pseudo-header", []config.HashPolicy{{Header: ":authority"}}, req(), lb.Hash("svc"), true},
		{"query parameter", []config.HashPolicy{{QueryParameter: "q"}}, req(), lb.Hash("Q"), true},
		{"source ip", []config.HashPolicy{{SourceIP: true}}, req(), lb.Hash("192.0.2.1"), true}, // httptest's RemoteAddr
		{"cookie", []config.HashPolicy{{Cookie: "s"}}, req("Cookie", "t=B; s=A"), a, true},
		{"empty cookie is no key", []config.HashPolicy{{Cookie: "s"}, {Header: "x-b"}}, req("Cookie", "s=", "X-B", "B"), b, true},
		{"empty quoted cookie is no key", []config.HashPolicy{{Cookie: "s"}}, req("Cookie", `s=""`), 0, false},
	} {
		rt := &route{hash: compileHashPolicy(tc.hps)}
		got, ok := rt.hashKey(tc.r)
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("%s: key %x, %v; want %x, %v", tc.name, got, ok, tc.want, tc.wantOK)
		}
	}
}

// A key whose endpoint fails its health check goes to the endpoint of
// the next eligible slot, the same every time, and comes back when its
// endpoint passes again; the other keys stay where they were.
func TestMaglevUnhealthyEndpointKeysMoveAndComeBack(t *testing.T) {
	bs, addrs := selfBackends(t, 3)
	cfg := maglevConfig(addrs, config.HashPolicy{Header: "x-user"})
	cl := cfg.Clusters["svc"]
	cl.HealthCheck = fastHealthCheck()
	cfg.Clusters["svc"] = cl
	h := startProxy(t, cfg)
	users := make([]string, 30)
	home := map[string]string{}
	for i := range users {
		users[i] = fmt.Sprint("user-", i)
		home[users[i]] = via(t, h, "/", "X-User", users[i])
	}
	down := bs[1]
	down.health.Store(http.StatusServiceUnavailable)
	eventually(t, 5*time.Second, "endpoint unhealthy", func() bool {
		return endpointState(h, "svc", down.addr).State == "unhealthy"
	})
	moved := 0
	for _, u := range users {
		got := via(t, h, "/", "X-User", u)
		switch {
		case got == down.addr:
			t.Fatalf("%s went to the unhealthy endpoint", u)
		case home[u] != down.addr && got != home[u]:
			t.Fatalf("%s moved from %s to %s, though its endpoint is healthy", u, home[u], got)
		case home[u] == down.addr:
			moved++
			if again := via(t, h, "/", "X-User", u); again != got {
				t.Fatalf("%s: %s, then %s", u, got, again)
			}
		}
	}
	if moved == 0 {
		t.Fatalf("no user was on %s", down.addr)
	}
	down.health.Store(http.StatusOK)
	eventually(t, 5*time.Second, "endpoint healthy", func() bool {
		return endpointState(h, "svc", down.addr).State == "healthy"
	})
	for _, u := range users {
		if got := via(t, h, "/", "X-User", u); got != home[u] {
			t.Fatalf("%s: %s after the endpoint came back, %s before", u, got, home[u])
		}
	}
}

// excluding is every endpoint of n but one.
type excluding struct{ n, not int }

func (e excluding) Len() int            { return e.n }
func (e excluding) Eligible(i int) bool { return i != e.not }
func (e excluding) Active(int) int64    { return 0 }
func (e excluding) Weight(int) int64    { return 1 }

// A retry goes to the key's second choice: the endpoint of the next
// slot the first attempt's endpoint does not hold.
func TestMaglevRetryGoesToTheKeysSecondChoice(t *testing.T) {
	bs, addrs := selfBackends(t, 4)
	cfg := maglevConfig(addrs, config.HashPolicy{Header: "x-user"})
	cfg.Routes[0].Retry = &config.RetryPolicy{Attempts: 1, RetryOn: []config.RetryCondition{"5xx"},
		Backoff: config.Backoff{Base: time.Millisecond}}
	// Half the attempts fail: the breaker would open and stop the
	// retries, and outlier detection would eject an endpoint that was
	// the first choice of five keys in a row, which would move the keys
	// whose second choice it is to their third.
	cl := cfg.Clusters["svc"]
	cl.CircuitBreaker.Disabled = true
	cl.OutlierDetection.Disabled = true
	cfg.Clusters["svc"] = cl
	h := startProxy(t, cfg)
	m := lb.NewMaglev(addrs, nil, nil)
	for u := range 20 {
		user := fmt.Sprint("user-", u)
		key := lb.Hash(user)
		first := m.Owner(key)
		second := m.PickKey(excluding{n: 4, not: first}, key)
		bs[first].fail.Store(http.StatusServiceUnavailable)
		got := via(t, h, "/", "X-User", user)
		bs[first].fail.Store(0)
		if got != addrs[second] {
			t.Fatalf("%s: retry answered by %s, want %s (first choice %s)", user, got, addrs[second], addrs[first])
		}
	}
}

// /clusters shows the policy.
func TestMaglevClusterStatus(t *testing.T) {
	_, addrs := selfBackends(t, 2)
	h := startProxy(t, maglevConfig(addrs))
	if got := h.p.Clusters()[0].LBPolicy; got != "maglev" {
		t.Fatalf("lb_policy %q, want maglev", got)
	}
}
