package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// A file full of mistakes (generated garbage, the wrong file) is reported
// as its first MaxProblems problems and a count of the rest, rather than as
// thousands of lines in one log entry.
func TestParseReportsAtMostMaxProblems(t *testing.T) {
	var b strings.Builder
	b.WriteString("clusters:\n")
	const n = 5000
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "  c%d: {endpoints: [10.0.0.1:80], conect_timeout: 1s}\n", i)
	}
	_, err := Parse([]byte(b.String()), "big.yaml")
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("err = %v, want Errors", err)
	}
	if len(es) != MaxProblems+1 {
		t.Fatalf("%d problems reported, want %d and a count", len(es), MaxProblems)
	}
	if got, want := es[0].Error(), `big.yaml:2: clusters.c0.conect_timeout: unknown key "conect_timeout" (did you mean "connect_timeout"?)`; got != want {
		t.Errorf("first = %s, want %s", got, want)
	}
	if got, want := es[MaxProblems].Error(), fmt.Sprintf("big.yaml: %d more problems not shown", n-MaxProblems); got != want {
		t.Errorf("last = %s, want %s", got, want)
	}
}

// A mapping with more keys than any config needs is refused before the
// typed decode. The YAML library checks a mapping for duplicate keys by
// comparing every pair, so before, a 4 MB file of 300 000 keys (within
// MaxFileBytes) kept validate, and the reload goroutine, busy for many
// minutes.
func TestParseRefusesHugeMappingQuickly(t *testing.T) {
	var b strings.Builder
	b.WriteString("clusters:\n  a:\n    endpoints: [10.0.0.1:80]\n")
	for i := 0; b.Len() < MaxFileBytes-64; i++ {
		fmt.Fprintf(&b, "    k%d: 1\n", i)
	}
	_, err := Parse([]byte(b.String()), "big.yaml")
	want := fmt.Sprintf(`big.yaml:3: clusters.a: a mapping of %d keys; at most %d are allowed`, strings.Count(b.String(), "\n")-2, maxMappingKeys)
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
}

// One key written thousands of times would make the YAML library report
// every repeated pair (millions of messages); it is refused as one
// problem.
func TestParseRefusesKeyRepeatedManyTimes(t *testing.T) {
	var b strings.Builder
	b.WriteString("clusters:\n  a:\n    endpoints: [10.0.0.1:80]\n")
	for i := 0; i < 5000; i++ {
		b.WriteString("    protocol: grpc\n")
	}
	_, err := Parse([]byte(b.String()), "t.yaml")
	if err == nil || !strings.HasPrefix(err.Error(), `t.yaml:`) || !strings.Contains(err.Error(), `clusters.a.protocol: duplicate key "protocol", written`) {
		t.Fatalf("err = %v", err)
	}
}

// Validation problems beside many failed decodes are matched up in linear
// time, and one under a value that failed to decode is not reported
// twice.
func TestParseManyDecodeAndValidationProblems(t *testing.T) {
	var b strings.Builder
	b.WriteString("clusters:\n")
	for i := 0; i < 5000; i++ {
		// endpoints fails to decode (a mapping), so "at least one
		// endpoint" must not be reported for it; connect_timeout fails
		// validation on its own.
		fmt.Fprintf(&b, "  c%d: {endpoints: {x: 1}, connect_timeout: -1s}\n", i)
	}
	_, err := Parse([]byte(b.String()), "t.yaml")
	var es Errors
	if !errors.As(err, &es) || len(es) != MaxProblems+1 {
		t.Fatalf("err = %v", err)
	}
	for _, e := range es[:MaxProblems] {
		if strings.Contains(e.Msg, "at least one endpoint") {
			t.Errorf("reported under a failed decode: %v", e)
		}
	}
	if got := es[0].Error(); got != `t.yaml:2: clusters.c0.endpoints: expected a list, got a mapping` {
		t.Errorf("first = %s", got)
	}
	if got := es[1].Error(); got != `t.yaml:2: clusters.c0.connect_timeout: must not be negative, got -1s` {
		t.Errorf("second = %s", got)
	}
}

// Aliases that repeat a large mapping make the YAML library check it for
// duplicate keys once per alias, each time comparing every pair of keys;
// its own alias guard counts nodes and let 50 aliases of a 10 000-key
// mapping through (a 360 KB file that took 16 s to reject). Such a
// document is now refused before the typed decode.
func TestParseRefusesAliasesRepeatingALargeMapping(t *testing.T) {
	var b strings.Builder
	b.WriteString("clusters: &c\n")
	for i := 0; i < 9999; i++ {
		fmt.Fprintf(&b, "  c%d: {endpoints: [10.0.0.1:80]}\n", i)
	}
	b.WriteString("routes:\n")
	for i := 0; i < 50; i++ {
		b.WriteString("  - match: *c\n")
	}
	_, err := Parse([]byte(b.String()), "t.yaml")
	if err == nil || err.Error() != "t.yaml:1: the document's aliases repeat its mappings too often to be checked: use fewer aliases of large mappings" {
		t.Fatalf("err = %v", err)
	}
}

// The largest mapping allowed, with no aliases, is still checked and
// accepted.
func TestParseAcceptsTheLargestMapping(t *testing.T) {
	var b strings.Builder
	b.WriteString("clusters:\n")
	for i := 0; i < maxMappingKeys; i++ {
		fmt.Fprintf(&b, "  c%d: {endpoints: [10.0.0.1:80]}\n", i)
	}
	cfg, err := Parse([]byte(b.String()), "t.yaml")
	if err != nil || len(cfg.Clusters) != maxMappingKeys {
		t.Fatalf("err = %v", err)
	}
}
