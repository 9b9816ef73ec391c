package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// do serves one request from a loopback client unless remote is given.
func do(t *testing.T, h http.Handler, method, target string, remote ...string) (int, string) {
	t.Helper()
	r := httptest.NewRequest(method, "http://127.0.0.1:15000"+target, nil)
	r.RemoteAddr = "127.0.0.1:40000"
	if len(remote) > 0 {
		r.RemoteAddr = remote[0]
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code, w.Body.String()
}

func TestReadyFollowsTheReadyFunc(t *testing.T) {
	var notReady error = errors.New("listeners not bound")
	h := New(Options{Ready: func() error { return notReady }})
	if code, body := do(t, h, "GET", "/ready"); code != 503 || !strings.Contains(body, "listeners not bound") {
		t.Fatalf("not ready: got %d %q, want 503 with the reason", code, body)
	}
	notReady = nil
	if code, body := do(t, h, "GET", "/ready"); code != 200 || body != "ready\n" {
		t.Fatalf("ready: got %d %q", code, body)
	}
}

// A liveness probe must not restart a sidecar that is only not ready
// (starting, or in its shutdown delay or drain).
func TestLiveAnswers200WhileNotReady(t *testing.T) {
	h := New(Options{Ready: func() error { return errors.New("shutting down") }})
	if code, body := do(t, h, "GET", "/live", "192.0.2.7:1"); code != 200 || body != "live\n" {
		t.Fatalf("/live: got %d %q, want 200 live", code, body)
	}
	if code, _ := do(t, h, "GET", "/ready"); code != 503 {
		t.Fatalf("/ready: got %d, want 503", code)
	}
	if code, _ := do(t, New(Options{}), "GET", "/live"); code != 200 {
		t.Fatalf("/live with no options: got %d, want 200", code)
	}
}

func TestMetricsServesTheInjectedRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "outrigger_config_generation"})
	reg.MustRegister(g)
	g.Set(7)
	code, body := do(t, New(Options{Gatherer: reg}), "GET", "/metrics")
	if code != 200 || !strings.Contains(body, "outrigger_config_generation 7") {
		t.Fatalf("got %d %q", code, body)
	}
}

func TestConfigShowsGenerationErrorAndEffectiveConfig(t *testing.T) {
	at := time.Date(2026, 11, 27, 4, 0, 0, 0, time.UTC)
	h := New(Options{Config: func() ConfigStatus {
		return ConfigStatus{Generation: 3, Source: "/etc/outrigger.yaml", AppliedAt: at,
			LastReloadError: "outrigger.yaml: clusters.a.timeout: must be positive",
			Effective:       json.RawMessage(`{"drain_timeout":"5s"}`)}
	}})
	code, body := do(t, h, "GET", "/config")
	if code != 200 {
		t.Fatalf("code %d", code)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if got["generation"] != 3.0 || got["last_reload_error"] != "outrigger.yaml: clusters.a.timeout: must be positive" {
		t.Fatalf("body %s", body)
	}
	if eff, _ := got["effective"].(map[string]any); eff["drain_timeout"] != "5s" {
		t.Fatalf("effective config missing: %s", body)
	}
	if _, ok := got["last_reload_at"]; ok {
		t.Fatalf("a zero last_reload_at should be omitted: %s", body)
	}
}

func TestClustersRendersTheProxyView(t *testing.T) {
	type cs struct {
		Name    string `json:"name"`
		Breaker string `json:"breaker"`
	}
	h := New(Options{Clusters: func() any { return []cs{{"catalog", "closed"}} }})
	code, body := do(t, h, "GET", "/clusters")
	if code != 200 || !strings.Contains(body, `"name": "catalog"`) {
		t.Fatalf("got %d %s", code, body)
	}
}

func TestBreakerOverride(t *testing.T) {
	var calls []string
	h := New(Options{SetBreaker: func(c string, a BreakerAction) error {
		if c != "catalog" {
			return fmt.Errorf("cluster %q: %w", c, ErrUnknownCluster)
		}
		calls = append(calls, c+"="+string(a))
		return nil
	}})
	for _, tc := range []struct {
		target, remote string
		want           int
	}{
		{"/clusters/catalog/breaker?state=open", "", 200},
		{"/clusters/catalog/breaker?state=reset", "[::1]:5555", 200},
		{"/clusters/catalog/breaker?state=sideways", "", 400},
		{"/clusters/nope/breaker?state=open", "", 404},
		{"/clusters/catalog/breaker?state=closed", "10.1.2.3:5555", 403},
	} {
		var code int
		if tc.remote != "" {
			code, _ = do(t, h, "POST", tc.target, tc.remote)
		} else {
			code, _ = do(t, h, "POST", tc.target)
		}
		if code != tc.want {
			t.Errorf("POST %s from %q: got %d, want %d", tc.target, tc.remote, code, tc.want)
		}
	}
	if code, _ := do(t, h, "GET", "/clusters/catalog/breaker?state=open"); code != 405 {
		t.Errorf("GET on the override: got %d, want 405", code)
	}
	if got := strings.Join(calls, ","); got != "catalog=open,catalog=reset" {
		t.Fatalf("calls %q", got)
	}
}

func TestUnsetRoutesAreAbsent(t *testing.T) {
	h := New(Options{})
	for _, p := range []string{"/ready", "/metrics", "/config", "/clusters", "/topics", "/debug/pprof/"} {
		if code, _ := do(t, h, "GET", p); code != 404 {
			t.Errorf("%s: got %d, want 404", p, code)
		}
	}
}

func TestMessagingRoutesReachTheEventLog(t *testing.T) {
	h := New(Options{Messaging: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "eventlog "+r.URL.Path)
	})})
	for _, p := range []string{"/topics", "/topics/orders", "/groups", "/groups/billing"} {
		if code, body := do(t, h, "GET", p); code != 200 || body != "eventlog "+p {
			t.Errorf("%s: got %d %q", p, code, body)
		}
	}
	if code, _ := do(t, h, "GET", "/topics", "192.0.2.9:1"); code != 200 {
		t.Errorf("remote read: got %d, want 200", code)
	}
	if code, _ := do(t, h, "POST", "/topics", "192.0.2.9:1"); code != 403 {
		t.Errorf("remote write: got %d, want 403", code)
	}
	if code, _ := do(t, h, "POST", "/topics"); code != 200 {
		t.Errorf("loopback write: got %d, want 200", code)
	}
}

