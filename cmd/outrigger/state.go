package main

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outrigger-mesh/outrigger/proxy/admin"
	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// configState is the serving configuration and the history of reloads that
// /config and the outrigger_config_* metrics report. It decides nothing: the
// sidecar records into it after each attempt.
type configState struct {
	source string
	// defaultMaxConns is the connection cap a listener without
	// max_connections gets (proxy.Options.DefaultMaxConnections), which
	// /config shows in place of its 0; 0 for none. Set before the first
	// config applies.
	defaultMaxConns int

	generation prometheus.Gauge
	reloads    *prometheus.CounterVec
	lastFailed prometheus.Gauge

	mu           sync.Mutex
	cfg          *config.Config // guarded by mu; nil until the first config applies
	effective    json.RawMessage
	hash         string
	gen          uint64
	appliedAt    time.Time
	lastErr      string
	lastReloadAt time.Time

	// fileRefused: lastErr is why the config file was refused, which
	// only a reload of the file that applies clears. A rebuild of the
	// serving config for its rotated TLS files neither clears nor
	// replaces it: the file stays refused.
	fileRefused bool
}

func newConfigState(source string, reg prometheus.Registerer) *configState {
	s := &configState{
		source: source,
		generation: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "outrigger_config_generation",
			Help: "Generation of the serving configuration: 1 for the one loaded at start, +1 per applied reload.",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_config_reloads_total",
			Help: "Configuration reloads attempted, by result (success, failure). The initial load is not a reload.",
		}, []string{"result"}),
		lastFailed: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "outrigger_config_last_reload_error",
			Help: "1 when the most recent reload was rejected (the previous configuration keeps serving), or the most recent reload of the config file was (the reloads for rotated TLS files leave it), else 0.",
		}),
	}
	// Both results exist from the start so that rate() sees the first failure.
	s.reloads.WithLabelValues("success")
	s.reloads.WithLabelValues("failure")
	reg.MustRegister(s.generation, s.reloads, s.lastFailed)
	return s
}

// reloadKind is where a configuration applied or refused comes from.
type reloadKind uint8

const (
	initialLoad reloadKind = iota // the file, loaded at start: not a reload
	fileReload                    // the file, read again (file watch, SIGHUP)
	tlsRebuild                    // the serving config, applied again for its rotated TLS files
)

// shown is cfg as /config shows it: with the listeners' connection cap
// the start computed in place of the 0 that stands for it. cfg itself
// (its hash, what a reload compares) keeps the 0.
func (s *configState) shown(cfg *config.Config) *config.Config {
	out, in := &cfg.Listeners.Outbound.MaxConnections, &cfg.Listeners.Inbound.MaxConnections
	if s.defaultMaxConns <= 0 || *out != 0 && *in != 0 {
		return cfg
	}
	c := *cfg
	if *out == 0 {
		c.Listeners.Outbound.MaxConnections = s.defaultMaxConns
	}
	if *in == 0 {
		c.Listeners.Inbound.MaxConnections = s.defaultMaxConns
	}
	return &c
}

// applied records cfg as serving and returns the new generation.
func (s *configState) applied(cfg *config.Config, kind reloadKind, now time.Time) uint64 {
	eff, err := config.EffectiveJSON(s.shown(cfg))
	if err != nil {
		// The config types are plain data; a marshal failure is a bug worth
		// seeing in /config rather than a reason to refuse the config.
		eff, _ = json.Marshal(map[string]string{"error": "rendering effective config: " + err.Error()})
	}
	s.mu.Lock()
	s.cfg = cfg
	s.effective = eff
	s.hash = cfg.Hash()
	s.gen++
	gen := s.gen
	s.appliedAt = now
	refused := false
	if kind != initialLoad {
		s.lastReloadAt = now
		if kind == tlsRebuild && s.fileRefused {
			refused = true // the file is still refused
		} else {
			s.lastErr, s.fileRefused = "", false
		}
	}
	s.mu.Unlock()

	s.generation.Set(float64(gen))
	if kind != initialLoad {
		s.reloads.WithLabelValues("success").Inc()
		if !refused {
			s.lastFailed.Set(0)
		}
	}
	return gen
}

// rejected records a reload that did not apply. The error of a tlsRebuild
// does not replace the refusal of the file.
func (s *configState) rejected(err error, kind reloadKind, now time.Time) {
	s.mu.Lock()
	if kind != tlsRebuild || !s.fileRefused {
		s.lastErr, s.fileRefused = err.Error(), kind != tlsRebuild
	}
	s.lastReloadAt = now
	s.mu.Unlock()
	s.reloads.WithLabelValues("failure").Inc()
	s.lastFailed.Set(1)
}

// current returns the serving config (nil before the first) and its
// generation.
func (s *configState) current() (*config.Config, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg, s.gen
}

// status is the /config body.
func (s *configState) status() admin.ConfigStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return admin.ConfigStatus{
		Generation:      s.gen,
		Hash:            s.hash,
		Source:          s.source,
		AppliedAt:       s.appliedAt,
		LastReloadError: s.lastErr,
		LastReloadAt:    s.lastReloadAt,
		Effective:       s.effective,
	}
}
