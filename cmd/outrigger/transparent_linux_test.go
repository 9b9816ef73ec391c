package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Transparent mode end to end: deploy/outrigger-iptables.sh in a pod's
// network namespace, a real outrigger process in it running as the uid
// the script exempts, and the app's traffic in both directions through
// the redirect, with no change to the app. Two fresh namespaces, joined
// by a veth pair, stand for the pod and another host; both go when the
// test ends. Root with ip, iptables and setpriv only.

// sidecarUID is the uid the sidecar runs as, which the script exempts
// (the Kubernetes manifest's).
const sidecarUID = 1337

// netns is a named network namespace (ip netns).
type netns string

// inNetns runs f on a thread of its own that has joined ns: sockets f
// makes (a dial, a listener) belong to ns, and are used from any
// goroutine afterwards. The thread is not given back to the runtime:
// its goroutine ends locked to it, so it ends with it.
func inNetns(ns netns, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := syscall.Open("/var/run/netns/"+string(ns), syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer syscall.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// listen listens on addr in ns.
func (ns netns) listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := inNetns(ns, func() (err error) { ln, err = net.Listen("tcp", addr); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// client is an HTTP client whose connections start in ns, as a process
// of uid 0 there (not the sidecar's) would open them.
func (ns netns) client() *http.Client {
	dial := func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		err = inNetns(ns, func() error {
			var d net.Dialer
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	return &http.Client{
		Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true},
		Timeout:   10 * time.Second,
	}
}

// sh runs a command and fails the test on error.
func sh(t *testing.T, env []string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// needNetnsPair skips the test unless it can make named namespaces and a
// veth pair, apply iptables rules in one and run a process there under
// another uid.
func needNetnsPair(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	for _, tool := range []string{"ip", "iptables", "setpriv"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s", tool)
		}
	}
	probe := fmt.Sprintf("orprobe%d", rand.IntN(1e6))
	if err := exec.Command("ip", "netns", "add", probe).Run(); err != nil {
		t.Skipf("cannot create a network namespace: %v", err)
	}
	exec.Command("ip", "netns", "del", probe).Run()
}

// headerEcho answers with the request's header as JSON, and with
// who in X-Answered-By.
func headerEcho(who string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Answered-By", who)
		json.NewEncoder(w).Encode(r.Header)
	})
}

func TestTransparentModeRedirectsTheAppsTraffic(t *testing.T) {
	needNetnsPair(t)
	id := rand.IntN(1e6)
	pod, peer := netns(fmt.Sprintf("orpod%d", id)), netns(fmt.Sprintf("orpeer%d", id))
	vpod, vpeer := fmt.Sprintf("orv%d", id), fmt.Sprintf("orw%d", id)
	// A /24 of 10.234/16 for this run; only the two namespaces route it.
	sub := fmt.Sprintf("10.234.%d", 1+rand.IntN(254))
	podIP, peerIP := sub+".2", sub+".1"
	for _, ns := range []netns{pod, peer} {
		sh(t, nil, "ip", "netns", "add", string(ns))
		t.Cleanup(func() { exec.Command("ip", "netns", "del", string(ns)).Run() })
	}
	sh(t, nil, "ip", "link", "add", vpod, "netns", string(pod), "type", "veth", "peer", "name", vpeer, "netns", string(peer))
	for _, side := range []struct {
		ns        netns
		dev, cidr string
	}{{pod, vpod, podIP + "/24"}, {peer, vpeer, peerIP + "/24"}} {
		sh(t, nil, "ip", "-n", string(side.ns), "addr", "add", side.cidr, "dev", side.dev)
		sh(t, nil, "ip", "-n", string(side.ns), "link", "set", side.dev, "up")
		sh(t, nil, "ip", "-n", string(side.ns), "link", "set", "lo", "up")
	}
	sh(t, []string{fmt.Sprintf("OUTRIGGER_UID=%d", sidecarUID), "OUTRIGGER_APP_PORTS=8080"},
		"ip", "netns", "exec", string(pod), "sh", iptablesScript(t))

	// Another host's service, and the app, which listens on loopback in
	// the pod (as the inbound listener's app address says).
	upLn := peer.listen(t, peerIP+":0")
	appLn := pod.listen(t, "127.0.0.1:8080")
	upSrv, appSrv := &http.Server{Handler: headerEcho("catalog")}, &http.Server{Handler: headerEcho("app")}
	go upSrv.Serve(upLn)
	go appSrv.Serve(appLn)
	t.Cleanup(func() { upSrv.Close(); appSrv.Close() })

	// The sidecar: the manifest's listener addresses, a route to the
	// other host's service by name, and marks on both directions.
	dir, err := os.MkdirTemp("", "outrigger-transparent-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for _, p := range []string{dir, filepath.Dir(binPath)} {
		// The sidecar's uid reads its config, writes its address file
		// and runs the binary.
		if err := os.Chmod(p, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(dir, "outrigger.yaml")
	writeAtomic(t, cfg, fmt.Sprintf(`node: {service: shop}
admin: {address: 0.0.0.0:15000}
listeners:
  outbound: {address: 127.0.0.1:15001}
  inbound: {address: 0.0.0.0:15006, app: 127.0.0.1:8080}
clusters:
  catalog:
    endpoints: [%s]
routes:
  - name: catalog
    match: {authority: [catalog]}
    cluster: catalog
    request_headers: {add: {x-via: outrigger-outbound}}
  - name: inbound|default
    listener: inbound
    cluster: inbound|app
    timeout_disabled: true
    request_headers: {add: {x-via: outrigger-inbound}}
`, upLn.Addr()))
	if err := os.Chmod(cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	addrFile := filepath.Join(dir, "addrs.json")
	cmd := exec.Command("ip", "netns", "exec", string(pod), "setpriv",
		fmt.Sprintf("--reuid=%d", sidecarUID), fmt.Sprintf("--regid=%d", sidecarUID), "--clear-groups",
		binPath, "run", "-c", cfg, "--addr-file", addrFile)
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("outrigger stderr:\n%s", stderr.String())
		}
	})
	waitFor(t, 30*time.Second, "the sidecar's address file", func() bool {
		_, err := os.Stat(addrFile)
		return err == nil
	}, func() bool {
		select {
		case <-done:
			t.Fatalf("outrigger exited:\n%s", stderr.String())
		default:
		}
		return false
	})

	get := func(c *http.Client, url, host string) (*http.Response, map[string][]string) {
		t.Helper()
		req, _ := http.NewRequest("GET", url, nil)
		req.Host = host
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("GET %s (Host %s): %v", url, host, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var seen map[string][]string
		json.Unmarshal(b, &seen)
		return resp, seen
	}

	// Outbound: the app dials the other host's address itself; the
	// redirect hands the connection to the sidecar, which routes it by
	// Host and makes its own connection (exempt, else it would come back
	// to itself).
	app := pod.client()
	resp, seen := get(app, "http://"+upLn.Addr().String()+"/items", "catalog")
	if resp.StatusCode != 200 || resp.Header.Get("X-Answered-By") != "catalog" {
		t.Fatalf("outbound call: %s answered by %q", resp.Status, resp.Header.Get("X-Answered-By"))
	}
	if v := seen["X-Via"]; len(v) != 1 || v[0] != "outrigger-outbound" {
		t.Fatalf("outbound call reached the service without the sidecar: header %v", seen)
	}
	// A name the sidecar has no route for is answered by the sidecar,
	// though the app dialled the service's address.
	resp, _ = get(app, "http://"+upLn.Addr().String()+"/items", "unknown")
	if resp.StatusCode != http.StatusNotFound || resp.Header.Get("X-Outrigger-Error") != "no_route" {
		t.Fatalf("outbound call without a route: %s %q, want 404 no_route", resp.Status, resp.Header.Get("X-Outrigger-Error"))
	}

	// Inbound: another host calls the pod's address on the app's port;
	// the redirect hands it to the inbound listener, which forwards to
	// the app on loopback.
	other := peer.client()
	resp, seen = get(other, "http://"+podIP+":8080/orders", "shop")
	if resp.StatusCode != 200 || resp.Header.Get("X-Answered-By") != "app" {
		t.Fatalf("inbound call: %s answered by %q", resp.Status, resp.Header.Get("X-Answered-By"))
	}
	if v := seen["X-Via"]; len(v) != 1 || v[0] != "outrigger-inbound" {
		t.Fatalf("inbound call reached the app without the sidecar: header %v", seen)
	}
	// The sidecar's own ports are not captured: a probe of /ready on
	// the pod's address reaches the admin listener.
	resp, _ = get(other, "http://"+podIP+":15000/ready", podIP)
	if resp.StatusCode != 200 {
		t.Fatalf("/ready on the pod address: %s", resp.Status)
	}
}
