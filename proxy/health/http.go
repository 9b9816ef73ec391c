package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// userAgent is the User-Agent of every HTTP check, so that upstreams can
// tell checks from traffic (and leave them out of their access logs).
const userAgent = "outrigger-health-check"

// maxBody is how much of a response body a check reads (and one byte more,
// which tells a body of exactly maxBody from a longer one). A longer body
// is not read to its end: closing it closes its connection over HTTP/1.1,
// and resets its stream, keeping the connection, over HTTP/2.
const maxBody = 64 << 10

// httpProber checks with a GET. Each endpoint has a Transport of its own,
// so that its one kept-alive connection can be dropped after a failed check
// without touching the other endpoints'.
//
// It uses net/http for HTTP/2 as well as HTTP/1.1: since Go 1.24
// http.Transport speaks HTTP/2 with prior knowledge (Protocols'
// UnencryptedHTTP2) and over TLS, and x/net/http2's Transport is deprecated
// in favour of it.
//
// net/http dials on a goroutine of its own, with a context that a request's
// end does not cancel. The prober ties each dial (and TLS handshake) to
// the check that asked for it instead, through a context value, so that a
// hung dial ends with the check's timeout or with Close; close waits for
// every dial to return.
type httpProber struct {
	cfg    *Config
	urls   []string
	hosts  []string
	protos http.Protocols
	idle   time.Duration // the transports' IdleConnTimeout
	// transports are used by their endpoint's goroutine only (check,
	// reset), and by close after it has ended.
	transports []*http.Transport
	// header is every check's header: Config.Headers and the User-Agent.
	// Each check sends a copy of it.
	header http.Header

	dialMu sync.Mutex // guards closed and the adding to dials
	closed bool
	dials  sync.WaitGroup
	conns  map[*trackedConn]struct{}
}

type trackedConn struct {
	net.Conn
	p  *httpProber
	ep int // the endpoint it was dialed for
}

func (c *trackedConn) Close() error {
	c.p.dialMu.Lock()
	delete(c.p.conns, c)
	c.p.dialMu.Unlock()
	return c.Conn.Close()
}

// dialTracked is dial for endpoint i, with the connection closed by close
// (and by reset(i)) whatever net/http does with it.
func (p *httpProber) dialTracked(ctx context.Context, i int, addr string) (net.Conn, error) {
	c, err := dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, p: p, ep: i}
	p.dialMu.Lock()
	if p.conns == nil {
		p.conns = map[*trackedConn]struct{}{}
	}
	p.conns[tc] = struct{}{}
	p.dialMu.Unlock()
	return tc, nil
}

// checkKey is the context key of the check a request belongs to.
type checkKey struct{}

// errProberClosed is the error of a dial asked for after close.
var errProberClosed = errors.New("health check closed")

// bound makes fn a Transport dial function that ends when the check that
// asked for it ends, and that close waits for.
func (p *httpProber) bound(fn func(ctx context.Context, addr string) (net.Conn, error)) func(context.Context, string, string) (net.Conn, error) {
	return func(ctx context.Context, _, addr string) (net.Conn, error) {
		p.dialMu.Lock()
		if p.closed {
			p.dialMu.Unlock()
			return nil, &dialError{errProberClosed}
		}
		p.dials.Add(1)
		p.dialMu.Unlock()
		defer p.dials.Done()
		if check, ok := ctx.Value(checkKey{}).(context.Context); ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithCancel(ctx)
			defer cancel()
			stop := context.AfterFunc(check, cancel)
			defer stop()
		}
		return fn(ctx, addr)
	}
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
		header:     checkHeader(cfg.Headers),
		protos:     protos,
		idle:       idle,
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
		p.transports[i] = p.newTransport(i)
	}
	return p, nil
}

// newTransport is a Transport for endpoint i's checks.
func (p *httpProber) newTransport(i int) *http.Transport {
	dial := func(ctx context.Context, addr string) (net.Conn, error) { return p.dialTracked(ctx, i, addr) }
	t := &http.Transport{
		Proxy:                  nil, // never HTTP_PROXY: a check goes to the endpoint itself
		DialContext:            p.bound(dial),
		DisableCompression:     true,
		MaxIdleConnsPerHost:    1,
		IdleConnTimeout:        p.idle,
		MaxResponseHeaderBytes: maxBody,
		Protocols:              &p.protos,
	}
	if tc := p.cfg.TLS; tc != nil {
		proto := "http/1.1"
		if p.cfg.HTTP2 {
			proto = "h2"
		}
		t.DialTLSContext = p.bound(func(ctx context.Context, addr string) (net.Conn, error) {
			return dialTLS(ctx, dial, addr, tc, proto)
		})
	}
	return t
}

