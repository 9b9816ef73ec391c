package group

import (
	"errors"
	"slices"
	"time"
)

// Errors callers branch on.
var (
	// ErrUnknownMember: the member id is not (or no longer) in the group,
	// e.g. because its session expired. The member must join again.
	ErrUnknownMember = errors.New("unknown member")
	// ErrStaleGeneration: the caller acted on an older generation's
	// assignment; it must pick up the current one and retry.
	ErrStaleGeneration = errors.New("stale generation")
	// ErrNotOwner: the partition is not assigned to the member in the
	// current generation.
	ErrNotOwner = errors.New("partition not assigned to member")
)

// Member is one group member as the group sees it.
type Member struct {
	ID             string
	Topics         []string
	SessionTimeout time.Duration
	LastSeen       time.Time
}

// Group is the membership and assignment of one consumer group. It is not
// safe for concurrent use; the caller serialises access.
type Group struct {
	name       string
	assignor   Assignor
	partitions func(topic string) int32
	generation int32
	members    map[string]*Member
	assignment Assignment
}

// New returns an empty group at generation 0. partitions reports a topic's
// partition count (0 for an unknown topic).
func New(name string, assignor Assignor, partitions func(topic string) int32) *Group {
	return &Group{
		name:       name,
		assignor:   assignor,
		partitions: partitions,
		members:    map[string]*Member{},
		assignment: Assignment{},
	}
}

// Name is the group's name.
func (g *Group) Name() string { return g.name }

// Generation is the current generation.
func (g *Group) Generation() int32 { return g.generation }

// AssignorName names the group's assignor.
func (g *Group) AssignorName() string { return g.assignor.Name() }

// Join adds member id (or refreshes it, if already present, with new topics
// and timeout) and rebalances when membership or subscriptions changed.
func (g *Group) Join(id string, topics []string, sessionTimeout time.Duration, now time.Time) {
	topics = slices.Clone(topics)
	slices.Sort(topics)
	topics = slices.Compact(topics)
	if m, ok := g.members[id]; ok {
		m.LastSeen = now
		m.SessionTimeout = sessionTimeout
		if slices.Equal(m.Topics, topics) {
			return
		}
		m.Topics = topics
	} else {
		g.members[id] = &Member{ID: id, Topics: topics, SessionTimeout: sessionTimeout, LastSeen: now}
	}
	g.rebalance()
}

// Heartbeat refreshes the member's session.
func (g *Group) Heartbeat(id string, now time.Time) error {
	m, ok := g.members[id]
	if !ok {
		return ErrUnknownMember
	}
	m.LastSeen = now
	return nil
}

// Leave removes the member and rebalances. Leaving twice is not an error.
func (g *Group) Leave(id string) bool {
	if _, ok := g.members[id]; !ok {
		return false
	}
	delete(g.members, id)
	g.rebalance()
	return true
}

// Expire removes every member whose session ran out by now, rebalances once
// if any did, and returns their ids.
func (g *Group) Expire(now time.Time) []string {
	var gone []string
	for id, m := range g.members {
		if now.Sub(m.LastSeen) > m.SessionTimeout {
			gone = append(gone, id)
			delete(g.members, id)
		}
	}
	if len(gone) > 0 {
		slices.Sort(gone)
		g.rebalance()
	}
	return gone
}

// Refresh rebalances if the partition counts of subscribed topics changed
// since the last assignment (a topic grew, or was deleted).
func (g *Group) Refresh() bool {
	want := g.subscribedPartitions()
	have := map[string]int32{}
	for _, tps := range g.assignment {
		for _, tp := range tps {
			have[tp.Topic] = max(have[tp.Topic], tp.Partition+1)
		}
	}
	for t, n := range want {
		if have[t] != n && len(g.members) > 0 {
			g.rebalance()
			return true
		}
	}
	for t := range have {
		if _, ok := want[t]; !ok {
			g.rebalance()
			return true
		}
	}
	return false
}

// Assignment returns the member's partitions in the current generation.
func (g *Group) Assignment(id string) ([]TopicPartition, error) {
	if _, ok := g.members[id]; !ok {
		return nil, ErrUnknownMember
	}
	return slices.Clone(g.assignment[id]), nil
}

// CheckOwner reports whether member id owns tp in generation gen.
func (g *Group) CheckOwner(id string, gen int32, tp TopicPartition) error {
	if _, ok := g.members[id]; !ok {
		return ErrUnknownMember
	}
	if gen != g.generation {
		return ErrStaleGeneration
	}
	if !slices.Contains(g.assignment[id], tp) {
		return ErrNotOwner
	}
	return nil
}

// Members returns copies of the members, sorted by id.
func (g *Group) Members() []Member {
	out := make([]Member, 0, len(g.members))
	for _, m := range g.members {
		c := *m
		c.Topics = slices.Clone(m.Topics)
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Member) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return out
}

// Topics returns every topic some member subscribes to, sorted.
func (g *Group) Topics() []string {
	var ts []string
	for _, m := range g.members {
		ts = append(ts, m.Topics...)
	}
	slices.Sort(ts)
	return slices.Compact(ts)
}

func (g *Group) subscribedPartitions() map[string]int32 {
	parts := map[string]int32{}
	for _, t := range g.Topics() {
		if n := g.partitions(t); n > 0 {
			parts[t] = n
		}
	}
	return parts
}

func (g *Group) rebalance() {
	g.generation++
	members := make([]Subscription, 0, len(g.members))
	for _, m := range g.Members() {
		members = append(members, Subscription{MemberID: m.ID, Topics: m.Topics})
	}
	g.assignment = g.assignor.Assign(members, g.subscribedPartitions(), g.assignment)
}
