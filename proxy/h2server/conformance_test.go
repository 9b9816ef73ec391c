package h2server

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/summerwind/h2spec/config"
	"github.com/summerwind/h2spec/generic"
	"github.com/summerwind/h2spec/hpack"
	"github.com/summerwind/h2spec/http2"
	"github.com/summerwind/h2spec/spec"
)

// TestH2spec runs h2spec, the HTTP/2 conformance suite (RFC 7540 and
// RFC 7541, as its cases name them; their rules stand in RFC 9113), against
// a Server on a loopback port: every case must pass. Its output is the
// test's output (go test -v shows it).
func TestH2spec(t *testing.T) {
	if testing.Short() {
		t.Skip("h2spec takes seconds")
	}
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		// Some cases need a body of 5 bytes or more (6.9.2/3).
		io.WriteString(w, "conformance")
	}))
	host, port, _ := net.SplitHostPort(ts.addr)
	p, _ := strconv.Atoi(port)
	c := &config.Config{
		Host:         host,
		Port:         p,
		Path:         "/",
		Timeout:      2 * time.Second, // h2spec's own default
		MaxHeaderLen: 4000,            // h2spec's own default
		Strict:       true,
	}
	groups := []*spec.TestGroup{generic.Spec(), http2.Spec(), hpack.Spec()}
	passed, failed, skipped := 0, 0, 0
	for _, g := range groups {
		g.Test(c)
		passed += g.PassedCount
		failed += g.FailedCount
		skipped += g.SkippedCount
		for _, f := range failures(g) {
			t.Errorf("h2spec %s", f)
		}
	}
	// The suite has 146 cases with its strict ones: fewer means cases
	// did not run, or were skipped for want of what they need.
	if passed+failed+skipped < 146 || skipped > 0 {
		t.Errorf("h2spec ran %d cases and skipped %d", passed+failed, skipped)
	}
	t.Logf("h2spec: %d passed, %d failed, %d skipped", passed, failed, skipped)
}

// failures lists the failed cases of g and its subgroups, as
// "section/seq description: error".
func failures(g *spec.TestGroup) []string {
	var out []string
	for _, tc := range append(g.Tests, g.StrictTests...) {
		if r := tc.Result; r != nil && r.Failed {
			out = append(out, g.ID()+"/"+strconv.Itoa(r.Sequence)+" "+tc.Desc+": "+strings.TrimSpace(errString(r.Error)))
		}
	}
	for _, sub := range g.Groups {
		out = append(out, failures(sub)...)
	}
	return out
}

func errString(err error) string {
	if err == nil {
		return "failed"
	}
	return err.Error()
}
