package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// patternReader yields n bytes of a repeating pattern without holding them.
type patternReader struct{ left int64 }

func (r *patternReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	for i := range p {
		p[i] = byte(i)
	}
	r.left -= int64(len(p))
	return len(p), nil
}

func heapInuse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

func TestLargeBodiesStreamWithoutBuffering(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 128 MiB")
	}
	const size = 64 << 20
	var peak atomic.Uint64
	base := heapInuse()
	// Live heap only: without a collection first, the garbage the
	// pipes and buffers leave (which GOGC lets grow to the live heap's
	// size) is read as growth, and the figure moves with the machine's
	// load.
	sample := func() {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		for {
			p := peak.Load()
			if m.HeapInuse <= p || peak.CompareAndSwap(p, m.HeapInuse) {
				return
			}
		}
	}
	for _, proto := range []config.Protocol{config.ProtocolHTTP1, config.ProtocolHTTP2} {
		t.Run(string(proto)+"/upload", func(t *testing.T) {
			up := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {
				n, err := io.Copy(io.Discard, r.Body)
				fmt.Fprintf(w, "%d %v", n, err)
			})
			h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up)), Protocol: proto}))
			pr, pw := io.Pipe()
			go func() {
				buf := make([]byte, 256<<10)
				src := &patternReader{left: size}
				for i := 0; ; i++ {
					n, err := src.Read(buf)
					if n > 0 {
						if _, werr := pw.Write(buf[:n]); werr != nil {
							return
						}
					}
					if i%16 == 0 {
						sample()
					}
					if err != nil {
						pw.Close()
						return
					}
				}
			}()
			req, _ := http.NewRequest("PUT", h.url("/"), pr)
			req.ContentLength = -1
			resp, err := h.h1.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if b := readAll(t, resp); b != fmt.Sprintf("%d <nil>", size) {
				t.Fatalf("upstream got %q", b)
			}
		})
		t.Run(string(proto)+"/download", func(t *testing.T) {
			up := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(w, &patternReader{left: size})
			})
			h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up)), Protocol: proto}))
			resp := mustGet(t, h.h1, h.url("/"))
			defer resp.Body.Close()
			buf := make([]byte, 256<<10)
			var n int64
			for i := 0; ; i++ {
				k, err := resp.Body.Read(buf)
				n += int64(k)
				if i%64 == 0 {
					sample()
				}
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if n != size {
				t.Fatalf("downloaded %d", n)
			}
		})
	}
	// Generous bound (race detector, HTTP/2 flow-control windows, pools):
	// far below the 64 MiB a buffering proxy would need.
	if grow := int64(peak.Load()) - int64(base); grow > 24<<20 {
		t.Fatalf("heap grew by %d MiB while streaming 64 MiB bodies", grow>>20)
	}
}

func TestHotApplyUnderLoadLosesNoRequest(t *testing.T) {
	a := upstream(t, false, tagged("a").ServeHTTP)
	b := upstream(t, true, tagged("b").ServeHTTP)
	cfgA := simpleConfig(config.Cluster{Endpoints: eps(addr(a))})
	cfgB := &config.Config{
		Clusters: map[string]config.Cluster{"svc2": {Endpoints: eps(addr(b)), Protocol: config.ProtocolHTTP2}},
		Routes:   []config.Route{{Name: "all", Cluster: "svc2"}},
	}
	loadAcrossReloads(t, startProxy(t, cfgA), cfgB, cfgA)
}

