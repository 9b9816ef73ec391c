package lb

// LeastRequest is the "power of two choices" policy: draw two eligible
// endpoints at random and take the one with fewer requests in flight
// (Mitzenmacher, "The Power of Two Choices in Randomized Load Balancing")
// per unit of weight, so that endpoints of unequal weights hold requests
// in proportion to them, as Envoy's weighted least request does. It
// reacts to slow endpoints without the herd behaviour of a global
// least-loaded scan, and costs two draws per pick.
type LeastRequest struct {
	intn IntN
}

// NewLeastRequest returns a P2C policy; intn nil means math/rand/v2.IntN.
func NewLeastRequest(intn IntN) *LeastRequest { return &LeastRequest{intn: orDefault(intn)} }

// Pick implements Picker.
func (l *LeastRequest) Pick(c Candidates) int {
	n := c.Len()
	if n == 0 {
		return -1
	}
	a := drawEligible(c, n, -1, l.intn)
	if a < 0 || n == 1 {
		return a
	}
	// The second among the other eligible positions, so a != b whenever
	// two eligible endpoints exist.
	b := drawEligible(c, n, a, l.intn)
	if b < 0 {
		return a
	}
	// active(b)/weight(b) < active(a)/weight(a), without division.
	if c.Active(b)*c.Weight(a) < c.Active(a)*c.Weight(b) {
		return b
	}
	return a
}

var _ Picker = (*LeastRequest)(nil)