func TestPprofOnlyForLoopback(t *testing.T) {
	h := New(Options{Pprof: true})
	if code, body := do(t, h, "GET", "/debug/pprof/"); code != 200 || !strings.Contains(body, "goroutine") {
		t.Fatalf("loopback: got %d", code)
	}
	if code, _ := do(t, h, "GET", "/debug/pprof/cmdline", "192.0.2.7:1"); code != 403 {
		t.Fatalf("remote: got %d, want 403", code)
	}
}

func TestIndexListsMountedRoutes(t *testing.T) {
	h := New(Options{Ready: func() error { return nil }, Pprof: true})
	code, body := do(t, h, "GET", "/")
	if code != 200 || !strings.Contains(body, "/ready") || !strings.Contains(body, "/live") || !strings.Contains(body, "/debug/pprof/") || strings.Contains(body, "/metrics") {
		t.Fatalf("got %d %q", code, body)
	}
}

// A page a browser on the host shows can reach the admin listener under
// a name of the attacker's that resolves to 127.0.0.1 (DNS rebinding):
// the request is then on loopback and same-origin, so the page could
// read /config or a profile. The loopback-only routes answer only a
// request whose Host is an IP address or localhost, as the operator's
// curl, kubectl port-forward and scripts send.
func TestLoopbackRoutesRefuseForeignHostNames(t *testing.T) {
	h := New(Options{
		Config:     func() ConfigStatus { return ConfigStatus{Source: "secret"} },
		SetBreaker: func(string, BreakerAction) error { return nil },
		Pprof:      true,
	})
	srv := httptest.NewServer(h)
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	for _, tc := range []struct {
		method, path, host string
		want               int
	}{
		{"GET", "/config", "127.0.0.1:" + port, 200},
		{"GET", "/config", "localhost:" + port, 200},
		{"GET", "/config", "LOCALHOST", 200},
		{"GET", "/config", "[::1]:" + port, 200},
		{"GET", "/config", "rebind.attacker.example:" + port, 403},
		{"GET", "/config", "localhost.attacker.example", 403},
		{"GET", "/debug/pprof/", "rebind.attacker.example:" + port, 403},
		{"POST", "/clusters/c/breaker?state=open", "rebind.attacker.example:" + port, 403},
		{"POST", "/clusters/c/breaker?state=open", "127.0.0.1:" + port, 200},
		// Reads open to all keep answering any name.
		{"GET", "/clusters", "sidecar.example:" + port, 404},
		{"GET", "/live", "sidecar.example:" + port, 200},
	} {
		req, err := http.NewRequest(tc.method, srv.URL+tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = tc.host
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s with Host %q: got %d %q, want %d", tc.method, tc.path, tc.host, resp.StatusCode, body, tc.want)
		}
		if tc.want == 403 && strings.Contains(string(body), "secret") {
			t.Errorf("%s %s with Host %q: the refusal shows the config", tc.method, tc.path, tc.host)
		}
	}
}

// serve runs h on a loopback server; done receives each time a request's
// handler returns.
func serve(t *testing.T, h http.Handler) (url string, done <-chan struct{}) {
	t.Helper()
	ch := make(chan struct{}, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { ch <- struct{}{} }()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, ch
}

// A client that asks for /metrics and never reads the answer has its
// connection closed at the write timeout, and the handler returns. The
// response had no write deadline: the handler's goroutine waited for
// good on a socket the client had filled.
func TestClientThatStopsReadingIsCutOffAtTheWriteTimeout(t *testing.T) {
	// Larger than what the loopback socket buffers hold.
	help := strings.Repeat("x", 32<<20)
	g := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		return []*dto.MetricFamily{{
			Name:   proto.String("big"),
			Help:   proto.String(help),
			Type:   dto.MetricType_GAUGE.Enum(),
			Metric: []*dto.Metric{{Gauge: &dto.Gauge{Value: proto.Float64(1)}}},
		}}, nil
	})
	url, done := serve(t, New(Options{Gatherer: g, WriteTimeout: 200 * time.Millisecond}))
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the /metrics handler still writes to a client that stopped reading")
	}
}

