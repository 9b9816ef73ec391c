package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// testCert is a certificate and key for the upstream TLS tests, with
// their PEM.
type testCert struct {
	cert            *x509.Certificate
	key             *ecdsa.PrivateKey
	certPEM, keyPEM []byte
}

// tlsCert returns a tls.Certificate of c (its chain: c alone).
func (c *testCert) tlsCert(t testing.TB) tls.Certificate {
	t.Helper()
	tc, err := tls.X509KeyPair(c.certPEM, c.keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return tc
}

// newCert makes a certificate from tmpl, valid for the hour around now
// unless tmpl says otherwise, signed by parent (self-signed when nil).
func newCert(t testing.TB, tmpl *x509.Certificate, parent *testCert) *testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	}
	pc, pk := tmpl, key
	if parent != nil {
		pc, pk = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, pc, &key.PublicKey, pk)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return &testCert{cert: cert, key: key,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})}
}

// newCA makes a self-signed CA named name.
func newCA(t testing.TB, name string) *testCert {
	return newCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: name}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, nil)
}

// serverCert makes a server certificate for 127.0.0.1 and the DNS names,
// signed by ca.
func serverCert(t testing.TB, ca *testCert, names ...string) *testCert {
	return newCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "upstream"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: names}, ca)
}

// writeFile writes b to name in dir and returns its path.
func writeFile(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// tlsUpstream starts an HTTPS upstream serving cert that answers "ok".
// It offers the ALPN protocols alpn ("h2" among them serves HTTP/2);
// nil offers http/1.1, empty none (the server ignores the client's).
func tlsUpstream(t testing.TB, cert tls.Certificate, alpn []string) *httptest.Server {
	t.Helper()
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }))
	s.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: alpn}
	s.EnableHTTP2 = slices.Contains(alpn, "h2")
	s.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

// A CA bundle or certificate chain rewritten in place and read half
// written, cut off inside a PEM block, is refused: crypto's parsers stop
// at such a block and keep those before it, so the reload applied a
// bundle missing the CAs after the cut, and the upstreams they vouch for
// failed every handshake until the next read of the files.
func TestPEMFileCutShortInABlockIsRefused(t *testing.T) {
	ca1, ca2 := newCA(t, "first CA"), newCA(t, "second CA")
	up := tlsUpstream(t, serverCert(t, ca2).tlsCert(t), nil)
	dir := t.TempDir()
	bundle := append(append([]byte{}, ca1.certPEM...), ca2.certPEM...)
	caPath := writeFile(t, dir, "ca.pem", bundle)
	c := config.Cluster{Endpoints: eps(strings.TrimPrefix(up.URL, "https://")),
		TLS: config.TLS{Enabled: true, CAFile: caPath}}
	h := startProxy(t, simpleConfig(c))
	get := func(when string) {
		t.Helper()
		resp := mustGet(t, h.h1, h.url("/"))
		if b := readAll(t, resp); resp.StatusCode != 200 || b != "ok" {
			t.Fatalf("%s: %d %q, want 200 ok", when, resp.StatusCode, b)
		}
	}
	get("with the whole bundle")

	writeFile(t, dir, "ca.pem", bundle[:len(ca1.certPEM)+len(ca2.certPEM)/2])
	err := h.p.Apply(simpleConfig(c))
	if err == nil || !strings.Contains(err.Error(), "ca_file "+caPath) {
		t.Fatalf("Apply of a CA bundle cut short: %v, want an error naming ca_file %s", err, caPath)
	}
	get("after the cut bundle was refused")

	// A client certificate's chain (leaf, then intermediate) cut short
	// in the intermediate.
	inter := newCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "intermediate"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, ca1)
	leaf := newCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "client"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, inter)
	chain := append(append([]byte{}, leaf.certPEM...), inter.certPEM...)
	writeFile(t, dir, "ca.pem", bundle)
	cc := c
	cc.TLS.CertFile = writeFile(t, dir, "tls.crt", chain[:len(leaf.certPEM)+len(inter.certPEM)-40])
	cc.TLS.KeyFile = writeFile(t, dir, "tls.key", leaf.keyPEM)
	if err := h.p.Apply(simpleConfig(cc)); err == nil || !strings.Contains(err.Error(), "cert_file "+cc.TLS.CertFile) {
		t.Fatalf("Apply of a certificate chain cut short: %v, want an error naming cert_file %s", err, cc.TLS.CertFile)
	}
	writeFile(t, dir, "tls.crt", chain)
	if err := h.p.Apply(simpleConfig(cc)); err != nil {
		t.Fatalf("Apply of the whole chain: %v", err)
	}
	get("with the whole chain")
}

