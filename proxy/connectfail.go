package proxy

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"syscall"

	"github.com/outrigger-mesh/outrigger/proxy/h1client"
	"github.com/outrigger-mesh/outrigger/proxy/h2client"
)

// connectReason is why a connection to an endpoint could not be made,
// the reason label of outrigger_proxy_upstream_connect_failures_total:
// Envoy's upstream_cx_connect_fail and upstream_cx_connect_timeout, with
// its TLS context's verification failures told apart, so that an
// expired or untrusted certificate can be alerted on by itself.
type connectReason uint8

const (
	connectRefused         connectReason = iota // nothing listens, or no route to the host
	connectTimeout                              // connect_timeout (or the request's time) ran out, TCP or TLS
	connectTLSUntrusted                         // the certificate chains to no trusted CA
	connectTLSExpired                           // the certificate expired or is not valid yet
	connectTLSNameMismatch                      // the certificate does not cover the server name
	connectTLSHandshake                         // another TLS failure: an alert from the server, no ALPN h2, a protocol error
	connectProtocol                             // the HTTP/2 connection preface and SETTINGS exchange failed
	connectOther                                // anything else (a reset during the connect, a dial error)
	numConnectReasons
)

var connectReasonNames = [numConnectReasons]string{
	"refused", "timeout", "tls_untrusted", "tls_expired", "tls_name_mismatch", "tls_handshake", "protocol", "other",
}

func (r connectReason) String() string { return connectReasonNames[r] }

// connectFailure classifies err, an attempt's failure that failKind
// called failConnect; actx is the attempt's context, which the per-try
// timeout, the route's deadline or its idle_timeout may have ended the
// connect through (crypto/tls and the dialer then fail with the
// context's error). Those end it with a cause of their own; a per-try
// context is also cancelled, without one, as soon as its attempt has
// failed, before the failure is classified, which says nothing of why
// the connect failed.
func connectFailure(err error, actx context.Context) connectReason {
	if cause := context.Cause(actx); cause != nil && cause != context.Canceled {
		return connectTimeout
	}
	var he *h1client.HandshakeError
	var ce *connectError
	var h2he *h2client.HandshakeError
	switch {
	case errors.As(err, &he):
		return tlsReason(he.Err)
	case errors.As(err, &ce) && ce.tls:
		return tlsReason(ce.err)
	case errors.As(err, &h2he):
		if timedOut(err) {
			return connectTimeout
		}
		if remoteAlert(err) != nil {
			return connectTLSHandshake
		}
		return connectProtocol
	case timedOut(err):
		return connectTimeout
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return connectRefused
	}
	return connectOther
}

// tlsReason classifies the failure of a TLS handshake.
func tlsReason(err error) connectReason {
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var name x509.HostnameError
	switch {
	case timedOut(err):
		return connectTimeout
	case errors.As(err, &unknown):
		return connectTLSUntrusted
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return connectTLSExpired
	case errors.As(err, &name):
		return connectTLSNameMismatch
	}
	return connectTLSHandshake
}

// remoteAlert returns the TLS alert err carries from the server, nil
// when it carries none. An HTTP/2 connection's preface exchange fails
// with one when the server refused the handshake after the client's end
// of it: under TLS 1.3 the server checks the client's certificate then
// (RFC 8446 §4.4.2.4), so a server that wants one the cluster does not
// have, or does not trust it, says so on the first read.
func remoteAlert(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "remote error" {
		return oe
	}
	return nil
}

// timedOut reports whether err is a deadline's: the connect's own, the
// request's context, or a socket's timeout.
func timedOut(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		errors.As(err, &ne) && ne.Timeout()
}
