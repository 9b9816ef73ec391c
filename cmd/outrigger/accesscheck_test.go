package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// An access log that cannot be opened stops `run` at start; validate
// said "ok" for it, and a reload applied the rest of the config, counted
// itself a success and only logged that the access log stayed as it was.
// Now validate names the key, and the reload is rejected whole.
func TestValidateRefusesAnAccessLogThatCannotBeOpened(t *testing.T) {
	path := writeConfig(t, "logging:\n  access_log: {enabled: true, path: /nonexistent/dir/access.log}\n")
	code, out, stderr := runCmd(t, "validate", "-c", path)
	if code != 1 || out != "" || !strings.Contains(stderr, path+":2: logging.access_log.path: cannot open the access log: ") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	// A path that can be created is fine, and validate does not create it.
	logPath := filepath.Join(t.TempDir(), "access.log")
	path = writeConfig(t, "logging:\n  access_log: {enabled: true, path: "+logPath+"}\n")
	if code, out, stderr := runCmd(t, "validate", "-c", path); code != 0 || out != "ok\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	if _, err := os.Stat(logPath); !os.IsNotExist(err) {
		t.Fatalf("validate created the access log (stat: %v)", err)
	}
}

func TestReloadRejectsAnAccessLogThatCannotBeOpened(t *testing.T) {
	s, _ := newReloadSidecar(t, "1s")
	writeAtomic(t, s.opts.configPath, reloadTestConfig("2s")+"logging:\n  access_log: {enabled: true, path: /nonexistent/dir/access.log}\n")
	s.reloadFile("signal")
	cur, gen := s.state.current()
	if gen != 1 || cur.Clusters["a"].ConnectTimeout.String() != "1s" {
		t.Fatalf("generation %d, connect_timeout %v: the reload applied", gen, cur.Clusters["a"].ConnectTimeout)
	}
	if st := s.state.status(); !strings.Contains(st.LastReloadError, "logging.access_log.path: cannot open the access log") {
		t.Fatalf("last reload error %q", st.LastReloadError)
	}
}

// A directory the sidecar may not write to is refused for a new access
// log file (access(2) with W_OK). Root may write anywhere, so this runs
// only as another user.
func TestAccessLogInAnUnwritableDirectoryIsRefused(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root may write to any directory")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o755) })
	err := checkAccessLog(config.AccessLog{Enabled: true, Path: filepath.Join(dir, "access.log")})
	if err == nil || !strings.Contains(err.Error(), "logging.access_log.path: cannot open the access log: "+dir+": directory not writable") {
		t.Fatalf("err = %v", err)
	}
	if err := checkAccessLog(config.AccessLog{Enabled: true, Path: filepath.Join(t.TempDir(), "access.log")}); err != nil {
		t.Fatalf("a writable directory: %v", err)
	}
}
