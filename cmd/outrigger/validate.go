package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/outrigger-mesh/outrigger/proxy"
	"github.com/outrigger-mesh/outrigger/proxy/config"
)

func cmdValidate(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("validate", "outrigger validate -c FILE", stderr)
	path := configFlag(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := requireConfig(fs, *path); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		printConfigError(stderr, *path, err)
		return silentError{err}
	}
	// What run would also refuse: the proxy compiles the routes and clusters
	// (reading TLS files, for one) without serving anything.
	if problems := buildProblems(cfg, proxy.New(proxy.Options{NoHealthChecks: true}).Apply); len(problems) > 0 {
		for _, err := range problems {
			printConfigError(stderr, *path, err)
		}
		return silentError{errors.Join(problems...)}
	}
	fmt.Fprintln(stdout, "ok")
	return nil
}

// buildProblems lists every problem of a loaded cfg that the start
// refuses: apply's (the proxy's build of the routes and clusters) and the
// access log's, whichever are found; nil when there is none. apply's
// success applies cfg.
func buildProblems(cfg *config.Config, apply func(*config.Config) error) []error {
	var problems []error
	if err := apply(cfg); err != nil {
		// The proxy joins the problems it finds building the listeners
		// and clusters: each is listed on its own line.
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			problems = append(problems, j.Unwrap()...)
		} else {
			problems = append(problems, err)
		}
	}
	if err := checkAccessLog(cfg.Logging.AccessLog); err != nil {
		problems = append(problems, err)
	}
	return problems
}

// printConfigError writes every problem in err on a line of its own,
// "FILE:LINE: key.path: why". A problem that names its key path but not
// its line (found after Load: the proxy's, the access log's) is given the
// line of that key, as Load's own problems have it. An error that is not
// a list of field errors is one line, prefixed with the file (and the
// line of the key path its text starts with, if any).
func printConfigError(w io.Writer, path string, err error) {
	var es config.Errors
	if errors.As(err, &es) {
		for _, e := range es {
			fe := *e
			if fe.Source == "" {
				fe.Source = path
			}
			if fe.Line == 0 && fe.Path != "" && fe.Source == path {
				fe.Line = config.LineOfFile(path, fe.Path)
			}
			fmt.Fprintln(w, fe.Error())
		}
		return
	}
	// The proxy's errors are text that starts with the key path
	// ("clusters.a: tls: ...").
	msg := err.Error()
	if key, _, ok := strings.Cut(msg, ": "); ok && key != "" && !strings.ContainsAny(key, " \t\n") {
		if line := config.LineOfFile(path, key); line > 0 {
			fmt.Fprintf(w, "%s:%d: %s\n", path, line, msg)
			return
		}
	}
	fmt.Fprintf(w, "%s: %v\n", path, err)
}
