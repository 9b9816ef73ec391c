package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/outrigger-mesh/outrigger/composer"
)

// MaxFileBytes bounds the size of a config file. A larger file is rejected
// before it is parsed.
const MaxFileBytes = 4 << 20

// Load reads the YAML file at path and returns its config, validated and
// with defaults applied. On failure the error is an [Errors] whose entries
// name path as their Source, or a plain error when the file cannot be read.
func Load(path string) (*Config, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(data, path)
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	if len(data) > MaxFileBytes {
		return nil, Errors{{Source: path, Msg: fmt.Sprintf("file is larger than %d bytes", MaxFileBytes)}}
	}
	return data, nil
}

// Parse decodes one YAML document, validates it and returns it with defaults
// applied ([Config.WithDefaults]). source names the document in errors
// (usually the file name).
//
// Unknown keys, values of the wrong type, duplicate keys and every
// [Config.Validate] problem are reported together as [Errors], sorted by
// line, at most [MaxProblems] of them.
func Parse(data []byte, source string) (cfg *Config, err error) {
	defer func() {
		// The YAML library reports its own failures by panicking and
		// recovering internally; anything else escaping it must not take the
		// sidecar down on a reload.
		if r := recover(); r != nil {
			cfg, err = nil, Errors{{Source: source, Msg: fmt.Sprintf("cannot decode YAML: %v", r)}}
		}
	}()
	raw, err := decode(data, source)
	if err != nil {
		return nil, err
	}
	return raw.WithDefaults(), nil
}

