package composer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestIndependentCallsAreInFlightTogether(t *testing.T) {
	e := newEnv(t)
	b := newBarrier(3)
	for _, name := range []string{"a", "b", "c"} {
		e.service(name, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
			defer cancel()
			if !b.wait(ctx) {
				http.Error(w, "not all calls arrived together", http.StatusConflict)
				return
			}
			fmt.Fprintf(w, `{"from":%q}`, name)
		}))
	}
	spec := Spec{Calls: []Call{
		{Name: "a", Cluster: "a", Path: "/a"},
		{Name: "b", Cluster: "b", Path: "/b"},
		{Name: "c", Cluster: "c", Path: "/c"},
	}}
	base, _ := e.serve("GET /x", spec, Options{})
	r := e.get(base + "/x")
	if r.status != 200 {
		t.Fatalf("status %d: %s (calls were not concurrent)", r.status, r.body)
	}
	if got := string(r.body); got != `{"a":{"from":"a"},"b":{"from":"b"},"c":{"from":"c"}}`+"\n" {
		t.Errorf("body %s", got)
	}
}

// A call starts as soon as its own dependencies are done, not when its whole
// topological level is: "dependent" (needs "fast") must be able to run while
// "slow" (independent) is still in flight, because slow waits for it.
func TestCallStartsWhenItsDependenciesAreDoneNotItsLevel(t *testing.T) {
	e := newEnv(t)
	dependentArrived := make(chan struct{})
	var once sync.Once
	e.jsonService("fast", map[string]string{"/fast": `{"id":"k1"}`})
	e.service("slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-dependentArrived:
			io.WriteString(w, `{"slow":true}`)
		case <-time.After(10 * time.Second):
			http.Error(w, "dependent call never started", http.StatusConflict)
		case <-r.Context().Done():
		}
	}))
	e.service("dep", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { close(dependentArrived) })
		fmt.Fprintf(w, `{"path":%q}`, r.URL.EscapedPath())
	}))
	spec := Spec{Calls: []Call{
		{Name: "fast", Cluster: "fast", Path: "/fast"},
		{Name: "slow", Cluster: "slow", Path: "/slow"},
		{Name: "dependent", Cluster: "dep", Path: "/things/{fast.id}"},
	}}
	base, _ := e.serve("GET /x", spec, Options{})
	r := e.get(base + "/x")
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if !strings.Contains(string(r.body), `"dependent":{"path":"/things/k1"}`) {
		t.Errorf("dependent call did not see the earlier result: %s", r.body)
	}
}

