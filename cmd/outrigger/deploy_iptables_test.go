package main

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// dryRun runs the transparent-mode script with --dry-run and env, and
// returns the rules it prints (standard output) and its exit error.
func dryRun(t *testing.T, env ...string) (string, error) {
	t.Helper()
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("sh", iptablesScript(t), "--dry-run")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		t.Logf("stderr: %s", stderr.String())
	}
	return stdout.String(), err
}

// A run without OUTRIGGER_UID is refused before it touches anything: it
// must not remove the rules a previous run installed.
func TestIptablesScriptWithoutUIDChangesNothing(t *testing.T) {
	out, err := dryRun(t, "OUTRIGGER_UID=")
	if err == nil {
		t.Fatalf("no uid accepted:\n%s", out)
	}
	if out != "" {
		t.Errorf("refused run still printed rule changes:\n%s", out)
	}
}

func TestIptablesScriptWithoutUIDKeepsTheRulesInANetworkNamespace(t *testing.T) {
	needNetNamespace(t)
	out, err := runScript(t, []string{"S=" + iptablesScript(t)}, "unshare", "-n", "sh", "-c",
		`OUTRIGGER_UID=1337 sh "$S" || exit 9; OUTRIGGER_UID= sh "$S" && exit 8; iptables -t nat -S`)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "-A PREROUTING -p tcp -j OUTRIGGER_INBOUND") || !strings.Contains(out, "-j REDIRECT --to-ports 15001") {
		t.Errorf("a refused run removed the redirect:\n%s", out)
	}
}

// OUTRIGGER_EXCLUDE_INBOUND_PORTS adds to the sidecar's own ports: naming
// an SSH port must not let the admin port (the kubelet's /ready probe) be
// redirected to the inbound listener and on to the app.
func TestIptablesScriptExcludedInboundPortsKeepTheSidecars(t *testing.T) {
	out, err := dryRun(t, "OUTRIGGER_UID=1337", "OUTRIGGER_EXCLUDE_INBOUND_PORTS=22", "OUTRIGGER_INBOUND_PORT=16006")
	if err != nil {
		t.Fatal(err)
	}
	redirect := strings.Index(out, "-A OUTRIGGER_INBOUND -p tcp -j OUTRIGGER_IN_REDIRECT")
	if redirect < 0 {
		t.Fatalf("no inbound redirect:\n%s", out)
	}
	for _, port := range []string{"22", "15000", "15001", "15002", "16006"} {
		rule := "-A OUTRIGGER_INBOUND -p tcp --dport " + port + " -j RETURN"
		if i := strings.Index(out, rule); i < 0 || i > redirect {
			t.Errorf("port %s is not exempted before the redirect:\n%s", port, out)
		}
		if n := strings.Count(out, rule); n > 1 {
			t.Errorf("port %s exempted %d times:\n%s", port, n, out)
		}
	}
}
