package main

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// The transparent-mode script in deploy/ is tested here, next to the binary
// it serves: its rule set (dry run, anywhere) and, where this runs as root
// with iptables and unshare, for real in a fresh network namespace.

func iptablesScript(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs("../../deploy/outrigger-iptables.sh")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// needNetNamespace skips the test unless it can run iptables in a new
// network namespace: as root, with iptables and unshare.
func needNetNamespace(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	for _, tool := range []string{"iptables", "unshare"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s", tool)
		}
	}
	if err := exec.Command("unshare", "-n", "true").Run(); err != nil {
		t.Skipf("cannot create a network namespace: %v", err)
	}
}

func runScript(t *testing.T, env []string, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestIptablesScriptRuleSet(t *testing.T) {
	script := iptablesScript(t)
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	out, err := runScript(t, []string{"OUTRIGGER_UID=1337", "OUTRIGGER_APP_PORTS=8080,9090"}, "sh", script, "--dry-run")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{
		"-A OUTRIGGER_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006",
		"-A OUTRIGGER_REDIRECT -p tcp -j REDIRECT --to-ports 15001",
		"-A OUTRIGGER_INBOUND -p tcp --dport 15006 -j RETURN",
		"-A OUTRIGGER_INBOUND -p tcp --dport 8080 -j OUTRIGGER_IN_REDIRECT",
		"-A OUTRIGGER_INBOUND -p tcp --dport 9090 -j OUTRIGGER_IN_REDIRECT",
		"-A OUTRIGGER_OUTPUT -m owner --uid-owner 1337 -j RETURN",
		"-A OUTRIGGER_OUTPUT -d 127.0.0.1/32 -j RETURN",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run lacks %q:\n%s", want, out)
		}
	}
	// The sidecar's own connections must be exempted before the redirect.
	if strings.Index(out, "--uid-owner 1337 -j RETURN") > strings.Index(out, "-A OUTRIGGER_OUTPUT -j OUTRIGGER_REDIRECT") {
		t.Errorf("the uid exemption comes after the redirect:\n%s", out)
	}
	if out, err := runScript(t, []string{"OUTRIGGER_UID="}, "sh", script, "--dry-run"); err == nil || !strings.Contains(out, "OUTRIGGER_UID") {
		t.Errorf("no uid: err %v, %q", err, out)
	}
}

func TestIptablesScriptInANetworkNamespace(t *testing.T) {
	needNetNamespace(t)
	script := iptablesScript(t)
	// Apply twice (idempotence), list, clean, list again: all inside one
	// new, empty network namespace that disappears with the shell.
	out, err := runScript(t, []string{"OUTRIGGER_UID=1337", "S=" + script}, "unshare", "-n", "sh", "-c",
		`set -e; sh "$S"; sh "$S"; iptables -t nat -S; echo ---; sh "$S" --clean; iptables -t nat -S`)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	applied, cleaned, _ := strings.Cut(out, "---")
	if n := strings.Count(applied, "-A PREROUTING -p tcp -j OUTRIGGER_INBOUND"); n != 1 {
		t.Errorf("PREROUTING jump present %d times after two runs, want 1:\n%s", n, applied)
	}
	if !strings.Contains(applied, "--uid-owner 1337 -j RETURN") || !strings.Contains(applied, "--to-ports 15001") {
		t.Errorf("rules missing:\n%s", applied)
	}
	if strings.Contains(cleaned, "OUTRIGGER") {
		t.Errorf("--clean left rules:\n%s", cleaned)
	}
}

