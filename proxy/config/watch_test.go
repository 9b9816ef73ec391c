package config

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The watcher tests run a real Watcher on real files in a temporary
// directory. They wait for deliveries with a deadline, never a sleep.

const waitLimit = 10 * time.Second

// tornSettle is the Settle of the tests' watchers, unless a test sets a
// longer one. writeFile truncates the file, then writes it: a read in
// between finds it empty, a failure that Settle holds back until the
// write's event has the file read again. On a loaded machine under the
// race detector the test's goroutine can stall between those two calls
// for longer than 100 ms (Settle's default, at the tests' 20 ms
// debounce), and the empty file was then delivered as an error.
const tornSettle = time.Second

func configWithTimeout(d string) string {
	return "clusters: {a: {endpoints: [\"10.0.0.1:80\"]}}\nroutes: [{cluster: a, timeout: " + d + "}]\n"
}

type delivery struct {
	cfg *Config
	err error
}

// startWatcher runs a Watcher on path and returns its deliveries. The
// watcher is given a Current config unlike the file, so its first delivery
// proves the watches are in place before the test changes anything.
func startWatcher(t *testing.T, path string) <-chan delivery {
	t.Helper()
	ch, _ := startWatcherWith(t, path, 20*time.Millisecond)
	return ch
}

// startWatcherWith also returns a channel that receives after each read
// the watcher makes. Its Settle is the default, 5 debounces, or
// tornSettle if longer.
func startWatcherWith(t *testing.T, path string, debounce time.Duration) (<-chan delivery, <-chan struct{}) {
	t.Helper()
	_, ch, reads := startWatcherSettle(t, path, debounce, max(tornSettle, 5*debounce))
	return ch, reads
}

// startWatcherSettle also sets the Watcher's Settle, and returns the
// Watcher.
func startWatcherSettle(t *testing.T, path string, debounce, settle time.Duration) (*Watcher, <-chan delivery, <-chan struct{}) {
	t.Helper()
	ch := make(chan delivery, 64)
	reads := make(chan struct{}, 64)
	cur, err := Parse([]byte(configWithTimeout("999s")), "current")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &Watcher{
		Path:     path,
		Debounce: debounce,
		Settle:   settle,
		Current:  cur,
		afterRead: func() {
			select {
			case reads <- struct{}{}:
			case <-ctx.Done():
			}
		},
		OnChange: func(c *Config, err error) {
			select {
			case ch <- delivery{c, err}:
			case <-ctx.Done():
			}
		},
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v", err)
			}
		case <-time.After(waitLimit):
			t.Errorf("Run did not return after cancel")
		}
	})
	first := next(t, ch)
	if first.err != nil || first.cfg.Routes[0].Timeout == 999*time.Second {
		t.Fatalf("first delivery = %+v, want the file's config", first)
	}
	return w, ch, reads
}

func next(t *testing.T, ch <-chan delivery) delivery {
	t.Helper()
	select {
	case d := <-ch:
		return d
	case <-time.After(waitLimit):
		t.Fatal("no delivery within the deadline")
		return delivery{}
	}
}

func wantTimeout(t *testing.T, d delivery, want time.Duration) {
	t.Helper()
	if d.err != nil {
		t.Fatalf("delivered error %v, want a config", d.err)
	}
	if got := d.cfg.Routes[0].Timeout; got != want {
		t.Fatalf("delivered timeout %s, want %s", got, want)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestWatchSeesInPlaceWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outrigger.yaml")
	writeFile(t, path, configWithTimeout("1s"))
	ch := startWatcher(t, path)

	writeFile(t, path, configWithTimeout("2s"))
	wantTimeout(t, next(t, ch), 2*time.Second)
}

func TestWatchSeesRenameReplace(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "outrigger.yaml")
	writeFile(t, path, configWithTimeout("1s"))
	ch := startWatcher(t, path)

	// An editor's save: write a temporary file, rename it over the config.
	tmp := filepath.Join(dir, ".outrigger.yaml.swp")
	writeFile(t, tmp, configWithTimeout("3s"))
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	wantTimeout(t, next(t, ch), 3*time.Second)

	// And again, to show the watch survived the first replacement.
	writeFile(t, tmp, configWithTimeout("4s"))
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	wantTimeout(t, next(t, ch), 4*time.Second)
}

