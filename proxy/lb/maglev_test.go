package lb

import (
	"fmt"
	"slices"
	"testing"
)

func addrs(n int) []string {
	a := make([]string, n)
	for i := range a {
		a[i] = fmt.Sprintf("10.0.%d.%d:8080", i/250, i%250+1)
	}
	return a
}

// tableShares counts the slots of each endpoint.
func tableShares(m *Maglev) []int {
	counts := make([]int, m.n)
	for _, i := range m.table {
		counts[i]++
	}
	return counts
}

// Every slot is taken, and equal endpoints hold equal shares of the
// table, within one slot: they take their turns in step.
func TestMaglevTableIsFullAndEven(t *testing.T) {
	for _, n := range []int{1, 3, 5, 100} {
		m := NewMaglev(addrs(n), nil, nil)
		counts := tableShares(m)
		lo, hi := slices.Min(counts), slices.Max(counts)
		if hi-lo > 1 {
			t.Errorf("%d endpoints: shares from %d to %d slots", n, lo, hi)
		}
		sum := 0
		for _, c := range counts {
			sum += c
		}
		if sum != MaglevTableSize {
			t.Errorf("%d endpoints: %d slots taken, want %d", n, sum, MaglevTableSize)
		}
	}
}

// Weights scale an endpoint's share of the table, as Envoy's weighted
// Maglev does.
func TestMaglevWeightsScaleShares(t *testing.T) {
	m := NewMaglev(addrs(3), []uint32{1, 2, 5}, nil)
	counts := tableShares(m)
	for i, w := range []float64{1, 2, 5} {
		share := float64(counts[i]) / MaglevTableSize
		if want := w / 8; share < want*0.99 || share > want*1.01 {
			t.Errorf("endpoint %d (weight %v): share %.4f, want %.4f (%v)", i, w, share, want, counts)
		}
	}
}

// The table depends on the endpoints' addresses and weights only: built
// twice, or from the list in another order, it maps every key to the
// same address.
func TestMaglevTableIsDeterministic(t *testing.T) {
	a := addrs(7)
	w := []uint32{1, 1, 3, 1, 2, 1, 1}
	m1 := NewMaglev(a, w, nil)
	m2 := NewMaglev(a, w, nil)
	rev := slices.Clone(a)
	rw := slices.Clone(w)
	slices.Reverse(rev)
	slices.Reverse(rw)
	m3 := NewMaglev(rev, rw, nil)
	for k := range uint64(20000) {
		key := Hash(fmt.Sprint("user-", k))
		if a[m1.Owner(key)] != a[m2.Owner(key)] || a[m1.Owner(key)] != rev[m3.Owner(key)] {
			t.Fatalf("key %d: %s, %s, %s (reversed list)", k, a[m1.Owner(key)], a[m2.Owner(key)], rev[m3.Owner(key)])
		}
	}
}

// Different keys spread over every endpoint: 3000 keys over 3 endpoints
// give each between 800 and 1200.
func TestMaglevKeysSpreadOverEndpoints(t *testing.T) {
	m := NewMaglev(addrs(3), nil, nil)
	s := newSet(3)
	counts := make([]int, 3)
	for k := range 3000 {
		counts[m.PickKey(s, Hash(fmt.Sprint("session-", k)))]++
	}
	for i, c := range counts {
		if c < 800 || c > 1200 {
			t.Fatalf("endpoint %d got %d of 3000 keys (%v)", i, c, counts)
		}
	}
}

// Removing one endpoint of five moves the keys that were on it, and at
// most 2% of the others'; adding it back restores every key.
func TestMaglevRemovingAnEndpointMovesFewKeys(t *testing.T) {
	a := addrs(5)
	before := NewMaglev(a, nil, nil)
	removed := a[2]
	rest := slices.Delete(slices.Clone(a), 2, 3)
	after := NewMaglev(rest, nil, nil)
	const keys = 20000
	onRemoved, moved := 0, 0
	for k := range keys {
		key := Hash(fmt.Sprint("k", k))
		was, now := a[before.Owner(key)], rest[after.Owner(key)]
		if was == removed {
			onRemoved++
			continue
		}
		if was != now {
			moved++
		}
	}
	if onRemoved < keys/5*8/10 || onRemoved > keys/5*12/10 {
		t.Fatalf("%d keys on the removed endpoint, want about %d", onRemoved, keys/5)
	}
	// Maglev trades a little disruption for even shares (the paper
	// measures up to a few percent of the table); this table moves
	// about 0.1%.
	if frac := float64(moved) / float64(keys-onRemoved); frac > 0.02 {
		t.Fatalf("%.1f%% of the keys on the endpoints kept moved (%d of %d)", 100*frac, moved, keys-onRemoved)
	}
	again := NewMaglev(a, nil, nil)
	for k := range keys {
		if key := Hash(fmt.Sprint("k", k)); again.Owner(key) != before.Owner(key) {
			t.Fatalf("key %d: endpoint %d after the endpoint came back, %d before", k, again.Owner(key), before.Owner(key))
		}
	}
}

