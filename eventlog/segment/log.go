package segment

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// cleanShutdownFile marks a directory whose Log was closed cleanly.
const cleanShutdownFile = "clean-shutdown"

// segment is one open segment: its log file and what is known about it.
type segment struct {
	meta segMeta
	path string   // the .log file
	f    *os.File // read (ReadAt) by everyone, written (WriteAt) only while active
	// idxF and tidxF are the index files, open for appending while the
	// segment is active; nil otherwise.
	idxF, tidxF *os.File
	// idxPend and tidxPend hold index entries not yet written to idxF and
	// tidxF; they are written in chunks (the indexes are rebuilt on Open
	// anyway, so they need not be current on disk).
	idxPend, tidxPend []byte
	// activeSince is when the segment started taking appends (ms), for
	// rolling by age.
	activeSince int64
}

func (s *segment) indexPath() string { return strings.TrimSuffix(s.path, logSuffix) + indexSuffix }
func (s *segment) timeIndexPath() string {
	return strings.TrimSuffix(s.path, logSuffix) + timeIndexSuffix
}

// closeFiles closes every file of the segment.
func (s *segment) closeFiles() error {
	errs := []error{s.flushIndex()}
	for _, f := range []*os.File{s.f, s.idxF, s.tidxF} {
		if f != nil {
			errs = append(errs, f.Close())
		}
	}
	s.idxF, s.tidxF = nil, nil
	return errors.Join(errs...)
}

// flushIndex writes pending index entries to the index files.
func (s *segment) flushIndex() error {
	if s.idxF == nil || len(s.idxPend) == 0 {
		return nil
	}
	_, err1 := s.idxF.Write(s.idxPend)
	_, err2 := s.tidxF.Write(s.tidxPend)
	s.idxPend, s.tidxPend = s.idxPend[:0], s.tidxPend[:0]
	return errors.Join(err1, err2)
}

// openIndexAppenders opens the segment's index files for appending.
func (s *segment) openIndexAppenders() error {
	var err error
	if s.idxF, err = os.OpenFile(s.indexPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
		return err
	}
	if s.tidxF, err = os.OpenFile(s.timeIndexPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
		s.idxF.Close()
		s.idxF = nil
		return err
	}
	return nil
}

// Log is one partition's log: a directory of segments. All methods are safe
// for concurrent use. The Log owns one background goroutine under the "sync"
// and "interval" flush policies; Close stops and joins it.
type Log struct {
	dir      string
	opts     Options
	lockFile *os.File

	// Lock order: adminMu, then syncMu, then mu, then cmu; qmu alone.

	// adminMu serialises structural changes (Truncate, EnforceRetention,
	// Compact, Close) with each other.
	adminMu sync.Mutex
	// syncMu is held for a whole fsync round, so that no structural change
	// closes a file while it is being synced.
	syncMu sync.Mutex

	// mu guards the segment list and offsets. Append holds it to write;
	// Read holds it shared while reading files.
	mu       sync.RWMutex
	segs     []*segment // ordered by base offset; the last one is active
	start    int64
	next     int64
	epochs   epochHistory
	writeSeq uint64 // number of batches written since Open
	closed   bool
	failed   error // first write/fsync error; the log refuses writes after it
	recovery RecoveryReport
	stage    staged // batches given offsets but not yet written; empty whenever mu is free

	// cmu guards the durability state shared with the flusher goroutine.
	cmu        sync.Mutex
	durableSeq uint64
	durableOff int64
	syncErr    error
	synced     chan struct{} // closed and replaced after every fsync round

	// closing is set by Close before it waits for adminMu, so that a long
	// compaction stops early.
	closing atomic.Bool

	// fsyncs counts fsync rounds of the active segment (group commits).
	fsyncs atomic.Int64
	// fsyncLatency is the duration of those fsyncs.
	fsyncLatency latencies

	// qmu guards the group-commit queue ("sync" policy): appends waiting
	// for the committer to write them. It is never held with another lock.
	qmu     sync.Mutex
	queue   []*appendReq
	qclosed bool // set by Close: no more requests
	// spare is the committer's second queue slice (it swaps the two);
	// active is how many requests the last round released or saw queued.
	// Both are the committer's own.
	spare  []*appendReq
	active int
	qlen   atomic.Int32 // len(queue), read without qmu by the committer
	// inflight counts appends queued or in a round not yet released.
	inflight atomic.Int32

	kick chan struct{} // wakes the committer; capacity 1 coalesces requests
	stop chan struct{}
	wg   sync.WaitGroup
}

