package config

import (
	"os"
	"strings"
	"testing"
)

// The complete configs shown in docs/configuration.md are valid; fragments
// (blocks that start with a list item) are skipped.
func TestDocumentationExamplesParse(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatalf("documentation not found: %v", err)
	}
	parts := strings.Split(string(doc), "```yaml\n")
	checked := 0
	for i, p := range parts[1:] {
		block, _, ok := strings.Cut(p, "```")
		if !ok || strings.HasPrefix(strings.TrimSpace(block), "-") {
			continue
		}
		if _, err := Parse([]byte(block), "configuration.md block "+string(rune('1'+i))); err != nil {
			t.Errorf("example %d does not parse:\n%v", i+1, err)
		}
		checked++
	}
	if checked < 2 {
		t.Fatalf("found %d complete examples, want at least 2", checked)
	}
}