// TestKubernetesManifestIsConsistent validates the ConfigMap's sidecar
// configuration with `outrigger validate` and checks that the uid the
// redirect exempts is the uid the sidecar runs as (else its own upstream
// connections would loop back into it); that the pod's grace period
// covers the sidecar's shutdown delay and drain timeout and the margin
// docs/operations.md asks for (else the kubelet kills it mid-drain), and
// the app's preStop sleep ends within the delay (else the app's calls
// out while it stops meet a draining sidecar); and that the liveness
// probe is /live, the readiness probe /ready (a liveness probe on
// /ready, which fails from SIGTERM on, restarts a stopping sidecar); and
// that the sidecar is the first container, holding the app's start with
// a postStart `outrigger wait` until it is ready.
func TestKubernetesManifestIsConsistent(t *testing.T) {
	f, err := os.Open("../../deploy/kubernetes/catalog.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type probe struct {
		HTTPGet struct{ Path string } `yaml:"httpGet"`
	}
	type container struct {
		Name            string
		Env             []struct{ Name, Value string }
		SecurityContext struct {
			RunAsUser *int64 `yaml:"runAsUser"`
		} `yaml:"securityContext"`
		Lifecycle struct {
			PreStop struct {
				Sleep struct{ Seconds int64 }
			} `yaml:"preStop"`
			PostStart struct {
				Exec struct{ Command []string }
			} `yaml:"postStart"`
		}
		ReadinessProbe probe `yaml:"readinessProbe"`
		LivenessProbe  probe `yaml:"livenessProbe"`
	}
	var (
		sidecarConfig string
		exemptUID     string
		sidecarUID    int64 = -1
		grace         int64 = -1
		sidecar, app  container
		first         string
	)
	dec := yaml.NewDecoder(f)
	for {
		var doc struct {
			Kind string
			Data map[string]string
			Spec struct {
				TerminationGracePeriodSeconds *int64      `yaml:"terminationGracePeriodSeconds"`
				InitContainers                []container `yaml:"initContainers"`
				Containers                    []container
			}
		}
		if err := dec.Decode(&doc); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatal(err)
		}
		switch doc.Kind {
		case "ConfigMap":
			sidecarConfig = doc.Data["outrigger.yaml"]
		case "Pod":
			for _, c := range doc.Spec.InitContainers {
				for _, e := range c.Env {
					if e.Name == "OUTRIGGER_UID" {
						exemptUID = e.Value
					}
				}
			}
			if g := doc.Spec.TerminationGracePeriodSeconds; g != nil {
				grace = *g
			}
			if len(doc.Spec.Containers) > 0 {
				first = doc.Spec.Containers[0].Name
			}
			for _, c := range doc.Spec.Containers {
				switch c.Name {
				case "outrigger":
					sidecar = c
					if c.SecurityContext.RunAsUser != nil {
						sidecarUID = *c.SecurityContext.RunAsUser
					}
				case "app":
					app = c
				}
			}
		}
	}
	if exemptUID == "" || exemptUID != strconv.FormatInt(sidecarUID, 10) {
		t.Errorf("init container exempts uid %q, sidecar runs as %d", exemptUID, sidecarUID)
	}
	if sidecarConfig == "" {
		t.Fatal("no outrigger.yaml in the ConfigMap")
	}
	if code, out, stderr := runCmd(t, "validate", "-c", writeConfig(t, sidecarConfig)); code != 0 || out != "ok\n" {
		t.Fatalf("the ConfigMap's config does not validate (exit %d):\n%s", code, stderr)
	}
	cfg, err := config.Parse([]byte(sidecarConfig), "catalog.yaml")
	if err != nil {
		t.Fatal(err)
	}
	l := cfg.WithDefaults().Listeners
	const margin = 5 * time.Second
	if stop := l.ShutdownDelay + l.DrainTimeout + margin; time.Duration(grace)*time.Second < stop {
		t.Errorf("terminationGracePeriodSeconds is %d, want at least shutdown_delay %v + drain_timeout %v + %v", grace, l.ShutdownDelay, l.DrainTimeout, margin)
	}
	if s := time.Duration(app.Lifecycle.PreStop.Sleep.Seconds) * time.Second; s >= l.ShutdownDelay && s > 0 {
		t.Errorf("the app's preStop sleep (%v) does not end within the sidecar's shutdown_delay (%v)", s, l.ShutdownDelay)
	}
	if cmd := sidecar.Lifecycle.PostStart.Exec.Command; first != "outrigger" || len(cmd) < 2 || cmd[1] != "wait" {
		t.Errorf("the first container is %q, the sidecar's postStart hook %q: want the sidecar first, its hook outrigger wait (the app starts once it is ready)", first, cmd)
	}
	if r, lv := sidecar.ReadinessProbe.HTTPGet.Path, sidecar.LivenessProbe.HTTPGet.Path; r != "/ready" || lv != "/live" {
		t.Errorf("the sidecar's probes: readiness %q, liveness %q; want /ready and /live", r, lv)
	}
}
