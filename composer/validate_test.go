package composer

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func knownClusters(names ...string) func(string) bool {
	return func(c string) bool {
		for _, n := range names {
			if n == c {
				return true
			}
		}
		return false
	}
}

func TestValidateRejectsBadSpecsNamingTheKeyPath(t *testing.T) {
	call := func(name, cluster, path string) Call { return Call{Name: name, Cluster: cluster, Path: path} }
	cases := []struct {
		name string
		spec Spec
		want []string // substrings of the error, each required
	}{
		{"no calls", Spec{}, []string{"calls: at least one call is required"}},
		{"missing name", Spec{Calls: []Call{{Cluster: "a", Path: "/x"}}}, []string{"calls[0].name: required"}},
		{"bad name", Spec{Calls: []Call{call("1x", "a", "/x")}}, []string{`calls[0].name: "1x"`}},
		{"reserved name", Spec{Calls: []Call{call("query", "a", "/x")}}, []string{`calls.query.name: "query" is reserved`}},
		{"duplicate name", Spec{Calls: []Call{call("a", "a", "/x"), call("a", "a", "/y")}}, []string{`calls.a.name: duplicate call name "a"`}},
		{"unknown cluster", Spec{Calls: []Call{call("a", "nope", "/x")}}, []string{`calls.a.cluster: unknown cluster "nope"`}},
		{"missing cluster", Spec{Calls: []Call{call("a", "", "/x")}}, []string{`calls.a.cluster: required`}},
		{"missing path", Spec{Calls: []Call{call("a", "a", "")}}, []string{`calls.a.path: required`}},
		{"relative path", Spec{Calls: []Call{call("a", "a", "x/{id}")}}, []string{`calls.a.path: "x/{id}" must start with '/'`}},
		{"query in path", Spec{Calls: []Call{call("a", "a", "/x?y=1")}}, []string{`calls.a.path: "/x?y=1": put the query in query`}},
		{"dot segment in path", Spec{Calls: []Call{call("a", "a", "/x/../admin")}}, []string{`calls.a.path: "/x/../admin" contains a dot segment`}},
		{"unknown reference", Spec{Calls: []Call{call("order", "a", "/o/{id}"), call("customer", "a", "/c/{ordr.customerId}")}},
			[]string{`calls.customer.path: unknown reference "{ordr.customerId}"`}},
		{"unclosed brace", Spec{Calls: []Call{call("a", "a", "/o/{id")}}, []string{`calls.a.path: unclosed '{'`}},
		{"stray brace", Spec{Calls: []Call{call("a", "a", "/o/id}")}}, []string{`calls.a.path: unmatched '}'`}},
		{"empty reference", Spec{Calls: []Call{call("a", "a", "/o/{}")}}, []string{`calls.a.path: empty reference`}},
		{"array in reference", Spec{Calls: []Call{call("o", "a", "/o"), call("b", "a", "/b/{o.items[].id}")}}, []string{`calls.b.path: bad reference "{o.items[].id}"`}},
		{"self cycle", Spec{Calls: []Call{call("a", "a", "/x/{a.id}")}}, []string{`calls.a: dependency cycle a -> a`}},
		{"cycle of three", Spec{Calls: []Call{call("a", "a", "/x/{c.id}"), call("b", "a", "/x/{a.id}"), call("c", "a", "/x/{b.id}")}},
			[]string{`dependency cycle a -> c -> b -> a`}},
		{"cycle through query and body", Spec{Calls: []Call{
			{Name: "a", Cluster: "a", Path: "/x", Query: map[string]string{"q": "{b.id}"}},
			{Name: "b", Cluster: "a", Path: "/y", Method: "POST", Body: map[string]any{"ref": "{a.id}"}},
		}}, []string{`dependency cycle a -> b -> a`}},
		{"two writes", Spec{Calls: []Call{
			{Name: "order", Cluster: "a", Path: "/orders", Method: "POST"},
			{Name: "payment", Cluster: "a", Path: "/payments", Method: "PUT"},
		}}, []string{"calls: 2 calls write: order (POST), payment (PUT)", "composite writes belong to sagas"}},
		{"writing fan-out", Spec{Calls: []Call{
			call("o", "a", "/o"),
			{Name: "w", Cluster: "a", Path: "/w/{each}", Method: "DELETE", ForEach: "o.items[].id"},
		}}, []string{"calls.w.for_each: a DELETE call cannot fan out"}},
		{"lower-case method", Spec{Calls: []Call{{Name: "a", Cluster: "a", Path: "/x", Method: "get"}}}, []string{`calls.a.method: "get"`}},
		{"each without for_each", Spec{Calls: []Call{call("a", "a", "/x/{each}")}}, []string{`calls.a.path: reference "{each}" is only valid in a call with for_each`}},
		{"batch with object elements", Spec{Calls: []Call{call("o", "a", "/o"),
			{Name: "b", Cluster: "a", Path: "/b", Query: map[string]string{"ids": "{each.id}"}, ForEach: "o.items[]", Batch: true}}},
			[]string{`calls.b.query.ids: reference "{each.id}": a batch renders {each} as the list`}},
		{"batch without for_each", Spec{Calls: []Call{{Name: "a", Cluster: "a", Path: "/x", Batch: true}}}, []string{"calls.a.batch: batch needs for_each"}},
		{"for_each unknown call", Spec{Calls: []Call{{Name: "a", Cluster: "a", Path: "/x/{each}", ForEach: "zz.items[]"}}}, []string{`calls.a.for_each: unknown reference "zz.items[]"`}},
		{"for_each without []", Spec{Calls: []Call{call("o", "a", "/o"), {Name: "b", Cluster: "a", Path: "/b/{each}", ForEach: "o.ids"}}},
			[]string{`calls.b.for_each: "o.ids" addresses one value: mark the collection with []`}},
		{"merge of many values", Spec{Calls: []Call{call("a", "a", "/x")}, Output: Output{Merge: []string{"a.items[]"}}}, []string{`output.merge[0]: "a.items[]" addresses many values`}},
		{"required depends on optional", Spec{Calls: []Call{
			{Name: "ship", Cluster: "a", Path: "/s", Optional: true},
			call("track", "a", "/t/{ship.id}"),
		}}, []string{`calls.track.optional: call "track" is required but depends on optional call "ship"`}},
		{"cache on write", Spec{Calls: []Call{{Name: "a", Cluster: "a", Path: "/x", Method: "POST", CacheTTL: Duration(1e9)}}}, []string{"calls.a.cache_ttl: a POST call cannot be cached"}},
		{"host header", Spec{Calls: []Call{{Name: "a", Cluster: "a", Path: "/x", Headers: map[string]string{"host": "evil"}}}}, []string{"calls.a.headers.host: Host cannot be set"}},
		{"header value with edge whitespace", Spec{Calls: []Call{{Name: "a", Cluster: "a", Path: "/x", Headers: map[string]string{"X-T": " v-{header.X-In}", "X-U": "{header.X-In}\t", "X-V": "a\x01{header.X-In}"}}}},
			[]string{`calls.a.headers.X-T: " v-{header.X-In}" begins or ends with whitespace`, `calls.a.headers.X-U: "{header.X-In}\t" begins or ends with whitespace`, `calls.a.headers.X-V: "a\x01{header.X-In}" holds a control character`}},
		{"expect header", Spec{Calls: []Call{{Name: "a", Cluster: "a", Path: "/x", Headers: map[string]string{"expect": "100-continue"}}}}, []string{"calls.a.headers.expect: Expect cannot be set"}},
		{"forwarded framing header", Spec{ForwardHeaders: []string{"authorization", "expect", "content-length"}, Calls: []Call{call("a", "a", "/x")}},
			[]string{"forward_headers: Expect cannot be forwarded", "forward_headers: Content-Length cannot be forwarded"}},
		{"passed framing header", Spec{Calls: []Call{{Name: "a", Cluster: "a", Path: "/x", PassHeaders: []string{"ETag", "transfer-encoding"}}}},
			[]string{"calls.a.pass_headers: Transfer-Encoding cannot be passed"}},
		{"content coding headers", Spec{ForwardHeaders: []string{"accept-encoding"}, Calls: []Call{{Name: "a", Cluster: "a", Path: "/x",
			Headers: map[string]string{"Accept-Encoding": "gzip", "content-encoding": "gzip"}, PassHeaders: []string{"Content-Encoding"}}}},
			[]string{"forward_headers: Accept-Encoding cannot be forwarded", "calls.a.headers.Accept-Encoding: Accept-Encoding cannot be set",
				"calls.a.headers.content-encoding: Content-Encoding cannot be set", "calls.a.pass_headers: Content-Encoding cannot be passed"}},
		{"bad template deep in a body", Spec{Calls: []Call{{Name: "a", Cluster: "a", Path: "/x", Method: "POST",
			Body: map[string]any{"order": map[string]any{"items": []any{1, "{unclosed"}}}}}},
			[]string{`calls.a.body.order.items[1]: `}},
		{"body nested too deep", Spec{Calls: []Call{{Name: "a", Cluster: "a", Path: "/x", Method: "POST", Body: nested(40)}}},
			[]string{"calls.a.body[0][0][0]", "nested deeper than 32"}},
		{"negative timeout", Spec{Calls: []Call{{Name: "a", Cluster: "a", Path: "/x", Timeout: -1}}}, []string{"calls.a.timeout: must not be negative"}},
		{"bad separator", Spec{Calls: []Call{call("o", "a", "/o"), {Name: "b", Cluster: "a", Path: "/b", ForEach: "o[]", Batch: true, BatchSeparator: "&"}}}, []string{"calls.b.batch_separator"}},
		{"bad on_conflict", Spec{Calls: []Call{call("a", "a", "/x")}, Output: Output{OnConflict: "newest"}}, []string{`output.on_conflict: "newest": use first, last, error or prefix`}},
		{"merge unknown", Spec{Calls: []Call{call("a", "a", "/x")}, Output: Output{Merge: []string{"b"}}}, []string{`output.merge[0]: unknown reference "b"`}},
		{"join bad path", Spec{Calls: []Call{call("a", "a", "/x")}, Output: Output{Join: []Join{{Into: "items..x", On: "id", From: "a"}}}}, []string{`output.join[0].into: field path "items..x": empty key`}},
		{"rename to a path", Spec{Calls: []Call{call("a", "a", "/x")}, Output: Output{Rename: []Rename{{From: "a.b", To: "c.d"}}}}, []string{`output.rename[0].to: "c.d": must be a plain key`}},
		{"negative limit", Spec{Calls: []Call{call("a", "a", "/x")}, Limits: Limits{MaxFanOut: -1}}, []string{"limits.max_fan_out: must not be negative"}},
	}
	known := knownClusters("a")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.spec.Validate(known)
			if err == nil {
				t.Fatalf("Validate accepted a bad spec")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestValidateAcceptsAWellFormedSpecFromYAML(t *testing.T) {
	const doc = `
forward_headers: [Authorization, traceparent]
calls:
  - name: order
    cluster: orders
    path: /orders/{id}
    timeout: 250ms
    pass_headers: [ETag]
  - name: customer
    cluster: customers
    path: /customers/{order.customerId}
    headers: {X-Tenant: "{header.X-Tenant}"}
    cache_ttl: 30s
  - name: products
    cluster: catalog
    path: /products
    query: {ids: "{each}", lang: "{query.lang}"}
    for_each: order.items[].productId
    batch: true
  - name: shipment
    cluster: shipments
    method: POST
    path: /quotes
    body: {order: "{order.id}", note: "quote for {id}", items: 3}
    optional: true
output:
  merge: [order]
  on_conflict: prefix
  nest: [{from: customer}, {from: shipment, at: delivery.quote}]
  join: [{into: items, "on": productId, from: products, from_key: id, as: product}]
  drop: ["items[].product.cost"]
limits: {deadline: 2s, max_fan_out: 50}
`
	var s Spec
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("decode: %v", err)
	}
	if err := s.Validate(knownClusters("orders", "customers", "catalog", "shipments")); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if got := time2s(s.Calls[0].Timeout); got != "250ms" {
		t.Errorf("timeout decoded as %s", got)
	}
	if got := s.PathParams(); len(got) != 1 || got[0] != "id" {
		t.Errorf("PathParams = %v, want [id]", got)
	}
	p, err := compile(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	// order first; customer and products (both need order) and shipment (needs order) next.
	if len(p.levels) != 2 || len(p.levels[0]) != 1 || p.levels[0][0] != 0 || len(p.levels[1]) != 3 {
		t.Errorf("levels = %v", p.levels)
	}
}

func time2s(d Duration) string {
	b, _ := d.MarshalText()
	return string(b)
}

func TestValidateDoesNotMutateTheSpec(t *testing.T) {
	s := Spec{Calls: []Call{{Name: "a", Cluster: "a", Path: "/x"}}}
	before := mustJSONString(t, s)
	_ = s.Validate(nil)
	if after := mustJSONString(t, s); after != before {
		t.Errorf("spec changed: %s -> %s", before, after)
	}
}

// nested is a body of n arrays, each the only element of the one around it.
func nested(n int) any {
	var v any = "x"
	for range n {
		v = []any{v}
	}
	return v
}
