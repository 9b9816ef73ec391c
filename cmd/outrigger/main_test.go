package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// binPath is the outrigger binary built once for every test in this file.
var binPath string

const testVersion = "v0.0.0-test"

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "outrigger-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "outrigger")
	args := []string{"build", "-o", binPath, "-ldflags", "-X main.version=" + testVersion + " -X main.commit=abc1234"}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, ".")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building outrigger:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// syncBuffer is a bytes.Buffer safe for a writing process and a reading test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runCmd runs the binary to completion (bounded) and returns its exit code
// and output.
func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Dir = t.TempDir()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("running %v: %v", args, err)
	}
	return code, out.String(), errb.String()
}

// proc is a running outrigger process.
type proc struct {
	t              *testing.T
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	addrs          boundAddrs
	addrFile       string
	done           chan struct{} // closed when the process has exited
	exitErr        error
}

// start runs `outrigger ARGS... --addr-file F` in a temporary directory and
// waits until it has written its bound addresses. The process is stopped
// when the test ends.
func start(t *testing.T, args ...string) *proc {
	t.Helper()
	dir := t.TempDir()
	addrFile := filepath.Join(dir, "addrs.json")
	cmd := exec.Command(binPath, append(args, "--addr-file", addrFile)...)
	cmd.Dir = dir
	p := &proc{t: t, cmd: cmd, stdout: &syncBuffer{}, stderr: &syncBuffer{}, addrFile: addrFile, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exitErr = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(20 * time.Second):
				cmd.Process.Kill()
				<-p.done
			}
		}
		if s := p.stderr.String(); strings.Contains(s, "WARNING: DATA RACE") {
			t.Errorf("the outrigger process reported a data race:\n%s", s)
		}
		if t.Failed() {
			t.Logf("outrigger stderr:\n%s", p.stderr.String())
		}
	})
	waitFor(t, 30*time.Second, "the address file", func() bool {
		b, err := os.ReadFile(addrFile)
		return err == nil && json.Unmarshal(b, &p.addrs) == nil
	}, func() bool {
		select {
		case <-p.done:
			t.Fatalf("outrigger exited before listening: %v\n%s", p.exitErr, p.stderr.String())
		default:
		}
		return false
	})
	return p
}

// fileAddrs reads the address file now; ok is false when it cannot be
// read whole.
func (p *proc) fileAddrs() (a boundAddrs, ok bool) {
	b, err := os.ReadFile(p.addrFile)
	return a, err == nil && json.Unmarshal(b, &a) == nil
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(d time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		p.t.Fatalf("outrigger did not exit within %v", d)
	}
	var ee *exec.ExitError
	if errors.As(p.exitErr, &ee) {
		return ee.ExitCode()
	}
	if p.exitErr != nil {
		p.t.Fatal(p.exitErr)
	}
	return 0
}

func (p *proc) signal(s os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(s); err != nil {
		p.t.Fatal(err)
	}
}

// waitFor polls cond every 20ms until it holds or d passes. Each extra
// function runs on every poll too (to fail fast).
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool, extra ...func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		for _, f := range extra {
			f()
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// get does one request and returns status, body and headers.
func get(t *testing.T, c *http.Client, url, host string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s (Host %s): %v", url, host, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func newClient(t *testing.T) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 15 * time.Second}
}

// upstream is a real HTTP server that says who it is in X-Upstream and
// answers /slow?d= after d (d=hold: once release is called),
// announcing on arrivals each slow request it got.
type upstream struct {
	*httptest.Server
	arrivals chan struct{}
	held     chan struct{} // closed by release
	release  func()
}

func newUpstream(t *testing.T, name string) *upstream {
	u := &upstream{arrivals: make(chan struct{}, 16), held: make(chan struct{})}
	u.release = sync.OnceFunc(func() { close(u.held) })
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Upstream", name)
		if r.URL.Path == "/slow" {
			var wait <-chan time.Time // nil: wait for held
			if v := r.URL.Query().Get("d"); v != "hold" {
				d, _ := time.ParseDuration(v)
				wait = time.After(d)
			}
			select {
			case u.arrivals <- struct{}{}:
			default:
			}
			held := u.held
			if wait != nil {
				held = nil
			}
			select {
			case <-wait:
			case <-held:
			case <-r.Context().Done():
				return
			}
		}
		fmt.Fprintf(w, "%s %s", name, r.URL.Path)
	}))
	t.Cleanup(u.Close)
	t.Cleanup(u.release) // before Close, which waits for the handlers
	return u
}

func (u *upstream) addr() string { return strings.TrimPrefix(u.URL, "http://") }

// slowResult is the end of a request sendSlow sent.
type slowResult struct {
	code int
	body string
	err  error
}

// sendSlow sends GET /slow?d=D (Host svc) to the sidecar listening at
// addr, on a connection of its own, and returns once up has the request;
// the result arrives on the channel when it ends.
func sendSlow(t *testing.T, up *upstream, addr string, d time.Duration) <-chan slowResult {
	t.Helper()
	return sendSlowFor(t, up, addr, d.String())
}

// sendHeld is sendSlow for a request the upstream holds until its
// release.
func sendHeld(t *testing.T, up *upstream, addr string) <-chan slowResult {
	t.Helper()
	return sendSlowFor(t, up, addr, "hold")
}

func sendSlowFor(t *testing.T, up *upstream, addr, d string) <-chan slowResult {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+"/slow?d="+d, nil)
	req.Host = "svc"
	res := doAsync(newClient(t), req)
	select {
	case <-up.arrivals:
	case <-time.After(10 * time.Second):
		t.Fatal("the slow request never reached the upstream")
	}
	return res
}