// Open opens the log in dir, creating dir and an empty log if needed, and
// runs crash recovery: every segment is scanned batch by batch; a torn or
// corrupt tail of the last segment is truncated; index files that are
// missing or differ from the log are rebuilt; leftovers of interrupted
// compactions are removed. Damage anywhere else (bytes that are bad while
// valid data follows them) fails Open with a *CorruptError naming the file
// and byte position; nothing is deleted in that case. Recovery() tells what
// was done.
func Open(dir string, opts Options) (*Log, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("segment: invalid options: %w", err)
	}
	opts = opts.withDefaults()
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("segment: create dir: %w", err)
		}
		// The new directory's own entry must survive a power loss too, or
		// every acknowledged record in it could vanish with it.
		if err := syncDir(filepath.Dir(filepath.Clean(dir))); err != nil {
			return nil, fmt.Errorf("segment: sync parent of %s: %w", dir, err)
		}
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, fmt.Errorf("segment: lock %s: %w", dir, err)
	}
	l := &Log{
		dir:      dir,
		opts:     opts,
		lockFile: lock,
		synced:   make(chan struct{}),
		kick:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
	}
	if err := l.recover(); err != nil {
		for _, s := range l.segs {
			s.closeFiles()
		}
		lock.Close()
		return nil, err
	}
	l.durableOff = l.next
	switch opts.Flush {
	case FlushSync:
		l.wg.Add(1)
		go l.runCommitter()
	case FlushInterval:
		l.wg.Add(1)
		go l.runFlusher()
	}
	return l, nil
}

// recover builds the in-memory state from the directory. See Open.
func (l *Log) recover() error {
	rep := &l.recovery
	// A compaction merge that reached its commit point is finished first.
	replaced, err := completeSwaps(l.dir)
	rep.RemovedFiles = append(rep.RemovedFiles, replaced...)
	if err != nil {
		return fmt.Errorf("segment: complete compaction swap: %w", err)
	}
	entries, err := os.ReadDir(l.dir)
	if err != nil {
		return fmt.Errorf("segment: read dir: %w", err)
	}
	var bases []int64
	names := map[string]bool{}
	for _, e := range entries {
		names[e.Name()] = true
	}
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasSuffix(name, cleanedSuffix) || strings.HasSuffix(name, tmpSuffix):
			// An interrupted compaction or atomic write: the original file
			// is intact, the partial copy is garbage.
			if err := os.Remove(filepath.Join(l.dir, name)); err != nil {
				return fmt.Errorf("segment: remove leftover: %w", err)
			}
			rep.RemovedFiles = append(rep.RemovedFiles, name)
		case strings.HasSuffix(name, indexSuffix) || strings.HasSuffix(name, timeIndexSuffix):
			stem := strings.TrimSuffix(strings.TrimSuffix(name, indexSuffix), timeIndexSuffix)
			if !names[stem+logSuffix] {
				// Index of a segment deleted by retention before a crash.
				if err := os.Remove(filepath.Join(l.dir, name)); err != nil {
					return fmt.Errorf("segment: remove orphan index: %w", err)
				}
				rep.RemovedFiles = append(rep.RemovedFiles, name)
			}
		default:
			if base, ok := parseSegmentName(name); ok {
				bases = append(bases, base)
			}
		}
	}
	slices.Sort(bases)
	// The marker is trusted only together with a readable epoch checkpoint:
	// rebuilding the history needs every batch header anyway.
	markerPath := filepath.Join(l.dir, cleanShutdownFile)
	_, markerErr := os.Stat(markerPath)
	_, epochErr := readEpochFile(filepath.Join(l.dir, epochFileName))
	clean := markerErr == nil && epochErr == nil
	rep.CleanShutdown = markerErr == nil
	for i, base := range bases {
		last := i == len(bases)-1
		s, err := l.openSegment(base, last, clean)
		if err != nil {
			return err
		}
		if n := len(l.segs); n > 0 && base <= l.segs[n-1].meta.lastOffset {
			s.closeFiles()
			return &CorruptError{File: s.path, Position: 0,
				Reason: fmt.Sprintf("segment base offset %d overlaps previous segment ending at offset %d", base, l.segs[n-1].meta.lastOffset)}
		}
		l.segs = append(l.segs, s)
	}
	now := l.opts.Now().UnixMilli()
	if len(l.segs) == 0 {
		s, err := createSegment(l.dir, 0, now)
		if err != nil {
			return err
		}
		l.segs = append(l.segs, s)
	} else {
		act := l.segs[len(l.segs)-1]
		if err := act.openIndexAppenders(); err != nil {
			return fmt.Errorf("segment: open index: %w", err)
		}
		act.activeSince = now
		if act.meta.firstTs != noTimestamp && act.meta.firstTs < now {
			act.activeSince = act.meta.firstTs
		}
		// Whatever the previous run left in the page cache is made durable
		// now, so that DurableEndOffset starts at EndOffset.
		if err := act.f.Sync(); err != nil {
			return fmt.Errorf("segment: sync %s: %w", act.path, err)
		}
	}
	l.start = l.segs[0].meta.base
	act := l.segs[len(l.segs)-1]
	l.next = act.meta.lastOffset + 1
	rep.Segments = len(l.segs)
	rep.StartOffset, rep.EndOffset = l.start, l.next
	if err := l.recoverEpochs(); err != nil {
		return err
	}
	// From here on the log can be written, so the marker of the last clean
	// shutdown must go before Open returns.
	if markerErr == nil {
		if err := os.Remove(markerPath); err != nil {
			return fmt.Errorf("segment: remove clean-shutdown marker: %w", err)
		}
		if err := syncDir(l.dir); err != nil {
			return fmt.Errorf("segment: sync dir: %w", err)
		}
	}
	return nil
}