// A Kubernetes ConfigMap volume: outrigger.yaml -> ..data/outrigger.yaml,
// ..data -> ..<timestamp>/, and an update swaps ..data atomically (a new
// symlink renamed over it), then deletes the old timestamped directory.
func TestWatchSeesKubernetesSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	version := func(name, content string) {
		t.Helper()
		d := filepath.Join(dir, name)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(d, "outrigger.yaml"), content)
	}
	swap := func(target string) {
		t.Helper()
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(target, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	version("..2026_11_27_04_00_00.111", configWithTimeout("1s"))
	if err := os.Symlink("..2026_11_27_04_00_00.111", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "outrigger.yaml")
	if err := os.Symlink(filepath.Join("..data", "outrigger.yaml"), path); err != nil {
		t.Fatal(err)
	}
	ch := startWatcher(t, path)

	version("..2026_11_27_04_05_00.222", configWithTimeout("5s"))
	swap("..2026_11_27_04_05_00.222")
	if err := os.RemoveAll(filepath.Join(dir, "..2026_11_27_04_00_00.111")); err != nil {
		t.Fatal(err)
	}
	wantTimeout(t, next(t, ch), 5*time.Second)

	// A second update is seen too: the watches followed the swap.
	version("..2026_11_27_04_10_00.333", configWithTimeout("6s"))
	swap("..2026_11_27_04_10_00.333")
	wantTimeout(t, next(t, ch), 6*time.Second)
}

// An edit inside the directory the symlink leads to (not the link's own
// directory) is seen, because the resolved directory is watched too.
func TestWatchSeesWriteBehindSymlink(t *testing.T) {
	real := filepath.Join(t.TempDir(), "real.yaml")
	writeFile(t, real, configWithTimeout("1s"))
	path := filepath.Join(t.TempDir(), "outrigger.yaml")
	if err := os.Symlink(real, path); err != nil {
		t.Fatal(err)
	}
	ch := startWatcher(t, path)

	writeFile(t, real, configWithTimeout("7s"))
	wantTimeout(t, next(t, ch), 7*time.Second)
}

func TestWatchDeliversInvalidEditThenRecovery(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outrigger.yaml")
	writeFile(t, path, configWithTimeout("1s"))
	ch := startWatcher(t, path)

	writeFile(t, path, configWithTimeout("soon"))
	d := next(t, ch)
	var es Errors
	if d.cfg != nil || !errors.As(d.err, &es) {
		t.Fatalf("delivered %+v, want an Errors and no config", d)
	}
	if !strings.Contains(d.err.Error(), `routes[0].timeout: invalid duration "soon"`) {
		t.Fatalf("error = %v", d.err)
	}

	writeFile(t, path, configWithTimeout("8s"))
	wantTimeout(t, next(t, ch), 8*time.Second)
}

func TestWatchDeliversMissingFileAsError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outrigger.yaml")
	writeFile(t, path, configWithTimeout("1s"))
	ch := startWatcher(t, path)

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if d := next(t, ch); d.cfg != nil || !errors.Is(d.err, os.ErrNotExist) {
		t.Fatalf("delivered %+v, want a not-exist error", d)
	}
	writeFile(t, path, configWithTimeout("9s"))
	wantTimeout(t, next(t, ch), 9*time.Second)
}

