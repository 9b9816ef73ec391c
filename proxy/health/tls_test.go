package health

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	grpchealth "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// selfSigned returns a certificate for 127.0.0.1 and a pool that trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "outrigger test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true,

		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

func TestGRPCOverTLS(t *testing.T) {
	cert, roots := selfSigned(t)
	ln := listen(t)
	srv := grpc.NewServer(grpc.Creds(credentials.NewServerTLSFromCert(&cert)))
	hs := grpchealth.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	addr := ln.Addr().String()

	cfg := fastConfig(GRPC)
	cfg.TLS = &tls.Config{RootCAs: roots}
	if err := checkNow(t, newChecker(t, cfg, []string{addr}), 0); err != nil {
		t.Fatalf("trusted server: %v", err)
	}

	untrusted := fastConfig(GRPC)
	untrusted.TLS = &tls.Config{}
	untrusted.Timeout = 500 * time.Millisecond
	err := checkNow(t, newChecker(t, untrusted, []string{addr}), 0)
	if cause, reason := causeOf(t, err); cause != CauseGRPC || reason != "grpc: UNAVAILABLE" {
		t.Fatalf("untrusted server: %q (cause %q)", reason, cause)
	}

	// A plaintext check of a TLS server fails too.
	plain := fastConfig(GRPC)
	plain.Timeout = 500 * time.Millisecond
	err = checkNow(t, newChecker(t, plain, []string{addr}), 0)
	if err == nil {
		t.Fatal("plaintext check of a TLS server passed")
	}
}

func TestHTTPOverTLSUsesServerName(t *testing.T) {
	cert, roots := selfSigned(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	names := make(chan string, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tc := c.(*tls.Conn)
			tc.Handshake()
			names <- tc.ConnectionState().ServerName
			if _, err := http.ReadRequest(bufio.NewReader(tc)); err == nil {
				tc.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
			}
			tc.Close()
		}
	}()
	cfg := fastConfig(HTTP)
	cfg.TLS = &tls.Config{RootCAs: roots}
	if err := checkNow(t, newChecker(t, cfg, []string{ln.Addr().String()}), 0); err != nil {
		t.Fatal(err)
	}
	if sni := <-names; sni != "" { // an IP address is not sent as SNI
		t.Fatalf("SNI %q for an IP address", sni)
	}
	cfg.TLS = &tls.Config{RootCAs: roots, ServerName: "payments.internal"}
	err = checkNow(t, newChecker(t, cfg, []string{ln.Addr().String()}), 0)
	if sni := <-names; sni != "payments.internal" {
		t.Fatalf("SNI %q, want the configured ServerName", sni)
	}
	// The certificate does not name payments.internal.
	if cause, reason := causeOf(t, err); cause != CauseTLS || !strings.Contains(reason, "x509") {
		t.Fatalf("wrong name: %q (cause %q)", reason, cause)
	}
}