// openSegment opens and scans one segment file; for the last segment it
// truncates a torn tail. After a clean shutdown, segments other than the
// last are only walked header by header.
func (l *Log) openSegment(base int64, last, clean bool) (*segment, error) {
	rep := &l.recovery
	path := filepath.Join(l.dir, segmentName(base)+logSuffix)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("segment: open: %w", err)
	}
	s := &segment{path: path, f: f}
	fail := func(err error) (*segment, error) {
		f.Close()
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		return fail(fmt.Errorf("segment: stat: %w", err))
	}
	size := st.Size()
	scan := scanSegment
	if clean && !last {
		scan = walkHeaders
	}
	meta, fault, err := scan(f, size, base, l.opts.IndexIntervalBytes)
	if err != nil {
		return fail(fmt.Errorf("segment: scan %s: %w", path, err))
	}
	if !clean || last {
		rep.VerifiedBytes += size
	}
	if fault != nil {
		if !last {
			return fail(&CorruptError{File: path, Position: fault.pos, Reason: fault.reason + " (not the last segment: later segments hold data)"})
		}
		at, found, err := findValidBatchAfter(f, size, fault.pos, meta.lastOffset)
		if err != nil {
			return fail(fmt.Errorf("segment: scan %s: %w", path, err))
		}
		if found {
			return fail(&CorruptError{File: path, Position: fault.pos,
				Reason: fmt.Sprintf("%s (a valid batch follows at byte %d, so this is not a torn tail)", fault.reason, at)})
		}
		tr := Truncation{File: path, Position: fault.pos, Bytes: size - fault.pos,
			FirstOffset: meta.lastOffset + 1, LastOffset: -1, Reason: fault.reason}
		if fault.hdr != nil && fault.hdr.BaseOffset == meta.lastOffset+1 {
			tr.LastOffset = fault.hdr.lastOffset()
		}
		if err := f.Truncate(fault.pos); err != nil {
			return fail(fmt.Errorf("segment: truncate torn tail of %s: %w", path, err))
		}
		if err := f.Sync(); err != nil {
			return fail(fmt.Errorf("segment: sync %s: %w", path, err))
		}
		rep.Truncated = append(rep.Truncated, tr)
	}
	s.meta = meta
	offIdx, timeIdx := encodeIndexes(&s.meta)
	for _, x := range []struct {
		path string
		data []byte
	}{{s.indexPath(), offIdx}, {s.timeIndexPath(), timeIdx}} {
		rebuilt, err := syncIndexFile(x.path, x.data)
		if err != nil {
			return fail(fmt.Errorf("segment: rebuild index: %w", err))
		}
		if rebuilt {
			rep.RebuiltIndexes = append(rep.RebuiltIndexes, x.path)
		}
	}
	return s, nil
}

