package proxy

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
)

// docs/proxy.md's table of local replies lists every reason of the
// catalog with the HTTP status and the gRPC code the proxy answers it
// with, and nothing else; README.md names every reason too. A reason
// added, renamed or given another status shows here rather than in a
// user's surprise.
func TestEveryLocalReplyIsDocumentedWithItsStatuses(t *testing.T) {
	doc, err := os.ReadFile("../docs/proxy.md")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(doc), "| `x-outrigger-error` | HTTP | gRPC | when |")
	if !ok {
		t.Fatal("docs/proxy.md has no local-reply table (header | `x-outrigger-error` | HTTP | gRPC | when |)")
	}
	row := regexp.MustCompile("^\\| `([a-z_]+)` \\| ([0-9]{3}) \\| ([A-Z_]+) \\(([0-9]+)\\) \\|")
	// A reply whose statuses the configuration gives (a fault's abort).
	configured := regexp.MustCompile("^\\| `([a-z_]+)` \\| configured \\| configured \\|")
	type documented struct {
		http, grpc int
		grpcName   string
	}
	rows := map[string]documented{}
	for _, line := range strings.Split(table, "\n")[2:] { // after the separator row
		if !strings.HasPrefix(line, "|") {
			break
		}
		if m := configured.FindStringSubmatch(line); m != nil {
			rows[m[1]] = documented{}
			continue
		}
		m := row.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("docs/proxy.md: local-reply row not in the form | `code` | status | NAME (n) | ...: %.80s", line)
			continue
		}
		h, _ := strconv.Atoi(m[2])
		g, _ := strconv.Atoi(m[4])
		rows[m[1]] = documented{h, g, m[3]}
	}

	known := map[string]bool{}
	for r := Reason(0); r < numReasons; r++ {
		if r == ReasonDirectResponse || r == ReasonEscapedSlashRedirect {
			continue // not an error: no x-outrigger-error, no row
		}
		code := r.String()
		known[code] = true
		d, ok := rows[code]
		if !ok {
			t.Errorf("docs/proxy.md: no local-reply row for %q", code)
			continue
		}
		if r.HTTPStatus() == 0 {
			// Its statuses are configured: the row says so.
			if d != (documented{}) {
				t.Errorf("docs/proxy.md: %s's statuses are configured, the table gives them as %d and %d", code, d.http, d.grpc)
			}
		} else if d.http != r.HTTPStatus() {
			t.Errorf("docs/proxy.md: %s is answered HTTP %d, the table says %d", code, r.HTTPStatus(), d.http)
		}
		if d.grpc != r.GRPCStatus() {
			t.Errorf("docs/proxy.md: %s is answered grpc-status %d, the table says %d", code, r.GRPCStatus(), d.grpc)
		}
		if want := strings.ToUpper(codes.Code(d.grpc).String()); r.HTTPStatus() != 0 && strings.ReplaceAll(d.grpcName, "_", "") != want {
			t.Errorf("docs/proxy.md: %s: gRPC code %d is %s, the table names it %s", code, d.grpc, want, d.grpcName)
		}
		if !strings.Contains(string(readme), "`"+code+"`") {
			t.Errorf("README.md: x-outrigger-error %q is not named", code)
		}
	}
	for code := range rows {
		if !known[code] {
			t.Errorf("docs/proxy.md: local-reply row %q is no reason of the catalog", code)
		}
	}
}
