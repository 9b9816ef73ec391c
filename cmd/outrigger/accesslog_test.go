package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

func serveOne(h http.Handler, target string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", target, nil))
	return w
}

func TestAccessLogFollowsReconfigure(t *testing.T) {
	dir := t.TempDir()
	first, second := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log")
	a, err := newAccessLog(config.AccessLog{}, io.Discard, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	h := a.Wrap("outbound", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Outrigger-Error", "no_route")
		w.WriteHeader(404)
		io.WriteString(w, "none")
	}))

	serveOne(h, "/off") // logging off: nothing anywhere
	if err := a.Reconfigure(config.AccessLog{Enabled: true, Path: first}); err != nil {
		t.Fatal(err)
	}
	serveOne(h, "/one")
	if err := a.Reconfigure(config.AccessLog{Enabled: true, Path: second}); err != nil {
		t.Fatal(err)
	}
	serveOne(h, "/two")
	if err := a.Reconfigure(config.AccessLog{Enabled: true, Path: filepath.Join(dir, "missing", "c.log")}); err == nil {
		t.Fatal("a file that cannot be opened was accepted")
	}
	serveOne(h, "/three") // the failed reconfigure kept b.log

	read := func(p string) []map[string]any { return readAccessLog(t, p) }
	if got := read(first); len(got) != 1 || got[0]["path"] != "/one" || got[0]["status"] != 404.0 || got[0]["bytes"] != 4.0 || got[0]["error"] != "no_route" {
		t.Fatalf("%s: %v", first, got)
	}
	if got := read(second); len(got) != 2 || got[0]["path"] != "/two" || got[1]["path"] != "/three" {
		t.Fatalf("%s: %v", second, got)
	}
}

// readAccessLog reads the access log file p, a JSON object a line.
func readAccessLog(t *testing.T, p string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("%s: %q: %v", p, l, err)
		}
		out = append(out, m)
	}
	return out
}

func TestRecorderKeepsFlushAndDefaultsTo200(t *testing.T) {
	a, _ := newAccessLog(config.AccessLog{Enabled: true}, io.Discard, nil)
	defer a.Close()
	var flushed bool
	h := a.Wrap("inbound", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, flushed = w.(http.Flusher)
		w.Write([]byte("x"))
	}))
	if w := serveOne(h, "/"); w.Code != 200 || !flushed {
		t.Fatalf("code %d, flusher %v", w.Code, flushed)
	}
}

func TestAccessLogLetsUpgradesHijack(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "access.log")
	a, err := newAccessLog(config.AccessLog{Enabled: true, Path: logPath}, io.Discard, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	srv := httptest.NewServer(a.Wrap("inbound", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack through the access log: %v", err)
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
	})))
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "echo")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 101 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	// The line is written when the handler returns, which may be just
	// after the client has read the 101.
	waitFor(t, 5*time.Second, "the access log line", func() bool {
		b, _ := os.ReadFile(logPath)
		return strings.Contains(string(b), `"status":101`)
	})
}

// BenchmarkAccessLog measures what the access log adds per request around a
// trivial handler: "off" is the cost when logging.access_log is disabled (an
// atomic load), "on" writes a JSON line to io.Discard.
func BenchmarkAccessLog(b *testing.B) {
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	req := httptest.NewRequest("GET", "/items/2", nil)
	for _, tc := range []struct {
		name string
		cfg  config.AccessLog
		wrap bool
	}{{"unwrapped", config.AccessLog{}, false}, {"off", config.AccessLog{}, true}, {"on", config.AccessLog{Enabled: true}, true}} {
		b.Run(tc.name, func(b *testing.B) {
			a, _ := newAccessLog(tc.cfg, io.Discard, nil)
			defer a.Close()
			var h http.Handler = inner
			if tc.wrap {
				h = a.Wrap("outbound", inner)
			}
			w := httptest.NewRecorder()
			b.ReportAllocs()
			for b.Loop() {
				h.ServeHTTP(w, req)
			}
		})
	}
}

// request_id is the x-request-id as received, whatever the handler does
// to the request's header afterwards (the proxy edits it in place into
// the upstream's); an id the proxy makes comes through
// proxy.RequestIDRecorder (TestAccessLogRequestIDIsTheOneTheUpstreamSaw).
func TestAccessLogRequestIDAsReceived(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "access.log")
	a, err := newAccessLog(config.AccessLog{Enabled: true, Path: logPath}, io.Discard, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	h := a.Wrap("outbound", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Set("X-Request-Id", "made-upstream")
	}))
	for _, id := range []string{"", "from-client"} {
		r := httptest.NewRequest("GET", "/", nil)
		if id != "" {
			r.Header.Set("X-Request-Id", id)
		}
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	var ids []any
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		ids = append(ids, m["request_id"])
	}
	if len(ids) != 2 || ids[0] != "" || ids[1] != "from-client" {
		t.Fatalf("request_id fields %q, want \"\" and \"from-client\"", ids)
	}
}

// Log rotation: the file is renamed, then SIGHUP reopens it by its path
// (Reopen), and the lines after go to a new file there, not on into the
// renamed one. The file was opened once, as long as the config was the
// same, so logrotate without copytruncate lost the log to the old file.
func TestAccessLogReopenAfterRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	a, err := newAccessLog(config.AccessLog{Enabled: true, Path: path}, io.Discard, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	h := a.Wrap("outbound", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	serveOne(h, "/before")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	serveOne(h, "/rotated") // before the signal: still the renamed file
	if err := a.Reopen(); err != nil {
		t.Fatal(err)
	}
	serveOne(h, "/after")
	lines := func(p string) string {
		var paths []string
		for _, m := range readAccessLog(t, p) {
			paths = append(paths, fmt.Sprint(m["path"]))
		}
		return strings.Join(paths, " ")
	}
	if got := lines(path + ".1"); got != "/before /rotated" {
		t.Fatalf("rotated file holds %q, want %q", got, "/before /rotated")
	}
	if got := lines(path); got != "/after" {
		t.Fatalf("reopened file holds %q, want %q", got, "/after")
	}
	// Without a file (standard output) there is nothing to reopen.
	b, err := newAccessLog(config.AccessLog{Enabled: true}, io.Discard, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Reopen(); err != nil {
		t.Fatal(err)
	}
}
