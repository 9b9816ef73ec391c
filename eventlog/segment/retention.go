package segment

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// RetentionResult says what EnforceRetention deleted.
type RetentionResult struct {
	DeletedSegments []string // paths of deleted segment files
	DeletedBytes    int64
	StartOffset     int64 // the log start offset afterwards
}

// EnforceRetention deletes whole segments from the oldest end: first those
// whose largest timestamp is older than now - RetentionAge, then more while
// the log's total size exceeds RetentionBytes. It never deletes the active
// segment, so at least the newest records stay. With both limits 0 it does
// nothing. It runs whatever Options.Compact says.
func (l *Log) EnforceRetention(now time.Time) (RetentionResult, error) {
	l.adminMu.Lock()
	defer l.adminMu.Unlock()
	// syncMu only while detaching: a flush round that captured one of these
	// segments (before it stopped being active) has finished once syncMu is
	// ours, and later rounds only see the active segment. The deletions
	// below then run without delaying group commits.
	l.syncMu.Lock()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		l.syncMu.Unlock()
		return RetentionResult{}, ErrClosed
	}
	var total int64
	for _, s := range l.segs {
		total += s.meta.size
	}
	cutoff := now.UnixMilli() - durMs(l.opts.RetentionAge)
	n := 0
	for n < len(l.segs)-1 {
		s := l.segs[n]
		byAge := l.opts.RetentionAge > 0 && (s.meta.maxTs == noTimestamp || s.meta.maxTs < cutoff)
		bySize := l.opts.RetentionBytes > 0 && total > l.opts.RetentionBytes
		if !byAge && !bySize {
			break
		}
		total -= s.meta.size
		n++
	}
	res := RetentionResult{StartOffset: l.start}
	if n == 0 {
		l.mu.Unlock()
		l.syncMu.Unlock()
		return res, nil
	}
	drop := append([]*segment(nil), l.segs[:n]...)
	l.segs = append([]*segment(nil), l.segs[n:]...)
	l.start = l.segs[0].meta.base
	res.StartOffset = l.start
	var epochErr error
	if l.epochs.truncateStart(l.start) {
		epochErr = writeFileAtomic(filepath.Join(l.dir, epochFileName), encodeEpochFile(l.epochs))
	}
	l.mu.Unlock()
	l.syncMu.Unlock()
	// No reader or flush round can reach the dropped segments any more.
	for _, s := range drop {
		s.closeFiles()
		if err := os.Remove(s.path); err != nil {
			return res, fmt.Errorf("segment: delete %s: %w", s.path, err)
		}
		_ = os.Remove(s.indexPath())
		_ = os.Remove(s.timeIndexPath())
		res.DeletedSegments = append(res.DeletedSegments, s.path)
		res.DeletedBytes += s.meta.size
	}
	if err := syncDir(l.dir); err != nil {
		return res, fmt.Errorf("segment: sync dir: %w", err)
	}
	if epochErr != nil {
		return res, fmt.Errorf("segment: write epoch checkpoint: %w", epochErr)
	}
	return res, nil
}
