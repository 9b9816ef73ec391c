package lb

// Random picks a uniformly random eligible endpoint.
type Random struct {
	intn IntN
}

// NewRandom returns a random policy; intn nil means math/rand/v2.IntN.
func NewRandom(intn IntN) *Random { return &Random{intn: orDefault(intn)} }

// Pick implements Picker: a uniform draw over the eligible endpoints.
func (r *Random) Pick(c Candidates) int {
	n := c.Len()
	if n == 0 {
		return -1
	}
	return drawEligible(c, n, -1, r.intn)
}

var _ Picker = (*Random)(nil)
