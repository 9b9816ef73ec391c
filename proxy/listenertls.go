package proxy

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"syscall"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// Downstream TLS: a listener whose tls is enabled terminates TLS
// (h1server does the handshake on each connection's goroutine, with the
// *tls.Config compiled here), and verifies its clients' certificates
// when it has a client_ca_file. The config is part of the snapshot's
// listener limits, which Apply hands to the servers for the connections
// they accept next (h1server.Server.SetLimits): a reload, the one the
// sidecar makes when a file changes included, rotates the certificate
// and the CAs for new handshakes without binding the listener again,
// while the connections open go on with what they were accepted with.

// alpnProtos are the protocols a TLS listener offers, by preference.
var alpnProtos = []string{"h2", "http/1.1"}

// serverTLS builds a listener's TLS configuration from t (enabled),
// reading its files now.
func serverTLS(t config.ListenerTLS) (*tls.Config, error) {
	cert, err := loadKeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: alpnProtos}
	// Validate has checked the names; empty leaves crypto/tls's bounds.
	tc.MinVersion, _ = config.TLSVersion(t.MinVersion)
	tc.MaxVersion, _ = config.TLSVersion(t.MaxVersion)
	if t.ClientCAFile != "" {
		pool, err := loadCAPool("client_ca_file", t.ClientCAFile)
		if err != nil {
			return nil, err
		}
		tc.ClientCAs = pool
		// Asked for, and verified when sent: a client without one is
		// let in (and its requests carry no client identity) unless
		// require_client_cert says otherwise.
		tc.ClientAuth = tls.VerifyClientCertIfGiven
		if t.RequireClientCert {
			tc.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	// crypto/tls fails the handshake of a client whose ALPN offer has
	// none of NextProtos (RFC 7301 §3.2), where Envoy goes on without
	// ALPN and serves HTTP/1.1: such a client is given a copy without
	// NextProtos, made once here rather than per handshake. It keeps
	// the certificate and CAs of tc, and tc's session ticket keys
	// encrypt and decrypt its tickets (crypto/tls uses the original
	// config's keys when the returned one sets none).
	noALPN := tc.Clone()
	noALPN.NextProtos = nil
	tc.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if len(hello.SupportedProtos) == 0 || offersALPN(hello.SupportedProtos) {
			return nil, nil
		}
		return noALPN, nil
	}
	return tc, nil
}

// offersALPN reports whether a client's ALPN offer has a protocol of
// alpnProtos.
func offersALPN(offered []string) bool {
	for _, p := range offered {
		if slices.Contains(alpnProtos, p) {
			return true
		}
	}
	return false
}