// checkHeader is the header of every check: extra under canonical names
// (several spellings of one name keep all their values, in the order of
// the names sorted), and User-Agent: outrigger-health-check unless extra
// has a User-Agent of its own.
func checkHeader(extra http.Header) http.Header {
	h := make(http.Header, len(extra)+1)
	for _, name := range sortedNames(extra) {
		k := http.CanonicalHeaderKey(name)
		h[k] = append(h[k], extra[name]...)
	}
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = []string{userAgent}
	}
	return h
}

func (p *httpProber) check(ctx context.Context, i int) error {
	ctx = context.WithValue(ctx, checkKey{}, ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.urls[i], nil)
	if err != nil {
		return &CheckError{Cause: CauseProtocol, Reason: "http: " + err.Error(), Err: err}
	}
	req.Host = p.hosts[i]
	req.Header = p.header.Clone()
	resp, err := p.transports[i].RoundTrip(req)
	if err != nil {
		return classify(err, "http")
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// A check asks for no upgrade, so a server may not switch
		// (RFC 9110 section 15.2.2). net/http hands over the connection
		// of a 101 as its body, out of reach of the check's context: a
		// read of it could outlast the timeout, and Close. Closing the
		// body closes the connection.
		resp.Body.Close()
		return &CheckError{Cause: CauseProtocol, Reason: "http: 101 Switching Protocols to a check that asked for no upgrade"}
	}
	// Read the body so that the connection can be reused: up to maxBody
	// and one byte more, which sees the end of a body of exactly maxBody.
	// Closing a body not read to its end closes its HTTP/1.1 connection;
	// an HTTP/2 stream is reset instead and the connection kept.
	_, rerr := io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody+1))
	resp.Body.Close()
	if rerr != nil {
		// Only an answer read whole is judged by its status, as Envoy
		// judges a response once complete: one whose body breaks off
		// or is malformed is a protocol failure, whatever its status,
		// and counts toward UnhealthyThreshold.
		return bodyFailure(rerr)
	}
	if !p.cfg.statusOK(resp.StatusCode) {
		return &CheckError{Cause: CauseStatus, Reason: fmt.Sprintf("status %d", resp.StatusCode),
			Immediate: !p.cfg.statusRetriable(resp.StatusCode)}
	}
	return nil
}

// bodyFailure is the CheckError of a response body that could not be read
// to its end: "http: body: " and what went wrong, so that a malformed
// chunk is not reported as the connection closing.
func bodyFailure(err error) *CheckError {
	var reason string
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		// net/http's chunked reader, and a body shorter than its
		// Content-Length, say so of a connection closed early.
		reason = "connection closed before its end"
	case err.Error() == "header line too long":
		// net/http's chunked reader reuses the error of a header line
		// (its internal.ErrLineTooLong, which cannot be matched with
		// errors.Is from here) for a chunk-size line over 4 KiB.
		reason = "chunk line too long"
	default:
		reason = strings.TrimPrefix(netReason(err), "http: ")
	}
	return &CheckError{Cause: CauseProtocol, Reason: "http: body: " + reason, Err: err}
}

// reset closes endpoint i's connections and gives it a new Transport, so
// that the next check dials afresh rather than trust a connection that
// just failed. Closing the idle connections is not enough: net/http lets
// go of an HTTP/2 stream that timed out on a goroutine of its own, often
// after the check has returned, and until then its connection is not idle
// and is kept, to carry the next check, on a connection that may have gone
// silent, into the same timeout. No check of i is running, so every
// connection of i is one that the next check could have been sent on.
//
// A check failed by its status keeps its connection: the answer was read
// whole, so the connection is idle and good for the next check, and
// net/http has closed it already if it was not (a body over maxBody, a
// Connection: close). Dialing again would cost an endpoint that keeps
// answering 503 a TLS handshake per check.
func (p *httpProber) reset(i int, err error) {
	if CauseOf(err) == CauseStatus {
		return
	}
	old := p.transports[i]
	p.transports[i] = p.newTransport(i)
	old.CloseIdleConnections()
	p.dialMu.Lock()
	var conns []*trackedConn
	for c := range p.conns {
		if c.ep == i {
			conns = append(conns, c)
		}
	}
	p.dialMu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// close refuses further dials, waits for those under way (their checks
// have ended, so they are being cancelled), and closes every idle
// connection, including one a dial delivered just now. The transports'
// goroutines for the connections it closed (net/http's read and write
// loops) see them closed and end on their own.
func (p *httpProber) close() {
	p.dialMu.Lock()
	p.closed = true
	p.dialMu.Unlock()
	p.dials.Wait()
	for _, t := range p.transports {
		t.CloseIdleConnections()
	}
	p.dialMu.Lock()
	conns := p.conns
	p.conns = nil
	p.dialMu.Unlock()
	for c := range conns {
		c.Conn.Close()
	}
}

var _ prober = (*httpProber)(nil)
