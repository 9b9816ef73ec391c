package health

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
)

// headerServer records the protocol and header of every request it gets;
// it speaks h2c (prior knowledge) as well as HTTP/1.1.
type headerServer struct {
	*httptest.Server
	mu   sync.Mutex
	seen []seenRequest
}

type seenRequest struct {
	proto  string
	header http.Header
}

func newHeaderServer(t *testing.T) *headerServer {
	t.Helper()
	s := &headerServer{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.seen = append(s.seen, seenRequest{r.Proto, r.Header.Clone()})
		s.mu.Unlock()
	}))
	s.Config.Protocols = new(http.Protocols)
	s.Config.Protocols.SetHTTP1(true)
	s.Config.Protocols.SetUnencryptedHTTP2(true)
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func (s *headerServer) requests() []seenRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]seenRequest(nil), s.seen...)
}

// The configured headers arrive with every check, over HTTP/1.1 and over
// h2c alike, several values of one name included; a User-Agent among them
// replaces the default one.
func TestHTTPSendsTheConfiguredHeaders(t *testing.T) {
	for _, tc := range []struct {
		name  string
		http2 bool
		proto string
	}{{"HTTP/1.1", false, "HTTP/1.1"}, {"h2c", true, "HTTP/2.0"}} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newHeaderServer(t)
			cfg := fastConfig(HTTP)
			cfg.HTTP2 = tc.http2
			cfg.Headers = http.Header{
				"X-Health-Token": {"s3cret"},
				"X-Probe":        {"a", "b"},
				"accept":         {"application/json"}, // not canonical: sent all the same
			}
			c := newChecker(t, cfg, []string{srv.Listener.Addr().String()})
			for range 2 { // the second on the kept connection
				if err := checkNow(t, c, 0); err != nil {
					t.Fatal(err)
				}
			}
			reqs := srv.requests()
			if len(reqs) != 2 {
				t.Fatalf("%d requests, want 2", len(reqs))
			}
			for i, r := range reqs {
				h := r.header
				if r.proto != tc.proto || h.Get("X-Health-Token") != "s3cret" || !slices.Equal(h.Values("X-Probe"), []string{"a", "b"}) ||
					h.Get("Accept") != "application/json" || h.Get("User-Agent") != userAgent {
					t.Fatalf("request %d: %s %v", i, r.proto, h)
				}
			}

			cfg.Headers = http.Header{"User-Agent": {"kube-probe/1.31"}}
			if err := checkNow(t, newChecker(t, cfg, []string{srv.Listener.Addr().String()}), 0); err != nil {
				t.Fatal(err)
			}
			reqs = srv.requests()
			if got := reqs[len(reqs)-1].header.Values("User-Agent"); !slices.Equal(got, []string{"kube-probe/1.31"}) {
				t.Fatalf("User-Agent %q, want the configured one alone", got)
			}
		})
	}
}

// New keeps a copy of the headers: the caller's map may change after.
func TestHeadersAreCopied(t *testing.T) {
	srv := newHeaderServer(t)
	cfg := fastConfig(HTTP)
	cfg.Headers = http.Header{"X-Token": {"one"}}
	c := newChecker(t, cfg, []string{srv.Listener.Addr().String()})
	cfg.Headers["X-Token"][0] = "two"
	cfg.Headers.Set("X-Other", "x")
	if err := checkNow(t, c, 0); err != nil {
		t.Fatal(err)
	}
	if h := srv.requests()[0].header; h.Get("X-Token") != "one" || h.Get("X-Other") != "" {
		t.Fatalf("header %v: the caller's later edits reached the check", h)
	}
	got := c.Config()
	got.Headers.Set("X-Token", "three")
	if c.Config().Headers.Get("X-Token") != "one" {
		t.Fatal("Config() returned the Checker's own header")
	}
}

func TestCheckHeader(t *testing.T) {
	h := checkHeader(http.Header{"x-a": {"1"}, "X-A": {"2"}, "user-agent": {"me"}})
	want := http.Header{"X-A": {"2", "1"}, "User-Agent": {"me"}}
	if len(h) != len(want) || !slices.Equal(h["X-A"], want["X-A"]) || !slices.Equal(h["User-Agent"], want["User-Agent"]) {
		t.Fatalf("checkHeader = %v, want %v", h, want)
	}
	if h := checkHeader(nil); len(h) != 1 || h.Get("User-Agent") != userAgent {
		t.Fatalf("checkHeader(nil) = %v", h)
	}
}

func TestValidateRefusesHeaders(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header http.Header
		msg    string
	}{
		{"invalid name", http.Header{"X Bad": {"1"}}, `invalid header name "X Bad"`},
		{"empty name", http.Header{"": {"1"}}, "header name is required"},
		{"pseudo-header", http.Header{":path": {"/x"}}, `header ":path": pseudo-headers are made by the client`},
		{"host", http.Header{"Host": {"a"}}, `header "Host" cannot be set: the Host of a check is set by http.host`},
		{"connection", http.Header{"Connection": {"close"}}, `header "Connection" cannot be set: connection-specific`},
		{"keep-alive", http.Header{"keep-alive": {"1"}}, `header "keep-alive" cannot be set: connection-specific`},
		{"proxy-connection", http.Header{"Proxy-Connection": {"1"}}, `header "Proxy-Connection" cannot be set: connection-specific`},
		{"transfer-encoding", http.Header{"Transfer-Encoding": {"chunked"}}, `header "Transfer-Encoding" cannot be set: connection-specific`},
		{"upgrade", http.Header{"Upgrade": {"h2c"}}, `header "Upgrade" cannot be set: connection-specific`},
		{"te", http.Header{"TE": {"trailers"}}, `header "TE" cannot be set: connection-specific`},
		{"trailer", http.Header{"Trailer": {"X"}}, `header "Trailer" cannot be set: a check has no body`},
		{"content-length", http.Header{"Content-Length": {"0"}}, `header "Content-Length" cannot be set: a check has no body`},
		{"value with a newline", http.Header{"X-A": {"ok", "a\nb"}}, `header "X-A": invalid value "a\nb"`},
		{"two user agents", http.Header{"User-Agent": {"a"}, "user-agent": {"b"}}, "a request has one User-Agent, got 2 values"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig(HTTP)
			c.Headers = tc.header
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), "http.request_headers: "+tc.msg) {
				t.Fatalf("Validate() = %v, want http.request_headers: %s", err, tc.msg)
			}
		})
	}
	// Headers belong to HTTP checks: other kinds ignore them.
	c := validConfig(GRPC)
	c.Headers = http.Header{"Connection": {"close"}}
	if err := c.Validate(); err != nil {
		t.Fatalf("gRPC config with headers: %v", err)
	}
	ok := validConfig(HTTP)
	ok.Headers = http.Header{"Authorization": {"Bearer x"}, "X-Empty": {""}, "User-Agent": {""}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid headers refused: %v", err)
	}
}
