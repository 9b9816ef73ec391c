package proxy

import (
	"io"
	"net/http"
	"testing"

	"github.com/outrigger-mesh/outrigger/proxy/config"
	"github.com/outrigger-mesh/outrigger/proxy/internal/h2spectest"
)

// TestH2specThroughListener runs h2spec, the HTTP/2 conformance suite,
// against an outbound listener that forwards to an HTTP/1.1 upstream:
// the whole path a client's h2c connection takes (the listener's
// protocol detection, the HTTP/2 server, the forwarding, request bodies
// streamed upstream). Every case passes but one: a listener that speaks
// HTTP/1.1 as well takes "INVALID CONNECTION PREFACE" for an HTTP/1.1
// request line and answers it 400 before closing, where an HTTP/2-only
// endpoint closes at once (h2spec 3.5/2; docs/proxy.md says so).
func TestH2specThroughListener(t *testing.T) {
	if testing.Short() {
		t.Skip("h2spec takes seconds")
	}
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "conformance")
	})
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up))}))
	h2spectest.Run(t, h.out, map[string]bool{"http2/3.5/2": true})
}
