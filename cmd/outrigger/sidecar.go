package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"reflect"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/outrigger-mesh/outrigger/eventlog"
	"github.com/outrigger-mesh/outrigger/proxy"
	"github.com/outrigger-mesh/outrigger/proxy/admin"
	"github.com/outrigger-mesh/outrigger/proxy/config"
	"github.com/outrigger-mesh/outrigger/proxy/h1server"
)

// sidecarOptions are what `run` (and `demo`) pass to runSidecar.
type sidecarOptions struct {
	configPath string
	logLevel   string // overrides logging.level when set
	logFormat  string // overrides logging.format when set
	addrFile   string // where to write the bound addresses as JSON; "" = nowhere
	// override edits every loaded config (the initial one and each reload)
	// before it is applied; demo uses it for --ephemeral-ports.
	override func(*config.Config)
	// onReady, when set, is called once every listener is bound and
	// serving.
	onReady func(boundAddrs)
	// reload delivers SIGHUP; closed or nil means no signal reloads.
	reload <-chan os.Signal
	// again delivers the SIGTERMs and SIGINTs that follow the one that
	// cancelled runSidecar's ctx; it is read only once ctx is cancelled.
	// One that arrives during the shutdown delay ends the delay; one
	// that arrives later is handed to abort, which ends the process and
	// does not return. Nil: no signal shortens the stop.
	again <-chan os.Signal
	abort func(os.Signal)
	// gcPercent and memLimit are the collector's target and the soft
	// memory limit set at start (tuneGC, tuneMemoryLimit; math.MaxInt64
	// or 0: none), memLimitErr why the container's limit could not be
	// read; they are logged.
	gcPercent   int
	memLimit    int64
	memLimitErr error
	stderr      io.Writer // logs
	stdout      io.Writer // access log when logging.access_log.path is empty
}

// sidecar is one running Outrigger process: the proxy, its admin endpoint,
// and the loops that reload its configuration.
type sidecar struct {
	opts   sidecarOptions
	log    *zap.Logger
	level  zap.AtomicLevel
	state  *configState
	proxy  *proxy.Proxy
	access *accessLog
	// broker is the event log; nil when it does not run. A reload moves
	// its push deliveries with listeners.inbound.app.
	broker *eventlog.Broker

	// lnMu guards lns, proxyAddrs and servers: a reload moves the proxy's
	// listeners while the main goroutine counts the servers' results.
	lnMu sync.Mutex
	lns  *listeners
	// proxyAddrs are the configured addresses of the outbound and
	// inbound listeners being served ("" for one that is off), which a
	// reload compares with its own.
	proxyAddrs proxyAddrs
	// serveErr gets each server's result; servers counts those running.
	serveErr chan serveResult
	servers  int
	// retiring joins the drains of listeners a reload moved away from.
	retiring sync.WaitGroup

	// watcher reads the file for the file watch and for SIGHUP alike:
	// each read is applied before the next is made (see reloadFile).
	watcher *config.Watcher
	// reloadMu serialises reloads with the start's write of the address
	// file, and reloads of a config given to reload directly.
	reloadMu sync.Mutex
	// refusedTLS is the config file's last read when the proxy refused
	// it, with the digest of the files its clusters' tls named then; nil
	// when the file's last read applied or did not load. tlsFilesLoop
	// reads the file again when those files change.
	refusedTLS atomic.Pointer[refusedFiles]

	// stopping is set when the stop begins (a signal, a failed listener):
	// /ready fails and reloads are refused from then on. draining is set
	// when the drain begins, after the shutdown delay.
	stopping atomic.Bool
	draining atomic.Bool
	serving  atomic.Bool
}

