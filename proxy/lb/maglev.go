package lb

import (
	"slices"
	"strings"
)

// Maglev is consistent hashing by a Maglev lookup table (Eisenbud et
// al., "Maglev: A Fast and Reliable Software Network Load Balancer",
// NSDI 2016, §3.4), built as Envoy's maglev load balancer builds it: each
// endpoint has its own permutation of the table's slots, from two hashes
// of its address, and the endpoints take turns filling the first free
// slot of their permutation until every slot is taken; an endpoint's
// turns come in proportion to its weight. A request's key (see
// [Maglev.PickKey]) picks the slot key mod the table size, and the
// endpoint there serves it.
//
// The table is a pure function of the endpoints' addresses and weights,
// whatever their order in the list: every sidecar with the same
// endpoints builds the same table, so the same key goes to the same
// endpoint from all of them. Removing one endpoint of N moves the keys
// that were on it and only a small share of the others' (the paper's
// "minimal disruption" holds approximately: well under a percent of the
// table beyond the removed endpoint's own slots at this size).
//
// When the endpoint of a key's slot is not eligible (ejected, failing
// its health check, already tried by the request), the pick walks on to
// the next slots, so that the key goes to the same second choice every
// time and the ineligible endpoint's keys spread over the others as
// their slots do; the key comes back when its endpoint does. Pick, for a
// request without a key, takes a random slot, as Envoy picks a random
// hash for a request its hash policy gives none.
//
// Unlike the other policies, a Maglev belongs to one endpoint list: the
// caller builds a new one when the list changes. Given a Candidates of
// another length, a pick still returns an eligible index, by a scan.
type Maglev struct {
	// table maps a slot to an endpoint index; nil without endpoints.
	table []int32
	n     int // endpoints the table was built for
	size  int // slots
	intn  IntN
	// addrs and weights are the endpoints the table was built from, in
	// their order, weights as the table counts them (0 as 1): see Same.
	addrs   []string
	weights []uint32
}

// MaglevTableSize is the lookup table's size: Envoy's default. It is a
// prime, so that every skip walks all the slots; it is about 100 times
// the endpoints of a large cluster, which keeps the endpoints' shares of
// the table within about 1% of their weights.
const MaglevTableSize = 65537

// maglevWalk bounds the slots a pick walks past ineligible endpoints.
// With a share f of the table ineligible, a key walks past 128 slots
// with probability f^128 (1e-6 at f = 0.9); such a key, like a pick
// when none is eligible, ends with a scan over the endpoints, as
// deterministic but with less even spread.
const maglevWalk = 128

// NewMaglev builds the table for the endpoints known by addrs (unique),
// with weights (nil, or one per address; 0 counts as 1). intn nil means
// math/rand/v2.IntN, which draws the slot of a pick without a key.
func NewMaglev(addrs []string, weights []uint32, intn IntN) *Maglev {
	return newMaglev(addrs, weights, MaglevTableSize, intn)
}

// newMaglev builds a table of size slots; size is a prime.
func newMaglev(addrs []string, weights []uint32, size int, intn IntN) *Maglev {
	m := &Maglev{n: len(addrs), size: size, intn: orDefault(intn),
		addrs: slices.Clone(addrs), weights: make([]uint32, len(addrs))}
	for i := range m.weights {
		m.weights[i] = tableWeight(weights, i)
	}
	if len(addrs) == 0 {
		return m
	}
	m.table = make([]int32, size)
	for i := range m.table {
		m.table[i] = -1
	}
	type entry struct {
		pos, skip uint64 // the next slot of the permutation, and its step
		weight    uint64
		target    uint64 // the turn count times weight that earns the next slot
		idx       int32  // the endpoint's index in addrs
	}
	// The endpoints take their turns in the order of their addresses,
	// not of the list: sidecars given the same endpoints in another
	// order (as a control plane may send them) build the same table.
	order := make([]int, len(addrs))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(addrs[a], addrs[b]) })
	es := make([]entry, len(addrs))
	var maxWeight uint64
	usize := uint64(size)
	for k, i := range order {
		h := Hash(addrs[i])
		w := uint64(m.weights[i])
		// The offset and the skip must be independent hashes of the
		// address: one hash finished twice with different constants.
		es[k] = entry{pos: fmix64(h) % usize, skip: fmix64(h^0x9e3779b97f4a7c15)%(usize-1) + 1, weight: w, idx: int32(i)}
		maxWeight = max(maxWeight, w)
	}
	filled := 0
	// An endpoint of the largest weight takes a slot every turn; one of
	// a third of it every third turn (Envoy's target_weight_).
	for turn := uint64(0); filled < size; turn++ {
		for i := range es {
			e := &es[i]
			if turn*e.weight < e.target {
				continue
			}
			e.target += maxWeight
			for m.table[e.pos] >= 0 {
				e.pos += e.skip
				if e.pos >= usize {
					e.pos -= usize
				}
			}
			m.table[e.pos] = e.idx
			if filled++; filled == size {
				break
			}
		}
	}
	return m
}

