package eventlog

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outrigger-mesh/outrigger/eventlog/segment"
)

// Options are the Broker's wiring that does not come from config.
type Options struct {
	// AppURL is the base URL of the local app that push subscriptions
	// deliver to, e.g. "http://127.0.0.1:8080". Required when the config
	// has subscriptions. [Broker.SetAppURL] changes it.
	AppURL string
	// HTTPClient delivers pushes. nil: a client with no overall timeout
	// (each attempt is bounded by the subscription's timeout).
	HTTPClient *http.Client
}

// Internal topic names.
const (
	offsetsTopic     = "__consumer_offsets"
	idempotencyTopic = "__idempotency"
)

// Broker is the event log of one node: its topics, consumer groups,
// committed offsets, idempotency keys and push subscriptions.
//
// Shutdown order: cancel Run's context and wait for Run to return (push
// deliveries and maintenance stop, long polls return), stop serving Handler
// and AdminHandler, then Close (waits for acks=0 appends, closes every log).
type Broker struct {
	cfg     Config
	opts    Options
	now     func() time.Time
	dataDir string
	metrics *metrics

	// appURL is Options.AppURL, or what SetAppURL set since.
	appURL atomic.Pointer[string]

	part    partitioner
	offsets *offsetStore
	idem    *idempotencyStore
	groups  *coordinator
	subs    []*Subscriber

	// mu guards topics. It is never held across I/O on a log.
	mu     sync.RWMutex
	topics map[string]*Topic

	// adminMu serialises topic creation and deletion (they do file I/O).
	adminMu sync.Mutex

	// waitCtx ends when shutdown begins (Run's context ends, or Close):
	// long polls end with it, so that the HTTP server can drain quickly.
	waitCtx     context.Context
	stopWaiters context.CancelFunc
	// parked counts long polls (Fetch and GroupFetch with a wait) blocked
	// right now, each counted only after it holds the channels that wake
	// it. Tests read it to publish once a poll is parked instead of
	// sleeping.
	parked atomic.Int64

	closed atomic.Bool
	// bgMu orders starting an acks=0 append against Close, so that no
	// append is added to background once Close waits for it.
	bgMu sync.Mutex
	// background tracks acks=0 appends so Close can wait for them.
	background sync.WaitGroup
}

// Open opens (or creates) the event log under cfg.DataDir: every topic on
// disk, every topic declared in cfg, the committed offsets and the
// idempotency keys. reg receives the outrigger_eventlog_* metrics (nil: none
// are registered); now is the clock (nil: time.Now).
func Open(cfg Config, reg *prometheus.Registry, now func() time.Time, opts Options) (_ *Broker, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("eventlog config: %w", err)
	}
	if len(cfg.Subscriptions) > 0 && opts.AppURL == "" {
		return nil, errors.New("eventlog: Options.AppURL is required for push subscriptions")
	}
	if now == nil {
		now = time.Now
	}
	b := &Broker{
		cfg:     cfg,
		opts:    opts,
		now:     now,
		dataDir: cmpOr(cfg.DataDir, DefaultDataDir),
		topics:  map[string]*Topic{},
	}
	b.appURL.Store(&opts.AppURL)
	b.waitCtx, b.stopWaiters = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			b.stopWaiters()
			b.closeTopics()
		}
	}()
	if err := os.MkdirAll(filepath.Join(b.dataDir, "topics"), 0o755); err != nil {
		return nil, fmt.Errorf("eventlog: %w", err)
	}
	// Topics already on disk.
	entries, err := os.ReadDir(filepath.Join(b.dataDir, "topics"))
	if err != nil {
		return nil, fmt.Errorf("eventlog: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(b.dataDir, "topics", e.Name())
		meta, err := readMeta(dir)
		if errors.Is(err, os.ErrNotExist) {
			// A topic whose creation did not finish: meta.json is written
			// before any partition, so there is no data to lose.
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("eventlog: %w", err)
		}
		if meta.Name != e.Name() {
			return nil, fmt.Errorf("eventlog: %s/meta.json names topic %q", dir, meta.Name)
		}
		tc := meta.Config
		if declared, ok := cfg.Topics[meta.Name]; ok {
			if declared.Partitions != 0 && declared.Partitions < tc.Partitions {
				return nil, fmt.Errorf("eventlog: topics.%s.partitions: cannot shrink from %d to %d", meta.Name, tc.Partitions, declared.Partitions)
			}
			parts := max(tc.Partitions, declared.Partitions)
			tc = declared
			tc.Partitions = parts
		}
		meta.Config = tc
		t, err := openTopic(dir, meta, b.settingsFor(meta), now)
		if err != nil {
			return nil, fmt.Errorf("eventlog: %w", err)
		}
		b.topics[meta.Name] = t
	}
	// Declared topics not yet on disk, and the internal topics.
	names := make([]string, 0, len(cfg.Topics))
	for n := range cfg.Topics {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if _, ok := b.topics[n]; ok {
			continue
		}
		if _, err := b.createTopic(n, cfg.Topics[n], false); err != nil {
			return nil, fmt.Errorf("eventlog: %w", err)
		}
	}
	for _, n := range []string{offsetsTopic, idempotencyTopic} {
		if _, ok := b.topics[n]; ok {
			continue
		}
		if _, err := b.createTopic(n, TopicConfig{Partitions: 1, Cleanup: "compact", Flush: "sync"}, true); err != nil {
			return nil, fmt.Errorf("eventlog: %w", err)
		}
	}
	b.metrics = newMetrics(reg, b)
	if b.offsets, err = loadOffsets(b.topics[offsetsTopic].partitions[0], now); err != nil {
		return nil, fmt.Errorf("eventlog: %w", err)
	}
	window := cmpOr(cfg.Idempotency.Window, DefaultIdempotencyWindow)
	maxKeys := cmpOr(cfg.Idempotency.MaxKeys, DefaultIdempotencyMaxKeys)
	if b.idem, err = loadIdempotency(b.topics[idempotencyTopic].partitions[0], window, maxKeys, now); err != nil {
		return nil, fmt.Errorf("eventlog: %w", err)
	}
	b.groups = newCoordinator(b)
	for _, sc := range cfg.Subscriptions {
		b.subs = append(b.subs, newSubscriber(b, sc))
	}
	return b, nil
}

