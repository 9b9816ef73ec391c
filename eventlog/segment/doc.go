// Package segment stores one partition of the event log on local disk: an
// append-only sequence of records with dense, increasing offsets, kept in
// segment files, with sparse indexes, crash recovery, retention and
// compaction. It has no notion of topics, replicas or consumers; package
// eventlog builds those on top of a Log.
//
// # Invariants
//
//   - Offsets are assigned by Append, consecutively, starting at EndOffset.
//     A record never changes offset; compaction removes records but keeps
//     the offsets of the ones it keeps, so readers must accept gaps.
//   - An acknowledged Append under the "sync" flush policy (the default)
//     survives a crash of the process or the machine. Under "interval" and
//     "os" it survives a crash of the process only. See docs/storage.md.
//   - Open never silently drops data: only an invalid tail of the last
//     segment (a torn write) is cut, and that is reported by Recovery. Any
//     other damage fails Open (or Read) with a *CorruptError naming the
//     file and the byte position. After a crash Open verifies every batch's
//     CRC; after a clean Close it verifies the last segment and walks the
//     older ones header by header (Read checks every CRC it reads).
//   - Every byte read from disk is bounds-checked before use; no input makes
//     the decoder panic or allocate more than one batch's length (capped at
//     64 MiB).
//   - Retention deletes whole segments from the oldest end and never the
//     active segment.
//   - Leader epochs in the log never decrease; the epoch history
//     (EpochStartOffsets) is persisted before the first batch of a new epoch
//     is written.
//
// # Directory layout
//
// A partition is a directory:
//
//	00000000000000000000.log        segment with base offset 0
//	00000000000000000000.index      its sparse offset index
//	00000000000000000000.timeindex  its sparse time index
//	00000000000000004096.log        next segment, base offset 4096, ...
//	leader-epoch-checkpoint         epoch history
//	clean-shutdown                  left by a clean Close, removed by Open
//	.lock                           flock(2)ed while a Log has it open
//
// File names are the segment's base offset in 20 decimal digits. The last
// segment is the active one; only it is appended to. Transient files:
// "<name>.log.cleaned" (compaction output before its rename) and "*.tmp"
// (atomic writes), which Open deletes, and "<first>-<end>.swap" (a finished
// compaction merge replacing the segments based in [first, end)), which
// Open completes.
//
// # Batch format (version 1)
//
// A segment is a concatenation of batches. All fixed-width integers are
// big-endian; "varint" is zig-zag base-128 (encoding/binary.AppendVarint).
//
//	off size field
//	  0    8 base offset        offset of the first record
//	  8    4 length             bytes after this field (total size - 12)
//	 12    4 leader epoch       epoch of the leader that appended the batch
//	 16    1 magic              1
//	 17    4 crc                CRC-32C (Castagnoli) of bytes [21, end)
//	 21    2 attributes         bit 3: timestamps are log-append time;
//	                            other bits 0 (no compression)
//	 23    4 last offset delta  last offset - base offset
//	 27    8 first timestamp    ms since the Unix epoch
//	 35    8 max timestamp      ms since the Unix epoch
//	 43    4 record count
//	 47      records
//
// Base offset and leader epoch are outside the CRC so that a batch can be
// encoded before its offset is known. Each record:
//
//	varint  length of the rest of the record
//	int8    attributes (0)
//	varint  timestamp delta (from first timestamp; ignored under log-append
//	        time, where every record has the max timestamp)
//	varint  offset delta (from base offset; strictly increasing in a batch)
//	varint  key length (-1 = nil key), then the key bytes
//	varint  value length (-1 = nil value, a tombstone), then the value bytes
//	varint  header count, then per header:
//	          varint key length (>= 0), key bytes,
//	          varint value length (-1 = nil), value bytes
//
// After compaction a batch may hold fewer records than last offset delta+1;
// its base offset is that of its first remaining record and its last offset
// delta still spans the original batch.
//
// # Indexes
//
// Both indexes are sparse, derived from the log, and rebuilt by Open when
// missing or different from what the log implies. An entry is added for the
// first batch that starts after at least IndexIntervalBytes of log since the
// previous entry (or the segment start).
//
//	.index      8-byte entries: uint32 offset - base offset,
//	            uint32 byte position of the batch in the .log
//	.timeindex  12-byte entries: int64 largest timestamp (ms) of all batches
//	            before that position (math.MinInt64 if none),
//	            uint32 offset - base offset (same batch as the .index entry)
//
// # Epoch checkpoint
//
// leader-epoch-checkpoint is text: a line "0" (version), a line with the
// number of entries, then one "<epoch> <start offset>" line per entry,
// ascending. It is replaced atomically: write a temporary file, fsync,
// rename, fsync the directory.
//
// # Concurrency
//
// A Log is safe for concurrent use. Under the "sync" policy Append encodes
// its batch without a lock and queues it; a committer goroutine owned by the
// Log takes everything queued, gives the batches consecutive offsets under
// the log's mutex, writes them with one write, fdatasyncs once for the
// group and then releases each appender (group commit); batches queued
// during that fsync form the next group. Under "interval" and "os" an
// Append writes its batch itself under the mutex. Close refuses new
// appends, releases queued ones with ErrClosed and joins the committer.
// Reads share a read lock with each other.
package segment
