package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/outrigger-mesh/outrigger/proxy"
	"github.com/outrigger-mesh/outrigger/proxy/config"
	"github.com/outrigger-mesh/outrigger/proxy/h1server"
)

// accessLog writes one JSON line per request when logging.access_log is
// enabled. A reload may turn it on or off or move it to another file; the
// request path reads one atomic pointer, so when it is off the cost is a load
// and a branch.
type accessLog struct {
	stdout io.Writer
	logger atomic.Pointer[zap.Logger] // nil: off
	lost   *lostLines

	// mu serialises Reconfigure and Close; it guards the two fields below.
	mu   sync.Mutex
	cfg  config.AccessLog
	file *os.File // the open file when cfg.Path is set
}

// newAccessLog returns the access log set to cfg. Lines it cannot write
// are reported on log (nil: nowhere).
func newAccessLog(cfg config.AccessLog, stdout io.Writer, log *zap.Logger) (*accessLog, error) {
	if log == nil {
		log = zap.NewNop()
	}
	a := &accessLog{stdout: stdout, lost: &lostLines{log: log, now: time.Now}}
	return a, a.Reconfigure(cfg)
}

// Reconfigure switches to cfg. On error the previous setting stays.
func (a *accessLog) Reconfigure(cfg config.AccessLog) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if cfg == a.cfg && (a.logger.Load() != nil) == cfg.Enabled {
		return nil
	}
	return a.switchLocked(cfg)
}

// Reopen opens the access log file again by its path, as log rotation
// needs (logrotate renames the file, then sends SIGHUP): lines go on in
// the new file at the path, not in the renamed one. Without a file it
// does nothing; on error the open file stays.
func (a *accessLog) Reopen() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.file == nil {
		return nil
	}
	return a.switchLocked(a.cfg)
}

// switchLocked opens what cfg names and swaps it in, then closes the
// previous file. a.mu is held.
func (a *accessLog) switchLocked(cfg config.AccessLog) error {
	var (
		w    io.Writer = a.stdout
		file *os.File
	)
	if cfg.Enabled && cfg.Path != "" {
		f, err := os.OpenFile(cfg.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return fmt.Errorf("open %s: %w", cfg.Path, err)
		}
		w, file = f, f
	}
	var next *zap.Logger
	if cfg.Enabled {
		enc := zapcore.NewJSONEncoder(zapcore.EncoderConfig{
			TimeKey:    "ts",
			MessageKey: "",
			LineEnding: zapcore.DefaultLineEnding,
			EncodeTime: zapcore.ISO8601TimeEncoder,
		})
		// zap writes a line of its own on standard error for each
		// line it fails to write; lostLines reports them instead.
		next = zap.New(zapcore.NewCore(enc, zapcore.AddSync(&lostLinesWriter{w: w, lost: a.lost}), zapcore.InfoLevel),
			zap.ErrorOutput(zapcore.AddSync(io.Discard)))
	}
	prev, prevFile := a.logger.Swap(next), a.file
	a.cfg, a.file = cfg, file
	if prev != nil {
		prev.Sync()
	}
	// A request that loaded prev just before the swap may still write to
	// prevFile; closing it makes that one line fail, which zap reports on
	// stderr. Acceptable on a reload that moves the file.
	if prevFile != nil {
		prevFile.Close()
	}
	return nil
}

// lostLinesEvery is the least time between two reports of lost access
// log lines.
const lostLinesEvery = 10 * time.Second

// lostLines reports the access log lines that could not be written (a
// full disk, a file system turned read-only) on the process log: the
// first failure at once, then at most one line per lostLinesEvery, each
// with the number of lines lost since the previous report; and, once a
// line is written again, the ones lost since the last report. A full
// disk fails every request's line: one report each would be as many
// lines as requests, on a standard error that may well sit on the same
// disk.
type lostLines struct {
	log *zap.Logger
	now func() time.Time

	pending atomic.Int64 // lines lost and not yet reported

	mu   sync.Mutex
	next time.Time // no report before this
}

// done notes the outcome of one line's write. A success costs an atomic
// load.
func (l *lostLines) done(err error) {
	if err == nil && l.pending.Load() == 0 {
		return
	}
	if err != nil {
		l.pending.Add(1)
	}
	now := l.now()
	l.mu.Lock()
	if now.Before(l.next) {
		l.mu.Unlock()
		return
	}
	n := l.pending.Swap(0)
	if n == 0 {
		l.mu.Unlock()
		return
	}
	l.next = now.Add(lostLinesEvery)
	l.mu.Unlock()
	if err != nil {
		l.log.Error("access log lines lost", zap.Int64("lost", n), zap.Error(err))
	} else {
		l.log.Warn("access log written again", zap.Int64("lost", n))
	}
}