// runSidecar loads the configuration, binds the listeners, serves until ctx
// is cancelled, then drains and returns. It returns an error only when the
// sidecar could not start (an invalid configuration, a port in use) or a
// listener failed while serving.
//
// Start order: config, logger, metrics registry, proxy with the config
// applied, listeners bound (all or none), servers started, watcher started,
// then ready.
//
// Shutdown order (on ctx cancel), each step finishing before the next:
//  1. mark not ready: /ready answers 503 so that load balancers and kubelet
//     stop sending new work; the admin endpoint stays up throughout;
//  2. stop the reload loops (file watcher, SIGHUP, TLS files) and wait for them, so
//     that no reload races the stop; the serving config's
//     listeners.shutdown_delay and drain_timeout are the stop's;
//  3. the shutdown delay (listeners.shutdown_delay): every listener
//     accepts and serves as before, for the clients that have not yet
//     seen the endpoint go (kube-proxy, other sidecars, load balancers),
//     except that the inbound listener's HTTP/1.1 responses say
//     Connection: close, so that its keep-alive clients reconnect
//     (kube-proxy sends only new connections elsewhere) before the drain
//     closes their connections; a second signal ends it; there is none when a failed listener
//     stops the sidecar, as there was no signal to announce the stop;
//     from its end, a signal ends the process at once (o.abort);
//  4. the inbound, then the outbound listeners, within
//     listeners.drain_timeout: stop accepting, let requests in flight
//     finish, then close what is left (and the proxy's idle upstream
//     connections); the outbound listener serves until the inbound
//     requests are done, since the app may call out to answer them (see
//     proxy.Shutdown); the old listeners of moves (a reload that changed
//     an address) still draining end with them, at their own deadline or
//     this one, whichever is first;
//  5. stop the event log's loops (push deliveries, retention, group
//     sessions) and wait for them; this also ends the app API's long polls
//     (the eventlog package's own shutdown order: Run, then its handlers,
//     then Close);
//  6. the app API listener, within what is left of the drain timeout;
//  7. close the event log's files (acks=0 appends finish first);
//  8. close the access log (flushing it);
//  9. shut the admin server down (it served /ready=503 and /metrics during
//     the drain);
//  10. sync the process log.
func runSidecar(ctx context.Context, o sidecarOptions) error {
	cfg, err := loadConfig(o)
	if err != nil {
		printConfigError(o.stderr, o.configPath, err)
		return silentError{err}
	}

	s := &sidecar{opts: o}
	level, err := parseLevel(firstNonEmpty(o.logLevel, cfg.Logging.Level))
	if err != nil {
		return err
	}
	s.level = zap.NewAtomicLevelAt(level)
	s.log, err = newLogger(o.stderr, firstNonEmpty(o.logFormat, cfg.Logging.Format), s.level)
	if err != nil {
		return err
	}
	defer s.log.Sync()

	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo(),
	)
	s.state = newConfigState(o.configPath, reg)

	// The proxy's wrap reads s.access when Serve starts, below, and its
	// refused hook once a listener serves.
	maxConns, nofile := defaultMaxConnections()
	s.state.defaultMaxConns = maxConns
	s.proxy = proxy.New(proxy.Options{Logger: s.log.Named("proxy"), Registry: reg,
		Wrap:                  func(l proxy.Listener, h http.Handler) http.Handler { return s.access.Wrap(l.String(), h) },
		Refused:               func(l proxy.Listener, r h1server.Refusal) { s.access.Refused(l.String(), r) },
		DefaultMaxConnections: maxConns})
	if maxConns > 0 {
		s.log.Info("listeners without max_connections cap their connections at a quarter of the open-file limit",
			zap.Int("max_connections", maxConns), zap.Uint64("open_file_limit", nofile))
	} else {
		s.log.Warn("no open-file limit to derive a default from: listeners without max_connections accept connections without bound",
			zap.Uint64("open_file_limit", nofile))
	}
	// Every problem is listed, as validate lists them.
	if problems := buildProblems(cfg, s.proxy.Apply); len(problems) > 0 {
		err := errors.Join(problems...)
		s.log.Error("configuration rejected", zap.String(fieldConfig, o.configPath), zap.Error(err))
		for _, e := range problems {
			printConfigError(o.stderr, o.configPath, e)
		}
		// An applied build has started health checks: stop them.
		s.proxy.Shutdown(context.Background())
		return silentError{err}
	}
	s.access, err = newAccessLog(cfg.Logging.AccessLog, o.stdout, s.log)
	if err != nil {
		return fmt.Errorf("logging.access_log: %w", err)
	}
	defer s.access.Close()
	gen := s.state.applied(s.servingConfig(cfg, nil), initialLoad, time.Now())

	// The event log and the app API that serves it run when the
	// configuration has an eventlog section and the app API is not turned
	// off: a sidecar that only proxies binds no extra port and writes no
	// data directory.
	var broker *eventlog.Broker
	appAPI := ""
	if eventLogConfigured(cfg) {
		broker, err = eventlog.Open(cfg.EventLog, reg, time.Now, eventlog.Options{AppURL: appURL(cfg)})
		if err != nil {
			s.log.Error("cannot open the event log", zap.Error(err))
			return err
		}
		defer broker.Close() // on a failed start; step 7 of the shutdown order otherwise (idempotent)
		appAPI = cfg.Listeners.AppAPI.Address
		s.broker = broker
	}

	s.proxyAddrs = proxyAddrsOf(cfg)
	s.lns, err = bind(cfg.Admin.Address, s.proxyAddrs.outbound, s.proxyAddrs.inbound, appAPI)
	if err != nil {
		s.log.Error("cannot listen", zap.Error(err))
		return err
	}
	addrs := s.lns.addrs()

	var messaging http.Handler
	if broker != nil {
		messaging = broker.AdminHandler()
	}
	// A keep-alive connection with no request in flight is closed after
	// listeners.idle_timeout as it stands at start (as the app API's), so
	// that clients of a non-loopback admin address cannot pile up open
	// connections: without it net/http keeps them for good. Each
	// response's write is bounded by the admin handler itself
	// (admin.DefaultWriteTimeout, longer for a profile that collects).
	adminSrv := &http.Server{
		Handler:           s.adminHandler(reg, messaging),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       cfg.Listeners.IdleTimeout,
		ErrorLog:          zap.NewStdLog(s.log.Named("admin")),
	}

	// Every goroutine below is joined before runSidecar returns: servers by
	// serveErr (one result each), the loops by loops.Wait, the drains of
	// moved listeners by retiring.
	s.serveErr = make(chan serveResult, 4)
	s.serve("admin", func() error { return adminSrv.Serve(s.lns.admin) })
	for _, l := range []struct {
		ln net.Listener
		l  proxy.Listener
	}{{s.lns.outbound, proxy.Outbound}, {s.lns.inbound, proxy.Inbound}} {
		if l.ln != nil {
			s.serveProxy(l.ln, l.l)
		}
	}

	var appSrv *http.Server
	if s.lns.appAPI != nil {
		appSrv = &http.Server{
			Handler:           s.access.Wrap("app_api", broker.Handler()),
			ReadHeaderTimeout: cfg.Listeners.ReadHeaderTimeout,
			IdleTimeout:       cfg.Listeners.IdleTimeout,
			MaxHeaderBytes:    cfg.Listeners.MaxRequestHeaderBytes,
			ErrorLog:          zap.NewStdLog(s.log.Named("app_api")),
		}
		s.serve("app_api", func() error { return appSrv.Serve(s.lns.appAPI) })
	}
	brokerCtx, stopBroker := context.WithCancel(context.Background())
	var brokerLoop sync.WaitGroup
	if broker != nil {
		brokerLoop.Go(func() { broker.Run(brokerCtx) })
	}

	loopCtx, stopLoops := context.WithCancel(context.Background())
	var loops sync.WaitGroup
	s.watcher = s.newWatcher(cfg)
	loops.Go(func() {
		if err := s.watcher.Run(loopCtx); err != nil {
			s.log.Error("watching the configuration file failed; SIGHUP still reloads", zap.String(fieldConfig, o.configPath), zap.Error(err))
		}
	})
	loops.Go(func() { s.sighupLoop(loopCtx) })
	loops.Go(func() { s.tlsFilesLoop(loopCtx) })

	// Ready before the address file appears: whoever waits for the file
	// may probe /ready at once.
	s.serving.Store(true)
	// The reloads have started: one may have moved a listener already, and
	// its own write of the file must not be overwritten with the addresses
	// bound at start. reloadMu orders the two writes.
	s.reloadMu.Lock()
	s.lnMu.Lock()
	addrs = s.lns.addrs()
	s.lnMu.Unlock()
	if o.addrFile != "" {
		if err := writeAddrFile(o.addrFile, addrs); err != nil {
			s.log.Error("cannot write the address file", zap.Error(err))
		}
	}
	s.reloadMu.Unlock()
	if o.memLimitErr != nil {
		s.log.Warn("memory limit not set", zap.Error(o.memLimitErr))
	}
	memLimit := o.memLimit
	if memLimit == math.MaxInt64 {
		memLimit = 0
	}
	s.log.Info("outrigger serving",
		zap.String("version", version), zap.Uint64(fieldGeneration, gen), zap.String(fieldConfig, o.configPath),
		zap.String("admin", addrs.Admin), zap.String("outbound", addrs.Outbound), zap.String("inbound", addrs.Inbound),
		zap.String("app_api", addrs.AppAPI), zap.Int("gogc", o.gcPercent), zap.Int64("memory_limit_bytes", memLimit))
	if o.onReady != nil {
		o.onReady(addrs)
	}

	var failure error
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case r := <-s.serveErr:
			if failure = s.serverEnded(r); failure != nil {
				s.log.Error("listener failed; shutting down", zap.String(fieldListener, r.name), zap.Error(r.err))
				break wait
			}
		}
	}

	// 1. Not ready.
	s.stopping.Store(true)
	// 2. No more reloads.
	stopLoops()
	loops.Wait()
	cur, _ := s.state.current()
	signalled := ctx.Err() != nil
	// 3. The shutdown delay.
	if d := cur.Listeners.ShutdownDelay; signalled && d > 0 {
		s.proxy.SetKeepAlivesEnabled(proxy.Inbound, false)
		failure = s.shutdownDelay(d)
	}
	// From here a signal ends the process at once.
	drained := make(chan struct{})
	var aborter sync.WaitGroup
	defer func() { close(drained); aborter.Wait() }()
	if o.again != nil {
		aborter.Go(func() {
			select {
			case <-ctx.Done():
			case <-drained:
				return
			}
			select {
			case sig := <-o.again:
				o.abort(sig)
			case <-drained:
			}
		})
	}
	// 4. Drain the proxy, bounded by the serving config's drain timeout.
	s.draining.Store(true)
	if signalled {
		s.log.Info("shutting down: draining", zap.Duration("drain_timeout", cur.Listeners.DrainTimeout))
	}
	drainCtx, cancel := context.WithTimeout(context.Background(), cur.Listeners.DrainTimeout)
	if err := s.proxy.Shutdown(drainCtx); err != nil {
		s.log.Warn("drain timed out; closed the remaining connections", zap.Error(err))
	}
	// Listeners a reload moved away from: Shutdown has ended their drains
	// too; join the goroutines that ran them.
	s.retiring.Wait()
	// 5. The event log's loops (push deliveries, retention, group
	// sessions); ending Run also ends the app API's long polls.
	stopBroker()
	brokerLoop.Wait()
	// 6. The app API, within what is left of the drain timeout.
	if appSrv != nil {
		if err := appSrv.Shutdown(drainCtx); err != nil {
			appSrv.Close()
		}
	}
	cancel()
	// 7. The event log's files.
	if broker != nil {
		if err := broker.Close(); err != nil {
			s.log.Error("closing the event log", zap.Error(err))
		}
	}
	// 8. Access log: closed by the deferred Close, after the servers below.
	// 9. Admin last.
	adminCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	adminSrv.Shutdown(adminCtx)
	cancel()
	// No server starts any more (reloads ended at step 2).
	s.lnMu.Lock()
	servers := s.servers
	s.lnMu.Unlock()
	for ; servers > 0; servers-- {
		if r := <-s.serveErr; r.err != nil && !errors.Is(r.err, http.ErrServerClosed) && !errors.Is(r.err, net.ErrClosed) && failure == nil {
			failure = fmt.Errorf("%s listener: %w", r.name, r.err)
		}
	}
	if o.addrFile != "" {
		// The addresses are no longer served; a stale file would mislead.
		os.Remove(o.addrFile)
	}
	s.log.Info("outrigger stopped")
	return failure
}

