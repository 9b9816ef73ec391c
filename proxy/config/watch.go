package config

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Debounce defaults of a Watcher.
const (
	DefaultDebounce = 100 * time.Millisecond
	// maxDebounceFactor bounds how long a continuous burst of events can
	// postpone a reload: at most this many Debounce periods after the first.
	maxDebounceFactor = 10
)

// Watcher re-reads a config file when it changes and hands the result to
// OnChange. It never applies anything itself: on an error the caller keeps
// serving its last good config.
//
// It watches the file's directory rather than the file, because the usual
// ways of replacing a config replace the file rather than write it: editors
// write a temporary file and rename it over the old one, and Kubernetes
// mounts a ConfigMap as a symlink (outrigger.yaml -> ..data/outrigger.yaml)
// whose ..data symlink it swaps atomically to a new timestamped directory.
// When the path is a symlink, the directory of the file it resolves to is
// watched too, and that is re-resolved after every change. While
// something on the way to the file is missing (the directory renamed away,
// deleted, about to be replaced; the file or directory a symlink leads to
// deleted, to be written again), the directory it is missing from is
// watched too, so that its return is seen.
//
// Events are debounced (a burst of writes is one reload) and the file's
// content is hashed, so that an event that did not change the bytes (a
// touch, a rewrite with the same content, an unrelated file in the same
// directory) does not reach OnChange. A change that yields the same bytes
// as the last delivery is never delivered twice in a row, good or bad. A
// failure (unreadable, or not a valid config) is delivered only once the
// file has stayed so for Settle, so that a file caught half-written is not
// reported when the complete one follows.
//
// A caller that also reloads the file on demand (on SIGHUP) does so with
// [Watcher.Reload], which reads and hands on under the same lock as Run:
// each read is handed on before the next read is made, so the last config
// handed on is the newest read, and Run compares later changes with what
// was handed on last, whoever read it.
type Watcher struct {
	// Path is the config file. Required.
	Path string

	// OnChange receives each new config (validated, with defaults), or the
	// error that stopped it (a read error, or an [Errors]) with a nil
	// config. It is called on Run's goroutine, one call at a time, with
	// the Watcher's lock held from the read it hands on: it must not call
	// Reload.
	OnChange func(*Config, error)

	// Debounce is how long the directory must be quiet after an event
	// before the file is read; a continuous burst is read at the latest
	// 10 Debounce periods after its first event. Zero means 100ms.
	Debounce time.Duration

	// Settle is how long a file that cannot be read or does not parse
	// must stay as it is before that failure is delivered. A change in
	// that time withdraws it: the file is read again after the usual
	// debounce, and a complete config that follows a half-written one is
	// delivered alone. (Editors and copy tools may write a file in several
	// writes spread over more than Debounce; a file deleted and written
	// again is missing for a moment.) Zero means 5 Debounce periods.
	Settle time.Duration

	// Current, if set, is the config the caller is serving (from Load). Run
	// then compares the file with it on start and delivers a difference at
	// once, so that an edit made between Load and Run is not lost. Nil
	// means the file as Run first reads it is taken as already delivered.
	Current *Config

	// afterRead, if set, is called after each read of the file that an
	// event caused, delivered or not; tests use it to know that events
	// which changed nothing have been handled.
	afterRead func()

	// mu is held from each read of the file until what was read has been
	// handed on (OnChange, or Reload's apply) or dropped, so that reads
	// are handed on in the order they were made.
	mu sync.Mutex
	// last is the content last handed on: the file's bytes, or its read
	// error, hashed (see read); lastSet, whether there is one.
	last    [sha256.Size]byte
	lastSet bool
}

// Reload reads the file now and hands what it holds to apply: the config,
// or the error that stopped it with a nil config. Unlike Run it hands it
// on whether or not it changed, and a failure at once, without waiting
// out Settle: it is a reload asked for by hand. It holds the lock Run
// delivers under, so that a read never overtakes another on its way to
// being applied, and Run then delivers a change only if it differs from
// this read. apply must not call Reload. Reload may be called whether or
// not Run is running.
func (w *Watcher) Reload(apply func(*Config, error)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	sum, cfg, _, err := w.read()
	w.last, w.lastSet = sum, true
	apply(cfg, err)
}

// read reads and parses the file. sum identifies what was read: the
// bytes, or the read error (readErr). Callers hold mu.
func (w *Watcher) read() (sum [sha256.Size]byte, cfg *Config, readErr bool, err error) {
	data, err := readFile(w.Path)
	if err != nil {
		return sha256.Sum256([]byte("error: " + err.Error())), nil, true, err
	}
	cfg, err = Parse(data, w.Path)
	return sha256.Sum256(data), cfg, false, err
}

// Watch runs a Watcher with the default debounce until ctx is done.
func Watch(ctx context.Context, path string, onChange func(*Config, error)) error {
	w := &Watcher{Path: path, OnChange: onChange}
	return w.Run(ctx)
}

