package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// The file named in a proxy's error is read again to find the line of its
// key, and may have been replaced since it was loaded. That read took all
// there was: a file swapped for a huge one, or a FIFO fed without end, was
// read into memory whole. It reads no more than the loader would.
func TestPrintConfigErrorReadsTheFileNoFurtherThanTheLoader(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outrigger.yaml")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	const feed = 3 * config.MaxFileBytes
	written := make(chan int, 1)
	go func() {
		n := 0
		defer func() { written <- n }()
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return
		}
		defer f.Close()
		m, err := f.Write([]byte("clusters:\n  a: {endpoints: [127.0.0.1:9]}\n"))
		n += m
		chunk := []byte(strings.Repeat("# padding\n", 1<<12))
		for err == nil && n < feed {
			m, err = f.Write(chunk) // fails once the reader closes its end
			n += m
		}
	}()

	var out bytes.Buffer
	printConfigError(&out, path, errors.New("clusters.a: tls: cannot read /ca.pem"))
	select {
	case n := <-written:
		if n >= config.MaxFileBytes+1<<20 {
			t.Errorf("%d bytes read from a stream without end; the loader reads at most %d", n, config.MaxFileBytes+1)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the writer is still writing")
	}
	// Too large to be the config: no line, the message as it is.
	if got, want := out.String(), path+": clusters.a: tls: cannot read /ca.pem\n"; got != want {
		t.Fatalf("printed %q, want %q", got, want)
	}
}

// Each problem is printed FILE:LINE: key.path: why. A problem that carries
// its key path but no line (the access log's, a config edited after Load)
// is placed by that path; before, only the text of a plain error was
// searched for a path, so these were printed without a line.
func TestPrintConfigErrorPlacesEachProblemByItsOwnPath(t *testing.T) {
	path := writeConfig(t, "clusters:\n  a:\n    endpoints: [127.0.0.1:9]\nlogging:\n  access_log:\n    enabled: true\n    path: /x/y.log\n")
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"path without a line", config.Errors{{Path: "logging.access_log.path", Msg: "cannot open the access log: no"}},
			path + ":7: logging.access_log.path: cannot open the access log: no\n"},
		{"path whose message starts like a path", config.Errors{{Path: "clusters.a", Msg: "logging.access_log: odd: but said"}},
			path + ":2: clusters.a: logging.access_log: odd: but said\n"},
		{"line given", config.Errors{{Source: path, Line: 3, Path: "clusters.a.endpoints", Msg: "kept"}, {Msg: "no path"}},
			path + ":3: clusters.a.endpoints: kept\n" + path + ": no path\n"},
		{"another file's problem", config.Errors{{Source: "other.yaml", Path: "clusters.a", Msg: "not placed in this file"}},
			"other.yaml: clusters.a: not placed in this file\n"},
		{"wrapped", fmt.Errorf("override: %w", config.Errors{{Path: "clusters.a.endpoints[0]", Msg: "bad"}}),
			path + ":3: clusters.a.endpoints[0]: bad\n"},
		{"the proxy's text", errors.New("clusters.a: tls: cannot read /ca.pem"),
			path + ":2: clusters.a: tls: cannot read /ca.pem\n"},
		{"text without a path", errors.New("read config: permission denied"),
			path + ": read config: permission denied\n"},
	} {
		var out bytes.Buffer
		printConfigError(&out, path, tc.err)
		if out.String() != tc.want {
			t.Errorf("%s: printed %q, want %q", tc.name, out.String(), tc.want)
		}
	}
}
