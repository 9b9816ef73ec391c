package catalog

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Item is one product.
type Item struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	PriceCents int    `json:"price_cents"`
	Stock      int    `json:"stock"`
}

// maxSlow bounds /slow so that a typo cannot park a request for hours.
const maxSlow = 30 * time.Second

// App is the catalog service. The zero value is not usable; call New.
type App struct {
	name string
	grpc *grpc.Server

	mu    sync.Mutex
	items map[string]Item // guarded by mu
}

// New returns a catalog holding a few sample items. name is reported in the
// x-served-by response header, to tell instances apart behind a load balancer.
func New(name string) *App {
	a := &App{name: name, items: map[string]Item{}}
	for _, it := range []Item{
		{"1", "canoe paddle", 4900, 12},
		{"2", "outrigger float", 18900, 3},
		{"3", "dry bag", 2500, 40},
	} {
		a.items[it.ID] = it
	}
	a.grpc = grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("catalog", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(a.grpc, hs)
	return a
}

// Handler returns the HTTP handler: gRPC requests (content-type
// application/grpc over HTTP/2) go to the gRPC server, the rest to the JSON
// routes.
func (a *App) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /items", a.list)
	mux.HandleFunc("GET /items/{id}", a.get)
	mux.HandleFunc("POST /items", a.add)
	mux.HandleFunc("GET /slow", a.slow)
	mux.HandleFunc("GET /status/{code}", status)
	mux.HandleFunc("GET /headers", headers)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Served-By", a.name)
		if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			a.grpc.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// Server returns an http.Server for Handler that speaks HTTP/1.1 and HTTP/2
// cleartext (prior knowledge), as sidecars and gRPC clients do.
func (a *App) Server() *http.Server {
	srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 10 * time.Second}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	return srv
}

// Stop ends open gRPC streams; call it after the http.Server has shut down.
func (a *App) Stop() { a.grpc.Stop() }

func (a *App) list(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	out := make([]Item, 0, len(a.items))
	for _, it := range a.items {
		out = append(out, it)
	}
	a.mu.Unlock()
	slices.SortFunc(out, func(x, y Item) int { return strings.Compare(x.ID, y.ID) })
	writeJSON(w, http.StatusOK, map[string]any{"items": out})
}

func (a *App) get(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	it, ok := a.items[r.PathValue("id")]
	a.mu.Unlock()
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such item"})
		return
	}
	writeJSON(w, http.StatusOK, it)
}

func (a *App) add(w http.ResponseWriter, r *http.Request) {
	var it Item
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&it); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "bad item: " + err.Error()})
		return
	}
	if !validID(it.ID) || it.Name == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "id (1-64 of A-Z a-z 0-9 _ -) and name are required"})
		return
	}
	a.mu.Lock()
	_, dup := a.items[it.ID]
	if !dup {
		a.items[it.ID] = it
	}
	a.mu.Unlock()
	if dup {
		writeJSON(w, http.StatusConflict, map[string]string{"error": "item " + it.ID + " exists"})
		return
	}
	writeJSON(w, http.StatusCreated, it)
}

func (a *App) slow(w http.ResponseWriter, r *http.Request) {
	d, err := time.ParseDuration(r.URL.Query().Get("d"))
	if err != nil || d < 0 || d > maxSlow {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "d must be a duration in [0, 30s], e.g. d=800ms"})
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		writeJSON(w, http.StatusOK, map[string]string{"slept": d.String()})
	case <-r.Context().Done():
	}
}

func status(w http.ResponseWriter, r *http.Request) {
	code, err := strconv.Atoi(r.PathValue("code"))
	if err != nil || code < 200 || code > 599 {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "code must be in [200, 599]"})
		return
	}
	writeJSON(w, code, map[string]int{"status": code})
}

func headers(w http.ResponseWriter, r *http.Request) {
	h := map[string]string{"host": r.Host}
	for k, v := range r.Header {
		h[strings.ToLower(k)] = strings.Join(v, ", ")
	}
	writeJSON(w, http.StatusOK, h)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// validID keeps ids usable as one path segment: /items/{id}.
func validID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}