// A connection whose TLS handshake fails is a connect failure, and the
// reply says why the handshake failed (its text, or a gRPC call's
// grpc-message), so that a certificate that does not verify, has expired
// or names another host, or a server that does not speak the cluster's
// protocol, is told from a refused connection.
func TestTLSHandshakeFailureIsNamedInTheReply(t *testing.T) {
	ca := newCA(t, "upstream CA")
	caPath := writeFile(t, t.TempDir(), "ca.pem", ca.certPEM)
	expired := newCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "expired"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:   time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)}, ca)
	h2 := []string{"h2"}

	for _, tc := range []struct {
		name  string
		up    *httptest.Server
		proto config.Protocol
		tls   config.TLS
		want  string
		// reason is the outrigger_proxy_upstream_connect_failures_total
		// label the failures count under.
		reason string
	}{
		{"self-signed http1", tlsUpstream(t, serverCert(t, newCA(t, "other CA")).tlsCert(t), nil), config.ProtocolHTTP1,
			config.TLS{Enabled: true, CAFile: caPath}, "certificate signed by unknown authority", "tls_untrusted"},
		{"self-signed http2", tlsUpstream(t, serverCert(t, newCA(t, "other CA")).tlsCert(t), h2), config.ProtocolHTTP2,
			config.TLS{Enabled: true, CAFile: caPath}, "certificate signed by unknown authority", "tls_untrusted"},
		{"expired", tlsUpstream(t, expired.tlsCert(t), nil), config.ProtocolHTTP1,
			config.TLS{Enabled: true, CAFile: caPath}, "certificate has expired", "tls_expired"},
		{"other name", tlsUpstream(t, serverCert(t, ca, "a.example").tlsCert(t), h2), config.ProtocolGRPC,
			config.TLS{Enabled: true, CAFile: caPath, ServerName: "b.example"}, "not b.example", "tls_name_mismatch"},
		{"http/1.1 only", tlsUpstream(t, serverCert(t, ca).tlsCert(t), nil), config.ProtocolHTTP2,
			config.TLS{Enabled: true, CAFile: caPath}, "no application protocol", "tls_handshake"},
		{"no ALPN", tlsUpstream(t, serverCert(t, ca).tlsCert(t), []string{}), config.ProtocolHTTP2,
			config.TLS{Enabled: true, CAFile: caPath}, "did not negotiate h2", "tls_handshake"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := config.Cluster{Endpoints: eps(strings.TrimPrefix(tc.up.URL, "https://")), Protocol: tc.proto, TLS: tc.tls}
			h := startProxy(t, simpleConfig(c))
			resp, body := do(t, h.h1, "GET", h.url("/"), nil)
			if resp.StatusCode != 502 || resp.Header.Get(HeaderError) != "upstream_connect_failure" ||
				!strings.HasPrefix(body, "upstream connect failure: TLS handshake: ") || !strings.Contains(body, tc.want) {
				t.Fatalf("got %d %q %q, want 502 upstream_connect_failure and a text naming the TLS handshake and %q",
					resp.StatusCode, resp.Header.Get(HeaderError), body, tc.want)
			}
			req, _ := http.NewRequest("POST", h.url("/pkg.Svc/Call"), nil)
			req.Header.Set("Content-Type", "application/grpc")
			resp, err := h.h2c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			readAll(t, resp)
			if msg := resp.Header.Get("Grpc-Message"); resp.Header.Get("Grpc-Status") != "14" ||
				!strings.Contains(msg, "TLS handshake") || !strings.Contains(msg, tc.want) {
				t.Fatalf("gRPC: grpc-status %q grpc-message %q, want 14 naming the TLS handshake and %q",
					resp.Header.Get("Grpc-Status"), msg, tc.want)
			}
			wantConnectFailures(t, h, tc.reason, 2)
		})
	}

	// A server that accepts the connection and never answers the
	// ClientHello: connect_timeout ends the handshake.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	for _, proto := range []config.Protocol{config.ProtocolHTTP1, config.ProtocolHTTP2} {
		// connect_timeout bounds the TCP connect too: long enough that a
		// connect on a loaded machine is made within it, and the timeout
		// ends the handshake, not the connect.
		h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(silent.Addr().String()), Protocol: proto,
			ConnectTimeout: time.Second, TLS: config.TLS{Enabled: true, CAFile: caPath}}))
		if resp, body := do(t, h.h1, "GET", h.url("/"), nil); resp.StatusCode != 502 || body != "upstream connect failure: TLS handshake: timed out\n" {
			t.Fatalf("%s, silent server: %d %q, want 502 %q", proto, resp.StatusCode, body, "upstream connect failure: TLS handshake: timed out\n")
		}
		wantConnectFailures(t, h, "timeout", 1)
	}

	// A refused connection keeps the catalog's text.
	h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(refusedAddr(t)), TLS: config.TLS{Enabled: true, CAFile: caPath}}))
	if resp, body := do(t, h.h1, "GET", h.url("/"), nil); resp.StatusCode != 502 || body != "upstream connect failure\n" {
		t.Fatalf("refused: %d %q, want 502 %q", resp.StatusCode, body, "upstream connect failure\n")
	}
	wantConnectFailures(t, h, "refused", 1)
}

