// Command outrigger is the Outrigger sidecar: `outrigger run -c FILE` starts
// it, `outrigger validate -c FILE` checks a configuration, `outrigger demo`
// runs it in front of the example app, `outrigger version` says what it is.
//
// The wiring of the sidecar (and the order in which it shuts down) is in
// sidecar.go.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
)

// Set at build time: go build -ldflags "-X main.version=v1.2.3 -X main.commit=abc123".
var (
	version = "dev"
	commit  = ""
)

const usage = `outrigger: a sidecar proxy for resilient service-to-service traffic.

Usage:
  outrigger run -c FILE [--log-level L] [--log-format F] [--addr-file PATH]
  outrigger validate -c FILE
  outrigger demo [--ephemeral-ports] [--addr-file PATH] [--log-level L] [--log-format F]
  outrigger wait [--admin HOST:PORT] [--timeout D]
  outrigger version

Commands:
  run        start the sidecar with the configuration in FILE (reloaded on
             change and on SIGHUP; SIGTERM or SIGINT drains and exits 0)
  validate   check FILE; print "ok" and exit 0, or print every problem as
             "FILE:LINE: key.path: why" and exit 1
  demo       start the example catalog app and a sidecar in front of it on
             loopback, and print where to send requests
  wait       wait until the sidecar's /ready answers 200 (exit 0), or
             exit 1 after the timeout (1m); for an app's start to wait on
  version    print version, commit and Go version

Run "outrigger COMMAND -h" for a command's flags.
`

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // the command ran and failed: invalid config, a listener could not bind
	exitUsage   = 2 // bad command line
)

// errUsage marks command-line mistakes; the message has been printed.
var errUsage = errors.New("usage")

func main() {
	os.Exit(runMain(os.Args[1:], os.Stdout, os.Stderr))
}

func runMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "run":
		err = cmdRun(rest, stdout, stderr)
	case "validate":
		err = cmdValidate(rest, stdout, stderr)
	case "demo":
		err = cmdDemo(rest, stdout, stderr)
	case "wait":
		err = cmdWait(rest, stdout, stderr)
	case "version", "--version", "-version":
		err = cmdVersion(rest, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "outrigger: unknown command %q\n\n%s", cmd, usage)
		return exitUsage
	}
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, errUsage):
		return exitUsage
	default:
		var silent silentError
		if !errors.As(err, &silent) {
			fmt.Fprintf(stderr, "outrigger: %v\n", err)
		}
		return exitFailure
	}
}

// silentError is a failure whose explanation has already been printed.
type silentError struct{ error }

func cmdVersion(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", "outrigger version", stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "outrigger %s\ncommit %s\n%s %s/%s\n", version, buildCommit(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}

// buildCommit is main.commit when set by -ldflags, else the VCS revision Go
// recorded (absent with -buildvcs=false), else "unknown".
func buildCommit() string {
	if commit != "" {
		return commit
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return "unknown"
}

// newFlagSet returns a FlagSet that prints its own usage and returns errors
// instead of exiting.
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s\n", synopsis)
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags { // version has none
			fmt.Fprintf(stderr, "\nFlags (one or two dashes):\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parse parses args and rejects positional arguments.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "outrigger %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		fs.Usage()
		return errUsage
	}
	return nil
}

// configFlag registers -c and --config for one string.
func configFlag(fs *flag.FlagSet) *string {
	p := new(string)
	fs.StringVar(p, "c", "", "configuration `FILE` (YAML); required")
	fs.StringVar(p, "config", "", "same as -c")
	return p
}

func requireConfig(fs *flag.FlagSet, path string) error {
	if path == "" {
		fmt.Fprintf(fs.Output(), "outrigger %s: -c FILE is required\n", fs.Name())
		fs.Usage()
		return errUsage
	}
	return nil
}