func TestRequestValuesReachCallsAsConfigured(t *testing.T) {
	e := newEnv(t)
	var got http.Header
	var gotURL, gotBody string
	e.service("svc", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		gotURL = r.URL.RequestURI()
		b, _ := io.ReadAll(r.Body)
		gotBody = string(b)
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"ok":true}`)
	}))
	spec := Spec{
		ForwardHeaders: []string{"authorization"},
		Calls: []Call{{
			Name: "quote", Cluster: "svc", Method: "POST", Path: "/tenants/{header.X-Tenant}/quotes/{id}",
			Query:   map[string]string{"lang": "{query.lang}", "fixed": "1"},
			Headers: map[string]string{"X-Order": "order-{id}"},
			Body:    map[string]any{"id": "{id}", "note": "for {query.lang}", "n": 3, "list": []any{"{header.X-Tenant}"}},
		}},
	}
	base, _ := e.serve("POST /orders/{id}/quote", spec, Options{})
	req, _ := http.NewRequest(http.MethodPost, base+"/orders/42/quote?lang=fr", nil)
	req.Header.Set("Authorization", "Bearer t")
	req.Header.Set("X-Tenant", "acme")
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Errorf("single-call status not passed through: %d %s", resp.StatusCode, body)
	}
	if gotURL != "/tenants/acme/quotes/42?fixed=1&lang=fr" {
		t.Errorf("url %q", gotURL)
	}
	if got.Get("Authorization") != "Bearer t" || got.Get("X-Order") != "order-42" || got.Get("X-Tenant") != "" {
		t.Errorf("headers %v", got)
	}
	if gotBody != `{"id":"42","list":["acme"],"n":3,"note":"for fr"}` {
		t.Errorf("body %s", gotBody)
	}
}

func TestFanOutDeduplicatesAndIsCapped(t *testing.T) {
	e := newEnv(t)
	var calls atomic.Int64
	e.jsonService("orders", map[string]string{
		"/orders/1": `{"items":[{"p":7},{"p":8},{"p":7},{"p":"7"},{"p":8}]}`,
		"/orders/2": `{"items":[{"p":1},{"p":2},{"p":3}]}`,
	})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /products/{id}", func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		fmt.Fprintf(w, `{"id":%q}`, r.PathValue("id"))
	})
	e.service("catalog", mux)
	spec := Spec{
		Calls: []Call{
			{Name: "order", Cluster: "orders", Path: "/orders/{id}"},
			{Name: "products", Cluster: "catalog", Path: "/products/{each}", ForEach: "order.items[].p"},
		},
		Limits: Limits{MaxFanOut: 2},
	}
	base, _ := e.serve("GET /orders/{id}", spec, Options{})
	r := e.get(base + "/orders/1")
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	// 7, 8 and "7" are distinct elements, but 7 and "7" render the same request.
	if n := calls.Load(); n != 2 {
		t.Errorf("%d backend calls, want 2 (de-duplicated)", n)
	}
	if !strings.Contains(string(r.body), `"products":[{"id":"7"},{"id":"8"}]`) {
		t.Errorf("body %s", r.body)
	}
	calls.Store(0)
	r = e.get(base + "/orders/2")
	if r.status != http.StatusBadGateway || r.header.Get(HeaderError) != ErrorCallFailed {
		t.Fatalf("over the cap: status %d %s", r.status, r.body)
	}
	if !strings.Contains(string(r.body), `"reason":"fan_out_exceeded"`) || !strings.Contains(string(r.body), "max_fan_out is 2") {
		t.Errorf("body %s", r.body)
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("%d calls made over the cap, want none", n)
	}
}

// breakerBackend rejects every call to the named clusters as an open breaker
// would, and sends the rest through next.
type breakerBackend struct {
	next Backend
	open map[string]bool
}

func (b *breakerBackend) Do(ctx context.Context, call *Request) (*Response, error) {
	if b.open[call.Cluster] {
		return nil, fmt.Errorf("cluster %s: %w", call.Cluster, ErrBreakerOpen)
	}
	return b.next.Do(ctx, call)
}

func shopSpec() Spec {
	return Spec{
		Calls: []Call{
			{Name: "order", Cluster: "orders", Path: "/orders/{id}"},
			{Name: "customer", Cluster: "customers", Path: "/customers/{order.customerId}"},
			{Name: "shipment", Cluster: "shipments", Path: "/shipments/{id}", Optional: true},
		},
		Output: Output{Merge: []string{"order"}, Nest: []Nest{{From: "customer"}, {From: "shipment"}}},
	}
}

func shopEnv(t *testing.T) *env {
	e := newEnv(t)
	e.jsonService("orders", map[string]string{"/orders/1": `{"id":1,"customerId":7}`})
	e.jsonService("customers", map[string]string{"/customers/7": `{"name":"Ada"}`})
	e.jsonService("shipments", map[string]string{"/shipments/1": `{"carrier":"UPS"}`})
	return e
}

func TestOptionalCallRejectedByBreakerGivesPartialResponse(t *testing.T) {
	e := shopEnv(t)
	reg := prometheus.NewRegistry()
	b := &breakerBackend{next: e.backend, open: map[string]bool{"shipments": true}}
	base, _ := e.serveWith("GET /orders/{id}/details", shopSpec(), b, Options{Name: "details", Registry: reg})
	r := e.get(base + "/orders/1/details")
	if r.status != 200 || r.header.Get(HeaderPartial) != "shipment" {
		t.Fatalf("status %d partial %q: %s", r.status, r.header.Get(HeaderPartial), r.body)
	}
	want := `{"_outrigger":{"calls":[{"name":"shipment","status":"failed","reason":"breaker_open","http_status":503}],"partial":true},"customer":{"name":"Ada"},"customerId":7,"id":1}` + "\n"
	if string(r.body) != want {
		t.Errorf("body\n%s\nwant\n%s", r.body, want)
	}
	if v := testutil.ToFloat64(mustCounter(t, reg, "outrigger_composer_requests_total", "details", "partial")); v != 1 {
		t.Errorf("partial requests metric = %v", v)
	}
	if v := testutil.ToFloat64(mustCounter(t, reg, "outrigger_composer_call_failures_total", "details", "shipment", "breaker_open")); v != 1 {
		t.Errorf("breaker_open failures of shipment = %v", v)
	}
	// Every reason's series exists at 0; only that one counted.
	if v := gatheredSum(t, reg, "outrigger_composer_call_failures_total"); v != 1 {
		t.Errorf("%v failures counted, want 1", v)
	}
}

// mustCounter fetches a counter of the composer's metrics from the registry.
func mustCounter(t *testing.T, reg *prometheus.Registry, name string, labels ...string) prometheus.Collector {
	t.Helper()
	m, err := newMetrics(reg) // returns the collectors already registered
	if err != nil {
		t.Fatal(err)
	}
	switch name {
	case "outrigger_composer_requests_total":
		return m.requests.WithLabelValues(labels...)
	case "outrigger_composer_cache_lookups_total":
		return m.cache.WithLabelValues(labels...)
	case "outrigger_composer_partial_calls_total":
		return m.partials.WithLabelValues(labels...)
	case "outrigger_composer_call_failures_total":
		return m.callFailures.WithLabelValues(labels...)
	}
	t.Fatalf("unknown metric %s", name)
	return nil
}

// gatheredSum is the sum of the counters of metric name on reg.
func gatheredSum(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func TestPartialReportCanBeHeaderOnlyOrRenamed(t *testing.T) {
	e := shopEnv(t)
	b := &breakerBackend{next: e.backend, open: map[string]bool{"shipments": true}}
	spec := shopSpec()
	spec.Output.PartialHeaderOnly = true
	base, _ := e.serveWith("GET /orders/{id}/details", spec, b, Options{})
	r := e.get(base + "/orders/1/details")
	if r.header.Get(HeaderPartial) != "shipment" || strings.Contains(string(r.body), "partial") {
		t.Errorf("header-only: %q %s", r.header.Get(HeaderPartial), r.body)
	}
	spec = shopSpec()
	spec.Output.PartialField = "_meta"
	base, _ = e.serveWith("GET /orders/{id}/details", spec, b, Options{})
	r = e.get(base + "/orders/1/details")
	if _, ok := r.json(t)["_meta"]; !ok {
		t.Errorf("renamed field missing: %s", r.body)
	}
}

func TestRequiredCallFailureStatuses(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := closed.Addr().String()
	closed.Close()

	cases := []struct {
		name       string
		setup      func(e *env, spec *Spec) Backend
		wantStatus int
		wantReason Reason
	}{
		{"breaker open", func(e *env, spec *Spec) Backend {
			return &breakerBackend{next: e.backend, open: map[string]bool{"customers": true}}
		}, 503, ReasonBreakerOpen},
		{"call timeout", func(e *env, spec *Spec) Backend {
			e.service("customers", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
			spec.Calls[1].Timeout = Duration(50 * time.Millisecond)
			return e.backend
		}, 504, ReasonTimeout},
		{"connect failure", func(e *env, spec *Spec) Backend {
			e.backend.Clusters["customers"] = "http://" + deadAddr
			return e.backend
		}, 502, ReasonConnect},
		{"upstream 500", func(e *env, spec *Spec) Backend {
			e.service("customers", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", 500) }))
			return e.backend
		}, 502, ReasonUpstreamStatus},
		{"invalid json", func(e *env, spec *Spec) Backend {
			e.service("customers", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"a":1} trailing`) }))
			return e.backend
		}, 502, ReasonInvalidJSON},
		{"overall deadline", func(e *env, spec *Spec) Backend {
			e.service("customers", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
			// The order call must be answered within it, or it is the
			// call the deadline fails: not 100ms, which a loaded machine
			// can take for a first call's connection and answer.
			spec.Limits.Deadline = Duration(2 * time.Second)
			return e.backend
		}, 504, ReasonDeadline},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := shopEnv(t)
			spec := shopSpec()
			b := tc.setup(e, &spec)
			base, _ := e.serveWith("GET /orders/{id}/details", spec, b, Options{})
			r := e.get(base + "/orders/1/details")
			if r.status != tc.wantStatus || r.header.Get(HeaderError) != ErrorCallFailed {
				t.Fatalf("status %d error %q: %s", r.status, r.header.Get(HeaderError), r.body)
			}
			var eb errorBody
			if err := json.Unmarshal(r.body, &eb); err != nil {
				t.Fatal(err)
			}
			if eb.Call != "customer" || eb.Reason != tc.wantReason || eb.Error != ErrorCallFailed {
				t.Errorf("error body %s", r.body)
			}
		})
	}
}