// lostLinesWriter is the access log's writer: w, one line at a time,
// with each write's outcome noted in lost. zap writes each line in one
// call.
type lostLinesWriter struct {
	lost *lostLines

	// mu serialises the writes to w.
	mu sync.Mutex
	w  io.Writer
}

func (w *lostLinesWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	n, err := w.w.Write(p)
	w.mu.Unlock()
	// Unlocked: a report of lost lines goes to the process log, which
	// the other requests' lines must not wait for.
	w.lost.done(err)
	return n, err
}

// accessWrite is access(2)'s W_OK (<unistd.h>): may the caller write.
// Package syscall does not export it.
const accessWrite = 0x2

// checkAccessLog reports, as a config error on logging.access_log.path,
// why the access log file of cfg could not be opened, without creating
// it: an existing file must open for appending, a new one needs a
// writable directory. validate and a reload check this before anything
// applies, as the start does by opening it.
func checkAccessLog(cfg config.AccessLog) error {
	if !cfg.Enabled || cfg.Path == "" {
		return nil
	}
	fail := func(err error) error {
		return config.Errors{{Path: "logging.access_log.path", Msg: "cannot open the access log: " + err.Error()}}
	}
	f, err := os.OpenFile(cfg.Path, os.O_WRONLY|os.O_APPEND, 0)
	if err == nil {
		f.Close()
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return fail(err)
	}
	dir := filepath.Dir(cfg.Path)
	st, err := os.Stat(dir)
	switch {
	case err != nil:
		return fail(err)
	case !st.IsDir():
		return fail(fmt.Errorf("%s is not a directory", dir))
	}
	if err := syscall.Access(dir, accessWrite); err != nil {
		return fail(fmt.Errorf("%s: directory not writable: %w", dir, err))
	}
	return nil
}

// Close flushes and closes the file.
func (a *accessLog) Close() error {
	return a.Reconfigure(config.AccessLog{})
}

