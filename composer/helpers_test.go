package composer

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// env is a set of real backends on loopback and a client for the composite endpoint.
type env struct {
	t        *testing.T
	bench    *testing.B // set instead of t in benchmarks
	backend  *HTTPBackend
	client   *http.Client
	upstream *http.Transport
}

func newEnv(t *testing.T) *env {
	t.Helper()
	up := &http.Transport{MaxIdleConnsPerHost: 64}
	e := &env{
		t:        t,
		upstream: up,
		backend:  &HTTPBackend{Clusters: map[string]string{}, Client: &http.Client{Transport: up}},
		client:   &http.Client{Transport: &http.Transport{}},
	}
	t.Cleanup(func() {
		up.CloseIdleConnections()
		e.client.CloseIdleConnections()
	})
	return e
}

// service starts a backend on 127.0.0.1 for a cluster.
func (e *env) service(cluster string, h http.Handler) *httptest.Server {
	srv := httptest.NewServer(h)
	if e.bench != nil {
		e.bench.Cleanup(srv.Close)
	} else {
		e.t.Cleanup(srv.Close)
	}
	e.backend.Clusters[cluster] = srv.URL
	return srv
}

// jsonService answers every request with a JSON document chosen by path.
func (e *env) jsonService(cluster string, docs map[string]string) {
	e.service(cluster, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.URL.EscapedPath()
		if r.URL.RawQuery != "" {
			key += "?" + r.URL.RawQuery
		}
		doc, ok := docs[key]
		if !ok {
			http.Error(w, `{"error":"not found"}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, doc)
	}))
}

// serve starts the composite endpoint with a ServeMux pattern (which sets path
// values as the proxy's router does) and returns its base URL.
func (e *env) serve(pattern string, spec Spec, opts Options) (string, *Composition) {
	e.t.Helper()
	return e.serveWith(pattern, spec, e.backend, opts)
}

func (e *env) serveWith(pattern string, spec Spec, b Backend, opts Options) (string, *Composition) {
	e.t.Helper()
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	c, err := New(spec, b, opts)
	if err != nil {
		e.t.Fatalf("New: %v", err)
	}
	mux := http.NewServeMux()
	mux.Handle(pattern, c)
	srv := httptest.NewServer(mux)
	e.t.Cleanup(srv.Close)
	return srv.URL, c
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v\n%s", err, r.body)
	}
	return m
}

func (e *env) get(url string) reply {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("read: %v", err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

// barrier releases its waiters only once n of them have arrived: backends that
// wait on it can only all answer if their calls were in flight together.
type barrier struct {
	mu      sync.Mutex
	n       int
	arrived int
	open    chan struct{}
}

func newBarrier(n int) *barrier { return &barrier{n: n, open: make(chan struct{})} }

func (b *barrier) wait(ctx context.Context) bool {
	b.mu.Lock()
	b.arrived++
	if b.arrived == b.n {
		close(b.open)
	}
	b.mu.Unlock()
	select {
	case <-b.open:
		return true
	case <-ctx.Done():
		return false
	}
}

func mustJSONString(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
