package lb

// Random picks a uniformly random eligible endpoint.
type Random struct {
	intn IntN
}

// NewRandom returns a random policy; intn nil means math/rand/v2.IntN.
func NewRandom(intn IntN) *Random { return &Random{intn: orDefault(intn)} }

// Pick implements Picker. When the random draw lands on an ineligible
// endpoint the next eligible one is taken, which keeps Pick O(n) worst case
// and allocation-free at the cost of a small bias toward endpoints that
// follow ejected ones.
func (r *Random) Pick(c Candidates) int {
	n := c.Len()
	if n == 0 {
		return -1
	}
	return scanFrom(c, n, r.intn(n))
}

var _ Picker = (*Random)(nil)