// Events that leave the bytes as they were (a rewrite with the same content,
// a touch, an unrelated file in the directory) are read but deliver nothing.
func TestWatchSkipsEventsThatChangeNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "outrigger.yaml")
	writeFile(t, path, configWithTimeout("1s"))
	ch, reads := startWatcherWith(t, path, 20*time.Millisecond)

	now := time.Now()
	for i, noop := range []func(){
		func() { writeFile(t, path, configWithTimeout("1s")) },
		func() { writeFile(t, filepath.Join(dir, "unrelated.txt"), "x") },
		func() {
			if err := os.Chtimes(path, now, now); err != nil {
				t.Fatal(err)
			}
		},
	} {
		noop()
		select {
		case <-reads:
		case <-time.After(waitLimit):
			t.Fatalf("no-op %d: the watcher never read the file", i)
		}
		select {
		case d := <-ch:
			t.Fatalf("no-op %d delivered %+v", i, d)
		default:
		}
	}

	writeFile(t, path, configWithTimeout("10s"))
	wantTimeout(t, next(t, ch), 10*time.Second)
}

// A burst of writes is one reload of the final content.
func TestWatchDebouncesBursts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outrigger.yaml")
	writeFile(t, path, configWithTimeout("1s"))
	// The debounce is long enough for the burst below to fit in it.
	ch, reads := startWatcherWith(t, path, time.Second)

	for i := 1; i <= 20; i++ {
		writeFile(t, path, configWithTimeout(time.Duration(i*int(time.Millisecond)).String()))
	}
	writeFile(t, path, configWithTimeout("11s"))
	wantTimeout(t, next(t, ch), 11*time.Second)
	select {
	case <-reads:
	case <-time.After(waitLimit):
		t.Fatal("no read signal")
	}
	select {
	case d := <-ch:
		t.Fatalf("more than one delivery for one burst: %+v", d)
	case <-reads:
		t.Fatal("more than one read for one burst")
	default:
	}
}

func TestWatchStopsOnCancel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outrigger.yaml")
	writeFile(t, path, configWithTimeout("1s"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Watch(ctx, path, func(*Config, error) {}) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Watch returned %v", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("Watch did not return after cancel")
	}
	// TestMain's goleak check proves nothing it started is left running.
}

func TestWatchFailsWithoutDirectory(t *testing.T) {
	err := Watch(context.Background(), filepath.Join(t.TempDir(), "missing", "outrigger.yaml"), func(*Config, error) {})
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want not-exist", err)
	}
}

// With Current equal to the file, nothing is delivered on start: the first
// delivery is the first change.
func TestWatchCurrentEqualToFileDeliversNothingOnStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outrigger.yaml")
	writeFile(t, path, configWithTimeout("1s"))
	cur, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan delivery, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	w := &Watcher{Path: path, Current: cur, Debounce: 20 * time.Millisecond,
		OnChange: func(c *Config, err error) { ch <- delivery{c, err} }}
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	// The watch may not be in place yet; rewrite until a change arrives.
	deadline := time.Now().Add(waitLimit)
	for i := 2; time.Now().Before(deadline); i++ {
		writeFile(t, path, configWithTimeout((time.Duration(i) * time.Second).String()))
		select {
		case d := <-ch:
			if d.err != nil {
				// The watcher read the file while writeFile was still
				// writing it (writes are not atomic): a torn file, not
				// the unchanged one. Write again.
				continue
			}
			if d.cfg.Routes[0].Timeout == time.Second {
				t.Fatalf("first delivery %+v is not a change", d)
			}
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
	t.Fatal("no change delivered")
}

// A file written in pieces further apart than the debounce (a slow copy,
// an editor that writes in several calls) is not delivered as a failure
// when the complete file follows within Settle: only the complete config
// is delivered. Before, the half-written file was delivered as an error,
// which the sidecar counted and logged as a rejected reload.
func TestWatchHalfWrittenFileFollowedByCompleteOneDeliversOnlyTheConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outrigger.yaml")
	writeFile(t, path, configWithTimeout("1s"))
	_, ch, reads := startWatcherSettle(t, path, 20*time.Millisecond, waitLimit)

	full := configWithTimeout("12s")
	writeFile(t, path, full[:len(full)-12]) // cut inside the route
	select {
	case <-reads:
	case <-time.After(waitLimit):
		t.Fatal("the watcher never read the half-written file")
	}
	select {
	case d := <-ch:
		t.Fatalf("half-written file delivered: %+v", d)
	default:
	}
	writeFile(t, path, full)
	wantTimeout(t, next(t, ch), 12*time.Second)
}

