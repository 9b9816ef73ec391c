package health

import (
	"context"
	"net"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// grpcProber checks with grpc.health.v1.Health/Check. Each endpoint has a
// ClientConn of its own, made at its first check and kept until close, or
// until a check of it times out.
type grpcProber struct {
	cfg   *Config
	addrs []string
	eps   []grpcEndpoint
}

type grpcEndpoint struct {
	// cc and client are used by the endpoint's goroutine only, and by
	// close after that goroutine has ended.
	cc     *grpc.ClientConn
	client healthpb.HealthClient
	// connErr is why the last connection attempt failed (a dial, or a TLS
	// handshake after a dial that worked), nil after one that worked:
	// grpc-go reports both as a bare UNAVAILABLE, and this lets the reason
	// say "connect: connection refused" or "tls: ...".
	connErr atomic.Pointer[CheckError]
}

// handshakeRecorder wraps TLS transport credentials: it records endpoint
// ep's handshake failures in ep.connErr, and hands the handshake the
// configured ServerName, when there is one, in place of the :authority.
type handshakeRecorder struct {
	credentials.TransportCredentials
	ep         *grpcEndpoint
	serverName string
}

func (h *handshakeRecorder) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if h.serverName != "" {
		authority = h.serverName
	}
	c, info, err := h.TransportCredentials.ClientHandshake(ctx, authority, raw)
	switch {
	case err != nil && ctx.Err() != nil:
		// gRPC's connect deadline (or the connection's end) cut the
		// handshake short: not a TLS problem.
		h.ep.connErr.Store(&CheckError{Cause: CauseTimeout, Reason: "timeout", Err: err})
	case err != nil:
		h.ep.connErr.Store(&CheckError{Cause: CauseTLS, Reason: "tls: " + trimTLS(err.Error()), Err: &tlsError{err}})
	default:
		h.ep.connErr.Store(nil)
	}
	return c, info, err
}

func (h *handshakeRecorder) Clone() credentials.TransportCredentials {
	return &handshakeRecorder{TransportCredentials: h.TransportCredentials.Clone(), ep: h.ep, serverName: h.serverName}
}

func newGRPCProber(cfg *Config, addrs []string) *grpcProber {
	return &grpcProber{cfg: cfg, addrs: addrs, eps: make([]grpcEndpoint, len(addrs))}
}

// conn returns endpoint i's ClientConn, making it the first time.
func (p *grpcProber) conn(i int) (healthpb.HealthClient, error) {
	ep := &p.eps[i]
	if ep.client != nil {
		return ep.client, nil
	}
	creds := insecure.NewCredentials()
	// The :authority is Host, else TLS's ServerName, else the address.
	// grpc-go would take ServerName from the credentials as the authority
	// and refuse a different Host, so the credentials are given none: the
	// handshake uses ServerName when set and the authority's host when not.
	authority := p.cfg.Host
	if p.cfg.TLS != nil {
		tc := p.cfg.TLS.Clone()
		name := tc.ServerName
		tc.ServerName = ""
		creds = &handshakeRecorder{TransportCredentials: credentials.NewTLS(tc), ep: ep, serverName: name}
		if authority == "" {
			authority = name
		}
	}
	// grpc-go waits up to 120 s between reconnects by default; an
	// endpoint that comes back must be seen at the next check or so, so
	// the back-off never exceeds the shortest check interval.
	maxDelay := min(p.cfg.Interval, p.cfg.unhealthyInterval())
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  min(time.Second, maxDelay),
				Multiplier: backoff.DefaultConfig.Multiplier,
				Jitter:     backoff.DefaultConfig.Jitter,
				MaxDelay:   maxDelay,
			},
			MinConnectTimeout: p.cfg.Timeout,
		}),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, "tcp", addr)
			if err != nil {
				ep.connErr.Store(connectFailure(err))
				return nil, err
			}
			ep.connErr.Store(nil)
			return c, nil
		}),
		grpc.WithUserAgent(userAgent),
		// A health answer is a few bytes: read no more of it than of an
		// HTTP check's (grpc-go would take a 4 MiB message and 16 MiB of
		// headers from each endpoint at each check).
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxBody)),
		grpc.WithMaxHeaderListSize(maxBody),
		grpc.WithDisableRetry(),
		grpc.WithDisableServiceConfig(),
	}
	if authority != "" {
		opts = append(opts, grpc.WithAuthority(authority))
	}
	cc, err := grpc.NewClient("passthrough:///"+p.addrs[i], opts...)
	if err != nil {
		return nil, err
	}
	ep.cc, ep.client = cc, healthpb.NewHealthClient(cc)
	return ep.client, nil
}

