package proxy

import (
	"math/rand/v2"
)

// newRequestID returns 16 random bytes as 32 lowercase hex characters.
//
// The bytes come from math/rand/v2's top-level source, which is the
// runtime's per-thread ChaCha8 generator: no lock, no syscall, and
// unpredictable enough for an id (it is not a secret). crypto/rand costs a
// getrandom(2) call per id; BenchmarkRequestID compares the two.
func newRequestID() string {
	var buf [32]byte
	putRequestID(&buf)
	return string(buf[:])
}

// putRequestID writes a new request id (see newRequestID) into buf, so
// that a caller can keep its bytes in an allocation of its own.
func putRequestID(buf *[32]byte) {
	hexUint64(buf[:16], rand.Uint64())
	hexUint64(buf[16:], rand.Uint64())
}

func hexUint64(dst []byte, v uint64) {
	const hex = "0123456789abcdef"
	for i := 15; i >= 0; i-- {
		dst[i] = hex[v&0xf]
		v >>= 4
	}
}
