package main

import (
	"strings"
	"testing"
)

// A value that fails to decode under an anchor is decoded again at each
// alias of it, and the YAML decoder reports it each time at the anchor's
// line: validate printed the same line once per use, three times here.
// Each problem is listed once.
func TestValidateListsAProblemUnderAnAliasOnce(t *testing.T) {
	path := writeConfig(t, `clusters:
  a: &base
    connect_timeout: 1 second
    endpoints: [127.0.0.1:9]
  b: *base
  c: *base
`)
	code, out, stderr := runCmd(t, "validate", "-c", path)
	want := path + `:3: clusters.a.connect_timeout: invalid duration "1 second": expected a number with a unit, e.g. "250ms", "1s", "1m30s"` + "\n"
	if code != 1 || out != "" || stderr != want {
		t.Fatalf("exit %d, stdout %q, stderr (%d lines):\n%s\nwant:\n%s", code, out, strings.Count(stderr, "\n"), stderr, want)
	}
}
