package main

import (
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// unsetenv removes key for the test and restores it after.
func unsetenv(t *testing.T, key string) {
	t.Helper()
	t.Setenv(key, "") // restores the old value at the end
	os.Unsetenv(key)
}

func TestTuneMemoryLimit(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })
	unsetenv(t, "GOMEMLIMIT")
	unsetenv(t, "AUTOMEMLIMIT")
	const container = 512 << 20

	// A container limit: 90 % of it becomes the runtime's soft limit.
	got, err := tuneMemoryLimit(memlimit.Limit(container))
	ratio := memLimitRatio
	want := int64(float64(container) * ratio)
	if err != nil || got != want {
		t.Fatalf("with a 512 MiB limit: %d %v, want %d", got, err, want)
	}
	if l := debug.SetMemoryLimit(-1); l != want {
		t.Fatalf("runtime's memory limit is %d, want %d", l, want)
	}

	// No limit (outside a container, memory.max "max"): none set, no error.
	got, err = tuneMemoryLimit(func() (uint64, error) { return 0, memlimit.ErrNoLimit })
	if err != nil || got != math.MaxInt64 || debug.SetMemoryLimit(-1) != math.MaxInt64 {
		t.Fatalf("without a limit: %d %v", got, err)
	}

	// A limit that cannot be read: the error, and the limit left alone.
	debug.SetMemoryLimit(1 << 40)
	// A system without cgroups (not Linux): nothing to read, no error,
	// the limit left alone.
	if got, err := tuneMemoryLimit(func() (uint64, error) { return 0, memlimit.ErrCgroupsNotSupported }); err != nil || got != 1<<40 {
		t.Fatalf("no cgroups: limit %d, error %v; want it left alone and no error", got, err)
	}
	got, err = tuneMemoryLimit(func() (uint64, error) { return 0, errors.New("cgroup unreadable") })
	if err == nil || !strings.Contains(err.Error(), "cgroup unreadable") || got != 1<<40 {
		t.Fatalf("with an unreadable limit: %d %v", got, err)
	}

	// The operator's GOMEMLIMIT stands.
	t.Setenv("GOMEMLIMIT", "300MiB")
	debug.SetMemoryLimit(300 << 20)
	got, err = tuneMemoryLimit(memlimit.Limit(container))
	if err != nil || got != 300<<20 || debug.SetMemoryLimit(-1) != 300<<20 {
		t.Fatalf("with GOMEMLIMIT set: %d %v", got, err)
	}
	unsetenv(t, "GOMEMLIMIT")

	// AUTOMEMLIMIT: off, or another ratio.
	debug.SetMemoryLimit(math.MaxInt64)
	t.Setenv("AUTOMEMLIMIT", "off")
	if got, err := tuneMemoryLimit(memlimit.Limit(container)); err != nil || got != math.MaxInt64 {
		t.Fatalf("with AUTOMEMLIMIT=off: %d %v", got, err)
	}
	t.Setenv("AUTOMEMLIMIT", "0.5")
	if got, err := tuneMemoryLimit(memlimit.Limit(container)); err != nil || got != container/2 {
		t.Fatalf("with AUTOMEMLIMIT=0.5: %d %v, want %d", got, err, container/2)
	}
	t.Setenv("AUTOMEMLIMIT", "2")
	if _, err := tuneMemoryLimit(memlimit.Limit(container)); err == nil {
		t.Fatal("AUTOMEMLIMIT=2 accepted")
	}
}

// The start line says what the collector's target and the memory limit
// are: here the operator's GOMEMLIMIT, inherited by the process.
func TestServingLineReportsGCSettings(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "200MiB")
	unsetenv(t, "GOGC")
	up := newUpstream(t, "a")
	p := start(t, "run", "-c", writeConfig(t, sidecarConfig(up.addr(), up.addr(), "")))
	waitFor(t, 10*time.Second, "the serving line", func() bool { return strings.Contains(p.stderr.String(), `"msg":"outrigger serving"`) })
	for _, f := range []string{`"gogc":400`, `"memory_limit_bytes":209715200`} {
		if !strings.Contains(p.stderr.String(), f) {
			t.Fatalf("the serving line lacks %s:\n%s", f, p.stderr.String())
		}
	}
}

