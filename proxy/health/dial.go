package health

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/url"
	"syscall"
)

// dialError marks a failure to open a connection, so that a check can tell
// "connect: connection refused" from a connection that broke later.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// tlsError marks a failed TLS handshake.
type tlsError struct{ err error }

func (e *tlsError) Error() string { return e.err.Error() }
func (e *tlsError) Unwrap() error { return e.err }

// dialer opens probe connections; the check's context bounds it.
var dialer = &net.Dialer{}

func dial(ctx context.Context, addr string) (net.Conn, error) {
	c, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, &dialError{err}
	}
	return c, nil
}

// dialTLS opens a connection and completes a TLS handshake on it, offering
// the ALPN protocol proto ("h2" or "http/1.1"), which the server must
// choose when it is "h2".
func dialTLS(ctx context.Context, dial func(context.Context, string) (net.Conn, error), addr string, base *tls.Config, proto string) (net.Conn, error) {
	raw, err := dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	cfg := base.Clone()
	cfg.NextProtos = []string{proto}
	if cfg.ServerName == "" {
		host, _, _ := net.SplitHostPort(addr)
		cfg.ServerName = host
	}
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, &tlsError{err}
	}
	if proto == "h2" && tc.ConnectionState().NegotiatedProtocol != "h2" {
		tc.Close()
		return nil, &tlsError{errors.New("server did not negotiate h2 via ALPN")}
	}
	return tc, nil
}

// connectFailure is the CheckError of a connection that could not be
// opened.
func connectFailure(err error) *CheckError {
	return &CheckError{Cause: CauseConnect, Reason: "connect: " + netReason(err), Err: err}
}

// classify turns the error of a request into a CheckError: a failed dial,
// a failed handshake, or a connection that broke (prefix names the
// protocol: "http", "grpc").
func classify(err error, prefix string) *CheckError {
	var de *dialError
	if errors.As(err, &de) {
		return connectFailure(de.err)
	}
	var te *tlsError
	if errors.As(err, &te) {
		return &CheckError{Cause: CauseTLS, Reason: "tls: " + trimTLS(te.err.Error()), Err: err}
	}
	return &CheckError{Cause: CauseProtocol, Reason: prefix + ": " + netReason(err), Err: err}
}

// netReason is the short text of a network error, without the addresses
// and operations that net and net/http wrap around it.
func netReason(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "connection closed"
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return "lookup " + dns.Name + ": " + dns.Err
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err.Error()
	}
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		return ue.Err.Error()
	}
	return err.Error()
}

// trimTLS drops the "tls: " that crypto/tls starts most errors with, since
// the reason has its own.
func trimTLS(s string) string {
	const p = "tls: "
	if len(s) >= len(p) && s[:len(p)] == p {
		return s[len(p):]
	}
	return s
}
