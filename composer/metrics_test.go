package composer

import (
	"context"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

type noBackend struct{}

func (noBackend) Do(context.Context, *Request) (*Response, error) {
	return nil, errors.New("no backend")
}

// A composition's series exist from when it is built: every result, every
// reason of every call, the partial series of an optional call and the
// cache series of a caching call.
func TestCompositionSeriesExistFromItsBuild(t *testing.T) {
	reg := prometheus.NewRegistry()
	spec := Spec{Calls: []Call{
		{Name: "a", Cluster: "c", Path: "/a"},
		{Name: "b", Cluster: "c", Path: "/b", Optional: true, CacheTTL: Duration(time.Second)},
	}}
	if _, err := New(spec, noBackend{}, Options{Name: "x", Registry: reg}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int{
		"outrigger_composer_requests_total":           int(numResults),
		"outrigger_composer_request_duration_seconds": 1,
		"outrigger_composer_call_duration_seconds":    2,
		"outrigger_composer_call_failures_total":      2 * len(reasons),
		"outrigger_composer_partial_calls_total":      1,
		"outrigger_composer_cache_lookups_total":      2,
	} {
		if n := testutil.CollectAndCount(reg, name); n != want {
			t.Errorf("%s: %d series, want %d", name, n, want)
		}
	}
}

// DeleteSeries deletes what the compositions kept no longer use, by name,
// call, optional and cache_ttl, and leaves what they use with its counts.
// Two compositions of the same name (routes of the same name on both
// listeners) share their series.
func TestDeleteSeriesKeepsWhatTheNewCompositionsUse(t *testing.T) {
	reg := prometheus.NewRegistry()
	build := func(name string, calls ...Call) *Composition {
		t.Helper()
		c, err := New(Spec{Calls: calls}, noBackend{}, Options{Name: name, Registry: reg})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	cached := Duration(time.Second)
	old := []*Composition{
		build("gone", Call{Name: "a", Cluster: "c", Path: "/"}),
		build("kept",
			Call{Name: "same", Cluster: "c", Path: "/", Optional: true, CacheTTL: cached},
			Call{Name: "dropped", Cluster: "c", Path: "/"},
			Call{Name: "required", Cluster: "c", Path: "/", Optional: true},
			Call{Name: "uncached", Cluster: "c", Path: "/", CacheTTL: cached},
			Call{Name: "shared", Cluster: "c", Path: "/", Optional: true, CacheTTL: cached}),
	}
	old[1].series.requests[resultOK].Inc()
	keep := []*Composition{
		build("kept",
			Call{Name: "same", Cluster: "c", Path: "/", Optional: true, CacheTTL: cached},
			Call{Name: "required", Cluster: "c", Path: "/"},
			Call{Name: "uncached", Cluster: "c", Path: "/"},
			Call{Name: "shared", Cluster: "c", Path: "/"}),
		build("kept", Call{Name: "shared", Cluster: "c", Path: "/", Optional: true, CacheTTL: cached}),
	}
	DeleteSeries(old, keep)

	count := func(name string, labels prometheus.Labels) int {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
		series:
			for _, m := range mf.GetMetric() {
				have := map[string]string{}
				for _, l := range m.GetLabel() {
					have[l.GetName()] = l.GetValue()
				}
				for k, v := range labels {
					if have[k] != v {
						continue series
					}
				}
				n++
			}
		}
		return n
	}
	for _, tc := range []struct {
		metric string
		labels prometheus.Labels
		want   int
	}{
		{"outrigger_composer_requests_total", prometheus.Labels{"composition": "gone"}, 0},
		{"outrigger_composer_call_failures_total", prometheus.Labels{"composition": "gone"}, 0},
		{"outrigger_composer_requests_total", prometheus.Labels{"composition": "kept"}, int(numResults)},
		{"outrigger_composer_call_duration_seconds", prometheus.Labels{"call": "dropped"}, 0},
		{"outrigger_composer_call_failures_total", prometheus.Labels{"call": "dropped"}, 0},
		{"outrigger_composer_call_failures_total", prometheus.Labels{"call": "required"}, len(reasons)},
		{"outrigger_composer_partial_calls_total", prometheus.Labels{"call": "required"}, 0},
		{"outrigger_composer_cache_lookups_total", prometheus.Labels{"call": "uncached"}, 0},
		{"outrigger_composer_partial_calls_total", prometheus.Labels{"call": "same"}, 1},
		{"outrigger_composer_cache_lookups_total", prometheus.Labels{"call": "same"}, 2},
		{"outrigger_composer_partial_calls_total", prometheus.Labels{"call": "shared"}, 1},
		{"outrigger_composer_cache_lookups_total", prometheus.Labels{"call": "shared"}, 2},
	} {
		if n := count(tc.metric, tc.labels); n != tc.want {
			t.Errorf("%s%v: %d series, want %d", tc.metric, tc.labels, n, tc.want)
		}
	}
	if v := testutil.ToFloat64(keep[0].series.requests[resultOK]); v != 1 {
		t.Errorf("kept composition: ok = %v, want the 1 counted before", v)
	}
}

// reasons lists every Reason constant: observe counts a failure only
// under a reason it finds there, so one missing would go uncounted.
func TestReasonsListsEveryReasonConstant(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "errors.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var declared []Reason
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, s := range gd.Specs {
			vs := s.(*ast.ValueSpec)
			if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Reason" {
				continue
			}
			for _, v := range vs.Values {
				lit, ok := v.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					t.Fatalf("a Reason constant that is not a string literal: %T", v)
				}
				s, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatal(err)
				}
				declared = append(declared, Reason(s))
			}
		}
	}
	if len(declared) == 0 {
		t.Fatal("no Reason constant found in errors.go; the scan is broken")
	}
	for _, r := range declared {
		if reasonIndex(r) < 0 {
			t.Errorf("Reason %q is not in reasons: its failures are not counted", r)
		}
	}
	if len(declared) != len(reasons) {
		t.Errorf("errors.go declares %d Reasons, reasons lists %d", len(declared), len(reasons))
	}
}
