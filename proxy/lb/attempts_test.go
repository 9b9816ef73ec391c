package lb

import "testing"

// An ineligible endpoint's share is spread evenly over the eligible ones,
// wherever they sit: the endpoint after an ejected one took its share on
// top of its own, under every policy.
func TestIneligibleShareIsSpreadEvenly(t *testing.T) {
	for name, p := range policies() {
		s := newSet(5)
		s.eligible[1], s.eligible[2], s.eligible[3] = false, false, false
		counts := make([]int, 5)
		const n = 20000
		for range n {
			counts[p.Pick(s)]++
		}
		if name == "round_robin" {
			if counts[0] != n/2 || counts[4] != n/2 {
				t.Fatalf("round_robin: %v, want %d each for 0 and 4", counts, n/2)
			}
			continue
		}
		chiSquareUniform(t, name, counts, []int{0, 4})
	}
}

// Round robin over the endpoints left stays in turn: with one of three
// out, the other two alternate.
func TestRoundRobinAlternatesAroundAnIneligibleEndpoint(t *testing.T) {
	p := NewRoundRobin()
	s := newSet(3)
	s.eligible[0] = false
	prev := p.Pick(s)
	for k := 0; k < 100; k++ {
		i := p.Pick(s)
		if i == prev || i == 0 {
			t.Fatalf("pick %d: %d after %d", k, i, prev)
		}
		prev = i
	}
}
