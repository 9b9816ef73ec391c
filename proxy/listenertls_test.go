package proxy

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// listenerPKI is a CA, the inbound listener's certificate and key
// files, and the CA as a client_ca_file.
type listenerPKI struct {
	ca                        *testCert
	dir                       string
	certFile, keyFile, caFile string
}

func newListenerPKI(t testing.TB) *listenerPKI {
	t.Helper()
	ca := newCA(t, "mesh CA")
	srv := serverCert(t, ca, "callee.test")
	dir := t.TempDir()
	return &listenerPKI{ca: ca, dir: dir,
		certFile: writeFile(t, dir, "tls.crt", srv.certPEM),
		keyFile:  writeFile(t, dir, "tls.key", srv.keyPEM),
		caFile:   writeFile(t, dir, "ca.crt", ca.certPEM)}
}

// clientCert makes a client certificate signed by ca with the SPIFFE id
// spiffe as its URI SAN.
func clientCert(t testing.TB, ca *testCert, spiffe string) *testCert {
	t.Helper()
	u, err := url.Parse(spiffe)
	if err != nil {
		t.Fatal(err)
	}
	return newCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "caller", Organization: []string{"Mesh, Inc."}},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs: []*url.URL{u}}, ca)
}

// tlsClient is an HTTPS client trusting ca, presenting cert when not
// nil, speaking HTTP/2 (ALPN h2) when h2, else HTTP/1.1 (no ALPN).
func tlsClient(t testing.TB, ca *testCert, cert *testCert, h2 bool) *http.Client {
	t.Helper()
	tc := &tls.Config{RootCAs: x509.NewCertPool(), ServerName: "callee.test"}
	tc.RootCAs.AddCert(ca.cert)
	if cert != nil {
		// Sent whatever CAs the listener names: Certificates would be
		// left out for a certificate of another CA.
		c := cert.tlsCert(t)
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &c, nil }
	}
	tr := &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: h2, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// seenHeaders is an app that records the x-forwarded-client-cert and
// X-Forwarded-Proto of the last request it served.
type seenHeaders struct {
	mu          sync.Mutex
	xfcc, proto []string
}

func (s *seenHeaders) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.xfcc, s.proto = r.Header.Values("X-Forwarded-Client-Cert"), r.Header.Values("X-Forwarded-Proto")
	s.mu.Unlock()
	io.WriteString(w, "ok")
}

func (s *seenHeaders) last() (xfcc, proto []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.xfcc, s.proto
}

func inboundTLSConfig(app string, tl config.ListenerTLS) *config.Config {
	return &config.Config{Listeners: config.Listeners{Inbound: config.InboundListener{App: app, TLS: tl}}}
}

// The inbound listener with tls terminates it and serves HTTP/1.1 to a
// client that offers no ALPN and HTTP/2 to one that offers h2; the app
// sees X-Forwarded-Proto https and no x-forwarded-client-cert, not even
// the one the client sent. On the plain outbound listener a client's
// x-forwarded-client-cert is removed too.
func TestInboundTLSServesHTTP1AndHTTP2ByALPN(t *testing.T) {
	pki := newListenerPKI(t)
	app := &seenHeaders{}
	up := upstream(t, false, app.ServeHTTP)
	cfg := inboundTLSConfig(addr(up), config.ListenerTLS{Enabled: true, CertFile: pki.certFile, KeyFile: pki.keyFile})
	cfg.Clusters = map[string]config.Cluster{"svc": {Endpoints: eps(addr(up))}}
	cfg.Routes = []config.Route{{Name: "all", Cluster: "svc"}}
	h := startProxy(t, cfg)

	for _, tc := range []struct {
		name  string
		h2    bool
		proto string
	}{{"http1", false, "HTTP/1.1"}, {"h2", true, "HTTP/2.0"}} {
		t.Run(tc.name, func(t *testing.T) {
			c := tlsClient(t, pki.ca, nil, tc.h2)
			resp := mustGet(t, c, "https://"+h.in+"/", "X-Forwarded-Client-Cert", "Hash=forged;URI=spiffe://cluster.local/ns/x/sa/admin")
			if b := readAll(t, resp); resp.StatusCode != 200 || b != "ok" {
				t.Fatalf("got %d %q, want 200 ok", resp.StatusCode, b)
			}
			if resp.Proto != tc.proto || resp.TLS == nil {
				t.Fatalf("served over %s (TLS %v), want %s over TLS", resp.Proto, resp.TLS != nil, tc.proto)
			}
			xfcc, proto := app.last()
			if len(xfcc) != 0 || len(proto) != 1 || proto[0] != "https" {
				t.Fatalf("app saw x-forwarded-client-cert %q and X-Forwarded-Proto %q, want none and https", xfcc, proto)
			}
		})
	}

	resp := mustGet(t, h.h1, h.url("/"), "X-Forwarded-Client-Cert", "Hash=forged")
	readAll(t, resp)
	if xfcc, proto := app.last(); len(xfcc) != 0 || len(proto) != 1 || proto[0] != "http" {
		t.Fatalf("through the plain listener the app saw x-forwarded-client-cert %q and X-Forwarded-Proto %q, want none and http", xfcc, proto)
	}
	// A plain request to the TLS listener is no handshake.
	c, err := net.Dial("tcp", h.in)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	io.Copy(io.Discard, c)
	eventually(t, 5*time.Second, "a protocol failure counted", func() bool {
		return counterValue(h.p.m.downTLSFailed[Inbound][handshakeProtocol]) == 1
	})
}

