package config

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"go.yaml.in/yaml/v3"
)

// FuzzParse: Parse never panics; a rejection is a non-empty Errors whose
// entries all say something; an accepted config is valid, renders, and
// survives being written back to YAML and parsed again unchanged.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		"", "{}", "clusters: {a: {endpoints: [\"1.2.3.4:5\"]}}\nroutes: [{cluster: a}]\n",
		"routes: [{direct_response: {status: 200, headers: {a: b}}}]",
		"clusters:\n  a:\n    endpoints:\n      - {address: \"h:1\", weight: 2}\n",
		"listeners: {inbound: {app: \"127.0.0.1:1\"}}",
		"a: &x [1]\nb: *x\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, "fuzz.yaml")
		if err != nil {
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("rejection is %T %v, want a non-empty Errors", err, err)
			}
			for _, e := range es {
				if e.Msg == "" {
					t.Fatalf("empty message in %v", err)
				}
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("accepted config does not validate: %v", err)
		}
		first, err := EffectiveJSON(cfg)
		if err != nil {
			t.Fatalf("EffectiveJSON: %v", err)
		}
		out, err := yaml.Marshal(cfg)
		if err != nil {
			t.Fatalf("marshal accepted config: %v", err)
		}
		again, err := Parse(out, "again.yaml")
		if err != nil {
			t.Fatalf("re-parse of\n%s\nfailed: %v", out, err)
		}
		second, err := EffectiveJSON(again)
		if err != nil {
			t.Fatalf("EffectiveJSON: %v", err)
		}
		if a, b := canonical(t, first), canonical(t, second); !reflect.DeepEqual(a, b) {
			t.Fatalf("round trip changed the config\nfirst:  %s\nsecond: %s\nyaml:\n%s", first, second, out)
		}
	})
}

// canonical decodes rendered JSON and drops nulls and empty lists and
// objects, which YAML cannot tell apart from absent keys.
func canonical(t *testing.T, b []byte) any {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	var clean func(any) any
	clean = func(v any) any {
		switch x := v.(type) {
		case map[string]any:
			out := map[string]any{}
			for k, e := range x {
				if e = clean(e); e != nil {
					out[k] = e
				}
			}
			if len(out) == 0 {
				return nil
			}
			return out
		case []any:
			if len(x) == 0 {
				return nil
			}
			for i := range x {
				x[i] = clean(x[i])
			}
			return x
		}
		return v
	}
	return clean(v)
}
