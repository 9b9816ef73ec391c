package eventlog

import "testing"

// The vectors are Kafka's own, from UtilsTest.testMurmur2 in
// apache/kafka clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java.
func TestMurmur2MatchesKafkaVectors(t *testing.T) {
	for _, c := range []struct {
		in   []byte
		want int32
	}{
		{[]byte("21"), -973932308},
		{[]byte("foobar"), -790332482},
		{[]byte("a-little-bit-long-string"), -985981536},
		{[]byte("a-little-bit-longer-string"), -1486304829},
		{[]byte("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"), -58897971},
		{[]byte{'a', 'b', 'c'}, 479470107},
	} {
		if got := murmur2(c.in); got != c.want {
			t.Errorf("murmur2(%q) = %d, want %d", c.in, got, c.want)
		}
	}
}

func TestKeyPartitionClearsSignBitNotAbs(t *testing.T) {
	// murmur2("21") = -973932308; & 0x7fffffff = 1173551340 (abs would be
	// 973932308, which gives a different partition modulo 7).
	if got, want := KeyPartition([]byte("21"), 7), 1173551340%7; got != want {
		t.Fatalf("KeyPartition = %d, want %d", got, want)
	}
	if KeyPartition([]byte("21"), 7) == 973932308%7 {
		t.Fatal("test vector does not tell toPositive from abs")
	}
}

func TestStickyPartitionTakesPartitionsInTurn(t *testing.T) {
	var p partitioner
	seen := map[int]int{}
	for range 9 {
		seen[p.stickyPartition(3)]++
	}
	for i := range 3 {
		if seen[i] != 3 {
			t.Fatalf("partition %d chosen %d times, want 3 (%v)", i, seen[i], seen)
		}
	}
}
