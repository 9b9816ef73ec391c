package config

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The YAML shorthands: an endpoint may be a bare "host:port" string, and a
// header list may be a mapping. Errors are returned as *yaml.TypeError so
// that the decoder carries on and reports every problem; each message is
// "line L:C: msg", which the loader turns into a FieldError with the key
// path of the node at line L, column C.

func nodeError(n *yaml.Node, format string, args ...any) *yaml.TypeError {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d:%d: %s", n.Line, n.Column, fmt.Sprintf(format, args...))}}
}

// resolve follows an alias to the node it names.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// UnmarshalYAML accepts "host:port" or {address, weight, zone}.
func (e *Endpoint) UnmarshalYAML(n *yaml.Node) error {
	n = resolve(n)
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag != "!!str" {
			return nodeError(n, "expected \"host:port\" or a mapping with address and weight, got %s", describeNode(n))
		}
		*e = Endpoint{Address: n.Value}
		return nil
	case yaml.MappingNode:
		// A plain struct decode with the same field names; unknown keys are
		// checked by hand because Node.Decode does not carry KnownFields.
		errs := duplicateKeys(n)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], resolve(n.Content[i+1])
			switch k.Value {
			case "address":
				if v.Kind != yaml.ScalarNode || v.Tag != "!!str" {
					errs = append(errs, nodeError(v, "expected a string \"host:port\", got %s", describeNode(v)).Errors...)
					continue
				}
				e.Address = v.Value
			case "weight":
				var w uint32
				// The library would decode 2.5 as 2.
				if err := v.Decode(&w); err != nil || fractional(v) {
					errs = append(errs, nodeError(v, "expected an integer from 1 to %d, got %s", MaxEndpointWeight, describeNode(v)).Errors...)
					continue
				}
				// As in Envoy (load_balancing_weight ≥ 1): 0 would read as
				// "no traffic", which the balancer cannot give an endpoint
				// it lists.
				if w == 0 {
					errs = append(errs, nodeError(v, "must be at least 1, got 0 (an endpoint that should take no requests is left out of the list)").Errors...)
					continue
				}
				e.Weight = w
			case "zone":
				// Any scalar, as written, as node.zone takes it: zone: 1
				// must read as the same zone on both sides. A null is
				// no zone, as node.zone's is.
				if v.Kind != yaml.ScalarNode {
					errs = append(errs, nodeError(v, "expected a string, got %s", describeNode(v)).Errors...)
					continue
				}
				if v.Tag != "!!null" {
					e.Zone = v.Value
				}
			default:
				errs = append(errs, nodeError(k, "unknown key %q (expected address, weight or zone)", k.Value).Errors...)
			}
		}
		if len(errs) > 0 {
			return &yaml.TypeError{Errors: errs}
		}
		return nil
	default:
		return nodeError(n, "expected \"host:port\" or a mapping with address and weight, got %s", describeNode(n))
	}
}

// MarshalYAML writes the short form when the weight is the default and
// there is no zone.
func (e Endpoint) MarshalYAML() (any, error) {
	if e.Weight == 0 && e.Zone == "" {
		return e.Address, nil
	}
	// A weight of 0 written out would be refused when read back.
	return struct {
		Address string `yaml:"address"`
		Weight  uint32 `yaml:"weight,omitempty"`
		Zone    string `yaml:"zone,omitempty"`
	}{e.Address, e.Weight, e.Zone}, nil
}

// UnmarshalYAML accepts a list of {name, value, append} or a mapping
// {name: value}.
func (h *HeaderValues) UnmarshalYAML(n *yaml.Node) error {
	n = resolve(n)
	switch n.Kind {
	case yaml.MappingNode:
		var out HeaderValues
		errs := duplicateKeys(n)
		for _, d := range caseDuplicates(n) {
			errs = append(errs, nodeError(d.key, "%s, or use the list form with append: true to send several values", d.msg()).Errors...)
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], resolve(n.Content[i+1])
			if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
				errs = append(errs, nodeError(v, "expected a header value string, got %s", describeNode(v)).Errors...)
				continue
			}
			out = append(out, HeaderValue{Name: k.Value, Value: v.Value})
		}
		if len(errs) > 0 {
			return &yaml.TypeError{Errors: errs}
		}
		// A mapping has no order of its own worth keeping; sorting makes the
		// result (and its re-encoding) deterministic.
		sort.SliceStable(out, func(i, j int) bool { return out[i].Name < out[j].Name })
		*h = out
		return nil
	case yaml.SequenceNode:
		var out HeaderValues
		var errs []string
		for _, item := range n.Content {
			item = resolve(item)
			if item.Kind != yaml.MappingNode {
				errs = append(errs, nodeError(item, "expected a mapping with name, value and append, got %s", describeNode(item)).Errors...)
				continue
			}
			var hv HeaderValue
			errs = append(errs, duplicateKeys(item)...)
			for i := 0; i+1 < len(item.Content); i += 2 {
				k, v := item.Content[i], resolve(item.Content[i+1])
				switch k.Value {
				case "name", "value":
					if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
						errs = append(errs, nodeError(v, "expected a string, got %s", describeNode(v)).Errors...)
						continue
					}
					if k.Value == "name" {
						hv.Name = v.Value
					} else {
						hv.Value = v.Value
					}
				case "append":
					if err := v.Decode(&hv.Append); err != nil {
						errs = append(errs, nodeError(v, "expected true or false, got %s", describeNode(v)).Errors...)
					}
				default:
					errs = append(errs, nodeError(k, "unknown key %q (expected name, value or append)", k.Value).Errors...)
				}
			}
			out = append(out, hv)
		}
		if len(errs) > 0 {
			return &yaml.TypeError{Errors: errs}
		}
		*h = out
		return nil
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			*h = nil
			return nil
		}
	}
	return nodeError(n, "expected a mapping {name: value} or a list of {name, value, append}, got %s", describeNode(n))
}