// A key whose endpoint is ineligible goes to the next eligible slot's
// endpoint, the same one every time; the ineligible endpoint's keys
// spread over all the others; the other keys stay; and every key comes
// back when the endpoint is eligible again.
func TestMaglevIneligibleEndpointKeysGoElsewhereAndComeBack(t *testing.T) {
	m := NewMaglev(addrs(5), nil, nil)
	s := newSet(5)
	const keys = 10000
	home := make([]int, keys)
	for k := range keys {
		home[k] = m.PickKey(s, Hash(fmt.Sprint("k", k)))
	}
	s.eligible[3] = false
	spread := make([]int, 5)
	for k := range keys {
		key := Hash(fmt.Sprint("k", k))
		got := m.PickKey(s, key)
		if got == 3 {
			t.Fatalf("key %d went to the ineligible endpoint", k)
		}
		if home[k] != 3 && got != home[k] {
			t.Fatalf("key %d moved from %d to %d, though its endpoint is eligible", k, home[k], got)
		}
		if home[k] == 3 {
			spread[got]++
			if again := m.PickKey(s, key); again != got {
				t.Fatalf("key %d: second choice %d, then %d", k, got, again)
			}
		}
	}
	total := spread[0] + spread[1] + spread[2] + spread[4]
	for _, i := range []int{0, 1, 2, 4} {
		if spread[i] < total/4/2 {
			t.Fatalf("the ineligible endpoint's keys did not spread: %v", spread)
		}
	}
	s.eligible[3] = true
	for k := range keys {
		if got := m.PickKey(s, Hash(fmt.Sprint("k", k))); got != home[k] {
			t.Fatalf("key %d: endpoint %d after the return, %d before", k, got, home[k])
		}
	}
}

// Picks never return an ineligible endpoint, -1 only when none is
// eligible, and a table given a set of another length still returns one
// of its eligible indexes.
func TestMaglevPickEligibility(t *testing.T) {
	m := NewMaglev(addrs(4), nil, seeded(3))
	s := newSet(4)
	for i := range s.eligible {
		s.eligible[i] = false
	}
	for k := range uint64(100) {
		if got := m.PickKey(s, k*0x9e3779b97f4a7c15); got != -1 {
			t.Fatalf("none eligible: got %d", got)
		}
		if got := m.Pick(s); got != -1 {
			t.Fatalf("none eligible, no key: got %d", got)
		}
	}
	s.eligible[2] = true
	for k := range uint64(1000) {
		if got := m.PickKey(s, k*0x9e3779b97f4a7c15); got != 2 {
			t.Fatalf("one eligible: got %d", got)
		}
	}
	if got := m.Pick(newSet(0)); got != -1 {
		t.Fatalf("empty set: got %d", got)
	}
	other := newSet(6)
	other.eligible[5] = false
	for k := range uint64(1000) {
		if got := m.PickKey(other, k); got < 0 || got >= 6 || got == 5 {
			t.Fatalf("set of another length: got %d", got)
		}
	}
	empty := NewMaglev(nil, nil, nil)
	if got := empty.Pick(newSet(2)); got < 0 || got >= 2 {
		t.Fatalf("empty table, set of 2: got %d", got)
	}
}

// Without a key (Pick) picks are random, by the endpoints' shares of
// the table.
func TestMaglevWithoutKeyPicksRandomly(t *testing.T) {
	m := NewMaglev(addrs(4), nil, seeded(5))
	s := newSet(4)
	counts := make([]int, 4)
	for range 40000 {
		counts[m.Pick(s)]++
	}
	chiSquareUniform(t, "maglev without key", counts, []int{0, 1, 2, 3})
}

// Combine rotates before it folds, as Envoy does, so that two policies
// hashing the same value do not cancel out, and the first policy's hash
// is the combination's.
func TestCombine(t *testing.T) {
	h := Hash("a")
	if Combine(0, h) != h {
		t.Fatal("Combine(0, h) != h")
	}
	if Combine(h, h) == 0 {
		t.Fatal("two equal hashes cancel out")
	}
	if Hash("10.0.0.1:8080") == Hash("10.0.0.2:8080") {
		t.Fatal("addresses hash alike")
	}
}

// The pick while every endpoint is eligible, and with one of 16 out.
func BenchmarkMaglevPick(b *testing.B) {
	m := NewMaglev(addrs(16), nil, nil)
	for _, name := range []string{"all_eligible", "one_ineligible"} {
		s := newSet(16)
		if name == "one_ineligible" {
			s.eligible[5] = false
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			k := uint64(0)
			for b.Loop() {
				k += 0x9e3779b97f4a7c15
				m.PickKey(s, k)
			}
		})
	}
}

// Building the table of 100 endpoints, with equal and with mixed
// weights.
func BenchmarkMaglevBuild(b *testing.B) {
	a := addrs(100)
	mixed := make([]uint32, 100)
	for i := range mixed {
		mixed[i] = uint32(i%10 + 1)
	}
	for _, bc := range []struct {
		name    string
		weights []uint32
	}{{"equal", nil}, {"weights_1_to_10", mixed}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				NewMaglev(a, bc.weights, nil)
			}
		})
	}
}
