package lb

import (
	"math/rand/v2"
)

// Candidates is the view of a cluster's endpoints that a policy picks from.
// Implementations must be cheap: Pick calls Eligible and Active several times.
type Candidates interface {
	// Len is the number of endpoints, eligible or not.
	Len() int
	// Eligible reports whether endpoint i may receive this attempt.
	Eligible(i int) bool
	// Active is the number of requests endpoint i has in flight.
	Active(i int) int64
	// Weight is endpoint i's weight, at least 1 (1 for all when the
	// weights are equal). The positions already repeat an endpoint in
	// proportion to its weight, which is all round robin and random need;
	// least_request also weighs the requests in flight by it.
	Weight(i int) int64
}

// Picker chooses one endpoint among Candidates.
type Picker interface {
	// Pick returns the index of an eligible endpoint, or -1 if none is.
	Pick(c Candidates) int
}

// IntN returns a uniformly distributed int in [0, n); n > 0.
// Policies take one so that tests can make picks deterministic.
type IntN func(n int) int

func orDefault(r IntN) IntN {
	if r == nil {
		return rand.IntN
	}
	return r
}

// scanFrom returns the first eligible index at or after start (wrapping),
// or -1 when none is eligible.
func scanFrom(c Candidates, n, start int) int {
	for k := 0; k < n; k++ {
		i := start + k
		if i >= n {
			i -= n
		}
		if c.Eligible(i) {
			return i
		}
	}
	return -1
}

// drawEligible returns an eligible index other than not (-1 excludes
// none), uniformly among them, or -1 when there is none. One draw serves
// when it lands on an eligible index, as it does while every endpoint is
// eligible; otherwise the k-th eligible index is taken for a second draw
// k, which keeps each eligible index at exactly 1/m (taking the next
// eligible index after the first draw would give an ineligible one's
// share to its successor, twice the load of the others).
func drawEligible(c Candidates, n, not int, intn IntN) int {
	if i := intn(n); i != not && c.Eligible(i) {
		return i
	}
	m := 0
	for i := 0; i < n; i++ {
		if i != not && c.Eligible(i) {
			m++
		}
	}
	if m == 0 {
		return -1
	}
	k := intn(m)
	for i := 0; i < n; i++ {
		if i != not && c.Eligible(i) {
			if k == 0 {
				return i
			}
			k--
		}
	}
	// Eligibility changed between the scans (an ejection, a return).
	return scanFrom(c, n, 0)
}