// With require_client_cert, a client without a certificate and one whose
// certificate another CA signed fail the handshake, each counted by its
// reason; a client with a certificate of the listener's client CA is
// served, and the app sees the certificate's hash and URI SAN in
// x-forwarded-client-cert in place of the one the client sent. Without
// require_client_cert a client without a certificate is served, and its
// x-forwarded-client-cert removed.
func TestInboundMutualTLS(t *testing.T) {
	pki := newListenerPKI(t)
	app := &seenHeaders{}
	up := upstream(t, false, app.ServeHTTP)
	tl := config.ListenerTLS{Enabled: true, CertFile: pki.certFile, KeyFile: pki.keyFile, ClientCAFile: pki.caFile, RequireClientCert: true}
	h := startProxy(t, inboundTLSConfig(addr(up), tl))
	fails := func(r handshakeReason) float64 { return counterValue(h.p.m.downTLSFailed[Inbound][r]) }

	for _, h2 := range []bool{false, true} {
		if _, err := tlsClient(t, pki.ca, nil, h2).Get("https://" + h.in + "/"); err == nil {
			t.Fatalf("h2 %v: a client without a certificate was served", h2)
		}
	}
	eventually(t, 5*time.Second, "no_client_cert counted twice", func() bool { return fails(handshakeNoClientCert) == 2 })

	stranger := clientCert(t, newCA(t, "other CA"), "spiffe://cluster.local/ns/x/sa/stranger")
	if _, err := tlsClient(t, pki.ca, stranger, false).Get("https://" + h.in + "/"); err == nil {
		t.Fatal("a client certificate of another CA was accepted")
	}
	eventually(t, 5*time.Second, "bad_client_cert counted", func() bool { return fails(handshakeBadClientCert) == 1 })

	const id = "spiffe://cluster.local/ns/shop/sa/caller"
	caller := clientCert(t, pki.ca, id)
	sum := sha256.Sum256(caller.cert.Raw)
	want := "Hash=" + hex.EncodeToString(sum[:]) + `;Subject="CN=caller,O=Mesh\, Inc.";URI=` + id
	for _, h2 := range []bool{false, true} {
		resp := mustGet(t, tlsClient(t, pki.ca, caller, h2), "https://"+h.in+"/", "X-Forwarded-Client-Cert", "Hash=forged;URI=spiffe://cluster.local/ns/x/sa/admin")
		if b := readAll(t, resp); resp.StatusCode != 200 || b != "ok" {
			t.Fatalf("h2 %v: got %d %q, want 200 ok", h2, resp.StatusCode, b)
		}
		if xfcc, _ := app.last(); len(xfcc) != 1 || xfcc[0] != want {
			t.Fatalf("h2 %v: app saw x-forwarded-client-cert %q, want %q", h2, xfcc, want)
		}
	}

	tl.RequireClientCert = false
	if err := h.p.Apply(inboundTLSConfig(addr(up), tl)); err != nil {
		t.Fatal(err)
	}
	resp := mustGet(t, tlsClient(t, pki.ca, nil, false), "https://"+h.in+"/", "X-Forwarded-Client-Cert", "Hash=forged")
	if b := readAll(t, resp); resp.StatusCode != 200 || b != "ok" {
		t.Fatalf("optional client certificate: got %d %q, want 200 ok", resp.StatusCode, b)
	}
	if xfcc, _ := app.last(); len(xfcc) != 0 {
		t.Fatalf("a client without a certificate passed x-forwarded-client-cert %q on", xfcc)
	}
}

