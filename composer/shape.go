package composer

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// outputPlan is the compiled Output: a pure function from call results to the
// response value.
type outputPlan struct {
	merge        []*source
	onConflict   string
	nest         []nestPlan
	join         []joinPlan
	selectTree   *selectNode // nil: keep everything
	rename       []renamePlan
	drop         []fieldPath
	partialField string
	headerOnly   bool
}

type nestPlan struct {
	from *source
	at   []string
}

type joinPlan struct {
	into    fieldPath
	on      fieldPath
	from    *source
	fromKey fieldPath
	as      string
	many    bool
}

type renamePlan struct {
	from fieldPath
	to   string
}

func compileOutput(s Spec, p *plan, errs *specErrs) outputPlan {
	o := s.Output
	op := outputPlan{onConflict: o.OnConflict, partialField: o.PartialField, headerOnly: o.PartialHeaderOnly}
	if op.onConflict == "" {
		op.onConflict = "first"
	}
	switch op.onConflict {
	case "first", "last", "error", "prefix":
	default:
		errs.add("output.on_conflict", "%q: use first, last, error or prefix", o.OnConflict)
	}
	if op.partialField == "" {
		op.partialField = DefaultPartialField
	} else if checkKey(op.partialField) != nil {
		errs.add("output.partial_field", "%q is not a plain key", o.PartialField)
	}
	src := func(key, raw string) *source {
		s, err := parseSource(raw, p)
		if err != nil {
			errs.add(key, "%v", err)
		}
		return s
	}
	for i, m := range o.Merge {
		k := fmt.Sprintf("output.merge[%d]", i)
		s := src(k, m)
		if s != nil && (s.each || s.path.multi()) {
			errs.add(k, "%q addresses many values; merge takes objects", m)
		}
		op.merge = append(op.merge, s)
	}
	for i, n := range o.Nest {
		k := fmt.Sprintf("output.nest[%d]", i)
		np := nestPlan{from: src(k+".from", n.From)}
		at := n.At
		if at == "" && np.from != nil {
			at = p.calls[np.from.call].name
		}
		for _, part := range strings.Split(at, ".") {
			if part == "" || checkKey(part) != nil {
				errs.add(k+".at", "%q is not a dotted key path", n.At)
				break
			}
			np.at = append(np.at, part)
		}
		op.nest = append(op.nest, np)
	}
	path := func(key, raw string) fieldPath {
		fp, err := parseFieldPath(raw)
		if err != nil {
			errs.add(key, "%v", err)
		}
		return fp
	}
	for i, j := range o.Join {
		k := fmt.Sprintf("output.join[%d]", i)
		jp := joinPlan{into: path(k+".into", j.Into), on: path(k+".on", j.On), from: src(k+".from", j.From), as: j.As, many: j.Many}
		if j.FromKey != "" {
			jp.fromKey = path(k+".from_key", j.FromKey)
		} else {
			jp.fromKey = jp.on
		}
		if jp.on.multi() || jp.fromKey.multi() {
			errs.add(k+".on", "join keys address one value per element; '[]' is not allowed")
		}
		if jp.as == "" && jp.from != nil {
			jp.as = p.calls[jp.from.call].name
		}
		if checkKey(jp.as) != nil || jp.as == "" {
			errs.add(k+".as", "%q is not a plain key", j.As)
		}
		op.join = append(op.join, jp)
	}
	if len(o.Select) > 0 {
		op.selectTree = &selectNode{}
		for i, raw := range o.Select {
			fp := path(fmt.Sprintf("output.select[%d]", i), raw)
			if fp != nil {
				op.selectTree.add(fp)
			}
		}
	}
	for i, r := range o.Rename {
		k := fmt.Sprintf("output.rename[%d]", i)
		rp := renamePlan{from: path(k+".from", r.From), to: r.To}
		if rp.from != nil && rp.from[len(rp.from)-1].key == "" {
			errs.add(k+".from", "%q does not name a field", r.From)
		}
		if r.To == "" || checkKey(r.To) != nil {
			errs.add(k+".to", "%q: must be a plain key, not a path", r.To)
		}
		op.rename = append(op.rename, rp)
	}
	for i, raw := range o.Drop {
		fp := path(fmt.Sprintf("output.drop[%d]", i), raw)
		if fp != nil && fp[len(fp)-1].key == "" {
			errs.add(fmt.Sprintf("output.drop[%d]", i), "%q does not name a field", raw)
		}
		op.drop = append(op.drop, fp)
	}
	return op
}

// conflictError is returned by shape when on_conflict is error.
type conflictError struct {
	key          string
	first, later string
}

func (e *conflictError) Error() string {
	return fmt.Sprintf("key %q differs between %s and %s (on_conflict: error)", e.key, e.first, e.later)
}

