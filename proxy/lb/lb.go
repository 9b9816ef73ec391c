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