func TestDeadlineBoundsOptionalCallsToo(t *testing.T) {
	e := shopEnv(t)
	e.service("shipments", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	spec := shopSpec()
	// The required calls (order, then customer) must be answered within
	// it: not 100ms, which a loaded machine can take for their first
	// connections and answers.
	spec.Limits.Deadline = Duration(2 * time.Second)
	base, _ := e.serve("GET /orders/{id}/details", spec, Options{})
	r := e.get(base + "/orders/1/details")
	if r.status != 200 || !strings.Contains(string(r.body), `"reason":"deadline_exceeded","http_status":504`) {
		t.Errorf("status %d: %s", r.status, r.body)
	}
}

func TestPassErrorsForwardsAChosenCallsAnswer(t *testing.T) {
	e := shopEnv(t)
	spec := shopSpec()
	spec.Calls[0].PassErrors = true
	base, _ := e.serve("GET /orders/{id}/details", spec, Options{})
	r := e.get(base + "/orders/404/details")
	if r.status != 404 || string(r.body) != `{"error":"not found"}`+"\n" || r.header.Get(HeaderError) != "" {
		t.Errorf("status %d error %q body %s", r.status, r.header.Get(HeaderError), r.body)
	}
}

func TestBadValueFromTheRequestIsABadRequest(t *testing.T) {
	e := shopEnv(t)
	spec := Spec{Calls: []Call{
		{Name: "order", Cluster: "orders", Path: "/orders/{query.order}"},
		{Name: "customer", Cluster: "customers", Path: "/customers/7"},
	}}
	base, _ := e.serve("GET /x", spec, Options{})
	for _, q := range []string{"", "?order=..", "?order=."} {
		r := e.get(base + "/x" + q)
		if r.status != 400 || r.header.Get(HeaderError) != ErrorBadRequest {
			t.Errorf("%q: status %d %s", q, r.status, r.body)
		}
	}
}

func TestPassHeadersFirstDeclaredCallWins(t *testing.T) {
	e := newEnv(t)
	for _, n := range []string{"a", "b"} {
		e.service(n, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age="+n)
			w.Header().Set("X-Only-"+n, "yes")
			io.WriteString(w, `{}`)
		}))
	}
	spec := Spec{Calls: []Call{
		{Name: "a", Cluster: "a", Path: "/", PassHeaders: []string{"cache-control", "x-only-a"}},
		{Name: "b", Cluster: "b", Path: "/", PassHeaders: []string{"Cache-Control", "X-Only-B"}},
	}}
	base, _ := e.serve("GET /x", spec, Options{})
	r := e.get(base + "/x")
	if r.header.Get("Cache-Control") != "max-age=a" || r.header.Get("X-Only-A") != "yes" || r.header.Get("X-Only-B") != "yes" {
		t.Errorf("headers %v", r.header)
	}
}