// decode parses and validates data without applying defaults.
func decode(data []byte, source string) (*Config, error) {
	fail := func(line int, msg string) error {
		return Errors{{Source: source, Line: line, Msg: msg}}
	}
	if len(data) > MaxFileBytes {
		return nil, fail(0, fmt.Sprintf("document is larger than %d bytes", MaxFileBytes))
	}
	// A file holding no settings is refused rather than applied as a
	// config without clusters or routes: a writer that truncates the file
	// before writing it (a shell's "cat > file", some editors) leaves it
	// so for a moment, and a reload that read it would drop every route.
	// The decoder below says so too, but a tab, which YAML allows between
	// a line's start and its comment, makes it report a syntax error.
	// An explicit {} is a config, applied as written.
	if blank(data) {
		return nil, fail(0, "config is empty")
	}

	// First pass: the node tree, for syntax errors and for the key path of
	// every line.
	//
	// A config is one document. A document with nothing in it before or
	// after the config (a "---" with at most comments under it) is no
	// second one: it is what tools that write YAML streams leave behind,
	// and a file may open with a comment block and a "---". skipped
	// counts those before the config.
	var root yaml.Node
	skipped := 0
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		root = yaml.Node{}
		if err := dec.Decode(&root); err != nil {
			if errors.Is(err, io.EOF) {
				return nil, fail(0, "config is empty")
			}
			line, msg := syntaxError(err)
			if line == 0 {
				line, msg = locate(data, msg)
			}
			return nil, fail(line, msg)
		}
		if !emptyDocument(&root) {
			break
		}
		skipped++
	}
	for {
		var extra yaml.Node
		err := dec.Decode(&extra)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			line, msg := syntaxError(err)
			return nil, fail(line, msg)
		}
		if emptyDocument(&extra) {
			continue
		}
		line := extra.Line
		if len(extra.Content) > 0 {
			line = extra.Content[0].Line
		}
		return nil, fail(line, fmt.Sprintf("a second YAML document (started by the --- on line %d): a config is one document", extra.Line))
	}
	doc := &root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	if doc.Kind == yaml.ScalarNode && doc.Tag == "!!null" {
		return nil, fail(doc.Line, "config is empty")
	}
	if doc.Kind != yaml.MappingNode {
		return nil, fail(doc.Line, "expected a mapping of settings at the top level, got "+describeNode(doc))
	}
	idx := newNodeIndex()
	idx.walk(doc, "", reflect.TypeOf(Config{}))
	if len(idx.refused) == 0 {
		if c := keyComparisons(doc, map[*yaml.Node]int64{}, map[*yaml.Node]bool{}); c > maxKeyComparisons {
			idx.refused = append(idx.refused, &FieldError{Line: doc.Line,
				Msg: "the document's aliases repeat its mappings too often to be checked: use fewer aliases of large mappings"})
		}
	}
	if len(idx.refused) > 0 {
		// The typed decode would take time or memory quadratic in these
		// mappings' sizes; say why instead.
		for _, e := range idx.refused {
			e.Source = source
		}
		idx.refused.sortByLine()
		return nil, idx.refused.capped(source)
	}

	// Second pass: the typed decode, with unknown keys as errors. The
	// decoder carries on after a type error, so all of them are reported.
	var cfg Config
	errs := idx.keyErrs
	dec = yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	for range skipped {
		var empty yaml.Node
		_ = dec.Decode(&empty) // decoded once already, without error
	}
	if err := dec.Decode(&cfg); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			line, msg := syntaxError(err)
			if line == 0 {
				if l, path, m := locateMerge(doc, ""); l != 0 {
					return nil, Errors{{Source: source, Line: l, Path: path, Msg: m}}
				}
			}
			return nil, fail(line, msg)
		}
		// A node under an anchor is decoded again at each alias of it,
		// and its failure reported each time with the anchor's line:
		// translated alike, it is one problem, listed once.
		seen := map[FieldError]bool{}
		for _, s := range te.Errors {
			if fe := idx.translate(s); fe != nil && !seen[*fe] {
				seen[*fe] = true
				errs = append(errs, fe)
			}
		}
	}

	// Validation runs even after decode errors, so that one run shows every
	// problem; but a value that failed to decode would be reported twice
	// (once as what it is, once as the zero value it became, or as a list
	// that lost an item), so validation problems at, under or above a path
	// that failed to decode are dropped.
	if verr := cfg.Validate(); verr != nil {
		var ves Errors
		if !errors.As(verr, &ves) {
			ves = Errors{{Msg: verr.Error()}}
		}
		// failed holds the paths that failed to decode, within holds
		// those and every ancestor of them: a validation problem is
		// dropped when its path or an ancestor is in failed (it is within
		// one), or its path is in within (one is within it). Sets keep
		// this linear in the number of problems.
		failed, within := map[string]bool{}, map[string]bool{}
		for _, de := range errs {
			if de.Path == "" {
				continue
			}
			failed[de.Path] = true
			for p := de.Path; p != "" && !within[p]; p = parentPath(p) {
				within[p] = true
			}
		}
	next:
		for _, ve := range ves {
			if within[ve.Path] {
				continue
			}
			for p := ve.Path; p != ""; p = parentPath(p) {
				if failed[p] {
					continue next
				}
			}
			ve.Line = idx.lineOf(ve.Path)
			errs = append(errs, ve)
		}
	}
	if len(errs) > 0 {
		for _, e := range errs {
			e.Source = source
		}
		errs.sortByLine()
		return nil, errs.capped(source)
	}
	return &cfg, nil
}

// blank reports whether data holds nothing but white space (spaces,
// tabs, line breaks), comments and a byte order mark.
func blank(data []byte) bool {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	for line := range bytes.Lines(data) {
		line = bytes.TrimLeft(line, " \t\r\n")
		if len(line) > 0 && line[0] != '#' {
			return false
		}
	}
	return true
}

// emptyDocument reports whether doc holds nothing: no node written, not
// even null ("~").
func emptyDocument(doc *yaml.Node) bool {
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return doc.Kind == yaml.DocumentNode && len(doc.Content) == 0
	}
	n := doc.Content[0]
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null" && n.Value == "" && n.Style == 0 && n.Anchor == ""
}

// capped keeps the first MaxProblems problems and adds one that counts the
// rest.
func (es Errors) capped(source string) Errors {
	if len(es) <= MaxProblems {
		return es
	}
	more := len(es) - MaxProblems
	return append(es[:MaxProblems:MaxProblems], &FieldError{Source: source, Msg: fmt.Sprintf("%d more problems not shown", more)})
}

// Bounds on one mapping, checked before the typed decode. The YAML
// library compares every key of a mapping with every later one to find
// duplicates, and reports each repeated pair: a mapping of n keys costs
// n²/2 comparisons, and one key written k times costs k²/2 messages. A
// config's largest legitimate mapping is its clusters (thousands, not tens
// of thousands); a key repeated more than a few times is a generated
// mistake.
const (
	maxMappingKeys    = 10000
	maxDuplicatePairs = 1000
	// maxKeyComparisons bounds the library's duplicate checks over the
	// whole document, counting a mapping once for each alias that repeats
	// it (its alias guard counts nodes, not the n² of each mapping): about
	// a second's work, twice the largest single mapping allowed.
	maxKeyComparisons = maxMappingKeys * maxMappingKeys
)