// tableWeight is the weight the table gives endpoint i of weights (nil,
// or one per endpoint): 0 counts as 1.
func tableWeight(weights []uint32, i int) uint32 {
	if i < len(weights) && weights[i] > 1 {
		return weights[i]
	}
	return 1
}

// Same reports whether m was built for the endpoints addrs with weights
// (as NewMaglev takes them), in the same order: a table is a pure
// function of them, so a caller given the same list again (a reload
// that leaves the cluster's endpoints alone) can keep m rather than
// spend the milliseconds and memory of building its equal. The order
// matters: the table holds indexes into the list.
func (m *Maglev) Same(addrs []string, weights []uint32) bool {
	if !slices.Equal(m.addrs, addrs) {
		return false
	}
	for i, w := range m.weights {
		if tableWeight(weights, i) != w {
			return false
		}
	}
	return true
}

// Pick implements Picker for a request without a key: a random slot's
// endpoint, so each endpoint by its share of the table.
func (m *Maglev) Pick(c Candidates) int {
	return m.PickKey(c, uint64(m.intn(m.size)))
}

// PickKey returns the eligible endpoint key maps to: the endpoint of the
// key's slot, or of the first slot after it whose endpoint is eligible,
// within maglevWalk slots; past them, the first eligible endpoint from
// key mod Len. -1 when none is eligible.
func (m *Maglev) PickKey(c Candidates, key uint64) int {
	n := c.Len()
	if n == 0 {
		return -1
	}
	if n != m.n || m.table == nil {
		// A table built for another endpoint list: its indexes mean
		// nothing here.
		return scanFrom(c, n, int(key%uint64(n)))
	}
	size := uint64(len(m.table))
	s := key % size
	for range maglevWalk {
		if i := int(m.table[s]); c.Eligible(i) {
			return i
		}
		if s++; s == size {
			s = 0
		}
	}
	return scanFrom(c, n, int(key%uint64(n)))
}

// Owner returns the endpoint index the table gives key, eligible or not
// (for tests and tools that compare tables).
func (m *Maglev) Owner(key uint64) int {
	if m.n == 0 {
		return -1
	}
	return int(m.table[key%uint64(len(m.table))])
}

// Hash is the 64-bit hash of the keys Maglev picks by and of the
// addresses its table is built from: FNV-1a (64 bits) of s, finished by
// MurmurHash3's fmix64 so that inputs differing in their last byte (the
// port of an address) differ in every bit. It is fixed (no per-process
// seed), so every sidecar hashes the same key the same way.
func Hash(s string) uint64 {
	const (
		offset64 = 14695981039346656037
		prime64  = 1099511628211
	)
	h := uint64(offset64)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= prime64
	}
	return fmix64(h)
}

// Combine folds next into h, the hash of the policies before it, as
// Envoy combines its hash policies: h rotated left by one bit, XOR next.
// The rotation keeps two policies that hash the same value from
// cancelling out.
func Combine(h, next uint64) uint64 { return (h<<1 | h>>63) ^ next }

// fmix64 is MurmurHash3's 64-bit finalizer: every input bit affects
// every output bit.
func fmix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

var _ Picker = (*Maglev)(nil)
