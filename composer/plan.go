package composer

import (
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
)

// plan is a Spec compiled into a DAG of calls. It is pure data, built once per
// config and shared by all requests.
type plan struct {
	calls  []*callPlan    // declaration order
	byName map[string]int // call name -> index
	levels [][]int        // topological levels: a call's dependencies are all in earlier levels
	out    outputPlan
	fwd    []string // canonical incoming header names to forward
	limits Limits
	// passThrough: one call, no fan-out: its status and error bodies pass through.
	passThrough bool
	// usesBody: some template refers to the incoming body, which is then read
	// and parsed before the calls start.
	usesBody bool
}

type callPlan struct {
	idx         int
	name        string
	cluster     string
	method      string
	path        template
	query       []kvTemplate // sorted by key
	headers     []kvTemplate // sorted by canonical key
	body        *bodyTmpl
	optional    bool
	timeout     time.Duration
	maxBytes    int64
	cacheTTL    time.Duration
	passHeaders []string // canonical
	passErrors  bool
	forEach     *source
	batch       bool
	batchSep    string
	deps        []int // indices of calls this one needs, sorted
}

type kvTemplate struct {
	key string
	val template
}

// source is "<call>" or "<call>.<path>".
type source struct {
	raw  string
	call int
	path fieldPath // nil: the whole result
	// each: the call segment itself carries "[]" (e.g. "products[].id").
	each bool
}

func (s *source) values(v any) []any {
	p := s.path
	if s.each {
		p = append(fieldPath{{each: true}}, p...)
	}
	return p.get(v)
}

// SpecError is one problem in a Spec, named by its key path relative to the
// composition (e.g. calls.customer.path).
type SpecError struct {
	Path string
	Msg  string
}

func (e *SpecError) Error() string { return e.Path + ": " + e.Msg }

type specErrs []error

