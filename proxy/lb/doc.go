// Package lb holds the load-balancing policies the proxy uses to pick one
// endpoint of a cluster for each upstream attempt.
//
// A policy is pure: it owns no goroutine, no socket and no clock. It sees a
// cluster's endpoints only through the small [Candidates] interface that the
// caller implements, which tells how many endpoints there are, which of them
// may be picked now (not ejected by outlier detection, not already tried by
// this request), how many requests each has in flight and its weight.
//
// Invariants every policy keeps:
//   - Pick returns an index i with 0 <= i < Len() and Eligible(i) true, or -1
//     when no endpoint is eligible. It never returns an ineligible endpoint;
//     a "panic mode" that ignores ejections is the caller's decision, made by
//     passing a Candidates whose Eligible says so.
//   - Pick is safe for concurrent use and never blocks.
//   - Round robin, least request and random hold no per-endpoint state,
//     so the endpoint list may change between calls (a config reload
//     builds a new cluster anyway). [Maglev] is built for one endpoint
//     list, whose addresses and weights make its table; the caller builds
//     a new one when the list changes.
//   - Maglev is deterministic: the same endpoint list and the same key
//     ([Maglev.PickKey]) give the same endpoint in every process, and
//     [Hash] has no per-process seed.
package lb