// Wrap logs each request served by h on the named listener.
func (a *accessLog) Wrap(listener string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if l := a.logger.Load(); l != nil {
			serveLogged(l, listener, h, w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// serveLogged serves r through h and writes its access log line. It and
// logServed are kept out of the wrapper: the fields take about 1 KB of
// stack, which every request's handler goroutine would otherwise reserve
// (and grow its stack for) even with the access log off.
//
//go:noinline
func serveLogged(l *zap.Logger, listener string, h http.Handler, w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	// Read before the proxy, which edits the request's header in place
	// into the one it sends upstream; an id the proxy makes for a
	// request without one comes through the recorder.
	requestID := r.Header.Get("X-Request-Id")
	rec := &recorder{ResponseWriter: w, userAgent: r.Header.Get("User-Agent"), grpc: proxy.IsGRPC(r.Header)}
	if r.Body != nil && r.Body != http.NoBody {
		// The server's own request, whose body the line counts as the
		// proxy reads it: the body's wrapper lives in rec, so it costs
		// no allocation of its own.
		rec.body.ReadCloser = r.Body
		r.Body = &rec.body
	}
	// Deferred: a response the proxy aborts midway (an upstream body cut
	// short, a client gone mid-body, a route timeout past the header)
	// ends its handler with the panic http.ErrAbortHandler, and its
	// request has its line too.
	defer logServed(l, listener, r, rec, requestID, start)
	h.ServeHTTP(rec, r)
}

// logServed writes the line of r, served through rec from start.
// requestID is the request's x-request-id as received.
//
//go:noinline
func logServed(l *zap.Logger, listener string, r *http.Request, rec *recorder, requestID string, start time.Time) {
	if requestID == "" {
		requestID = rec.requestID
	}
	status := rec.status
	own, upstreamErr := rec.errors()
	switch {
	case status != 0:
	case r.Context().Err() != nil:
		// The client went away before the response and none was sent:
		// nginx's 499, as outrigger_proxy_requests_total counts it.
		status = statusClientClosed
	default:
		status = http.StatusOK
	}
	grpcStatus := -1
	if rec.grpc {
		grpcStatus = rec.grpcStatus()
	}
	upstreamHeader := time.Duration(-1)
	if !rec.headerAt.IsZero() {
		upstreamHeader = rec.headerAt.Sub(start)
	}
	writeLine(l, &accessLine{
		listener: listener, method: r.Method, authority: r.Host, path: r.URL.Path, protocol: r.Proto,
		status: status, grpcStatus: grpcStatus, duration: time.Since(start), upstreamHeader: upstreamHeader,
		bytes: rec.bytes + rec.tunnelled.Load(), bytesReceived: rec.body.n.Load() + rec.tunnelIn.Load(),
		requestID: requestID, userAgent: rec.userAgent, route: rec.route, cluster: rec.cluster,
		upstreamHost: rec.upstreamHost, attempts: rec.attempts,
		err: own, upstreamErr: upstreamErr, transportFailure: rec.transportFailure, remote: r.RemoteAddr,
		detail: rec.detail,
	})
}

// accessLine is one access log line's fields. detail and
// transportFailure are written only when set (detail is a refused
// request's, see Refused, or names the authorization rule that refused
// one, see recorder.RecordDenial); grpcStatus and upstreamHeader only
// when not negative.
type accessLine struct {
	listener, method, authority, path, protocol string
	status, grpcStatus, attempts                int
	bytes, bytesReceived                        int64
	duration, upstreamHeader                    time.Duration
	requestID, userAgent, route, cluster        string
	upstreamHost                                string
	err, upstreamErr, remote, detail            string
	transportFailure                            string
}

// writeLine writes ln to l, with its fields in the documented order.
func writeLine(l *zap.Logger, ln *accessLine) {
	fp := linePool.Get().(*lineFields)
	f := append(fp[:0],
		zap.String(fieldListener, ln.listener),
		zap.String("method", ln.method),
		zap.String("authority", ln.authority),
		zap.String("path", ln.path),
		zap.String("protocol", ln.protocol),
		zap.Int("status", ln.status),
		grpcStatusField(ln.grpcStatus),
		zap.Int64("bytes", ln.bytes),
		zap.Int64("bytes_received", ln.bytesReceived),
		zap.Float64("duration_ms", millis(ln.duration)),
		upstreamHeaderField(ln.upstreamHeader),
		zap.String("request_id", ln.requestID),
		zap.String("user_agent", ln.userAgent),
		zap.String("route", ln.route),
		zap.String("cluster", ln.cluster),
		zap.String("upstream_host", ln.upstreamHost),
		zap.Int("attempts", ln.attempts),
		zap.String("error", ln.err),
		zap.String("upstream_error", ln.upstreamErr),
		optionalString("upstream_transport_failure_reason", ln.transportFailure),
		zap.String("remote", ln.remote),
	)
	if ln.detail != "" {
		f = append(f, zap.String("detail", ln.detail))
	}
	l.Info("", f...)
	// The request's strings are not kept until the array's next line.
	clear(f)
	linePool.Put(fp)
}

// lineFields holds one line's fields: every line's, and detail.
type lineFields [22]zap.Field

// linePool holds the lineFields of the lines being written. Passed to
// the variadic Info, a line's fields would escape to the heap: 1.3 KB
// allocated, cleared and collected per request. zap's core has encoded
// them when Info returns and keeps none (no sampling, no hooks), so one
// array serves line after line.
var linePool = sync.Pool{New: func() any { return new(lineFields) }}

// millis is d in milliseconds, to the microsecond.
func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// upstreamHeaderField is the upstream_header_ms field of a line, or
// nothing when d is negative (no upstream's response went downstream).
func upstreamHeaderField(d time.Duration) zap.Field {
	if d < 0 {
		return zap.Skip()
	}
	return zap.Float64("upstream_header_ms", millis(d))
}

// optionalString is the field key: s, or nothing when s is empty (in
// writeLine's array, zap.Skip keeps its slot at no cost).
func optionalString(key, s string) zap.Field {
	if s == "" {
		return zap.Skip()
	}
	return zap.String(key, s)
}

// grpcStatusField is the grpc_status field of a line: the status as a
// number, or nothing when negative (not a gRPC request, or none sent).
// zap.Skip keeps the field's slot in writeLine's array, at no cost.
func grpcStatusField(code int) zap.Field {
	if code < 0 {
		return zap.Skip()
	}
	return zap.Int("grpc_status", code)
}

// Refused writes the access log line of a request the server of the
// named listener answered itself before any handler ran (a malformed
// request, proxy.Options.Refused): the fields known of it, error
// downstream_protocol_error, and detail, which no other line has, with
// the server's words for what was wrong. Such a request closes its
// HTTP/1.1 connection, and a connection breaking more HTTP/2 streams
// than it completes is closed after about 100: as Envoy, one line per
// refused request, and no more.
func (a *accessLog) Refused(listener string, r h1server.Refusal) {
	l := a.logger.Load()
	if l == nil {
		return
	}
	writeLine(l, &accessLine{
		listener: listener, method: r.Method, authority: r.Host, path: r.Path, protocol: r.Proto,
		status: r.Status, grpcStatus: -1, bytes: int64(r.Bytes), duration: r.Duration, upstreamHeader: -1,
		err: proxy.ReasonDownstreamProtocolError.String(), remote: r.RemoteAddr, detail: r.Detail, userAgent: r.UserAgent,
	})
}

// statusClientClosed is logged (never sent) for a request whose client
// went away before the response.
const statusClientClosed = 499

// recorder notes the status and body size of a response. It keeps the
// writer's optional behaviour: Flush and Hijack directly (gRPC streaming and
// upgrades need them) and everything else through Unwrap for
// http.ResponseController.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
	// tunnelled counts the bytes written to the hijacked connection (a
	// tunnel's, after its 101), tunnelIn those read from it and from
	// its buffer; atomic, as the tunnel's two directions run on
	// goroutines of their own.
	tunnelled, tunnelIn atomic.Int64
	// body is the request's body as the handler reads it, counted.
	body countedBody
	// upstream: the response is an upstream's, upstreamHost's of
	// cluster (proxy.UpstreamMarker), whose header the proxy took at
	// headerAt.
	upstream     bool
	upstreamHost string
	headerAt     time.Time
	// route and cluster: what the request matched and was sent to
	// (proxy.RouteRecorder); cluster is the fallback's once it answered.
	route, cluster string
	// attempts is how many upstream attempts the proxy made
	// (proxy.AttemptRecorder).
	attempts int
	// aborted is why the proxy cut the response short after its header
	// (proxy.AbortRecorder).
	aborted string
	// transportFailure is why the last upstream attempt whose TLS
	// handshake failed failed (proxy.TransportFailureRecorder).
	transportFailure string
	// grpc: the request speaks gRPC (proxy.IsGRPC), read before the
	// proxy as userAgent is.
	grpc bool
	// userAgent is the request's User-Agent as received: read before the
	// proxy, which edits the header in place (a route's request_headers
	// may set it).
	userAgent string
	// detail is Envoy's response code details of a request the
	// authorization rules refused (proxy.AuthorizationRecorder).
	detail string
	// requestID is the x-request-id the proxy made (proxy.RequestIDRecorder);
	// the last one, which a route's fallback made when its primary's
	// attempts never reached the upstream's application.
	requestID string
}

// MarkUpstream implements proxy.UpstreamMarker. The proxy calls it as
// it takes the response that goes downstream, its header just arrived
// (a tunnel's 101, once the client's connection is hijacked): the time
// now is that header's, for upstream_header_ms, at the cost of one clock
// read on the requests that have an upstream's response.
func (r *recorder) MarkUpstream(cluster, host string) {
	r.upstream, r.cluster, r.upstreamHost = true, cluster, host
	r.headerAt = time.Now()
}

// RecordRoute implements proxy.RouteRecorder.
func (r *recorder) RecordRoute(route, cluster string) {
	r.route, r.cluster = route, cluster
}

// RecordAttempts implements proxy.AttemptRecorder.
func (r *recorder) RecordAttempts(n int) { r.attempts = n }

// RecordAbort implements proxy.AbortRecorder.
func (r *recorder) RecordAbort(reason string) { r.aborted = reason }

// RecordTransportFailure implements proxy.TransportFailureRecorder.
func (r *recorder) RecordTransportFailure(reason string) { r.transportFailure = reason }

// RecordDenial implements proxy.AuthorizationRecorder: the detail is
// Envoy's RBAC response code details, naming the deny rule that refused
// the request, or none when no allow rule matched it.
func (r *recorder) RecordDenial(rule string) {
	if rule == "" {
		rule = config.AuthorizationNone
	}
	r.detail = "rbac_access_denied_matched_policy[" + rule + "]"
}

// RecordRequestID implements proxy.RequestIDRecorder.
func (r *recorder) RecordRequestID(id string) { r.requestID = id }

// errors returns the x-outrigger-error reason of this sidecar, and the one
// an upstream Outrigger sent in its response, if any. On an upstream's
// response the sidecar's own reason can only be a trailer it added (a
// gRPC stream it ended), or why it cut the response short.
func (r *recorder) errors() (own, upstream string) {
	h := r.Header()
	if !r.upstream {
		return h.Get(proxy.HeaderError), ""
	}
	if v := h[http.TrailerPrefix+proxy.HeaderError]; len(v) > 0 {
		own = v[0]
	} else {
		own = r.aborted
	}
	return own, h.Get(proxy.HeaderError)
}

// grpcStatus is the grpc-status the response sent downstream: in its
// trailers (those the proxy wrote itself, ending a stream it took over,
// or an upstream's it did not announce, go under http.TrailerPrefix; an
// announced one is set in the header map once the header is sent), or
// in the header block of a trailers-only response (an upstream's, or
// the proxy's own local reply). -1 when none was sent: the proxy reset
// the stream (an abort), or nothing set one. A malformed value is 2
// (UNKNOWN), as the proxy's breaker classifies it.
func (r *recorder) grpcStatus() int {
	if r.aborted != "" {
		return -1
	}
	h := r.Header()
	v, ok := h[http.TrailerPrefix+"Grpc-Status"]
	if !ok {
		v = h["Grpc-Status"]
	}
	if len(v) == 0 {
		return -1
	}
	s := strings.TrimSpace(v[0])
	if len(s) > 10 {
		return grpcUnknown
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return grpcUnknown
	}
	return n
}

// grpcUnknown is gRPC's status UNKNOWN.
const grpcUnknown = 2

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 && code >= 200 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) Flush() {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	http.NewResponseController(r.ResponseWriter).Flush()
}

// Hijack hands the connection over (protocol upgrades such as WebSocket);
// the line then records 101, the status the handler writes on the raw
// connection, as bytes those written to the connection itself, and as
// bytes_received those read from it and those the returned bufio.Reader
// holds already (the client's first bytes after its request, which a
// tunnel passes on first), as Envoy's BYTES_SENT and BYTES_RECEIVED
// count an upgraded stream's. What goes through the returned
// bufio.Writer (the 101's header block) is not counted.
func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(r.ResponseWriter).Hijack()
	if err != nil {
		return conn, brw, err
	}
	if r.status == 0 {
		r.status = http.StatusSwitchingProtocols
	}
	if brw != nil {
		r.tunnelIn.Add(int64(brw.Reader.Buffered()))
	}
	return countedConn{conn, &r.tunnelled, &r.tunnelIn}, brw, nil
}