// keyComparisons is the number of key comparisons the typed decode makes
// checking n for duplicate keys, following aliases as the decoder does.
// memo holds the count of each node already counted; active, the nodes
// being counted (an alias of its own ancestor counts nothing more: the
// decoder refuses it).
func keyComparisons(n *yaml.Node, memo map[*yaml.Node]int64, active map[*yaml.Node]bool) int64 {
	if c, ok := memo[n]; ok {
		return c
	}
	if active[n] {
		return 0
	}
	active[n] = true
	var c int64
	add := func(v int64) {
		c = min(c+v, 1<<62)
	}
	switch n.Kind {
	case yaml.AliasNode:
		if n.Alias != nil {
			add(keyComparisons(n.Alias, memo, active))
		}
	case yaml.MappingNode:
		k := int64(len(n.Content) / 2)
		add(k * k / 2)
		fallthrough
	case yaml.SequenceNode, yaml.DocumentNode:
		for _, ch := range n.Content {
			add(keyComparisons(ch, memo, active))
		}
	}
	delete(active, n)
	memo[n] = c
	return c
}

// MaxProblems bounds how many problems Parse reports: the first
// MaxProblems in file order, then one entry saying how many more there
// are. A file of generated garbage then yields a readable report and a log
// line of bounded size rather than hundreds of thousands of lines.
const MaxProblems = 100

// locate finds the line that the YAML library's message without one is
// about: the first character it cannot read (not UTF-8, or a control
// character), or the first use of an anchor it does not know. It returns
// msg with the column added, or line 0 and msg unchanged.
func locate(data []byte, msg string) (int, string) {
	switch {
	case strings.Contains(msg, "UTF-8"), strings.Contains(msg, "control characters"):
		if bytes.HasPrefix(data, []byte{0xff, 0xfe}) || bytes.HasPrefix(data, []byte{0xfe, 0xff}) {
			return 0, msg // UTF-16: offsets here would not be characters
		}
		line, col := 1, 1
		for i := 0; i < len(data); {
			r, size := utf8.DecodeRune(data[i:])
			switch {
			case r == utf8.RuneError && size <= 1:
				return line, fmt.Sprintf("invalid YAML: column %d: byte 0x%02x is not UTF-8 (the file must be UTF-8 encoded)", col, data[i])
			case r < 0x20 && r != '\t' && r != '\n' && r != '\r', r == 0x7f, r >= 0x80 && r <= 0x9f && r != 0x85, r == 0xfffe, r == 0xffff:
				return line, fmt.Sprintf("invalid YAML: column %d: control character %U is not allowed (write it as an escape in a double-quoted string)", col, r)
			case r == '\n':
				line, col = line+1, 0
			}
			i += size
			col++
		}
	case strings.Contains(msg, "unknown anchor"):
		if m := unknownAnchorRe.FindStringSubmatch(msg); m != nil {
			use := regexp.MustCompile(`\*` + regexp.QuoteMeta(m[1]) + `(?:[\s,\]\}]|$)`)
			if loc := use.FindIndex(data); loc != nil {
				return 1 + bytes.Count(data[:loc[0]], []byte("\n")), msg
			}
		}
	}
	return 0, msg
}

var unknownAnchorRe = regexp.MustCompile(`unknown anchor '(.*)' referenced`)

// locateMerge finds the merge key ("<<") whose value is neither a mapping
// nor a list of mappings, which the YAML library reports without a line,
// and returns its line, key path and what is wrong; line 0 when there is
// none.
func locateMerge(n *yaml.Node, path string) (int, string, string) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := keyPath(path, k.Value)
			if k.Kind == yaml.ScalarNode && k.Value == "<<" && k.Tag == "!!merge" && !mergeable(v) {
				return k.Line, p, "a merge key (<<) takes a mapping, an alias of one, or a list of them; got " + describeNode(resolve(v))
			}
			if l, p, m := locateMerge(v, p); l != 0 {
				return l, p, m
			}
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			if l, p, m := locateMerge(item, indexPath(path, i)); l != 0 {
				return l, p, m
			}
		}
	}
	return 0, "", ""
}

