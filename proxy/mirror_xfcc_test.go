package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/config"
)

// A copy carries the x-forwarded-client-cert the primary got, the
// identity of the client certificate the inbound listener verified: a
// mirror that authorizes by it (as the service it shadows does) must not
// see the copies as anonymous.
func TestMirrorCopyCarriesTheClientCertificateIdentity(t *testing.T) {
	primary := make(chan string, 1)
	p := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {
		primary <- r.Header.Get(hdrClientCert)
	})
	shadowXFCC := make(chan string, 1)
	shadow := upstream(t, true, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		shadowXFCC <- r.Header.Get(hdrClientCert)
	})
	h := startProxy(t, mirrorConfig(addr(p), addr(shadow), nil, func(r *config.Route) { r.Listener = config.Inbound }))

	cert := &x509.Certificate{Raw: []byte("caller"), Subject: pkix.Name{CommonName: "caller"}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req := httptest.NewRequestWithContext(ctx, "POST", "https://svc/", strings.NewReader("body"))
	req.RemoteAddr = "127.0.0.1:5000"
	req.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert},
		VerifiedChains: [][]*x509.Certificate{{cert}}}
	rec := httptest.NewRecorder()
	h.p.Handler(Inbound).ServeHTTP(rec, req)
	cancel()
	want := <-primary
	if !strings.Contains(want, "CN=caller") {
		t.Fatalf("primary got x-forwarded-client-cert %q", want)
	}
	select {
	case got := <-shadowXFCC:
		if got != want {
			t.Fatalf("mirror got x-forwarded-client-cert %q, the primary %q", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the mirror got no copy")
	}
}