// doAsync sends req with c on a goroutine of its own; the channel gets
// the response's status and body, or the error.
func doAsync(c *http.Client, req *http.Request) <-chan slowResult {
	res := make(chan slowResult, 1)
	go func() {
		resp, err := c.Do(req)
		if err != nil {
			res <- slowResult{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		res <- slowResult{resp.StatusCode, string(b), err}
	}()
	return res
}

// sidecarConfig is a minimal config on random loopback ports: the cluster
// "svc" (Host "svc") goes to upstream, the inbound listener forwards to app.
func sidecarConfig(upstream, app string, extra string) string {
	return fmt.Sprintf(`admin:
  address: 127.0.0.1:0
listeners:
  outbound:
    address: 127.0.0.1:0
  inbound:
    address: 127.0.0.1:0
    app: %[2]s
  app_api:
    disabled: true
  drain_timeout: 10s
clusters:
  svc:
    endpoints: [%[1]s]
routes:
  - name: svc
    match:
      authority: [svc]
    cluster: svc
    timeout: 20s
%[3]s`, upstream, app, extra)
}

// writeAtomic replaces path with content by writing a temporary file and
// renaming it over path, as editors and config management do.
func writeAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func writeConfig(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "outrigger.yaml")
	writeAtomic(t, path, content)
	return path
}

// configStatus fetches /config.
type configBody struct {
	Generation      uint64          `json:"generation"`
	LastReloadError string          `json:"last_reload_error"`
	Effective       json.RawMessage `json:"effective"`
}

func getConfig(t *testing.T, c *http.Client, admin string) configBody {
	t.Helper()
	code, body, _ := get(t, c, "http://"+admin+"/config", "")
	if code != 200 {
		t.Fatalf("/config: %d %s", code, body)
	}
	var cb configBody
	if err := json.Unmarshal([]byte(body), &cb); err != nil {
		t.Fatalf("/config: %v: %s", err, body)
	}
	return cb
}

// metric returns the value of the sample whose name and labels are given
// exactly as exposed, e.g. `outrigger_config_reloads_total{result="failure"}`.
func metric(t *testing.T, c *http.Client, admin, sample string) float64 {
	t.Helper()
	_, body, _ := get(t, c, "http://"+admin+"/metrics", "")
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("metric %s not exposed", sample)
	return 0
}

// waitMetric waits for sample (as metric takes it) to read want. A
// reload's metrics are set a moment after /config shows its outcome: a
// test that waited for /config reads them with this.
func waitMetric(t *testing.T, c *http.Client, admin, sample string, want float64) {
	t.Helper()
	waitFor(t, 10*time.Second, fmt.Sprintf("%s at %v", sample, want), func() bool {
		return metric(t, c, admin, sample) == want
	})
}

func TestVersionPrintsBuildInformation(t *testing.T) {
	code, out, _ := runCmd(t, "version")
	if code != 0 || !strings.Contains(out, "outrigger "+testVersion) || !strings.Contains(out, "commit abc1234") || !strings.Contains(out, "go1.") {
		t.Fatalf("exit %d, output %q", code, out)
	}
}

func TestCommandLineMistakesExit2(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"run"},
		{"validate"},
		{"run", "-c", "x.yaml", "--log-level", "loud"},
		{"run", "-c", "x.yaml", "--log-format", "xml"},
		{"validate", "-c", "x.yaml", "extra"},
		{"version", "--nope"},
	} {
		if code, _, stderr := runCmd(t, args...); code != 2 || stderr == "" {
			t.Errorf("%v: exit %d (want 2), stderr %q", args, code, stderr)
		}
	}
	if code, _, stderr := runCmd(t, "run", "-h"); code != 0 || !strings.Contains(stderr, "--addr-file") && !strings.Contains(stderr, "-addr-file") {
		t.Errorf("run -h: exit %d, %q", code, stderr)
	}
}

func TestValidateAcceptsTheExampleConfig(t *testing.T) {
	example, err := filepath.Abs("../../examples/outrigger.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, flag := range []string{"-c", "--config"} {
		code, out, stderr := runCmd(t, "validate", flag, example)
		if code != 0 || out != "ok\n" {
			t.Fatalf("%s: exit %d, stdout %q, stderr %q", flag, code, out, stderr)
		}
	}
}