func mergeable(v *yaml.Node) bool {
	v = resolve(v)
	switch v.Kind {
	case yaml.MappingNode:
		return true
	case yaml.SequenceNode:
		for _, item := range v.Content {
			if resolve(item).Kind != yaml.MappingNode {
				return false
			}
		}
		return true
	}
	return false
}

// durationShapeRe matches what time.ParseDuration parses, whatever the
// size: numbers each followed by a unit.
var durationShapeRe = regexp.MustCompile(`^[-+]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:ns|us|µs|μs|ms|s|m|h))+$`)

var yamlLineRe = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxError splits the YAML library's "yaml: line N: msg".
func syntaxError(err error) (int, string) {
	s := err.Error()
	if m := yamlLineRe.FindStringSubmatch(s); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n, "invalid YAML: " + m[2]
	}
	return 0, "invalid YAML: " + strings.TrimPrefix(s, "yaml: ")
}

// nodeIndex knows, for every node of the document, its key path and the Go
// type it decodes into, so that the YAML library's line-numbered messages
// and validation's key paths can be joined up.
type nodeIndex struct {
	entries []indexEntry
	lines   map[string]int // key path -> line of its key (or item)
	// keyErrs holds keys the typed decode would ignore or misreport;
	// complexKeyLines, the lines of the complex ones.
	keyErrs         Errors
	complexKeyLines map[int]bool
	// refused holds mappings too large for the typed decode (see
	// maxMappingKeys).
	refused Errors
	// byLine lists the entries on each line, so that translating one of
	// the decoder's messages costs the entries of its line, not of the
	// file: a 4 MB file can hold hundreds of thousands of bad keys.
	byLine map[int][]int
}

type indexEntry struct {
	line, col int
	path      string
	key       bool         // a mapping key (else a value)
	node      *yaml.Node   // the value node (for keys: the key node)
	t         reflect.Type // the type the value decodes into; nil if unknown
	known     []string     // for keys of a struct mapping: the valid keys
}

func newNodeIndex() *nodeIndex {
	return &nodeIndex{lines: map[string]int{}, byLine: map[int][]int{}, complexKeyLines: map[int]bool{}}
}

func (x *nodeIndex) add(e indexEntry) {
	x.byLine[e.line] = append(x.byLine[e.line], len(x.entries))
	x.entries = append(x.entries, e)
}

// onLine returns the entries on line, in document order.
func (x *nodeIndex) onLine(line int) []*indexEntry {
	ids := x.byLine[line]
	out := make([]*indexEntry, len(ids))
	for i, id := range ids {
		out[i] = &x.entries[id]
	}
	return out
}

var composerCallType = reflect.TypeOf(composer.Call{})

