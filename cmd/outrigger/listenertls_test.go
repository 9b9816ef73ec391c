package main

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// Two sidecars talk mutual TLS: the app calls sidecar A's outbound
// listener, whose cluster reaches sidecar B's inbound listener with TLS
// and a client certificate; B terminates TLS, requires and verifies the
// certificate, and its app sees the caller's SPIFFE id in
// x-forwarded-client-cert, not the one the caller sent. A client without
// a certificate is refused and counted. B's certificate, rotated in
// place, is what new handshakes get, without a restart.
func TestSidecarsTalkMutualTLS(t *testing.T) {
	ca := newTestCA(t, "mesh CA")
	const callerID = "spiffe://cluster.local/ns/shop/sa/caller"

	var mu sync.Mutex
	var seen []string
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = r.Header.Values("X-Forwarded-Client-Cert")
		mu.Unlock()
		fmt.Fprint(w, "hello from B")
	}))
	t.Cleanup(app.Close)

	bCert, bKey := ca.issue(t, "callee", true)
	bSecret := newSecretDir(t, map[string][]byte{"ca.crt": ca.pem, "tls.crt": bCert, "tls.key": bKey})
	inbound := "    app: " + strings.TrimPrefix(app.URL, "http://") + "\n"
	bText := strings.Replace(sidecarConfig("127.0.0.1:1", strings.TrimPrefix(app.URL, "http://"), ""), inbound, inbound+fmt.Sprintf(`    tls:
      enabled: true
      cert_file: %s
      key_file: %s
      client_ca_file: %s
      require_client_cert: true
`, bSecret.path("tls.crt"), bSecret.path("tls.key"), bSecret.path("ca.crt")), 1)
	b := start(t, "run", "-c", writeConfig(t, bText))

	aCert, aKey := issueSPIFFE(t, ca, callerID)
	aSecret := newSecretDir(t, map[string][]byte{"ca.crt": ca.pem, "tls.crt": aCert, "tls.key": aKey})
	endpoints := "    endpoints: [" + b.addrs.Inbound + "]\n"
	aText := strings.Replace(sidecarConfig(b.addrs.Inbound, "127.0.0.1:1", ""), endpoints, endpoints+fmt.Sprintf(`    tls:
      enabled: true
      ca_file: %s
      cert_file: %s
      key_file: %s
`, aSecret.path("ca.crt"), aSecret.path("tls.crt"), aSecret.path("tls.key")), 1)
	a := start(t, "run", "-c", writeConfig(t, aText))

	c := newClient(t)
	req, err := http.NewRequest("GET", "http://"+a.addrs.Outbound+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "svc"
	req.Header.Set("X-Forwarded-Client-Cert", "Hash=forged;URI=spiffe://cluster.local/ns/x/sa/admin")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "hello from B" {
		t.Fatalf("app A's call through both sidecars: %d %q", resp.StatusCode, body)
	}
	mu.Lock()
	xfcc := seen
	mu.Unlock()
	if len(xfcc) != 1 || !strings.HasPrefix(xfcc[0], "Hash=") || !strings.HasSuffix(xfcc[0], ";URI="+callerID) {
		t.Fatalf("app B saw x-forwarded-client-cert %q, want the caller's hash and URI %s", xfcc, callerID)
	}

	// Without a client certificate B refuses the handshake.
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	direct := func() (*http.Response, error) {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}
		defer tr.CloseIdleConnections()
		return (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + b.addrs.Inbound + "/")
	}
	if resp, err := direct(); err == nil {
		resp.Body.Close()
		t.Fatal("a client without a certificate was served by B")
	}
	waitFor(t, 10*time.Second, "the refused handshake counted", func() bool {
		return metric(t, c, b.addrs.Admin, `outrigger_proxy_downstream_tls_handshake_failures_total{listener="inbound",reason="no_client_cert"}`) == 1
	})

	// B's certificate rotated in place: new handshakes get it.
	newCert, newKey := ca.issue(t, "callee-rotated", true)
	bSecret.update(map[string][]byte{"ca.crt": ca.pem, "tls.crt": newCert, "tls.key": newKey})
	waitFor(t, 15*time.Second, "B to present the rotated certificate", func() bool {
		conn, err := tls.Dial("tcp", b.addrs.Inbound, &tls.Config{RootCAs: roots})
		if err != nil {
			return false
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName == "callee-rotated"
	})
	code, body2, _ := get(t, c, "http://"+a.addrs.Outbound+"/", "svc")
	if code != 200 || body2 != "hello from B" {
		t.Fatalf("after B's rotation: %d %q", code, body2)
	}
}

// issueSPIFFE returns a client certificate and key, in PEM, with id as
// its URI SAN.
func issueSPIFFE(t *testing.T, ca *testCA, id string) (certPEM, keyPEM []byte) {
	t.Helper()
	u, err := url.Parse(id)
	if err != nil {
		t.Fatal(err)
	}
	der, key := sign(t, &x509.Certificate{Subject: pkix.Name{CommonName: "caller"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs: []*url.URL{u}}, ca.cert, ca.key)
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}