// x-forwarded-client-cert is written as Envoy writes it, for client
// certificates whose subjects have the characters its syntax uses: the
// subject, always quoted, is the RFC 2253 string, whose own escapes
// (a backslash before each of , ; " + < > \) are the only ones, so a
// " in it is escaped once; URI= is there, empty, for a certificate
// without a URI SAN, once for each of several; each DNS SAN is its own
// DNS=. A URI with such characters is quoted as the format asks.
func TestInboundXFCCMatchesEnvoy(t *testing.T) {
	pki := newListenerPKI(t)
	app := &seenHeaders{}
	up := upstream(t, false, app.ServeHTTP)
	h := startProxy(t, inboundTLSConfig(addr(up), config.ListenerTLS{Enabled: true, CertFile: pki.certFile, KeyFile: pki.keyFile,
		ClientCAFile: pki.caFile, RequireClientCert: true}))
	uris := func(ss ...string) []*url.URL {
		var us []*url.URL
		for _, s := range ss {
			u, err := url.Parse(s)
			if err != nil {
				t.Fatal(err)
			}
			us = append(us, u)
		}
		return us
	}
	for _, tc := range []struct {
		name    string
		subject pkix.Name
		uris    []*url.URL
		dns     []string
		want    string // after "Hash=<hex>;"
	}{
		{"quote", pkix.Name{CommonName: `say "hi"`, Organization: []string{`Acme "Labs"`}}, nil, nil,
			`Subject="CN=say \"hi\",O=Acme \"Labs\"";URI=`},
		{"comma semicolon equals", pkix.Name{CommonName: "a=b;c", Organization: []string{"Mesh, Inc."}, OrganizationalUnit: []string{"x=y"}},
			uris("spiffe://cluster.local/ns/shop/sa/caller"), nil,
			`Subject="CN=a=b\;c,OU=x=y,O=Mesh\, Inc.";URI=spiffe://cluster.local/ns/shop/sa/caller`},
		{"dns only", pkix.Name{CommonName: "caller"}, nil, []string{"caller.shop.svc", "caller"},
			`Subject="CN=caller";URI=;DNS=caller.shop.svc;DNS=caller`},
		{"two uris", pkix.Name{CommonName: "caller"}, uris("spiffe://cluster.local/ns/a/sa/b", "https://caller.test/id"), []string{"caller.test"},
			`Subject="CN=caller";URI=spiffe://cluster.local/ns/a/sa/b;URI=https://caller.test/id;DNS=caller.test`},
		// Envoy writes a URI raw; the format asks for quotes.
		{"uri with semicolon", pkix.Name{CommonName: "caller"}, uris(`https://caller.test/id;v=1`), nil,
			`Subject="CN=caller";URI="https://caller.test/id;v=1"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert := newCert(t, &x509.Certificate{Subject: tc.subject, URIs: tc.uris, DNSNames: tc.dns,
				KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, pki.ca)
			sum := sha256.Sum256(cert.cert.Raw)
			want := "Hash=" + hex.EncodeToString(sum[:]) + ";" + tc.want
			resp := mustGet(t, tlsClient(t, pki.ca, cert, false), "https://"+h.in+"/")
			if b := readAll(t, resp); resp.StatusCode != 200 || b != "ok" {
				t.Fatalf("got %d %q, want 200 ok", resp.StatusCode, b)
			}
			if xfcc, _ := app.last(); len(xfcc) != 1 || xfcc[0] != want {
				t.Fatalf("app saw x-forwarded-client-cert %q,\nwant %q", xfcc, want)
			}
		})
	}
}

// gRPC over TLS to the inbound listener, with grpc-go's TLS credentials
// and a client certificate.
func TestInboundMutualTLSGRPC(t *testing.T) {
	pki := newListenerPKI(t)
	cfg := inboundTLSConfig(startGRPCServer(t, &testService{}),
		config.ListenerTLS{Enabled: true, CertFile: pki.certFile, KeyFile: pki.keyFile, ClientCAFile: pki.caFile, RequireClientCert: true})
	cfg.Listeners.Inbound.AppProtocol = config.ProtocolGRPC
	h := startProxy(t, cfg)
	roots := x509.NewCertPool()
	roots.AddCert(pki.ca.cert)
	creds := credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: "callee.test",
		Certificates: []tls.Certificate{clientCert(t, pki.ca, "spiffe://cluster.local/ns/a/sa/b").tlsCert(t)}})
	cc, err := grpc.NewClient("passthrough:///"+h.in, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	var hdr metadata.MD
	ctx := metadata.AppendToOutgoingContext(ctxT(t, 5*time.Second), "x-echo", "v1")
	if _, err := testpb.NewTestServiceClient(cc).UnaryCall(ctx, &testpb.SimpleRequest{}, grpc.Header(&hdr)); err != nil {
		t.Fatalf("UnaryCall over mutual TLS: %v", err)
	}
	if v := hdr.Get("x-echo-header"); len(v) != 1 || v[0] != "v1" {
		t.Fatalf("the app's response header came back as %v", hdr)
	}
}

// A certificate rewritten in place and applied again (as the sidecar
// does when the files change) is what new handshakes get, while a
// connection open before goes on serving with the old one.
func TestInboundTLSCertificateRotation(t *testing.T) {
	pki := newListenerPKI(t)
	app := &seenHeaders{}
	up := upstream(t, false, app.ServeHTTP)
	cfg := inboundTLSConfig(addr(up), config.ListenerTLS{Enabled: true, CertFile: pki.certFile, KeyFile: pki.keyFile})
	h := startProxy(t, cfg)
	peer := func(c *http.Client, when string) *x509.Certificate {
		t.Helper()
		resp := mustGet(t, c, "https://"+h.in+"/")
		if b := readAll(t, resp); resp.StatusCode != 200 || b != "ok" {
			t.Fatalf("%s: got %d %q, want 200 ok", when, resp.StatusCode, b)
		}
		return resp.TLS.PeerCertificates[0]
	}
	old := tlsClient(t, pki.ca, nil, false)
	first := peer(old, "before the rotation")

	next := serverCert(t, pki.ca, "callee.test")
	writeFile(t, pki.dir, "tls.crt", next.certPEM)
	writeFile(t, pki.dir, "tls.key", next.keyPEM)
	if err := h.p.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if got := peer(tlsClient(t, pki.ca, nil, true), "a new connection"); !got.Equal(next.cert) {
		t.Fatalf("a new connection got certificate %v, want the rotated %v", got.SerialNumber, next.cert.SerialNumber)
	}
	if got := peer(old, "the connection open before"); !got.Equal(first) {
		t.Fatal("the connection open before the rotation was replaced by a new one")
	}
}

// A client that connects and sends no ClientHello is disconnected once
// handshake_timeout passes, and counted; meanwhile the listener goes on
// serving others (the handshake is not the accept loop's).
func TestInboundTLSHandshakeTimeout(t *testing.T) {
	pki := newListenerPKI(t)
	up := upstream(t, false, (&seenHeaders{}).ServeHTTP)
	// handshake_timeout bounds the other client's handshake too, which
	// must end within it on a loaded machine.
	const hsTimeout = time.Second
	h := startProxy(t, inboundTLSConfig(addr(up),
		config.ListenerTLS{Enabled: true, CertFile: pki.certFile, KeyFile: pki.keyFile, HandshakeTimeout: hsTimeout}))
	silent, err := net.Dial("tcp", h.in)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	start := time.Now()

	resp := mustGet(t, tlsClient(t, pki.ca, nil, false), "https://"+h.in+"/")
	if b := readAll(t, resp); resp.StatusCode != 200 || b != "ok" {
		t.Fatalf("another client beside the silent one: got %d %q", resp.StatusCode, b)
	}

	_ = silent.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := silent.Read(make([]byte, 1))
	if n != 0 || err == nil || strings.Contains(err.Error(), "timeout") {
		t.Fatalf("the silent client read %d, %v; want the connection closed", n, err)
	}
	if d := time.Since(start); d < hsTimeout-50*time.Millisecond {
		t.Fatalf("closed after %v, before handshake_timeout", d)
	}
	eventually(t, 5*time.Second, "the timeout counted", func() bool {
		return counterValue(h.p.m.downTLSFailed[Inbound][handshakeTimeout]) == 1
	})
}

// A handshake that the proxy's own shutdown cuts is no failure of the
// client's: it is not counted under any reason, as Envoy counts a
// handshake failure only when the handshake itself fails.
func TestInboundTLSHandshakeCutByShutdownNotCounted(t *testing.T) {
	pki := newListenerPKI(t)
	up := upstream(t, false, (&seenHeaders{}).ServeHTTP)
	p := New(Options{})
	if err := p.Apply(inboundTLSConfig(addr(up), config.ListenerTLS{Enabled: true, CertFile: pki.certFile, KeyFile: pki.keyFile})); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- p.Serve(ln, Inbound) }()
	// Clients whose ClientHello has not come yet: the handshakes wait
	// for it (handshake_timeout is 10 s). The second one is counted
	// open only once the accept loop has handed the first to the server
	// (which Shutdown then waits for), not merely counted it.
	for range 2 {
		silent, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer silent.Close()
	}
	open := func() float64 { return counterValue(p.m.downConns.WithLabelValues(Inbound.String())) }
	eventually(t, 5*time.Second, "the connections accepted", func() bool { return open() == 2 })

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := p.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v, want the deadline (a new connection is given 5 s)", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
	// The connection's goroutine reports a failed handshake before it
	// gives the connection back.
	eventually(t, 5*time.Second, "the connections closed", func() bool { return open() == 0 })
	for r := range numHandshakeReasons {
		if n := counterValue(p.m.downTLSFailed[Inbound][r]); n != 0 {
			t.Fatalf("the handshake cut by Shutdown was counted as %s", r)
		}
	}
}

// A listener's files are read at Apply: one missing fails it naming its
// key, and the configuration serving goes on.
func TestListenerTLSFileErrorFailsApply(t *testing.T) {
	pki := newListenerPKI(t)
	up := upstream(t, false, (&seenHeaders{}).ServeHTTP)
	h := startProxy(t, inboundTLSConfig(addr(up), config.ListenerTLS{Enabled: true, CertFile: pki.certFile, KeyFile: pki.keyFile}))
	err := h.p.Apply(inboundTLSConfig(addr(up), config.ListenerTLS{Enabled: true, CertFile: pki.certFile, KeyFile: pki.keyFile,
		ClientCAFile: pki.dir + "/missing.crt"}))
	if err == nil || !strings.HasPrefix(err.Error(), "listeners.inbound.tls: ") || !strings.Contains(err.Error(), "missing.crt") {
		t.Fatalf("Apply with a missing client_ca_file: %v", err)
	}
	resp := mustGet(t, tlsClient(t, pki.ca, nil, false), "https://"+h.in+"/")
	if b := readAll(t, resp); resp.StatusCode != 200 || b != "ok" {
		t.Fatalf("after the failed Apply: got %d %q", resp.StatusCode, b)
	}
}

// A client that offers no ALPN protocol and opens with the HTTP/2
// connection preface is served HTTP/2, as Envoy infers the codec from
// the first bytes when ALPN chose none; one that offers none and sends
// an HTTP/1.1 request gets HTTP/1.1 (TestInboundTLSServesHTTP1AndHTTP2ByALPN).
func TestInboundTLSPriorKnowledgeHTTP2WithoutALPN(t *testing.T) {
	pki := newListenerPKI(t)
	up := upstream(t, false, (&seenHeaders{}).ServeHTTP)
	h := startProxy(t, inboundTLSConfig(addr(up), config.ListenerTLS{Enabled: true, CertFile: pki.certFile, KeyFile: pki.keyFile}))
	roots := x509.NewCertPool()
	roots.AddCert(pki.ca.cert)
	c, err := tls.Dial("tcp", h.in, &tls.Config{RootCAs: roots, ServerName: "callee.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if p := c.ConnectionState().NegotiatedProtocol; p != "" {
		t.Fatalf("ALPN chose %q for a client that offered none", p)
	}
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	f, err := fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := f.(*http2.SettingsFrame); !ok {
		t.Fatalf("the listener answered the preface with %v, want SETTINGS", f)
	}
}

// A client for which ALPN chose http/1.1 speaks HTTP/1.1 on that
// connection, whatever it sends: the HTTP/2 connection preface is then a
// malformed HTTP/1.1 request (version 2.0), answered 505 over HTTP/1.1
// as the HTTP/1.1 server answers it, never HTTP/2 (Envoy infers the
// protocol from the first bytes only when ALPN chose none).
func TestInboundTLSALPNHTTP1IgnoresHTTP2Preface(t *testing.T) {
	pki := newListenerPKI(t)
	up := upstream(t, false, (&seenHeaders{}).ServeHTTP)
	h := startProxy(t, inboundTLSConfig(addr(up), config.ListenerTLS{Enabled: true, CertFile: pki.certFile, KeyFile: pki.keyFile}))
	roots := x509.NewCertPool()
	roots.AddCert(pki.ca.cert)
	c, err := tls.Dial("tcp", h.in, &tls.Config{RootCAs: roots, ServerName: "callee.test", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if p := c.ConnectionState().NegotiatedProtocol; p != "http/1.1" {
		t.Fatalf("ALPN chose %q, want http/1.1", p)
	}
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	// Taken for HTTP/2, the preface would be answered with SETTINGS.
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no HTTP/1.1 answer to the preface: %v", err)
	}
	readAll(t, resp)
	if resp.ProtoMajor != 1 || resp.StatusCode != http.StatusHTTPVersionNotSupported {
		t.Fatalf("got %s %d, want HTTP/1.1 505", resp.Proto, resp.StatusCode)
	}
}

// The outbound listener verifies a client certificate as the inbound one
// does, but its requests go to other services, which are not told the
// app's certificate: no x-forwarded-client-cert, neither the client's
// nor one of the listener's making (as Envoy's sidecar outbound).
func TestOutboundMutualTLSNamesNoClientCertificate(t *testing.T) {
	pki := newListenerPKI(t)
	app := &seenHeaders{}
	up := upstream(t, false, app.ServeHTTP)
	cfg := &config.Config{
		Listeners: config.Listeners{Outbound: config.OutboundListener{TLS: config.ListenerTLS{Enabled: true,
			CertFile: pki.certFile, KeyFile: pki.keyFile, ClientCAFile: pki.caFile, RequireClientCert: true}}},
		Clusters: map[string]config.Cluster{"svc": {Endpoints: eps(addr(up))}},
		Routes:   []config.Route{{Name: "all", Cluster: "svc"}},
	}
	h := startProxy(t, cfg)
	caller := clientCert(t, pki.ca, "spiffe://cluster.local/ns/shop/sa/app")
	for _, h2 := range []bool{false, true} {
		resp := mustGet(t, tlsClient(t, pki.ca, caller, h2), "https://"+h.out+"/", "X-Forwarded-Client-Cert", "Hash=forged")
		if b := readAll(t, resp); resp.StatusCode != 200 || b != "ok" {
			t.Fatalf("h2 %v: got %d %q, want 200 ok", h2, resp.StatusCode, b)
		}
		if xfcc, proto := app.last(); len(xfcc) != 0 || len(proto) != 1 || proto[0] != "https" {
			t.Fatalf("h2 %v: the upstream saw x-forwarded-client-cert %q and X-Forwarded-Proto %q, want none and https", h2, xfcc, proto)
		}
	}
}

// rawTLSGet dials addr with tc, sends one HTTP/1.1 GET of / on the TLS
// connection and returns the connection's state and the response's
// status and body.
func rawTLSGet(t testing.TB, addr string, tc *tls.Config) (tls.ConnectionState, int, string) {
	t.Helper()
	c, err := tls.Dial("tcp", addr, tc)
	if err != nil {
		t.Fatalf("handshake with ALPN %q: %v", tc.NextProtos, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: callee.test\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("ALPN %q: %v", tc.NextProtos, err)
	}
	b := readAll(t, resp)
	// Read to the end, so that a session ticket sent after the
	// handshake reaches tc's session cache.
	io.Copy(io.Discard, c)
	return c.ConnectionState(), resp.StatusCode, b
}

// A client whose ALPN offer has nothing in common with the listener's
// (only spdy/3, or only h3) completes the handshake with no protocol
// chosen and is served HTTP/1.1, as Envoy goes on without ALPN then;
// its client certificate is verified and named as any other client's,
// it resumes its TLS session, and a rotated certificate reaches it.
func TestInboundTLSUnknownALPNServedHTTP1(t *testing.T) {
	pki := newListenerPKI(t)
	app := &seenHeaders{}
	up := upstream(t, false, app.ServeHTTP)
	cfg := inboundTLSConfig(addr(up), config.ListenerTLS{Enabled: true, CertFile: pki.certFile, KeyFile: pki.keyFile, ClientCAFile: pki.caFile})
	h := startProxy(t, cfg)
	const id = "spiffe://cluster.local/ns/shop/sa/caller"
	caller := clientCert(t, pki.ca, id)
	sum := sha256.Sum256(caller.cert.Raw)
	wantXFCC := "Hash=" + hex.EncodeToString(sum[:]) + `;Subject="CN=caller,O=Mesh\, Inc.";URI=` + id
	roots := x509.NewCertPool()
	roots.AddCert(pki.ca.cert)
	clientTLS := func(protos ...string) *tls.Config {
		return &tls.Config{RootCAs: roots, ServerName: "callee.test", NextProtos: protos,
			Certificates: []tls.Certificate{caller.tlsCert(t)}, ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	}

	for _, protos := range [][]string{{"spdy/3"}, {"h3"}, {"h3", "spdy/3"}} {
		tc := clientTLS(protos...)
		for i := range 2 {
			st, code, body := rawTLSGet(t, h.in, tc)
			if st.NegotiatedProtocol != "" || code != 200 || body != "ok" {
				t.Fatalf("ALPN %q: negotiated %q, got %d %q; want none, 200 ok", protos, st.NegotiatedProtocol, code, body)
			}
			if xfcc, _ := app.last(); len(xfcc) != 1 || xfcc[0] != wantXFCC {
				t.Fatalf("ALPN %q: app saw x-forwarded-client-cert %q, want %q", protos, xfcc, wantXFCC)
			}
			if i == 1 && !st.DidResume {
				t.Fatalf("ALPN %q: the second connection did not resume the first's session", protos)
			}
		}
	}
	// A client that offers http/1.1 beside an unknown protocol gets it.
	if st, _, _ := rawTLSGet(t, h.in, clientTLS("spdy/3", "http/1.1")); st.NegotiatedProtocol != "http/1.1" {
		t.Fatalf("ALPN spdy/3, http/1.1: negotiated %q, want http/1.1", st.NegotiatedProtocol)
	}
	// The variant without ALPN is made once per applied configuration,
	// not per handshake.
	tc := h.p.snap.Load().limits.tls[Inbound]
	hello := &tls.ClientHelloInfo{SupportedProtos: []string{"spdy/3"}}
	a, _ := tc.GetConfigForClient(hello)
	b, _ := tc.GetConfigForClient(hello)
	if a == nil || a != b || len(a.NextProtos) != 0 {
		t.Fatalf("GetConfigForClient for spdy/3 gave %p and %p (NextProtos %q), want one config without ALPN", a, b, a.NextProtos)
	}

	next := serverCert(t, pki.ca, "callee.test")
	writeFile(t, pki.dir, "tls.crt", next.certPEM)
	writeFile(t, pki.dir, "tls.key", next.keyPEM)
	if err := h.p.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if st, _, _ := rawTLSGet(t, h.in, clientTLS("spdy/3")); !st.PeerCertificates[0].Equal(next.cert) {
		t.Fatal("a client offering spdy/3 was not given the rotated certificate")
	}
}