// loadConfig reads the configuration file and applies the command's
// override, re-validating after it.
func loadConfig(o sidecarOptions) (*config.Config, error) {
	cfg, err := config.Load(o.configPath)
	if err != nil {
		return nil, err
	}
	if o.override != nil {
		o.override(cfg)
		if err := cfg.Validate(); err != nil {
			return nil, err
		}
	}
	return cfg, nil
}

// sighupLoop reloads the file on each SIGHUP until ctx ends.
func (s *sidecar) sighupLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-s.opts.reload:
			if !ok {
				return
			}
			s.log.Info("SIGHUP: reloading", zap.String(fieldConfig, s.opts.configPath))
			s.reloadFile("signal")
			// After log rotation: the access log goes on at its path.
			if err := s.access.Reopen(); err != nil {
				s.log.Error("access log not reopened", zap.Error(err))
			}
		}
	}
}

// tlsFilesInterval is how often the files clusters' tls blocks name are
// read for a change.
const tlsFilesInterval = 2 * time.Second

// triggerTLSFiles is the trigger of a reload for changed TLS files.
const triggerTLSFiles = "tls_files"

// refusedFiles is a config file's read that the proxy refused, and the
// digest of the files its clusters' tls named when it did.
type refusedFiles struct {
	cfg    *config.Config
	digest [sha256.Size]byte
}

