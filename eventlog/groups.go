package eventlog

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/outrigger-mesh/outrigger/eventlog/group"
	"github.com/outrigger-mesh/outrigger/eventlog/segment"
)

// coordinator is the thin shell around group.Group: it owns the locks,
// the clock, member ids, each member's fetch positions, and the wiring to
// committed offsets. Decisions (membership, generations, assignment) are
// group.Group's.
//
// Lock order: coordinator.mu, then Broker.mu, offsetStore.mu and
// Partition.mu (each taken briefly to read). Nothing holding one of those
// takes coordinator.mu.
type coordinator struct {
	b *Broker

	mu     sync.Mutex
	groups map[string]*groupState
}

type groupState struct {
	g *group.Group
	// reset is each member's choice where to start without a committed
	// offset ("earliest" or "latest").
	reset map[string]string
	// positions are each member's next fetch offsets in this generation.
	// They are dropped on every rebalance: a new generation starts from the
	// committed offsets, which is what makes delivery at-least-once.
	positions  map[string]map[group.TopicPartition]int64
	generation int32
	// committing counts commits in flight per partition. A partition with
	// one is not fetched: its committed offset is about to move, and a new
	// owner that started from the old one would receive again records whose
	// commit succeeded.
	committing map[group.TopicPartition]int
	// changed is woken on every rebalance and finished commit so that long
	// polls look again.
	changed notifier
}

func newCoordinator(b *Broker) *coordinator {
	return &coordinator{b: b, groups: map[string]*groupState{}}
}

// run expires silent members every second until ctx ends.
func (c *coordinator) run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.expireAll()
		}
	}
}

func (c *coordinator) expireAll() {
	now := c.b.now()
	var woken []*groupState
	c.mu.Lock()
	for name, gs := range c.groups {
		if len(gs.g.Expire(now)) > 0 && c.syncLocked(gs) {
			woken = append(woken, gs)
		}
		if len(gs.g.Members()) == 0 {
			delete(c.groups, name)
		}
	}
	c.mu.Unlock()
	for _, gs := range woken {
		gs.changed.Broadcast()
	}
}

// refreshAll rebalances groups whose topics changed partition count.
func (c *coordinator) refreshAll() {
	var woken []*groupState
	c.mu.Lock()
	for _, gs := range c.groups {
		if gs.g.Refresh() && c.syncLocked(gs) {
			woken = append(woken, gs)
		}
	}
	c.mu.Unlock()
	for _, gs := range woken {
		gs.changed.Broadcast()
	}
}

// syncLocked drops positions after a rebalance; it reports whether the
// generation moved.
func (c *coordinator) syncLocked(gs *groupState) bool {
	if gs.g.Generation() == gs.generation {
		return false
	}
	gs.generation = gs.g.Generation()
	gs.positions = map[string]map[group.TopicPartition]int64{}
	for id := range gs.reset {
		if _, err := gs.g.Assignment(id); err != nil {
			delete(gs.reset, id)
		}
	}
	return true
}

func (c *coordinator) resetPositions(g string, tp group.TopicPartition) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gs, ok := c.groups[g]; ok {
		for _, pos := range gs.positions {
			delete(pos, tp)
		}
	}
}

// JoinRequest is a member's request to join a group.
type JoinRequest struct {
	// MemberID re-joins as an existing member (e.g. to change topics);
	// empty: a new member id is issued.
	MemberID string `json:"member_id,omitempty"`
	// Topics the member consumes. Required; each must exist.
	Topics []string `json:"topics"`
	// SessionTimeout: the member is removed when it makes no call for this
	// long. Zero: groups.session_timeout.
	SessionTimeout time.Duration `json:"-"`
	// Assignor for a new group: range, roundrobin or sticky. Zero:
	// groups.assignor. Ignored when the group exists (the answer says which
	// one it uses).
	Assignor string `json:"assignor,omitempty"`
	// OffsetReset is where to start on partitions without a committed
	// offset: earliest (default) or latest.
	OffsetReset string `json:"offset_reset,omitempty"`
}