// streamer writes size bytes of a JSON string, chunk by chunk, until done or
// the connection goes; it counts what it wrote.
func streamer(size int64, written *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := []byte(strings.Repeat("x", 64<<10))
		io.WriteString(w, `"`)
		for n := int64(0); n < size; n += int64(len(chunk)) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			written.Add(int64(len(chunk)))
		}
		io.WriteString(w, `"`)
	})
}

func TestHugeResponseIsCutAtTheCapWithoutBuffering(t *testing.T) {
	e := shopEnv(t)
	var written atomic.Int64
	e.service("shipments", streamer(100<<20, &written))
	spec := shopSpec()
	spec.Calls[2].MaxResponseBytes = 256 << 10
	base, _ := e.serve("GET /orders/{id}/details", spec, Options{})

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	r := e.get(base + "/orders/1/details")
	runtime.ReadMemStats(&after)

	if r.status != 200 || !strings.Contains(string(r.body), `"reason":"response_too_large"`) {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	// Generous bounds: the composer reads at most cap+1 bytes; the backend may
	// have written more into socket buffers before the connection closed.
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 40<<20 {
		t.Errorf("allocated %d MiB while a 100 MiB backend was cut at 256 KiB", grew>>20)
	}
	if w := written.Load(); w >= 100<<20 {
		t.Errorf("backend wrote all %d bytes: the body was read to the end", w)
	}
}

func TestTotalByteBudgetIsSharedByCalls(t *testing.T) {
	e := newEnv(t)
	big := `"` + strings.Repeat("y", 600<<10) + `"`
	e.jsonService("a", map[string]string{"/": big})
	e.jsonService("b", map[string]string{"/": big})
	spec := Spec{
		Calls:  []Call{{Name: "a", Cluster: "a", Path: "/"}, {Name: "b", Cluster: "b", Path: "/", Optional: true}},
		Limits: Limits{MaxTotalBytes: 1 << 20},
	}
	base, _ := e.serve("GET /x", spec, Options{})
	r := e.get(base + "/x")
	// Which call crosses the budget depends on timing: either the required one
	// fails the request, or the optional one is reported missing.
	switch {
	case r.status == 502 && strings.Contains(string(r.body), `"reason":"total_too_large"`):
	case r.status == 200 && r.header.Get(HeaderPartial) == "b" && strings.Contains(string(r.body), `"reason":"total_too_large"`):
	default:
		t.Errorf("status %d partial %q: %.300s", r.status, r.header.Get(HeaderPartial), r.body)
	}
}

func TestComposedBodyIsCapped(t *testing.T) {
	e := newEnv(t)
	// 200 rows all matching one 4 KiB element: the join multiplies it past the cap.
	rows := make([]string, 200)
	for i := range rows {
		rows[i] = `{"k":1}`
	}
	e.jsonService("a", map[string]string{"/": `{"rows":[` + strings.Join(rows, ",") + `]}`})
	e.jsonService("b", map[string]string{"/": `[{"k":1,"blob":"` + strings.Repeat("z", 4<<10) + `"}]`})
	spec := Spec{
		Calls:  []Call{{Name: "a", Cluster: "a", Path: "/"}, {Name: "b", Cluster: "b", Path: "/"}},
		Output: Output{Merge: []string{"a"}, Join: []Join{{Into: "rows", On: "k", From: "b"}}},
		Limits: Limits{MaxTotalBytes: 256 << 10},
	}
	base, _ := e.serve("GET /x", spec, Options{})
	r := e.get(base + "/x")
	if r.status != 502 || r.header.Get(HeaderError) != ErrorTooLarge {
		t.Errorf("status %d error %q: %.200s", r.status, r.header.Get(HeaderError), r.body)
	}
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestCacheServesWithinTTLOnInjectedClock(t *testing.T) {
	e := newEnv(t)
	var calls atomic.Int64
	e.service("customers", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		w.Header().Set("X-Version", fmt.Sprint(n))
		fmt.Fprintf(w, `{"path":%q,"n":%d}`, r.URL.Path, n)
	}))
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	reg := prometheus.NewRegistry()
	spec := Spec{
		ForwardHeaders: []string{"traceparent"}, // differs per request, must not defeat the cache
		Calls:          []Call{{Name: "customer", Cluster: "customers", Path: "/customers/{id}", CacheTTL: Duration(10 * time.Second), PassHeaders: []string{"X-Version"}}},
	}
	base, c := e.serve("GET /c/{id}", spec, Options{Name: "c", Registry: reg, Now: clock.Now})

	first := e.get(base + "/c/1")
	req, _ := http.NewRequest(http.MethodGet, base+"/c/1", nil)
	req.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	second := reply{status: resp.StatusCode, header: resp.Header, body: b}
	if calls.Load() != 1 || string(first.body) != string(second.body) || second.header.Get("X-Version") != "1" {
		t.Fatalf("within TTL: %d calls, %s vs %s", calls.Load(), first.body, second.body)
	}
	e.get(base + "/c/2") // another rendered request, another entry
	if calls.Load() != 2 || c.cache.len() != 2 {
		t.Fatalf("distinct request: %d calls, %d entries", calls.Load(), c.cache.len())
	}
	clock.Advance(10 * time.Second)
	third := e.get(base + "/c/1")
	if calls.Load() != 3 || !strings.Contains(string(third.body), `"n":3`) {
		t.Fatalf("after TTL: %d calls, %s", calls.Load(), third.body)
	}
	if v := testutil.ToFloat64(mustCounter(t, reg, "outrigger_composer_cache_lookups_total", "c", "customer", "hit")); v != 1 {
		t.Errorf("cache hits = %v, want 1", v)
	}
}

