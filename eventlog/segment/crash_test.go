package segment

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// crashChildEnv, when set, names the log directory the re-executed test
// binary appends to until it is killed.
const crashChildEnv = "OUTRIGGER_SEGMENT_CRASH_CHILD"

// crashOptions are shared by the child and the parent's reopen.
func crashOptions() Options {
	return Options{SegmentBytes: 32 << 10, IndexIntervalBytes: 512, Flush: FlushSync}
}

// TestCrashChild is the child body of TestAcknowledgedAppendsSurviveSIGKILL.
// Each goroutine appends small batches and prints "<offset> <id>" for every
// record only after Append returned.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashChildEnv)
	if dir == "" {
		t.Skip("only runs as the crash test's child process")
	}
	round := os.Getenv(crashChildEnv + "_ROUND")
	l, err := Open(dir, crashOptions())
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(3)
	}
	var outMu sync.Mutex
	deadline := time.Now().Add(10 * time.Second) // bound if the parent dies
	var wg sync.WaitGroup
	for g := 0; g < 6; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var line strings.Builder
			for n := 0; time.Now().Before(deadline); n++ {
				size := 1 + n%5
				recs := make([]Record, size)
				for i := range recs {
					recs[i].Value = []byte(fmt.Sprintf("r%s-g%d-n%d-i%d", round, g, n, i))
				}
				base, err := l.Append(context.Background(), 1, recs)
				if err != nil {
					fmt.Fprintln(os.Stderr, "append:", err)
					os.Exit(4)
				}
				line.Reset()
				for i, r := range recs {
					fmt.Fprintf(&line, "%d %s\n", base+int64(i), r.Value)
				}
				outMu.Lock()
				os.Stdout.WriteString(line.String())
				outMu.Unlock()
			}
		}()
	}
	wg.Wait()
	os.Exit(5) // the parent should have killed us long before
}

func TestAcknowledgedAppendsSurviveSIGKILL(t *testing.T) {
	dir := t.TempDir()
	acked := map[int64]string{}
	for round := 0; round < 2; round++ {
		runCrashChild(t, dir, round, acked)
		l := mustOpen(t, dir, crashOptions())
		recs := readAll(t, l, 0)
		rep := l.Recovery()
		t.Logf("round %d: %d acknowledged, %d in log, recovery: %d segments, truncated %+v",
			round, len(acked), len(recs), rep.Segments, rep.Truncated)
		for i, r := range recs {
			if r.Offset != int64(i) {
				t.Fatalf("record %d has offset %d: gap or reorder", i, r.Offset)
			}
		}
		lastN := map[string]int{}
		for _, r := range recs {
			// Per producer goroutine, batches appear in the order sent.
			f := strings.Split(string(r.Value), "-")
			if len(f) != 4 {
				t.Fatalf("offset %d: unexpected payload %q", r.Offset, r.Value)
			}
			n, _ := strconv.Atoi(strings.TrimPrefix(f[2], "n"))
			key := f[0] + f[1]
			if prev, ok := lastN[key]; ok && n < prev {
				t.Fatalf("offset %d: %s batch %d after batch %d", r.Offset, key, n, prev)
			}
			lastN[key] = n
		}
		for off, id := range acked {
			if off >= int64(len(recs)) {
				t.Fatalf("acknowledged offset %d (%s) lost: log ends at %d", off, id, len(recs))
			}
			if got := string(recs[off].Value); got != id {
				t.Fatalf("offset %d holds %q, acknowledged as %q", off, got, id)
			}
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if len(acked) < 100 {
		t.Fatalf("only %d acknowledged records: the test did not exercise anything", len(acked))
	}
}

// runCrashChild starts the child, lets it append until it has acknowledged
// enough records (or a time bound passes), SIGKILLs it and collects every
// acknowledged record it printed.
func runCrashChild(t *testing.T, dir string, round int, acked map[int64]string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir, fmt.Sprintf("%s_ROUND=%d", crashChildEnv, round))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := make(chan struct{})
	var once sync.Once
	kill := func() {
		once.Do(func() {
			cmd.Process.Signal(syscall.SIGKILL)
			close(killed)
		})
	}
	timer := time.AfterFunc(3*time.Second, kill)
	defer timer.Stop()
	sc := bufio.NewScanner(out)
	n := 0
	for sc.Scan() {
		line := sc.Text()
		var off int64
		var id string
		if _, err := fmt.Sscanf(line, "%d %s", &off, &id); err != nil {
			// Only the last, partially written line can be cut by the kill.
			continue
		}
		if prev, dup := acked[off]; dup {
			t.Errorf("offset %d acknowledged twice: %q and %q", off, prev, id)
		}
		acked[off] = id
		if n++; n == 4000 {
			kill()
		}
	}
	kill()
	<-killed
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		t.Fatalf("child was not killed by the signal: %v, stderr: %s", err, stderr.String())
	}
}