// MemberState is what a member needs to know after each call.
type MemberState struct {
	Group          string                 `json:"group"`
	MemberID       string                 `json:"member_id"`
	Generation     int32                  `json:"generation"`
	Assignor       string                 `json:"assignor"`
	SessionTimeout string                 `json:"session_timeout"`
	Assignment     []group.TopicPartition `json:"assignment"`
}

func (c *coordinator) stateLocked(gs *groupState, id string) (MemberState, error) {
	a, err := gs.g.Assignment(id)
	if err != nil {
		return MemberState{}, errf(ErrUnknownMember, "%q in group %q", id, gs.g.Name())
	}
	var timeout time.Duration
	for _, m := range gs.g.Members() {
		if m.ID == id {
			timeout = m.SessionTimeout
		}
	}
	if a == nil {
		a = []group.TopicPartition{}
	}
	return MemberState{gs.g.Name(), id, gs.g.Generation(), gs.g.AssignorName(), timeout.String(), a}, nil
}

// JoinGroup adds a member to group g (creating the group) and rebalances.
func (b *Broker) JoinGroup(g string, req JoinRequest) (MemberState, error) {
	if err := validGroupName(g); err != nil {
		return MemberState{}, errf(ErrBadRequest, "group %q: %v", g, err)
	}
	if len(req.Topics) == 0 {
		return MemberState{}, errf(ErrBadRequest, "topics: at least one topic is required")
	}
	for _, t := range req.Topics {
		if _, err := b.Topic(t); err != nil {
			return MemberState{}, err
		}
	}
	timeout := cmpOr(req.SessionTimeout, cmpOr(b.cfg.Groups.SessionTimeout, DefaultSessionTimeout))
	if maxT := cmpOr(b.cfg.Groups.MaxSessionTimeout, DefaultMaxSessionTimeout); timeout < minSessionTimeout || timeout > maxT {
		return MemberState{}, errf(ErrBadRequest, "session_timeout must be between %s and %s", minSessionTimeout, maxT)
	}
	switch req.OffsetReset {
	case "":
		req.OffsetReset = "earliest"
	case "earliest", "latest":
	default:
		return MemberState{}, errf(ErrBadRequest, "offset_reset must be earliest or latest")
	}
	assignor := group.AssignorByName(cmpOr(req.Assignor, cmpOr(b.cfg.Groups.Assignor, DefaultAssignor)))
	if assignor == nil {
		return MemberState{}, errf(ErrBadRequest, "assignor must be range, roundrobin or sticky")
	}
	c := b.groups
	now := b.now()
	c.mu.Lock()
	gs, ok := c.groups[g]
	if !ok {
		gs = &groupState{g: group.New(g, assignor, b.partitionCount), reset: map[string]string{},
			committing: map[group.TopicPartition]int{}}
		c.groups[g] = gs
	}
	gs.g.Expire(now)
	id := req.MemberID
	if id != "" {
		if _, err := gs.g.Assignment(id); err != nil {
			c.mu.Unlock()
			return MemberState{}, errf(ErrUnknownMember, "%q in group %q", id, g)
		}
	} else {
		id = newMemberID()
	}
	gs.g.Join(id, req.Topics, timeout, now)
	gs.reset[id] = req.OffsetReset
	moved := c.syncLocked(gs)
	st, err := c.stateLocked(gs, id)
	c.mu.Unlock()
	if moved {
		gs.changed.Broadcast()
	}
	return st, err
}

func newMemberID() string {
	var b [12]byte
	rand.Read(b[:])
	return "m-" + hex.EncodeToString(b[:])
}

// withMember runs fn under the coordinator lock after expiring the group's
// silent members and refreshing the caller's session.
func (c *coordinator) withMember(g, id string, fn func(gs *groupState) error) error {
	now := c.b.now()
	c.mu.Lock()
	gs, ok := c.groups[g]
	if !ok {
		c.mu.Unlock()
		return errf(ErrUnknownMember, "%q in group %q", id, g)
	}
	gs.g.Expire(now)
	moved := c.syncLocked(gs)
	err := gs.g.Heartbeat(id, now)
	if err != nil {
		err = errf(ErrUnknownMember, "%q in group %q", id, g)
	} else {
		err = fn(gs)
	}
	c.mu.Unlock()
	if moved {
		gs.changed.Broadcast()
	}
	return err
}

