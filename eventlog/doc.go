// Package eventlog holds the sidecar's topics: partitioned, append-only,
// durable logs on this node, with producers, consumers, consumer groups and
// the HTTP API that the local app uses to publish and subscribe.
//
// A topic is split into partitions; each partition is one segment.Log.
// A record with a key always lands in the same partition (Kafka's murmur2
// partitioner, bit for bit), so order per key holds; there is no order across
// partitions.
//
// Each Partition keeps its write path and its notion of "committed" explicit:
// a leader epoch stamped on every batch, a log end offset (the next offset to
// be written) and a high watermark (the end of what is acknowledged). On one
// node the in-sync replica set is this node alone, so the high watermark is
// the log end as soon as an append has returned under the topic's flush
// policy, and acks=all means the same as acks=1. Consumers never read past
// the high watermark.
//
// The pieces:
//   - Broker (broker.go) owns the topics, opens and closes them, and runs the
//     background work: push subscriptions, retention/compaction, and group
//     session expiry. Open, Run(ctx), Close; shutdown order is on Broker.
//   - Partition (partition.go) is the write path: leader epoch, log end
//     offset, high watermark, acks, and long-poll waiting on the high
//     watermark (a broadcast channel, no goroutine per waiter).
//   - eventlog/group is the pure core of consumer groups (membership,
//     generations, session expiry on an injected clock, assignors);
//     groups.go is its shell (locks, member ids, fetch positions, commits).
//   - offsets.go and idempotency.go keep committed offsets and publish
//     idempotency keys in the internal compacted topics __consumer_offsets
//     and __idempotency, replayed on Open.
//   - Subscriber (push.go) delivers a push subscription as CloudEvents.
//   - Handler (api.go) and AdminHandler (admin.go) are the HTTP surfaces,
//     documented in docs/messaging.md; errors come from the catalog in
//     errors.go.
//
// Invariants:
//   - offsets in a partition are assigned once, in order, and never reused;
//   - a consumer group's committed offset for a partition never moves
//     backwards, except through an explicit reset;
//   - delivery to the app is at-least-once: a record is committed only after
//     the app acknowledged it (2xx, or a commit call), so a failure or a
//     rebalance can deliver a record again, never skip it.
package eventlog