// A failure that stays is delivered once Settle has passed, and a file
// that goes back to the delivered content withdraws a pending failure.
func TestWatchFailureThatStaysIsDeliveredAfterSettle(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outrigger.yaml")
	writeFile(t, path, configWithTimeout("1s"))
	_, ch, reads := startWatcherSettle(t, path, 20*time.Millisecond, waitLimit)

	// Broken, then back to what was delivered before Settle ends: nothing.
	writeFile(t, path, configWithTimeout("bad"))
	waitRead(t, reads)
	writeFile(t, path, configWithTimeout("1s"))
	waitRead(t, reads)
	select {
	case d := <-ch:
		t.Fatalf("delivered %+v for a file back to its delivered content", d)
	default:
	}

	_, ch2, _ := startWatcherSettle(t, path, 20*time.Millisecond, tornSettle)
	writeFile(t, path, configWithTimeout("bad"))
	d := next(t, ch2)
	if d.cfg != nil || d.err == nil || !strings.Contains(d.err.Error(), `invalid duration "bad"`) {
		t.Fatalf("delivered %+v, want the parse error", d)
	}
}

func waitRead(t *testing.T, reads <-chan struct{}) {
	t.Helper()
	select {
	case <-reads:
	case <-time.After(waitLimit):
		t.Fatal("the watcher never read the file")
	}
}

// The config's directory renamed away (a deploy that swaps whole
// directories: mv conf conf.old; mv conf.new conf) and then replaced: the
// file at the configured path is followed. Before, the watch went with the
// renamed directory and the new one was never watched, so nothing but
// SIGHUP reloaded again.
func TestWatchFollowsTheDirectoryRenamedAndReplaced(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "conf")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "outrigger.yaml")
	writeFile(t, path, configWithTimeout("1s"))
	ch := startWatcher(t, path)

	if err := os.Rename(dir, filepath.Join(root, "conf.old")); err != nil {
		t.Fatal(err)
	}
	if d := next(t, ch); d.cfg != nil || !errors.Is(d.err, os.ErrNotExist) {
		t.Fatalf("delivered %+v, want a not-exist error", d)
	}
	staged := filepath.Join(root, "conf.new")
	if err := os.Mkdir(staged, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(staged, "outrigger.yaml"), configWithTimeout("13s"))
	if err := os.Rename(staged, dir); err != nil {
		t.Fatal(err)
	}
	wantTimeout(t, next(t, ch), 13*time.Second)
	// And the new directory is watched.
	writeFile(t, path, configWithTimeout("14s"))
	wantTimeout(t, next(t, ch), 14*time.Second)
}

