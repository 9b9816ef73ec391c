package proxy

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/outrigger-mesh/outrigger/composer"
	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// gzipJSON writes body gzip-encoded, as a server does for a client that
// accepts it.
func gzipJSON(w http.ResponseWriter, body string) {
	var b bytes.Buffer
	z := gzip.NewWriter(&b)
	_, _ = z.Write([]byte(body))
	_ = z.Close()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Encoding", "gzip")
	_, _ = w.Write(b.Bytes())
}

// A call asks for its body unencoded: a request without Accept-Encoding
// accepts any coding (RFC 9110 §12.5.3), and an upstream that took it so
// answered gzip, which failed the call as invalid JSON. An upstream that
// encodes its answer anyway fails the call, saying so.
func TestCompositeCallsAskForUnencodedBodies(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	polite := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		ae, asked := r.Header["Accept-Encoding"]
		mu.Lock()
		seen = append(seen, strings.Join(ae, ","))
		mu.Unlock()
		if !asked || strings.Contains(strings.Join(ae, ","), "gzip") {
			gzipJSON(w, `{"id":1}`)
			return
		}
		_, _ = w.Write([]byte(`{"id":1}`))
	})
	rude := upstream(t, false, func(w http.ResponseWriter, r *http.Request) { gzipJSON(w, `{"n":2}`) })
	cfg := &config.Config{
		Clusters: map[string]config.Cluster{
			"polite": {Endpoints: eps(addr(polite))},
			"rude":   {Endpoints: eps(addr(rude))},
		},
		Routes: []config.Route{{
			Name:  "coded",
			Match: config.RouteMatch{Path: config.PathMatch{Exact: "/coded"}},
			Composition: &composer.Spec{
				Calls: []composer.Call{
					{Name: "polite", Cluster: "polite", Path: "/p"},
					{Name: "rude", Cluster: "rude", Path: "/r", Optional: true},
				},
			},
		}},
	}
	h := startProxy(t, cfg)
	resp := mustGet(t, h.h1, h.url("/coded"), "Accept-Encoding", "gzip")
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Encoding") != "" {
		t.Fatalf("status %d headers %v body %s", resp.StatusCode, resp.Header, body)
	}
	m := decodeJSON(t, body)
	if p, _ := m["polite"].(map[string]any); p["id"] == nil {
		t.Fatalf("the call that asked for identity got no result: %s", body)
	}
	if resp.Header.Get("X-Outrigger-Partial") != "rude" || !strings.Contains(body, `"reason":"invalid_json"`) {
		t.Fatalf("an encoded answer was not refused: headers %v body %s", resp.Header, body)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 1 || seen[0] != "identity" {
		t.Fatalf("the upstream saw Accept-Encoding %q, want identity", seen)
	}
}
