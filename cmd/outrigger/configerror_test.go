package main

import (
	"bytes"
	"errors"
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