// wantConnectFailures fails t unless cluster svc's
// outrigger_proxy_upstream_connect_failures_total says n under reason
// and 0 under every other.
func wantConnectFailures(t *testing.T, h *harness, reason string, n float64) {
	t.Helper()
	for r := range connectReason(numConnectReasons) {
		want := 0.0
		if r.String() == reason {
			want = n
		}
		if got := counterValue(h.p.m.connectFail.WithLabelValues("svc", r.String())); got != want {
			t.Errorf("connect failures %q: %v, want %v", r, got, want)
		}
	}
}

// listenOverflows is the kernel's count of connections refused because a
// listener's accept queue was full (TcpExt ListenOverflows).
func listenOverflows(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/net/netstat")
	if err != nil {
		t.Skipf("no /proc/net/netstat: %v", err)
	}
	lines := strings.Split(string(b), "\n")
	for i := 0; i+1 < len(lines); i++ {
		names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) == 0 || names[0] != "TcpExt:" || len(values) != len(names) {
			continue
		}
		for j, n := range names {
			if n == "ListenOverflows" {
				v, err := strconv.ParseInt(values[j], 10, 64)
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
		}
	}
	t.Skip("no TcpExt ListenOverflows in /proc/net/netstat")
	return 0
}

// connect_timeout bounds the TCP connect and the TLS handshake together,
// as Envoy's does ("if TLS is used, the timeout also applies to TLS
// session setup"): each had a connect_timeout of its own, so a
// connection whose SYN had to be sent again (a lost SYN, a full accept
// queue) to a server that then never answered the ClientHello took up
// to twice connect_timeout to fail.
func TestConnectTimeoutBoundsTCPConnectAndTLSHandshakeTogether(t *testing.T) {
	const connectTimeout = 1500 * time.Millisecond
	for _, proto := range []config.Protocol{config.ProtocolHTTP1, config.ProtocolHTTP2} {
		t.Run(string(proto), func(t *testing.T) {
			// A listener whose accept queue holds one connection, held
			// by filler: the proxy's SYN is dropped, and sent again
			// 1 s later (Linux's initial retransmission timeout), once
			// filler was taken. The server never answers a ClientHello.
			fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
				syscall.Close(fd)
				t.Fatal(err)
			}
			if err := syscall.Listen(fd, 0); err != nil {
				syscall.Close(fd)
				t.Fatal(err)
			}
			f := os.NewFile(uintptr(fd), "listener")
			ln, err := net.FileListener(f)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			filler, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer filler.Close()

			h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(ln.Addr().String()), Protocol: proto,
				ConnectTimeout: connectTimeout, TLS: config.TLS{Enabled: true, InsecureSkipVerify: true}}))
			overflows := listenOverflows(t)
			start := time.Now()
			type result struct {
				code int
				body string
				took time.Duration
			}
			done := make(chan result, 1)
			go func() {
				resp, err := h.h1.Get(h.url("/"))
				if err != nil {
					done <- result{body: err.Error()}
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				done <- result{resp.StatusCode, string(b), time.Since(start)}
			}()
			eventually(t, 5*time.Second, "the proxy's SYN to be dropped", func() bool { return listenOverflows(t) > overflows })
			accepted := make(chan time.Duration, 2)
			var held []net.Conn
			defer func() {
				for _, c := range held {
					c.Close()
				}
			}()
			for range 2 { // filler, then the proxy's connection
				c, err := ln.Accept()
				if err != nil {
					t.Fatal(err)
				}
				held = append(held, c)
				accepted <- time.Since(start)
			}
			<-accepted
			if at := <-accepted; at < 500*time.Millisecond {
				t.Skipf("the proxy's connection was accepted after %v: its SYN was not the one dropped", at)
			}
			r := <-done
			if r.code != 502 || r.body != "upstream connect failure: TLS handshake: timed out\n" {
				t.Fatalf("got %d %q, want 502 and a handshake timed out", r.code, r.body)
			}
			if r.took > connectTimeout+500*time.Millisecond {
				t.Fatalf("the connect failure took %v, want about connect_timeout (%v)", r.took, connectTimeout)
			}
		})
	}
}