// SetAppURL moves push deliveries to the local app at url (as
// Options.AppURL): attempts that start from now on go there. The sidecar
// calls it when a reload moves the app.
func (b *Broker) SetAppURL(url string) {
	b.appURL.Store(&url)
}

// settingsFor is the effective settings of a topic. Internal topics keep
// their records until compaction replaces them, except idempotency keys,
// which expire after twice the window.
func (b *Broker) settingsFor(meta topicMeta) TopicConfig {
	s := b.cfg.effective(meta.Config)
	if meta.Internal {
		s.Cleanup = "compact"
		s.Flush = "sync"
		s.RetentionAge = -1
		if meta.Name == idempotencyTopic {
			s.RetentionAge = 2 * cmpOr(b.cfg.Idempotency.Window, DefaultIdempotencyWindow)
		}
	}
	return s
}

// createTopic makes a topic on disk and opens it.
func (b *Broker) createTopic(name string, tc TopicConfig, internal bool) (*Topic, error) {
	dir := filepath.Join(b.dataDir, "topics", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	meta := topicMeta{Name: name, Config: tc, Internal: internal, CreatedAt: b.now().UTC()}
	t, err := openTopic(dir, meta, b.settingsFor(meta), b.now)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.topics[name] = t
	b.mu.Unlock()
	return t, nil
}

// CreateTopic creates a topic at run time (admin API). It fails with
// ErrTopicExists, ErrReservedTopic or ErrBadRequest.
func (b *Broker) CreateTopic(name string, tc TopicConfig) error {
	if b.closed.Load() {
		return ErrClosed
	}
	if strings.HasPrefix(name, "__") {
		return errf(ErrReservedTopic, "%q", name)
	}
	if err := ValidTopicName(name); err != nil {
		return errf(ErrBadRequest, "topic name %q: %v", name, err)
	}
	if errs := tc.validate(); len(errs) > 0 {
		return errf(ErrBadRequest, "%v", errors.Join(errs...))
	}
	b.adminMu.Lock()
	defer b.adminMu.Unlock()
	if _, err := b.Topic(name); err == nil {
		return errf(ErrTopicExists, "%q", name)
	}
	_, err := b.createTopic(name, tc, false)
	if err != nil {
		return fmt.Errorf("%w: create topic %q: %v", ErrStorage, name, err)
	}
	b.groups.refreshAll()
	return nil
}

// DeleteTopic removes a topic created at run time, its data and its
// committed offsets. Topics declared in config cannot be deleted
// (ErrTopicDeclared): they would come back on the next start.
func (b *Broker) DeleteTopic(ctx context.Context, name string) error {
	if strings.HasPrefix(name, "__") {
		return errf(ErrReservedTopic, "%q", name)
	}
	if _, ok := b.cfg.Topics[name]; ok {
		return errf(ErrTopicDeclared, "%q: remove it from config instead", name)
	}
	b.adminMu.Lock()
	defer b.adminMu.Unlock()
	b.mu.Lock()
	t, ok := b.topics[name]
	delete(b.topics, name)
	b.mu.Unlock()
	if !ok {
		return errf(ErrUnknownTopic, "%q", name)
	}
	t.notify.Broadcast()
	closeErr := t.close()
	if err := os.RemoveAll(t.dir); err != nil {
		return fmt.Errorf("%w: delete topic %q: %v", ErrStorage, name, err)
	}
	b.groups.refreshAll()
	if err := b.offsets.forgetTopic(ctx, name); err != nil {
		return fmt.Errorf("%w: delete offsets of %q: %v", ErrStorage, name, err)
	}
	return closeErr
}

// Topic returns the topic called name, or ErrUnknownTopic.
func (b *Broker) Topic(name string) (*Topic, error) {
	b.mu.RLock()
	t, ok := b.topics[name]
	b.mu.RUnlock()
	if !ok {
		return nil, errf(ErrUnknownTopic, "%q", name)
	}
	return t, nil
}

// TopicNames lists every topic, internal ones included, sorted.
func (b *Broker) TopicNames() []string {
	b.mu.RLock()
	names := make([]string, 0, len(b.topics))
	for n := range b.topics {
		names = append(names, n)
	}
	b.mu.RUnlock()
	slices.Sort(names)
	return names
}

// partitionCount is 0 for an unknown topic.
func (b *Broker) partitionCount(topic string) int32 {
	t, err := b.Topic(topic)
	if err != nil {
		return 0
	}
	return int32(len(t.partitions))
}

// Run runs the push subscriptions, the retention/compaction loop and group
// session expiry until ctx ends, then waits for them and returns nil. When
// ctx ends, pending long polls (fetches with wait) also return at once.
func (b *Broker) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, b.stopWaiters)
	defer stop()
	var wg sync.WaitGroup
	for _, s := range b.subs {
		wg.Go(func() { s.Run(ctx) })
	}
	wg.Go(func() { b.maintain(ctx) })
	wg.Go(func() { b.groups.run(ctx) })
	wg.Wait()
	// Everything above returns only once ctx has ended, yet the AfterFunc
	// may not have run: ctx.Done() is closed before the AfterFunc is
	// triggered, so the loops can return and the deferred stop can win
	// that race, and stopWaiters would never run. End the long polls here
	// too (stopWaiters is idempotent).
	b.stopWaiters()
	return nil
}

