package eventlog

import "sync/atomic"

// murmur2 is the 32-bit MurmurHash2 exactly as Kafka's Java client computes
// it (org.apache.kafka.common.utils.Utils.murmur2: seed 0x9747b28c, little
// endian 4-byte blocks, tail bytes mixed in with fall-through). Keyed records
// must land in the same partition as a Kafka producer would put them, so that
// a topic can move to a real Kafka cluster without reshuffling keys.
func murmur2(data []byte) int32 {
	const (
		seed uint32 = 0x9747b28c
		m    uint32 = 0x5bd1e995
		r           = 24
	)
	n := len(data)
	h := seed ^ uint32(n)
	for i := 0; i+4 <= n; i += 4 {
		k := uint32(data[i]) | uint32(data[i+1])<<8 | uint32(data[i+2])<<16 | uint32(data[i+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	tail := n &^ 3
	switch n % 4 {
	case 3:
		h ^= uint32(data[tail+2]) << 16
		fallthrough
	case 2:
		h ^= uint32(data[tail+1]) << 8
		fallthrough
	case 1:
		h ^= uint32(data[tail])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return int32(h)
}

// KeyPartition is the partition of a keyed record among n partitions, as
// Kafka's default partitioner computes it: toPositive(murmur2(key)) % n,
// where toPositive clears the sign bit (it is not abs).
func KeyPartition(key []byte, n int) int {
	return int(murmur2(key)&0x7fffffff) % n
}

// partitioner spreads keyless records: all keyless records of one publish
// request go to one partition (sticky per batch, as Kafka's producer does
// since KIP-480), and successive requests take the partitions in turn.
// Keyed records always use KeyPartition.
type partitioner struct {
	next atomic.Uint32
}

// stickyPartition returns the partition for the keyless records of one batch.
func (p *partitioner) stickyPartition(n int) int {
	return int((p.next.Add(1) - 1) % uint32(n))
}
