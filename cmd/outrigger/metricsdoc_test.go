package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// codeMetric is a metric as the code declares it.
type codeMetric struct {
	typ    string // counter, gauge, histogram
	labels []string
	at     string // file:line
}

// Every outrigger_* metric the code declares (prometheus.New*Opts, or a
// Desc of a collector) is in a table of README.md or docs/*.md with its
// type and its labels, and every metric the pages name exists. The
// tables are those whose rows start with | `outrigger_...` | type |:
// labels come from {a,b} after the name, or from the row's third cell
// when its column is headed "labels" (parenthesised remarks left out).
func TestEveryMetricIsDocumentedWithItsTypeAndLabels(t *testing.T) {
	code := declaredMetrics(t, "../..")
	if len(code) < 20 {
		t.Fatalf("found %d metrics in the code; the scan is broken", len(code))
	}

	rows, named := documentedMetrics(t)

	for _, name := range slices.Sorted(maps.Keys(code)) {
		c := code[name]
		if len(rows[name]) == 0 {
			t.Errorf("%s (%s) is in no metrics table of the docs", name, c.at)
			continue
		}
		for _, r := range rows[name] {
			if r.typ != c.typ {
				t.Errorf("%s: %s is a %s, the docs say %s", r.at, name, c.typ, r.typ)
			}
			if r.labels != nil && !slices.Equal(sorted(r.labels), sorted(c.labels)) {
				t.Errorf("%s: %s has labels %v, the docs say %v", r.at, name, c.labels, r.labels)
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(named)) {
		if _, ok := code[name]; !ok {
			t.Errorf("%s names %s, which the code does not declare", named[name], name)
		}
	}
}

// docRow is a row of a metrics table of the docs.
type docRow struct {
	typ    string
	labels []string // nil: the row says nothing of labels
	at     string   // page:line
}

// documentedMetrics reads the metrics tables of README.md and
// docs/*.md: the rows of each metric, and every full metric name the
// pages mention, with a page that does.
func documentedMetrics(t *testing.T) (rows map[string][]docRow, named map[string]string) {
	t.Helper()
	files, _ := filepath.Glob("../../docs/*.md")
	files = append(files, "../../README.md")
	named = map[string]string{}
	rows = map[string][]docRow{}
	nameRe := regexp.MustCompile(`outrigger_[a-z0-9_]*[a-z0-9]\b`)
	rowRe := regexp.MustCompile("^\\| `(outrigger_[a-z0-9_]+)(?:\\{([a-z0-9_,]*)\\})?` \\| ([a-z]+) \\|(?: ([^|]*)\\|)?")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		page := filepath.Base(f)
		labelColumn := false
		for i, line := range strings.Split(string(b), "\n") {
			for _, n := range nameRe.FindAllString(line, -1) {
				named[n] = page
			}
			if strings.HasPrefix(line, "| ") && strings.Contains(strings.ToLower(line), "| type |") {
				cells := strings.Split(strings.ToLower(line), "|")
				labelColumn = len(cells) > 3 && strings.TrimSpace(cells[3]) == "labels"
				continue
			}
			m := rowRe.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			r := docRow{typ: m[3], at: page + ":" + strconv.Itoa(i+1)}
			switch {
			case strings.Contains(line, "`"+m[1]+"{"):
				r.labels = []string{}
				if m[2] != "" {
					r.labels = strings.Split(m[2], ",")
				}
			case labelColumn:
				r.labels = backquoted(withoutRemarks(m[4]))
			}
			rows[m[1]] = append(rows[m[1]], r)
		}
	}
	return rows, named
}

// declaredMetrics finds the outrigger_* metrics declared in the non-test
// Go files under root.
func declaredMetrics(t *testing.T, root string) map[string]codeMetric {
	out := map[string]codeMetric{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		descs := map[string]codeMetric{} // Desc variable -> metric, typed by its use
		descName := map[string]string{}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.ValueSpec:
				for i, v := range n.Values {
					if call, ok := v.(*ast.CallExpr); ok && promCall(call) == "NewDesc" && len(call.Args) >= 3 {
						if name := stringLit(call.Args[0]); strings.HasPrefix(name, "outrigger_") {
							descName[n.Names[i].Name] = name
							descs[n.Names[i].Name] = codeMetric{labels: stringList(call.Args[2]), at: fset.Position(call.Pos()).String()}
						}
					}
				}
			case *ast.CallExpr:
				fn := promCall(n)
				var typ string
				switch fn {
				case "NewCounter", "NewCounterVec":
					typ = "counter"
				case "NewGauge", "NewGaugeVec":
					typ = "gauge"
				case "NewHistogram", "NewHistogramVec":
					typ = "histogram"
				case "MustNewConstMetric", "MustNewConstHistogram":
					id, ok := n.Args[0].(*ast.Ident)
					if !ok {
						return true
					}
					m, ok := descs[id.Name]
					if !ok {
						return true
					}
					m.typ = "histogram"
					if fn == "MustNewConstMetric" {
						sel, _ := n.Args[1].(*ast.SelectorExpr)
						if sel == nil {
							return true
						}
						m.typ = map[string]string{"GaugeValue": "gauge", "CounterValue": "counter"}[sel.Sel.Name]
					}
					out[descName[id.Name]] = m
					return true
				default:
					return true
				}
				opts, ok := n.Args[0].(*ast.CompositeLit)
				if !ok {
					return true
				}
				for _, e := range opts.Elts {
					kv, ok := e.(*ast.KeyValueExpr)
					if !ok {
						continue
					}
					if k, _ := kv.Key.(*ast.Ident); k != nil && k.Name == "Name" {
						if name := stringLit(kv.Value); strings.HasPrefix(name, "outrigger_") {
							m := codeMetric{typ: typ, labels: []string{}, at: fset.Position(n.Pos()).String()}
							if len(n.Args) > 1 {
								m.labels = stringList(n.Args[1])
							}
							out[name] = m
						}
					}
				}
			}
			return true
		})
		for v, m := range descs {
			if _, typed := out[descName[v]]; !typed {
				t.Errorf("%s: %s is never collected with a type the test knows", m.at, descName[v])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// promCall is the function name of a call prometheus.X(...), or "".
func promCall(c *ast.CallExpr) string {
	sel, ok := c.Fun.(*ast.SelectorExpr)
	if !ok {
		return ""
	}
	if x, ok := sel.X.(*ast.Ident); !ok || x.Name != "prometheus" {
		return ""
	}
	return sel.Sel.Name
}

func stringLit(e ast.Expr) string {
	if b, ok := e.(*ast.BasicLit); ok && b.Kind == token.STRING {
		s, _ := strconv.Unquote(b.Value)
		return s
	}
	return ""
}

func stringList(e ast.Expr) []string {
	out := []string{}
	if c, ok := e.(*ast.CompositeLit); ok {
		for _, el := range c.Elts {
			out = append(out, stringLit(el))
		}
	}
	return out
}

// withoutRemarks drops the parenthesised parts of s.
func withoutRemarks(s string) string {
	var b strings.Builder
	depth := 0
	for _, r := range s {
		switch {
		case r == '(':
			depth++
		case r == ')' && depth > 0:
			depth--
		case depth == 0:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func backquoted(s string) []string {
	out := []string{}
	for _, m := range regexp.MustCompile("`([a-z0-9_]+)`").FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}