func TestValidateListsEveryProblemWithFileAndKeyPath(t *testing.T) {
	path := writeConfig(t, `admin:
  address: nope
clusters:
  a:
    endpoints: ["10.0.0.1"]
    protocol: h3
routes:
  - cluster: b
    timeout: 5
bogus: 1
`)
	code, out, stderr := runCmd(t, "validate", "-c", path)
	if code != 1 || out != "" {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	wantPaths := []string{"admin.address", "clusters.a.endpoints[0]", "clusters.a.protocol", "routes[0].cluster", "routes[0].timeout", "bogus"}
	if len(lines) != len(wantPaths) {
		t.Fatalf("want %d problems, one per line; got:\n%s", len(wantPaths), stderr)
	}
	lineRe := regexp.MustCompile(`^` + regexp.QuoteMeta(path) + `:\d+: (\S+): .+$`)
	for i, l := range lines {
		m := lineRe.FindStringSubmatch(l)
		if m == nil || m[1] != wantPaths[i] {
			t.Errorf("line %d: %q, want FILE:LINE: %s: why", i, l, wantPaths[i])
		}
	}
}

func TestValidateMissingFile(t *testing.T) {
	code, _, stderr := runCmd(t, "validate", "-c", "/nonexistent/outrigger.yaml")
	if code != 1 || !strings.Contains(stderr, "/nonexistent/outrigger.yaml") || !strings.Contains(stderr, "no such file") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}

func TestRunRefusesAnInvalidConfigAndSaysWhy(t *testing.T) {
	path := writeConfig(t, "listeners:\n  drain_timeout: soon\nclusters:\n  a:\n    endpoints: []\n")
	code, _, stderr := runCmd(t, "run", "-c", path)
	if code != 1 || !strings.Contains(stderr, path+":2: listeners.drain_timeout:") || !strings.Contains(stderr, "clusters.a.endpoints") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
}

func TestRunServesTrafficAndTheAdminEndpoint(t *testing.T) {
	up := newUpstream(t, "a")
	app := newUpstream(t, "app")
	p := start(t, "run", "-c", writeConfig(t, sidecarConfig(up.addr(), app.addr(), "")))
	c := newClient(t)

	code, body, _ := get(t, c, "http://"+p.addrs.Outbound+"/items", "svc")
	if code != 200 || body != "a /items" {
		t.Fatalf("outbound: %d %q", code, body)
	}
	code, body, hdr := get(t, c, "http://"+p.addrs.Outbound+"/items", "unknown")
	if code != 404 || hdr.Get("X-Outrigger-Error") == "" {
		t.Fatalf("no route: %d %q %v", code, body, hdr)
	}
	code, body, _ = get(t, c, "http://"+p.addrs.Inbound+"/orders", "")
	if code != 200 || body != "app /orders" {
		t.Fatalf("inbound: %d %q", code, body)
	}
	if code, body, _ := get(t, c, "http://"+p.addrs.Admin+"/ready", ""); code != 200 || body != "ready\n" {
		t.Fatalf("/ready: %d %q", code, body)
	}
	code, body, _ = get(t, c, "http://"+p.addrs.Admin+"/clusters", "")
	if code != 200 || !strings.Contains(body, `"name": "svc"`) || !strings.Contains(body, up.addr()) {
		t.Fatalf("/clusters: %d %s", code, body)
	}
	cb := getConfig(t, c, p.addrs.Admin)
	if cb.Generation != 1 || cb.LastReloadError != "" || !bytes.Contains(cb.Effective, []byte(`"drain_timeout": "10s"`)) {
		t.Fatalf("/config: %+v", cb)
	}
	if g := metric(t, c, p.addrs.Admin, "outrigger_config_generation"); g != 1 {
		t.Fatalf("generation metric %v", g)
	}
	for _, m := range []string{"go_goroutines", "process_resident_memory_bytes", `outrigger_proxy_requests_total{cluster="svc",code_class="2xx",listener="outbound",route="svc"}`} {
		metric(t, c, p.addrs.Admin, m)
	}
	// The start line is logged after the address file start waited for.
	waitFor(t, 10*time.Second, "the JSON start line in the log", func() bool {
		return strings.Contains(p.stderr.String(), `"msg":"outrigger serving"`)
	})
}

// loadLoop sends requests with Host svc from a few goroutines until stop is
// called (or a bound on count and time is hit), and counts failures.
type loadLoop struct {
	stop     context.CancelFunc
	wg       sync.WaitGroup
	mu       sync.Mutex
	ok       int
	failures []string
	seen     map[string]int // by X-Upstream
}

// startLoad runs the loop for at most limit, and at most perWorker requests
// in each of its 4 goroutines.
func startLoad(t *testing.T, c *http.Client, url string, limit time.Duration, perWorker int) *loadLoop {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	l := &loadLoop{stop: cancel, seen: map[string]int{}}
	for range 4 {
		l.wg.Go(func() {
			for i := 0; i < perWorker && ctx.Err() == nil; i++ {
				req, _ := http.NewRequest("GET", url, nil)
				req.Host = "svc"
				resp, err := c.Do(req)
				l.mu.Lock()
				switch {
				case err != nil:
					l.failures = append(l.failures, err.Error())
				case resp.StatusCode != 200:
					l.failures = append(l.failures, fmt.Sprintf("status %d (%s)", resp.StatusCode, resp.Header.Get("X-Outrigger-Error")))
				default:
					l.ok++
					l.seen[resp.Header.Get("X-Upstream")]++
				}
				l.mu.Unlock()
				if resp != nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		})
	}
	t.Cleanup(func() { l.stop(); l.wg.Wait() })
	return l
}

func (l *loadLoop) count(upstream string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seen[upstream]
}

func (l *loadLoop) finish() (ok int, failures []string) {
	l.stop()
	l.wg.Wait()
	return l.ok, l.failures
}

func TestHotReloadUnderLoad(t *testing.T) {
	a, b := newUpstream(t, "a"), newUpstream(t, "b")
	app := newUpstream(t, "app")
	path := writeConfig(t, sidecarConfig(a.addr(), app.addr(), ""))
	p := start(t, "run", "-c", path)
	c := newClient(t)
	admin := p.addrs.Admin

	load := startLoad(t, newClient(t), "http://"+p.addrs.Outbound+"/hello", time.Minute, 50000)
	waitFor(t, 10*time.Second, "traffic to a", func() bool { return load.count("a") > 50 })

	// A valid edit: the cluster moves to b. Generation 2, and traffic
	// follows without a single failed request.
	writeAtomic(t, path, sidecarConfig(b.addr(), app.addr(), ""))
	waitFor(t, 15*time.Second, "generation 2", func() bool { return getConfig(t, c, admin).Generation == 2 })
	waitFor(t, 10*time.Second, "traffic to b", func() bool { return load.count("b") > 50 })

	// An invalid edit: rejected, visible in /config and metrics, and b
	// keeps serving.
	writeAtomic(t, path, sidecarConfig(b.addr(), app.addr(), "    retry:\n      attempts: 99\n"))
	var cb configBody
	waitFor(t, 15*time.Second, "the rejected reload in /config", func() bool {
		cb = getConfig(t, c, admin)
		return cb.LastReloadError != ""
	})
	if cb.Generation != 2 || !strings.Contains(cb.LastReloadError, "routes[0].retry.attempts") || !strings.Contains(cb.LastReloadError, path) {
		t.Fatalf("after an invalid edit: %+v", cb)
	}
	waitMetric(t, c, admin, "outrigger_config_last_reload_error", 1)
	waitMetric(t, c, admin, `outrigger_config_reloads_total{result="failure"}`, 1)
	if v := metric(t, c, admin, `outrigger_config_reloads_total{result="success"}`); v != 1 {
		t.Fatalf("successful reloads %v, want 1", v)
	}
	before := load.count("b")
	waitFor(t, 10*time.Second, "more traffic to b", func() bool { return load.count("b") > before+50 })
	// The rejection is logged after /config shows it.
	waitFor(t, 10*time.Second, "the rejection in the log", func() bool {
		return strings.Contains(p.stderr.String(), "configuration reload rejected")
	})

	ok, failures := load.finish()
	if len(failures) > 0 {
		t.Fatalf("%d of %d requests failed across the reloads, e.g. %q", len(failures), ok+len(failures), failures[0])
	}
	t.Logf("%d requests, none failed, across one valid and one invalid reload", ok)

	// Fixing the file clears the error.
	writeAtomic(t, path, sidecarConfig(a.addr(), app.addr(), ""))
	waitFor(t, 15*time.Second, "generation 3", func() bool { return getConfig(t, c, admin).Generation == 3 })
	if cb := getConfig(t, c, admin); cb.LastReloadError != "" {
		t.Fatalf("error not cleared: %+v", cb)
	}
	waitMetric(t, c, admin, "outrigger_config_last_reload_error", 0)
}

func TestSIGHUPReloads(t *testing.T) {
	up := newUpstream(t, "a")
	p := start(t, "run", "-c", writeConfig(t, sidecarConfig(up.addr(), up.addr(), "")))
	c := newClient(t)
	p.signal(syscall.SIGHUP)
	waitFor(t, 10*time.Second, "generation 2 after SIGHUP", func() bool { return getConfig(t, c, p.addrs.Admin).Generation == 2 })
	// The generation is served before the reload's log line is written.
	waitFor(t, 10*time.Second, "the reload logged as signalled", func() bool {
		return strings.Contains(p.stderr.String(), `"trigger":"signal"`)
	})
	if code, body, _ := get(t, c, "http://"+p.addrs.Outbound+"/x", "svc"); code != 200 || body != "a /x" {
		t.Fatalf("after SIGHUP: %d %q", code, body)
	}
}

func TestSIGTERMDrainsInFlightRequestsAndExits0(t *testing.T) {
	up := newUpstream(t, "a")
	p := start(t, "run", "-c", writeConfig(t, sidecarConfig(up.addr(), up.addr(), "")))
	c := newClient(t)
	res := sendHeld(t, up, p.addrs.Outbound)
	p.signal(syscall.SIGTERM)

	// While draining: not ready, and the admin endpoint still answers.
	waitFor(t, 5*time.Second, "/ready to say 503 during the drain", func() bool {
		resp, err := c.Get("http://" + p.addrs.Admin + "/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 503
	})
	up.release()

	r := <-res
	if r.err != nil || r.code != 200 || r.body != "a /slow" {
		t.Fatalf("the in-flight request did not complete: %+v", r)
	}
	if code := p.wait(20 * time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	if !strings.Contains(p.stderr.String(), "outrigger stopped") {
		t.Fatalf("no stop line:\n%s", p.stderr.String())
	}
	if _, err := os.Stat(p.addrFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the address file outlived the process: %v", err)
	}
}

func TestAccessLogWritesOneLinePerRequest(t *testing.T) {
	up := newUpstream(t, "a")
	logPath := filepath.Join(t.TempDir(), "access.log")
	extra := fmt.Sprintf("logging:\n  access_log:\n    enabled: true\n    path: %s\n", logPath)
	p := start(t, "run", "-c", writeConfig(t, sidecarConfig(up.addr(), up.addr(), extra)))
	c := newClient(t)
	for _, host := range []string{"svc", "nope"} {
		get(t, c, "http://"+p.addrs.Outbound+"/things?x=1", host)
	}
	var lines []map[string]any
	waitFor(t, 5*time.Second, "two access log lines", func() bool {
		b, _ := os.ReadFile(logPath)
		lines = nil
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) == nil {
				lines = append(lines, m)
			}
		}
		return len(lines) == 2
	})
	if lines[0]["status"] != 200.0 || lines[0]["authority"] != "svc" || lines[0]["path"] != "/things" || lines[0]["listener"] != "outbound" {
		t.Fatalf("first line %v", lines[0])
	}
	if lines[1]["status"] != 404.0 || lines[1]["error"] == "" {
		t.Fatalf("second line %v", lines[1])
	}
}

func TestDemoServesTheCatalogThroughTheSidecar(t *testing.T) {
	p := start(t, "demo", "--ephemeral-ports", "--log-format", "json")
	c := newClient(t)
	code, body, _ := get(t, c, "http://"+p.addrs.Outbound+"/items/2", "catalog")
	if code != 200 || !strings.Contains(body, "outrigger float") {
		t.Fatalf("outbound: %d %q", code, body)
	}
	code, _, hdr := get(t, c, "http://"+p.addrs.Inbound+"/items", "")
	if code != 200 || hdr.Get("X-Outrigger-Example") != "inbound" {
		t.Fatalf("inbound: %d %v", code, hdr)
	}
	resp, err := c.Post("http://"+p.addrs.AppAPI+"/v1/topics/orders/records", "application/json", strings.NewReader(`{"key":"order-1","value":{"qty":1}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("publish: %d", resp.StatusCode)
	}
	// gRPC (h2c) through the outbound listener to the catalog's health
	// service, with a real grpc-go client.
	cc, err := grpc.NewClient(p.addrs.Outbound, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority("catalog"))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hr, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: "catalog"})
	if err != nil || hr.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("gRPC health through the sidecar: %v %v", hr, err)
	}
	_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: "nope"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("unknown service: %v, want NotFound carried through", err)
	}
	// The banner is printed after the address file start waited for.
	waitFor(t, 10*time.Second, "the banner", func() bool { return strings.Contains(p.stderr.String(), "Ctrl-C drains and stops.") })
	if !strings.Contains(p.stderr.String(), "curl -H 'Host: catalog' http://"+p.addrs.Outbound+"/items") {
		t.Fatalf("the banner does not say where to send requests:\n%s", p.stderr.String())
	}
	p.signal(syscall.SIGINT)
	if code := p.wait(20 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

func TestIdleResidentMemory(t *testing.T) {
	up := newUpstream(t, "a")
	p := start(t, "run", "-c", writeConfig(t, sidecarConfig(up.addr(), up.addr(), "")))
	c := newClient(t)
	for range 20 {
		get(t, c, "http://"+p.addrs.Outbound+"/x", "svc")
	}
	kb := rssKB(t, p.cmd.Process.Pid)
	// Reported, not asserted tightly: the race detector alone multiplies
	// memory several times. The target without it is under 30 MB.
	t.Logf("idle RSS after 20 requests: %.1f MB (race detector: %v)", float64(kb)/1024, raceEnabled)
	if !raceEnabled && kb > 200<<10 {
		t.Errorf("idle RSS %d kB is far above the 30 MB target", kb)
	}
}

func TestBreakerOverrideFromTheAdminEndpoint(t *testing.T) {
	up := newUpstream(t, "a")
	p := start(t, "run", "-c", writeConfig(t, sidecarConfig(up.addr(), up.addr(), "")))
	c := newClient(t)
	post := func(path string) int {
		t.Helper()
		resp, err := c.Post("http://"+p.addrs.Admin+path, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post("/clusters/svc/breaker?state=open"); code != 200 {
		t.Fatalf("force open: %d", code)
	}
	code, _, hdr := get(t, c, "http://"+p.addrs.Outbound+"/x", "svc")
	if code != 503 || hdr.Get("X-Outrigger-Breaker") != "open" {
		t.Fatalf("forced open: %d %v", code, hdr)
	}
	if _, body, _ := get(t, c, "http://"+p.addrs.Admin+"/clusters", ""); !strings.Contains(body, "forced_open") {
		t.Fatalf("/clusters does not show the forced state:\n%s", body)
	}
	if code := post("/clusters/svc/breaker?state=reset"); code != 200 {
		t.Fatalf("reset: %d", code)
	}
	if code, body, _ := get(t, c, "http://"+p.addrs.Outbound+"/x", "svc"); code != 200 || body != "a /x" {
		t.Fatalf("after reset: %d %q", code, body)
	}
	if code := post("/clusters/nope/breaker?state=open"); code != 404 {
		t.Fatalf("unknown cluster: %d, want 404", code)
	}
	if code := post("/clusters/svc/breaker?state=ajar"); code != 400 {
		t.Fatalf("bad state: %d, want 400", code)
	}
}

// rssKB is the resident set of process pid, from /proc/PID/status.
func rssKB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		t.Fatal("no VmRSS in /proc status")
	}
	kb, _ := strconv.Atoi(string(m[1]))
	return kb
}

func TestAppAPIRunsOnlyWithAnEventLogSection(t *testing.T) {
	up := newUpstream(t, "a")
	plain := strings.Replace(sidecarConfig(up.addr(), up.addr(), ""), "  app_api:\n    disabled: true\n", "  app_api:\n    address: 127.0.0.1:0\n", 1)
	p := start(t, "run", "-c", writeConfig(t, plain))
	if p.addrs.AppAPI != "" {
		t.Fatalf("app API bound without an eventlog section: %+v", p.addrs)
	}
	if _, err := os.Stat(filepath.Join(p.cmd.Dir, "data")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a data directory was created without an eventlog section: %v", err)
	}

	withLog := plain + "eventlog:\n  topics:\n    orders: {}\n"
	p = start(t, "run", "-c", writeConfig(t, withLog))
	c := newClient(t)
	if p.addrs.AppAPI == "" {
		t.Fatalf("app API not bound: %+v", p.addrs)
	}
	resp, err := c.Post("http://"+p.addrs.AppAPI+"/v1/topics/orders/records", "application/json", strings.NewReader(`{"value":{"n":1}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("publish: %d", resp.StatusCode)
	}
	if code, body, _ := get(t, c, "http://"+p.addrs.Admin+"/topics/orders", ""); code != 200 || !strings.Contains(body, `"log_end_offset":1`) {
		t.Fatalf("/topics/orders: %d %s", code, body)
	}
}

func TestValidateRefusesWhatTheProxyCannotBuild(t *testing.T) {
	path := writeConfig(t, "clusters:\n  a:\n    endpoints: [127.0.0.1:9]\n    tls:\n      enabled: true\n      ca_file: /nonexistent/ca.pem\n")
	code, out, stderr := runCmd(t, "validate", "-c", path)
	// The line of the cluster, as for Load's own errors.
	if code != 1 || out != "" || !strings.Contains(stderr, path+":2: clusters.a") || !strings.Contains(stderr, "/nonexistent/ca.pem") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, stderr)
	}
}

func TestSIGTERMEndsAppAPILongPollsWithoutWaitingOutTheDrain(t *testing.T) {
	up := newUpstream(t, "a")
	cfg := strings.Replace(sidecarConfig(up.addr(), up.addr(), ""), "  app_api:\n    disabled: true\n", "  app_api:\n    address: 127.0.0.1:0\n", 1) +
		"eventlog:\n  topics:\n    orders: {}\n"
	cfg = strings.Replace(cfg, "drain_timeout: 10s", "drain_timeout: 20s", 1)
	p := start(t, "run", "-c", writeConfig(t, cfg))
	c := newClient(t)

	polled := make(chan error, 1)
	go func() {
		resp, err := c.Get("http://" + p.addrs.AppAPI + "/v1/topics/orders/partitions/0/records?offset=0&wait=25s")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		polled <- err
	}()
	// The poll is parked in the event log once its handler shows in the
	// sidecar's goroutine dump.
	waitFor(t, 10*time.Second, "the long poll to be parked", func() bool {
		_, body, _ := get(t, c, "http://"+p.addrs.Admin+"/debug/pprof/goroutine?debug=1", "")
		return strings.Contains(body, "handleFetch")
	})
	start := time.Now()
	p.signal(syscall.SIGTERM)
	if code := p.wait(15 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	select {
	case <-polled:
	case <-time.After(5 * time.Second):
		t.Fatal("the long poll outlived the process")
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Fatalf("stopping took %v with a long poll open", el)
	}
}

func TestTuneGC(t *testing.T) {
	old := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(old) })

	if got := tuneGC(func(string) string { return "" }); got != defaultGCPercent {
		t.Fatalf("without GOGC: %d, want %d", got, defaultGCPercent)
	}
	if p := debug.SetGCPercent(defaultGCPercent); p != defaultGCPercent {
		t.Fatalf("runtime's GC percent is %d after tuneGC, want %d", p, defaultGCPercent)
	}
	// With GOGC set the runtime's own value stands (here: what the test set).
	debug.SetGCPercent(150)
	if got := tuneGC(func(k string) string {
		if k == "GOGC" {
			return "150"
		}
		return ""
	}); got != 150 {
		t.Fatalf("with GOGC=150: %d, want 150", got)
	}
	if p := debug.SetGCPercent(150); p != 150 {
		t.Fatalf("tuneGC changed an operator's GOGC to %d", p)
	}
}

// freeAddr is a loopback address with a port free at the time of the call.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// withAddress is cfg (a sidecarConfig) with listener name ("outbound" or
// "inbound") at addr.
func withAddress(t *testing.T, cfg, name, addr string) string {
	t.Helper()
	at := "  " + name + ":\n    address: 127.0.0.1:0\n"
	if !strings.Contains(cfg, at) {
		t.Fatalf("sidecarConfig has no %s address to replace", name)
	}
	return strings.Replace(cfg, at, "  "+name+":\n    address: "+addr+"\n", 1)
}

func withOutbound(t *testing.T, cfg, addr string) string {
	return withAddress(t, cfg, "outbound", addr)
}

func withInbound(t *testing.T, cfg, addr string) string { return withAddress(t, cfg, "inbound", addr) }

// startReloadable starts the sidecar in front of one upstream "a" on a
// config file the test may rewrite: it returns the upstream, the config
// as written, its path, the process and a client.
func startReloadable(t *testing.T) (*upstream, string, string, *proc, *http.Client) {
	up := newUpstream(t, "a")
	base := sidecarConfig(up.addr(), up.addr(), "")
	path := writeConfig(t, base)
	return up, base, path, start(t, "run", "-c", path), newClient(t)
}

// A reload that changes the outbound listener's address moves it: the new
// address serves at once, the old one stops accepting and its request in
// flight finishes. An address that cannot be bound rejects the reload and
// the listener stays where it is.
func TestReloadMovesAListenerWithoutDroppingItsRequests(t *testing.T) {
	up, base, path, p, c := startReloadable(t)
	old := p.addrs.Outbound
	res := sendSlow(t, up, old, 1500*time.Millisecond)

	moved := freeAddr(t)
	writeAtomic(t, path, withOutbound(t, base, moved))
	// The generation is the last thing a reload changes: once /config
	// shows it, the address file names the new address.
	waitFor(t, 15*time.Second, "generation 2", func() bool { return getConfig(t, c, p.addrs.Admin).Generation == 2 })
	if a, ok := p.fileAddrs(); !ok || a.Outbound != moved {
		t.Fatalf("the address file after the move names %q (read whole: %v), want %q", a.Outbound, ok, moved)
	}
	if code, body, _ := get(t, c, "http://"+moved+"/x", "svc"); code != 200 || body != "a /x" {
		t.Fatalf("the new address: %d %q", code, body)
	}
	waitFor(t, 10*time.Second, "the old address to refuse connections", func() bool {
		conn, err := net.DialTimeout("tcp", old, time.Second)
		if err == nil {
			conn.Close()
		}
		return err != nil
	})
	if r := <-res; r.err != nil || r.code != 200 || r.body != "a /slow" {
		t.Fatalf("the request in flight on the old address: %+v", r)
	}
	if s := p.stderr.String(); !strings.Contains(s, `"msg":"listener moved"`) || strings.Contains(s, "takes effect on restart") {
		t.Fatalf("the move is not logged as such:\n%s", s)
	}

	// An address in use: the reload is rejected, and says why.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	writeAtomic(t, path, withOutbound(t, base, busy.Addr().String()))
	var cb configBody
	waitFor(t, 15*time.Second, "the rejected reload in /config", func() bool {
		cb = getConfig(t, c, p.addrs.Admin)
		return cb.LastReloadError != ""
	})
	if cb.Generation != 2 || !strings.Contains(cb.LastReloadError, "listeners.outbound.address") || !strings.Contains(cb.LastReloadError, "address already in use") {
		t.Fatalf("after moving to an address in use: %+v", cb)
	}
	if code, body, _ := get(t, c, "http://"+moved+"/y", "svc"); code != 200 || body != "a /y" {
		t.Fatalf("the listener after the rejected move: %d %q", code, body)
	}
}

// Turning the inbound listener off (no app) and on again by reloads.
func TestReloadTurnsAListenerOffAndOn(t *testing.T) {
	up := newUpstream(t, "a")
	app := newUpstream(t, "app")
	on := sidecarConfig(up.addr(), app.addr(), "")
	off := strings.Replace(on, "    app: "+app.addr()+"\n", "", 1)
	if off == on {
		t.Fatal("sidecarConfig has no inbound app to remove")
	}
	path := writeConfig(t, on)
	p := start(t, "run", "-c", path)
	c := newClient(t)
	in := p.addrs.Inbound
	if code, body, _ := get(t, c, "http://"+in+"/i", ""); code != 200 || body != "app /i" {
		t.Fatalf("inbound: %d %q", code, body)
	}
	readAddrs := func() boundAddrs {
		a, ok := p.fileAddrs()
		if !ok {
			return boundAddrs{Inbound: "unreadable"}
		}
		return a
	}

	writeAtomic(t, path, off)
	waitFor(t, 15*time.Second, "the inbound listener off in the address file", func() bool { return readAddrs().Inbound == "" })
	waitFor(t, 10*time.Second, "the inbound address to refuse connections", func() bool {
		conn, err := net.DialTimeout("tcp", in, time.Second)
		if err == nil {
			conn.Close()
		}
		return err != nil
	})
	if code, body, _ := get(t, c, "http://"+p.addrs.Outbound+"/o", "svc"); code != 200 || body != "a /o" {
		t.Fatalf("outbound with inbound off: %d %q", code, body)
	}

	writeAtomic(t, path, on)
	var a boundAddrs
	waitFor(t, 15*time.Second, "the inbound listener on again", func() bool { a = readAddrs(); return a.Inbound != "" })
	if code, body, _ := get(t, c, "http://"+a.Inbound+"/i2", ""); code != 200 || body != "app /i2" {
		t.Fatalf("inbound on again: %d %q", code, body)
	}
}

// An address that names the socket already bound, spelled another way, is
// not a move: the reload applies (its other changes with it) and the
// listener serves on, instead of the reload being rejected because the
// listener's own socket holds the port.
func TestReloadKeepsAListenerWhoseAddressIsOnlyRespelled(t *testing.T) {
	if a, err := net.ResolveTCPAddr("tcp", "localhost:1"); err != nil || !a.IP.Equal(net.IPv4(127, 0, 0, 1)) {
		t.Skipf("localhost is not 127.0.0.1 here: %v %v", a, err)
	}
	up := newUpstream(t, "a")
	port := freeAddr(t)[len("127.0.0.1:"):]
	base := withOutbound(t, sidecarConfig(up.addr(), up.addr(), ""), "127.0.0.1:"+port)
	path := writeConfig(t, base)
	p := start(t, "run", "-c", path)
	c := newClient(t)

	respelled := strings.Replace(withOutbound(t, sidecarConfig(up.addr(), up.addr(), ""), "localhost:"+port),
		"drain_timeout: 10s", "drain_timeout: 11s", 1)
	writeAtomic(t, path, respelled)
	var cb configBody
	waitFor(t, 15*time.Second, "the reload to be applied or rejected", func() bool {
		cb = getConfig(t, c, p.addrs.Admin)
		return cb.Generation == 2 || cb.LastReloadError != ""
	})
	if cb.Generation != 2 || cb.LastReloadError != "" {
		t.Fatalf("reload with the outbound address respelled: %+v", cb)
	}
	if code, body, _ := get(t, c, "http://127.0.0.1:"+port+"/x", "svc"); code != 200 || body != "a /x" {
		t.Fatalf("the outbound listener after the reload: %d %q", code, body)
	}
	if s := p.stderr.String(); strings.Contains(s, `"msg":"listener moved"`) {
		t.Fatalf("a respelled address moved the listener:\n%s", s)
	}
}

// A reload that moves both listeners, where the second cannot be bound,
// moves neither and frees what it bound for the first; an address held by
// the sidecar's own other listener (a swap) is refused with an error that
// says so.
func TestReloadMovingBothListenersMovesNeitherWhenOneCannotBind(t *testing.T) {
	_, base, path, p, c := startReloadable(t)

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	free := freeAddr(t)
	writeAtomic(t, path, withInbound(t, withOutbound(t, base, free), busy.Addr().String()))
	var cb configBody
	waitFor(t, 15*time.Second, "the rejected reload in /config", func() bool {
		cb = getConfig(t, c, p.addrs.Admin)
		return cb.LastReloadError != ""
	})
	if cb.Generation != 1 || !strings.Contains(cb.LastReloadError, "listeners.inbound.address") {
		t.Fatalf("after moving inbound to an address in use: %+v", cb)
	}
	ln, err := net.Listen("tcp", free)
	if err != nil {
		t.Fatalf("the outbound address bound for the rejected reload is still held: %v", err)
	}
	ln.Close()

	// The swap: each listener's new address is the other's.
	writeAtomic(t, path, withInbound(t, withOutbound(t, base, p.addrs.Inbound), p.addrs.Outbound))
	waitFor(t, 15*time.Second, "the rejected swap in /config", func() bool {
		cb = getConfig(t, c, p.addrs.Admin)
		return strings.Contains(cb.LastReloadError, p.addrs.Inbound)
	})
	if want := "held by this sidecar's inbound listener"; cb.Generation != 1 || !strings.Contains(cb.LastReloadError, "listeners.outbound.address") ||
		!strings.Contains(cb.LastReloadError, want) {
		t.Fatalf("after swapping the listeners' addresses: %+v, want an error naming listeners.outbound.address and %q", cb, want)
	}
	for _, a := range []struct{ url, host, body string }{{"http://" + p.addrs.Outbound + "/o", "svc", "a /o"}, {"http://" + p.addrs.Inbound + "/i", "", "a /i"}} {
		if code, body, _ := get(t, c, a.url, a.host); code != 200 || body != a.body {
			t.Fatalf("%s after the rejected reloads: %d %q", a.url, code, body)
		}
	}
}

// A listener moved away and straight back, while a request on its first
// address is still draining: the first address is free again (the old
// listener stopped accepting when the first move applied), so the second
// move applies too and the request finishes.
func TestReloadMovesAListenerBackWhileItsOldAddressDrains(t *testing.T) {
	up := newUpstream(t, "a")
	first := freeAddr(t)
	base := sidecarConfig(up.addr(), up.addr(), "")
	path := writeConfig(t, withOutbound(t, base, first))
	p := start(t, "run", "-c", path)
	c := newClient(t)

	res := sendSlow(t, up, first, 3*time.Second)
	readOutbound := func() string {
		a, _ := p.fileAddrs()
		return a.Outbound
	}
	second := freeAddr(t)
	writeAtomic(t, path, withOutbound(t, base, second))
	waitFor(t, 15*time.Second, "the move to the second address", func() bool { return readOutbound() == second })
	writeAtomic(t, path, withOutbound(t, base, first))
	var cb configBody
	waitFor(t, 15*time.Second, "the move back to be applied or rejected", func() bool {
		cb = getConfig(t, c, p.addrs.Admin)
		return cb.Generation == 3 || cb.LastReloadError != ""
	})
	if cb.Generation != 3 || cb.LastReloadError != "" || readOutbound() != first {
		t.Fatalf("moving back while the first address drains: %+v, address file %q", cb, readOutbound())
	}
	if code, body, _ := get(t, c, "http://"+first+"/x", "svc"); code != 200 || body != "a /x" {
		t.Fatalf("the first address again: %d %q", code, body)
	}
	if r := <-res; r.err != nil || r.code != 200 || r.body != "a /slow" {
		t.Fatalf("the request in flight on the first address: %+v", r)
	}
}

// The spellings of a wildcard address are one socket for net.Listen("tcp")
// (a dual-stack IPv6 one); a specific address is not the wildcard.
func TestSameSocketTakesEverySpellingOfABoundAddress(t *testing.T) {
	wild, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Skipf("cannot bind a wildcard address here: %v", err)
	}
	defer wild.Close()
	port := strconv.Itoa(wild.Addr().(*net.TCPAddr).Port)
	for _, a := range []string{":" + port, "0.0.0.0:" + port, "[::]:" + port} {
		if !sameSocket(a, wild.Addr()) {
			t.Errorf("%s is not the socket bound at %s", a, wild.Addr())
		}
	}
	lo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lo.Close()
	lport := strconv.Itoa(lo.Addr().(*net.TCPAddr).Port)
	for a, want := range map[string]bool{
		"127.0.0.1:" + lport: true, "[::ffff:127.0.0.1]:" + lport: true,
		"0.0.0.0:" + lport: false, "127.0.0.2:" + lport: false, "127.0.0.1:0": false, "127.0.0.1:" + port: false,
	} {
		if got := sameSocket(a, lo.Addr()); got != want {
			t.Errorf("sameSocket(%s, %s) = %v, want %v", a, lo.Addr(), got, want)
		}
	}
}