// Heartbeat keeps the member's session and returns its current state (a new
// generation means: drop uncommitted work and use the new assignment).
func (b *Broker) Heartbeat(g, member string) (MemberState, error) {
	var st MemberState
	err := b.groups.withMember(g, member, func(gs *groupState) (err error) {
		st, err = b.groups.stateLocked(gs, member)
		return err
	})
	return st, err
}

// LeaveGroup removes the member at once and rebalances.
func (b *Broker) LeaveGroup(g, member string) error {
	c := b.groups
	c.mu.Lock()
	gs, ok := c.groups[g]
	if !ok || !gs.g.Leave(member) {
		c.mu.Unlock()
		return errf(ErrUnknownMember, "%q in group %q", member, g)
	}
	delete(gs.reset, member)
	moved := c.syncLocked(gs)
	if len(gs.g.Members()) == 0 {
		delete(c.groups, g)
	}
	c.mu.Unlock()
	if moved {
		gs.changed.Broadcast()
	}
	return nil
}

// GroupRecord is a fetched record with where it came from.
type GroupRecord struct {
	Topic     string
	Partition int32
	segment.Record
}

// GroupFetchResult is a member's fetch.
type GroupFetchResult struct {
	State   MemberState
	Records []GroupRecord
}

type fetchPlan struct {
	tp   group.TopicPartition
	from int64
}

// GroupFetch reads records for member from its assigned partitions, from
// its positions (initially the committed offsets), about maxBytes in all,
// waiting up to wait when there is nothing. Positions advance past what is
// returned; Commit makes them durable. A rebalance while fetching returns no
// records and the new state. The wait is cut to half the member's session
// timeout, so that a parked member never expires.
func (b *Broker) GroupFetch(ctx context.Context, g, member string, maxBytes int, wait time.Duration) (GroupFetchResult, error) {
	deadline := time.Now().Add(min(wait, MaxFetchWait))
	for first := true; ; first = false {
		res, waitOn, err := b.groupFetchOnce(g, member, maxBytes)
		if first && err == nil {
			// A waiting member makes no call; keep the wait well inside its
			// session so that it is not expired while parked here.
			if st, perr := time.ParseDuration(res.State.SessionTimeout); perr == nil {
				if d := time.Now().Add(st / 2); d.Before(deadline) {
					deadline = d
				}
			}
		}
		if err != nil || len(res.Records) > 0 || wait <= 0 || time.Until(deadline) <= 0 {
			return res, err
		}
		cases := make([]reflect.SelectCase, 0, len(waitOn)+2)
		for _, ch := range waitOn {
			cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ch)})
		}
		timer := time.NewTimer(time.Until(deadline))
		cases = append(cases,
			reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())},
			reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(b.waitCtx.Done())},
			reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(timer.C)})
		b.parked.Add(1)
		chosen, _, _ := reflect.Select(cases)
		b.parked.Add(-1)
		timer.Stop()
		if chosen >= len(waitOn) {
			// Caller gone or time up: one last look, no more waiting.
			res, _, err := b.groupFetchOnce(g, member, maxBytes)
			return res, err
		}
	}
}