// recoverEpochs loads the epoch checkpoint and reconciles it with the
// epochs found in the batches.
func (l *Log) recoverEpochs() error {
	rep := &l.recovery
	var derived epochHistory
	for _, s := range l.segs {
		for _, e := range s.meta.epochStarts {
			derived.assign(e.Epoch, e.StartOffset)
		}
	}
	path := filepath.Join(l.dir, epochFileName)
	h, err := readEpochFile(path)
	changed := false
	switch {
	case errors.Is(err, os.ErrNotExist):
		h, changed = derived, len(derived) > 0
		if changed {
			rep.EpochHistory = "rebuilt from batches: checkpoint missing"
		}
	case err != nil:
		h, changed = derived, true
		rep.EpochHistory = "rebuilt from batches: " + err.Error()
	default:
		if h.truncateEnd(l.next) {
			changed = true
			rep.EpochHistory = "truncated to the recovered log end"
		}
		// The checkpoint is written before the first batch of a new epoch,
		// so it can only lack epochs if it was lost or replaced.
		for _, e := range derived {
			if h.assign(e.Epoch, e.StartOffset) {
				changed = true
				rep.EpochHistory = "extended with epochs found in batches"
			}
		}
	}
	if h.truncateStart(l.start) {
		changed = true
	}
	l.epochs = h
	if changed {
		if err := writeFileAtomic(path, encodeEpochFile(h)); err != nil {
			return fmt.Errorf("segment: write epoch checkpoint: %w", err)
		}
	}
	return nil
}

// createSegment creates the files of a new, empty segment and makes their
// directory entries durable.
func createSegment(dir string, base, now int64) (*segment, error) {
	path := filepath.Join(dir, segmentName(base)+logSuffix)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("segment: create: %w", err)
	}
	s := &segment{meta: newSegMeta(base), path: path, f: f, activeSince: now}
	for _, p := range []string{s.indexPath(), s.timeIndexPath()} {
		if err := os.Truncate(p, 0); err != nil && !errors.Is(err, os.ErrNotExist) {
			f.Close()
			return nil, fmt.Errorf("segment: reset index: %w", err)
		}
	}
	if err := s.openIndexAppenders(); err != nil {
		f.Close()
		return nil, fmt.Errorf("segment: create index: %w", err)
	}
	if err := syncDir(dir); err != nil {
		s.closeFiles()
		return nil, fmt.Errorf("segment: sync dir: %w", err)
	}
	return s, nil
}

// Close flushes every segment to disk (whatever the flush policy), stops the
// background flusher and closes all files. Appends waiting for durability
// are released by the final fsync. Later calls return ErrClosed.
func (l *Log) Close() error {
	l.closing.Store(true)
	l.adminMu.Lock()
	defer l.adminMu.Unlock()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	l.closed = true
	l.mu.Unlock()
	l.qmu.Lock()
	l.qclosed = true
	l.qmu.Unlock()
	close(l.stop)
	l.wg.Wait()
	err := l.syncRound()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.segs {
		if cerr := s.closeFiles(); err == nil {
			err = cerr
		}
	}
	l.cmu.Lock()
	failed := l.syncErr != nil
	l.cmu.Unlock()
	if err == nil && l.failed == nil && !failed {
		// Everything is fsynced: the next Open may skip verifying the
		// closed segments.
		err = writeFileAtomic(filepath.Join(l.dir, cleanShutdownFile), nil)
	}
	if cerr := l.lockFile.Close(); err == nil {
		err = cerr
	}
	return err
}

// StartOffset is the first offset the log retains (the base offset of its
// oldest segment; after compaction the record there may be gone).
func (l *Log) StartOffset() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.start
}

// EndOffset is the offset the next appended record will get (the log end
// offset). Records in [StartOffset, EndOffset) are readable, including ones
// not yet durable; see DurableEndOffset.
func (l *Log) EndOffset() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.next
}

// DurableEndOffset is the end of the prefix of the log known to be on stable
// storage: every record below it was covered by an fsync. Under "sync" it
// trails EndOffset only while appends wait for their group commit.
func (l *Log) DurableEndOffset() int64 {
	l.cmu.Lock()
	defer l.cmu.Unlock()
	return l.durableOff
}

