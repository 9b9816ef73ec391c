package eventlog

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// fakeClock is an injected clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_800_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type testBroker struct {
	*Broker
	t     testing.TB
	dir   string
	reg   *prometheus.Registry
	api   *httptest.Server
	admin *httptest.Server
}

// openTestBroker opens a Broker on dir with cfg and serves its API and admin
// handlers on loopback. Everything is closed by t.Cleanup unless closed
// earlier with close().
func openTestBroker(t testing.TB, dir string, cfg Config, now func() time.Time, opts Options) *testBroker {
	t.Helper()
	cfg.DataDir = dir
	reg := prometheus.NewRegistry()
	b, err := Open(cfg, reg, now, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	tb := &testBroker{Broker: b, t: t, dir: dir, reg: reg}
	tb.api = httptest.NewServer(b.Handler())
	tb.admin = httptest.NewServer(b.AdminHandler())
	t.Cleanup(tb.close)
	return tb
}

func (tb *testBroker) close() {
	if tb.api == nil {
		return
	}
	tb.api.Close()
	tb.admin.Close()
	tb.api, tb.admin = nil, nil
	if err := tb.Broker.Close(); err != nil {
		tb.t.Errorf("Close: %v", err)
	}
}

// call makes an HTTP request with a JSON (or raw string) body and decodes
// the JSON answer into out (when non-nil). It returns the status.
func call(t *testing.T, method, url string, body any, header http.Header, out any) int {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewBufferString(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(buf)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: decode %q: %v", method, url, data, err)
		}
	}
	return resp.StatusCode
}

// waitParked waits until n long polls are parked on tb (see Broker.parked).
func waitParked(t *testing.T, tb *testBroker, n int64) {
	t.Helper()
	eventually(t, fmt.Sprintf("%d parked long polls", n), func() bool { return tb.parked.Load() >= n })
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
