package group

import (
	"cmp"
	"slices"
)

// TopicPartition names one partition of one topic.
type TopicPartition struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
}

func compareTP(a, b TopicPartition) int {
	if c := cmp.Compare(a.Topic, b.Topic); c != 0 {
		return c
	}
	return cmp.Compare(a.Partition, b.Partition)
}

// Subscription is what one member asked for.
type Subscription struct {
	MemberID string
	Topics   []string
}

// Assignment maps member id to the partitions it owns, each list sorted.
type Assignment map[string][]TopicPartition

// Assignor computes an assignment. members is sorted by MemberID;
// partitions gives each subscribed topic's partition count; prev is the
// previous generation's assignment (sticky assignors use it, others ignore
// it). Implementations are pure and deterministic.
type Assignor interface {
	Name() string
	Assign(members []Subscription, partitions map[string]int32, prev Assignment) Assignment
}

// AssignorByName returns the assignor called name ("range", "roundrobin",
// "sticky"), or nil.
func AssignorByName(name string) Assignor {
	switch name {
	case "range":
		return Range{}
	case "roundrobin":
		return RoundRobin{}
	case "sticky":
		return Sticky{}
	}
	return nil
}

func subscribes(s Subscription, topic string) bool {
	return slices.Contains(s.Topics, topic)
}

func sortedTopics(partitions map[string]int32) []string {
	topics := make([]string, 0, len(partitions))
	for t := range partitions {
		topics = append(topics, t)
	}
	slices.Sort(topics)
	return topics
}

func newAssignment(members []Subscription) Assignment {
	a := make(Assignment, len(members))
	for _, m := range members {
		a[m.MemberID] = []TopicPartition{}
	}
	return a
}

func sortAll(a Assignment) Assignment {
	for _, tps := range a {
		slices.SortFunc(tps, compareTP)
	}
	return a
}

// Range is Kafka's RangeAssignor: per topic, the members subscribed to it
// (sorted by id) take contiguous ranges of partitions; the first
// partitions%members members take one extra.
type Range struct{}

func (Range) Name() string { return "range" }

func (Range) Assign(members []Subscription, partitions map[string]int32, _ Assignment) Assignment {
	a := newAssignment(members)
	for _, topic := range sortedTopics(partitions) {
		var subs []string
		for _, m := range members {
			if subscribes(m, topic) {
				subs = append(subs, m.MemberID)
			}
		}
		if len(subs) == 0 {
			continue
		}
		n := int(partitions[topic])
		per, extra := n/len(subs), n%len(subs)
		for i, id := range subs {
			start := i*per + min(i, extra)
			count := per
			if i < extra {
				count++
			}
			for p := start; p < start+count; p++ {
				a[id] = append(a[id], TopicPartition{topic, int32(p)})
			}
		}
	}
	return sortAll(a)
}

// RoundRobin is Kafka's RoundRobinAssignor: all partitions, sorted by topic
// then partition, are dealt to the members in id order, skipping members
// not subscribed to the partition's topic.
type RoundRobin struct{}

func (RoundRobin) Name() string { return "roundrobin" }

func (RoundRobin) Assign(members []Subscription, partitions map[string]int32, _ Assignment) Assignment {
	a := newAssignment(members)
	if len(members) == 0 {
		return a
	}
	next := 0
	for _, topic := range sortedTopics(partitions) {
		for p := range partitions[topic] {
			for range members {
				m := members[next%len(members)]
				next++
				if subscribes(m, topic) {
					a[m.MemberID] = append(a[m.MemberID], TopicPartition{topic, p})
					break
				}
			}
		}
	}
	return sortAll(a)
}

// Sticky balances each topic's partitions over its subscribed members (each
// gets floor or ceil of partitions/members) while moving as few partitions
// as possible from their previous owner. Unlike Kafka's StickyAssignor it
// balances per topic rather than over the whole subscription, which keeps it
// simple and still optimal for the common case of one topic per group.
type Sticky struct{}

func (Sticky) Name() string { return "sticky" }

func (Sticky) Assign(members []Subscription, partitions map[string]int32, prev Assignment) Assignment {
	a := newAssignment(members)
	prevOwner := map[TopicPartition]string{}
	for id, tps := range prev {
		for _, tp := range tps {
			prevOwner[tp] = id
		}
	}
	for _, topic := range sortedTopics(partitions) {
		var subs []string
		isSub := map[string]bool{}
		for _, m := range members {
			if subscribes(m, topic) {
				subs = append(subs, m.MemberID)
				isSub[m.MemberID] = true
			}
		}
		if len(subs) == 0 {
			continue
		}
		n := int(partitions[topic])
		floor, ceilSlots := n/len(subs), n%len(subs)
		kept := map[string][]int32{}
		var free []int32
		// First pass: every previous owner keeps up to floor partitions.
		for p := range int32(n) {
			owner, ok := prevOwner[TopicPartition{topic, p}]
			if ok && isSub[owner] && len(kept[owner]) < floor {
				kept[owner] = append(kept[owner], p)
				continue
			}
			free = append(free, p)
		}
		// Second pass: while ceil slots remain, a previous owner keeps one
		// more of its old partitions.
		var rest []int32
		for _, p := range free {
			owner, ok := prevOwner[TopicPartition{topic, p}]
			if ok && isSub[owner] && ceilSlots > 0 && len(kept[owner]) == floor {
				kept[owner] = append(kept[owner], p)
				ceilSlots--
				continue
			}
			rest = append(rest, p)
		}
		// Third pass: hand out what is left, filling members below floor
		// first, then the remaining ceil slots, in member order.
		for _, p := range rest {
			target := ""
			for _, id := range subs {
				if len(kept[id]) < floor {
					target = id
					break
				}
			}
			if target == "" {
				for _, id := range subs {
					if len(kept[id]) == floor && ceilSlots > 0 {
						target = id
						ceilSlots--
						break
					}
				}
			}
			kept[target] = append(kept[target], p)
		}
		for _, id := range subs {
			for _, p := range kept[id] {
				a[id] = append(a[id], TopicPartition{topic, p})
			}
		}
	}
	return sortAll(a)
}

var (
	_ Assignor = Range{}
	_ Assignor = RoundRobin{}
	_ Assignor = Sticky{}
)
