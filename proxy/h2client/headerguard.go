package h2client

import (
	"errors"
	"io"
	"net"
	"os"
	"time"

	"golang.org/x/net/http2"
)

// headerGuard sits between a connection's buffered reader and its
// Framer and follows the frame headers going by, to bound what the
// Framer does not: a HEADERS frame and all its CONTINUATION frames are
// read in one go (see headerDecoder), bounding the decoded fields
// (MaxHeaderListSize) but neither the frames nor the time. Empty
// CONTINUATION frames, or frames of HPACK table size updates, decode to
// nothing, and no PING answer can come while a header block is open
// (RFC 9113 §6.10): a server could hold the reader in one block for
// ever, at the cost of a frame header now and then.
//
// A block may have maxContinuations CONTINUATION frames and stay open
// for PingTimeout (the time a PING answer may take, since none can come
// meanwhile); beyond either, the read fails with a peerError and the
// connection ends with GOAWAY ENHANCE_YOUR_CALM. The time is enforced
// with the socket's read deadline, which the guard owns once the
// handshake is over (timeout is 0 until then, when the handshake's
// deadline bounds everything).
type headerGuard struct {
	r        io.Reader // the connection's bufio.Reader
	nc       net.Conn  // whose read deadline bounds an open block
	maxConts int
	timeout  time.Duration

	hdr    [frameHeaderLen]byte
	hn     int    // bytes of hdr collected
	remain uint32 // payload bytes of the current frame still to pass
	// open: a header block has begun without END_HEADERS; conts counts
	// its CONTINUATION frames, and it must end by deadline.
	open     bool
	conts    int
	deadline time.Time
	err      error
}

var (
	errTooManyContinuations = errors.New("h2client: header block of too many CONTINUATION frames")
	errHeaderBlockTimeout   = errors.New("h2client: header block not ended in time")
)

// maxContinuations is how many CONTINUATION frames a response header
// block may have under a header list limit of maxList, as proxy/h2server
// allows a request's: 16, and one per KiB of the limit, which lets a
// block of twice the limit (fields and "trailer" fields) come in frames
// of 2 KiB, an eighth of the frame size.
func maxContinuations(maxList uint32) int {
	return 16 + int(maxList>>10)
}

func (g *headerGuard) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	n, err := g.r.Read(p)
	if gerr := g.scan(p[:n]); gerr != nil {
		g.err = gerr
		return 0, gerr
	}
	if err != nil && g.open && g.timeout > 0 && errors.Is(err, os.ErrDeadlineExceeded) {
		g.err = g.timedOut()
		return n, g.err
	}
	return n, err
}

// lastType is the type of the frame whose header went by last: the
// frame the Framer has read, or is reading.
func (g *headerGuard) lastType() http2.FrameType { return http2.FrameType(g.hdr[3]) }

// atFrameEnd reports whether the bytes read so far end a frame: none of
// a next frame's header or of the payload of the last one is missing.
func (g *headerGuard) atFrameEnd() bool { return g.hn == 0 && g.remain == 0 }

func (g *headerGuard) timedOut() error {
	return &peerError{code: http2.ErrCodeEnhanceYourCalm, err: errHeaderBlockTimeout}
}

// scan follows the frame headers in b, the bytes the Framer is given.
func (g *headerGuard) scan(b []byte) error {
	for len(b) > 0 {
		if g.remain > 0 {
			k := uint32(min(uint64(len(b)), uint64(g.remain)))
			g.remain -= k
			b = b[k:]
			continue
		}
		k := copy(g.hdr[g.hn:], b)
		g.hn += k
		b = b[k:]
		if g.hn < frameHeaderLen {
			return nil
		}
		g.hn = 0
		g.remain = uint32(g.hdr[0])<<16 | uint32(g.hdr[1])<<8 | uint32(g.hdr[2])
		if err := g.frame(http2.FrameType(g.hdr[3]), http2.Flags(g.hdr[4])); err != nil {
			return err
		}
	}
	return nil
}

// frame sees one frame header. Frames out of order (a CONTINUATION
// without a block, another frame inside one) are the Framer's to
// report.
func (g *headerGuard) frame(typ http2.FrameType, flags http2.Flags) error {
	// END_HEADERS is the same bit in HEADERS, PUSH_PROMISE and
	// CONTINUATION.
	ended := flags&http2.FlagHeadersEndHeaders != 0
	switch typ {
	case http2.FrameHeaders, http2.FramePushPromise:
		if ended {
			return nil
		}
		g.open, g.conts = true, 0
		if g.timeout > 0 {
			g.deadline = time.Now().Add(g.timeout)
			g.nc.SetReadDeadline(g.deadline)
		}
	case http2.FrameContinuation:
		if !g.open {
			return nil
		}
		if g.conts++; g.conts > g.maxConts {
			return &peerError{code: http2.ErrCodeEnhanceYourCalm, err: errTooManyContinuations}
		}
		if g.timeout > 0 && time.Now().After(g.deadline) {
			// Frames that were buffered before the deadline passed.
			return g.timedOut()
		}
		if ended {
			g.open = false
			if g.timeout > 0 {
				g.nc.SetReadDeadline(time.Time{})
			}
		}
	}
	return nil
}