func (b *Broker) groupFetchOnce(g, member string, maxBytes int) (GroupFetchResult, []<-chan struct{}, error) {
	var (
		st    MemberState
		plans []fetchPlan
		gen   int32
		gs    *groupState
		waits []<-chan struct{}
	)
	err := b.groups.withMember(g, member, func(s *groupState) (err error) {
		gs = s
		st, err = b.groups.stateLocked(gs, member)
		if err != nil {
			return err
		}
		waits = append(waits, gs.changed.Wait())
		gen = gs.generation
		pos := gs.positions[member]
		if pos == nil {
			pos = map[group.TopicPartition]int64{}
			gs.positions[member] = pos
		}
		for _, tp := range st.Assignment {
			if gs.committing[tp] > 0 {
				continue
			}
			from, ok := pos[tp]
			if !ok {
				from, ok = b.offsets.get(g, tp)
			}
			t, terr := b.Topic(tp.Topic)
			if terr != nil {
				continue
			}
			p, perr := t.Partition(int(tp.Partition))
			if perr != nil {
				continue
			}
			if !ok || from < p.LogStartOffset() || from > p.HighWatermark() {
				// No committed offset, or it fell out of retention.
				if gs.reset[member] == "latest" && !ok {
					from = p.HighWatermark()
				} else {
					from = p.LogStartOffset()
				}
			}
			pos[tp] = from
			plans = append(plans, fetchPlan{tp, from})
		}
		return nil
	})
	if err != nil {
		return GroupFetchResult{}, nil, err
	}
	seenTopic := map[string]bool{}
	res := GroupFetchResult{State: st}
	next := map[group.TopicPartition]int64{}
	budget := max(maxBytes, 1)
	// Start at a rotating partition so that a busy partition cannot starve
	// the others.
	shift := 0
	if len(plans) > 0 {
		shift = int(time.Now().UnixNano() % int64(len(plans)))
	}
	for i := range plans {
		pl := plans[(i+shift)%len(plans)]
		t, err := b.Topic(pl.tp.Topic)
		if err != nil {
			continue
		}
		if !seenTopic[pl.tp.Topic] {
			seenTopic[pl.tp.Topic] = true
			waits = append(waits, t.notify.Wait())
		}
		if budget <= 0 {
			continue
		}
		p, err := t.Partition(int(pl.tp.Partition))
		if err != nil {
			continue // the topic was replaced since the plan
		}
		fr, err := b.read(t, p, pl.from, budget)
		if err != nil {
			if errors.Is(err, ErrOffsetOutOfRange) {
				continue
			}
			return res, nil, err
		}
		for _, r := range fr.Records {
			res.Records = append(res.Records, GroupRecord{pl.tp.Topic, pl.tp.Partition, r})
			budget -= len(r.Key) + len(r.Value)
		}
		next[pl.tp] = fr.NextOffset
	}
	b.groups.mu.Lock()
	if gs.generation != gen {
		// Rebalanced while reading: the new owner starts from the committed
		// offsets; hand back nothing so no one processes records it does
		// not own.
		res.Records = nil
	} else if pos := gs.positions[member]; pos != nil {
		for tp, o := range next {
			pos[tp] = o
		}
	}
	b.groups.mu.Unlock()
	return res, waits, nil
}

// CommitOffset is one offset to commit: the next offset to consume.
type CommitOffset struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
}