func (x *nodeIndex) walk(n *yaml.Node, path string, t reflect.Type) {
	// An alias is indexed where it stands but not followed: following
	// nested aliases would expand an alias bomb exponentially (the YAML
	// decoder has its own guard against that; this walk must not undo it).
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if _, ok := x.lines[path]; !ok {
		x.lines[path] = n.Line
	}
	x.add(indexEntry{line: n.Line, col: n.Column, path: path, node: n, t: t})
	switch n.Kind {
	case yaml.MappingNode:
		var fields map[string]reflect.Type
		var known []string
		var elem reflect.Type
		if t != nil {
			switch t.Kind() {
			case reflect.Struct:
				fields = map[string]reflect.Type{}
				for i := 0; i < t.NumField(); i++ {
					f := t.Field(i)
					name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
					if !f.IsExported() || name == "-" {
						continue
					}
					if name == "" {
						name = strings.ToLower(f.Name)
					}
					fields[name] = f.Type
					known = append(known, name)
				}
			case reflect.Map:
				elem = t.Elem()
			}
		}
		// A type that decodes itself (an endpoint's mapping) checks its
		// own values' types.
		custom := t != nil && reflect.PointerTo(t).Implements(unmarshalerType)
		if keys := len(n.Content) / 2; keys > maxMappingKeys {
			x.refused = append(x.refused, &FieldError{Line: n.Line, Path: path,
				Msg: fmt.Sprintf("a mapping of %d keys; at most %d are allowed", keys, maxMappingKeys)})
			return
		}
		seen := make(map[string]int, len(n.Content)/2)
		pairs := 0
		for i := 0; i < len(n.Content); i += 2 {
			k := n.Content[i]
			pairs += seen[k.Value]
			seen[k.Value]++
			if pairs > maxDuplicatePairs && seen[k.Value] > 2 {
				x.refused = append(x.refused, &FieldError{Line: k.Line, Path: keyPath(path, k.Value),
					Msg: fmt.Sprintf("duplicate key %q, written %d times or more", k.Value, seen[k.Value])})
				return
			}
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind == yaml.MappingNode || k.Kind == yaml.SequenceNode {
				// A complex key ("? [a, b]"): the library's message would
				// name the value's type, not the key's.
				x.keyErrs = append(x.keyErrs, &FieldError{Line: k.Line, Path: path,
					Msg: "a key must be a name, got " + describeNode(k)})
				x.complexKeyLines[k.Line] = true
			}
			if fields != nil && k.Kind == yaml.ScalarNode && k.ShortTag() == "!!null" {
				// The YAML library skips a null key of a struct without a
				// word, value and all: "~: 1" or ": 1" would pass unseen.
				x.keyErrs = append(x.keyErrs, &FieldError{Line: k.Line, Path: path,
					Msg: fmt.Sprintf("key %s is null, not the name of a setting", k.Value)})
			}
			p := keyPath(path, k.Value)
			var vt reflect.Type
			if fields != nil {
				vt = fields[k.Value]
			} else {
				vt = elem
			}
			if _, ok := x.lines[p]; !ok {
				x.lines[p] = k.Line
			}
			if t == composerCallType && k.Value == "headers" && v.Kind == yaml.MappingNode {
				// A plain map to the YAML library: its keys are compared
				// as written.
				for _, d := range caseDuplicates(v) {
					x.keyErrs = append(x.keyErrs, &FieldError{Line: d.key.Line, Path: keyPath(p, d.key.Value), Msg: d.msg()})
				}
			}
			x.add(indexEntry{line: k.Line, col: k.Column, path: p, key: true, node: k, known: known})
			if !custom {
				x.checkScalar(v, p, vt)
			}
			x.walk(v, p, vt)
		}
	case yaml.SequenceNode:
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for i, item := range n.Content {
			x.checkScalar(item, indexPath(path, i), elem)
			x.walk(item, indexPath(path, i), elem)
		}
	}
}

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

// checkScalar refuses what the YAML library would take for a key's type
// by changing it, without a word:
//   - a number with a fraction (2.5) for a key that takes an integer,
//     which it cuts to the integer. A whole number written as a float
//     (1e6, 2048.0) loses nothing and is taken, as the library takes it
//     (and as protobuf's JSON reads an integer field). Durations have
//     messages of their own (a unit is required).
//   - a quoted string for a boolean: the library reads "yes", "on",
//     "no", "off" (YAML 1.1's spellings) as booleans even quoted, while
//     it refuses "true". Unquoted, those spellings stay booleans, as
//     Envoy's YAML reads them.
func (x *nodeIndex) checkScalar(n *yaml.Node, path string, t reflect.Type) {
	n = resolve(n)
	if t == nil || n.Kind != yaml.ScalarNode {
		return
	}
	bad := false
	switch {
	case t == durationTypeT:
	case isSigned(t) || isUnsigned(t):
		bad = n.Tag == "!!float" && fractional(n)
	case t.Kind() == reflect.Bool:
		bad = n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 && quotedBool(n.Value)
	}
	if bad {
		x.keyErrs = append(x.keyErrs, &FieldError{Line: n.Line, Path: path, Msg: typeMsg(n, t)})
	}
}

// quotedBool reports whether the YAML library takes s, quoted, for a
// boolean; a quoted value it refuses ("true", "maybe") it reports itself.
func quotedBool(s string) bool {
	var b bool
	return yaml.Unmarshal([]byte(strconv.Quote(s)), &b) == nil
}

// fractional reports whether n is a finite number with a fractional
// part. An infinity or NaN is not: the YAML library refuses those for an
// integer itself.
func fractional(n *yaml.Node) bool {
	var f float64
	if n.Decode(&f) != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return false
	}
	return f != math.Trunc(f)
}