// loadCAPool reads a PEM CA bundle from path, key being the config key
// that names it (for the error).
func loadCAPool(key, path string) (*x509.CertPool, error) {
	pem, err := config.ReadTLSFile(path)
	if err != nil {
		return nil, err
	}
	if err := pemWhole(pem); err != nil {
		return nil, fmt.Errorf("%s %s: %w", key, path, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s %s: no PEM certificates", key, path)
	}
	return pool, nil
}

// loadKeyPair reads a PEM certificate (chain) and its key.
func loadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := config.ReadTLSFile(certFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := pemWhole(certPEM); err != nil {
		return tls.Certificate{}, fmt.Errorf("cert_file %s: %w", certFile, err)
	}
	keyPEM, err := config.ReadTLSFile(keyFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// Its words begin with the "tls: " the caller's key path
		// already says.
		return tls.Certificate{}, fmt.Errorf("cert_file %s and key_file %s: %s", certFile, keyFile, strings.TrimPrefix(err.Error(), "tls: "))
	}
	return cert, nil
}

// handshakeReason is why a downstream TLS handshake failed, the reason
// label of outrigger_proxy_downstream_tls_handshake_failures_total
// (Envoy's listener ssl.connection_error, ssl.fail_verify_no_cert and
// ssl.fail_verify_error, told apart).
type handshakeReason uint8

const (
	handshakeNoClientCert  handshakeReason = iota // require_client_cert, and the client sent none
	handshakeBadClientCert                        // the client's certificate did not verify (unknown CA, expired, not for client auth) or parse
	handshakeTimeout                              // handshake_timeout passed
	handshakeClosed                               // the client closed or reset the connection before the handshake's end
	handshakeProtocol                             // not TLS, no version or cipher in common, an alert from the client (it refused the listener's certificate)
	handshakeOther                                // anything else (a handshake Shutdown or Close cuts is not reported: h1server.Server.HandshakeFailed)
	numHandshakeReasons
)

var handshakeReasonNames = [numHandshakeReasons]string{
	"no_client_cert", "bad_client_cert", "timeout", "closed", "protocol", "other",
}

func (r handshakeReason) String() string { return handshakeReasonNames[r] }

// classifyHandshake tells why a server-side handshake failed with err.
func classifyHandshake(err error) handshakeReason {
	var verify *tls.CertificateVerificationError
	var rec tls.RecordHeaderError
	msg := err.Error()
	switch {
	case errors.As(err, &verify):
		return handshakeBadClientCert
	case strings.Contains(msg, "client didn't provide a certificate"):
		// crypto/tls has no sentinel for it; its words are stable.
		return handshakeNoClientCert
	case strings.Contains(msg, "failed to parse client certificate"):
		return handshakeBadClientCert
	case timedOut(err):
		return handshakeTimeout
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		return handshakeClosed
	case errors.As(err, &rec), strings.Contains(msg, "tls: "):
		return handshakeProtocol
	}
	return handshakeOther
}

// hdrClientCert is the header that carries a verified client
// certificate's identity to the upstream (Envoy's XFCC).
const hdrClientCert = "X-Forwarded-Client-Cert"

// clientCertField is the x-forwarded-client-cert value for a request
// that came over a TLS connection whose client certificate verified,
// "" for any other, as Envoy writes it with Subject, URI and DNS set:
// Hash, the hex SHA-256 of the certificate's DER; Subject, in double
// quotes always; URI, once for each URI SAN (where Istio puts the
// SPIFFE id), or once empty when there is none; DNS, once for each DNS
// SAN. Pairs are separated by semicolons, and a URI or DNS value with a
// comma, semicolon, equals sign or double quote is written in double
// quotes, as the format asks (Envoy writes those raw). By, the
// listener's own URI SAN, is left out.
func clientCertField(st *tls.ConnectionState) string {
	if st == nil || len(st.VerifiedChains) == 0 || len(st.PeerCertificates) == 0 {
		return ""
	}
	c := st.PeerCertificates[0]
	sum := sha256.Sum256(c.Raw)
	var b strings.Builder
	b.WriteString("Hash=")
	b.WriteString(hex.EncodeToString(sum[:]))
	// The RFC 2253 string has already escaped its double quotes (and
	// its , + \ < > ;) with a backslash: quoting it is all that is left
	// to do, as Envoy does with BoringSSL's RFC 2253 string.
	b.WriteString(`;Subject="`)
	b.WriteString(c.Subject.String())
	b.WriteByte('"')
	if len(c.URIs) == 0 {
		b.WriteString(";URI=")
	}
	for _, u := range c.URIs {
		b.WriteString(";URI=")
		writeXFCCValue(&b, u.String())
	}
	for _, d := range c.DNSNames {
		b.WriteString(";DNS=")
		writeXFCCValue(&b, d)
	}
	return b.String()
}

// writeXFCCValue writes v, in double quotes when it has a character
// XFCC's syntax uses, a double quote in it then escaped with a
// backslash.
func writeXFCCValue(b *strings.Builder, v string) {
	if !strings.ContainsAny(v, `,;="`) {
		b.WriteString(v)
		return
	}
	b.WriteByte('"')
	for i := 0; i < len(v); i++ {
		if v[i] == '"' {
			b.WriteByte('\\')
		}
		b.WriteByte(v[i])
	}
	b.WriteByte('"')
}