// shape builds the response value. results[i] is call i's result and ok[i]
// whether it succeeded; sources of missing calls contribute nothing. names are
// the call names. shape may share values of results in its output; callers must
// give it results no one else uses.
func (o *outputPlan) shape(results []any, ok []bool, names []string) (any, error) {
	lookup := func(s *source) (any, bool) {
		if !ok[s.call] {
			return nil, false
		}
		v := results[s.call]
		if s.path == nil && !s.each {
			return v, true
		}
		if s.each || s.path.multi() {
			return s.values(v), true
		}
		return s.path.getOne(v)
	}
	var out any
	if len(o.merge) == 0 && len(o.nest) == 0 {
		if len(results) == 1 {
			if ok[0] {
				out = results[0]
			}
		} else {
			m := map[string]any{}
			for i, n := range names {
				if ok[i] {
					m[n] = results[i]
				}
			}
			out = m
		}
	} else {
		m := map[string]any{}
		owner := map[string]string{} // key -> call that set it, for messages and prefix
		for _, s := range o.merge {
			v, found := lookup(s)
			obj, isObj := v.(map[string]any)
			if !found || !isObj {
				continue
			}
			name := names[s.call]
			for _, k := range sortedAnyKeys(obj) {
				val := obj[k]
				prev, exists := m[k]
				if !exists {
					m[k], owner[k] = val, name
					continue
				}
				if reflect.DeepEqual(prev, val) {
					continue
				}
				switch o.onConflict {
				case "last":
					m[k], owner[k] = val, name
				case "error":
					return nil, &conflictError{key: k, first: owner[k], later: name}
				case "prefix":
					pk := name + "_" + k
					if _, taken := m[pk]; !taken {
						m[pk], owner[pk] = val, name
					}
				}
			}
		}
		for _, n := range o.nest {
			v, found := lookup(n.from)
			if !found {
				continue
			}
			setAt(m, n.at, v)
		}
		out = m
	}
	for _, j := range o.join {
		v, found := lookup(j.from)
		if !found {
			continue
		}
		hashJoin(out, j, v)
	}
	if o.selectTree != nil {
		out = o.selectTree.project(out)
	}
	for _, r := range o.rename {
		r.from.parents(out, func(m map[string]any, key string) {
			if v, exists := m[key]; exists && key != r.to {
				delete(m, key)
				m[r.to] = v
			}
		})
	}
	for _, d := range o.drop {
		d.parents(out, func(m map[string]any, key string) { delete(m, key) })
	}
	return out, nil
}

func setAt(m map[string]any, at []string, v any) {
	for _, k := range at[:len(at)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[k] = next
		}
		m = next
	}
	m[at[len(at)-1]] = v
}

// joinKey is the canonical text of a join key: strings as they are, numbers as
// their JSON text, booleans as true/false; so 7 and "7" match. Null, objects,
// arrays and missing keys never match.
func joinKey(v any, ok bool) (string, bool) {
	if !ok {
		return "", false
	}
	return scalarText(v)
}

// hashJoin attaches, to every object element of the arrays at j.into in out,
// the elements of the from value whose from_key equals the element's on key.
func hashJoin(out any, j joinPlan, from any) {
	var fromElems []any
	switch x := from.(type) {
	case []any:
		fromElems = x
	case map[string]any:
		fromElems = []any{x}
	}
	index := make(map[string][]any, len(fromElems))
	for _, e := range fromElems {
		if k, ok := joinKey(j.fromKey.getOne(e)); ok {
			index[k] = append(index[k], e)
		}
	}
	j.into.walk(out, func(target any) {
		arr, ok := target.([]any)
		if !ok {
			return
		}
		for _, e := range arr {
			obj, ok := e.(map[string]any)
			if !ok {
				continue
			}
			k, ok := joinKey(j.on.getOne(obj))
			var matches []any
			if ok {
				matches = index[k]
			}
			switch {
			case j.many:
				list := make([]any, len(matches))
				copy(list, matches)
				obj[j.as] = list
			case len(matches) > 0:
				obj[j.as] = matches[0]
			}
		}
	})
}

// selectNode is a tree of selected paths. A leaf keeps the whole value.
type selectNode struct {
	leaf     bool
	children map[string]*selectNode // object keys
	each     *selectNode            // "[]": applies to each array element
	order    []string
}

func (n *selectNode) add(p fieldPath) {
	for _, s := range p {
		if n.leaf {
			return // a shorter path already keeps everything below
		}
		if s.key != "" {
			if n.children == nil {
				n.children = map[string]*selectNode{}
			}
			c, ok := n.children[s.key]
			if !ok {
				c = &selectNode{}
				n.children[s.key] = c
				n.order = append(n.order, s.key)
			}
			n = c
		}
		if s.each {
			if n.each == nil {
				n.each = &selectNode{}
			}
			n = n.each
		}
	}
	n.leaf, n.children, n.each = true, nil, nil
}

// project returns a copy of v holding only the selected paths. Values under a
// leaf are kept as they are (shared, not copied).
func (n *selectNode) project(v any) any {
	if n.leaf {
		return v
	}
	switch x := v.(type) {
	case map[string]any:
		if n.children == nil {
			return map[string]any{}
		}
		m := make(map[string]any, len(n.children))
		for _, k := range n.order {
			if cv, ok := x[k]; ok {
				m[k] = n.children[k].project(cv)
			}
		}
		return m
	case []any:
		if n.each == nil {
			return []any{}
		}
		a := make([]any, len(x))
		for i, e := range x {
			a[i] = n.each.project(e)
		}
		return a
	}
	return v
}

func sortedAnyKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