// lineOf returns the line of path, or of its nearest ancestor in the
// document (a missing key is reported on its parent's line).
func (x *nodeIndex) lineOf(path string) int {
	for p := path; p != ""; p = parentPath(p) {
		if l, ok := x.lines[p]; ok {
			return l
		}
	}
	return 0
}

// parentPath drops the last segment of a key path ("a.b[2]" -> "a.b",
// "a[\"x.y\"].c" -> "a[\"x.y\"]").
func parentPath(p string) string {
	last := 0
	for i := 0; i < len(p); {
		switch p[i] {
		case '.':
			last = i
			i++
		case '[':
			last = i
			if i+1 < len(p) && p[i+1] == '"' {
				q, err := strconv.QuotedPrefix(p[i+1:])
				if err != nil {
					return ""
				}
				i += 1 + len(q)
			}
			j := strings.IndexByte(p[i:], ']')
			if j < 0 {
				return ""
			}
			i += j + 1
		default:
			i++
		}
	}
	return p[:last]
}

var (
	ownErrRe      = regexp.MustCompile(`^line (\d+):(\d+): (.*)$`)
	unknownKeyRe  = regexp.MustCompile(`^line (\d+): field (.*) not found in type (.*)$`)
	typeErrRe     = regexp.MustCompile(`^line (\d+): cannot unmarshal (\S+)(?: ` + "`" + `(.*)` + "`" + `)? into (.*)$`)
	duplicateRe   = regexp.MustCompile(`^line (\d+): mapping key (".*") already defined at line (\d+)$`)
	anyLineErrRe  = regexp.MustCompile(`^line (\d+): (.*)$`)
	durationTypeT = reflect.TypeOf(time.Duration(0))
)

// translate turns one of the YAML library's type errors into a FieldError
// with a key path and a message in the package's words, or nil for one
// that is not an error here (a bare 0 for a duration).
func (x *nodeIndex) translate(s string) *FieldError {
	atoi := func(s string) int { n, _ := strconv.Atoi(s); return n }
	if m := ownErrRe.FindStringSubmatch(s); m != nil {
		line, col := atoi(m[1]), atoi(m[2])
		for _, e := range x.onLine(line) {
			if e.col == col {
				return &FieldError{Line: line, Path: e.path, Msg: m[3]}
			}
		}
		return &FieldError{Line: line, Msg: m[3]}
	}
	if m := unknownKeyRe.FindStringSubmatch(s); m != nil {
		line := atoi(m[1])
		for _, e := range x.onLine(line) {
			if e.key && e.node.Value == m[2] {
				return &FieldError{Line: line, Path: e.path, Msg: unknownKeyMsg(m[2], e.known)}
			}
		}
		return &FieldError{Line: line, Msg: unknownKeyMsg(m[2], nil)}
	}
	if m := duplicateRe.FindStringSubmatch(s); m != nil {
		line := atoi(m[1])
		key, _ := strconv.Unquote(m[2])
		path := ""
		for _, e := range x.onLine(line) {
			if e.key && e.node.Value == key {
				path = e.path
				break
			}
		}
		return &FieldError{Line: line, Path: path, Msg: fmt.Sprintf("duplicate key %s (first on line %s)", m[2], m[3])}
	}
	if m := typeErrRe.FindStringSubmatch(s); m != nil {
		line := atoi(m[1])
		tag, short, target := m[2], strings.TrimSuffix(m[3], "..."), m[4]
		if (tag == "!!seq" || tag == "!!map") && target == "string" && x.complexKeyLines[line] {
			return nil // reported by walk
		}
		// Several nodes may sit on one line (flow style); pick the one that
		// decodes into the named type and holds the quoted value.
		score := func(e *indexEntry) int {
			n := 0
			if e.t != nil && e.t.String() == target {
				n += 4
			}
			switch {
			case tag == "!!map":
				if e.node.Kind == yaml.MappingNode {
					n += 2
				}
			case tag == "!!seq":
				if e.node.Kind == yaml.SequenceNode {
					n += 2
				}
			case e.node.Kind == yaml.ScalarNode && strings.HasPrefix(e.node.Value, short):
				n += 2
			}
			return n
		}
		var best *indexEntry
		for _, e := range x.onLine(line) {
			if e.key {
				continue
			}
			if best == nil || score(e) > score(best) {
				best = e
			}
		}
		if best == nil {
			return &FieldError{Line: line, Msg: fmt.Sprintf("cannot use %s as %s", m[2], m[4])}
		}
		if best.t == durationTypeT && best.node.Kind == yaml.ScalarNode && best.node.Tag == "!!int" {
			// A bare 0 (or +0, -0) is a Go duration: time.ParseDuration
			// takes it without a unit, and the docs write defaults so.
			// The YAML library refuses every integer for a Duration and
			// leaves the field zero, which is the value meant.
			if d, err := time.ParseDuration(best.node.Value); err == nil && d == 0 {
				return nil
			}
		}
		return &FieldError{Line: line, Path: best.path, Msg: typeMsg(best.node, best.t)}
	}
	if m := anyLineErrRe.FindStringSubmatch(s); m != nil {
		return &FieldError{Line: atoi(m[1]), Msg: m[2]}
	}
	return &FieldError{Msg: s}
}