// tlsFilesLoop applies the serving configuration again when a file a
// cluster's tls names (ca_file, cert_file, key_file) changes: a
// certificate or CA rotated in place, as cert-manager and Kubernetes
// Secret volumes (a symlink swap) rotate them. The files are read every
// tlsFilesInterval (each once, however many clusters name it); the
// rebuild (see rebuildServing) makes the clusters whose files changed
// anew (connection pool and health checks), so new connections present
// and trust what the files now hold, while open ones finish as they are.
// Files that make it fail (a key that does not match its certificate
// yet, a half-written file) leave the last good config serving, and are
// tried again only once they change. A config file whose read the proxy
// refused (a file its tls names missing or unreadable, as when a cluster
// is added before its certificate is issued) is read and applied again
// when the files its clusters' tls name change.
func (s *sidecar) tlsFilesLoop(ctx context.Context) {
	t := time.NewTicker(tlsFilesInterval)
	defer t.Stop()
	tried := s.proxy.TLSFilesDigest()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if r := s.refusedTLS.Load(); r != nil && r.cfg.TLSFilesDigest() != r.digest {
			s.log.Info("a file the refused config file's tls names changed: reloading", zap.String(fieldConfig, s.opts.configPath))
			s.reloadFile(triggerTLSFiles)
		}
		cfg, _ := s.state.current()
		if cfg == nil {
			continue
		}
		d := cfg.TLSFilesDigest()
		if d == s.proxy.TLSFilesDigest() {
			tried = d
			continue
		}
		if d == tried {
			continue // as it was when a reload last failed on it
		}
		tried = d
		s.rebuildServing()
	}
}

