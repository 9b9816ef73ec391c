package proxy

import (
	"math/rand/v2"
	"testing"
	"unsafe"
)

// An attempt set excludes exactly the endpoints marked tried, however
// many, against a plain set of them.
func TestAttemptSetExcludesTriedEndpoints(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for n := 1; n <= 5; n++ {
		c := &cluster{}
		for i := 0; i < n; i++ {
			c.endpoints = append(c.endpoints, &endpoint{idx: i})
		}
		for round := 0; round < 200; round++ {
			s := &attemptSet{c: c, ignoreEjection: true}
			tried := map[int]bool{}
			for k := rng.IntN(2*n + 1); k > 0; k-- {
				e := c.endpoints[rng.IntN(n)]
				c.markTried(s, e)
				tried[e.idx] = true
				for i := 0; i < n; i++ {
					if s.Eligible(i) == tried[i] {
						t.Fatalf("%d endpoints, tried %v: Eligible(%d) = %v", n, tried, i, s.Eligible(i))
					}
				}
			}
		}
	}
}

// A request that makes one attempt marks its endpoint without allocating.
func TestAttemptSetFirstMarkAllocatesNothing(t *testing.T) {
	c := &cluster{endpoints: []*endpoint{{idx: 0}, {idx: 1}, {idx: 2}}}
	var s attemptSet
	allocs := testing.AllocsPerRun(100, func() {
		s = attemptSet{c: c, ignoreEjection: true}
		c.markTried(&s, c.endpoints[1])
	})
	if allocs != 0 {
		t.Errorf("first markTried: %v allocations", allocs)
	}
}

// Every forwarded request allocates a forwarding. Above 512 bytes an
// object with pointers carries an 8-byte header, and 768 bytes is a size
// class (896 the next): one more field can cost 128 bytes per request.
func TestForwardingFitsItsSizeClass(t *testing.T) {
	if size := unsafe.Sizeof(forwarding{}); size+8 > 768 {
		t.Errorf("forwarding is %d bytes: with its allocation header it leaves the 768-byte size class", size)
	}
}
