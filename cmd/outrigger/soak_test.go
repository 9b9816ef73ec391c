//go:build soak

package main

import (
	"os"
	"testing"
	"time"
)

// TestSoakReloadsUnderLoad reloads the configuration every 300ms for
// SOAK_DURATION (default 2m), cycling through a valid config, another valid
// config and an invalid one (kept for a second, past the watcher's settle
// time, so that its rejection is reported), while four clients send requests without
// pause. No request may fail; memory and goroutines must not keep growing.
func TestSoakReloadsUnderLoad(t *testing.T) {
	dur := 2 * time.Minute
	if v := os.Getenv("SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("SOAK_DURATION: %v", err)
		}
		dur = d
	}
	a, b := newUpstream(t, "a"), newUpstream(t, "b")
	configs := []string{
		sidecarConfig(a.addr(), a.addr(), ""),
		sidecarConfig(b.addr(), a.addr(), ""),
		sidecarConfig(b.addr(), a.addr(), "    retry:\n      attempts: 99\n"), // invalid
	}
	path := writeConfig(t, configs[0])
	p := start(t, "run", "-c", path)
	c := newClient(t)
	admin := p.addrs.Admin

	load := startLoad(t, newClient(t), "http://"+p.addrs.Outbound+"/hello", dur+time.Minute, 1<<30)
	waitFor(t, 10*time.Second, "traffic", func() bool { return load.count("a") > 100 })
	rss0, gor0 := rssKB(t, p.cmd.Process.Pid), metric(t, c, admin, "go_goroutines")

	deadline := time.Now().Add(dur)
	reloads := 0
	for i := 1; time.Now().Before(deadline); i++ {
		writeAtomic(t, path, configs[i%3])
		reloads++
		pause := 300 * time.Millisecond
		if i%3 == 2 {
			// An invalid file is reported once it has stayed so for
			// the watcher's settle time (500ms): a file replaced
			// sooner counts as caught half-written.
			pause = time.Second
		}
		time.Sleep(pause)
	}
	ok, failures := load.finish()
	if len(failures) > 0 {
		t.Fatalf("%d of %d requests failed during %d reloads, e.g. %q", len(failures), ok+len(failures), reloads, failures[0])
	}
	rss1, gor1 := rssKB(t, p.cmd.Process.Pid), metric(t, c, admin, "go_goroutines")
	cb := getConfig(t, c, admin)
	fails := metric(t, c, admin, `outrigger_config_reloads_total{result="failure"}`)
	t.Logf("%v: %d requests, none failed; %d file writes, generation %d, %v rejected; RSS %d -> %d kB; goroutines %v -> %v",
		dur, ok, reloads, cb.Generation, fails, rss0, rss1, gor0, gor1)
	if cb.Generation < 3 || fails < 1 {
		t.Fatalf("reloads did not happen: generation %d, %v rejected", cb.Generation, fails)
	}
	if gor1 > 2*gor0+100 {
		t.Errorf("goroutines grew from %v to %v", gor0, gor1)
	}
	if rss1 > 3*rss0+64<<10 {
		t.Errorf("RSS grew from %d to %d kB", rss0, rss1)
	}
}