// A client certificate and key that do not make a pair (a rotation caught
// between its two writes) are refused with an error that names both
// files, so that the log says which pair to look at.
func TestMismatchedCertificateAndKeyAreRefusedNamingTheFiles(t *testing.T) {
	ca := newCA(t, "client CA")
	a, b := serverCert(t, ca), serverCert(t, ca)
	dir := t.TempDir()
	c := config.Cluster{Endpoints: eps("127.0.0.1:1"), TLS: config.TLS{Enabled: true,
		CertFile: writeFile(t, dir, "tls.crt", a.certPEM), KeyFile: writeFile(t, dir, "tls.key", b.keyPEM)}}
	err := New(Options{}).Apply(simpleConfig(c))
	want := "clusters.svc: tls: cert_file " + c.TLS.CertFile + " and key_file " + c.TLS.KeyFile + ": private key does not match public key"
	if err == nil || err.Error() != want {
		t.Fatalf("Apply: %v, want %q", err, want)
	}
}

// tls.min_version and max_version bound the versions the proxy offers,
// for requests and health checks alike: a TLS 1.2-only endpoint is
// refused under min_version 1.3, and max_version 1.2 speaks 1.2 to an
// endpoint that could do 1.3.
func TestTLSVersionBounds(t *testing.T) {
	ca := newCA(t, "versions CA")
	cert := serverCert(t, ca).tlsCert(t)
	caPath := writeFile(t, t.TempDir(), "ca.pem", ca.certPEM)
	only12 := tlsUpstream(t, cert, nil)
	only12.TLS.MaxVersion = tls.VersionTLS12
	var seen atomicVersion
	both := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.store(r.TLS.Version)
		fmt.Fprint(w, "ok")
	}))
	both.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	both.Config.ErrorLog = log.New(io.Discard, "", 0)
	both.StartTLS()
	t.Cleanup(both.Close)

	for _, tc := range []struct {
		name     string
		up       *httptest.Server
		min, max string
		status   int
		version  uint16
	}{
		{"defaults to a 1.2-only endpoint", only12, "", "", 200, 0},
		{"min 1.3 to a 1.2-only endpoint", only12, "1.3", "", 502, 0},
		{"max 1.2 to an endpoint that can do 1.3", both, "", "1.2", 200, tls.VersionTLS12},
		{"defaults to an endpoint that can do 1.3", both, "", "", 200, tls.VersionTLS13},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seen.store(0)
			c := config.Cluster{Endpoints: eps(strings.TrimPrefix(tc.up.URL, "https://")),
				TLS: config.TLS{Enabled: true, CAFile: caPath, MinVersion: tc.min, MaxVersion: tc.max}}
			h := startProxy(t, simpleConfig(c))
			resp := mustGet(t, h.h1, h.url("/"))
			body := readAll(t, resp)
			if resp.StatusCode != tc.status {
				t.Fatalf("%d %q, want %d", resp.StatusCode, body, tc.status)
			}
			if tc.status == 502 && !strings.Contains(body, "TLS handshake") {
				t.Fatalf("refused endpoint: %q, want the handshake named", body)
			}
			if tc.version != 0 && seen.load() != tc.version {
				t.Fatalf("spoke TLS %#x, want %#x", seen.load(), tc.version)
			}
		})
	}
}

