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

	"go.yaml.in/yaml/v3"
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
// connections would loop back into it).
func TestKubernetesManifestIsConsistent(t *testing.T) {
	f, err := os.Open("../../deploy/kubernetes/catalog.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type container struct {
		Name            string
		Env             []struct{ Name, Value string }
		SecurityContext struct {
			RunAsUser *int64 `yaml:"runAsUser"`
		} `yaml:"securityContext"`
	}
	var (
		sidecarConfig string
		exemptUID     string
		sidecarUID    int64 = -1
	)
	dec := yaml.NewDecoder(f)
	for {
		var doc struct {
			Kind string
			Data map[string]string
			Spec struct {
				InitContainers []container `yaml:"initContainers"`
				Containers     []container
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
			for _, c := range doc.Spec.Containers {
				if c.Name == "outrigger" && c.SecurityContext.RunAsUser != nil {
					sidecarUID = *c.SecurityContext.RunAsUser
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
}