// Close waits for outstanding acks=0 appends and closes every log. Run must
// have returned first.
func (b *Broker) Close() error {
	b.bgMu.Lock()
	already := b.closed.Swap(true)
	b.bgMu.Unlock()
	if already {
		return nil
	}
	b.stopWaiters()
	b.background.Wait()
	return b.closeTopics()
}

func (b *Broker) closeTopics() error {
	b.mu.Lock()
	topics := b.topics
	b.topics = map[string]*Topic{}
	b.mu.Unlock()
	var errs []error
	for _, t := range topics {
		t.notify.Broadcast()
		errs = append(errs, t.close())
	}
	return errors.Join(errs...)
}

// maintain enforces retention and compaction on every partition each
// maintenance interval.
func (b *Broker) maintain(ctx context.Context) {
	tick := time.NewTicker(cmpOr(b.cfg.MaintenanceInterval, DefaultMaintenanceInterval))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			b.Maintain()
		}
	}
}

// Maintain runs retention and compaction once over every partition, and
// returns the errors met (also counted in metrics).
func (b *Broker) Maintain() error {
	now := b.now()
	var errs []error
	for _, name := range b.TopicNames() {
		t, err := b.Topic(name)
		if err != nil {
			continue
		}
		for _, p := range t.partitions {
			if _, err := p.log.EnforceRetention(now); err != nil && !errors.Is(err, segment.ErrClosed) {
				errs = append(errs, fmt.Errorf("retention %s/%d: %w", name, p.id, err))
			}
			if t.settings.Cleanup == "compact" {
				if _, err := p.log.Compact(now); err != nil && !errors.Is(err, segment.ErrClosed) {
					errs = append(errs, fmt.Errorf("compact %s/%d: %w", name, p.id, err))
				}
			}
		}
	}
	b.metrics.maintenanceErrors.Add(float64(len(errs)))
	return errors.Join(errs...)
}
