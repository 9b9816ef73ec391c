package composer

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/*.golden")

// goldenCase is one file of testdata/golden: backends that serve fixed JSON
// documents by path, a composition as the sidecar config declares it, and the
// request to make. The .golden file beside it holds the status, the
// x-outrigger-* headers and the indented body.
type goldenCase struct {
	Backends map[string]map[string]any `yaml:"backends"`
	Pattern  string                    `yaml:"pattern"`
	Request  string                    `yaml:"request"`
	Spec     Spec                      `yaml:"spec"`
}

func TestGoldenCompositions(t *testing.T) {
	files, err := filepath.Glob("testdata/golden/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden cases: %v", err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var gc goldenCase
			dec := yaml.NewDecoder(bytes.NewReader(raw))
			dec.KnownFields(true)
			if err := dec.Decode(&gc); err != nil {
				t.Fatalf("decode %s: %v", file, err)
			}
			e := newEnv(t)
			for cluster, docs := range gc.Backends {
				m := map[string]string{}
				for path, doc := range docs {
					if s, isStr := doc.(string); isStr && strings.HasPrefix(s, "raw:") {
						m[path] = strings.TrimPrefix(s, "raw:")
						continue
					}
					m[path] = mustJSONString(t, doc)
				}
				e.jsonService(cluster, m)
			}
			if err := gc.Spec.Validate(func(c string) bool { _, ok := gc.Backends[c]; return ok }); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			pattern := gc.Pattern
			if pattern == "" {
				pattern = "GET /orders/{id}/details"
			}
			base, _ := e.serve(pattern, gc.Spec, Options{Name: name})
			got := render(t, e.get(base+gc.Request))
			goldenFile := strings.TrimSuffix(file, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(goldenFile, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(goldenFile)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if got != string(want) {
				t.Errorf("%s: got\n%s\nwant\n%s", name, got, want)
			}
		})
	}
}

func render(t *testing.T, r reply) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "status: %d\n", r.status)
	for _, h := range []string{HeaderPartial, HeaderError} {
		if v := r.header.Get(h); v != "" {
			fmt.Fprintf(&b, "%s: %s\n", strings.ToLower(h), v)
		}
	}
	var out bytes.Buffer
	if err := json.Indent(&out, r.body, "", "  "); err != nil {
		t.Fatalf("body is not JSON: %v\n%s", err, r.body)
	}
	b.Write(bytes.TrimSpace(out.Bytes()))
	b.WriteByte('\n')
	return b.String()
}
