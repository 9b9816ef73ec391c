package main

import (
	"bytes"
	"strings"
	"testing"
)

// The command's usage says what validate prints and which flags demo
// takes, as docs/operations.md does.
func TestUsageMatchesTheCommands(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := runMain([]string{"--help"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("--help exit %d", code)
	}
	out := stdout.String()
	if !strings.Contains(out, `"FILE:LINE: key.path: why"`) {
		t.Errorf("usage does not give validate's line format FILE:LINE: key.path: why:\n%s", out)
	}
	var demoLine string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "outrigger demo") {
			demoLine = l
		}
	}
	stderr.Reset()
	runMain([]string{"demo", "-h"}, &stdout, &stderr)
	for _, flag := range []string{"ephemeral-ports", "addr-file", "log-level", "log-format"} {
		if !strings.Contains(stderr.String(), "-"+flag) {
			t.Fatalf("demo -h lacks -%s:\n%s", flag, stderr.String())
		}
		if !strings.Contains(demoLine, "--"+flag) {
			t.Errorf("usage's demo line %q lacks --%s", demoLine, flag)
		}
	}
}

// A command without flags (version) prints its synopsis alone, without a
// "Flags" heading over nothing; one with flags lists them under it.
func TestUsageHeadsOnlyFlagsThatExist(t *testing.T) {
	var stdout, stderr bytes.Buffer
	runMain([]string{"version", "-h"}, &stdout, &stderr)
	if got := stderr.String(); !strings.HasPrefix(got, "Usage: outrigger version") || strings.Contains(got, "Flags") {
		t.Fatalf("version -h:\n%s", got)
	}
	stderr.Reset()
	runMain([]string{"validate", "-h"}, &stdout, &stderr)
	if got := stderr.String(); !strings.Contains(got, "Flags (one or two dashes):") || !strings.Contains(got, "-c") {
		t.Fatalf("validate -h:\n%s", got)
	}
}
