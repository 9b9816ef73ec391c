package group

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func tps(topic string, ps ...int32) []TopicPartition {
	out := []TopicPartition{}
	for _, p := range ps {
		out = append(out, TopicPartition{topic, p})
	}
	return out
}

func cat(lists ...[]TopicPartition) []TopicPartition {
	out := []TopicPartition{}
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

func TestAssignorsTable(t *testing.T) {
	two := []Subscription{{"a", []string{"t0", "t1"}}, {"b", []string{"t0", "t1"}}}
	three := []Subscription{{"a", []string{"t"}}, {"b", []string{"t"}}, {"c", []string{"t"}}}
	cases := []struct {
		name     string
		assignor Assignor
		members  []Subscription
		parts    map[string]int32
		prev     Assignment
		want     Assignment
	}{
		{
			// Kafka's RangeAssignor documentation example: two consumers,
			// two topics of three partitions each.
			name: "range two topics", assignor: Range{}, members: two,
			parts: map[string]int32{"t0": 3, "t1": 3},
			want: Assignment{
				"a": cat(tps("t0", 0, 1), tps("t1", 0, 1)),
				"b": cat(tps("t0", 2), tps("t1", 2)),
			},
		},
		{
			// Kafka's RoundRobinAssignor documentation example.
			name: "roundrobin two topics", assignor: RoundRobin{}, members: two,
			parts: map[string]int32{"t0": 3, "t1": 3},
			want: Assignment{
				"a": cat(tps("t0", 0, 2), tps("t1", 1)),
				"b": cat(tps("t0", 1), tps("t1", 0, 2)),
			},
		},
		{
			name: "range uneven", assignor: Range{}, members: three,
			parts: map[string]int32{"t": 7},
			want:  Assignment{"a": tps("t", 0, 1, 2), "b": tps("t", 3, 4), "c": tps("t", 5, 6)},
		},
		{
			name: "more members than partitions", assignor: Range{}, members: three,
			parts: map[string]int32{"t": 2},
			want:  Assignment{"a": tps("t", 0), "b": tps("t", 1), "c": tps("t")},
		},
		{
			name: "roundrobin skips unsubscribed", assignor: RoundRobin{},
			members: []Subscription{{"a", []string{"x"}}, {"b", []string{"x", "y"}}},
			parts:   map[string]int32{"x": 2, "y": 2},
			want:    Assignment{"a": tps("x", 0), "b": cat(tps("x", 1), tps("y", 0, 1))},
		},
		{
			name: "sticky from scratch", assignor: Sticky{}, members: three,
			parts: map[string]int32{"t": 6},
			want:  Assignment{"a": tps("t", 0, 1), "b": tps("t", 2, 3), "c": tps("t", 4, 5)},
		},
		{
			name: "sticky keeps owners when a member joins", assignor: Sticky{}, members: three,
			parts: map[string]int32{"t": 6},
			prev:  Assignment{"a": tps("t", 0, 1, 2), "b": tps("t", 3, 4, 5)},
			want:  Assignment{"a": tps("t", 0, 1), "b": tps("t", 3, 4), "c": tps("t", 2, 5)},
		},
		{
			name: "sticky keeps owners when a member leaves", assignor: Sticky{},
			members: []Subscription{{"a", []string{"t"}}, {"c", []string{"t"}}},
			parts:   map[string]int32{"t": 6},
			prev:    Assignment{"a": tps("t", 0, 1), "b": tps("t", 2, 3), "c": tps("t", 4, 5)},
			want:    Assignment{"a": tps("t", 0, 1, 2), "c": tps("t", 3, 4, 5)},
		},
		{
			name: "sticky drops partitions of a shrunk topic", assignor: Sticky{},
			members: []Subscription{{"a", []string{"t"}}, {"b", []string{"t"}}},
			parts:   map[string]int32{"t": 2},
			prev:    Assignment{"a": tps("t", 0, 1, 2), "b": tps("t", 3)},
			want:    Assignment{"a": tps("t", 0), "b": tps("t", 1)},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := c.assignor.Assign(c.members, c.parts, c.prev)
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got  %v\nwant %v", got, c.want)
			}
		})
	}
}

