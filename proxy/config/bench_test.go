package config

import "testing"

func BenchmarkParseFull(b *testing.B) {
	data := mustReadB(b, "testdata/full.yaml")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(data, "full.yaml"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkHash(b *testing.B) {
	cfg, err := Load("testdata/full.yaml")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = cfg.Hash()
	}
}
