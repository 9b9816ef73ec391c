package h2server

import (
	"io"
	"net/http"
	"testing"

	"github.com/outrigger-mesh/outrigger/proxy/internal/h2spectest"
)

// TestH2spec runs h2spec, the HTTP/2 conformance suite (RFC 7540 and
// RFC 7541, as its cases name them; their rules stand in RFC 9113), against
// a Server on a loopback port: every case must pass, strict ones included.
// Its output is the test's output (go test -v shows it).
func TestH2spec(t *testing.T) {
	if testing.Short() {
		t.Skip("h2spec takes seconds")
	}
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "conformance")
	}))
	h2spectest.Run(t, ts.addr, nil)
}