// Two ConfigMap updates in quick succession (..data swapped twice within
// the debounce, each old timestamped directory deleted): the final
// content is delivered, once, and a later update is still seen.
func TestWatchKubernetesSymlinkSwappedTwiceQuickly(t *testing.T) {
	dir := t.TempDir()
	version := func(name, content string) {
		t.Helper()
		d := filepath.Join(dir, name)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(d, "outrigger.yaml"), content)
	}
	swap := func(target, old string) {
		t.Helper()
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(target, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
			t.Fatal(err)
		}
	}
	version("..1", configWithTimeout("1s"))
	if err := os.Symlink("..1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "outrigger.yaml")
	if err := os.Symlink(filepath.Join("..data", "outrigger.yaml"), path); err != nil {
		t.Fatal(err)
	}
	// A debounce long enough for both swaps to fall in one burst, even
	// when the test's goroutine stalls between them on a loaded machine:
	// a second, not 500 ms.
	ch, reads := startWatcherWith(t, path, time.Second)

	version("..2", configWithTimeout("2s"))
	version("..3", configWithTimeout("3s"))
	swap("..2", "..1")
	swap("..3", "..2")
	wantTimeout(t, next(t, ch), 3*time.Second)
	waitRead(t, reads)
	select {
	case d := <-ch:
		t.Fatalf("second delivery for one burst: %+v", d)
	default:
	}

	version("..4", configWithTimeout("4s"))
	swap("..4", "..3")
	wantTimeout(t, next(t, ch), 4*time.Second)
}

// A file made unreadable is a failure (delivered once it has stayed so for
// Settle); readable again, the config is delivered. Root reads any file,
// so the test needs another user.
func TestWatchUnreadableFileIsAFailureUntilReadableAgain(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads files whatever their permissions")
	}
	path := filepath.Join(t.TempDir(), "outrigger.yaml")
	writeFile(t, path, configWithTimeout("1s"))
	ch := startWatcher(t, path)

	if err := os.Chmod(path, 0); err != nil {
		t.Fatal(err)
	}
	if d := next(t, ch); d.cfg != nil || !errors.Is(d.err, os.ErrPermission) {
		t.Fatalf("delivered %+v, want a permission error", d)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	wantTimeout(t, next(t, ch), time.Second)
}

// Reload hands the file on at once, changed or not, a failure without
// waiting out Settle; and Run compares later changes with what Reload
// handed on, so a file changed, reloaded and changed back is delivered
// (it differs from what was handed on last) though it is what Run itself
// delivered last.
func TestWatchReloadHandsOnAtOnceAndRunComparesWithIt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outrigger.yaml")
	writeFile(t, path, configWithTimeout("1s"))
	// A debounce far longer than a write and a Reload take: Run reads
	// only after the last write below. A second, not 300 ms: a Run that
	// read the file while the test's goroutine stalled between a write
	// and its Reload delivered that write itself, ahead of the one the
	// test waits for.
	w, ch, _ := startWatcherSettle(t, path, time.Second, waitLimit)
	reload := func() delivery {
		var d delivery
		w.Reload(func(c *Config, err error) { d = delivery{c, err} })
		return d
	}

	wantTimeout(t, reload(), time.Second) // unchanged, handed on all the same
	writeFile(t, path, configWithTimeout("2s"))
	wantTimeout(t, reload(), 2*time.Second)
	writeFile(t, path, configWithTimeout("1s"))
	wantTimeout(t, next(t, ch), time.Second)

	writeFile(t, path, "clusters: [\n")
	if d := reload(); d.err == nil || !strings.Contains(d.err.Error(), "invalid YAML") {
		t.Fatalf("Reload of a broken file handed on %+v", d)
	}
	// Run delivers what follows as usual.
	writeFile(t, path, configWithTimeout("3s"))
	wantTimeout(t, next(t, ch), 3*time.Second)
}

// swapLink points link at target atomically, as deploy tools do (a new
// link renamed over the old one).
func swapLink(t *testing.T, target, link string) {
	t.Helper()
	tmp := link + ".tmp"
	if err := os.Symlink(target, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, link); err != nil {
		t.Fatal(err)
	}
}

// releases makes root/<under>/<name>/outrigger.yaml for each version,
// with its route timeout.
func releases(t *testing.T, root, under string, timeouts map[string]string) {
	t.Helper()
	for name, to := range timeouts {
		d := filepath.Join(root, under, name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(d, "outrigger.yaml"), configWithTimeout(to))
	}
}

