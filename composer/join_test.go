package composer

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
)

// randomKey draws a join key from a small domain so that matches, duplicates,
// type-crossing matches (7 vs "7") and non-matching kinds all occur.
func randomKey(r *rand.Rand) (any, bool) {
	switch r.IntN(8) {
	case 0:
		return nil, false // missing
	case 1:
		return nil, true // null
	case 2:
		return map[string]any{"k": json.Number("1")}, true
	case 3:
		return r.IntN(2) == 0, true
	case 4, 5:
		return fmt.Sprint(r.IntN(6)), true
	}
	return json.Number(fmt.Sprint(r.IntN(6))), true
}

func randomElems(r *rand.Rand, key string, n int) []any {
	out := make([]any, n)
	for i := range out {
		m := map[string]any{"i": json.Number(fmt.Sprint(i))}
		if k, ok := randomKey(r); ok {
			m[key] = k
		}
		out[i] = m
	}
	return out
}

// naiveKeyEqual is the model's definition of key equality, written separately
// from joinKey: both present, both strings, numbers or booleans, same text.
func naiveKeyEqual(a, b map[string]any, ka, kb string) bool {
	x, okx := a[ka]
	y, oky := b[kb]
	if !okx || !oky {
		return false
	}
	text := func(v any) (string, bool) {
		switch v := v.(type) {
		case string:
			return v, true
		case json.Number:
			return string(v), true
		case bool:
			return fmt.Sprint(v), true
		}
		return "", false
	}
	tx, ok1 := text(x)
	ty, ok2 := text(y)
	return ok1 && ok2 && tx == ty
}

// naiveJoin is the nested-loop model of the hash join.
func naiveJoin(into, from []any, on, fromKey, as string, many bool) []any {
	out := make([]any, len(into))
	for i, e := range into {
		src := e.(map[string]any)
		m := make(map[string]any, len(src)+1)
		for k, v := range src {
			m[k] = v
		}
		var matches []any
		for _, f := range from {
			if naiveKeyEqual(src, f.(map[string]any), on, fromKey) {
				matches = append(matches, f)
			}
		}
		switch {
		case many:
			if matches == nil {
				matches = []any{}
			}
			m[as] = matches
		case len(matches) > 0:
			m[as] = matches[0]
		}
		out[i] = m
	}
	return out
}

func TestHashJoinEqualsNestedLoopJoin(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for iter := 0; iter < 500; iter++ {
		many := iter%2 == 0
		into := randomElems(r, "ref", r.IntN(12))
		from := randomElems(r, "id", r.IntN(12))
		want := naiveJoin(into, from, "ref", "id", "match", many)

		out := map[string]any{"rows": into}
		j := joinPlan{into: mustPath(t, "rows"), on: mustPath(t, "ref"), fromKey: mustPath(t, "id"), as: "match", many: many}
		hashJoin(out, j, from)
		got := out["rows"].([]any)
		if !reflect.DeepEqual(normalize(t, got), normalize(t, want)) {
			t.Fatalf("iteration %d (many=%v):\ninto %s\nfrom %s\ngot  %s\nwant %s", iter, many,
				mustJSONString(t, into), mustJSONString(t, from), mustJSONString(t, got), mustJSONString(t, want))
		}
	}
}

func mustPath(t *testing.T, s string) fieldPath {
	t.Helper()
	p, err := parseFieldPath(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// normalize compares by JSON text (the hash join attaches to the original maps).
func normalize(t *testing.T, v any) any {
	t.Helper()
	var out any
	if err := json.Unmarshal([]byte(mustJSONString(t, v)), &out); err != nil {
		t.Fatal(err)
	}
	return out
}
