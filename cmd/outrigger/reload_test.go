package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/outrigger-mesh/outrigger/proxy"
	"github.com/outrigger-mesh/outrigger/proxy/config"
)

func reloadTestConfig(connectTimeout string) string {
	return "listeners: {outbound: {disabled: true}}\nclusters: {a: {endpoints: [\"127.0.0.1:9\"], connect_timeout: " + connectTimeout + "}}\n"
}

// newReloadSidecar writes reloadTestConfig(connectTimeout) to a file of
// its own (s.opts.configPath) and returns a sidecar with no listeners
// serving it, ready for reload, reloadFile and its watcher. write
// replaces the file (by rename, as editors do) with the config of another
// connect_timeout.
func newReloadSidecar(t *testing.T, connectTimeout string) (s *sidecar, write func(connectTimeout string)) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "outrigger.yaml")
	write = func(ct string) { writeAtomic(t, path, reloadTestConfig(ct)) }
	write(connectTimeout)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	s = &sidecar{
		opts:  sidecarOptions{configPath: path},
		log:   zap.NewNop(),
		level: zap.NewAtomicLevel(),
		state: newConfigState(path, prometheus.NewRegistry()),
		proxy: proxy.New(proxy.Options{NoHealthChecks: true}),
		lns:   &listeners{},
	}
	s.access, err = newAccessLog(cfg.Logging.AccessLog, io.Discard, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.access.Close() })
	if err := s.proxy.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	s.state.applied(cfg, initialLoad, time.Now())
	s.watcher = s.newWatcher(cfg)
	return s, write
}

// sidecarLoops runs s's file watch and SIGHUP loop until the test ends.
// Real SIGHUPs sent to this process reach the loop; the returned function
// sends one and returns once it has been received, so that signals are
// neither merged nor left pending when the test stops listening.
func sidecarLoops(t *testing.T, s *sidecar) (sighup func()) {
	t.Helper()
	caught, received := make(chan os.Signal, 1), make(chan struct{})
	signal.Notify(caught, syscall.SIGHUP)
	hup := make(chan os.Signal)
	s.opts.reload = hup
	ctx, cancel := context.WithCancel(context.Background())
	var loops sync.WaitGroup
	loops.Go(func() {
		if err := s.watcher.Run(ctx); err != nil {
			t.Errorf("watcher: %v", err)
		}
	})
	loops.Go(func() { s.sighupLoop(ctx) })
	loops.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case sig := <-caught:
				select {
				case hup <- sig:
				case <-ctx.Done():
					return
				}
				received <- struct{}{}
			}
		}
	})
	t.Cleanup(func() {
		signal.Stop(caught)
		cancel()
		loops.Wait()
	})
	return func() {
		t.Helper()
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		select {
		case <-received:
		case <-time.After(10 * time.Second):
			t.Fatal("the SIGHUP never reached the reload loop")
		}
	}
}

// servingConnectTimeout is clusters.a.connect_timeout of the serving
// config, and its generation.
func servingConnectTimeout(s *sidecar) (time.Duration, uint64) {
	cur, gen := s.state.current()
	return cur.Clusters["a"].ConnectTimeout, gen
}

// waitServing waits until the serving config has connect_timeout want.
func waitServing(t *testing.T, s *sidecar, want time.Duration) {
	t.Helper()
	waitFor(t, 10*time.Second, "connect_timeout "+want.String()+" serving", func() bool {
		got, _ := servingConnectTimeout(s)
		return got == want
	})
}

// A file changed, reloaded by SIGHUP and changed back before the watcher
// read it must end with the file's content serving. The watcher delivered
// only what differed from the last content it had delivered itself: the
// content SIGHUP applied was unknown to it, so a file written back to what
// it last delivered was never applied, and the config SIGHUP applied kept
// serving.
func TestFileChangedBackAfterSIGHUPServesTheFile(t *testing.T) {
	s, write := newReloadSidecar(t, "1s")
	// The watcher delivers a file unlike the config loaded at start as
	// soon as it runs: its watches are then in place.
	write("2s")
	sighup := sidecarLoops(t, s)
	waitServing(t, s, 2*time.Second)

	write("3s")
	sighup()
	waitServing(t, s, 3*time.Second)
	write("2s")
	waitServing(t, s, 2*time.Second)
}