// Run watches until ctx is done and then returns nil, having stopped
// everything it started. It returns an error early only if watching cannot
// start (no such directory, no inotify instances left) or the event stream
// closes underneath it.
func (w *Watcher) Run(ctx context.Context) error {
	if w.Path == "" || w.OnChange == nil {
		return errors.New("config watcher: Path and OnChange are required")
	}
	debounce := w.Debounce
	if debounce <= 0 {
		debounce = DefaultDebounce
	}
	path, err := filepath.Abs(w.Path)
	if err != nil {
		return fmt.Errorf("config watcher: %w", err)
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("config watcher: %w", err)
	}
	defer fw.Close()

	dir := filepath.Dir(path)
	if err := fw.Add(dir); err != nil {
		return fmt.Errorf("config watcher: watch %s: %w", dir, err)
	}
	watched := map[string]bool{dir: true}
	// rewatch follows the symlinks again and moves the extra watches to
	// the directory of the file they now lead to and to the directories
	// that hold the links on the way, where a link swapped changes the
	// file the path names (a release directory's "current", a link
	// elsewhere that the config's own link goes through).
	rewatch := func() {
		want := map[string]bool{dir: true}
		if real, err := filepath.EvalSymlinks(path); err == nil {
			want[filepath.Dir(real)] = true
		}
		links, missing := linkDirs(path)
		for _, d := range links {
			want[d] = true
		}
		if missing != "" {
			// Something on the way is gone (the directory renamed or
			// deleted, to be replaced; the file a link leads to deleted,
			// to be written again): watch the directory it is missing
			// from, whose events include its return.
			want[missing] = true
		}
		for d := range watched {
			if !want[d] {
				// The directory may be gone already (Kubernetes deletes the
				// old timestamped one), which removed the watch with it.
				_ = fw.Remove(d)
				delete(watched, d)
			}
		}
		for d := range want {
			// Every one is added again, watched or not: adding again is
			// harmless, and re-arms the watch of a directory replaced
			// under the same name (renamed away or deleted, another put
			// in its place within one debounce), whose watch went with
			// the old one. That goes for a directory a symlink on the
			// config's path leads to as for the config's own.
			if fw.Add(d) == nil {
				watched[d] = true
			}
		}
	}

	settle := w.Settle
	if settle <= 0 {
		settle = 5 * debounce
	}
	settleTimer := time.NewTimer(time.Hour)
	settleTimer.Stop()
	defer settleTimer.Stop()
	var settled <-chan time.Time

	// pending, while settled is set, is the failure waiting out Settle.
	var pending [sha256.Size]byte
	// deliver reads the file and delivers what changed. initial is the
	// read at start; confirm is the read when Settle has passed.
	deliver := func(initial, confirm bool) {
		w.mu.Lock()
		defer w.mu.Unlock()
		sum, cfg, readErr, err := w.read()
		if w.lastSet && sum == w.last {
			settled = nil // back to what was handed on: nothing to report
			return
		}
		if err != nil && !initial && !(confirm && sum == pending) {
			// A failure waits to see whether the file is still being
			// written; the same failure read again keeps its deadline.
			if settled == nil || sum != pending {
				pending = sum
				settleTimer.Reset(settle)
				settled = settleTimer.C
			}
			return
		}
		settled = nil
		w.last, w.lastSet = sum, true
		// At start, a file that cannot be read is not reported (the
		// caller has just loaded it, or will say so itself).
		if initial && (readErr || w.Current == nil || (err == nil && cfg.Hash() == w.Current.Hash())) {
			return
		}
		w.OnChange(cfg, err)
	}

	rewatch()
	deliver(true, false)

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var fire <-chan time.Time
	var burstStart time.Time
	schedule := func() {
		now := time.Now()
		if fire == nil {
			burstStart = now
		}
		wait := debounce
		if left := burstStart.Add(maxDebounceFactor * debounce).Sub(now); left < wait {
			wait = max(left, 0)
		}
		timer.Reset(wait)
		fire = timer.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-fw.Events:
			if !ok {
				return errors.New("config watcher: event stream closed")
			}
			schedule()
		case _, ok := <-fw.Errors:
			if !ok {
				return errors.New("config watcher: event stream closed")
			}
			// Events were lost (queue overflow) or the watch hiccuped: the
			// file may have changed, so read it again.
			schedule()
		case <-fire:
			fire = nil
			rewatch()
			deliver(false, false)
			if w.afterRead != nil {
				w.afterRead()
			}
		case <-settled:
			settled = nil
			rewatch()
			deliver(false, true)
			if w.afterRead != nil {
				w.afterRead()
			}
		}
	}
}

// maxLinks bounds the symlinks linkDirs follows, as the kernel's
// resolution is bounded (ELOOP).
const maxLinks = 40

// linkDirs returns the directories that hold the symlinks met while
// resolving path (absolute and clean), in order, each once. It stops
// where resolution fails: what is missing has no links to watch yet.
// missing is then the directory, found on the way, that lacks the next
// name to resolve ("" when nothing is missing, or resolution failed
// otherwise).
func linkDirs(path string) (dirs []string, missing string) {
	seen := map[string]bool{}
	rest := strings.Split(path, string(filepath.Separator))
	cur := string(filepath.Separator)
	for links := 0; len(rest) > 0; {
		name := rest[0]
		rest = rest[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			cur = filepath.Dir(cur)
			continue
		}
		next := filepath.Join(cur, name)
		fi, err := os.Lstat(next)
		if errors.Is(err, fs.ErrNotExist) {
			return dirs, cur
		}
		if err != nil {
			return dirs, ""
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			cur = next
			continue
		}
		if links++; links > maxLinks {
			return dirs, ""
		}
		target, err := os.Readlink(next)
		if err != nil {
			return dirs, ""
		}
		if !seen[cur] {
			seen[cur] = true
			dirs = append(dirs, cur)
		}
		if filepath.IsAbs(target) {
			cur = string(filepath.Separator)
		}
		rest = append(strings.Split(target, string(filepath.Separator)), rest...)
	}
	return dirs, ""
}