// rebuildServing applies the serving configuration again, for the TLS
// files it names that have changed since it was applied. The config file
// is not read: an edit of it that was refused (or is yet to be read)
// does not hold a rotated certificate back, and the file watch and SIGHUP
// apply the file as they would have. The serving configuration is taken
// and applied under reloadMu, so that a reload of the file in between is
// neither undone nor done again.
func (s *sidecar) rebuildServing() {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	cur, _ := s.state.current()
	if cur == nil || cur.TLSFilesDigest() == s.proxy.TLSFilesDigest() {
		return // a reload took the files in since they were read
	}
	s.log.Info("a TLS file the configuration names changed: reloading", zap.String(fieldConfig, s.opts.configPath))
	// A copy: the command's override edits what it is given.
	c := *cur
	s.reloadLocked(&c, nil, triggerTLSFiles, tlsRebuild)
}

// newWatcher returns the watch of the config file, which applies each
// change; current is the config loaded at start.
func (s *sidecar) newWatcher(current *config.Config) *config.Watcher {
	w := &config.Watcher{Path: s.opts.configPath, OnChange: func(c *config.Config, err error) { s.reload(c, err, "file") }}
	if s.opts.override == nil {
		// An edit made between the load at start and the watch's start
		// is then delivered at once instead of being lost.
		w.Current = current
	}
	return w
}

