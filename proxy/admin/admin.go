package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Options are the sidecar's parts the admin endpoint reads. Every field is
// optional: a nil function leaves its route unmounted (404). /live and /
// need none and are always mounted.
type Options struct {
	// Gatherer serves /metrics in the Prometheus exposition format.
	Gatherer prometheus.Gatherer
	// Ready reports whether the sidecar takes traffic: nil means ready. The
	// error's text is the 503 body.
	Ready func() error
	// Config returns what /config shows (to loopback clients only).
	Config func() ConfigStatus
	// Clusters returns the value /clusters renders as JSON (the proxy's
	// cluster list).
	Clusters func() any
	// SetBreaker forces the named cluster's breaker open or closed, or resets
	// it to normal operation. It returns ErrUnknownCluster for a name that is
	// not configured.
	SetBreaker func(cluster string, action BreakerAction) error
	// LogLevel returns the level the sidecar's log is written at, and
	// SetLogLevel changes it (an error for a level it does not take is
	// the 400 answer's text). Both nil: no /logging.
	LogLevel    func() string
	SetLogLevel func(level string) error
	// Messaging serves /topics and /groups (and the paths below them), the
	// embedded event log's own admin API. Methods other than GET and HEAD
	// are accepted from loopback clients only.
	Messaging http.Handler
	// Pprof mounts net/http/pprof under /debug/pprof/ (loopback clients only).
	Pprof bool
	// WriteTimeout bounds the writing of each response, from the
	// request's arrival: a client that stops reading (a large /metrics
	// it never takes) has its connection closed then, instead of holding
	// the handler's goroutine for good. A profile or trace asked for
	// seconds=N (30 s for the CPU profile, 1 s for the trace without it)
	// gets N on top. Zero means DefaultWriteTimeout.
	WriteTimeout time.Duration
}

// DefaultWriteTimeout is Options.WriteTimeout's default: ample for a
// scrape of a large registry over a slow link, and 3x Prometheus's
// default scrape timeout.
const DefaultWriteTimeout = 30 * time.Second

// ConfigStatus is the body of /config.
type ConfigStatus struct {
	// Generation counts configurations applied since start; the first is 1.
	Generation uint64 `json:"generation"`
	// Hash fingerprints the effective configuration: equal configurations
	// have equal hashes.
	Hash string `json:"hash,omitempty"`
	// Source is the file (or control plane) the configuration came from.
	Source string `json:"source,omitempty"`
	// AppliedAt is when the serving configuration was applied.
	AppliedAt time.Time `json:"applied_at"`
	// LastReloadError is why the most recent reload was rejected; empty when
	// the most recent reload succeeded.
	LastReloadError string `json:"last_reload_error,omitempty"`
	// LastReloadAt is when a reload was last attempted (zero: never).
	LastReloadAt time.Time `json:"last_reload_at,omitzero"`
	// Effective is the serving configuration with every default filled in.
	Effective json.RawMessage `json:"effective"`
}

// BreakerAction is an operator override of a cluster's circuit breaker.
type BreakerAction string

// The actions POST /clusters/{name}/breaker?state= accepts.
const (
	// BreakerOpen forces the breaker open: every request fails fast until
	// the override is reset.
	BreakerOpen BreakerAction = "open"
	// BreakerClosed forces the breaker closed: every request is let through
	// whatever the failure rate, until the override is reset.
	BreakerClosed BreakerAction = "closed"
	// BreakerReset clears any override and restarts the breaker closed with
	// empty counts.
	BreakerReset BreakerAction = "reset"
)

// ErrUnknownCluster is returned by Options.SetBreaker for a cluster name that
// is not in the serving configuration; the endpoint answers 404.
var ErrUnknownCluster = errors.New("unknown cluster")

// New returns the admin handler for opts.
func New(opts Options) http.Handler {
	timeout := opts.WriteTimeout
	if timeout <= 0 {
		timeout = DefaultWriteTimeout
	}
	return writeDeadline(newMux(opts, timeout), timeout)
}

