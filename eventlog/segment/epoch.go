package segment

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// epochFileName is the leader-epoch checkpoint in a partition directory.
const epochFileName = "leader-epoch-checkpoint"

// EpochStart says that leader epoch Epoch wrote its first record at
// StartOffset. A log's epoch history is ordered by both fields.
type EpochStart struct {
	Epoch       int32
	StartOffset int64
}

// epochHistory is the ordered list of epoch starts. It has no I/O; the Log
// persists it with writeEpochFile after each change.
type epochHistory []EpochStart

func (h epochHistory) latest() int32 {
	if len(h) == 0 {
		return -1
	}
	return h[len(h)-1].Epoch
}

// assign records that epoch starts at offset if epoch is newer than the
// latest; it reports whether the history changed.
func (h *epochHistory) assign(epoch int32, offset int64) bool {
	if epoch <= h.latest() {
		return false
	}
	*h = append(*h, EpochStart{Epoch: epoch, StartOffset: offset})
	return true
}

// truncateEnd drops epochs that start at or after end (log truncated to end).
func (h *epochHistory) truncateEnd(end int64) bool {
	n := len(*h)
	for n > 0 && (*h)[n-1].StartOffset >= end {
		n--
	}
	changed := n != len(*h)
	*h = (*h)[:n]
	return changed
}

// truncateStart drops epochs wholly below start and clamps the first kept
// one to start (log start moved by retention).
func (h *epochHistory) truncateStart(start int64) bool {
	s := *h
	i := 0
	for i+1 < len(s) && s[i+1].StartOffset <= start {
		i++
	}
	changed := i > 0
	s = s[i:]
	if len(s) > 0 && s[0].StartOffset < start {
		s[0].StartOffset = start
		changed = true
	}
	*h = s
	return changed
}

// endOffsetFor returns the largest epoch <= epoch in the history and the
// offset where the next epoch starts (or logEnd for the latest epoch): the
// answer a leader gives a follower asking where epoch ends (KIP-101/279).
// It returns (-1, -1) when no epoch <= epoch is known.
func (h epochHistory) endOffsetFor(epoch int32, logEnd int64) (int32, int64) {
	for i := len(h) - 1; i >= 0; i-- {
		if h[i].Epoch <= epoch {
			if i == len(h)-1 {
				return h[i].Epoch, logEnd
			}
			return h[i].Epoch, h[i+1].StartOffset
		}
	}
	return -1, -1
}

// encodeEpochFile renders the checkpoint: a version line "0", a count line,
// then one "<epoch> <start offset>" line per entry.
func encodeEpochFile(h epochHistory) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "0\n%d\n", len(h))
	for _, e := range h {
		fmt.Fprintf(&b, "%d %d\n", e.Epoch, e.StartOffset)
	}
	return b.Bytes()
}

// parseEpochFile parses a checkpoint written by encodeEpochFile.
func parseEpochFile(data []byte) (epochHistory, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	line := 0
	next := func() (string, bool) {
		if !sc.Scan() {
			return "", false
		}
		line++
		return sc.Text(), true
	}
	v, ok := next()
	if !ok || v != "0" {
		return nil, fmt.Errorf("line 1: want version 0")
	}
	c, ok := next()
	n, err := strconv.Atoi(c)
	if !ok || err != nil || n < 0 || n > len(data) {
		return nil, fmt.Errorf("line 2: bad entry count %q", c)
	}
	h := make(epochHistory, 0, n)
	for i := 0; i < n; i++ {
		l, ok := next()
		if !ok {
			return nil, fmt.Errorf("line %d: missing entry %d of %d", line+1, i+1, n)
		}
		f := strings.Fields(l)
		if len(f) != 2 {
			return nil, fmt.Errorf("line %d: want \"<epoch> <offset>\"", line)
		}
		e, err1 := strconv.ParseInt(f[0], 10, 32)
		o, err2 := strconv.ParseInt(f[1], 10, 64)
		if err1 != nil || err2 != nil || e < 0 || o < 0 {
			return nil, fmt.Errorf("line %d: bad entry %q", line, l)
		}
		if len(h) > 0 && (int32(e) <= h.latest() || o < h[len(h)-1].StartOffset) {
			return nil, fmt.Errorf("line %d: entry %q out of order", line, l)
		}
		h = append(h, EpochStart{Epoch: int32(e), StartOffset: o})
	}
	if _, extra := next(); extra {
		return nil, fmt.Errorf("line %d: unexpected trailing data", line)
	}
	return h, nil
}

func readEpochFile(path string) (epochHistory, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseEpochFile(data)
}