// reloadFile reads the file and applies it, through the watcher, which
// reads and applies as one step for a file event and for this alike. A
// read made before another reload finished could otherwise apply an older
// file after that reload applied a newer one; and the watcher, which
// delivers only what differs from the last content it handed on, must
// know what this reload read, or a file changed back to what it last
// delivered would never be applied.
func (s *sidecar) reloadFile(trigger string) {
	s.watcher.Reload(func(c *config.Config, err error) { s.reload(c, err, trigger) })
}

// reload applies cfg as loaded from the file (the command's override is
// applied here), or records why it cannot: a config that failed to load (err)
// or that the proxy refused. Either way the last good config keeps
// serving.
func (s *sidecar) reload(cfg *config.Config, err error, trigger string) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	s.reloadLocked(cfg, err, trigger, fileReload)
}

// reloadLocked is reload with reloadMu held; kind says where cfg comes
// from: the file, or (tlsRebuild) a copy of the serving config (see
// rebuildServing).
func (s *sidecar) reloadLocked(cfg *config.Config, err error, trigger string, kind reloadKind) {
	if s.stopping.Load() {
		return
	}
	if err == nil && s.opts.override != nil {
		s.opts.override(cfg)
		err = cfg.Validate()
	}
	// A listener moving to a new address is bound before anything is
	// applied: an address that cannot be bound rejects the whole reload.
	if err == nil {
		// What the start refuses, a reload refuses too, before anything
		// applies (Reconfigure below could only log it).
		err = checkAccessLog(cfg.Logging.AccessLog)
	}
	// The files' digest is taken before the proxy reads them: a change
	// made while it does is then seen as one.
	var refused *refusedFiles
	if kind == fileReload && err == nil && cfg.NamesTLSFiles() {
		// One that names none is not kept: no file of its can change.
		refused = &refusedFiles{cfg: cfg, digest: cfg.TLSFilesDigest()}
	}
	var moves []listenerMove
	if err == nil {
		moves, err = s.bindMoves(cfg)
	}
	if err == nil {
		if err = s.proxy.Apply(cfg); err != nil {
			closeMoves(moves)
		}
	}
	if kind == fileReload {
		if err == nil {
			refused = nil
		}
		s.refusedTLS.Store(refused)
	}
	now := time.Now()
	if err != nil {
		s.state.rejected(err, kind, now)
		s.log.Error("configuration reload rejected; the previous configuration keeps serving",
			zap.String("trigger", trigger), zap.String(fieldConfig, s.opts.configPath), zap.Error(err))
		return
	}
	if s.opts.logLevel == "" {
		if l, err := parseLevel(cfg.Logging.Level); err == nil {
			s.level.SetLevel(l)
		}
	}
	if err := s.access.Reconfigure(cfg.Logging.AccessLog); err != nil {
		s.log.Error("access log not reconfigured", zap.Error(err))
	}
	if u := appURL(cfg); s.broker != nil && u != "" {
		// Push deliveries follow the app, as the inbound traffic does. A
		// config without the app has no push subscriptions (validation)
		// but may leave the running ones until a restart (the eventlog
		// section takes effect then): they keep the app they had.
		s.broker.SetAppURL(u)
	}
	s.moveListeners(moves, cfg.Listeners.DrainTimeout)
	// The generation is published last, once everything above took
	// effect: whoever sees it in /config finds the listeners where it
	// says, the address file naming them, and the access log, the log
	// level and push deliveries following it.
	prev, _ := s.state.current()
	gen := s.state.applied(s.servingConfig(cfg, prev), kind, now)
	s.warnRestartOnly(prev, s.servingConfig(cfg, nil))
	s.log.Info("configuration reloaded", zap.String("trigger", trigger), zap.Uint64(fieldGeneration, gen))
}

