package lb

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type set struct {
	eligible []bool
	active   []int64
}

func newSet(n int) *set {
	s := &set{eligible: make([]bool, n), active: make([]int64, n)}
	for i := range s.eligible {
		s.eligible[i] = true
	}
	return s
}

func (s *set) Len() int            { return len(s.eligible) }
func (s *set) Eligible(i int) bool { return s.eligible[i] }
func (s *set) Active(i int) int64  { return s.active[i] }

func seeded(seed uint64) IntN {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var mu sync.Mutex
	return func(n int) int {
		mu.Lock()
		defer mu.Unlock()
		return r.IntN(n)
	}
}

func policies() map[string]Picker {
	return map[string]Picker{
		"round_robin":   NewRoundRobin(),
		"random":        NewRandom(seeded(1)),
		"least_request": NewLeastRequest(seeded(2)),
	}
}

func TestPickEmptyAndNoneEligibleReturnsMinusOne(t *testing.T) {
	for name, p := range policies() {
		if got := p.Pick(newSet(0)); got != -1 {
			t.Errorf("%s: empty set: got %d, want -1", name, got)
		}
		s := newSet(3)
		for i := range s.eligible {
			s.eligible[i] = false
		}
		for k := 0; k < 10; k++ {
			if got := p.Pick(s); got != -1 {
				t.Errorf("%s: none eligible: got %d, want -1", name, got)
			}
		}
	}
}

func TestPickNeverReturnsIneligible(t *testing.T) {
	for name, p := range policies() {
		s := newSet(7)
		s.eligible[0], s.eligible[3], s.eligible[6] = false, false, false
		for k := 0; k < 2000; k++ {
			i := p.Pick(s)
			if i < 0 || i >= 7 || !s.eligible[i] {
				t.Fatalf("%s: picked %d", name, i)
			}
		}
	}
}

func TestRoundRobinIsExactlyFair(t *testing.T) {
	p := NewRoundRobin()
	s := newSet(4)
	counts := make([]int, 4)
	for k := 0; k < 400; k++ {
		counts[p.Pick(s)]++
	}
	for i, c := range counts {
		if c != 100 {
			t.Fatalf("endpoint %d got %d picks, want 100 (%v)", i, c, counts)
		}
	}
}

func TestRoundRobinConcurrentPicksStayFair(t *testing.T) {
	p := NewRoundRobin()
	s := newSet(5)
	var mu sync.Mutex
	counts := make([]int, 5)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]int, 5)
			for k := 0; k < 1000; k++ {
				local[p.Pick(s)]++
			}
			mu.Lock()
			for i := range local {
				counts[i] += local[i]
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	for i, c := range counts {
		if c != 800 {
			t.Fatalf("endpoint %d got %d, want 800 (%v)", i, c, counts)
		}
	}
}

// chiSquareUniform checks counts against a uniform distribution over the
// indices in want (all others must be zero) at a generous threshold.
func chiSquareUniform(t *testing.T, name string, counts []int, want []int) {
	t.Helper()
	total := 0
	for _, c := range counts {
		total += c
	}
	exp := float64(total) / float64(len(want))
	in := map[int]bool{}
	var chi float64
	for _, i := range want {
		in[i] = true
		d := float64(counts[i]) - exp
		chi += d * d / exp
	}
	for i, c := range counts {
		if !in[i] && c != 0 {
			t.Fatalf("%s: ineligible endpoint %d picked %d times", name, i, c)
		}
	}
	// 99.9th percentile of chi-square with <= 9 degrees of freedom is < 28.
	if chi > 28 {
		t.Fatalf("%s: distribution not uniform: chi2=%.1f counts=%v", name, chi, counts)
	}
}

func TestRandomDistributionIsUniform(t *testing.T) {
	p := NewRandom(seeded(42))
	s := newSet(6)
	counts := make([]int, 6)
	for k := 0; k < 60000; k++ {
		counts[p.Pick(s)]++
	}
	chiSquareUniform(t, "random", counts, []int{0, 1, 2, 3, 4, 5})
}

