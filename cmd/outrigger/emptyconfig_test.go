package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

// A config file caught empty on a reload (zero bytes, as a writer that
// truncates before writing leaves it; white space and comments only) is
// refused: the last good config keeps serving, and /config and the
// metrics say why. Were it applied as a config without clusters or
// routes, every request would fail until the next write.
func TestReloadOfAnEmptyFileKeepsServing(t *testing.T) {
	up := newUpstream(t, "a")
	good := sidecarConfig(up.addr(), up.addr(), "")
	path := writeConfig(t, good)
	p := start(t, "run", "-c", path)
	c := newClient(t)
	admin := p.addrs.Admin
	serving := func(step string) {
		t.Helper()
		if code, body, _ := get(t, c, "http://"+p.addrs.Outbound+"/x", "svc"); code != 200 || body != "a /x" {
			t.Fatalf("%s: %d %q, want the upstream's answer", step, code, body)
		}
	}
	serving("before")

	for i, content := range []string{"", "# being rewritten\n\t\n"} {
		// Written in place (truncated, then written), not renamed over.
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		step := "file holding " + strings.TrimSpace(strings.ReplaceAll(content, "\n", " "))
		waitFor(t, 15*time.Second, "the failed reload of the "+step, func() bool {
			return metric(t, c, admin, `outrigger_config_reloads_total{result="failure"}`) == float64(i+1)
		})
		cb := getConfig(t, c, admin)
		if cb.Generation != 1 || !strings.Contains(cb.LastReloadError, path+": config is empty") {
			t.Fatalf("%s: generation %d, last_reload_error %q; want 1 and %q", step, cb.Generation, cb.LastReloadError, path+": config is empty")
		}
		waitMetric(t, c, admin, "outrigger_config_last_reload_error", 1)
		serving(step)
	}

	// The file written whole again applies and clears the error.
	if err := os.WriteFile(path, []byte(good+"    retry: {attempts: 2}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "generation 2", func() bool { return getConfig(t, c, admin).Generation == 2 })
	if cb := getConfig(t, c, admin); cb.LastReloadError != "" {
		t.Fatalf("error not cleared: %q", cb.LastReloadError)
	}
	waitMetric(t, c, admin, "outrigger_config_last_reload_error", 0)
	serving("after")
}

// An empty file is refused by validate and by run, with the same words.
func TestValidateAndRunRefuseAnEmptyFile(t *testing.T) {
	path := writeConfig(t, "\n# nothing yet\n")
	for _, cmd := range []string{"validate", "run"} {
		code, _, stderr := runCmd(t, cmd, "-c", path)
		if code != 1 || !strings.Contains(stderr, path+": config is empty") {
			t.Fatalf("%s: exit %d, stderr:\n%s", cmd, code, stderr)
		}
	}
}
