package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/outrigger-mesh/outrigger/proxy"
	"github.com/outrigger-mesh/outrigger/proxy/config"
)

func reloadTestConfig(connectTimeout string) string {
	return "listeners: {outbound: {disabled: true}}\nclusters: {a: {endpoints: [\"127.0.0.1:9\"], connect_timeout: " + connectTimeout + "}}\n"
}

// newReloadSidecar is a sidecar with no listeners, serving the file at
// path, ready for reload and reloadFile.
func newReloadSidecar(t *testing.T, path string) *sidecar {
	t.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	s := &sidecar{
		opts:  sidecarOptions{configPath: path},
		log:   zap.NewNop(),
		level: zap.NewAtomicLevel(),
		state: newConfigState(path, prometheus.NewRegistry()),
		proxy: proxy.New(proxy.Options{NoHealthChecks: true}),
		lns:   &listeners{},
	}
	s.access, err = newAccessLog(cfg.Logging.AccessLog, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.access.Close() })
	if err := s.proxy.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	s.state.applied(cfg, true, time.Now())
	return s
}

// A SIGHUP that reads the file while the watcher's reload of a newer
// version waits, or the other way round, must not end with the older file
// serving. Before, SIGHUP read the file and only then waited for the
// reload lock: when the file changed in between and the watcher applied
// the new version first, SIGHUP applied the old one after it, and the
// watcher, having delivered the new bytes already, never delivered them
// again.
func TestSIGHUPReloadNeverAppliesAnOlderFileThanTheWatcher(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outrigger.yaml")
	write := func(ct string) {
		if err := os.WriteFile(path, []byte(reloadTestConfig(ct)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("1s")
	s := newReloadSidecar(t, path)

	read, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	s.load = func(p string) (*config.Config, error) {
		cfg, err := config.Load(p)
		once.Do(func() {
			close(read)
			<-release
		})
		return cfg, err
	}
	hup := make(chan os.Signal, 1)
	s.opts.reload = hup
	ctx, cancel := context.WithCancel(context.Background())
	var loop sync.WaitGroup
	loop.Go(func() { s.sighupLoop(ctx) })
	defer func() { cancel(); loop.Wait() }()

	hup <- os.Interrupt // any signal value: the loop only counts them
	select {
	case <-read:
	case <-time.After(10 * time.Second):
		t.Fatal("SIGHUP did not read the file")
	}
	// SIGHUP has read the file (1s); now it changes, and the watcher
	// delivers the new version.
	write("2s")
	newer, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	fileDone := make(chan struct{})
	go func() { s.reload(newer, nil, "file"); close(fileDone) }()
	// Give the watcher's reload the chance to run ahead of SIGHUP's, as
	// it did before (it waits for reloadMu now).
	select {
	case <-fileDone:
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	select {
	case <-fileDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the watcher's reload never finished")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, gen := s.state.current(); gen == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("both reloads did not apply")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cur, _ := s.state.current()
	if got := cur.Clusters["a"].ConnectTimeout; got != 2*time.Second {
		t.Fatalf("serving connect_timeout %v, the file says 2s", got)
	}
}

// A reload that arrives once the drain has begun (a file event or SIGHUP
// racing SIGTERM) changes nothing and records nothing: the drain keeps
// the config and listeners it started with.
func TestReloadDuringDrainIsIgnored(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outrigger.yaml")
	if err := os.WriteFile(path, []byte(reloadTestConfig("1s")), 0o644); err != nil {
		t.Fatal(err)
	}
	s := newReloadSidecar(t, path)
	s.draining.Store(true)
	for _, content := range []string{reloadTestConfig("2s"), "clusters: [\n"} {
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		s.reloadFile("signal")
		cfg, err := config.Load(path)
		s.reload(cfg, err, "file")
	}
	cur, gen := s.state.current()
	if st := s.state.status(); gen != 1 || cur.Clusters["a"].ConnectTimeout != time.Second || st.LastReloadError != "" || !st.LastReloadAt.IsZero() {
		t.Fatalf("generation %d, connect_timeout %v, status %+v", gen, cur.Clusters["a"].ConnectTimeout, st)
	}
}
