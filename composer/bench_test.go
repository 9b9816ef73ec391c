package composer

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// delayedService answers after a fixed delay, as a backend doing real work would.
func delayedService(b *testing.B, e *env, cluster string, delay time.Duration, body string) {
	e.service(cluster, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if delay > 0 {
			time.Sleep(delay)
		}
		io.WriteString(w, body)
	}))
}

func benchEnv(b *testing.B, delay time.Duration) (*env, Spec) {
	e := newBenchEnv(b)
	delayedService(b, e, "orders", delay, `{"id":1,"customerId":7,"items":[{"productId":1},{"productId":2}]}`)
	delayedService(b, e, "customers", delay, `{"id":7,"name":"Ada"}`)
	delayedService(b, e, "catalog", delay, `[{"id":1,"title":"Kayak"},{"id":2,"title":"Paddle"}]`)
	spec := Spec{
		Calls: []Call{
			{Name: "order", Cluster: "orders", Path: "/orders/{id}"},
			{Name: "customer", Cluster: "customers", Path: "/customers/7"},
			{Name: "products", Cluster: "catalog", Path: "/products"},
		},
		Output: Output{
			Merge: []string{"order"},
			Nest:  []Nest{{From: "customer"}},
			Join:  []Join{{Into: "items", On: "productId", From: "products", FromKey: "id", As: "product"}},
		},
	}
	return e, spec
}

// newBenchEnv is newEnv for benchmarks.
func newBenchEnv(b *testing.B) *env {
	up := &http.Transport{MaxIdleConnsPerHost: 64}
	e := &env{
		backend: &HTTPBackend{Clusters: map[string]string{}, Client: &http.Client{Transport: up}},
		client:  &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
		bench:   b,
	}
	b.Cleanup(func() {
		up.CloseIdleConnections()
		e.client.CloseIdleConnections()
	})
	return e
}

func benchGet(b *testing.B, c *http.Client, url string) {
	resp, err := c.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Fatalf("status %d", resp.StatusCode)
	}
}

// BenchmarkThreeCallsComposed: one request to the composite endpoint, which
// makes three independent calls (each backend takes 2ms) in parallel.
func BenchmarkThreeCallsComposed(b *testing.B) {
	e, spec := benchEnv(b, 2*time.Millisecond)
	c, err := New(spec, e.backend, Options{})
	if err != nil {
		b.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /orders/{id}/details", c)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	b.ResetTimer()
	for b.Loop() {
		benchGet(b, e.client, srv.URL+"/orders/1/details")
	}
}

// BenchmarkThreeCallsSequentialClient: the same three calls made by a client
// one after the other (no join), the baseline the composition replaces.
func BenchmarkThreeCallsSequentialClient(b *testing.B) {
	e, _ := benchEnv(b, 2*time.Millisecond)
	urls := []string{
		e.backend.Clusters["orders"] + "/orders/1",
		e.backend.Clusters["customers"] + "/customers/7",
		e.backend.Clusters["catalog"] + "/products",
	}
	b.ResetTimer()
	for b.Loop() {
		for _, u := range urls {
			benchGet(b, e.client, u)
		}
	}
}

// BenchmarkComposedInstantBackends: the composite endpoint over real loopback
// backends that answer at once: HTTP and composer cost together.
func BenchmarkComposedInstantBackends(b *testing.B) {
	e, spec := benchEnv(b, 0)
	c, err := New(spec, e.backend, Options{})
	if err != nil {
		b.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /orders/{id}/details", c)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	b.ResetTimer()
	for b.Loop() {
		benchGet(b, e.client, srv.URL+"/orders/1/details")
	}
}

// BenchmarkParallelClientInstantBackends: the three instant calls made by a
// client in parallel, without composition: subtract from the one above for the
// composer's added cost over loopback.
func BenchmarkParallelClientInstantBackends(b *testing.B) {
	e, _ := benchEnv(b, 0)
	urls := []string{
		e.backend.Clusters["orders"] + "/orders/1",
		e.backend.Clusters["customers"] + "/customers/7",
		e.backend.Clusters["catalog"] + "/products",
	}
	b.ResetTimer()
	for b.Loop() {
		var wg sync.WaitGroup
		for _, u := range urls {
			wg.Add(1)
			go func() {
				defer wg.Done()
				benchGet(b, e.client, u)
			}()
		}
		wg.Wait()
	}
}

// memBackend answers from memory, without a network: what remains is the
// composer's own cost (planning, rendering, decoding, joining, encoding).
type memBackend map[string][]byte

func (m memBackend) Do(_ context.Context, call *Request) (*Response, error) {
	return &Response{Status: 200, Body: io.NopCloser(bytes.NewReader(m[call.Path]))}, nil
}

func BenchmarkComposerOwnCost(b *testing.B) {
	spec := Spec{
		Calls: []Call{
			{Name: "order", Cluster: "orders", Path: "/orders/{id}"},
			{Name: "customer", Cluster: "customers", Path: "/customers/{order.customerId}"},
			{Name: "products", Cluster: "catalog", Path: "/products"},
		},
		Output: Output{
			Merge: []string{"order"},
			Nest:  []Nest{{From: "customer"}},
			Join:  []Join{{Into: "items", On: "productId", From: "products", FromKey: "id", As: "product"}},
		},
	}
	backend := memBackend{
		"/orders/1":    []byte(`{"id":1,"customerId":7,"items":[{"productId":1},{"productId":2}]}`),
		"/customers/7": []byte(`{"id":7,"name":"Ada"}`),
		"/products":    []byte(`[{"id":1,"title":"Kayak"},{"id":2,"title":"Paddle"}]`),
	}
	c, err := New(spec, backend, Options{})
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, "/orders/1/details", nil)
	req.SetPathValue("id", "1")
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		c.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}
