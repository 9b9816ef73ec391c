package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

func cmdRun(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("run", "outrigger run -c FILE [flags]", stderr)
	path := configFlag(fs)
	level := fs.String("log-level", "", "override logging.level: debug, info, warn or error")
	format := fs.String("log-format", "", "override logging.format: json or console")
	addrFile := fs.String("addr-file", "", "once listening, write the bound addresses (admin, outbound, inbound, app_api, pid) as JSON to `PATH`")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := requireConfig(fs, *path); err != nil {
		return err
	}
	if err := checkLogFlags(stderr, *level, *format); err != nil {
		return err
	}
	return runWithSignals(sidecarOptions{
		configPath: *path,
		logLevel:   *level,
		logFormat:  *format,
		addrFile:   *addrFile,
		stdout:     stdout,
		stderr:     stderr,
	}, "")
}

// runWithSignals runs the sidecar until SIGTERM or SIGINT, reloading on
// SIGHUP. The first SIGTERM/SIGINT starts the stop: the shutdown delay
// (listeners.shutdown_delay), then the drain. A second one during the
// delay ends the delay; one during the drain ends the process at once, by
// that signal, once it has removed what a finished stop removes: the
// address file and tempDir (demo's directory; "" for none).
func runWithSignals(o sidecarOptions, tempDir string) error {
	if o.addrFile != "" {
		// Whoever passed --addr-file waits for the file: a directory it
		// cannot be written to is refused before anything starts, not
		// logged while serving and waited for in vain.
		if err := checkAddrFile(o.addrFile); err != nil {
			return err // demo removes tempDir as it returns
		}
	}
	o.gcPercent = tuneGC(os.Getenv)
	o.memLimit, o.memLimitErr = tuneMemoryLimit(memlimit.FromCgroup)
	// One channel gets every SIGTERM and SIGINT: the first is read here
	// and cancels ctx; runSidecar reads the ones after it (o.again), and
	// only once ctx is cancelled, so each signal has one reader.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	var first sync.WaitGroup
	defer func() { close(done); first.Wait() }()
	first.Go(func() {
		select {
		case <-sigs:
			cancel()
		case <-done:
		}
	})
	o.again = sigs
	o.abort = func(sig os.Signal) {
		if o.addrFile != "" {
			os.Remove(o.addrFile)
		}
		if tempDir != "" {
			os.RemoveAll(tempDir)
		}
		signal.Reset(syscall.SIGTERM, syscall.SIGINT)
		syscall.Kill(os.Getpid(), sig.(syscall.Signal))
		time.Sleep(time.Second)
		os.Exit(exitFailure) // not reached: the signal's default action ends the process
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	o.reload = hup
	return runSidecar(ctx, o)
}

// defaultGCPercent is the garbage collector's target when GOGC is not set.
// A sidecar's live heap is small (a few MB) and its allocation rate is
// proportional to traffic, so Go's default of 100 collects dozens of
// times a second under load; 400 lets the heap grow to five times the live
// data between collections, which costs a few MB of memory and saves 10–15 %
// of CPU per request on the HTTP/1.1 benchmark.
const defaultGCPercent = 400

// tuneGC sets the collector's target to defaultGCPercent unless the
// operator chose one with GOGC. It returns the percent in effect.
func tuneGC(getenv func(string) string) int {
	if v := getenv("GOGC"); v != "" {
		// The runtime has already applied it; read it back.
		p := debug.SetGCPercent(100)
		debug.SetGCPercent(p)
		return p
	}
	debug.SetGCPercent(defaultGCPercent)
	return defaultGCPercent
}

// memLimitRatio is the share of the container's memory limit given to the
// Go runtime as its soft limit: the rest is the process's memory outside
// the Go heap's accounting (thread stacks, the binary, kernel buffers
// charged to the container) and headroom.
const memLimitRatio = 0.9

// tuneMemoryLimit sets the runtime's soft memory limit (what GOMEMLIMIT
// sets) to memLimitRatio of the limit provider reports, the container's
// memory limit for memlimit.FromCgroup (cgroup v2 memory.max, or v1
// memory.limit_in_bytes). Near that limit the collector then runs as
// often as it must to stay under it, whatever GOGC says, instead of the
// process being killed for running out of memory. The operator's
// GOMEMLIMIT stands when set; AUTOMEMLIMIT=off turns this off and
// AUTOMEMLIMIT=R (0 < R <= 1) takes another ratio. It returns the limit in
// effect (math.MaxInt64: none), and why it could not be read, if so; no
// limit (outside a container, memory.max "max", or a system without
// cgroups) is not an error.
func tuneMemoryLimit(provider memlimit.Provider) (int64, error) {
	limit, err := memlimit.Set(memlimit.WithProvider(provider), memlimit.WithRatio(memLimitRatio))
	if errors.Is(err, memlimit.ErrCgroupsNotSupported) {
		err = nil // not Linux: nothing to read, as outside a container
	}
	return limit, err
}

// checkLogFlags rejects bad --log-level and --log-format values before
// anything starts.
func checkLogFlags(stderr io.Writer, level, format string) error {
	if _, err := parseLevel(level); err != nil {
		fmt.Fprintf(stderr, "outrigger: --log-level: %v\n", err)
		return errUsage
	}
	switch format {
	case "", "json", "console":
	default:
		fmt.Fprintf(stderr, "outrigger: --log-format must be json or console, got %q\n", format)
		return errUsage
	}
	return nil
}

// checkAddrFile makes sure the address file can be written where asked:
// writeAddrFile writes a temporary file beside it and renames it.
func checkAddrFile(path string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".outrigger-addrs-*")
	if err != nil {
		return fmt.Errorf("--addr-file %s: %w", path, err)
	}
	tmp.Close()
	return os.Remove(tmp.Name())
}