// Size is the total size in bytes of the log's segment files.
func (l *Log) Size() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	var n int64
	for _, s := range l.segs {
		n += s.meta.size
	}
	return n
}

// EpochStartOffsets returns a copy of the epoch history: for each leader
// epoch that appended to this log, the offset of its first record, oldest
// first. It is persisted in the leader-epoch-checkpoint file.
func (l *Log) EpochStartOffsets() []EpochStart {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return slices.Clone(l.epochs)
}

// EndOffsetForEpoch answers a follower's "where does my epoch end here?"
// (KIP-101/279): it returns the largest epoch <= epoch in the history and
// the offset where the next epoch starts, or EndOffset for the latest one.
// It returns (-1, -1) when the log knows no epoch <= epoch.
func (l *Log) EndOffsetForEpoch(epoch int32) (int32, int64) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.epochs.endOffsetFor(epoch, l.next)
}

// Recovery reports what Open found and repaired.
func (l *Log) Recovery() RecoveryReport {
	l.mu.RLock()
	defer l.mu.RUnlock()
	r := l.recovery
	r.Truncated = slices.Clone(r.Truncated)
	r.RebuiltIndexes = slices.Clone(r.RebuiltIndexes)
	r.RemovedFiles = slices.Clone(r.RemovedFiles)
	return r
}

// RecoveryReport is what Open found and did.
type RecoveryReport struct {
	Segments int // segments opened
	// CleanShutdown is true when the previous Close completed. Then only the
	// last segment is verified byte by byte (CRC and records); older ones
	// are walked header by header. After a crash every segment is verified.
	CleanShutdown bool
	// VerifiedBytes counts the bytes of log whose CRCs were checked.
	VerifiedBytes int64
	// Truncated lists torn or corrupt tails that were cut off.
	Truncated []Truncation
	// RebuiltIndexes lists index files that were missing or stale and were
	// rewritten from the log.
	RebuiltIndexes []string
	// RemovedFiles lists leftovers of interrupted operations that were
	// deleted (partial compaction output, temporary files, orphan indexes,
	// segments replaced by a compaction merge that Open completed).
	RemovedFiles []string
	// EpochHistory says how the epoch checkpoint was repaired; empty when it
	// was loaded as is.
	EpochHistory string
	// StartOffset and EndOffset of the log after recovery.
	StartOffset, EndOffset int64
}

// Truncation describes bytes cut from the end of the last segment.
type Truncation struct {
	File     string // segment file
	Position int64  // byte position where the file was cut
	Bytes    int64  // bytes removed
	// FirstOffset is the first offset lost: the log's end after recovery.
	FirstOffset int64
	// LastOffset is the last offset the cut batch claimed to hold, or -1
	// when its header was unreadable.
	LastOffset int64
	Reason     string // the failed check
}

// nowMs reads the injected clock.
func (l *Log) nowMs() int64 { return l.opts.Now().UnixMilli() }

// msAgo converts a duration to milliseconds.
func durMs(d time.Duration) int64 { return d.Milliseconds() }

// Stats is a snapshot of a log's counters, for metrics.
type Stats struct {
	Segments         int
	SizeBytes        int64
	StartOffset      int64
	EndOffset        int64
	DurableEndOffset int64
	// Batches is the number of batches appended since Open.
	Batches uint64
	// Fsyncs is the number of flush rounds (group commits under "sync",
	// ticks with new data under "interval") since Open; Batches/Fsyncs is
	// the average group size.
	Fsyncs int64
	// FsyncLatency is how long those flush rounds' fdatasyncs took.
	FsyncLatency LatencyHistogram
}

// Stats returns current counters. It takes the log's read lock briefly.
func (l *Log) Stats() Stats {
	l.mu.RLock()
	st := Stats{Segments: len(l.segs), StartOffset: l.start, EndOffset: l.next, Batches: l.writeSeq}
	for _, s := range l.segs {
		st.SizeBytes += s.meta.size
	}
	l.mu.RUnlock()
	st.DurableEndOffset = l.DurableEndOffset()
	st.Fsyncs = l.fsyncs.Load()
	st.FsyncLatency = l.fsyncLatency.snapshot()
	return st
}
