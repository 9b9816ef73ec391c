package proxy

import (
	"sync/atomic"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/config"
	"github.com/outrigger-mesh/outrigger/proxy/lb"
)

// Zone-aware load balancing (clusters.*.zone_aware): a cluster's endpoints
// fall in two levels, as Envoy's priority levels when Istio sets them by
// locality: level 0 holds the endpoints in the sidecar's own zone
// (node.zone), level 1 all the others. Each attempt first picks a level,
// by the levels' health, then lets the cluster's lb_policy pick among that
// level's eligible endpoints. Panic mode is decided per level, as Envoy
// decides it (see levelSplit); when every level is in it the cluster
// balances over all its endpoints, as without the levels (see
// cluster.pick).

// shareUnit is a level's whole share: shares are in parts of 2^20, finer
// than Envoy's integer percents, so that a level's share follows its
// health without steps of a percent.
const shareUnit = 1 << 20

// zoneAware is a zone-aware cluster's levels, compiled with the cluster.
type zoneAware struct {
	zone   string // node.zone
	factor int64  // overprovisioning_factor, percent
	levels [2]zoneLevel
	// level maps an endpoint index to its level.
	level []uint8
	// pickers are the lb_policy's, one per level, so that round robin
	// takes its turns within each level.
	pickers [2]lb.Picker
	// draws counts the level draws: the k-th draw is the fractional
	// part of k times the golden ratio (a Weyl sequence), which spreads
	// any share over the draws more evenly than random numbers (the
	// share of k draws is off by O(log k) draws, not O(√k)) and needs
	// no random source. Shared across reloads (see carryState).
	draws *atomic.Uint64
	// panicShare is the local level's part of the positions when panic
	// mode balances over every endpoint, in shareUnit.
	panicShare int64
}

// zoneLevel is one level's endpoints.
type zoneLevel struct {
	// slots maps the level's balancer positions to endpoint indexes,
	// each endpoint repeated for its weight as weightSlots lays them out
	// (one position each when the level's weights are equal).
	slots []int
	// weights is the positions each endpoint of the level has, indexed
	// by endpoint; nil when they are all 1.
	weights []int64
	n       int // endpoints in the level
}

// compileZoneAware returns the levels of c for cc's zone_aware block and
// zone, the sidecar's, or nil when the block is off. c's endpoints,
// lbPolicy and slots are set. start gives where each level's round robin
// and the draw sequence begin (see Options.RoundRobinStart).
func compileZoneAware(c *cluster, cc config.Cluster, zone string, start func() uint64) *zoneAware {
	if !cc.ZoneAware.Enabled {
		return nil
	}
	z := &zoneAware{zone: zone, factor: int64(cc.ZoneAware.OverprovisioningFactor), level: make([]uint8, len(cc.Endpoints))}
	if z.factor == 0 {
		z.factor = config.DefaultOverprovisioningFactor
	}
	var members [2][]int
	var weights [2][]uint32
	for i, e := range cc.Endpoints {
		l := uint8(1)
		if e.Zone != "" && e.Zone == zone {
			l = 0
		}
		z.level[i] = l
		members[l] = append(members[l], i)
		weights[l] = append(weights[l], e.Weight)
	}
	for l := range z.levels {
		lv := &z.levels[l]
		lv.n = len(members[l])
		pos := weightSlots(weights[l])
		if pos == nil {
			lv.slots = members[l]
			continue
		}
		lv.slots = make([]int, len(pos))
		for k, j := range pos {
			lv.slots[k] = members[l][j]
		}
		lv.weights = slotCounts(lv.slots, len(cc.Endpoints))
	}
	z.pickers = [2]lb.Picker{newPicker(c.lbPolicy, start), newPicker(c.lbPolicy, start)}
	z.draws = new(atomic.Uint64)
	z.draws.Store(start())
	// Panic mode picks over c's positions (c.slots, or one per endpoint).
	local, total := 0, len(c.endpoints)
	if c.slots != nil {
		total = len(c.slots)
		for _, i := range c.slots {
			if z.level[i] == 0 {
				local++
			}
		}
	} else {
		local = len(members[0])
	}
	if total > 0 {
		z.panicShare = int64(local) * shareUnit / int64(total)
	}
	return z
}

// newPicker returns a fresh picker of lb_policy name (round_robin,
// least_request or random); a round robin's first turn is start's.
func newPicker(name string, start func() uint64) lb.Picker {
	switch name {
	case string(config.LBLeastRequest):
		return lb.NewLeastRequest(nil)
	case string(config.LBRandom):
		return lb.NewRandom(nil)
	}
	return lb.NewRoundRobinFrom(start())
}

// zoneSplit is how a zone-aware cluster's picks go at one moment.
type zoneSplit struct {
	// share is the local level's share of the picks, in shareUnit.
	share int64
	// panic[l]: level l picks over all its endpoints, whatever their
	// health (see levelSplit).
	panic [2]bool
	// whole: every level with endpoints is in panic, or every endpoint
	// is pending; the cluster balances over all its endpoints, whatever
	// their zone, as a cluster in panic mode does.
	whole bool
}