// CommitGroup commits offsets for member in generation gen. With no
// offsets it commits the member's current fetch positions. Errors:
// ErrUnknownMember, ErrRebalance (generation is old: re-read state, drop
// uncommitted work), ErrNotAssigned, ErrOffsetRegression,
// ErrOffsetOutOfRange (beyond the high watermark).
func (b *Broker) CommitGroup(ctx context.Context, g, member string, gen int32, offsets []CommitOffset) ([]CommitOffset, error) {
	var gs *groupState
	err := b.groups.withMember(g, member, func(s *groupState) error {
		gs = s
		if gen != gs.g.Generation() {
			return errf(ErrRebalance, "generation %d is over; current is %d", gen, gs.g.Generation())
		}
		if len(offsets) == 0 {
			for tp, o := range gs.positions[member] {
				offsets = append(offsets, CommitOffset{tp.Topic, tp.Partition, o})
			}
		}
		for _, o := range offsets {
			tp := group.TopicPartition{Topic: o.Topic, Partition: o.Partition}
			if err := gs.g.CheckOwner(member, gen, tp); err != nil {
				return errf(ErrNotAssigned, "%s/%d", o.Topic, o.Partition)
			}
		}
		for _, o := range offsets {
			gs.committing[group.TopicPartition{Topic: o.Topic, Partition: o.Partition}]++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	defer func() {
		b.groups.mu.Lock()
		for _, o := range offsets {
			tp := group.TopicPartition{Topic: o.Topic, Partition: o.Partition}
			if gs.committing[tp]--; gs.committing[tp] <= 0 {
				delete(gs.committing, tp)
			}
		}
		b.groups.mu.Unlock()
		gs.changed.Broadcast()
	}()
	slices.SortFunc(offsets, func(a, b CommitOffset) int {
		if a.Topic != b.Topic {
			if a.Topic < b.Topic {
				return -1
			}
			return 1
		}
		return int(a.Partition - b.Partition)
	})
	for _, o := range offsets {
		t, err := b.Topic(o.Topic)
		if err != nil {
			return nil, err
		}
		p, err := t.Partition(int(o.Partition))
		if err != nil {
			return nil, err
		}
		if o.Offset < 0 || o.Offset > p.HighWatermark() {
			return nil, &OffsetRangeError{Offset: o.Offset, Start: p.LogStartOffset(), End: p.HighWatermark()}
		}
		if err := b.offsets.commit(ctx, g, group.TopicPartition{Topic: o.Topic, Partition: o.Partition}, o.Offset, false); err != nil {
			return nil, err
		}
	}
	return offsets, nil
}

// MemberInfo describes one member for the admin API.
type MemberInfo struct {
	ID             string                 `json:"id"`
	Topics         []string               `json:"topics"`
	SessionTimeout string                 `json:"session_timeout"`
	LastSeen       time.Time              `json:"last_seen"`
	Assignment     []group.TopicPartition `json:"assignment"`
}

// GroupInfo describes a consumer group for the admin API.
type GroupInfo struct {
	Name       string       `json:"name"`
	Generation int32        `json:"generation"`
	Assignor   string       `json:"assignor,omitempty"`
	Members    []MemberInfo `json:"members"`
	// PushSubscriptions names the push subscriptions that consume as this
	// group (they are not members: they own every partition of their topic).
	PushSubscriptions []string       `json:"push_subscriptions,omitempty"`
	Offsets           []PartitionLag `json:"offsets"`
}

// Groups describes every group that has members or committed offsets.
func (b *Broker) Groups() []GroupInfo {
	names := b.offsets.groups()
	for _, s := range b.subs {
		names = append(names, s.cfg.Group)
	}
	b.groups.mu.Lock()
	for n := range b.groups.groups {
		names = append(names, n)
	}
	b.groups.mu.Unlock()
	slices.Sort(names)
	names = slices.Compact(names)
	out := make([]GroupInfo, 0, len(names))
	for _, n := range names {
		gi, _ := b.Group(n)
		out = append(out, gi)
	}
	return out
}

// Group describes one group, or fails with ErrUnknownGroup.
func (b *Broker) Group(name string) (GroupInfo, error) {
	gi := GroupInfo{Name: name, Members: []MemberInfo{}}
	now := b.now()
	b.groups.mu.Lock()
	gs, ok := b.groups.groups[name]
	var woken bool
	if ok {
		gs.g.Expire(now)
		woken = b.groups.syncLocked(gs)
		gi.Generation = gs.g.Generation()
		gi.Assignor = gs.g.AssignorName()
		for _, m := range gs.g.Members() {
			a, _ := gs.g.Assignment(m.ID)
			gi.Members = append(gi.Members, MemberInfo{m.ID, m.Topics, m.SessionTimeout.String(), m.LastSeen, a})
		}
	}
	b.groups.mu.Unlock()
	if woken {
		gs.changed.Broadcast()
	}
	for _, s := range b.subs {
		if s.cfg.Group == name {
			gi.PushSubscriptions = append(gi.PushSubscriptions, s.name)
		}
	}
	gi.Offsets = b.lag(name)
	if gi.Offsets == nil {
		gi.Offsets = []PartitionLag{}
	}
	if !ok && len(gi.Offsets) == 0 && len(gi.PushSubscriptions) == 0 {
		return gi, errf(ErrUnknownGroup, "%q", name)
	}
	return gi, nil
}