type atomicVersion struct{ v atomic.Uint32 }

func (a *atomicVersion) store(v uint16) { a.v.Store(uint32(v)) }
func (a *atomicVersion) load() uint16   { return uint16(a.v.Load()) }

// resumingUpstream starts an HTTPS upstream serving cert (with ALPN h2
// when h2) whose handler counts the requests that came on a resumed TLS
// session and those that came on a full handshake. Each has its own
// session ticket keys, as separate servers do.
func resumingUpstream(t *testing.T, cert tls.Certificate, h2 bool) (s *httptest.Server, resumed, full *atomic.Int64) {
	t.Helper()
	resumed, full = new(atomic.Int64), new(atomic.Int64)
	s = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS.DidResume {
			resumed.Add(1)
		} else {
			full.Add(1)
		}
		fmt.Fprint(w, "ok")
	}))
	s.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	if h2 {
		s.TLS.NextProtos = []string{"h2"}
		s.EnableHTTP2 = true
	}
	s.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.StartTLS()
	t.Cleanup(s.Close)
	return s, resumed, full
}

// A new connection to an endpoint resumes the TLS session of the last
// one (Envoy's default), per endpoint: the two endpoints share a server
// name but not their ticket keys, so a cache keyed by the name alone, as
// crypto/tls's is, would offer each the other's ticket under round robin
// and never resume. disable_session_resumption does a full handshake on
// every connection, and a reload that changes the cluster's TLS settings
// starts again with a full one.
func TestUpstreamTLSSessionsAreResumedPerEndpoint(t *testing.T) {
	ca := newCA(t, "resumption CA")
	cert := serverCert(t, ca, "svc.test").tlsCert(t)
	dir := t.TempDir()
	caPath := writeFile(t, dir, "ca.pem", ca.certPEM)
	caCopy := writeFile(t, dir, "ca-copy.pem", ca.certPEM)
	for _, proto := range []config.Protocol{config.ProtocolHTTP1, config.ProtocolHTTP2} {
		for _, disable := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s disable=%v", proto, disable), func(t *testing.T) {
				a, aResumed, aFull := resumingUpstream(t, cert, proto == config.ProtocolHTTP2)
				b, bResumed, bFull := resumingUpstream(t, cert, proto == config.ProtocolHTTP2)
				c := config.Cluster{
					Endpoints: eps(strings.TrimPrefix(a.URL, "https://"), strings.TrimPrefix(b.URL, "https://")),
					Protocol:  proto,
					LBPolicy:  config.LBRoundRobin,
					TLS: config.TLS{Enabled: true, ServerName: "svc.test", CAFile: caPath,
						DisableSessionResumption: disable},
				}
				// Each request on a connection of its own.
				c.Pool.MaxRequestsPerConnection = 1
				h := startProxy(t, simpleConfig(c))
				get := func(n int) {
					t.Helper()
					for range n {
						resp := mustGet(t, h.h1, h.url("/"))
						if body := readAll(t, resp); resp.StatusCode != 200 {
							t.Fatalf("%d %q", resp.StatusCode, body)
						}
					}
				}
				get(8)
				wantFull, wantResumed := int64(1), int64(3)
				if disable {
					wantFull, wantResumed = 4, 0
				}
				for i, got := range [][2]int64{{aFull.Load(), aResumed.Load()}, {bFull.Load(), bResumed.Load()}} {
					if got != [2]int64{wantFull, wantResumed} {
						t.Fatalf("endpoint %d: %d full handshakes and %d resumed, want %d and %d",
							i, got[0], got[1], wantFull, wantResumed)
					}
				}
				if disable {
					return
				}
				// The same CAs from another file: a new pool, whose first
				// connections resume nothing.
				c.TLS.CAFile = caCopy
				if err := h.p.Apply(simpleConfig(c)); err != nil {
					t.Fatal(err)
				}
				get(4)
				if aFull.Load() != 2 || bFull.Load() != 2 || aResumed.Load() != 4 || bResumed.Load() != 4 {
					t.Fatalf("after the reload: full %d+%d resumed %d+%d, want 2+2 and 4+4",
						aFull.Load(), bFull.Load(), aResumed.Load(), bResumed.Load())
				}
			})
		}
	}
}