func typeMsg(n *yaml.Node, t reflect.Type) string {
	if t == durationTypeT {
		if n.Kind == yaml.ScalarNode && (n.Tag == "!!int" || n.Tag == "!!float") {
			return fmt.Sprintf("invalid duration %s: a unit is required, e.g. %q", n.Value, n.Value+"s")
		}
		if n.Kind == yaml.ScalarNode && durationShapeRe.MatchString(n.Value) {
			// Well formed, so time.ParseDuration refused it for its size.
			return fmt.Sprintf("invalid duration %s: out of range (at most %s)", describeNode(n), time.Duration(1<<63-1))
		}
		return fmt.Sprintf("invalid duration %s: expected a number with a unit, e.g. \"250ms\", \"1s\", \"1m30s\"", describeNode(n))
	}
	if t != nil && n.Kind == yaml.ScalarNode && decimalRe.MatchString(n.Value) {
		// An integer the target cannot hold (the YAML library resolves
		// one beyond 64 bits as a float).
		switch {
		case isSigned(t):
			return fmt.Sprintf("%s is out of range (%d to %d)", n.Value, -1<<(t.Bits()-1), 1<<(t.Bits()-1)-1)
		case isUnsigned(t) && !strings.HasPrefix(n.Value, "-"):
			return fmt.Sprintf("%s is out of range (0 to %d)", n.Value, uint64(1)<<t.Bits()-1)
		}
	}
	return fmt.Sprintf("expected %s, got %s", describeType(t), describeNode(n))
}

var decimalRe = regexp.MustCompile(`^[-+]?[0-9]+$`)

func isSigned(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return true
	}
	return false
}

func isUnsigned(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return true
	}
	return false
}

func describeType(t reflect.Type) string {
	if t == nil {
		return "another kind of value"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping"
	}
	return t.String()
}

func unknownKeyMsg(key string, known []string) string {
	msg := fmt.Sprintf("unknown key %q", key)
	if s := closest(key, known); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	return msg
}

// closest returns the known key nearest to key by edit distance, if it is
// near enough to be a typo.
func closest(key string, known []string) string {
	sorted := append([]string(nil), known...)
	sort.Strings(sorted)
	best, bestD := "", 3
	for _, k := range sorted {
		if d := editDistance(key, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// LineOf returns the line of the YAML document data on which the key path
// keyPath (as [FieldError.Path] spells it) is written, or its nearest
// ancestor that is; 0 when data does not parse, holds none of them or is
// larger than [MaxFileBytes] (Parse would not have read it). It places
// errors found after Parse (by the proxy compiling a config) in the file.
func LineOf(data []byte, keyPath string) int {
	if len(data) > MaxFileBytes {
		return 0
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return 0
	}
	doc := &root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	idx := newNodeIndex()
	idx.walk(doc, "", reflect.TypeOf(Config{}))
	return idx.lineOf(keyPath)
}

// LineOfFile is [LineOf] for the file at path, read as [Load] reads it: no
// more than [MaxFileBytes] of it. The file may have been replaced since it
// was loaded, by anything up to an endless stream; then the line may be
// wrong or 0, but the read stays bounded.
func LineOfFile(path, keyPath string) int {
	data, err := readFile(path)
	if err != nil {
		return 0
	}
	return LineOf(data, keyPath)
}
