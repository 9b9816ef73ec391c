package main

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

func TestReadyOnlyWhileServingWithAConfig(t *testing.T) {
	s := &sidecar{state: newConfigState("test.yaml", prometheus.NewRegistry())}
	check := func(want string) {
		t.Helper()
		err := s.ready()
		switch {
		case want == "" && err != nil:
			t.Fatalf("ready() = %v, want ready", err)
		case want != "" && (err == nil || err.Error() != want):
			t.Fatalf("ready() = %v, want %q", err, want)
		}
	}
	check("starting")
	s.serving.Store(true)
	check("no configuration loaded")
	s.state.applied(&config.Config{}, initialLoad, time.Now())
	check("")
	s.stopping.Store(true)
	check("shutting down")
	s.draining.Store(true)
	check("draining")
}

func TestConfigStateCountsReloads(t *testing.T) {
	st := newConfigState("test.yaml", prometheus.NewRegistry())
	t0 := time.Date(2026, 11, 27, 4, 0, 0, 0, time.UTC)
	if g := st.applied(&config.Config{}, initialLoad, t0); g != 1 {
		t.Fatalf("first generation %d", g)
	}
	st.rejected(errString("bad"), fileReload, t0.Add(time.Second))
	if s := st.status(); s.Generation != 1 || s.LastReloadError != "bad" || !s.LastReloadAt.Equal(t0.Add(time.Second)) || !s.AppliedAt.Equal(t0) {
		t.Fatalf("after a rejected reload: %+v", s)
	}
	st.applied(&config.Config{}, fileReload, t0.Add(2*time.Second))
	if s := st.status(); s.Generation != 2 || s.LastReloadError != "" || s.Hash == "" || len(s.Effective) == 0 {
		t.Fatalf("after a good reload: %+v", s)
	}
}

// A rebuild for rotated TLS files counts as a reload, but leaves a refusal
// of the config file shown (and the gauge at 1) until the file applies;
// its own refusal is shown when the file is not refused, and cleared by
// the next rebuild that applies.
func TestConfigStateKeepsTheFileRefusedAcrossRebuilds(t *testing.T) {
	st := newConfigState("test.yaml", prometheus.NewRegistry())
	t0 := time.Date(2026, 11, 29, 4, 0, 0, 0, time.UTC)
	st.applied(&config.Config{}, initialLoad, t0)
	check := func(step string, wantErr string, wantGauge float64) {
		t.Helper()
		if s := st.status(); s.LastReloadError != wantErr {
			t.Fatalf("%s: last_reload_error %q, want %q", step, s.LastReloadError, wantErr)
		}
		if g := testutil.ToFloat64(st.lastFailed); g != wantGauge {
			t.Fatalf("%s: outrigger_config_last_reload_error %v, want %v", step, g, wantGauge)
		}
	}
	st.rejected(errString("files: key does not match"), tlsRebuild, t0)
	check("a rebuild refused", "files: key does not match", 1)
	st.applied(&config.Config{}, tlsRebuild, t0)
	check("a rebuild applied", "", 0)

	st.rejected(errString("file: unknown key"), fileReload, t0)
	check("the file refused", "file: unknown key", 1)
	st.rejected(errString("files: key does not match"), tlsRebuild, t0)
	check("a rebuild refused while the file is", "file: unknown key", 1)
	st.applied(&config.Config{}, tlsRebuild, t0)
	check("a rebuild applied while the file is refused", "file: unknown key", 1)
	st.applied(&config.Config{}, fileReload, t0)
	check("the file applied", "", 0)

	if s := st.status(); s.Generation != 4 {
		t.Fatalf("generation %d after three reloads, want 4", s.Generation)
	}
	if ok, failed := testutil.ToFloat64(st.reloads.WithLabelValues("success")), testutil.ToFloat64(st.reloads.WithLabelValues("failure")); ok != 3 || failed != 3 {
		t.Fatalf("reloads_total: %v success, %v failure; want 3 and 3", ok, failed)
	}
}

type errString string

func (e errString) Error() string { return string(e) }