// split is the levels' split at now. A level's health is its eligible
// endpoints over its endpoints, pending ones left out of both (as panic
// mode counts them). Two atomic loads while every endpoint is eligible;
// one pass over the endpoints otherwise.
func (z *zoneAware) split(r *resilience, now time.Time) zoneSplit {
	if (r.hc == nil || r.hc.UnhealthyCount() == 0) && r.det.EjectedCount(now) == 0 {
		if z.levels[0].n > 0 {
			return zoneSplit{share: shareUnit}
		}
		return zoneSplit{}
	}
	var ok, n [2]int64
	pending := r.hc != nil && r.hc.PendingCount() > 0
	for i, l := range z.level {
		if r.eligible(i, now) {
			ok[l]++
			n[l]++
			continue
		}
		if pending && r.hc.Pending(i) {
			continue
		}
		n[l]++
	}
	return levelSplit(ok, n, z.factor, r.panicPct)
}

// levelSplit splits the picks over levels whose ok[l] of n[l]
// endpoints are eligible, for overprovisioning factor percent and
// panic threshold panicPct percent, as Envoy splits them over priority
// levels. A level's load is min(100%, health × factor); the local level
// takes its load, or, when the two loads sum to less than 100%, its
// load over their sum (Envoy's normalized total health), so a level
// with no eligible endpoint leaves all picks to the other. Panic is
// decided per level, and only while the loads sum to less than 100%:
// while the other level can take what one lacks, a level that failed
// whole is failed over, not balanced over in panic.
func levelSplit(ok, n [2]int64, factor int64, panicPct float64) zoneSplit {
	if n[0]+n[1] == 0 {
		// Every endpoint is pending: the cluster is as new.
		return zoneSplit{whole: true}
	}
	var load [2]int64
	for l := range load {
		if n[l] > 0 {
			load[l] = min(shareUnit, ok[l]*factor*shareUnit/(100*n[l]))
		}
	}
	var s zoneSplit
	switch total := load[0] + load[1]; {
	case total >= shareUnit:
		s.share = load[0]
		return s
	case total > 0:
		s.share = load[0] * shareUnit / total
	}
	if panicPct <= 0 {
		return s
	}
	s.whole = true
	for l := range n {
		s.panic[l] = n[l] > 0 && float64(ok[l])*100 < panicPct*float64(n[l])
		s.whole = s.whole && (s.panic[l] || n[l] == 0)
	}
	return s
}

// draw returns the next level draw, uniform in [0, shareUnit).
func (z *zoneAware) draw() int64 {
	// The top 20 bits of k × 2^64/φ.
	return int64((z.draws.Add(1) * 0x9e3779b97f4a7c15) >> (64 - 20))
}

// pick chooses the level for s's attempt by the local share, then an
// endpoint of it by the cluster's policy; a level where no endpoint is
// eligible (or each was tried) yields to the other. Then, as cluster.pick
// does, an endpoint already tried. It reports whole, and picks nothing,
// when the cluster is to balance over all its endpoints (see
// zoneSplit.whole). Caller has set s.now.
func (z *zoneAware) pick(c *cluster, s *attemptSet) (e *endpoint, whole bool) {
	sp := z.split(c.res, s.now)
	if sp.whole {
		return nil, true
	}
	first := uint8(0)
	if sp.share < shareUnit && (sp.share == 0 || z.draw() >= sp.share) {
		first = 1
	}
	if e := z.pickLevels(c, s, sp, first); e != nil {
		return e, false
	}
	if s.tried != nil || s.first != 0 {
		saved, savedFirst := s.tried, s.first
		s.tried, s.first = nil, 0
		e := z.pickLevels(c, s, sp, first)
		s.tried, s.first = saved, savedFirst
		return e, false
	}
	return nil, false
}

func (z *zoneAware) pickLevels(c *cluster, s *attemptSet, sp zoneSplit, first uint8) *endpoint {
	for _, l := range [2]uint8{first, 1 - first} {
		s.level, s.ignoreEjection = l, sp.panic[l]
		if i := z.pickers[l].Pick((*levelSet)(s)); i >= 0 {
			return c.endpoints[z.levels[l].slots[i]]
		}
	}
	return nil
}

// levelSet is an attemptSet seen as the positions of its level
// (attemptSet.level) of a zone-aware cluster. It is the same memory, so
// passing it to a picker allocates nothing.
type levelSet attemptSet

func (l *levelSet) lv() *zoneLevel { return &l.c.zone.levels[l.level] }

func (l *levelSet) Len() int { return len(l.lv().slots) }

func (l *levelSet) Eligible(i int) bool {
	e := l.lv().slots[i]
	if l.tried != nil && l.tried[e] || int(l.first) == e+1 {
		return false
	}
	return l.ignoreEjection || l.c.res.eligible(e, l.now)
}

func (l *levelSet) Active(i int) int64 { return l.c.endpoints[l.lv().slots[i]].active.Load() }

func (l *levelSet) Weight(i int) int64 {
	lv := l.lv()
	if lv.weights == nil {
		return 1
	}
	return lv.weights[lv.slots[i]]
}

var _ lb.Candidates = (*levelSet)(nil)

// carryState gives z the balancers and the draw count of prev, the
// zone-aware state of the cluster serving now, when the lb_policy is the
// same, so that a reload neither restarts round robin in each level nor
// the draw sequence.
func (z *zoneAware) carryState(prev *zoneAware, samePolicy bool) {
	if prev == nil {
		return
	}
	z.draws = prev.draws
	if samePolicy {
		z.pickers = prev.pickers
	}
}

// localShare is the share of c's picks its local level takes at now, in
// shareUnit: the local level's part of the positions when c balances
// over all its endpoints, its share by health otherwise. c is
// zone-aware.
func (c *cluster) localShare(now time.Time) int64 {
	sp := c.zone.split(c.res, now)
	if sp.whole {
		return c.zone.panicShare
	}
	return sp.share
}