// countedConn is a hijacked connection that adds the bytes written to it
// to sent, and those read from it to received. It keeps CloseWrite, with
// which a tunnel passes on one direction's end (a TCP half-close).
type countedConn struct {
	net.Conn
	sent, received *atomic.Int64
}

func (c countedConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.sent.Add(int64(n))
	return n, err
}

func (c countedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.received.Add(int64(n))
	return n, err
}

// CloseWrite closes the connection's sending side, when it has one to
// close alone; else it fails and closes nothing.
func (c countedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// countedBody is a request body that counts the bytes read from it
// (bytes_received): those the proxy read, not the Content-Length the
// client announced. Reads may come from a transport's goroutine, which
// may still read after the handler returned: the count is atomic.
type countedBody struct {
	io.ReadCloser
	n atomic.Int64
}

func (b *countedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// Received passes on the server's answer to whether the client has sent
// the whole body (h2server's bodies tell): the proxy asks it of the
// request's body before it tells a gRPC upstream a per-try deadline.
func (b *countedBody) Received() bool {
	r, ok := b.ReadCloser.(interface{ Received() bool })
	return ok && r.Received()
}

// AdoptHeader passes on the writer's hand-over of a whole header map,
// with which the proxy forwards an upstream's header without copying it.
func (r *recorder) AdoptHeader(h http.Header) bool {
	a, ok := r.ResponseWriter.(interface{ AdoptHeader(http.Header) bool })
	return ok && a.AdoptHeader(h)
}

var (
	_ proxy.UpstreamMarker           = (*recorder)(nil)
	_ proxy.RequestIDRecorder        = (*recorder)(nil)
	_ proxy.RouteRecorder            = (*recorder)(nil)
	_ proxy.AbortRecorder            = (*recorder)(nil)
	_ proxy.TransportFailureRecorder = (*recorder)(nil)
	_ proxy.AttemptRecorder          = (*recorder)(nil)
	_ proxy.AuthorizationRecorder    = (*recorder)(nil)
)