func TestCacheIsBoundedInEntries(t *testing.T) {
	c := newResultCache(2, 1<<20)
	now := time.Unix(0, 0)
	for _, k := range []string{"a", "b", "c"} {
		c.put(&cacheEntry{key: k, body: []byte(k), expires: now.Add(time.Hour)})
	}
	if _, ok := c.get("a", now); ok || c.len() != 2 {
		t.Errorf("oldest entry kept; %d entries", c.len())
	}
	big := &cacheEntry{key: "big", body: make([]byte, 2<<20), expires: now.Add(time.Hour)}
	c.put(big)
	if _, ok := c.get("big", now); ok {
		t.Error("entry larger than the byte bound was cached")
	}
}

func TestNewRejectsInvalidSpecAndSharesMetrics(t *testing.T) {
	if _, err := New(Spec{}, &HTTPBackend{}, Options{}); err == nil || !strings.Contains(err.Error(), "calls: at least one call is required") {
		t.Errorf("New(empty) = %v", err)
	}
	reg := prometheus.NewRegistry()
	spec := Spec{Calls: []Call{{Name: "a", Cluster: "a", Path: "/"}}}
	for i := 0; i < 2; i++ { // a reload registers the same collectors again
		if _, err := New(spec, &HTTPBackend{}, Options{Name: "r", Registry: reg}); err != nil {
			t.Fatalf("New #%d: %v", i, err)
		}
	}
}