// memoryCgroup makes a memory cgroup limited to limit bytes for the test
// and returns its cgroup.procs file, or skips the test where cgroups
// cannot be made (not root, no memory controller, none delegated).
func memoryCgroup(t *testing.T, limit int64) string {
	t.Helper()
	name := fmt.Sprintf("outrigger-test-%d", os.Getpid())
	var dir, limitFile string
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		dir, limitFile = filepath.Join("/sys/fs/cgroup", name), "memory.max" // v2
	} else {
		dir, limitFile = filepath.Join("/sys/fs/cgroup/memory", name), "memory.limit_in_bytes" // v1
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Skipf("cannot make a cgroup here: %v", err)
	}
	t.Cleanup(func() {
		// Empty once the process in it has exited; rmdir is how a cgroup
		// is removed.
		deadline := time.Now().Add(10 * time.Second)
		for os.Remove(dir) != nil && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	})
	if err := os.WriteFile(filepath.Join(dir, limitFile), []byte(strconv.FormatInt(limit, 10)), 0o644); err != nil {
		t.Skipf("cannot limit the cgroup's memory: %v", err)
	}
	return filepath.Join(dir, "cgroup.procs")
}

// In a real cgroup with a 512 MiB memory limit, the process sets 90 % of
// it as its soft memory limit and says so.
func TestMemoryLimitFromTheCgroup(t *testing.T) {
	procs := memoryCgroup(t, 512<<20)
	unsetenv(t, "GOMEMLIMIT")
	unsetenv(t, "AUTOMEMLIMIT")
	up := newUpstream(t, "a")
	cfg := writeConfig(t, sidecarConfig(up.addr(), up.addr(), ""))
	// The shell joins the cgroup, then becomes outrigger.
	cmd := exec.Command("sh", "-c", `echo $$ > "$1" && exec "$2" run -c "$3" --log-level info`, "sh", procs, binPath, cfg)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}()
	waitFor(t, 15*time.Second, "the serving line", func() bool { return strings.Contains(stderr.String(), `"msg":"outrigger serving"`) },
		func() bool {
			select {
			case err := <-done:
				t.Fatalf("outrigger exited: %v\n%s", err, stderr.String())
			default:
			}
			return false
		})
	ratio := memLimitRatio
	want := fmt.Sprintf(`"memory_limit_bytes":%d`, int64(float64(512<<20)*ratio))
	if !strings.Contains(stderr.String(), want) {
		t.Fatalf("the serving line lacks %s:\n%s", want, stderr.String())
	}
}

// A bad AUTOMEMLIMIT does not stop the sidecar: it serves, without a
// memory limit, and the warning says why.
func TestBadAutoMemLimitIsAWarning(t *testing.T) {
	unsetenv(t, "GOMEMLIMIT")
	t.Setenv("AUTOMEMLIMIT", "lots")
	up := newUpstream(t, "a")
	p := start(t, "run", "-c", writeConfig(t, sidecarConfig(up.addr(), up.addr(), "")))
	waitFor(t, 10*time.Second, "the serving line", func() bool { return strings.Contains(p.stderr.String(), `"msg":"outrigger serving"`) })
	s := p.stderr.String()
	if !strings.Contains(s, `"msg":"memory limit not set"`) || !strings.Contains(s, "AUTOMEMLIMIT") {
		t.Fatalf("no warning naming AUTOMEMLIMIT:\n%s", s)
	}
	if code, body, _ := get(t, newClient(t), "http://"+p.addrs.Outbound+"/x", "svc"); code != 200 || body != "a /x" {
		t.Fatalf("with a bad AUTOMEMLIMIT: %d %q", code, body)
	}
}
