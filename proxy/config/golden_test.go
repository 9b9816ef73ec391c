package config

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// Each testdata/*.yaml is a valid config; its effective form (defaults
// applied, as /config shows it) is pinned in the .golden next to it.
func TestGoldenEffectiveConfig(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			cfg, err := Load(file)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			got, err := EffectiveJSON(cfg)
			if err != nil {
				t.Fatalf("EffectiveJSON: %v", err)
			}
			golden := strings.TrimSuffix(file, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestGolden -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("effective config differs from %s (rerun with -update and review the diff):\n%s", golden, got)
			}

			// The effective config is itself valid, and defaults are
			// applied once for all.
			if err := cfg.Validate(); err != nil {
				t.Errorf("effective config does not validate: %v", err)
			}
			if again := cfg.WithDefaults(); !reflect.DeepEqual(again, cfg) {
				t.Errorf("WithDefaults is not idempotent")
			}
		})
	}
}

func TestWithDefaultsDoesNotMutate(t *testing.T) {
	raw, err := decode(mustRead(t, "testdata/full.yaml"), "full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	before, _ := EffectiveJSON(raw)
	eff := raw.WithDefaults()
	after, _ := EffectiveJSON(raw)
	if !bytes.Equal(before, after) {
		t.Fatalf("WithDefaults changed its receiver")
	}
	// No sharing: changing the copy leaves the original alone.
	eff.Clusters["payments"].Endpoints[0].Address = "changed:1"
	eff.Routes[0].Retry.Attempts = 9
	eff.Routes[0].Match.Authority[0] = "changed"
	if raw.Clusters["payments"].Endpoints[0].Address == "changed:1" || raw.Routes[0].Retry.Attempts == 9 || raw.Routes[0].Match.Authority[0] == "changed" {
		t.Fatalf("WithDefaults shares memory with its receiver")
	}
}

func TestValidateDoesNotMutate(t *testing.T) {
	raw, err := decode(mustRead(t, "testdata/full.yaml"), "full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	before, _ := EffectiveJSON(raw)
	if err := raw.Validate(); err != nil {
		t.Fatal(err)
	}
	after, _ := EffectiveJSON(raw)
	if !bytes.Equal(before, after) {
		t.Fatalf("Validate changed the config")
	}
}

func TestImplicitInboundParts(t *testing.T) {
	cfg, err := Parse([]byte("listeners: {inbound: {app: \"127.0.0.1:8080\", app_protocol: grpc}}\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cl, ok := cfg.Clusters[InboundAppCluster]
	if !ok || len(cl.Endpoints) != 1 || cl.Endpoints[0].Address != "127.0.0.1:8080" || cl.Protocol != ProtocolGRPC {
		t.Fatalf("implicit cluster = %+v", cl)
	}
	if len(cfg.Routes) != 1 {
		t.Fatalf("routes = %+v", cfg.Routes)
	}
	r := cfg.Routes[0]
	if r.Name != InboundDefaultRoute || r.Listener != Inbound || r.Cluster != InboundAppCluster || !r.TimeoutDisabled || r.Timeout != 0 || r.Match.Path.Prefix != "/" {
		t.Fatalf("implicit route = %+v", r)
	}

	// Without an app there is no inbound listener and nothing implicit.
	cfg, err = Parse([]byte("clusters: {a: {endpoints: [\"10.0.0.1:80\"]}}\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cfg.Clusters[InboundAppCluster]; ok || len(cfg.Routes) != 0 {
		t.Fatalf("implicit parts without an app: %+v %+v", cfg.Clusters, cfg.Routes)
	}
}

// /config shows the TLS versions a cluster offers: the bounds left out
// are written in, and one that is set stays as set. A cluster without TLS
// gets none, as Validate refuses tls keys beside enabled: false.
func TestWithDefaultsFillsTheTLSVersionBounds(t *testing.T) {
	cfg, err := Parse([]byte(`clusters:
  plain: {endpoints: ["10.0.0.1:80"]}
  tls: {endpoints: ["10.0.0.2:443"], tls: {enabled: true}}
  only13: {endpoints: ["10.0.0.3:443"], tls: {enabled: true, min_version: "1.3"}}
`), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][2]string{"plain": {"", ""}, "tls": {"1.2", "1.3"}, "only13": {"1.3", "1.3"}} {
		got := cfg.Clusters[name].TLS
		if got.MinVersion != want[0] || got.MaxVersion != want[1] {
			t.Errorf("clusters.%s.tls: min_version %q, max_version %q; want %q, %q", name, got.MinVersion, got.MaxVersion, want[0], want[1])
		}
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("effective config does not validate: %v", err)
	}
	out, err := EffectiveJSON(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, []byte(`"min_version": "1.2"`)) || !bytes.Contains(out, []byte(`"max_version": "1.3"`)) {
		t.Fatalf("the effective JSON leaves out the TLS version bounds:\n%s", out)
	}
}

func TestEffectiveJSONRendersDurationsOfAnyStruct(t *testing.T) {
	type inner struct {
		Wait  interface{ String() string } `json:"wait"`
		Skip  string                       `json:"skip,omitempty"`
		Plain int                          `json:"-"`
	}
	got, err := EffectiveJSON(struct {
		T   any              `json:"t"`
		M   map[string]any   `json:"m"`
		In  inner            `json:"in"`
		Nil *RetryPolicy     `json:"nil"`
		L   []map[int]string `json:"l"`
	}{
		T:  1500 * 1e6 * 1, // an int, not a duration
		M:  map[string]any{"b": 1, "a": durationOf("250ms")},
		In: inner{Wait: durationOf("2m")},
		L:  []map[int]string{{2: "x", 1: "y"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "t": 1500000000,
  "m": {
    "a": "250ms",
    "b": 1
  },
  "in": {
    "wait": "2m0s"
  },
  "nil": null,
  "l": [
    {
      "1": "y",
      "2": "x"
    }
  ]
}
`
	if string(got) != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

func TestHashFollowsContent(t *testing.T) {
	a, err := Load("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Load("testdata/example.yaml")
	if a.Hash() != b.Hash() || len(a.Hash()) != 16 {
		t.Fatalf("hashes %q %q", a.Hash(), b.Hash())
	}
	b.Routes[0].Timeout++
	if a.Hash() == b.Hash() {
		t.Fatalf("hash ignores a change")
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func durationOf(s string) time.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		panic(err)
	}
	return d
}

func mustReadB(b *testing.B, path string) []byte {
	b.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	return data
}
