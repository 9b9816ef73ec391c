package lb

import (
	"sync"
	"testing"
)

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

// Weight implements Candidates: the sets of the tests are unweighted.
func (s *set) Weight(int) int64 { return 1 }

// weighted is a set whose positions repeat endpoints by weight, as the
// proxy lays them out.
type weighted struct {
	*set
	slots   []int // position -> endpoint
	weights []int64
}

func (w *weighted) Len() int            { return len(w.slots) }
func (w *weighted) Eligible(i int) bool { return w.set.Eligible(w.slots[i]) }
func (w *weighted) Active(i int) int64  { return w.set.Active(w.slots[i]) }
func (w *weighted) Weight(i int) int64  { return w.weights[w.slots[i]] }

// least_request weighs requests in flight by the endpoints' weights:
// with loads already in proportion to weights 1 and 3, picks keep that
// proportion (a quarter to the light endpoint), where comparing the
// bare counts sent the light endpoint every mixed draw, half the picks.
func TestLeastRequestWeighsInFlightByWeight(t *testing.T) {
	p := NewLeastRequest(seeded(5))
	w := &weighted{set: newSet(2), slots: []int{1, 1, 0, 1}, weights: []int64{1, 3}}
	w.active = []int64{10, 30}
	counts := make([]int, 2)
	const n = 40000
	for range n {
		i := p.Pick(w)
		counts[w.slots[i]]++
	}
	if share := float64(counts[0]) / n; share < 0.22 || share > 0.28 {
		t.Fatalf("light endpoint share %.3f (%v), want about 0.25", share, counts)
	}
}

// Round robin spreads an ineligible endpoint's turns evenly under
// concurrent picks too: each turn is taken by one pick, and a pick that
// lands on an ineligible position takes the next turn, not the next
// position, so no eligible position is ever passed over. Skipping
// positions by moving the shared counter on after the scan moved it past
// turns other picks had taken meanwhile, and gave the endpoint after the
// ineligible one two to three times the other's share.
func TestRoundRobinConcurrentPicksAroundAnIneligibleEndpointStayFair(t *testing.T) {
	p := NewRoundRobin()
	s := newSet(3)
	s.eligible[1] = false
	const goroutines, picks = 8, 100000
	counts := make([][3]int, goroutines)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for range picks {
				counts[g][p.Pick(s)]++
			}
		}()
	}
	close(start)
	wg.Wait()
	var total [3]int
	for _, c := range counts {
		for i := range c {
			total[i] += c[i]
		}
	}
	// Every turn goes to one pick: the eligible positions of the turns
	// taken, 0 and 2 alternately, differ by at most one.
	if d := total[0] - total[2]; total[1] != 0 || d < -1 || d > 1 {
		t.Fatalf("counts %v, want 0 for endpoint 1 and endpoints 0 and 2 within one", total)
	}
}