// The profiles that collect for a while (a CPU profile, the execution
// trace, a delta profile) are written whole though they take longer
// than the write timeout: their deadline counts the seconds asked for.
// The index and a plain profile, which take none, answer as usual.
func TestProfilesLongerThanTheWriteTimeoutAreWrittenWhole(t *testing.T) {
	// A write timeout of a second, not less: the index and the plain
	// profile must be written within it, and a profile within it of
	// the end of its collection (stopping a CPU profile takes a while),
	// which a loaded machine could miss. The collections are longer.
	url, _ := serve(t, New(Options{Pprof: true, WriteTimeout: time.Second}))
	for _, path := range []string{
		"/debug/pprof/profile?seconds=2",
		"/debug/pprof/trace?seconds=1.5",
		"/debug/pprof/heap?seconds=2",
		"/debug/pprof/",
		"/debug/pprof/goroutine?debug=1",
	} {
		resp, err := http.Get(url + path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || len(body) == 0 {
			t.Fatalf("%s: %d, %d bytes, %v; want 200 and the whole profile", path, resp.StatusCode, len(body), err)
		}
	}
}

func TestCollectForReadsSecondsAsPprofDoes(t *testing.T) {
	for _, tc := range []struct {
		target string
		want   time.Duration
	}{
		{"/metrics?seconds=5", 0},
		{"/debug/pprof/", 0},
		{"/debug/pprof/symbol?seconds=5", 0},
		{"/debug/pprof/profile", 30 * time.Second},
		{"/debug/pprof/profile?seconds=2.5", 30 * time.Second}, // pprof wants whole seconds
		{"/debug/pprof/profile?seconds=90", 90 * time.Second},
		{"/debug/pprof/trace", time.Second},
		{"/debug/pprof/trace?seconds=2.5", 2500 * time.Millisecond},
		{"/debug/pprof/heap", 0},
		{"/debug/pprof/heap?seconds=-3", 0},
		{"/debug/pprof/allocs?seconds=7", 7 * time.Second},
		{"/debug/pprof/trace?seconds=1e300", maxCollect},
		{"/debug/pprof/profile?seconds=9223372036854775807", maxCollect},
	} {
		r := httptest.NewRequest("GET", tc.target, nil)
		if got := collectFor(r); got != tc.want {
			t.Errorf("collectFor(%s) = %v, want %v", tc.target, got, tc.want)
		}
	}
}

// Every route answers a method it does not take with 405 and an Allow
// header naming those it takes (RFC 9110 §15.5.5), the profiles too:
// they only read, but for the symbol lookup, which takes its addresses
// in a POST body as well.
func TestAMethodARouteDoesNotTakeIs405WithAllow(t *testing.T) {
	h := New(Options{
		Gatherer:    prometheus.NewRegistry(),
		Ready:       func() error { return nil },
		Config:      func() ConfigStatus { return ConfigStatus{} },
		Clusters:    func() any { return []string{} },
		SetBreaker:  func(string, BreakerAction) error { return nil },
		LogLevel:    func() string { return "info" },
		SetLogLevel: func(string) error { return nil },
		Pprof:       true,
	})
	for _, tc := range []struct{ method, path, allow string }{
		{"POST", "/", "GET, HEAD"},
		{"POST", "/ready", "GET, HEAD"},
		{"DELETE", "/live", "GET, HEAD"},
		{"POST", "/metrics", "GET, HEAD"},
		{"PUT", "/config", "GET, HEAD"},
		{"POST", "/clusters", "GET, HEAD"},
		{"GET", "/clusters/a/breaker", "POST"},
		{"PUT", "/logging", "GET, HEAD, POST"},
		{"POST", "/debug/pprof/", "GET, HEAD"},
		{"DELETE", "/debug/pprof/heap", "GET, HEAD"},
		{"PUT", "/debug/pprof/profile", "GET, HEAD"},
		{"POST", "/debug/pprof/cmdline", "GET, HEAD"},
		{"PUT", "/debug/pprof/symbol", "GET, HEAD, POST"},
		{"OPTIONS", "/debug/pprof/trace", "GET, HEAD"},
	} {
		r := httptest.NewRequest(tc.method, "http://127.0.0.1:15000"+tc.path, nil)
		r.RemoteAddr = "127.0.0.1:40000"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != tc.allow {
			t.Errorf("%s %s: got %d, Allow %q; want 405, Allow %q", tc.method, tc.path, w.Code, w.Header().Get("Allow"), tc.allow)
		}
	}
}