// A symlink on the config's path that lives in neither the config's
// directory nor the resolved file's is watched too: swapping it changes
// the config. Such swaps were missed (no reload, no error) until
// something touched the watched directories.
func TestWatchSeesSwapOfLinkElsewhereOnThePath(t *testing.T) {
	t.Run("release directory", func(t *testing.T) {
		// -c root/current/outrigger.yaml, current -> releases/v1.
		root := t.TempDir()
		releases(t, root, "releases", map[string]string{"v1": "1s", "v2": "2s"})
		cur := filepath.Join(root, "current")
		if err := os.Symlink("releases/v1", cur); err != nil {
			t.Fatal(err)
		}
		ch := startWatcher(t, filepath.Join(cur, "outrigger.yaml"))
		swapLink(t, "releases/v2", cur)
		wantTimeout(t, next(t, ch), 2*time.Second)
		// And back: the watches followed the swap.
		swapLink(t, "releases/v1", cur)
		wantTimeout(t, next(t, ch), time.Second)
	})
	t.Run("link through a third directory", func(t *testing.T) {
		// etc/outrigger.yaml -> store/current/outrigger.yaml, current -> v1.
		root := t.TempDir()
		releases(t, root, "store", map[string]string{"v1": "1s", "v2": "2s"})
		if err := os.Symlink("v1", filepath.Join(root, "store", "current")); err != nil {
			t.Fatal(err)
		}
		etc := filepath.Join(root, "etc")
		if err := os.Mkdir(etc, 0o755); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(etc, "outrigger.yaml")
		if err := os.Symlink(filepath.Join(root, "store", "current", "outrigger.yaml"), path); err != nil {
			t.Fatal(err)
		}
		ch := startWatcher(t, path)
		swapLink(t, "v2", filepath.Join(root, "store", "current"))
		wantTimeout(t, next(t, ch), 2*time.Second)
		swapLink(t, "v1", filepath.Join(root, "store", "current"))
		wantTimeout(t, next(t, ch), time.Second)
	})
}

