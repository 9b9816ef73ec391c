package composer

import (
	"fmt"
	"time"
)

// Spec declares one composite endpoint: the backend calls to make and how their
// JSON results are shaped into one response. It is a plain config struct, embedded
// by the sidecar config under a route's `composition:` key. The zero value of every
// field means its documented default. Validate checks a Spec without changing it.
type Spec struct {
	// Calls are the backend calls, in declaration order. Declaration order is the
	// tie-breaker wherever order matters (merge conflicts, passed-through headers);
	// completion order never matters. At least one call is required.
	Calls []Call `yaml:"calls" json:"calls"`

	// ForwardHeaders names headers of the incoming request that are copied onto
	// every call (for example Authorization, traceparent, x-request-id). Empty: none.
	// Per-call Headers are applied after these and win. Framing fields (Host,
	// Content-Length, hop-by-hop ones) and Accept-Encoding cannot be named:
	// every call asks for an unencoded body.
	ForwardHeaders []string `yaml:"forward_headers,omitempty" json:"forward_headers,omitempty"`

	// Output says how call results become the response body. Zero: with one call,
	// its result unchanged; with several, an object holding each call's result
	// under the call's name.
	Output Output `yaml:"output,omitempty" json:"output,omitempty"`

	// Limits bound time, memory and fan-out of one composite request.
	Limits Limits `yaml:"limits,omitempty" json:"limits,omitempty"`
}

