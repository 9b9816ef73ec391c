package health

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// userAgent is the User-Agent of every HTTP check, so that upstreams can
// tell checks from traffic (and leave them out of their access logs).
const userAgent = "outrigger-health-check"

// maxBody is how much of a response body a check reads. A longer body is
// not read to its end: its connection is closed instead of reused.
const maxBody = 64 << 10

// httpProber checks with a GET. Each endpoint has a Transport of its own,
// so that its one kept-alive connection can be dropped after a failed check
// without touching the other endpoints'.
//
// It uses net/http for HTTP/2 as well as HTTP/1.1: since Go 1.24
// http.Transport speaks HTTP/2 with prior knowledge (Protocols'
// UnencryptedHTTP2) and over TLS, and x/net/http2's Transport is deprecated
// in favour of it.
type httpProber struct {
	cfg        *Config
	urls       []string
	hosts      []string
	transports []*http.Transport
}

func newHTTPProber(cfg *Config, addrs []string) (*httpProber, error) {
	scheme := "http"
	if cfg.TLS != nil {
		scheme = "https"
	}
	path := cfg.Path
	if path == "" {
		path = "/"
	}
	var protos http.Protocols
	switch {
	case cfg.HTTP2 && cfg.TLS != nil:
		protos.SetHTTP2(true)
	case cfg.HTTP2:
		protos.SetUnencryptedHTTP2(true)
	default:
		protos.SetHTTP1(true)
	}
	// The connection is kept while checks come more often than this.
	idle := 2 * (max(cfg.Interval, cfg.unhealthyInterval()) + cfg.Jitter)
	idle = max(idle, 90*time.Second)

	p := &httpProber{
		cfg:        cfg,
		urls:       make([]string, len(addrs)),
		hosts:      make([]string, len(addrs)),
		transports: make([]*http.Transport, len(addrs)),
	}
	for i, addr := range addrs {
		p.urls[i] = scheme + "://" + addr + path
		if _, err := url.Parse(p.urls[i]); err != nil {
			return nil, fmt.Errorf("endpoint %d: %w", i, err)
		}
		p.hosts[i] = addr
		if cfg.Host != "" {
			p.hosts[i] = cfg.Host
		}
		t := &http.Transport{
			Proxy: nil, // never HTTP_PROXY: a check goes to the endpoint itself
			DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				return dial(ctx, addr)
			},
			DisableCompression:     true,
			MaxIdleConnsPerHost:    1,
			IdleConnTimeout:        idle,
			MaxResponseHeaderBytes: maxBody,
			Protocols:              &protos,
		}
		if cfg.TLS != nil {
			proto := "http/1.1"
			if cfg.HTTP2 {
				proto = "h2"
			}
			tc := cfg.TLS
			t.DialTLSContext = func(ctx context.Context, _, addr string) (net.Conn, error) {
				return dialTLS(ctx, addr, tc, proto)
			}
		}
		p.transports[i] = t
	}
	return p, nil
}

func (p *httpProber) check(ctx context.Context, i int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.urls[i], nil)
	if err != nil {
		return &CheckError{Cause: CauseProtocol, Reason: "http: " + err.Error(), Err: err}
	}
	req.Host = p.hosts[i]
	req.Header.Set("User-Agent", userAgent)
	resp, err := p.transports[i].RoundTrip(req)
	if err != nil {
		return classify(err, "http")
	}
	// Read the body so that the connection can be reused: up to maxBody
	// and one byte more, which sees the end of a body of exactly maxBody.
	// Closing a body not read to its end closes its HTTP/1.1 connection.
	_, rerr := io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody+1))
	resp.Body.Close()
	if !p.cfg.statusOK(resp.StatusCode) {
		return &CheckError{Cause: CauseStatus, Reason: fmt.Sprintf("status %d", resp.StatusCode)}
	}
	if rerr != nil {
		return classify(rerr, "http")
	}
	return nil
}

// reset drops endpoint i's idle connection, so that the next check dials
// afresh rather than trust a connection that just failed.
func (p *httpProber) reset(i int) { p.transports[i].CloseIdleConnections() }

func (p *httpProber) close() {
	for _, t := range p.transports {
		t.CloseIdleConnections()
	}
}

var _ prober = (*httpProber)(nil)