// BenchmarkUpstreamTLSConnection measures a request that needs a new
// TLS connection to its endpoint (max_requests_per_connection: 1), with
// the last session resumed (the default) and with a full handshake each
// time (disable_session_resumption). Time and allocations count the
// whole process: client, proxy and upstream, both sides of the
// handshake.
func BenchmarkUpstreamTLSConnection(b *testing.B) {
	ca := newCA(b, "bench CA")
	cert := serverCert(b, ca, "svc.test").tlsCert(b)
	caPath := writeFile(b, b.TempDir(), "ca.pem", ca.certPEM)
	up := tlsUpstream(b, cert, nil)
	for _, tc := range []struct {
		name    string
		disable bool
	}{{"resumed", false}, {"full", true}} {
		c := config.Cluster{Endpoints: eps(strings.TrimPrefix(up.URL, "https://")),
			TLS: config.TLS{Enabled: true, ServerName: "svc.test", CAFile: caPath, DisableSessionResumption: tc.disable}}
		c.Pool.MaxRequestsPerConnection = 1
		h := startProxy(b, simpleConfig(c))
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				resp, err := h.h1.Get(h.url("/"))
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
	}
}

// An upstream that demands a client certificate the cluster does not
// have refuses the handshake. Under TLS 1.2 the client's handshake fails
// with the server's alert; under TLS 1.3 it ends before the server has
// checked the client's certificate, and the alert comes with the first
// read (RFC 8446 §4.4.2.4): after the request was sent over HTTP/1.1, in
// place of the SETTINGS over HTTP/2. Both are a connect failure, a
// tls_handshake one, named in the reply, and a POST, which the upstream
// never saw, is retried as after any connect failure: under TLS 1.3 it
// was a reset of a request sent (HTTP/1.1), not retried, and a
// "protocol" failure (HTTP/2).
func TestUpstreamRefusingTheClientCertificateIsATLSConnectFailure(t *testing.T) {
	ca := newCA(t, "upstream CA")
	caPath := writeFile(t, t.TempDir(), "ca.pem", ca.certPEM)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.certPEM)
	for _, ver := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		for _, proto := range []config.Protocol{config.ProtocolHTTP1, config.ProtocolHTTP2} {
			t.Run(fmt.Sprintf("%s/%s", tls.VersionName(ver), proto), func(t *testing.T) {
				var seen atomic.Int64
				s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					seen.Add(1)
				}))
				alpn := []string{"http/1.1"}
				if proto == config.ProtocolHTTP2 {
					alpn = []string{"h2"}
				}
				s.TLS = &tls.Config{Certificates: []tls.Certificate{serverCert(t, ca).tlsCert(t)}, NextProtos: alpn,
					ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool, MaxVersion: ver}
				s.EnableHTTP2 = proto == config.ProtocolHTTP2
				s.Config.ErrorLog = log.New(io.Discard, "", 0)
				s.StartTLS()
				defer s.Close()
				c := config.Cluster{Endpoints: eps(strings.TrimPrefix(s.URL, "https://")), Protocol: proto,
					TLS: config.TLS{Enabled: true, CAFile: caPath}}
				h := startProxy(t, simpleConfig(c, func(r *config.Route) {
					r.Retry = &config.RetryPolicy{Attempts: 1, RetryOn: []config.RetryCondition{config.RetryOnConnectFailure}}
				}))
				resp, body := do(t, h.h1, "POST", h.url("/"), []byte("order"))
				if resp.StatusCode != 502 || resp.Header.Get(HeaderError) != "upstream_connect_failure" ||
					!strings.HasPrefix(body, "upstream connect failure: TLS handshake: remote error: ") {
					t.Fatalf("got %d %q %q, want 502 upstream_connect_failure naming the server's alert",
						resp.StatusCode, resp.Header.Get(HeaderError), body)
				}
				if n := seen.Load(); n != 0 {
					t.Fatalf("the upstream served %d requests", n)
				}
				wantConnectFailures(t, h, "tls_handshake", 2)
			})
		}
	}
}
