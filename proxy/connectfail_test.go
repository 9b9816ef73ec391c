package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/config"
	"github.com/outrigger-mesh/outrigger/proxy/h1client"
)

// handshakeErr is the error of a TLS handshake, trusting ca, with a
// server on 127.0.0.1 presenting chain (leaf first) for serverName.
func handshakeErr(t *testing.T, ca *testCert, serverName string, chain ...*testCert) error {
	t.Helper()
	cert := tls.Certificate{PrivateKey: chain[0].key}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.cert.Raw)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		_ = c.(*tls.Conn).Handshake()
		c.Close()
	}()
	defer func() { <-done }()
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	d := tls.Dialer{Config: &tls.Config{RootCAs: roots, ServerName: serverName}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	if err == nil {
		c.Close()
		t.Fatal("the handshake succeeded")
	}
	return err
}

// Each TLS verification failure counts under its own reason, however
// deep the transport wrapped it: HTTP/1.1's HandshakeError, the h2 TLS
// dial's connectError, and the wrapping of the layers above them.
func TestConnectFailureClassifiesTLSVerification(t *testing.T) {
	ca := newCA(t, "classify CA")
	other := newCA(t, "other CA")
	leaf := func(parent *testCert, notBefore, notAfter time.Time) *testCert {
		return newCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "upstream"},
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"svc.test"},
			NotBefore: notBefore, NotAfter: notAfter}, parent)
	}
	now := time.Now()
	expiredInter := newCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "expired intermediate"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-24 * time.Hour)}, ca)
	for _, tc := range []struct {
		name string
		err  error
		want connectReason
	}{
		{"untrusted", handshakeErr(t, ca, "svc.test", serverCert(t, other, "svc.test")), connectTLSUntrusted},
		{"expired", handshakeErr(t, ca, "svc.test", leaf(ca, now.Add(-48*time.Hour), now.Add(-24*time.Hour))), connectTLSExpired},
		{"not yet valid", handshakeErr(t, ca, "svc.test", leaf(ca, now.Add(24*time.Hour), now.Add(48*time.Hour))), connectTLSExpired},
		{"expired intermediate", handshakeErr(t, ca, "svc.test", leaf(expiredInter, now.Add(-time.Hour), now.Add(time.Hour)), expiredInter), connectTLSExpired},
		{"other name", handshakeErr(t, ca, "b.test", serverCert(t, ca, "svc.test")), connectTLSNameMismatch},
	} {
		for _, wrap := range []struct {
			name string
			f    func(error) error
		}{
			{"http1", func(err error) error {
				return fmt.Errorf("attempt: %w", fmt.Errorf("round trip: %w", &h1client.HandshakeError{Addr: "a", Err: err}))
			}},
			{"h2", func(err error) error {
				return fmt.Errorf("h2client: dial a: %w", &connectError{addr: "a", err: err, tls: true})
			}},
		} {
			if got := connectFailure(wrap.f(tc.err), context.Background()); got != tc.want {
				t.Errorf("%s, %s: %v (%v), want %v", tc.name, wrap.name, got, tc.err, tc.want)
			}
		}
	}
}

// A route with a per-try timeout counts its connect failures by what
// they were, not as timeouts: the attempt's own context is cancelled
// once it has failed, before the failure is classified, which is not
// the per-try timeout cutting the connect short.
func TestConnectFailureUnderPerTryTimeoutKeepsItsReason(t *testing.T) {
	ca := newCA(t, "per-try CA")
	caPath := writeFile(t, t.TempDir(), "ca.pem", ca.certPEM)
	untrusted := tlsUpstream(t, serverCert(t, newCA(t, "other CA")).tlsCert(t), nil)
	// Bound and not listening, for the rest of the test: the port of a
	// listener closed at once was free for the next listener, the
	// silent server's below or the proxy's own (see holdRefusedAddr).
	closed := refusedAddr(t)
	// A server that accepts and never answers the ClientHello: the
	// per-try timeout ends the handshake, a timeout.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	held := make(chan net.Conn, 1)
	go func() {
		defer close(held)
		if c, err := silent.Accept(); err == nil {
			held <- c
		}
	}()
	defer func() {
		silent.Close()
		if c := <-held; c != nil {
			c.Close()
		}
	}()
	for _, tc := range []struct {
		addr   string
		tls    config.TLS
		perTry time.Duration
		reason string
	}{
		{closed, config.TLS{}, 5 * time.Second, "refused"},
		{strings.TrimPrefix(untrusted.URL, "https://"), config.TLS{Enabled: true, CAFile: caPath}, 5 * time.Second, "tls_untrusted"},
		{silent.Addr().String(), config.TLS{Enabled: true, CAFile: caPath}, 100 * time.Millisecond, "timeout"},
	} {
		t.Run(tc.reason, func(t *testing.T) {
			h := startProxy(t, simpleConfig(config.Cluster{Endpoints: eps(tc.addr), TLS: tc.tls}, func(r *config.Route) {
				r.PerTryTimeout = tc.perTry
			}))
			if resp, body := do(t, h.h1, "GET", h.url("/"), nil); resp.StatusCode/100 != 5 {
				t.Fatalf("%d %q, want a 5xx", resp.StatusCode, body)
			}
			wantConnectFailures(t, h, tc.reason, 1)
		})
	}
}

// connectFailureSeries is the reasons h's registry has an
// outrigger_proxy_upstream_connect_failures_total series of cluster for.
func connectFailureSeries(t *testing.T, h *harness, cluster string) []string {
	t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for _, mf := range mfs {
		if mf.GetName() != "outrigger_proxy_upstream_connect_failures_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var c, r string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "cluster":
					c = l.GetValue()
				case "reason":
					r = l.GetValue()
				}
			}
			if c == cluster {
				reasons = append(reasons, r)
			}
		}
	}
	return reasons
}

// Every reason's series of a cluster is there, at 0, from its start,
// and all go with it when a reload removes it.
func TestConnectFailureSeriesFollowTheCluster(t *testing.T) {
	cfg := simpleConfig(config.Cluster{Endpoints: eps("127.0.0.1:1")})
	cfg.Clusters["other"] = config.Cluster{Endpoints: eps("127.0.0.1:2")}
	h := startProxy(t, cfg)
	if got := connectFailureSeries(t, h, "other"); len(got) != int(numConnectReasons) {
		t.Fatalf("series of a new cluster: %q, want one per reason", got)
	}
	if err := h.p.Apply(simpleConfig(config.Cluster{Endpoints: eps("127.0.0.1:1")})); err != nil {
		t.Fatal(err)
	}
	if got := connectFailureSeries(t, h, "other"); len(got) != 0 {
		t.Fatalf("series of a removed cluster: %q, want none", got)
	}
	if got := connectFailureSeries(t, h, "svc"); len(got) != int(numConnectReasons) {
		t.Fatalf("series of the cluster kept: %q, want one per reason", got)
	}
}
