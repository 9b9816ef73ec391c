package proxy

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http2"

	"github.com/outrigger-mesh/outrigger/proxy/h2client"
)

// gRPC status codes the proxy produces or inspects
// (https://github.com/grpc/grpc/blob/master/doc/statuscodes.md).
const (
	grpcOK                = 0
	grpcCanceled          = 1
	grpcDeadlineExceeded  = 4
	grpcPermissionDenied  = 7
	grpcResourceExhausted = 8
	grpcUnimplemented     = 12
	grpcInternal          = 13
	grpcUnavailable       = 14
)

// IsGRPC reports whether a request with header h speaks gRPC, as the
// proxy decides it (and answers it with gRPC local replies): its
// content-type is application/grpc or application/grpc+<codec> /
// application/grpc;<params>. An access log uses it to tell the requests
// whose grpc-status it records.
func IsGRPC(h http.Header) bool { return isGRPC(h) }

// isGRPC is IsGRPC.
func isGRPC(h http.Header) bool {
	// The map's keys are canonical, as is the literal: a direct lookup
	// is Header.Get without its canonicalisation of the key.
	vv := h["Content-Type"]
	if len(vv) == 0 {
		return false
	}
	ct := vv[0]
	if !strings.HasPrefix(ct, "application/grpc") {
		return false
	}
	rest := ct[len("application/grpc"):]
	return rest == "" || rest[0] == '+' || rest[0] == ';'
}

var errBadTimeout = errors.New("malformed grpc-timeout")

// maxTimeoutDigits is the spec's limit: "TimeoutValue → {positive integer
// as ASCII string of at most 8 digits}".
const maxTimeoutDigits = 8

// parseGRPCTimeout decodes a grpc-timeout header value as defined in
// https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md:
// 1 to 8 ASCII digits followed by one unit letter H, M, S, m, u or n.
// Values that overflow time.Duration saturate to the largest duration.
func parseGRPCTimeout(s string) (time.Duration, error) {
	if len(s) < 2 || len(s) > maxTimeoutDigits+1 {
		return 0, errBadTimeout
	}
	var unit time.Duration
	switch s[len(s)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, errBadTimeout
	}
	var v int64
	for i := 0; i < len(s)-1; i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, errBadTimeout
		}
		v = v*10 + int64(c-'0')
	}
	// At most 99,999,999 hours: saturate instead of overflowing.
	if v > int64(maxDuration/unit) {
		return maxDuration, nil
	}
	return time.Duration(v) * unit, nil
}

const maxDuration = time.Duration(1<<63 - 1)

// formatGRPCTimeout encodes d for the grpc-timeout header using the finest
// unit whose value fits in 8 digits, rounding up so that the upstream never
// sees more time than remains. d <= 0 encodes as "1n" (already expired but
// still a valid header; the upstream then fails fast with DEADLINE_EXCEEDED).
func formatGRPCTimeout(d time.Duration) string {
	if d <= 0 {
		return "1n"
	}
	const max = 99999999
	units := [...]struct {
		d time.Duration
		c byte
	}{
		{time.Nanosecond, 'n'},
		{time.Microsecond, 'u'},
		{time.Millisecond, 'm'},
		{time.Second, 'S'},
		{time.Minute, 'M'},
		{time.Hour, 'H'},
	}
	for _, u := range units {
		// Rounded up without adding to d, which may be within a unit
		// of the largest duration (a saturated grpc-timeout).
		v := d / u.d
		if d%u.d != 0 {
			v++
		}
		if v <= max {
			return strconv.FormatInt(int64(v), 10) + string(u.c)
		}
	}
	return "99999999H"
}

// encodeGRPCMessage percent-encodes a grpc-message value: bytes outside the
// printable ASCII range 0x20-0x7E, and '%' itself, become %XX (PROTOCOL-HTTP2.md,
// "Status-Message").
func encodeGRPCMessage(msg string) string {
	clean := true
	for i := 0; i < len(msg); i++ {
		if c := msg[i]; c < 0x20 || c > 0x7e || c == '%' {
			clean = false
			break
		}
	}
	if clean {
		return msg
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(msg) + 8)
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		if c < 0x20 || c > 0x7e || c == '%' {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// grpcTrailersOnly reports whether resp, the answer to a gRPC call, is
// Trailers-Only: its grpc-status in a header block that ended the stream
// (gRPC's PROTOCOL-HTTP2.md: HEADERS with END_STREAM). A grpc-status in a
// header block that did not end the stream is not the call's: the
// trailers carry that, and a client (grpc-go's) reads it from them only,
// failing the call INTERNAL when the stream ends without them.
func grpcTrailersOnly(resp *http.Response) bool {
	return resp.Header["Grpc-Status"] != nil && h2client.EndedAtHead(resp)
}

// grpcStatusFrom returns the grpc-status carried by h, or -1 when absent or
// malformed.
func grpcStatusFrom(h http.Header) int {
	v := h["Grpc-Status"]
	if len(v) == 0 {
		return -1
	}
	n, err := strconv.Atoi(v[0])
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// grpcFrames follows the length-prefixed messages of a gRPC body as it
// passes (a 5-byte prefix: a compressed flag and a big-endian length,
// then that many bytes), to know whether the body read so far ends
// between two messages. It reads no more than the prefixes.
type grpcFrames struct {
	prefix [5]byte
	have   int    // bytes of the current prefix seen
	left   uint64 // bytes of the current message not yet seen
}

// feed takes the next bytes of the body.
func (g *grpcFrames) feed(p []byte) {
	for len(p) > 0 {
		if g.left > 0 {
			n := uint64(len(p))
			if n > g.left {
				n = g.left
			}
			p = p[n:]
			g.left -= n
			continue
		}
		n := copy(g.prefix[g.have:], p)
		p = p[n:]
		if g.have += n; g.have == len(g.prefix) {
			g.have = 0
			g.left = uint64(g.prefix[1])<<24 | uint64(g.prefix[2])<<16 | uint64(g.prefix[3])<<8 | uint64(g.prefix[4])
		}
	}
}

// between reports whether the bytes fed end a message (or are none).
func (g *grpcFrames) between() bool { return g.have == 0 && g.left == 0 }

// grpcStatusOfReset is the status a gRPC client gives a call whose
// stream was reset with code (the table of gRPC's PROTOCOL-HTTP2.md).
func grpcStatusOfReset(code http2.ErrCode) int {
	switch code {
	case http2.ErrCodeRefusedStream:
		return grpcUnavailable
	case http2.ErrCodeCancel:
		return grpcCanceled
	case http2.ErrCodeEnhanceYourCalm:
		return grpcResourceExhausted
	case http2.ErrCodeInadequateSecurity:
		return grpcPermissionDenied
	}
	return grpcInternal
}
