package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// harness is a proxy serving both listeners on loopback.
type harness struct {
	t       testing.TB
	p       *Proxy
	reg     *prometheus.Registry
	out, in string // listener addresses
	h1, h2c *http.Client
}

type harnessOpt func(*Options)

func startProxy(t testing.TB, cfg *config.Config, opts ...harnessOpt) *harness {
	t.Helper()
	reg := prometheus.NewRegistry()
	// Round robin starts at each cluster's first endpoint, which the
	// tests' expectations of who answers first rely on.
	o := Options{Registry: reg, RoundRobinStart: func() uint64 { return 0 }}
	for _, f := range opts {
		f(&o)
	}
	p := New(o)
	if err := p.Apply(cfg); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	h := &harness{t: t, p: p, reg: reg}
	var done []chan error
	for _, l := range []Listener{Outbound, Inbound} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if l == Outbound {
			h.out = ln.Addr().String()
		} else {
			h.in = ln.Addr().String()
		}
		ch := make(chan error, 1)
		done = append(done, ch)
		go func() { ch <- p.Serve(ln, l) }()
	}
	h1t := &http.Transport{Proxy: nil, DisableCompression: true, MaxIdleConnsPerHost: 64}
	h2t := &http2.Transport{AllowHTTP: true, DisableCompression: true,
		DialTLSContext: func(ctx context.Context, n, a string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, n, a)
		}}
	h.h1 = &http.Client{Transport: h1t, Timeout: 30 * time.Second}
	h.h2c = &http.Client{Transport: h2t, Timeout: 30 * time.Second}
	t.Cleanup(func() {
		h1t.CloseIdleConnections()
		h2t.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		for _, ch := range done {
			if err := <-ch; !errors.Is(err, http.ErrServerClosed) {
				t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
			}
		}
	})
	return h
}

func (h *harness) url(path string) string { return "http://" + h.out + path }

// client is h's HTTP/1.1 client for "h1", its h2c client for "h2c".
func (h *harness) client(name string) *http.Client {
	if name == "h2c" {
		return h.h2c
	}
	return h.h1
}

// upstream starts an HTTP/1.1 test server; h2c makes it also accept
// HTTP/2 with prior knowledge.
func upstream(t testing.TB, h2c bool, fn http.HandlerFunc) *httptest.Server {
	t.Helper()
	s := httptest.NewUnstartedServer(fn)
	if h2c {
		s.Config.Protocols = new(http.Protocols)
		s.Config.Protocols.SetHTTP1(true)
		s.Config.Protocols.SetUnencryptedHTTP2(true)
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func addr(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

// simpleConfig routes everything on the outbound listener to one cluster.
func simpleConfig(c config.Cluster, mod ...func(*config.Route)) *config.Config {
	r := config.Route{Name: "all", Cluster: "svc"}
	for _, f := range mod {
		f(&r)
	}
	return &config.Config{
		Clusters: map[string]config.Cluster{"svc": c},
		Routes:   []config.Route{r},
	}
}

func eps(addrs ...string) []config.Endpoint {
	var out []config.Endpoint
	for _, a := range addrs {
		out = append(out, config.Endpoint{Address: a})
	}
	return out
}

func readAll(t testing.TB, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return string(b)
}

func mustGet(t testing.TB, c *http.Client, url string, hdr ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp
}

// eventually polls cond every few milliseconds until it holds or the
// deadline passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func counterValue(c prometheus.Collector) float64 { return testutil.ToFloat64(c) }

func startProxyClientH2C() *http.Client {
	return &http.Client{Transport: &http2.Transport{AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, n, a string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, n, a)
		}}}
}

func grpcTrailer(md *metadata.MD) grpc.CallOption { return grpc.Trailer(md) }

func netListen(t testing.TB) (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln, nil
}

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