// SIGTERM while a moved listener's old address still drains: the shutdown's
// drain_timeout (lowered by a later reload) ends that drain too, instead of
// the process waiting out the longer drain the move was given.
func TestSIGTERMEndsTheDrainOfAMovedListener(t *testing.T) {
	up, base, path, p, c := startReloadable(t)
	old := p.addrs.Outbound

	res := sendSlow(t, up, old, 20*time.Second)
	moved := freeAddr(t)
	next := withOutbound(t, base, moved) // drain_timeout 10s for the move
	writeAtomic(t, path, next)
	waitFor(t, 15*time.Second, "the move", func() bool { return getConfig(t, c, p.addrs.Admin).Generation == 2 })
	writeAtomic(t, path, strings.Replace(next, "drain_timeout: 10s", "drain_timeout: 500ms", 1))
	waitFor(t, 15*time.Second, "the shorter drain_timeout", func() bool { return getConfig(t, c, p.addrs.Admin).Generation == 3 })

	p.signal(syscall.SIGTERM)
	if code := p.wait(6 * time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	select {
	case r := <-res:
		if r.err == nil {
			t.Fatalf("the request on the old address outlived the drain: %+v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the request on the old address is still open after the process exited")
	}
}

// A push subscription delivers to listeners.inbound.app. Without it, run
// refused to start ("eventlog: Options.AppURL is required for push
// subscriptions", no file, line or key) while validate said ok.
func TestValidateAndRunRefuseAPushSubscriptionWithoutTheApp(t *testing.T) {
	path := writeConfig(t, `admin: {address: 127.0.0.1:0}
listeners:
  outbound: {address: 127.0.0.1:0}
  app_api: {address: 127.0.0.1:0}
eventlog:
  data_dir: data
  topics: {orders: {}}
  subscriptions:
    - {topic: orders, group: billing, route: /events}
`)
	want := path + ":9: eventlog.subscriptions[0].route: push subscriptions deliver to the local app: set listeners.inbound.app"
	for _, cmd := range []string{"validate", "run"} {
		code, out, stderr := runCmd(t, cmd, "-c", path)
		if code != 1 || out != "" || !strings.Contains(stderr, want) {
			t.Errorf("%s: exit %d, stdout %q, stderr:\n%s", cmd, code, out, stderr)
		}
	}
}