func newMux(opts Options, timeout time.Duration) http.Handler {
	mux := http.NewServeMux()
	var routes []string
	handle := func(pattern, doc string, h http.Handler) {
		mux.Handle(pattern, h)
		if doc != "" {
			routes = append(routes, doc)
		}
	}
	// /live is for liveness probes: it says the process runs and its admin
	// endpoint answers, nothing more. /ready is wrong for them: it fails on
	// purpose from the stop's start (shutdown delay, drain), and a
	// liveness probe that failed then would restart, mid-drain, a sidecar
	// that is stopping as asked.
	handle("GET /live", "GET  /live                       200 while the process runs (liveness)", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprintln(w, "live")
	}))
	if opts.Ready != nil {
		handle("GET /ready", "GET  /ready                      200 when serving, else 503 and why", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			if err := opts.Ready(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintf(w, "not ready: %v\n", err)
				return
			}
			fmt.Fprintln(w, "ready")
		}))
	}
	if opts.Gatherer != nil {
		handle("GET /metrics", "GET  /metrics                    Prometheus metrics",
			promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	}
	if opts.Config != nil {
		// Loopback only: the configuration's values show as written,
		// header values with them (a token a health check sends).
		handle("GET /config", "GET  /config                     effective config, generation, last reload error (loopback)", loopbackOnly(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, opts.Config())
		})))
	}
	if opts.Clusters != nil {
		handle("GET /clusters", "GET  /clusters                   clusters, endpoints, breaker states", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, opts.Clusters())
		}))
	}
	if opts.SetBreaker != nil {
		handle("POST /clusters/{name}/breaker", "POST /clusters/{name}/breaker?state=open|closed|reset   force a breaker (loopback)",
			loopbackOnly(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				setBreaker(w, r, opts.SetBreaker)
			})))
	}
	if opts.LogLevel != nil && opts.SetLogLevel != nil {
		handle("GET /logging", "GET  /logging                    the log level", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, map[string]string{"level": opts.LogLevel()})
		}))
		handle("POST /logging", "POST /logging?level=debug|info|warn|error   set the log level (loopback)",
			loopbackOnly(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if err := opts.SetLogLevel(r.URL.Query().Get("level")); err != nil {
					writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
					return
				}
				writeJSON(w, http.StatusOK, map[string]string{"level": opts.LogLevel()})
			})))
	}
	if opts.Messaging != nil {
		// Reads are open to whoever reaches the admin listener; writes
		// (create or delete a topic, reset offsets) are for the host only.
		m := readsOpen(opts.Messaging)
		for _, p := range []string{"/topics", "/topics/", "/groups", "/groups/"} {
			handle(p, "", m)
		}
		routes = append(routes, "GET  /topics, /groups            messaging topics and consumer groups")
	}
	if opts.Pprof {
		// The explicit routes mirror net/http/pprof's init, which registers
		// on http.DefaultServeMux; this mux is not that one. They take GET
		// (and HEAD) only, as the other reads here do, and the symbol
		// lookup its addresses in a POST body too, as pprof sends them:
		// another method is answered 405, not with a profile.
		pp := http.NewServeMux()
		pp.HandleFunc("GET /debug/pprof/", profiling(pprof.Index, timeout))
		pp.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		pp.HandleFunc("GET /debug/pprof/profile", profiling(pprof.Profile, timeout))
		pp.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		pp.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
		pp.HandleFunc("GET /debug/pprof/trace", profiling(pprof.Trace, timeout))
		handle("/debug/pprof/", "GET  /debug/pprof/               Go profiles (loopback)", loopbackOnly(pp))
	}
	mux.Handle("GET /{$}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "outrigger admin")
		for _, r := range routes {
			fmt.Fprintln(w, r)
		}
	}))
	return mux
}

// writeDeadline sets the write deadline of each response, timeout from
// the request's arrival; the profiles extend it (see profiling). The
// deadline is the connection's: a keep-alive connection's next request
// sets its own. A ResponseWriter that cannot take a deadline (httptest's
// recorder) serves without one.
//
// net/http's Server.WriteTimeout would be one bound for every response
// on the server; set here, the admin endpoint carries its own bound
// wherever it is served.
func writeDeadline(h http.Handler, timeout time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(timeout))
		h.ServeHTTP(w, r)
	})
}