func (e *specErrs) add(path, format string, args ...any) {
	*e = append(*e, &SpecError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

// Validate checks the Spec without changing it. knownCluster reports whether a
// cluster name exists (nil skips that cross-reference check). The error joins
// one *SpecError per problem, each naming its key path.
func (s Spec) Validate(knownCluster func(string) bool) error {
	_, err := compile(s, knownCluster)
	return err
}

// PathParams lists the path parameters ({name}) the Spec's templates use, sorted,
// so that a config loader can check them against the route's pattern.
func (s Spec) PathParams() []string {
	seen := map[string]bool{}
	for _, c := range s.Calls {
		var ts []string
		ts = append(ts, c.Path)
		for _, v := range c.Query {
			ts = append(ts, v)
		}
		for _, v := range c.Headers {
			ts = append(ts, v)
		}
		walkBodyStrings(c.Body, func(str string) { ts = append(ts, str) })
		for _, raw := range ts {
			t, err := parseTemplate(raw)
			if err != nil {
				continue
			}
			for _, r := range t.refs() {
				if r.kind == refPathParam {
					seen[r.name] = true
				}
			}
		}
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func callKey(i int, c Call) string {
	if c.Name != "" && validName(c.Name) {
		return "calls." + c.Name
	}
	return fmt.Sprintf("calls[%d]", i)
}

func compile(s Spec, knownCluster func(string) bool) (*plan, error) {
	var errs specErrs
	p := &plan{byName: map[string]int{}, limits: s.Limits}
	if len(s.Calls) == 0 {
		errs.add("calls", "at least one call is required")
	}
	for i, c := range s.Calls {
		k := callKey(i, c)
		switch {
		case c.Name == "":
			errs.add(k+".name", "required")
		case !validName(c.Name):
			errs.add(k+".name", "%q: use letters, digits, '_' and '-', starting with a letter", c.Name)
		case reserved[c.Name]:
			errs.add(k+".name", "%q is reserved (query, header, path, each and body are reference prefixes)", c.Name)
		default:
			if _, dup := p.byName[c.Name]; dup {
				errs.add(k+".name", "duplicate call name %q", c.Name)
			} else {
				p.byName[c.Name] = i
			}
		}
	}
	for _, h := range s.ForwardHeaders {
		ck := textproto.CanonicalMIMEHeaderKey(h)
		switch {
		case h == "" || strings.ContainsAny(h, " \t\r\n:"):
			errs.add("forward_headers", "invalid header name %q", h)
			continue
		case framingHeader(ck):
			errs.add("forward_headers", "%s cannot be forwarded: it describes the incoming request's own framing", ck)
			continue
		case codingHeader(ck):
			errs.add("forward_headers", "%s cannot be forwarded: calls are answered unencoded, as the composer reads their JSON", ck)
			continue
		}
		p.fwd = append(p.fwd, ck)
	}
	if s.Limits.Deadline < 0 {
		errs.add("limits.deadline", "must not be negative")
	}
	if s.Limits.MaxResponseBytes < 0 {
		errs.add("limits.max_response_bytes", "must not be negative")
	}
	if s.Limits.MaxTotalBytes < 0 {
		errs.add("limits.max_total_bytes", "must not be negative")
	}
	if s.Limits.MaxFanOut < 0 {
		errs.add("limits.max_fan_out", "must not be negative")
	}
	if s.Limits.MaxRequestBytes < 0 {
		errs.add("limits.max_request_bytes", "must not be negative")
	}
	if s.Limits.MaxConcurrency < 0 {
		errs.add("limits.max_concurrency", "must not be negative")
	}

	var writers []string
	for i, c := range s.Calls {
		cp := compileCall(i, c, s, p, knownCluster, &errs)
		p.calls = append(p.calls, cp)
		if c.writes() {
			writers = append(writers, fmt.Sprintf("%s (%s)", c.Name, c.method()))
		}
	}
	if len(writers) > 1 {
		errs.add("calls", "%d calls write: %s; a composition may contain at most one writing call, composite writes belong to sagas",
			len(writers), strings.Join(writers, ", "))
	}
	if len(errs) == 0 {
		p.levels = levelsOf(p, s, &errs)
	}
	if len(errs) == 0 {
		for _, cp := range p.calls {
			for _, d := range cp.deps {
				if !cp.optional && p.calls[d].optional {
					errs.add(callKey(cp.idx, s.Calls[cp.idx])+".optional",
						"call %q is required but depends on optional call %q; mark it optional too", cp.name, p.calls[d].name)
				}
			}
		}
	}
	p.out = compileOutput(s, p, &errs)
	p.passThrough = len(p.calls) == 1 && p.calls[0].forEach == nil
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

func compileCall(i int, c Call, s Spec, p *plan, knownCluster func(string) bool, errs *specErrs) *callPlan {
	k := callKey(i, c)
	cp := &callPlan{
		idx: i, name: c.Name, cluster: c.Cluster, method: c.method(), optional: c.Optional,
		timeout: time.Duration(c.Timeout), cacheTTL: time.Duration(c.CacheTTL),
		maxBytes: c.MaxResponseBytes, passErrors: c.PassErrors, batch: c.Batch, batchSep: c.BatchSeparator,
	}
	if cp.maxBytes == 0 {
		cp.maxBytes = s.Limits.maxResponseBytes()
	}
	if cp.batchSep == "" {
		cp.batchSep = ","
	}
	deps := map[int]bool{}
	useRef := func(key string, r *ref) {
		switch r.kind {
		case refCall:
			j, ok := p.byName[r.name]
			if !ok {
				errs.add(key, "unknown reference %q: no call named %q", r.raw, r.name)
				return
			}
			deps[j] = true
		case refBody:
			p.usesBody = true
		case refEach:
			if c.ForEach == "" {
				errs.add(key, "reference %q is only valid in a call with for_each", r.raw)
			} else if c.Batch && r.path != nil {
				errs.add(key, "reference %q: a batch renders {each} as the list of elements; elements must be scalars", r.raw)
			}
		}
	}
	parse := func(key, raw string) template {
		t, err := parseTemplate(raw)
		if err != nil {
			errs.add(key, "%v", err)
			return t
		}
		for _, r := range t.refs() {
			useRef(key, r)
		}
		return t
	}

	switch {
	case c.Cluster == "":
		errs.add(k+".cluster", "required")
	case knownCluster != nil && !knownCluster(c.Cluster):
		errs.add(k+".cluster", "unknown cluster %q", c.Cluster)
	}
	if c.Method != "" && (c.Method != strings.ToUpper(c.Method) || strings.ContainsAny(c.Method, " \t\r\n/")) {
		errs.add(k+".method", "%q: use an upper-case HTTP method such as GET or POST", c.Method)
	}
	switch {
	case c.Path == "":
		errs.add(k+".path", "required")
	case !strings.HasPrefix(c.Path, "/"):
		errs.add(k+".path", "%q must start with '/'", c.Path)
	case strings.ContainsAny(c.Path, "?#"):
		errs.add(k+".path", "%q: put the query in query, not in the path", c.Path)
	default:
		cp.path = parse(k+".path", c.Path)
		for _, seg := range strings.Split(literalSkeleton(cp.path), "/") {
			if seg == "." || seg == ".." {
				errs.add(k+".path", "%q contains a dot segment", c.Path)
				break
			}
		}
	}
	for _, key := range sortedKeys(c.Query) {
		if key == "" {
			errs.add(k+".query", "empty parameter name")
			continue
		}
		cp.query = append(cp.query, kvTemplate{key: key, val: parse(k+".query."+key, c.Query[key])})
	}
	for _, key := range sortedKeys(c.Headers) {
		ck := textproto.CanonicalMIMEHeaderKey(key)
		switch {
		case key == "" || strings.ContainsAny(key, " \t\r\n:"):
			errs.add(k+".headers", "invalid header name %q", key)
			continue
		case framingHeader(ck), codingHeader(ck):
			errs.add(k+".headers."+key, "%s cannot be set by a composition", ck)
			continue
		}
		switch v := c.Headers[key]; {
		case !httpguts.ValidHeaderFieldValue(v):
			errs.add(k+".headers."+key, "%q holds a control character", v)
			continue
		case strings.Trim(v, " \t") != v:
			// The proxy's own routes refuse such values too: HTTP/1.1
			// drops the whitespace, an HTTP/2 upstream resets the call.
			errs.add(k+".headers."+key, "%q begins or ends with whitespace", v)
			continue
		}
		cp.headers = append(cp.headers, kvTemplate{key: ck, val: parse(k+".headers."+key, c.Headers[key])})
	}
	if c.Body != nil {
		b, err := compileBody(c.Body, 0)
		if err != nil {
			at := k + ".body"
			if be, ok := err.(*bodyError); ok {
				at += be.path
			}
			errs.add(at, "%v", err)
		} else {
			b.refs(func(r *ref) { useRef(k+".body", r) })
			cp.body = b
		}
	}
	if c.Timeout < 0 {
		errs.add(k+".timeout", "must not be negative")
	}
	if c.MaxResponseBytes < 0 {
		errs.add(k+".max_response_bytes", "must not be negative")
	}
	if c.CacheTTL < 0 {
		errs.add(k+".cache_ttl", "must not be negative")
	} else if c.CacheTTL > 0 && c.writes() {
		errs.add(k+".cache_ttl", "a %s call cannot be cached", c.method())
	}
	for _, h := range c.PassHeaders {
		ck := http.CanonicalHeaderKey(h)
		switch {
		case h == "" || strings.ContainsAny(h, " \t\r\n:"):
			errs.add(k+".pass_headers", "invalid header name %q", h)
			continue
		case framingHeader(ck), codingHeader(ck):
			errs.add(k+".pass_headers", "%s cannot be passed: it describes the call's own response, not the composite one", ck)
			continue
		}
		cp.passHeaders = append(cp.passHeaders, ck)
	}
	if c.PassErrors && c.Optional {
		errs.add(k+".pass_errors", "only a required call can pass its errors through")
	}
	if c.ForEach != "" {
		src, err := parseSource(c.ForEach, p)
		switch {
		case err != nil:
			errs.add(k+".for_each", "%v", err)
		case !src.each && !src.path.multi():
			errs.add(k+".for_each", "%q addresses one value: mark the collection with [], e.g. order.items[].id", c.ForEach)
		default:
			cp.forEach = src
			deps[src.call] = true
		}
		if c.writes() && !c.Batch {
			errs.add(k+".for_each", "a %s call cannot fan out to one call per element: composite writes belong to sagas", c.method())
		}
	} else if c.Batch || c.BatchSeparator != "" {
		errs.add(k+".batch", "batch needs for_each")
	}
	// The separator goes on the wire unescaped, so it is limited to characters
	// that mean the same in a path segment and a query value.
	if strings.Trim(c.BatchSeparator, ",;|:-_~") != "" {
		errs.add(k+".batch_separator", "%q: use characters from , ; | : - _ ~", c.BatchSeparator)
	}
	for d := range deps {
		cp.deps = append(cp.deps, d)
	}
	slices.Sort(cp.deps)
	return cp
}

// literalSkeleton renders a path template with every reference replaced by a
// harmless placeholder, to check the literal structure.
func literalSkeleton(t template) string {
	var b strings.Builder
	for _, p := range t.parts {
		if p.ref != nil {
			b.WriteString("x")
		} else {
			b.WriteString(p.lit)
		}
	}
	return b.String()
}

func parseSource(raw string, p *plan) (*source, error) {
	head, rest, dotted := strings.Cut(raw, ".")
	src := &source{raw: raw}
	if strings.HasSuffix(head, "[]") {
		head, src.each = strings.TrimSuffix(head, "[]"), true
	}
	j, ok := p.byName[head]
	if !ok {
		return nil, fmt.Errorf("unknown reference %q: no call named %q", raw, head)
	}
	src.call = j
	if dotted {
		fp, err := parseFieldPath(rest)
		if err != nil {
			return nil, err
		}
		src.path = fp
	}
	return src, nil
}

// levelsOf orders the calls topologically (Kahn's algorithm, declaration order
// within a level) and names a cycle when there is one.
func levelsOf(p *plan, s Spec, errs *specErrs) [][]int {
	n := len(p.calls)
	if cyc := findCycle(p); cyc != nil {
		names := make([]string, len(cyc))
		for i, c := range cyc {
			names[i] = p.calls[c].name
		}
		errs.add(callKey(cyc[0], s.Calls[cyc[0]]), "dependency cycle %s", strings.Join(names, " -> "))
		return nil
	}
	placed := make([]bool, n)
	var levels [][]int
	for done := 0; done < n; {
		var cur []int
		for i, c := range p.calls {
			if placed[i] {
				continue
			}
			ready := true
			for _, d := range c.deps {
				ready = ready && placed[d]
			}
			if ready {
				cur = append(cur, i)
			}
		}
		// Mark after the scan: a call whose dependency joins this level
		// belongs to a later one. The graph is acyclic, so cur is never empty.
		for _, i := range cur {
			placed[i] = true
		}
		levels = append(levels, cur)
		done += len(cur)
	}
	return levels
}

// findCycle returns a cycle as call indices, first repeated last (a -> b -> a).
func findCycle(p *plan) []int {
	const (
		white = iota
		grey
		black
	)
	color := make([]int, len(p.calls))
	var stack []int
	var cycle []int
	var visit func(i int) bool
	visit = func(i int) bool {
		color[i] = grey
		stack = append(stack, i)
		for _, d := range p.calls[i].deps {
			switch color[d] {
			case grey:
				start := slices.Index(stack, d)
				cycle = append(slices.Clone(stack[start:]), d)
				return true
			case white:
				if visit(d) {
					return true
				}
			}
		}
		stack = stack[:len(stack)-1]
		color[i] = black
		return false
	}
	for i := range p.calls {
		if color[i] == white && visit(i) {
			// Report in dependency direction: the first call needs the next.
			return cycle
		}
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// framingHeader reports whether the canonical header name ck belongs to
// one message's framing or connection (RFC 9110 §7.6.1's hop-by-hop
// fields, Host, Content-Length, Expect, Trailer): such a field of the
// incoming request or of a call's response does not describe another
// message, and a call's request gets its own from the proxy.
func framingHeader(ck string) bool {
	switch ck {
	case "Host", "Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive",
		"Proxy-Connection", "Te", "Trailer", "Upgrade", "Expect":
		return true
	}
	return false
}

// codingHeader reports whether the canonical header name ck negotiates
// or names a content coding (RFC 9110 §8.4, §12.5.3). Every call asks
// for its body unencoded (Accept-Encoding: identity), since the composer
// decodes it as JSON, and the composed body is never encoded: a client's
// Accept-Encoding says what it takes of the composite response, and a
// call's Content-Encoding describes no other body.
func codingHeader(ck string) bool {
	return ck == "Accept-Encoding" || ck == "Content-Encoding"
}
