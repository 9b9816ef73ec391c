package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A cluster's client certificate and CA, rotated in place (same paths,
// new content) the way a Kubernetes Secret volume rotates them (its
// ..data symlink swapped to a new directory), are used by the sidecar's
// next connections without a restart, a config edit or a signal; a
// rotation that leaves a key not matching its certificate is refused and
// the last good files keep serving until the pair is whole again.

// testCA is a CA that issues certificates for the tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, key := sign(t, tmpl, nil, nil)
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// sign makes a key and a certificate for it from tmpl, valid for the
// hour around now, signed by parent's key (self-signed when parent is
// nil).
func sign(t *testing.T, tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	return der, key
}

// issue returns a leaf certificate and key, in PEM, for cn: a server
// certificate for 127.0.0.1 when server is set, else a client one.
func (ca *testCA) issue(t *testing.T, cn string, server bool) (certPEM, keyPEM []byte) {
	t.Helper()
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, key := sign(t, tmpl, ca.cert, ca.key)
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

// secretDir is a directory laid out as Kubernetes mounts a Secret:
// name -> ..data/name, ..data -> a timestamped directory, swapped whole.
type secretDir struct {
	t    *testing.T
	dir  string
	gen  int
	keys []string
}

func newSecretDir(t *testing.T, files map[string][]byte) *secretDir {
	d := &secretDir{t: t, dir: t.TempDir()}
	for name := range files {
		d.keys = append(d.keys, name)
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(d.dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	d.update(files)
	return d
}

// update writes files into a new timestamped directory and swaps ..data
// to it in one rename, as the kubelet does.
func (d *secretDir) update(files map[string][]byte) {
	d.t.Helper()
	d.gen++
	ts := fmt.Sprintf("..2026_11_29_%d", d.gen)
	if err := os.Mkdir(filepath.Join(d.dir, ts), 0o755); err != nil {
		d.t.Fatal(err)
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(d.dir, ts, name), b, 0o600); err != nil {
			d.t.Fatal(err)
		}
	}
	tmp := filepath.Join(d.dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		d.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(d.dir, "..data")); err != nil {
		d.t.Fatal(err)
	}
}

func (d *secretDir) path(name string) string { return filepath.Join(d.dir, name) }

// mtlsUpstream is an HTTPS server, with the certificate serverCert holds
// at each handshake, that requires a client certificate from clientCA
// and answers with its common name; every response closes its
// connection, so each request is a new handshake (a full one, or one
// that resumes a session, which the returned config's session ticket
// keys decide).
func mtlsUpstream(t *testing.T, serverCert *atomic.Pointer[tls.Certificate], clientCA *testCA) (*httptest.Server, *tls.Config) {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(clientCA.cert)
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		fmt.Fprint(w, r.TLS.PeerCertificates[0].Subject.CommonName)
	}))
	// Served on a TLS listener of its own: httptest's StartTLS would add
	// its own certificate, which a client without SNI (an IP address)
	// gets in place of GetCertificate's.
	tc := &tls.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return serverCert.Load(), nil },
		ClientCAs:      pool,
		ClientAuth:     tls.RequireAndVerifyClientCert,
	}
	s.Listener = tls.NewListener(s.Listener, tc)
	s.Start()
	t.Cleanup(s.Close)
	return s, tc
}

// mtlsSidecar is a running outrigger whose cluster svc reaches an
// mtlsUpstream with the CA and client certificate in secret.
type mtlsSidecar struct {
	p          *proc
	c          *http.Client
	cfg, text  string // the config file, and what it holds
	secret     *secretDir
	serverCA   *testCA
	clientCA   *testCA
	keyA       []byte // the key of client-a, the certificate the sidecar starts with
	serverCert *atomic.Pointer[tls.Certificate]
	serverTLS  *tls.Config // the upstream's
}