func TestLinkDirs(t *testing.T) {
	root := t.TempDir()
	mk := func(p string) {
		if err := os.MkdirAll(filepath.Join(root, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ln := func(target, link string) {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	mk("a/b")
	mk("c")
	ln("../a", "c/toA")               // relative, through ..
	ln(filepath.Join(root, "c"), "d") // absolute
	ln("loop2", "loop1")
	ln("loop1", "loop2")
	ln("a/b/gone.yaml", "dangling")
	for _, tc := range []struct {
		path    string
		want    []string
		missing string // "-" for none
	}{
		{"a/b/x.yaml", nil, "a/b"},
		{"a/b", nil, "-"},
		{"c/toA/b/x.yaml", []string{"c"}, "a/b"},
		{"d/toA/b/x.yaml", []string{"", "c"}, "a/b"},
		{"missing/x.yaml", nil, ""},
		{"c/toA/missing/x.yaml", []string{"c"}, "a"},
		{"dangling", []string{""}, "a/b"},
		{"loop1/x.yaml", []string{""}, "-"},
	} {
		var want []string
		for _, w := range tc.want {
			want = append(want, filepath.Join(root, w))
		}
		wantMissing := ""
		if tc.missing != "-" {
			wantMissing = filepath.Join(root, tc.missing)
		}
		got, missing := linkDirs(filepath.Join(root, tc.path))
		if !slices.Equal(got, want) || missing != wantMissing {
			t.Errorf("linkDirs(%s) = %q, %q; want %q, %q", tc.path, got, missing, want, wantMissing)
		}
	}
}

// What a symlink on the config's path leads to, deleted and written again
// later than Settle (its deletion delivered as a failure first), is
// delivered. The directory it was deleted from was no longer watched once
// the link could not be resolved, so its return was never seen.
func TestWatchSeesWhatALinkLeadsToDeletedAndWrittenAgain(t *testing.T) {
	t.Run("file", func(t *testing.T) {
		// etc/outrigger.yaml -> store/outrigger.yaml.
		root := t.TempDir()
		releases(t, root, "", map[string]string{"store": "1s"})
		etc := filepath.Join(root, "etc")
		if err := os.Mkdir(etc, 0o755); err != nil {
			t.Fatal(err)
		}
		target := filepath.Join(root, "store", "outrigger.yaml")
		path := filepath.Join(etc, "outrigger.yaml")
		if err := os.Symlink(target, path); err != nil {
			t.Fatal(err)
		}
		_, ch, _ := startWatcherSettle(t, path, 20*time.Millisecond, tornSettle)
		if err := os.Remove(target); err != nil {
			t.Fatal(err)
		}
		if d := next(t, ch); d.cfg != nil || !errors.Is(d.err, os.ErrNotExist) {
			t.Fatalf("delivered %+v, want a not-exist error", d)
		}
		writeFile(t, target, configWithTimeout("2s"))
		wantTimeout(t, next(t, ch), 2*time.Second)
	})
	t.Run("release directory", func(t *testing.T) {
		// current/outrigger.yaml, current -> releases/v1.
		root := t.TempDir()
		releases(t, root, "releases", map[string]string{"v1": "1s"})
		cur := filepath.Join(root, "current")
		if err := os.Symlink(filepath.Join("releases", "v1"), cur); err != nil {
			t.Fatal(err)
		}
		_, ch, _ := startWatcherSettle(t, filepath.Join(cur, "outrigger.yaml"), 20*time.Millisecond, tornSettle)
		if err := os.RemoveAll(filepath.Join(root, "releases", "v1")); err != nil {
			t.Fatal(err)
		}
		if d := next(t, ch); d.cfg != nil || !errors.Is(d.err, os.ErrNotExist) {
			t.Fatalf("delivered %+v, want a not-exist error", d)
		}
		releases(t, root, "releases", map[string]string{"v1": "2s"})
		wantTimeout(t, next(t, ch), 2*time.Second)
	})
}

// The directory a symlink on the config's path leads to, replaced under
// the same name within one debounce (renamed away and another renamed in,
// or deleted and made again), is watched from then on: an edit in it
// afterwards is delivered. The watch went with the old directory and the
// new one was never watched, as it had the name of one already watched;
// only the config's own directory was re-armed so.
func TestWatchFollowsTheDirectoryALinkLeadsToReplacedUnderItsName(t *testing.T) {
	for _, tc := range []struct {
		name    string
		replace func(t *testing.T, store string)
	}{
		{"renamed", func(t *testing.T, store string) {
			if err := os.Rename(store, store+".old"); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(store+".new", store); err != nil {
				t.Fatal(err)
			}
		}},
		{"deleted", func(t *testing.T, store string) {
			if err := os.RemoveAll(store); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(store, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(filepath.Join(store+".new", "outrigger.yaml"), filepath.Join(store, "outrigger.yaml")); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// etc/outrigger.yaml -> store/outrigger.yaml.
			root := t.TempDir()
			releases(t, root, "", map[string]string{"store": "1s", "store.new": "2s"})
			etc := filepath.Join(root, "etc")
			if err := os.Mkdir(etc, 0o755); err != nil {
				t.Fatal(err)
			}
			store := filepath.Join(root, "store")
			path := filepath.Join(etc, "outrigger.yaml")
			if err := os.Symlink(filepath.Join(store, "outrigger.yaml"), path); err != nil {
				t.Fatal(err)
			}
			// A debounce long enough for the replacement to be one burst,
			// so that the watcher never sees the directory missing.
			ch, _ := startWatcherWith(t, path, 300*time.Millisecond)
			tc.replace(t, store)
			wantTimeout(t, next(t, ch), 2*time.Second)
			writeFile(t, filepath.Join(store, "outrigger.yaml"), configWithTimeout("3s"))
			wantTimeout(t, next(t, ch), 3*time.Second)
		})
	}
}