func TestClassifyError(t *testing.T) {
	cases := map[Reason]error{
		ReasonBreakerOpen:   fmt.Errorf("x: %w", ErrBreakerOpen),
		ReasonTimeout:       fmt.Errorf("x: %w", context.DeadlineExceeded),
		ReasonConnect:       &net.OpError{Op: "dial", Err: fmt.Errorf("refused")},
		ReasonCanceled:      context.Canceled,
		ReasonUpstreamError: fmt.Errorf("reset"),
	}
	for want, err := range cases {
		if got := ClassifyError(err); got != want {
			t.Errorf("ClassifyError(%v) = %s, want %s", err, got, want)
		}
	}
}

func TestWritingCompositionUsesTheIncomingBody(t *testing.T) {
	e := newEnv(t)
	e.jsonService("pricing", map[string]string{"/prices/KAY-1": `{"amount":129.9,"currency":"EUR"}`})
	var gotBody string
	e.service("orders", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		gotBody = string(b)
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"orderId":"o-1"}`)
	}))
	spec := Spec{
		Calls: []Call{
			{Name: "price", Cluster: "pricing", Path: "/prices/{body.sku}"},
			{Name: "order", Cluster: "orders", Method: "POST", Path: "/orders",
				Body: map[string]any{"line": "{body}", "unit": "{price.amount}", "currency": "{price.currency}"}},
		},
		Output: Output{Merge: []string{"order"}, Nest: []Nest{{From: "price"}}},
		Limits: Limits{MaxRequestBytes: 64},
	}
	base, _ := e.serve("POST /checkout", spec, Options{})
	post := func(body string) reply {
		resp, err := e.client.Post(base+"/checkout", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return reply{status: resp.StatusCode, header: resp.Header, body: b}
	}
	r := post(`{"sku":"KAY-1","qty":2}`)
	if r.status != 200 || string(r.body) != `{"orderId":"o-1","price":{"amount":129.9,"currency":"EUR"}}`+"\n" {
		t.Errorf("status %d: %s", r.status, r.body)
	}
	if gotBody != `{"currency":"EUR","line":{"qty":2,"sku":"KAY-1"},"unit":129.9}` {
		t.Errorf("order service got %s", gotBody)
	}
	if r := post(`{"sku":`); r.status != 400 || r.header.Get(HeaderError) != ErrorBadRequest {
		t.Errorf("bad JSON: %d %s", r.status, r.body)
	}
	if r := post(`{"sku":"` + strings.Repeat("k", 100) + `"}`); r.status != 413 || r.header.Get(HeaderError) != ErrorRequestTooLarge {
		t.Errorf("large body: %d %s", r.status, r.body)
	}
	if r := post(`{"sku":".."}`); r.status != 400 {
		t.Errorf("dot segment from the body: %d %s", r.status, r.body)
	}
}

func TestSingleCallNoContentPassesThroughWithoutBody(t *testing.T) {
	e := newEnv(t)
	e.service("a", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	base, _ := e.serve("DELETE /x/{id}", Spec{Calls: []Call{{Name: "a", Cluster: "a", Method: "DELETE", Path: "/things/{id}"}}}, Options{})
	req, _ := http.NewRequest(http.MethodDelete, base+"/x/1", nil)
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 204 || len(b) != 0 {
		t.Errorf("status %d body %q", resp.StatusCode, b)
	}
}

func TestPlanLevelsOfADiamond(t *testing.T) {
	p, err := compile(Spec{Calls: []Call{
		{Name: "join", Cluster: "c", Path: "/j/{left.id}/{right.id}"},
		{Name: "left", Cluster: "c", Path: "/l/{root.id}"},
		{Name: "root", Cluster: "c", Path: "/r"},
		{Name: "right", Cluster: "c", Path: "/r/{root.id}"},
		{Name: "alone", Cluster: "c", Path: "/a"},
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(p.levels)
	if got != "[[2 4] [1 3] [0]]" {
		t.Errorf("levels %s, want [[root alone] [left right] [join]] = [[2 4] [1 3] [0]]", got)
	}
}

func TestMaxConcurrencyBoundsCallsInFlight(t *testing.T) {
	e := newEnv(t)
	var inFlight, peak atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(5 * time.Millisecond) // widen the window in which an overlap would show
		io.WriteString(w, `{}`)
	})
	var calls []Call
	for _, n := range []string{"a", "b", "c", "d"} {
		e.service(n, h)
		calls = append(calls, Call{Name: n, Cluster: n, Path: "/"})
	}
	base, _ := e.serve("GET /x", Spec{Calls: calls, Limits: Limits{MaxConcurrency: 1}}, Options{})
	if r := e.get(base + "/x"); r.status != 200 {
		t.Fatalf("status %d %s", r.status, r.body)
	}
	if p := peak.Load(); p != 1 {
		t.Errorf("peak in flight %d, want 1", p)
	}
}

func TestEscapedValuesReachOnlyTheNamedRoute(t *testing.T) {
	e := newEnv(t)
	e.jsonService("orders", map[string]string{"/orders/1": `{"userId":"../../admin"}`, "/orders/2": `{"userId":"x/../../admin%2F"}`})
	var admin atomic.Int64
	var seen []string
	var mu sync.Mutex
	mux := http.NewServeMux()
	mux.HandleFunc("/admin", func(w http.ResponseWriter, r *http.Request) { admin.Add(1) })
	mux.HandleFunc("GET /users/{id}/profile", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.PathValue("id"))
		mu.Unlock()
		io.WriteString(w, `{}`)
	})
	e.service("users", mux)
	spec := Spec{Calls: []Call{
		{Name: "order", Cluster: "orders", Path: "/orders/{id}"},
		{Name: "user", Cluster: "users", Path: "/users/{order.userId}/profile"},
	}}
	base, _ := e.serve("GET /o/{id}", spec, Options{})
	for _, id := range []string{"1", "2"} {
		if r := e.get(base + "/o/" + id); r.status != 200 {
			t.Errorf("order %s: status %d %s", id, r.status, r.body)
		}
	}
	if admin.Load() != 0 {
		t.Error("a templated value reached /admin")
	}
	if fmt.Sprint(seen) != "[../../admin x/../../admin%2F]" {
		t.Errorf("the users service saw ids %q", seen)
	}
}

func TestFanOutOverObjectElementsAndPartialMetric(t *testing.T) {
	e := newEnv(t)
	e.jsonService("orders", map[string]string{"/orders/1": `{"lines":[{"p":{"id":1,"v":"a"}},{"p":{"id":2,"v":"b"}}]}`})
	e.jsonService("catalog", map[string]string{"/p/1/a": `{"ok":1}`})
	reg := prometheus.NewRegistry()
	spec := Spec{Calls: []Call{
		{Name: "order", Cluster: "orders", Path: "/orders/{id}"},
		{Name: "products", Cluster: "catalog", Path: "/p/{each.id}/{each.v}", ForEach: "order.lines[].p", Optional: true},
	}}
	base, _ := e.serve("GET /o/{id}", spec, Options{Name: "fan", Registry: reg})
	r := e.get(base + "/o/1")
	// /p/2/b does not exist: one element failing fails the (optional) call.
	if r.status != 200 || r.header.Get(HeaderPartial) != "products" || !strings.Contains(string(r.body), `"http_status":404`) {
		t.Errorf("status %d partial %q: %s", r.status, r.header.Get(HeaderPartial), r.body)
	}
	if v := testutil.ToFloat64(mustCounter(t, reg, "outrigger_composer_partial_calls_total", "fan", "products")); v != 1 {
		t.Errorf("partial calls metric = %v", v)
	}
}

// A Backend may hand back the proxy's own local reply (a 503 with
// x-outrigger-error: breaker_open) instead of an error: it is classified the same.
func TestProxyLocalRepliesAreClassified(t *testing.T) {
	cases := map[string]struct {
		reason Reason
		status int
	}{
		"breaker_open":             {ReasonBreakerOpen, 503},
		"overflow":                 {ReasonBreakerOpen, 503},
		"upstream_timeout":         {ReasonTimeout, 504},
		"upstream_connect_failure": {ReasonConnect, 502},
		"no_healthy_upstream":      {ReasonConnect, 503},
	}
	for code, want := range cases {
		t.Run(code, func(t *testing.T) {
			e := shopEnv(t)
			e.service("shipments", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set(HeaderError, code)
				w.WriteHeader(want.status)
			}))
			base, _ := e.serve("GET /orders/{id}/details", shopSpec(), Options{})
			r := e.get(base + "/orders/1/details")
			section := fmt.Sprintf(`{"name":"shipment","status":"failed","reason":%q,"http_status":%d}`, want.reason, want.status)
			if r.status != 200 || !strings.Contains(string(r.body), section) {
				t.Errorf("status %d: %s\nwant section %s", r.status, r.body, section)
			}
		})
	}
}

func TestHTTPBackendUnknownClusterIsAConnectFailure(t *testing.T) {
	_, err := (&HTTPBackend{}).Do(context.Background(), &Request{Cluster: "nope", Method: "GET", Path: "/"})
	if !errors.Is(err, ErrUnknownCluster) || ClassifyError(err) != ReasonConnect {
		t.Errorf("err = %v, reason %s", err, ClassifyError(err))
	}
}

// A composed body carries an ETag of its own, made from its bytes: equal
// bodies have equal tags, a call's passed ETag or Last-Modified (which
// describe that call's body) does not label it, and a GET or HEAD whose
// If-None-Match names the tag is answered 304 without a body.
func TestCompositeEntityTag(t *testing.T) {
	e := newEnv(t)
	var version atomic.Int64
	e.service("items", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"call-tag"`)
		w.Header().Set("Last-Modified", "Sun, 29 Nov 2026 10:00:00 GMT")
		w.Header().Set("Cache-Control", "max-age=5")
		fmt.Fprintf(w, `{"v":%d}`, version.Load())
	}))
	spec := Spec{Calls: []Call{{Name: "items", Cluster: "items", Path: "/items",
		PassHeaders: []string{"ETag", "Last-Modified", "Cache-Control"}}}}
	base, _ := e.serve("/c", spec, Options{Name: "etag"})
	do := func(method, inm string) reply {
		t.Helper()
		req, _ := http.NewRequest(method, base+"/c", nil)
		if inm != "" {
			req.Header.Set("If-None-Match", inm)
		}
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return reply{status: resp.StatusCode, header: resp.Header, body: b}
	}

	first := do("GET", "")
	tag := first.header.Get("ETag")
	if first.status != 200 || tag == "" || tag == `"call-tag"` || !strings.HasPrefix(tag, `"`) || first.header.Get("Last-Modified") != "" {
		t.Fatalf("composed response: %d ETag %q Last-Modified %q", first.status, tag, first.header.Get("Last-Modified"))
	}
	if again := do("GET", ""); again.header.Get("ETag") != tag {
		t.Fatalf("same body, tags %q and %q", tag, again.header.Get("ETag"))
	}
	for _, inm := range []string{tag, "W/" + tag, `"other", ` + tag, "*"} {
		for _, method := range []string{"GET", "HEAD"} {
			r := do(method, inm)
			if r.status != http.StatusNotModified || len(r.body) != 0 || r.header.Get("ETag") != tag ||
				r.header.Get("Content-Type") != "" || r.header.Get("Cache-Control") != "max-age=5" {
				t.Fatalf("%s with If-None-Match %s: %d %v %q", method, inm, r.status, r.header, r.body)
			}
		}
	}
	if r := do("GET", `"other"`); r.status != 200 || string(r.body) != string(first.body) {
		t.Fatalf("If-None-Match naming another tag: %d %q", r.status, r.body)
	}
	// Another body, another tag: the client's copy is stale.
	version.Store(1)
	if r := do("GET", tag); r.status != 200 || r.header.Get("ETag") == tag || strings.TrimSpace(string(r.body)) != `{"v":1}` {
		t.Fatalf("after the data changed: %d ETag %q %q", r.status, r.header.Get("ETag"), r.body)
	}
}
