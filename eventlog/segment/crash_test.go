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
	opts := crashOptions()
	maintain := os.Getenv(crashChildEnv+"_MAINTAIN") != ""
	if maintain {
		opts = maintainOptions()
	}
	l, err := Open(dir, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(3)
	}
	var outMu sync.Mutex
	deadline := time.Now().Add(10 * time.Second) // bound if the parent dies
	var wg sync.WaitGroup
	if maintain {
		// Compaction and retention run all the time, so that the kill
		// lands in the middle of rewrites, renames and deletions.
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				if _, err := l.Compact(time.Now()); err != nil {
					fmt.Fprintln(os.Stderr, "compact:", err)
					os.Exit(6)
				}
				if _, err := l.EnforceRetention(time.Now()); err != nil {
					fmt.Fprintln(os.Stderr, "retention:", err)
					os.Exit(7)
				}
			}
		}()
	}
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
					if maintain {
						recs[i].Key = []byte(fmt.Sprintf("k%d", (n*7+i+g)%40))
					}
				}
				base, err := l.Append(context.Background(), 1, recs)
				if err != nil {
					fmt.Fprintln(os.Stderr, "append:", err)
					os.Exit(4)
				}
				line.Reset()
				for i, r := range recs {
					fmt.Fprintf(&line, "%d %s %s\n", base+int64(i), r.Value, r.Key)
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
	acked := map[int64]ack{}
	for round := 0; round < 2; round++ {
		runCrashChild(t, dir, round, false, acked)
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
		for off, a := range acked {
			if off >= int64(len(recs)) {
				t.Fatalf("acknowledged offset %d (%s) lost: log ends at %d", off, a.id, len(recs))
			}
			if got := string(recs[off].Value); got != a.id {
				t.Fatalf("offset %d holds %q, acknowledged as %q", off, got, a.id)
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

// ack is one record the child reported as acknowledged.
type ack struct{ id, key string }

// runCrashChild starts the child, lets it append until it has acknowledged
// enough records (or a time bound passes), SIGKILLs it and collects every
// acknowledged record it printed.
func runCrashChild(t *testing.T, dir string, round int, maintain bool, acked map[int64]ack) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir, fmt.Sprintf("%s_ROUND=%d", crashChildEnv, round))
	if maintain {
		cmd.Env = append(cmd.Env, crashChildEnv+"_MAINTAIN=1")
	}
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
	// Kill after a varying number of acknowledgements so that the kill
	// lands at different points of the write path in different runs.
	killAt := 1500 + int(time.Now().UnixNano()%2500)
	br := bufio.NewReader(out)
	n := 0
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			break // EOF; an unterminated fragment was cut by the kill
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			t.Fatalf("bad line from child: %q", line)
		}
		off, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			t.Fatalf("bad line from child: %q", line)
		}
		a := ack{id: f[1]}
		if len(f) > 2 {
			a.key = f[2]
		}
		if prev, dup := acked[off]; dup {
			t.Errorf("offset %d acknowledged twice: %q and %q", off, prev.id, a.id)
		}
		acked[off] = a
		if n++; n == killAt {
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

// maintainOptions: tiny segments, compaction and a size limit, so that
// compaction, retention and rolls run all the time.
func maintainOptions() Options {
	return Options{SegmentBytes: 4 << 10, IndexIntervalBytes: 256, Flush: FlushSync, Compact: true, RetentionBytes: 5 << 10}
}

func TestCrashDuringCompactionAndRetentionLosesNothingAcknowledged(t *testing.T) {
	dir := t.TempDir()
	acked := map[int64]ack{}
	for round := 0; round < 2; round++ {
		runCrashChild(t, dir, round, true, acked)
		l := mustOpen(t, dir, maintainOptions())
		start := l.StartOffset()
		recs := readAll(t, l, start)
		t.Logf("round %d: %d acknowledged, log [%d, %d) holds %d records, recovery %+v",
			round, len(acked), start, l.EndOffset(), len(recs), l.Recovery())
		byOffset := map[int64]Record{}
		latest := map[string]int64{}
		prev := int64(-1)
		for _, r := range recs {
			if r.Offset <= prev {
				t.Fatalf("offset %d after %d", r.Offset, prev)
			}
			prev = r.Offset
			byOffset[r.Offset] = r
			latest[string(r.Key)] = r.Offset
		}
		for off, a := range acked {
			if off < start {
				continue // removed by retention
			}
			if r, ok := byOffset[off]; ok {
				if string(r.Value) != a.id || string(r.Key) != a.key {
					t.Fatalf("offset %d holds %s/%s, acknowledged as %s/%s", off, r.Key, r.Value, a.key, a.id)
				}
				continue
			}
			// Only compaction may remove it, and only for a newer record
			// of the same key that is still there.
			if latest[a.key] <= off {
				t.Fatalf("acknowledged offset %d (key %s) lost without a newer record of its key", off, a.key)
			}
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