// Reloads by SIGHUP, by file events and by direct calls, all at once while
// the file keeps changing, apply the file's versions in the order they
// were written, and the last applied is the last written. Before, the
// watcher read the file outside the reload lock: a SIGHUP could read and
// apply a newer version between the watcher's read and its apply, which
// then put the older one back.
func TestConcurrentReloadsApplyTheNewestFileLast(t *testing.T) {
	s, write := newReloadSidecar(t, "1ms")
	sighup := sidecarLoops(t, s)

	const versions = 60
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var backwards atomic.Value // a string saying what went back
	wg.Go(func() {
		// Watches what serves: a later generation must never hold an
		// older version.
		lastV, lastGen := time.Duration(0), uint64(0)
		for {
			v, gen := servingConnectTimeout(s)
			if gen > lastGen && v < lastV {
				backwards.Store(fmt.Sprintf("generation %d serves %v after generation %d served %v", gen, v, lastGen, lastV))
			}
			if gen > lastGen {
				lastV, lastGen = v, gen
			}
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Microsecond):
			}
		}
	})
	for v := 2; v <= versions; v++ {
		write(strconv.Itoa(v) + "ms")
		wg.Go(func() { s.reloadFile("signal") })
		sighup()
	}
	waitServing(t, s, versions*time.Millisecond)
	close(stop)
	wg.Wait()
	if msg := backwards.Load(); msg != nil {
		t.Fatal(msg)
	}
}

// A reload that arrives once the stop has begun (a file event or SIGHUP
// racing SIGTERM, or during the shutdown delay or the drain) changes
// nothing and records nothing: the stop keeps the config and listeners
// it started with.
func TestReloadDuringShutdownDelayOrDrainIsIgnored(t *testing.T) {
	s, _ := newReloadSidecar(t, "1s")
	s.stopping.Store(true)
	for _, content := range []string{reloadTestConfig("2s"), "clusters: [\n"} {
		writeAtomic(t, s.opts.configPath, content)
		s.reloadFile("signal")
		cfg, err := config.Load(s.opts.configPath)
		s.reload(cfg, err, "file")
	}
	cur, gen := s.state.current()
	if st := s.state.status(); gen != 1 || cur.Clusters["a"].ConnectTimeout != time.Second || st.LastReloadError != "" || !st.LastReloadAt.IsZero() {
		t.Fatalf("generation %d, connect_timeout %v, status %+v", gen, cur.Clusters["a"].ConnectTimeout, st)
	}
}

// A reload that changes a setting bound at start logs that it takes
// effect on restart, naming the key; turning the app API (and with it
// the event log) off or on was applied silently, though nothing of it
// stops or starts until a restart.
func TestRestartOnlySettingsAreWarned(t *testing.T) {
	const base = "listeners: {outbound: {disabled: true}%s}\neventlog: {topics: {orders: {partitions: 1}}}\nclusters: {a: {endpoints: [\"127.0.0.1:9\"]}}\n"
	for _, tc := range []struct{ name, prev, next, key string }{
		{"app api turned off", "", ", app_api: {disabled: true}", "listeners.app_api.disabled"},
		{"app api turned on", ", app_api: {disabled: true}", "", "listeners.app_api.disabled"},
		{"app api moved", "", ", app_api: {address: \"127.0.0.1:15999\"}", "listeners.app_api.address"},
		{"nothing bound at start", "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prev, err := config.Parse(fmt.Appendf(nil, base, tc.prev), "prev.yaml")
			if err != nil {
				t.Fatal(err)
			}
			next, err := config.Parse(fmt.Appendf(nil, base, tc.next), "next.yaml")
			if err != nil {
				t.Fatal(err)
			}
			core, logs := observer.New(zap.WarnLevel)
			(&sidecar{log: zap.New(core)}).warnRestartOnly(prev, next)
			var keys []string
			for _, e := range logs.All() {
				keys = append(keys, e.ContextMap()["key"].(string))
			}
			var want []string
			if tc.key != "" {
				want = []string{tc.key}
			}
			if !slices.Equal(keys, want) {
				t.Fatalf("warned for %q, want %q", keys, want)
			}
		})
	}
}
