// Package h2spectest runs h2spec, the HTTP/2 conformance suite, against a
// server from a test. Only tests import it.
package h2spectest

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/summerwind/h2spec/config"
	"github.com/summerwind/h2spec/generic"
	"github.com/summerwind/h2spec/hpack"
	"github.com/summerwind/h2spec/http2"
	"github.com/summerwind/h2spec/spec"
)

// Cases is how many cases the suite has, strict ones included.
const Cases = 146

// Run runs every case of the suite, strict ones included, against the
// h2c server at addr, whose answer to a request for "/" must carry a body
// of 5 bytes or more (case 6.9.2/3 needs one). Each failed case whose id
// ("http2/5.1/8") is not in allowed fails t; so does an allowed case that
// passes (the caller's comments and docs would be stale), a skipped case,
// or fewer cases than Cases. The suite's output is the test's output.
func Run(t *testing.T, addr string, allowed map[string]bool) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	c := &config.Config{
		Host:         host,
		Port:         p,
		Path:         "/",
		Timeout:      2 * time.Second, // h2spec's own default
		MaxHeaderLen: 4000,            // h2spec's own default
		Strict:       true,
	}
	ran, failed := 0, map[string]bool{}
	for _, g := range []*spec.TestGroup{generic.Spec(), http2.Spec(), hpack.Spec()} {
		g.Test(c)
		ran += g.PassedCount + g.FailedCount + g.SkippedCount
		if g.SkippedCount > 0 {
			t.Errorf("h2spec skipped %d cases of %s", g.SkippedCount, g.Name)
		}
		eachFailure(g, func(id string, tc *spec.TestCase) {
			failed[id] = true
			if !allowed[id] {
				t.Errorf("h2spec %s %s: %v", id, tc.Desc, tc.Result.Error)
			}
		})
	}
	if ran < Cases {
		t.Errorf("h2spec ran %d cases, want %d", ran, Cases)
	}
	for id := range allowed {
		if !failed[id] {
			t.Errorf("h2spec %s passes now, where it was expected to fail", id)
		}
	}
	t.Logf("h2spec: %d cases, %d failed (allowed: %v)", ran, len(failed), allowed)
}

// eachFailure calls f for every failed case of g and its subgroups, with
// the case's id.
func eachFailure(g *spec.TestGroup, f func(id string, tc *spec.TestCase)) {
	for _, tc := range append(g.Tests, g.StrictTests...) {
		if r := tc.Result; r != nil && r.Failed {
			f(g.ID()+"/"+strconv.Itoa(r.Sequence), tc)
		}
	}
	for _, sub := range g.Groups {
		eachFailure(sub, f)
	}
}
