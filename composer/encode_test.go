package composer

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// FuzzEncodeMatchesEncodingJSON: for any JSON document, the capped encoder
// writes the same bytes as encoding/json (sorted keys, HTML not escaped).
func FuzzEncodeMatchesEncodingJSON(f *testing.F) {
	for _, s := range []string{`{"b":1,"a":[true,null,"x"]}`, `"\u2028<>&\u0001\ud800"`, `[1.5e300,-0,{"é":{}}]`, `"\xff\xfe"`, `{"a":"\t\n\r\\\""}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		dec := json.NewDecoder(bytes.NewReader(doc))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return
		}
		got, err := encodeCapped(v, 1<<20)
		if err != nil {
			return // deeper than maxEncodeDepth or larger than the cap
		}
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("encodeCapped %q\nencoding/json %q", got, want.Bytes())
		}
	})
}

func TestEncodeStopsAtTheCap(t *testing.T) {
	v := []any{strings.Repeat("a", 100), strings.Repeat("b", 100)}
	if _, err := encodeCapped(v, 150); err != errCapExceeded {
		t.Errorf("err = %v, want errCapExceeded", err)
	}
	if _, err := encodeCapped(v, 300); err != nil {
		t.Errorf("err = %v under the cap", err)
	}
}

// FuzzSpecYAML: any YAML either fails to decode into a Spec or validates
// without panicking; a valid Spec compiles into a plan whose levels hold
// every call once.
func FuzzSpecYAML(f *testing.F) {
	f.Add([]byte("calls: [{name: a, cluster: c, path: /x/{id}}]"))
	f.Add([]byte("calls: [{name: a, cluster: c, path: /x}, {name: b, cluster: c, path: '/y/{a.id}', for_each: 'a.items[]', batch: true, query: {ids: '{each}'}}]\noutput: {merge: [a], join: [{into: 'items', 'on': id, from: b}]}"))
	f.Add([]byte("calls: [{name: a, cluster: c, method: POST, path: /x, body: {k: '{body.v}', n: [1, '{id}']}}]"))
	f.Fuzz(func(t *testing.T, doc []byte) {
		var s Spec
		if err := yaml.Unmarshal(doc, &s); err != nil {
			return
		}
		p, err := compile(s, nil)
		if err != nil {
			return
		}
		seen := map[int]bool{}
		for _, l := range p.levels {
			for _, i := range l {
				if seen[i] {
					t.Fatalf("call %d in two levels", i)
				}
				seen[i] = true
				for _, d := range p.calls[i].deps {
					if !seen[d] {
						t.Fatalf("call %d placed before its dependency %d", i, d)
					}
				}
			}
		}
		if len(seen) != len(p.calls) {
			t.Fatalf("levels hold %d of %d calls", len(seen), len(p.calls))
		}
	})
}

// FuzzShape: any two JSON results go through every output step without
// panicking, and the composed body is valid JSON.
func FuzzShape(f *testing.F) {
	f.Add([]byte(`{"id":1,"items":[{"p":7},{"p":"8"}],"x":{"y":1}}`), []byte(`[{"id":7,"t":"a"},{"id":8}]`))
	f.Add([]byte(`[1,2]`), []byte(`{"id":7}`))
	f.Add([]byte(`{"items":{"p":1}}`), []byte(`null`))
	spec := Spec{
		Calls: []Call{{Name: "a", Cluster: "c", Path: "/a"}, {Name: "b", Cluster: "c", Path: "/b"}},
		Output: Output{
			Merge: []string{"a", "b"}, OnConflict: "prefix",
			Nest:   []Nest{{From: "b", At: "x.b"}, {From: "a.x"}},
			Join:   []Join{{Into: "items", On: "p", From: "b", FromKey: "id", As: "m"}, {Into: "items", On: "p", From: "b", FromKey: "id", As: "all", Many: true}},
			Select: []string{"id", "items[].m", "items[].all[].t", "x", "a"},
			Rename: []Rename{{From: "items[].m", To: "match"}, {From: "x.b", To: "bb"}},
			Drop:   []string{"items[].all[].t", "x.y"},
		},
	}
	p, err := compile(spec, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, a, b []byte) {
		var va, vb any
		for _, x := range []struct {
			doc []byte
			v   *any
		}{{a, &va}, {b, &vb}} {
			dec := json.NewDecoder(bytes.NewReader(x.doc))
			dec.UseNumber()
			if dec.Decode(x.v) != nil {
				return
			}
		}
		out, err := p.out.shape([]any{va, vb}, []bool{true, true}, []string{"a", "b"})
		if err != nil {
			t.Fatal(err) // prefix never conflicts
		}
		body, err := encodeCapped(out, 1<<20)
		if err != nil {
			return
		}
		if !json.Valid(body) {
			t.Fatalf("invalid JSON %q", body)
		}
	})
}