// servingConfig is cfg as this process serves it, for /config: the command
// line's --log-level and --log-format in place of logging.level and
// logging.format, and, when prev (the serving config) is given, prev's
// settings that are bound or opened at start (those warnRestartOnly names)
// in place of cfg's. cfg itself stays as loaded: the watcher compares
// with it.
func (s *sidecar) servingConfig(cfg, prev *config.Config) *config.Config {
	c := *cfg
	if s.opts.logLevel != "" {
		c.Logging.Level = s.opts.logLevel
	}
	if s.opts.logFormat != "" {
		c.Logging.Format = s.opts.logFormat
	}
	if prev != nil {
		c.Admin.Address = prev.Admin.Address
		c.Listeners.AppAPI.Address = prev.Listeners.AppAPI.Address
		c.Listeners.AppAPI.Disabled = prev.Listeners.AppAPI.Disabled
		c.EventLog = prev.EventLog
		c.Logging.Format = prev.Logging.Format
	}
	return &c
}

// warnRestartOnly logs the settings a reload cannot change in a running
// process: prev is the serving config, next the reload's with the
// command line's overrides.
func (s *sidecar) warnRestartOnly(prev, next *config.Config) {
	if prev == nil {
		return
	}
	for _, c := range []struct{ key, a, b string }{
		{"admin.address", prev.Admin.Address, next.Admin.Address},
		{"listeners.app_api.address", prev.Listeners.AppAPI.Address, next.Listeners.AppAPI.Address},
		{"listeners.app_api.disabled", strconv.FormatBool(prev.Listeners.AppAPI.Disabled), strconv.FormatBool(next.Listeners.AppAPI.Disabled)},
		{"eventlog", mustHash(prev.EventLog), mustHash(next.EventLog)},
		{"logging.format", prev.Logging.Format, next.Logging.Format},
	} {
		if c.a != c.b {
			s.log.Warn("setting changed; it takes effect on restart", zap.String("key", c.key), zap.String("serving", c.a), zap.String("configured", c.b))
		}
	}
}

// serverEnded counts the end of a server; it returns the listener's
// failure, or nil for a server Retire closed.
func (s *sidecar) serverEnded(r serveResult) error {
	s.lnMu.Lock()
	s.servers--
	s.lnMu.Unlock()
	if errors.Is(r.err, http.ErrServerClosed) {
		// Only Retire closes a server before the drain: a listener a
		// reload moved away from.
		return nil
	}
	return fmt.Errorf("%s listener: %w", r.name, r.err)
}