// Every assignor, for random inputs: each subscribed partition has exactly
// one owner, owners subscribe to its topic, and per-topic loads differ by at
// most one (range and sticky; roundrobin balances overall).
func TestAssignorsCoverEveryPartitionOnce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	topics := []string{"a", "b", "c"}
	for _, as := range []Assignor{Range{}, RoundRobin{}, Sticky{}} {
		var prev Assignment
		for round := range 200 {
			parts := map[string]int32{}
			for _, tp := range topics {
				parts[tp] = int32(1 + rng.IntN(9))
			}
			var members []Subscription
			for i := range 1 + rng.IntN(6) {
				var ts []string
				for _, tp := range topics {
					if rng.IntN(2) == 0 {
						ts = append(ts, tp)
					}
				}
				members = append(members, Subscription{fmt.Sprintf("m%d", i), ts})
			}
			got := as.Assign(members, parts, prev)
			owners := map[TopicPartition]int{}
			for _, m := range members {
				for _, tp := range got[m.MemberID] {
					owners[tp]++
					if !subscribes(m, tp.Topic) {
						t.Fatalf("%s round %d: %s owns %v without subscribing", as.Name(), round, m.MemberID, tp)
					}
				}
			}
			for topic, n := range parts {
				subscribed := false
				for _, m := range members {
					subscribed = subscribed || subscribes(m, topic)
				}
				for p := range n {
					want := 0
					if subscribed {
						want = 1
					}
					if owners[TopicPartition{topic, p}] != want {
						t.Fatalf("%s round %d: %s/%d owned %d times", as.Name(), round, topic, p, owners[TopicPartition{topic, p}])
					}
				}
				if as.Name() == "roundrobin" {
					continue
				}
				lo, hi := 1<<30, -1
				for _, m := range members {
					if !subscribes(m, topic) {
						continue
					}
					c := 0
					for _, tp := range got[m.MemberID] {
						if tp.Topic == topic {
							c++
						}
					}
					lo, hi = min(lo, c), max(hi, c)
				}
				if subscribed && hi-lo > 1 {
					t.Fatalf("%s round %d: topic %s unbalanced %d..%d", as.Name(), round, topic, lo, hi)
				}
			}
			prev = got
		}
	}
}

func TestGroupGenerationsAndSessionExpiry(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	g := New("g", Sticky{}, func(string) int32 { return 4 })
	g.Join("a", []string{"t"}, 10*time.Second, now)
	if g.Generation() != 1 {
		t.Fatalf("generation %d after first join", g.Generation())
	}
	a, _ := g.Assignment("a")
	if len(a) != 4 {
		t.Fatalf("lone member owns %v", a)
	}
	g.Join("b", []string{"t"}, 10*time.Second, now.Add(time.Second))
	if g.Generation() != 2 {
		t.Fatalf("generation %d after second join", g.Generation())
	}
	// Re-joining with the same subscription does not rebalance.
	g.Join("b", []string{"t"}, 10*time.Second, now.Add(2*time.Second))
	if g.Generation() != 2 {
		t.Fatalf("idempotent join rebalanced: generation %d", g.Generation())
	}
	if err := g.CheckOwner("a", 1, TopicPartition{"t", 0}); err != ErrStaleGeneration {
		t.Fatalf("old generation: %v", err)
	}
	// b heartbeats, a goes silent: only a expires, exactly after its timeout.
	if err := g.Heartbeat("b", now.Add(9*time.Second)); err != nil {
		t.Fatal(err)
	}
	if gone := g.Expire(now.Add(10 * time.Second)); len(gone) != 0 {
		t.Fatalf("expired too early: %v", gone)
	}
	gone := g.Expire(now.Add(10*time.Second + time.Millisecond))
	if !reflect.DeepEqual(gone, []string{"a"}) {
		t.Fatalf("expired %v, want [a]", gone)
	}
	if g.Generation() != 3 {
		t.Fatalf("generation %d after expiry", g.Generation())
	}
	b, _ := g.Assignment("b")
	if len(b) != 4 {
		t.Fatalf("survivor owns %v", b)
	}
	if err := g.Heartbeat("a", now.Add(11*time.Second)); err != ErrUnknownMember {
		t.Fatalf("expired member heartbeat: %v", err)
	}
	if err := g.CheckOwner("b", 3, TopicPartition{"t", 2}); err != nil {
		t.Fatal(err)
	}
	if !g.Leave("b") || g.Leave("b") {
		t.Fatal("leave should report true once")
	}
}
