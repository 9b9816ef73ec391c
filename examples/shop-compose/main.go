// Command shop-compose runs a small shop on loopback (orders, customers and
// shipments services) and serves the composite endpoint /orders/{id}/details
// that joins them, declared in composition.yaml beside this file.
//
//	go run ./examples/shop-compose
//	go run ./examples/shop-compose -fail-shipments   # see a partial response
//	go run ./examples/shop-compose -check            # request, print, exit
package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.yaml.in/yaml/v3"

	"github.com/outrigger-mesh/outrigger/composer"
)

//go:embed composition.yaml
var configYAML []byte

// sidecarConfig is the part of the sidecar config this example reads.
type sidecarConfig struct {
	Clusters map[string]struct {
		Endpoints []string `yaml:"endpoints"`
	} `yaml:"clusters"`
	Routes []struct {
		Name        string         `yaml:"name"`
		Composition *composer.Spec `yaml:"composition"`
	} `yaml:"routes"`
}

func main() {
	listen := flag.String("listen", "127.0.0.1:9100", "address of the composite endpoint")
	failShipments := flag.Bool("fail-shipments", false, "make the shipments service answer 503")
	check := flag.Bool("check", false, "request a few composite URLs, print the answers and exit")
	anyPort := flag.Bool("any-port", false, "start the services on free ports instead of those in composition.yaml")
	flag.Parse()
	if err := run(os.Stdout, options{listen: *listen, failShipments: *failShipments, check: *check, anyPort: *anyPort}); err != nil {
		fmt.Fprintln(os.Stderr, "shop-compose:", err)
		os.Exit(1)
	}
}

type options struct {
	listen        string
	failShipments bool
	check         bool
	anyPort       bool
	// minCallTimeout, when set, raises each call's timeout to at least
	// it (the tests: a machine under load can take longer than the
	// example's timeouts to make a first connection, which would make
	// its answers differ).
	minCallTimeout time.Duration
}

