package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
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

// The configuration snippets of the other pages (README.md and docs/*.md)
// use only keys that exist, at the right place: a block that opens with a
// top-level key of the config is parsed, and any unknown key in it fails
// the test. Such snippets show a part of a config (a cluster with its
// endpoints elided, a route whose clusters are declared elsewhere), so the
// other problems of an incomplete config are let pass; configuration.md's
// complete examples are held to validate in full above.
func TestDocumentationSnippetsUseKnownKeys(t *testing.T) {
	top := map[string]bool{}
	ct := reflect.TypeOf(Config{})
	for i := range ct.NumField() {
		name, _, _ := strings.Cut(ct.Field(i).Tag.Get("yaml"), ",")
		top[name] = true
	}
	files, _ := filepath.Glob("../../docs/*.md")
	files = append(files, "../../README.md")
	checked := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range strings.Split(string(b), "```yaml\n")[1:] {
			block, _, ok := strings.Cut(p, "```")
			if !ok {
				continue
			}
			block = dedent(block)
			first, _, _ := strings.Cut(strings.TrimSpace(block), ":")
			if !top[first] {
				continue // a fragment below the top level, or a list of routes
			}
			checked++
			name := filepath.Base(f) + " yaml block " + string(rune('1'+i))
			_, err := Parse([]byte(block), name)
			var errs Errors
			if err != nil && !errors.As(err, &errs) {
				t.Errorf("%s does not parse: %v", name, err)
				continue
			}
			for _, e := range errs {
				if e.Path == "" || strings.Contains(e.Msg, "unknown key") {
					t.Error(e)
				}
			}
		}
	}
	if checked < 6 {
		t.Fatalf("found %d configuration snippets in the docs, want at least 6", checked)
	}
}

// dedent removes the indentation of a block indented as a whole (a code
// block inside a list item).
func dedent(block string) string {
	lines := strings.Split(block, "\n")
	indent := -1
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		if n := len(l) - len(strings.TrimLeft(l, " ")); indent < 0 || n < indent {
			indent = n
		}
	}
	for i, l := range lines {
		if len(l) >= indent && indent > 0 {
			lines[i] = l[indent:]
		}
	}
	return strings.Join(lines, "\n")
}
