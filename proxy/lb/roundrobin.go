package lb

import "sync/atomic"

// RoundRobin hands out endpoints in turn. Ineligible endpoints are skipped:
// the next eligible one after the turn's position is taken, so a single
// ejected endpoint shifts its share to its successor until it returns.
type RoundRobin struct {
	next atomic.Uint64
}

// NewRoundRobin returns a round-robin policy starting at endpoint 0.
func NewRoundRobin() *RoundRobin { return &RoundRobin{} }

// Pick implements Picker.
func (r *RoundRobin) Pick(c Candidates) int {
	n := c.Len()
	if n == 0 {
		return -1
	}
	turn := r.next.Add(1) - 1
	return scanFrom(c, n, int(turn%uint64(n)))
}

var _ Picker = (*RoundRobin)(nil)
