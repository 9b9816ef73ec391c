package proxy

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/composer"
	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// The composition's deadline bounds the arrival of a body a {body}
// reference reads: a client that sends part of it and then nothing is
// answered 408 at the deadline, over HTTP/1.1 and HTTP/2, and no call is
// made; the read waited for the rest for as long as the client held the
// connection.
func TestCompositeStalledRequestBodyEndsAtTheDeadline(t *testing.T) {
	var calls atomic.Int64
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		_, _ = w.Write([]byte(`{}`))
	})
	cfg := &config.Config{
		Clusters: map[string]config.Cluster{"a": {Endpoints: eps(addr(up))}},
		Routes: []config.Route{{
			Name:  "post",
			Match: config.RouteMatch{Path: config.PathMatch{Exact: "/post"}},
			Composition: &composer.Spec{
				Calls:  []composer.Call{{Name: "a", Cluster: "a", Path: "/a", Method: http.MethodPost, Body: "{body}"}},
				Limits: composer.Limits{Deadline: composer.Duration(200 * time.Millisecond)},
			},
		}},
	}
	h := startProxy(t, cfg)
	for _, proto := range []string{"h1", "h2c"} {
		t.Run(proto, func(t *testing.T) {
			pr, pw := io.Pipe()
			defer pw.Close()
			go func() { _, _ = pw.Write([]byte(`{"sku":`)) }()
			req, err := http.NewRequest(http.MethodPost, h.url("/post"), pr)
			if err != nil {
				t.Fatal(err)
			}
			req.ContentLength = 100
			ctx, cancel := contextWithTimeout(5 * time.Second)
			defer cancel()
			resp, err := h.client(proto).Do(req.WithContext(ctx))
			if err != nil {
				t.Fatalf("no answer while the body stalled: %v", err)
			}
			body := readAll(t, resp)
			if resp.StatusCode != http.StatusRequestTimeout || resp.Header.Get("X-Outrigger-Error") != composer.ErrorRequestTimeout ||
				!strings.Contains(body, "deadline") {
				t.Fatalf("status %d headers %v body %s", resp.StatusCode, resp.Header, body)
			}
		})
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("%d calls made without the body", n)
	}
}
