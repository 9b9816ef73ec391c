package health

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// statusServer answers every request with the status it holds, and counts
// the connections it accepts.
type statusServer struct {
	*httptest.Server
	status atomic.Int64
	conns  atomic.Int64
}

func newStatusServer(t *testing.T, h http.HandlerFunc) *statusServer {
	t.Helper()
	s := &statusServer{}
	s.status.Store(http.StatusOK)
	if h == nil {
		h = func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(int(s.status.Load())) }
	}
	s.Server = httptest.NewUnstartedServer(h)
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func (s *statusServer) addr() string { return s.Listener.Addr().String() }

func TestHTTPEndpointTurnsUnhealthyAndHealthyAgain(t *testing.T) {
	srv := newStatusServer(t, nil)
	var log transitions
	cfg := fastConfig(HTTP)
	cfg.HealthyThreshold, cfg.UnhealthyThreshold = 2, 2
	c := startChecker(t, cfg, []string{srv.addr()}, log.option())

	waitFor(t, "the first check succeeds", func() bool { return c.Status(0).Checked })
	if !c.Healthy(0) || len(log.list()) != 0 {
		t.Fatalf("after a successful first check: healthy=%v transitions %+v", c.Healthy(0), log.list())
	}

	srv.status.Store(http.StatusServiceUnavailable)
	waitFor(t, "the endpoint turns unhealthy", func() bool { return !c.Healthy(0) })
	// A 503 is an answer: one ejects, whatever unhealthy_threshold.
	if st := c.Status(0); st.Failures < 1 || st.LastError != "status 503" || c.UnhealthyCount() != 1 {
		t.Fatalf("unhealthy: %+v, UnhealthyCount %d", st, c.UnhealthyCount())
	}

	srv.status.Store(http.StatusOK)
	waitFor(t, "the endpoint turns healthy", func() bool { return c.Healthy(0) })
	if st := c.Status(0); st.Successes < 2 || st.LastError != "" || c.UnhealthyCount() != 0 {
		t.Fatalf("healthy again: %+v, UnhealthyCount %d", st, c.UnhealthyCount())
	}
	want := []Transition{
		{Endpoint: 0, Addr: srv.addr(), Healthy: false, Reason: "status 503"},
		{Endpoint: 0, Addr: srv.addr(), Healthy: true},
	}
	waitFor(t, "both transitions reach the hook", func() bool { return len(log.list()) >= 2 })
	if got := log.list(); len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("transitions %+v, want %+v", got, want)
	}
}

func TestHTTPRequestIsTheConfiguredGET(t *testing.T) {
	type seen struct{ method, uri, host, ua, acceptEncoding string }
	var mu sync.Mutex
	var got []seen
	srv := newStatusServer(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, seen{r.Method, r.RequestURI, r.Host, r.UserAgent(), r.Header.Get("Accept-Encoding")})
		mu.Unlock()
	})

	cfg := fastConfig(HTTP)
	cfg.Path, cfg.Host = "/healthz?deep=1", "payments.internal"
	if err := checkNow(t, newChecker(t, cfg, []string{srv.addr()}), 0); err != nil {
		t.Fatal(err)
	}
	if err := checkNow(t, newChecker(t, fastConfig(HTTP), []string{srv.addr()}), 0); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []seen{
		{"GET", "/healthz?deep=1", "payments.internal", "outrigger-health-check", ""},
		{"GET", "/", srv.addr(), "outrigger-health-check", ""},
	}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("requests %+v, want %+v", got, want)
	}
}

func TestHTTPStatusesDecide(t *testing.T) {
	srv := newStatusServer(t, nil)
	ranges := []StatusRange{{200, 299}, {404, 404}}
	tests := []struct {
		statuses []StatusRange
		status   int
		ok       bool
	}{
		{nil, 200, true},
		{nil, 204, false},
		{nil, 503, false},
		{ranges, 200, true},
		{ranges, 299, true},
		{ranges, 404, true},
		{ranges, 302, false}, // redirects are not followed
		{ranges, 403, false},
		{ranges, 500, false},
	}
	for _, tt := range tests {
		cfg := fastConfig(HTTP)
		cfg.Statuses = tt.statuses
		c := newChecker(t, cfg, []string{srv.addr()})
		srv.status.Store(int64(tt.status))
		err := checkNow(t, c, 0)
		cause, reason := causeOf(t, err)
		if tt.ok && err != nil || !tt.ok && (cause != CauseStatus || reason != "status "+strconv.Itoa(tt.status)) {
			t.Errorf("statuses %v, answer %d: %v (cause %q), want ok=%v", tt.statuses, tt.status, err, cause, tt.ok)
		}
	}
}

func TestHTTPSlowServerFailsWithTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := newStatusServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	defer close(release) // before the server's Close, which waits for handlers
	cfg := fastConfig(HTTP)
	cfg.Timeout = 50 * time.Millisecond
	c := newChecker(t, cfg, []string{srv.addr()})
	start := time.Now()
	err := checkNow(t, c, 0)
	if cause, reason := causeOf(t, err); cause != CauseTimeout || reason != "timeout" {
		t.Fatalf("check of a server that does not answer: %v (cause %q)", err, cause)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("check took %v with a 50ms timeout", d)
	}
	if st := c.Status(0); st.Healthy || st.LastError != "timeout" {
		t.Fatalf("status %+v", st)
	}
}

func TestHTTPKeepsOneConnectionAndRedialsAfterAFailure(t *testing.T) {
	var hang atomic.Bool
	release := make(chan struct{})
	var status atomic.Int64
	status.Store(http.StatusOK)
	srv := newStatusServer(t, func(w http.ResponseWriter, r *http.Request) {
		if hang.Load() {
			select {
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		w.WriteHeader(int(status.Load()))
		w.Write([]byte("body"))
	})
	defer close(release) // before the server's Close, which waits for handlers
	cfg := fastConfig(HTTP)
	// A second, not less: every check but the hung one, dial included,
	// must end within it, which a loaded machine could miss.
	cfg.Timeout = time.Second
	c := newChecker(t, cfg, []string{srv.addr()})
	for range 5 {
		if err := checkNow(t, c, 0); err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.conns.Load(); n != 1 {
		t.Fatalf("5 successful checks used %d connections, want 1", n)
	}
	// A status is an answer read whole: its connection is as good as
	// after a success.
	status.Store(http.StatusInternalServerError)
	for range 3 {
		if err := checkNow(t, c, 0); err == nil {
			t.Fatal("a 500 passed")
		}
	}
	status.Store(http.StatusOK)
	if err := checkNow(t, c, 0); err != nil {
		t.Fatal(err)
	}
	if n := srv.conns.Load(); n != 1 {
		t.Fatalf("checks failed by their status: %d connections, want 1", n)
	}
	hang.Store(true)
	if cause, _ := causeOf(t, checkNow(t, c, 0)); cause != CauseTimeout {
		t.Fatalf("a check of a server that does not answer failed with %q", cause)
	}
	hang.Store(false)
	if err := checkNow(t, c, 0); err != nil {
		t.Fatal(err)
	}
	if n := srv.conns.Load(); n != 2 {
		t.Fatalf("the check after a timed-out one did not dial afresh: %d connections, want 2", n)
	}
}

// An endpoint that keeps answering 503 over TLS is checked on one
// connection, with one handshake, over HTTP/1.1 and HTTP/2 alike.
func TestHTTPOverTLSKeepsItsConnectionAcrossFailedStatuses(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("draining"))
		}))
		var conns atomic.Int64
		srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				conns.Add(1)
			}
		}
		srv.EnableHTTP2 = h2
		srv.StartTLS()
		t.Cleanup(srv.Close)
		roots := x509.NewCertPool()
		roots.AddCert(srv.Certificate())
		cfg := fastConfig(HTTP)
		cfg.TLS, cfg.HTTP2 = &tls.Config{RootCAs: roots}, h2
		c := newChecker(t, cfg, []string{srv.Listener.Addr().String()})
		for range 4 {
			if cause, _ := causeOf(t, checkNow(t, c, 0)); cause != CauseStatus {
				t.Fatalf("http2=%v: a 503 failed with %q", h2, cause)
			}
		}
		if n := conns.Load(); n != 1 {
			t.Fatalf("http2=%v: 4 checks answered 503 used %d connections, want 1", h2, n)
		}
	}
}

func TestHTTPLongBodyIsCutAtLimitAndItsConnectionDropped(t *testing.T) {
	size := atomic.Int64{}
	srv := newStatusServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write(make([]byte, size.Load()))
	})
	c := newChecker(t, fastConfig(HTTP), []string{srv.addr()})
	size.Store(maxBody)
	for range 3 {
		if err := checkNow(t, c, 0); err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.conns.Load(); n != 1 {
		t.Fatalf("bodies of %d bytes: %d connections, want 1", maxBody, n)
	}
	size.Store(4 * maxBody)
	for range 2 {
		if err := checkNow(t, c, 0); err != nil {
			t.Fatalf("a long body failed the check: %v", err)
		}
	}
	size.Store(0)
	if err := checkNow(t, c, 0); err != nil {
		t.Fatal(err)
	}
	// The first long body came on the kept connection, the second on a
	// new one, and the check after them needed a third.
	if n := srv.conns.Load(); n != 3 {
		t.Fatalf("bodies over the limit: %d connections in all, want 3 (none reused after a long body)", n)
	}
}

