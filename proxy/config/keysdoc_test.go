package config

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// Every configuration key is documented: each YAML key of Config, at any
// depth, appears in backquotes (alone or in a dotted path) in README.md
// or docs/*.md. A key kept only to be refused (routes[].retry.budget,
// refused with the name of its replacement) is documented as refused,
// its fields are not.
func TestEveryConfigKeyIsDocumented(t *testing.T) {
	var text strings.Builder
	files, _ := filepath.Glob("../../docs/*.md")
	files = append(files, "../../README.md")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		text.Write(b)
	}
	quoted := map[string]bool{}
	for _, m := range regexp.MustCompile("`([^`\n]+)`").FindAllStringSubmatch(text.String(), -1) {
		for _, part := range regexp.MustCompile(`[A-Za-z0-9_]+`).FindAllString(m[1], -1) {
			quoted[part] = true
		}
	}
	keys := map[string]string{} // key -> a path where it occurs
	seen := map[reflect.Type]bool{}
	var walk func(t reflect.Type, path string)
	walk = func(t reflect.Type, path string) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || t == reflect.TypeOf(time.Time{}) || seen[t] {
			return
		}
		seen[t] = true
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("yaml")
			name, opts, _ := strings.Cut(tag, ",")
			if name == "-" || !f.IsExported() {
				continue
			}
			if strings.Contains(opts, "inline") || name == "" && f.Anonymous {
				walk(f.Type, path)
				continue
			}
			if name == "" {
				continue
			}
			p := strings.TrimPrefix(path+"."+name, ".")
			if _, ok := keys[name]; !ok {
				keys[name] = p
			}
			if p != "routes.retry.budget" {
				walk(f.Type, p)
			}
		}
	}
	walk(reflect.TypeOf(Config{}), "")
	var missing []string
	for k, p := range keys {
		if !quoted[k] {
			missing = append(missing, p)
		}
	}
	sort.Strings(missing)
	if len(keys) < 100 {
		t.Fatalf("found only %d keys: the walk is broken", len(keys))
	}
	if len(missing) > 0 {
		t.Fatalf("%d of %d configuration keys are not documented in backquotes in README.md or docs/:\n%s",
			len(missing), len(keys), strings.Join(missing, "\n"))
	}
}