// startMTLSSidecar starts an mtlsUpstream and an outrigger whose cluster
// svc reaches it with the client certificate client-a.
func startMTLSSidecar(t *testing.T) *mtlsSidecar {
	m := &mtlsSidecar{serverCA: newTestCA(t, "server CA"), clientCA: newTestCA(t, "client CA"), serverCert: new(atomic.Pointer[tls.Certificate])}
	sc, sk := m.serverCA.issue(t, "upstream", true)
	first, err := tls.X509KeyPair(sc, sk)
	if err != nil {
		t.Fatal(err)
	}
	m.serverCert.Store(&first)
	up, serverTLS := mtlsUpstream(t, m.serverCert, m.clientCA)
	m.serverTLS = serverTLS

	var certA []byte
	certA, m.keyA = m.clientCA.issue(t, "client-a", false)
	m.secret = newSecretDir(t, map[string][]byte{"ca.crt": m.serverCA.pem, "tls.crt": certA, "tls.key": m.keyA})
	upAddr := up.Listener.Addr().String()
	endpoints := "    endpoints: [" + upAddr + "]\n"
	m.text = strings.Replace(sidecarConfig(upAddr, "127.0.0.1:1", ""), endpoints, endpoints+fmt.Sprintf(`    tls:
      enabled: true
      ca_file: %s
      cert_file: %s
      key_file: %s
`, m.secret.path("ca.crt"), m.secret.path("tls.crt"), m.secret.path("tls.key")), 1)
	m.cfg = writeConfig(t, m.text)
	m.p = start(t, "run", "-c", m.cfg)
	m.c = newClient(t)
	if code, body := m.whoAmI(t); code != 200 || body != "client-a" {
		t.Fatalf("got %d %q, want 200 client-a", code, body)
	}
	return m
}

// whoAmI sends a request for svc and returns the status and the body: the
// common name of the client certificate the upstream got.
func (m *mtlsSidecar) whoAmI(t *testing.T) (int, string) {
	t.Helper()
	code, body, _ := get(t, m.c, "http://"+m.p.addrs.Outbound+"/", "svc")
	return code, body
}

func TestRotatedClusterCertificatesAreUsedWithoutRestart(t *testing.T) {
	m := startMTLSSidecar(t)

	// A rotation caught half done: the new certificate with the old key.
	certB, keyB := m.clientCA.issue(t, "client-b", false)
	m.secret.update(map[string][]byte{"ca.crt": m.serverCA.pem, "tls.crt": certB, "tls.key": m.keyA})
	waitFor(t, 15*time.Second, "the mismatched pair to be refused", func() bool {
		return strings.Contains(m.p.stderr.String(), `"trigger":"tls_files"`) &&
			strings.Contains(m.p.stderr.String(), "configuration reload rejected")
	})
	if code, body := m.whoAmI(t); code != 200 || body != "client-a" {
		t.Fatalf("after a refused rotation: got %d %q, want 200 client-a (the last good files)", code, body)
	}

	// The rotation completed.
	m.secret.update(map[string][]byte{"ca.crt": m.serverCA.pem, "tls.crt": certB, "tls.key": keyB})
	waitFor(t, 15*time.Second, "requests to carry the rotated certificate", func() bool {
		code, body := m.whoAmI(t)
		return code == 200 && body == "client-b"
	})

	// The upstream moves to a certificate from a new CA, with new session
	// ticket keys, as a server restarted with it has: refused until the
	// CA file has it too. (A server that kept its ticket keys would
	// resume the sessions of its old certificate, verified when they
	// were made, as it would with any TLS client that resumes.)
	newServerCA := newTestCA(t, "server CA 2")
	sc2, sk2 := newServerCA.issue(t, "upstream", true)
	second, err := tls.X509KeyPair(sc2, sk2)
	if err != nil {
		t.Fatal(err)
	}
	var ticketKey [32]byte
	if _, err := rand.Read(ticketKey[:]); err != nil {
		t.Fatal(err)
	}
	m.serverTLS.SetSessionTicketKeys([][32]byte{ticketKey})
	m.serverCert.Store(&second)
	if code, _ := m.whoAmI(t); code != http.StatusBadGateway {
		t.Fatalf("an upstream certificate from an untrusted CA got %d, want 502", code)
	}
	m.secret.update(map[string][]byte{"ca.crt": newServerCA.pem, "tls.crt": certB, "tls.key": keyB})
	waitFor(t, 15*time.Second, "the rotated CA to be trusted", func() bool {
		code, body := m.whoAmI(t)
		return code == 200 && body == "client-b"
	})
}