// The same with the route features that keep state across reloads or
// run beside the request: a maglev cluster with a hash policy (its table
// kept or rebuilt), a mirror (copies in flight as their cluster goes) and
// a fault's delay (its active count carried over).
func TestHotApplyWithRouteFeaturesUnderLoadLosesNoRequest(t *testing.T) {
	a := upstream(t, false, tagged("a").ServeHTTP)
	b := upstream(t, true, tagged("b").ServeHTTP)
	c := upstream(t, true, tagged("b").ServeHTTP)
	cfgA := simpleConfig(config.Cluster{Endpoints: eps(addr(a))})
	cfgA.Clusters["shadow"] = config.Cluster{Endpoints: eps(addr(c))}
	cfgA.Routes[0].Mirror = []config.Mirror{{Cluster: "shadow"}}
	cfgB := &config.Config{
		Clusters: map[string]config.Cluster{
			"svc2":   {Endpoints: eps(addr(b), addr(c)), Protocol: config.ProtocolHTTP2, LBPolicy: config.LBMaglev},
			"shadow": {Endpoints: eps(addr(a))},
		},
		Routes: []config.Route{{Name: "all", Cluster: "svc2",
			HashPolicy: []config.HashPolicy{{Header: "x-user"}},
			Mirror:     []config.Mirror{{Cluster: "shadow"}},
			Fault:      &config.Fault{MaxActive: 2, Delay: &config.FaultDelay{Fixed: time.Millisecond, Percent: 50}}}},
	}
	h := startProxy(t, cfgA)
	loadAcrossReloads(t, h, cfgB, cfgA)
	// A copy is counted once the mirror's answer is back, after the
	// client has the primary's.
	eventually(t, 10*time.Second, "a copy sent", func() bool {
		return counterValue(h.p.m.mirrored.WithLabelValues("outbound", "all", "shadow", "sent")) > 0
	})
}

// tagged answers every request with tag, its body read.
func tagged(tag string) *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, tag)
	})
	return m
}

// loadAcrossReloads sends requests through h from four clients (HTTP/1.1
// and h2c, each with its own x-user) while it applies the configurations
// cfgs in turn, 40 times, waiting for a few requests to be answered
// after each; it fails t unless every request was answered 200 "a" or
// "b".
func loadAcrossReloads(t *testing.T, h *harness, cfgs ...*config.Config) {
	t.Helper()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(c *http.Client, user string) {
			defer wg.Done()
			for i := 0; i < 100000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("POST", h.url("/"), strings.NewReader("ping"))
				req.Header.Set("X-User", user)
				resp, err := c.Do(req)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || (string(body) != "a" && string(body) != "b") {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%d %q", resp.StatusCode, body))
					continue
				}
				ok.Add(1)
			}
		}(map[bool]*http.Client{true: h.h1, false: h.h2c}[g%2 == 0], fmt.Sprintf("user-%d", g))
	}
	gen := h.p.Generation()
	for i := 0; i < 40; i++ {
		if err := h.p.Apply(cfgs[i%len(cfgs)]); err != nil {
			t.Fatal(err)
		}
		target := ok.Load() + 5
		eventually(t, 10*time.Second, "requests between reloads", func() bool { return ok.Load() >= target })
	}
	close(stop)
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d requests failed across reloads (first: %v), %d ok", failed.Load(), firstErr.Load(), ok.Load())
	}
	if g := h.p.Generation(); g != gen+40 {
		t.Fatalf("generation %d, want %d", g, gen+40)
	}
}

func TestApplyRejectsBadConfigAndKeepsServing(t *testing.T) {
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(addr(up))}))
	bad := simpleConfig(config.Cluster{Endpoints: eps(addr(up))}, func(r *config.Route) { r.Match.Path.Regex = "(" })
	if err := h.p.Apply(bad); err == nil {
		t.Fatal("bad regex accepted")
	}
	if h.p.Generation() != 1 {
		t.Fatal("generation moved on a rejected config")
	}
	if b := readAll(t, mustGet(t, h.h1, h.url("/"))); b != "ok" {
		t.Fatalf("%q", b)
	}
}

func TestApplyReusesPoolOfUnchangedCluster(t *testing.T) {
	up := upstream(t, false, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })
	cfg := simpleConfig(config.Cluster{Endpoints: eps(addr(up))})
	h := startProxy(t, cfg)
	p1 := h.p.snap.Load().clusters["svc"].pool
	cfg2 := simpleConfig(config.Cluster{Endpoints: eps(addr(up))}, func(r *config.Route) { r.Name = "renamed" })
	if err := h.p.Apply(cfg2); err != nil {
		t.Fatal(err)
	}
	if h.p.snap.Load().clusters["svc"].pool != p1 {
		t.Fatal("unchanged cluster got a new pool")
	}
	cfg3 := simpleConfig(config.Cluster{Endpoints: eps(addr(up)), ConnectTimeout: 3 * time.Second})
	if err := h.p.Apply(cfg3); err != nil {
		t.Fatal(err)
	}
	if h.p.snap.Load().clusters["svc"].pool == p1 || !p1.retired.Load() {
		t.Fatal("changed cluster kept its old pool")
	}
}

