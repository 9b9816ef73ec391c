package main

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

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
	s.state.applied(&config.Config{}, true, time.Now())
	check("")
	s.stopping.Store(true)
	check("shutting down")
	s.draining.Store(true)
	check("draining")
}

func TestConfigStateCountsReloads(t *testing.T) {
	st := newConfigState("test.yaml", prometheus.NewRegistry())
	t0 := time.Date(2026, 11, 27, 4, 0, 0, 0, time.UTC)
	if g := st.applied(&config.Config{}, true, t0); g != 1 {
		t.Fatalf("first generation %d", g)
	}
	st.rejected(errString("bad"), t0.Add(time.Second))
	if s := st.status(); s.Generation != 1 || s.LastReloadError != "bad" || !s.LastReloadAt.Equal(t0.Add(time.Second)) || !s.AppliedAt.Equal(t0) {
		t.Fatalf("after a rejected reload: %+v", s)
	}
	st.applied(&config.Config{}, false, t0.Add(2*time.Second))
	if s := st.status(); s.Generation != 2 || s.LastReloadError != "" || s.Hash == "" || len(s.Effective) == 0 {
		t.Fatalf("after a good reload: %+v", s)
	}
}

type errString string

func (e errString) Error() string { return string(e) }