// shutdownDelay keeps every listener serving, while /ready fails, for d,
// or until a signal on s.opts.again or a listener's failure, whichever is
// first. It returns that failure.
func (s *sidecar) shutdownDelay(d time.Duration) error {
	s.log.Info("shutting down: not ready, serving on for the shutdown delay", zap.Duration("shutdown_delay", d))
	start := time.Now()
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.log.Info("shutdown delay over", zap.Duration("shutdown_delay", d))
			return nil
		case sig := <-s.opts.again: // nil: never
			s.log.Info("shutdown delay ended by a second signal", zap.String("signal", sig.String()),
				zap.Duration("shutdown_delay", d), zap.Duration("elapsed", time.Since(start)))
			return nil
		case r := <-s.serveErr:
			if err := s.serverEnded(r); err != nil {
				s.log.Error("listener failed; ending the shutdown delay", zap.String(fieldListener, r.name), zap.Error(r.err))
				return err
			}
		}
	}
}

// ready is /ready's test: serving (listeners bound, a config applied) and not
// stopping.
func (s *sidecar) ready() error {
	switch {
	case s.draining.Load():
		return errors.New("draining")
	case s.stopping.Load():
		return errors.New("shutting down")
	case !s.serving.Load():
		return errors.New("starting")
	}
	if cfg, _ := s.state.current(); cfg == nil {
		return errors.New("no configuration loaded")
	}
	return nil
}

func (s *sidecar) adminHandler(reg *prometheus.Registry, messaging http.Handler) http.Handler {
	return admin.New(admin.Options{
		Gatherer:  reg,
		Messaging: messaging,
		Ready:     s.ready,
		Config:    s.state.status,
		Clusters:  func() any { return s.proxy.Clusters() },
		LogLevel:  func() string { return s.level.Level().String() },
		SetLogLevel: func(level string) error {
			l, err := parseLevel(level)
			if err != nil || level == "" || l < zapcore.DebugLevel || l > zapcore.ErrorLevel {
				return fmt.Errorf("level must be debug, info, warn or error, got %q", level)
			}
			prev := s.level.Level()
			if prev == l {
				return nil
			}
			// Written at whichever of the two levels shows a warning.
			note := func() {
				s.log.Warn("log level set by an operator", zap.String("level", l.String()), zap.String("was", prev.String()))
			}
			if l > zapcore.WarnLevel {
				note()
				s.level.SetLevel(l)
			} else {
				s.level.SetLevel(l)
				note()
			}
			return nil
		},
		SetBreaker: func(cluster string, a admin.BreakerAction) error {
			err := s.proxy.SetBreaker(cluster, string(a))
			if errors.Is(err, proxy.ErrUnknownCluster) {
				return fmt.Errorf("%w %q", admin.ErrUnknownCluster, cluster)
			}
			if err == nil {
				s.log.Warn("breaker overridden by an operator", zap.String("cluster", cluster), zap.String("state", string(a)))
			}
			return err
		},
		Pprof: true,
	})
}

func buildInfo() prometheus.Collector {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "outrigger_build_info",
		Help: "Always 1; the labels say which build is running.",
	}, []string{"version", "commit", "go_version"})
	g.WithLabelValues(version, buildCommit(), runtime.Version()).Set(1)
	return g
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// mustHash fingerprints v for comparison: equal values, equal strings.
func mustHash(v any) string {
	b, err := config.EffectiveJSON(v)
	if err != nil {
		return err.Error()
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// appURL is the base URL of the local app (listeners.inbound.app) that
// push subscriptions deliver to; "" for none.
func appURL(cfg *config.Config) string {
	if cfg.Listeners.Inbound.App == "" {
		return ""
	}
	return "http://" + cfg.Listeners.Inbound.App
}

// eventLogConfigured reports whether cfg asks for the event log: a non-empty
// eventlog section, and listeners.app_api not disabled.
func eventLogConfigured(cfg *config.Config) bool {
	return !cfg.Listeners.AppAPI.Disabled && !reflect.ValueOf(cfg.EventLog).IsZero()
}