// Call is one backend call of a composition.
type Call struct {
	// Name identifies the call in references ({name.field}), in output shaping, in
	// partial-response reports and in metric labels. Required; letters, digits,
	// '_' and '-', starting with a letter; unique; not one of the reserved words
	// query, header, path, each, body.
	Name string `yaml:"name" json:"name"`

	// Cluster is the upstream cluster the call goes to, through the proxy's load
	// balancing, timeouts, retries and circuit breakers. Required; must be a known
	// cluster. Templates never reach the cluster: it is fixed here.
	Cluster string `yaml:"cluster" json:"cluster"`

	// Method is the HTTP method. Empty: GET. A composition may contain at most one
	// call whose method writes (anything but GET, HEAD, OPTIONS); composite writes
	// across services belong to sagas.
	Method string `yaml:"method,omitempty" json:"method,omitempty"`

	// Path is the request path template, starting with '/'. A reference such as
	// /customers/{order.customerId} is replaced by the value escaped as exactly one
	// path segment: '/', '?', '%' and non-ASCII are percent-encoded, and a value that
	// is empty, "." or ".." fails the call. Required.
	Path string `yaml:"path" json:"path"`

	// Query maps query parameter names (literal) to value templates. Values are
	// query-escaped. Rendered in sorted key order. Empty: no query string.
	Query map[string]string `yaml:"query,omitempty" json:"query,omitempty"`

	// Headers maps request header names (literal) to value templates. A rendered
	// value containing a control character fails the call; spaces and tabs at
	// its ends are trimmed. Framing fields (Host, Content-Length, hop-by-hop
	// ones), Accept-Encoding and Content-Encoding cannot be set.
	Headers map[string]string `yaml:"headers,omitempty" json:"headers,omitempty"`

	// Body is an optional JSON body template, written as a YAML/JSON value. A string
	// that is exactly one reference ("{order.id}") is replaced by the referenced JSON
	// value with its type (number, object, ...); any other string is a text template
	// whose references are rendered as text. Empty: no body. Sent with
	// Content-Type: application/json.
	Body any `yaml:"body,omitempty" json:"body,omitempty"`

	// Optional makes the call optional: when it fails, times out or is rejected by a
	// breaker, the response is partial (see Output.PartialField) instead of failing.
	// Zero: required; a failed required call fails the whole request. A required call
	// cannot depend on an optional one.
	Optional bool `yaml:"optional,omitempty" json:"optional,omitempty"`

	// Timeout bounds this call (each element of a fan-out separately), on top of the
	// composition's deadline. Zero: only the deadline applies.
	Timeout Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`

	// MaxResponseBytes caps the response body read from the backend; a larger body
	// fails the call with reason response_too_large, and nothing beyond the cap is
	// read. Zero: Limits.MaxResponseBytes.
	MaxResponseBytes int64 `yaml:"max_response_bytes,omitempty" json:"max_response_bytes,omitempty"`

	// CacheTTL caches successful (2xx) results of this call for this long, keyed by
	// the call and its rendered request (cluster, method, path, query, headers,
	// body): another call's entries never answer it. Only for
	// calls that do not write. Zero: no caching.
	CacheTTL Duration `yaml:"cache_ttl,omitempty" json:"cache_ttl,omitempty"`

	// PassHeaders names response headers of this call copied to the composite
	// response. When several calls pass the same header, the first call in
	// declaration order that has it wins. Framing fields and Content-Encoding
	// cannot be passed. Empty: none.
	PassHeaders []string `yaml:"pass_headers,omitempty" json:"pass_headers,omitempty"`

	// PassErrors makes a non-2xx answer of this (required) call the composite
	// response as is: its status and body, instead of a 502 composition error.
	// Zero: false, except in a composition of exactly one call without fan-out,
	// where the backend's status and body always pass through.
	PassErrors bool `yaml:"pass_errors,omitempty" json:"pass_errors,omitempty"`

	// ForEach fans the call out over a collection: a field path into an earlier
	// call's result, such as order.items[].productId. Without Batch, one call is made
	// per distinct element and {each} (or {each.field} for object elements) refers to
	// the element; identical rendered requests are made once. The call's result is
	// the array of the element results, in order of first appearance; the first
	// element that fails fails the call and cancels the others. Empty: no fan-out.
	ForEach string `yaml:"for_each,omitempty" json:"for_each,omitempty"`

	// Batch makes a ForEach call one request for the whole collection: {each}
	// renders as the distinct elements, each escaped, joined by BatchSeparator
	// (ids={each} -> ids=1,2,3). Only scalar elements. Zero: one call per element.
	Batch bool `yaml:"batch,omitempty" json:"batch,omitempty"`

	// BatchSeparator joins the elements of a batch; it goes on the wire as is, so
	// it is made of the characters , ; | : - _ ~ only. Empty: ",".
	BatchSeparator string `yaml:"batch_separator,omitempty" json:"batch_separator,omitempty"`
}

// Output shapes the response body. The steps run in this fixed order: merge, nest,
// join, select, rename, drop. Sources are written "<call>" or "<call>.<path>".
type Output struct {
	// Merge lists sources whose object results are merged, in this order, into the
	// top-level object (a shallow merge of their keys). Empty: no merge.
	Merge []string `yaml:"merge,omitempty" json:"merge,omitempty"`

	// OnConflict decides a key present in two merged sources with different values:
	// "first" keeps the earlier source's value, "last" the later one's, "error" fails
	// the request (502, composition_conflict), "prefix" keeps the earlier value under
	// the key and stores the later as "<call>_<key>". Order is the Merge list order,
	// never completion order. Empty: first.
	OnConflict string `yaml:"on_conflict,omitempty" json:"on_conflict,omitempty"`

	// Nest places sources under keys of the output object.
	Nest []Nest `yaml:"nest,omitempty" json:"nest,omitempty"`

	// Join attaches matching elements of one array to the elements of another.
	Join []Join `yaml:"join,omitempty" json:"join,omitempty"`

	// Select keeps only these field paths (and drops everything else). Paths use the
	// field-path syntax, e.g. items[].sku. Empty: keep everything.
	Select []string `yaml:"select,omitempty" json:"select,omitempty"`

	// Rename renames fields. Applied after Select.
	Rename []Rename `yaml:"rename,omitempty" json:"rename,omitempty"`

	// Drop removes these field paths. Applied last.
	Drop []string `yaml:"drop,omitempty" json:"drop,omitempty"`

	// PartialField is the top-level key of the machine-readable partial-response
	// section ({"partial": true, "calls": [...]}). Empty: "_outrigger". The section is
	// added only to object outputs and only when some call is missing.
	PartialField string `yaml:"partial_field,omitempty" json:"partial_field,omitempty"`

	// PartialHeaderOnly reports partial responses only through the
	// x-outrigger-partial header, leaving the body untouched. Zero: header and body.
	PartialHeaderOnly bool `yaml:"partial_header_only,omitempty" json:"partial_header_only,omitempty"`
}

// Nest puts a source under a key.
type Nest struct {
	// From is the source: "<call>" or "<call>.<path>". Required.
	From string `yaml:"from" json:"from"`
	// At is the key path in the output where the value goes (dotted object keys,
	// intermediate objects are created, e.g. "customer" or "meta.customer"). Empty:
	// the call's name.
	At string `yaml:"at,omitempty" json:"at,omitempty"`
}

// Join is an in-memory hash join: for each element of the arrays at Into, the
// elements of From whose FromKey equals the element's On field are attached under As.
type Join struct {
	// Into is the field path, in the output, of the array(s) whose elements receive
	// matches, e.g. "items" or "orders[].items". Required.
	Into string `yaml:"into" json:"into"`
	// On is the field path, inside each Into element, of the join key. Required.
	On string `yaml:"on" json:"on"`
	// From is the source array: "<call>" or "<call>.<path>", e.g. "products.data".
	// A per-element ForEach call yields an array. Required.
	From string `yaml:"from" json:"from"`
	// FromKey is the field path, inside each From element, of the key. Empty: On.
	FromKey string `yaml:"from_key,omitempty" json:"from_key,omitempty"`
	// As is the key under which matches are attached. Empty: the From call's name.
	As string `yaml:"as,omitempty" json:"as,omitempty"`
	// Many attaches all matches as an array (one-to-many; an empty array when none
	// match). Zero: one-to-one, the first match in From order, or no key when none.
	Many bool `yaml:"many,omitempty" json:"many,omitempty"`
}

// Rename renames the last key of a field path.
type Rename struct {
	// From is the field path of the field to rename, e.g. items[].sku. Required.
	From string `yaml:"from" json:"from"`
	// To is the new key (a plain name, not a path) in the same object. Required.
	To string `yaml:"to" json:"to"`
}

// Limits bound one composite request.
type Limits struct {
	// Deadline bounds the whole composite request, every call included. Zero: 10s.
	Deadline Duration `yaml:"deadline,omitempty" json:"deadline,omitempty"`
	// MaxResponseBytes is the default per-call response cap. Zero: 1 MiB.
	MaxResponseBytes int64 `yaml:"max_response_bytes,omitempty" json:"max_response_bytes,omitempty"`
	// MaxTotalBytes caps the bytes read from all calls of one request together, and
	// separately the size of the composed body. Zero: 8 MiB.
	MaxTotalBytes int64 `yaml:"max_total_bytes,omitempty" json:"max_total_bytes,omitempty"`
	// MaxFanOut caps the distinct requests one per-element ForEach call makes, and
	// the distinct elements of one batch; more fails that call with reason
	// fan_out_exceeded before any of its requests is sent. Zero: 100.
	MaxFanOut int `yaml:"max_fan_out,omitempty" json:"max_fan_out,omitempty"`
	// MaxRequestBytes caps the incoming request body, read (and parsed as JSON)
	// only when a template refers to {body}; larger is refused with 413. Zero: 1 MiB.
	MaxRequestBytes int64 `yaml:"max_request_bytes,omitempty" json:"max_request_bytes,omitempty"`
	// MaxConcurrency caps backend calls in flight for one request. Zero: 16.
	MaxConcurrency int `yaml:"max_concurrency,omitempty" json:"max_concurrency,omitempty"`
}

// Defaults for zero Limits fields.
const (
	DefaultDeadline         = 10 * time.Second
	DefaultMaxResponseBytes = 1 << 20
	DefaultMaxTotalBytes    = 8 << 20
	DefaultMaxFanOut        = 100
	DefaultMaxConcurrency   = 16
	DefaultMaxRequestBytes  = 1 << 20
	DefaultPartialField     = "_outrigger"
)

// Duration is a time.Duration written as a Go duration string ("250ms", "2s") in
// YAML and JSON.
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q: use a Go duration such as 250ms or 2s", b)
	}
	*d = Duration(v)
	return nil
}

func (l Limits) deadline() time.Duration {
	if l.Deadline <= 0 {
		return DefaultDeadline
	}
	return time.Duration(l.Deadline)
}

func (l Limits) maxResponseBytes() int64 {
	if l.MaxResponseBytes <= 0 {
		return DefaultMaxResponseBytes
	}
	return l.MaxResponseBytes
}

func (l Limits) maxTotalBytes() int64 {
	if l.MaxTotalBytes <= 0 {
		return DefaultMaxTotalBytes
	}
	return l.MaxTotalBytes
}

func (l Limits) maxRequestBytes() int64 {
	if l.MaxRequestBytes <= 0 {
		return DefaultMaxRequestBytes
	}
	return l.MaxRequestBytes
}

func (l Limits) maxFanOut() int {
	if l.MaxFanOut <= 0 {
		return DefaultMaxFanOut
	}
	return l.MaxFanOut
}

func (l Limits) maxConcurrency() int {
	if l.MaxConcurrency <= 0 {
		return DefaultMaxConcurrency
	}
	return l.MaxConcurrency
}

func (c Call) method() string {
	if c.Method == "" {
		return "GET"
	}
	return c.Method
}

// writes reports whether the call's method changes state.
func (c Call) writes() bool {
	switch c.method() {
	case "GET", "HEAD", "OPTIONS":
		return false
	}
	return true
}