func (p *grpcProber) check(ctx context.Context, i int) error {
	client, err := p.conn(i)
	if err != nil {
		return &CheckError{Cause: CauseGRPC, Reason: "grpc: " + err.Error(), Err: err}
	}
	// No WaitForReady: on a broken connection the call fails at once
	// instead of waiting out the timeout.
	resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: p.cfg.Service})
	if err != nil {
		if ctx.Err() != nil {
			// No answer in time: the connection may be one the network
			// no longer carries (a peer gone without a reset, a flow a
			// NAT or firewall forgot), which grpc-go, without keepalive
			// pings (servers refuse them more often than every 5
			// minutes), keeps using until the kernel gives up on it,
			// some 15 minutes later. The next check dials afresh, as an
			// HTTP check does after a failure.
			p.drop(i)
		}
		// An RPC error counts toward UnhealthyThreshold, whoever made
		// it. Envoy fails at once on a status the server sent, but
		// grpc-go reports a connection that broke (UNAVAILABLE), an
		// answer over the size limit (RESOURCE_EXHAUSTED) or a
		// malformed one (INTERNAL) with codes a server may send too:
		// taken as answers, a connection's blip would eject the
		// endpoint. An endpoint without the health service is still
		// failed at its first check, which decides alone.
		code := status.Code(err)
		if code == codes.Unavailable {
			if ce := p.eps[i].connErr.Load(); ce != nil {
				failed := *ce
				return &failed
			}
		}
		return &CheckError{Cause: CauseGRPC, Reason: "grpc: " + codeName(code), Err: err}
	}
	if s := resp.GetStatus(); s != healthpb.HealthCheckResponse_SERVING {
		return &CheckError{Cause: CauseGRPC, Reason: "grpc: " + s.String(), Immediate: true}
	}
	return nil
}

// reset makes a ClientConn waiting to reconnect try at once, so that the
// next check sees an endpoint that came back.
func (p *grpcProber) reset(i int, _ error) {
	if cc := p.eps[i].cc; cc != nil {
		cc.ResetConnectBackoff()
	}
}

// drop closes endpoint i's ClientConn, so that its next check makes a
// new one.
func (p *grpcProber) drop(i int) {
	ep := &p.eps[i]
	if ep.cc != nil {
		ep.cc.Close()
		ep.cc, ep.client = nil, nil
	}
}

func (p *grpcProber) close() {
	for i := range p.eps {
		if cc := p.eps[i].cc; cc != nil {
			cc.Close()
		}
	}
}

var _ prober = (*grpcProber)(nil)

// codeNames are the gRPC status codes as the protocol spells them.
var codeNames = [...]string{
	codes.OK:                 "OK",
	codes.Canceled:           "CANCELLED",
	codes.Unknown:            "UNKNOWN",
	codes.InvalidArgument:    "INVALID_ARGUMENT",
	codes.DeadlineExceeded:   "DEADLINE_EXCEEDED",
	codes.NotFound:           "NOT_FOUND",
	codes.AlreadyExists:      "ALREADY_EXISTS",
	codes.PermissionDenied:   "PERMISSION_DENIED",
	codes.ResourceExhausted:  "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION",
	codes.Aborted:            "ABORTED",
	codes.OutOfRange:         "OUT_OF_RANGE",
	codes.Unimplemented:      "UNIMPLEMENTED",
	codes.Internal:           "INTERNAL",
	codes.Unavailable:        "UNAVAILABLE",
	codes.DataLoss:           "DATA_LOSS",
	codes.Unauthenticated:    "UNAUTHENTICATED",
}

func codeName(c codes.Code) string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return c.String()
}