// profiling moves the write deadline of a /debug/pprof/ request on by
// the time the profile collects, before its response is written (a CPU
// or delta profile) or while it is (the execution trace streams as it
// runs). It runs after loopbackOnly: reading seconds may read a form
// from the body, which pprof does next anyway.
func profiling(h http.HandlerFunc, timeout time.Duration) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(timeout + collectFor(r)))
		h(w, r)
	}
}

// maxCollect bounds what collectFor returns, so that a seconds value
// of any size adds a duration that does not overflow.
const maxCollect = 24 * time.Hour

// collectFor is how long a /debug/pprof/ request collects, as
// net/http/pprof reads seconds: whole seconds for the CPU profile (30
// without a valid value) and a delta profile (none without one), any
// number for the trace (1 without a valid one). Zero for the index,
// cmdline and symbol, which take no seconds, and for other paths.
func collectFor(r *http.Request) time.Duration {
	name, ok := strings.CutPrefix(r.URL.Path, "/debug/pprof/")
	if !ok {
		return 0
	}
	v := r.FormValue("seconds")
	var sec float64
	switch name {
	case "", "cmdline", "symbol":
		return 0
	case "trace":
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f > 0) {
			f = 1
		}
		sec = f
	default:
		n, err := strconv.ParseInt(v, 10, 64)
		switch {
		case (err != nil || n <= 0) && name == "profile":
			n = 30
		case err != nil || n <= 0:
			return 0
		}
		sec = float64(n)
	}
	if sec >= maxCollect.Seconds() {
		return maxCollect
	}
	return time.Duration(sec * float64(time.Second))
}

func setBreaker(w http.ResponseWriter, r *http.Request, set func(string, BreakerAction) error) {
	name := r.PathValue("name")
	action := BreakerAction(r.URL.Query().Get("state"))
	switch action {
	case BreakerOpen, BreakerClosed, BreakerReset:
	default:
		writeJSON(w, http.StatusBadRequest, map[string]string{
			"error": fmt.Sprintf("state must be open, closed or reset, got %q", action),
		})
		return
	}
	if err := set(name, action); err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, ErrUnknownCluster) {
			code = http.StatusNotFound
		}
		writeJSON(w, code, map[string]string{"cluster": name, "error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"cluster": name, "breaker": string(action)})
}

// readsOpen lets GET and HEAD through and sends other methods through
// loopbackOnly.
func readsOpen(h http.Handler) http.Handler {
	guarded := loopbackOnly(h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			h.ServeHTTP(w, r)
			return
		}
		guarded.ServeHTTP(w, r)
	})
}

// loopbackOnly answers 403 to clients that are not on a loopback address,
// and to a write (any method but GET, HEAD and OPTIONS) that a browser
// sends for another origin's page. A loopback address alone does not make
// the operator: a page open in a browser on the host can POST to
// 127.0.0.1:15000 (a form, or fetch in no-cors mode, needs no preflight).
// http.CrossOriginProtection tells such requests by the Sec-Fetch-Site
// header browsers send, or by an Origin whose host is not the request's;
// curl and other clients that send neither are let through. A request
// whose Host is a name other than localhost is refused too: a page can
// reach 127.0.0.1 under a name of its own that resolves there (DNS
// rebinding), and is then same-origin with the admin, free to read what
// it answers; the operator's curl, kubectl port-forward and scripts name
// the admin by its address or as localhost.
func loopbackOnly(h http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isLoopback(r.RemoteAddr) {
			http.Error(w, "forbidden: loopback clients only", http.StatusForbidden)
			return
		}
		if !localName(r.Host) {
			http.Error(w, "forbidden: the Host must be an IP address or localhost", http.StatusForbidden)
			return
		}
		if err := cop.Check(r); err != nil {
			http.Error(w, "forbidden: "+err.Error(), http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// localName reports whether host (a request's Host, with or without a
// port) is an IP address, localhost, or empty (an HTTP/1.0 request
// without Host, which no browser sends).
func localName(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	return host == "" || strings.EqualFold(host, "localhost") || net.ParseIP(host) != nil
}

func isLoopback(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, "encoding response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}
