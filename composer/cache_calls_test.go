package composer

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Two calls that render the same request each keep their own cached
// result: what a call passes on and how much it may read are its own, so
// a result cached by one call must not answer the other.
func TestCachedResultIsTheCallsOwn(t *testing.T) {
	e := newEnv(t)
	var hits atomic.Int64
	e.service("docs", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("X-A", "from-docs")
		w.Header().Set("X-B", "from-docs")
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"text":"` + strings.Repeat("x", 100) + `"}`))
	}))
	ttl := Duration(time.Minute)
	spec := Spec{Calls: []Call{
		{Name: "a", Cluster: "docs", Path: "/doc", CacheTTL: ttl, PassHeaders: []string{"X-A"}},
		{Name: "b", Cluster: "docs", Path: "/doc", CacheTTL: ttl, PassHeaders: []string{"X-B"}},
		{Name: "small", Cluster: "docs", Path: "/doc", CacheTTL: ttl, MaxResponseBytes: 50, Optional: true},
	}}
	spec.Output.PartialField = "_meta"
	base, _ := e.serve("GET /c", spec, Options{Name: "c"})

	for i := range 3 {
		r := e.get(base + "/c")
		if r.status != http.StatusOK {
			t.Fatalf("request %d: status %d: %s", i, r.status, r.body)
		}
		if r.header.Get("X-A") != "from-docs" || r.header.Get("X-B") != "from-docs" {
			t.Errorf("request %d: X-A %q, X-B %q, want both passed on", i, r.header.Get("X-A"), r.header.Get("X-B"))
		}
		m := r.json(t)
		if _, ok := m["small"]; ok {
			t.Errorf("request %d: the call capped at 50 bytes has a result of 111: %s", i, r.body)
		}
		if _, ok := m["_meta"]; !ok {
			t.Errorf("request %d: not partial although the capped call failed: %s", i, r.body)
		}
	}
	// The first request fills the cache for a and b; small never caches.
	if n := hits.Load(); n > 3+2 {
		t.Errorf("%d backend requests for 3 composite ones: the cache serves nothing", n)
	}
}
