package lb

import "sync/atomic"

// RoundRobin hands out endpoints in turn. Each turn is taken by exactly
// one pick, and a pick whose turn falls on an ineligible endpoint takes
// further turns, up to one that falls on an eligible endpoint. So every
// eligible endpoint gets each of its turns and no more, and an ineligible
// one's turns go to the picks that come next: its share is spread evenly
// over the others rather than given to its successor, under concurrent
// picks as one at a time.
//
// Such a pick takes the turns up to the next eligible position at once
// (one scan, one compare-and-swap) when no other pick took a turn
// meanwhile, else one at a time. Moving the counter past the positions
// skipped whatever happened meanwhile took turns that concurrent picks
// had already taken, so the endpoint after an ineligible one got two to
// three times the others' share under load.
type RoundRobin struct {
	next atomic.Uint64
}

// NewRoundRobin returns a round-robin policy starting at endpoint 0.
func NewRoundRobin() *RoundRobin { return &RoundRobin{} }

// NewRoundRobinFrom returns a round-robin policy whose first turn is
// start's low 32 bits (modulo the endpoint count), so that the turn
// counter is nowhere near its wrap: a proxy that starts each cluster's
// turns at a random endpoint keeps a fleet of proxies started together
// from sending their first requests to the same endpoint.
func NewRoundRobinFrom(start uint64) *RoundRobin {
	r := &RoundRobin{}
	r.next.Store(start & (1<<32 - 1))
	return r
}

// Pick implements Picker.
func (r *RoundRobin) Pick(c Candidates) int {
	n := c.Len()
	if n == 0 {
		return -1
	}
	turn := r.next.Add(1) - 1
	start := int(turn % uint64(n))
	if c.Eligible(start) {
		return start
	}
	i := scanFrom(c, n, start)
	if i < 0 {
		return -1
	}
	skipped := i - start
	if skipped < 0 {
		skipped += n
	}
	// skipped is 0 when start became eligible since: the turn is its.
	if skipped == 0 || r.next.CompareAndSwap(turn+1, turn+1+uint64(skipped)) {
		return i
	}
	for {
		// n turns in a row cover every position when no other pick
		// takes one meanwhile; under concurrent picks they may not, so
		// after n misses a scan tells "none eligible" from "turns taken
		// by others".
		for range n {
			if i := int((r.next.Add(1) - 1) % uint64(n)); c.Eligible(i) {
				return i
			}
		}
		if scanFrom(c, n, 0) < 0 {
			return -1
		}
	}
}

var _ Picker = (*RoundRobin)(nil)