// caseDuplicate is a key of a mapping of header names that differs from
// an earlier key only in case.
type caseDuplicate struct {
	key, first *yaml.Node
}

func (d caseDuplicate) msg() string {
	return fmt.Sprintf("header %q is the same field as %q on line %d (header names are case-insensitive): give it once",
		d.key.Value, d.first.Value, d.first.Line)
}

// caseDuplicates finds the keys of n, a mapping of header names to values,
// that name a field an earlier key named in other letters. Field names
// are case-insensitive (RFC 9110 section 5.1): {X-A: 1, x-a: 2} is one
// field given twice, and which value wins (or whether both are sent)
// would be up to the order the mapping happens to be read in. Keys
// written the same way twice are left to duplicateKeys.
func caseDuplicates(n *yaml.Node) []caseDuplicate {
	var out []caseDuplicate
	first := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if k.Kind != yaml.ScalarNode {
			continue
		}
		name := strings.ToLower(k.Value)
		f, seen := first[name]
		switch {
		case !seen:
			first[name] = k
		case f.Value != k.Value:
			out = append(out, caseDuplicate{key: k, first: f})
		}
	}
	return out
}

// duplicateKeys reports keys that a mapping node repeats, as the decoder
// does for the mappings it decodes itself.
func duplicateKeys(n *yaml.Node) []string {
	var errs []string
	first := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if line, dup := first[k.Value]; dup {
			errs = append(errs, nodeError(k, "duplicate key %q (first on line %d)", k.Value, line).Errors...)
			continue
		}
		first[k.Value] = k.Line
	}
	return errs
}

// describeNode names what a node holds, for error messages.
func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	switch n.Tag {
	case "!!null":
		return "null"
	case "!!str":
		return fmt.Sprintf("%q", n.Value)
	case "!!int":
		return "the integer " + n.Value
	case "!!float":
		return "the number " + n.Value
	case "!!bool":
		return "the boolean " + n.Value
	}
	return fmt.Sprintf("%s %q", n.Tag, n.Value)
}

// UnmarshalYAML reads a status range: a number, or a string "lo-hi".
func (r *StatusRange) UnmarshalYAML(n *yaml.Node) error {
	n = resolve(n)
	const want = "expected a status (200) or a range (\"200-299\")"
	if n.Kind != yaml.ScalarNode {
		return nodeError(n, "%s, got %s", want, describeNode(n))
	}
	switch n.Tag {
	case "!!int":
		v, err := strconv.Atoi(n.Value)
		if err != nil {
			return nodeError(n, "%s, got %s", want, describeNode(n))
		}
		*r = StatusRange{v, v}
		return nil
	case "!!str":
		v, ok := parseStatusRange(n.Value)
		if !ok {
			return nodeError(n, "%s, got %q", want, n.Value)
		}
		*r = v
		return nil
	}
	return nodeError(n, "%s, got %s", want, describeNode(n))
}

// parseStatusRange reads "lo-hi" (spaces around either number allowed).
func parseStatusRange(s string) (StatusRange, bool) {
	lo, hi, ok := strings.Cut(s, "-")
	a, errA := strconv.Atoi(strings.TrimSpace(lo))
	b, errB := strconv.Atoi(strings.TrimSpace(hi))
	return StatusRange{a, b}, ok && errA == nil && errB == nil
}

// MarshalJSON writes a range as the YAML spells it: 200 or "200-299".
func (r StatusRange) MarshalJSON() ([]byte, error) {
	if r.Lo == r.Hi {
		return []byte(strconv.Itoa(r.Lo)), nil
	}
	return []byte(strconv.Quote(r.String())), nil
}

// String is the range as the YAML spells it.
func (r StatusRange) String() string {
	if r.Lo == r.Hi {
		return strconv.Itoa(r.Lo)
	}
	return strconv.Itoa(r.Lo) + "-" + strconv.Itoa(r.Hi)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (r *StatusRange) UnmarshalJSON(b []byte) error {
	s := string(b)
	if v, err := strconv.Atoi(s); err == nil {
		*r = StatusRange{v, v}
		return nil
	}
	if u, err := strconv.Unquote(s); err == nil {
		if v, ok := parseStatusRange(u); ok {
			*r = v
			return nil
		}
	}
	return fmt.Errorf("status range: expected 200 or \"200-299\", got %s", s)
}