func run(out io.Writer, o options) error {
	var cfg sidecarConfig
	if err := yaml.Unmarshal(configYAML, &cfg); err != nil {
		return fmt.Errorf("composition.yaml: %w", err)
	}
	if len(cfg.Routes) == 0 || cfg.Routes[0].Composition == nil {
		return errors.New("composition.yaml: no route with a composition")
	}
	route := cfg.Routes[0]
	known := func(c string) bool { _, ok := cfg.Clusters[c]; return ok }
	if err := route.Composition.Validate(known); err != nil {
		return fmt.Errorf("composition.yaml: routes[0].composition: %w", err)
	}
	for i := range route.Composition.Calls {
		if c := &route.Composition.Calls[i]; time.Duration(c.Timeout) < o.minCallTimeout {
			c.Timeout = composer.Duration(o.minCallTimeout)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	services := map[string]http.Handler{
		"orders":    ordersService(),
		"customers": customersService(),
		"shipments": shipmentsService(o.failShipments),
	}
	transport := &http.Transport{MaxIdleConnsPerHost: 32}
	defer transport.CloseIdleConnections()
	backend := &composer.HTTPBackend{Clusters: map[string]string{}, Client: &http.Client{Transport: transport, Timeout: 5 * time.Second}}
	var servers []*http.Server
	var wg sync.WaitGroup
	serve := func(addr string, h http.Handler) (string, error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return "", err
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
		servers = append(servers, srv)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = srv.Serve(ln)
		}()
		return ln.Addr().String(), nil
	}
	defer func() {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, s := range servers {
			_ = s.Shutdown(shutdownCtx)
		}
		wg.Wait()
	}()
	for name, h := range services {
		addr := cfg.Clusters[name].Endpoints[0]
		if o.anyPort {
			addr = "127.0.0.1:0"
		}
		addr, err := serve(addr, h)
		if err != nil {
			return fmt.Errorf("start %s service: %w", name, err)
		}
		backend.Clusters[name] = "http://" + addr
	}

	reg := prometheus.NewRegistry()
	comp, err := composer.New(*route.Composition, backend, composer.Options{Name: route.Name, Registry: reg})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	// The sidecar takes path parameters from the route's regex groups; here a
	// ServeMux pattern sets the same {id} for r.PathValue.
	mux.Handle("GET /orders/{id}/details", comp)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	addr, err := serve(o.listen, mux)
	if err != nil {
		return fmt.Errorf("start composite endpoint: %w", err)
	}
	base := "http://" + addr
	if o.check {
		return checkURLs(out, base)
	}
	fmt.Fprintf(out, "shop services: %v\n", backend.Clusters)
	fmt.Fprintf(out, "try:\n  curl -s %s/orders/1/details\n  curl -s %s/orders/2/details\n  curl -si %s/orders/404/details\n  curl -s %s/metrics | grep outrigger_composer\n",
		base, base, base, base)
	if !o.failShipments {
		fmt.Fprintln(out, "restart with -fail-shipments to see a partial response")
	}
	<-ctx.Done()
	return nil
}

// checkURLs makes the requests the printed curl lines make.
func checkURLs(out io.Writer, base string) error {
	client := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	for _, path := range []string{"/orders/1/details", "/orders/2/details", "/orders/404/details"} {
		resp, err := client.Get(base + path)
		if err != nil {
			return err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "GET %s -> %d", path, resp.StatusCode)
		if p := resp.Header.Get(composer.HeaderPartial); p != "" {
			fmt.Fprintf(out, " (%s: %s)", strings.ToLower(composer.HeaderPartial), p)
		}
		fmt.Fprintf(out, "\n%s\n", body)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

type item struct {
	SKU  string `json:"sku"`
	Name string `json:"name"`
	Qty  int    `json:"qty"`
}

type order struct {
	ID         string `json:"id"`
	CustomerID int    `json:"customerId"`
	Items      []item `json:"items"`
	Total      string `json:"total"`
}

var orders = map[string]order{
	"1": {ID: "1", CustomerID: 7, Total: "129.90", Items: []item{{SKU: "KAY-1", Name: "Kayak", Qty: 1}, {SKU: "PAD-2", Name: "Paddle", Qty: 2}}},
	"2": {ID: "2", CustomerID: 8, Total: "19.90", Items: []item{{SKU: "VST-3", Name: "Life vest", Qty: 1}}},
}

func ordersService() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /orders/{id}", func(w http.ResponseWriter, r *http.Request) {
		o, ok := orders[r.PathValue("id")]
		if !ok {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such order"})
			return
		}
		w.Header().Set("ETag", `"order-`+o.ID+`-v3"`)
		writeJSON(w, http.StatusOK, o)
	})
	return mux
}

func customersService() http.Handler {
	customers := map[string]map[string]any{
		"7": {"id": 7, "name": "Ada Lovelace", "email": "ada@example.com", "internalNotes": "prefers email"},
		"8": {"id": 8, "name": "Grace Hopper", "email": "grace@example.com", "internalNotes": "VIP"},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /customers/{id}", func(w http.ResponseWriter, r *http.Request) {
		c, ok := customers[r.PathValue("id")]
		if !ok {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such customer"})
			return
		}
		writeJSON(w, http.StatusOK, c)
	})
	return mux
}

func shipmentsService(fail bool) http.Handler {
	shipments := map[string][]map[string]any{
		"1": {
			{"sku": "KAY-1", "carrier": "UPS", "tracking": "1Z999", "status": "in_transit"},
			{"sku": "PAD-2", "carrier": "DHL", "tracking": "JD014", "status": "delivered"},
			{"sku": "PAD-2", "carrier": "DHL", "tracking": "JD015", "status": "in_transit"},
		},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /shipments", func(w http.ResponseWriter, r *http.Request) {
		if fail {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "down for maintenance"})
			return
		}
		s := shipments[r.URL.Query().Get("order")]
		if s == nil {
			s = []map[string]any{}
		}
		writeJSON(w, http.StatusOK, s)
	})
	return mux
}