// A config file edit the sidecar refuses (here a key this version does not
// know, as a fleet-wide edit meets a sidecar not yet upgraded) does not
// hold back a rotation of the serving configuration's files: the rotated
// certificate is used, and /config and the metrics go on reporting the
// refused file until a reload of the file succeeds.
func TestRotationIsAppliedWhileTheConfigFileIsRefused(t *testing.T) {
	m := startMTLSSidecar(t)
	admin := m.p.addrs.Admin
	writeAtomic(t, m.cfg, m.text+"unknown_section: {}\n")
	waitFor(t, 15*time.Second, "the edit to be refused", func() bool {
		return getConfig(t, m.c, admin).LastReloadError != ""
	})
	refusal := getConfig(t, m.c, admin).LastReloadError

	certB, keyB := m.clientCA.issue(t, "client-b", false)
	m.secret.update(map[string][]byte{"ca.crt": m.serverCA.pem, "tls.crt": certB, "tls.key": keyB})
	waitFor(t, 15*time.Second, "requests to carry the rotated certificate", func() bool {
		code, body := m.whoAmI(t)
		return code == 200 && body == "client-b"
	})
	if got := getConfig(t, m.c, admin); got.LastReloadError != refusal || got.Generation != 2 {
		t.Fatalf("after the rotation /config says generation %d, last_reload_error %q; want 2 and the file's refusal %q", got.Generation, got.LastReloadError, refusal)
	}
	if v := metric(t, m.c, admin, "outrigger_config_last_reload_error"); v != 1 {
		t.Fatalf("outrigger_config_last_reload_error = %v while the file is refused, want 1", v)
	}

	// The file fixed: applied, and nothing is refused any more.
	writeAtomic(t, m.cfg, m.text)
	waitFor(t, 15*time.Second, "the fixed file to be applied", func() bool {
		got := getConfig(t, m.c, admin)
		return got.Generation == 3 && got.LastReloadError == ""
	})
	waitMetric(t, m.c, admin, "outrigger_config_last_reload_error", 0)
	if code, body := m.whoAmI(t); code != 200 || body != "client-b" {
		t.Fatalf("after the fix: got %d %q, want 200 client-b", code, body)
	}
}

// A config file edit refused because a file its tls names is not there yet
// (a cluster added before cert-manager has issued its certificate) is
// applied once the files appear, without another edit or a SIGHUP.
func TestRefusedEditIsAppliedOnceItsTLSFilesAppear(t *testing.T) {
	m := startMTLSSidecar(t)
	admin := m.p.addrs.Admin
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	edited := strings.Replace(strings.Replace(m.text, m.secret.path("tls.crt"), certPath, 1), m.secret.path("tls.key"), keyPath, 1)
	writeAtomic(t, m.cfg, edited)
	waitFor(t, 15*time.Second, "the edit naming missing files to be refused", func() bool {
		return strings.Contains(getConfig(t, m.c, admin).LastReloadError, certPath)
	})
	if code, body := m.whoAmI(t); code != 200 || body != "client-a" {
		t.Fatalf("while the edit is refused: got %d %q, want 200 client-a", code, body)
	}

	certB, keyB := m.clientCA.issue(t, "client-b", false)
	if err := os.WriteFile(keyPath, keyB, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certPath, certB, 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "the edit to be applied once its files are there", func() bool {
		got := getConfig(t, m.c, admin)
		return got.Generation == 2 && got.LastReloadError == ""
	})
	if code, body := m.whoAmI(t); code != 200 || body != "client-b" {
		t.Fatalf("after the files appeared: got %d %q, want 200 client-b", code, body)
	}
	// The reload is logged after its generation is published.
	waitFor(t, 10*time.Second, "the reload logged with trigger tls_files", func() bool {
		return strings.Contains(m.p.stderr.String(), `"msg":"configuration reloaded","trigger":"tls_files"`)
	})
}