func TestShutdownDrainsInFlight(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 2)
	up := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		fmt.Fprint(w, "drained")
	})
	p := New(Options{})
	if err := p.Apply(simpleConfig(config.Cluster{Endpoints: eps(addr(up))})); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- p.Serve(ln, Outbound) }()
	h := &harness{out: ln.Addr().String()}
	h1t := &http.Transport{}
	defer h1t.CloseIdleConnections()
	results := make(chan string, 2)
	get := func(c *http.Client) {
		resp, err := c.Get(h.url("/"))
		if err != nil {
			results <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		results <- string(b)
	}
	h2c := startProxyClientH2C()
	defer h2c.Transport.(interface{ CloseIdleConnections() }).CloseIdleConnections()
	go get(&http.Client{Transport: h1t})
	go get(h2c)
	<-entered
	<-entered
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- p.Shutdown(ctx)
	}()
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
	// New connections are refused while the old requests drain.
	if c, err := net.DialTimeout("tcp", h.out, time.Second); err == nil {
		c.Close()
		t.Fatal("listener still accepting after Shutdown")
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v before in-flight requests finished", err)
	default:
	}
	close(release)
	for i := 0; i < 2; i++ {
		if r := <-results; r != "drained" {
			t.Fatalf("in-flight request got %q", r)
		}
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := p.Serve(ln, Outbound); !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("Serve after Shutdown: %v", err)
	}
}

func TestShutdownDeadlineCutsHungRequests(t *testing.T) {
	up := upstream(t, true, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	p := New(Options{})
	cfg := simpleConfig(config.Cluster{Endpoints: eps(addr(up))}, func(r *config.Route) { r.TimeoutDisabled = true })
	if err := p.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	served := make(chan error, 1)
	go func() { served <- p.Serve(ln, Outbound) }()
	h2c := startProxyClientH2C()
	defer h2c.Transport.(interface{ CloseIdleConnections() }).CloseIdleConnections()
	done := make(chan error, 1)
	go func() {
		resp, err := h2c.Get("http://" + ln.Addr().String() + "/")
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		done <- err
	}()
	eventually(t, 5*time.Second, "request in flight", func() bool { return p.inflight.Load() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := p.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v", err)
	}
	<-served
	<-done
	if p.inflight.Load() != 0 {
		t.Fatal("requests still in flight after forced shutdown")
	}
}

func TestRequestIDsAreUniqueHex(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 10000; i++ {
		id := newRequestID()
		if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" || seen[id] {
			t.Fatalf("bad or repeated id %q", id)
		}
		seen[id] = true
	}
}

// TestServeWrapsEachListenersHandler: Options.Wrap sees every request
// Serve serves, with the listener it came in on.
func TestServeWrapsEachListenersHandler(t *testing.T) {
	var mu sync.Mutex
	seen := map[Listener][]string{}
	wrap := func(l Listener, h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen[l] = append(seen[l], r.URL.Path)
			mu.Unlock()
			h.ServeHTTP(w, r)
		})
	}
	cfg := &config.Config{Routes: []config.Route{{Name: "direct", DirectResponse: &config.DirectResponse{Status: 204}}}}
	h := startProxy(t, cfg, func(o *Options) { o.Wrap = wrap })
	readAll(t, mustGet(t, h.h1, "http://"+h.out+"/out"))
	readAll(t, mustGet(t, h.h2c, "http://"+h.out+"/out-h2"))
	mu.Lock()
	defer mu.Unlock()
	if got := seen[Outbound]; len(got) != 2 || got[0] != "/out" || got[1] != "/out-h2" {
		t.Errorf("outbound requests seen by the wrapper: %v", got)
	}
	if got := seen[Inbound]; len(got) != 0 {
		t.Errorf("inbound requests seen: %v", got)
	}
}