func TestLeastRequestEqualLoadIsUniform(t *testing.T) {
	p := NewLeastRequest(seeded(7))
	s := newSet(5)
	counts := make([]int, 5)
	for k := 0; k < 50000; k++ {
		counts[p.Pick(s)]++
	}
	chiSquareUniform(t, "least_request", counts, []int{0, 1, 2, 3, 4})
}

func TestLeastRequestPrefersLessLoaded(t *testing.T) {
	p := NewLeastRequest(seeded(9))
	s := newSet(4)
	s.active = []int64{10, 10, 0, 10}
	counts := make([]int, 4)
	const n = 40000
	for k := 0; k < n; k++ {
		counts[p.Pick(s)]++
	}
	// Endpoint 2 wins every draw that includes it: P = 1 - (3/4)*(2/3) = 1/2.
	share := float64(counts[2]) / n
	if math.Abs(share-0.5) > 0.02 {
		t.Fatalf("idle endpoint share = %.3f, want ~0.5 (%v)", share, counts)
	}
}

func TestLeastRequestNeverPicksBusierOfTwo(t *testing.T) {
	p := NewLeastRequest(seeded(3))
	s := newSet(2)
	s.active = []int64{5, 1}
	for k := 0; k < 1000; k++ {
		if got := p.Pick(s); got != 1 {
			t.Fatalf("pick %d: got %d, want the less loaded endpoint 1", k, got)
		}
	}
}

func TestLeastRequestSkipsIneligibleDistribution(t *testing.T) {
	p := NewLeastRequest(seeded(11))
	s := newSet(6)
	s.eligible[1], s.eligible[4] = false, false
	counts := make([]int, 6)
	for k := 0; k < 40000; k++ {
		counts[p.Pick(s)]++
	}
	// With equal load every eligible endpoint gets about a quarter.
	for _, i := range []int{0, 2, 3, 5} {
		share := float64(counts[i]) / 40000
		if share < 0.15 || share > 0.35 {
			t.Fatalf("endpoint %d share %.3f out of range (%v)", i, share, counts)
		}
	}
	if counts[1] != 0 || counts[4] != 0 {
		t.Fatalf("ejected endpoints picked: %v", counts)
	}
}

func BenchmarkPick(b *testing.B) {
	s := newSet(16)
	for name, p := range policies() {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p.Pick(s)
			}
		})
	}
}

func TestPickSingleEndpoint(t *testing.T) {
	for name, p := range policies() {
		s := newSet(1)
		s.active[0] = 7
		for k := 0; k < 20; k++ {
			if got := p.Pick(s); got != 0 {
				t.Fatalf("%s: one eligible endpoint: got %d, want 0", name, got)
			}
		}
		s.eligible[0] = false
		for k := 0; k < 20; k++ {
			if got := p.Pick(s); got != -1 {
				t.Fatalf("%s: one ineligible endpoint: got %d, want -1", name, got)
			}
		}
	}
}

// A policy shared by snapshots of different sizes (a reload that adds or
// removes endpoints while picks go on) only ever returns an index of the
// set it was given.
func TestPickAcrossSetsOfDifferentSizes(t *testing.T) {
	for name, p := range policies() {
		var wg sync.WaitGroup
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := 0; k < 2000; k++ {
					n := (k+g)%5 + 1
					s := newSet(n)
					s.eligible[k%n] = k%3 != 0 || n == 1
					i := p.Pick(s)
					if i < -1 || i >= n || i >= 0 && !s.eligible[i] {
						t.Errorf("%s: set of %d: picked %d", name, n, i)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
}

// NewRoundRobinFrom's first turn is its start, modulo the endpoints, and
// the turns go on from there.
func TestRoundRobinFromStartsAtItsStart(t *testing.T) {
	c := newSet(3)
	for i := range c.eligible {
		c.eligible[i] = true
	}
	for _, tc := range []struct {
		start uint64
		want  []int
	}{
		{0, []int{0, 1, 2, 0}},
		{1, []int{1, 2, 0, 1}},
		{5, []int{2, 0, 1, 2}},
		{1<<32 + 1, []int{1, 2, 0, 1}}, // only the low 32 bits count
	} {
		r := NewRoundRobinFrom(tc.start)
		var got []int
		for range tc.want {
			got = append(got, r.Pick(c))
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("start %d: picks %v, want %v", tc.start, got, tc.want)
		}
	}
}
