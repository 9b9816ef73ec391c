package health

import (
	"bufio"
	"context"
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
	"google.golang.org/grpc/metadata"
)

// selfSigned returns a certificate for 127.0.0.1 and a pool that trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	return selfSignedFor(t)
}

// selfSignedFor returns a certificate for 127.0.0.1 and the DNS names, and
// a pool that trusts it.
func selfSignedFor(t *testing.T, names ...string) (tls.Certificate, *x509.CertPool) {
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
		DNSNames:     names,
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

// grpcTLSServer serves the gRPC health service over TLS with cert and
// reports the server name and :authority of each call.
func grpcTLSServer(t *testing.T, cert tls.Certificate) (addr string, sni, authority chan string) {
	t.Helper()
	sni, authority = make(chan string, 16), make(chan string, 16)
	ln := listen(t)
	tc := &tls.Config{
		Certificates: []tls.Certificate{cert},
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			select {
			case sni <- hello.ServerName:
			default:
			}
			return nil, nil
		},
	}
	record := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		if a := md.Get(":authority"); len(a) == 1 {
			select {
			case authority <- a[0]:
			default:
			}
		}
		return h(ctx, req)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(tc)), grpc.UnaryInterceptor(record))
	healthpb.RegisterHealthServer(srv, grpchealth.NewServer())
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	return ln.Addr().String(), sni, authority
}

func TestGRPCOverTLS(t *testing.T) {
	cert, roots := selfSigned(t)
	addr, _, _ := grpcTLSServer(t, cert)

	cfg := fastConfig(GRPC)
	cfg.TLS = &tls.Config{RootCAs: roots}
	if err := checkNow(t, newChecker(t, cfg, []string{addr}), 0); err != nil {
		t.Fatalf("trusted server: %v", err)
	}

	// A failed handshake is reported as such, not as UNAVAILABLE.
	untrusted := fastConfig(GRPC)
	untrusted.TLS = &tls.Config{}
	untrusted.Timeout = 5 * time.Second // a failed handshake returns at once; a slow machine must not turn it into a timeout
	err := checkNow(t, newChecker(t, untrusted, []string{addr}), 0)
	if cause, reason := causeOf(t, err); cause != CauseTLS || !strings.HasPrefix(reason, "tls: ") || !strings.Contains(reason, "x509") {
		t.Fatalf("untrusted server: %q (cause %q)", reason, cause)
	}

	// The certificate does not name payments.internal, whether it comes
	// from ServerName or, with no ServerName, from Host as the :authority.
	wrongName := fastConfig(GRPC)
	wrongName.TLS = &tls.Config{RootCAs: roots, ServerName: "payments.internal"}
	wrongName.Timeout = 5 * time.Second // a failed handshake returns at once; a slow machine must not turn it into a timeout
	err = checkNow(t, newChecker(t, wrongName, []string{addr}), 0)
	if cause, reason := causeOf(t, err); cause != CauseTLS || !strings.HasPrefix(reason, "tls: ") || !strings.Contains(reason, "payments.internal") {
		t.Fatalf("wrong server name: %q (cause %q)", reason, cause)
	}
	hostName := fastConfig(GRPC)
	hostName.TLS = &tls.Config{RootCAs: roots}
	hostName.Host = "payments.internal"
	hostName.Timeout = 5 * time.Second // a failed handshake returns at once; a slow machine must not turn it into a timeout
	err = checkNow(t, newChecker(t, hostName, []string{addr}), 0)
	if cause, reason := causeOf(t, err); cause != CauseTLS || !strings.HasPrefix(reason, "tls: ") || !strings.Contains(reason, "payments.internal") {
		t.Fatalf("Host as server name: %q (cause %q)", reason, cause)
	}

	// A plaintext check of a TLS server fails too.
	plain := fastConfig(GRPC)
	plain.Timeout = 500 * time.Millisecond
	err = checkNow(t, newChecker(t, plain, []string{addr}), 0)
	if err == nil {
		t.Fatal("plaintext check of a TLS server passed")
	}
}

func TestGRPCOverTLSServerNameAndAuthority(t *testing.T) {
	cert, roots := selfSignedFor(t, "payments.internal", "api.internal")
	addr, sni, authority := grpcTLSServer(t, cert)
	tests := []struct {
		name, host, serverName string
		wantSNI, wantAuthority string
	}{
		{"neither", "", "", "", addr}, // an IP address is not sent as SNI
		{"host", "api.internal", "", "api.internal", "api.internal"},
		{"server name", "", "payments.internal", "payments.internal", "payments.internal"},
		{"both", "api.internal", "payments.internal", "payments.internal", "api.internal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := fastConfig(GRPC)
			cfg.Host = tt.host
			cfg.TLS = &tls.Config{RootCAs: roots, ServerName: tt.serverName}
			if err := checkNow(t, newChecker(t, cfg, []string{addr}), 0); err != nil {
				t.Fatal(err)
			}
			if got := <-sni; got != tt.wantSNI {
				t.Errorf("server name %q, want %q", got, tt.wantSNI)
			}
			if got := <-authority; got != tt.wantAuthority {
				t.Errorf(":authority %q, want %q", got, tt.wantAuthority)
			}
		})
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
