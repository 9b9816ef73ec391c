package lb

import "sync/atomic"

// RoundRobin hands out endpoints in turn. Ineligible endpoints are skipped:
// the next eligible one after the turn's position is taken, and the turns
// of the positions skipped are taken with it, so that the next pick goes
// on after it. An ejected endpoint's share is thus spread evenly over the
// others rather than given to its successor.
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
	start := int(turn % uint64(n))
	i := scanFrom(c, n, start)
	if skipped := i - start; i >= 0 && skipped != 0 {
		if skipped < 0 {
			skipped += n
		}
		r.next.Add(uint64(skipped))
	}
	return i
}

var _ Picker = (*RoundRobin)(nil)
