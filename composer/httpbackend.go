package composer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// HTTPBackend is a Backend over plain net/http: each cluster name maps to a
// base URL. It has none of the proxy's load balancing, retries or breakers; it
// serves examples, tests and tools that compose without a sidecar.
type HTTPBackend struct {
	// Clusters maps a cluster name to a base URL such as http://127.0.0.1:8081.
	Clusters map[string]string
	// Client makes the requests. Nil: http.DefaultClient.
	Client *http.Client
}

// ErrUnknownCluster is returned (wrapping ErrConnect) for a cluster HTTPBackend has no URL for.
var ErrUnknownCluster = errors.New("unknown cluster")

// Do implements Backend.
func (b *HTTPBackend) Do(ctx context.Context, call *Request) (*Response, error) {
	base, ok := b.Clusters[call.Cluster]
	if !ok {
		return nil, fmt.Errorf("%w: %w %q", ErrConnect, ErrUnknownCluster, call.Cluster)
	}
	// The path is already escaped: it is appended as is, never re-parsed, so
	// an escaped '/' in a value stays one segment on the wire.
	u := strings.TrimSuffix(base, "/") + call.Path
	if call.RawQuery != "" {
		u += "?" + call.RawQuery
	}
	var body *bytes.Reader
	if call.Body != nil {
		body = bytes.NewReader(call.Body)
	}
	var req *http.Request
	var err error
	if body != nil {
		req, err = http.NewRequestWithContext(ctx, call.Method, u, body)
	} else {
		req, err = http.NewRequestWithContext(ctx, call.Method, u, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	for k, vs := range call.Header {
		req.Header[k] = append([]string(nil), vs...)
	}
	client := b.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err // ClassifyError tells timeouts and dial errors apart
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: resp.Body}, nil
}

var _ Backend = (*HTTPBackend)(nil)
