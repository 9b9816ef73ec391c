// Package group decides consumer-group membership and partition assignment.
// It is a pure core: no goroutines, no I/O, no wall clock. Time is passed in
// as `now`, member ids are chosen by the caller, and partition counts are
// read through a function the caller supplies.
//
// A Group has a generation number that increases by one on every change of
// membership or of the partitions its members subscribe to. On each change the
// group's Assignor recomputes the whole assignment at once (an eager
// rebalance done by the coordinator, not by a group leader as in Kafka's
// client-side protocol); members learn the new generation and assignment from
// their next call. A member that does not call within its session timeout is
// removed by Expire.
//
// Invariants:
//   - every subscribed partition is owned by exactly one member, or by none
//     while the group has no member subscribed to its topic;
//   - a member owns only partitions of topics it subscribed to;
//   - the assignors are deterministic functions of their inputs.
package group
