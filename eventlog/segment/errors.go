package segment

import (
	"errors"
	"fmt"
)

// Sentinel errors. Callers branch on them with errors.Is.
var (
	// ErrOffsetOutOfRange is returned by Read when the requested offset is
	// below StartOffset or above EndOffset.
	ErrOffsetOutOfRange = errors.New("segment: offset out of range")
	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("segment: log closed")
	// ErrCorrupt is returned when bytes on disk fail a length, CRC or
	// structure check somewhere other than the recoverable tail. It is always
	// wrapped in a *CorruptError naming the file and byte position.
	ErrCorrupt = errors.New("segment: corrupt data")
	// ErrRecordTooLarge is returned by Append when the encoded batch exceeds
	// Options.MaxBatchBytes.
	ErrRecordTooLarge = errors.New("segment: record batch too large")
	// ErrStaleEpoch is returned by Append when the batch's leader epoch is
	// lower than the latest epoch already in the log: a fenced, stale leader.
	ErrStaleEpoch = errors.New("segment: leader epoch older than the log's latest epoch")
	// ErrDurabilityUnknown is returned by Append, together with the assigned
	// base offset, when the records were written to the log but the caller's
	// context ended before the flush policy's durability point was reached.
	// The records are in the log and may or may not survive a crash: report
	// the write as unknown, never as failed.
	ErrDurabilityUnknown = errors.New("segment: appended but durability unknown")
	// ErrLogFailed is returned by Append once an fsync or write has failed.
	// After such a failure the page cache may no longer match the disk, so the
	// Log refuses further writes; reopening it re-runs recovery.
	ErrLogFailed = errors.New("segment: log failed on an earlier I/O error")
	// ErrOffsetOrder is returned by AppendReplica when record offsets do not
	// increase or start below EndOffset.
	ErrOffsetOrder = errors.New("segment: replica offsets out of order")
	// ErrLocked is returned by Open when another Log holds the directory.
	ErrLocked = errors.New("segment: log directory locked by another process")
)

// CorruptError locates bad bytes on disk. It wraps ErrCorrupt.
type CorruptError struct {
	File     string // path of the damaged file
	Position int64  // byte position of the damaged batch (or index entry) in File
	Reason   string // what check failed
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("segment: corrupt data in %s at byte %d: %s", e.File, e.Position, e.Reason)
}

// Unwrap makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Unwrap() error { return ErrCorrupt }
