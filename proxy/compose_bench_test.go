package proxy

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/composer"
	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// BenchmarkComposite compares one composite request of three independent
// calls served by the proxy with a client making the same three calls
// itself, one after another. Each backend takes about a millisecond, as a
// service with real work would, so the difference is mostly fan-out.
func BenchmarkComposite(b *testing.B) {
	const work = time.Millisecond
	var addrs []string
	for i := range 3 {
		up := upstream(b, false, func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(work)
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"n":%d}`, i)
		})
		addrs = append(addrs, addr(up))
	}
	cfg := &config.Config{Clusters: map[string]config.Cluster{}}
	spec := &composer.Spec{}
	for i, a := range addrs {
		name := fmt.Sprintf("s%d", i)
		cfg.Clusters[name] = config.Cluster{Endpoints: eps(a)}
		spec.Calls = append(spec.Calls, composer.Call{Name: name, Cluster: name, Path: "/x"})
	}
	cfg.Routes = []config.Route{{Name: "c", Match: config.RouteMatch{Path: config.PathMatch{Exact: "/c"}}, Composition: spec}}
	h := startProxy(b, cfg)

	get := func(b *testing.B, url string) {
		resp, err := h.h1.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	b.Run("proxy-composite-3-parallel", func(b *testing.B) {
		for b.Loop() {
			get(b, h.url("/c"))
		}
	})
	b.Run("client-3-sequential", func(b *testing.B) {
		for b.Loop() {
			for _, a := range addrs {
				get(b, "http://"+a+"/x")
			}
		}
	})
}