func TestHTTP2LongBodyResetsItsStreamAndKeepsTheConnection(t *testing.T) {
	size := atomic.Int64{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(make([]byte, size.Load()))
	}))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	var conns atomic.Int64
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	cfg := fastConfig(HTTP)
	cfg.HTTP2 = true
	c := newChecker(t, cfg, []string{srv.Listener.Addr().String()})
	for _, n := range []int64{4 * maxBody, 4 * maxBody, 0} {
		size.Store(n)
		if err := checkNow(t, c, 0); err != nil {
			t.Fatalf("body of %d bytes: %v", n, err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("HTTP/2 checks with bodies over the limit used %d connections, want 1", n)
	}
}

func TestHTTPConnectionRefused(t *testing.T) {
	c := newChecker(t, fastConfig(HTTP), []string{refusedAddr(t)})
	err := checkNow(t, c, 0)
	if cause, reason := causeOf(t, err); cause != CauseConnect || reason != "connect: connection refused" {
		t.Fatalf("check of a closed port: %q (cause %q)", reason, cause)
	}
}

func TestHTTPConnectionClosedWithoutAnswer(t *testing.T) {
	srv := newStatusServer(t, func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	})
	c := newChecker(t, fastConfig(HTTP), []string{srv.addr()})
	err := checkNow(t, c, 0)
	if cause, reason := causeOf(t, err); cause != CauseProtocol || reason != "http: connection closed" {
		t.Fatalf("check of a server that hangs up: %q (cause %q)", reason, cause)
	}
}

// protoServer records the protocol of each request it answers.
func protoServer(t *testing.T, tlsOn bool, protos func(*http.Protocols)) (*httptest.Server, func() []int) {
	t.Helper()
	var mu sync.Mutex
	var majors []int
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		majors = append(majors, r.ProtoMajor)
		mu.Unlock()
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshakes the tests make fail
	srv.Config.Protocols = new(http.Protocols)
	protos(srv.Config.Protocols)
	if tlsOn {
		srv.EnableHTTP2 = srv.Config.Protocols.HTTP2()
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv, func() []int {
		mu.Lock()
		defer mu.Unlock()
		return append([]int(nil), majors...)
	}
}

func TestHTTP2CleartextCheckSpeaksHTTP2(t *testing.T) {
	srv, majors := protoServer(t, false, func(p *http.Protocols) {
		p.SetHTTP1(true)
		p.SetUnencryptedHTTP2(true)
	})
	addr := srv.Listener.Addr().String()
	cfg := fastConfig(HTTP)
	cfg.HTTP2 = true
	c := newChecker(t, cfg, []string{addr})
	for range 2 {
		if err := checkNow(t, c, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := checkNow(t, newChecker(t, fastConfig(HTTP), []string{addr}), 0); err != nil {
		t.Fatal(err)
	}
	if got := majors(); len(got) != 3 || got[0] != 2 || got[1] != 2 || got[2] != 1 {
		t.Fatalf("request protocols %v, want [2 2 1] (h2c twice, then HTTP/1.1)", got)
	}
}

func TestHTTP2CleartextCheckFailsAgainstHTTP1OnlyServer(t *testing.T) {
	srv, _ := protoServer(t, false, func(p *http.Protocols) { p.SetHTTP1(true) })
	cfg := fastConfig(HTTP)
	cfg.HTTP2 = true
	err := checkNow(t, newChecker(t, cfg, []string{srv.Listener.Addr().String()}), 0)
	if cause, _ := causeOf(t, err); cause != CauseProtocol {
		t.Fatalf("h2c check of an HTTP/1.1-only server: %v (cause %q), want a protocol failure", err, cause)
	}
}

func TestHTTPOverTLS(t *testing.T) {
	srv, majors := protoServer(t, true, func(p *http.Protocols) {
		p.SetHTTP1(true)
		p.SetHTTP2(true)
	})
	addr := srv.Listener.Addr().String()
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())

	h1 := fastConfig(HTTP)
	h1.TLS = &tls.Config{RootCAs: roots}
	h2 := h1
	h2.HTTP2 = true
	for _, cfg := range []Config{h1, h2} {
		if err := checkNow(t, newChecker(t, cfg, []string{addr}), 0); err != nil {
			t.Fatalf("http2=%v: %v", cfg.HTTP2, err)
		}
	}
	if got := majors(); len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Fatalf("request protocols %v, want [1 2]", got)
	}

	untrusted := fastConfig(HTTP)
	untrusted.TLS = &tls.Config{}
	err := checkNow(t, newChecker(t, untrusted, []string{addr}), 0)
	if cause, reason := causeOf(t, err); cause != CauseTLS || !strings.HasPrefix(reason, "tls: ") || strings.Contains(reason, addr) {
		t.Fatalf("check with an untrusted certificate: %q (cause %q)", reason, cause)
	}
}

func TestHTTP2OverTLSFailsWhenServerRefusesH2(t *testing.T) {
	srv, _ := protoServer(t, true, func(p *http.Protocols) { p.SetHTTP1(true) })
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	cfg := fastConfig(HTTP)
	cfg.TLS, cfg.HTTP2 = &tls.Config{RootCAs: roots}, true
	err := checkNow(t, newChecker(t, cfg, []string{srv.Listener.Addr().String()}), 0)
	if cause, _ := causeOf(t, err); cause != CauseTLS {
		t.Fatalf("h2 check of an HTTP/1.1-only TLS server: %v (cause %q)", err, cause)
	}
}
