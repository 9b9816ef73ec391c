package h2client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

const (
	// connWindow and streamWindow are the receive windows advertised for
	// the connection and (as SETTINGS_INITIAL_WINDOW_SIZE) for each
	// stream. Stream windows bound what a stream buffers; the connection's
	// is returned as DATA arrives, so a stream whose reader stalls does
	// not hold up the others.
	connWindow   = 4 << 20
	streamWindow = 1 << 20
	// connRefresh and streamRefresh are how much consumed window is
	// returned in one WINDOW_UPDATE: batched, not one per DATA frame.
	connRefresh   = connWindow / 4
	streamRefresh = streamWindow / 4

	// defaultMaxFrame is RFC 9113's initial SETTINGS_MAX_FRAME_SIZE, for
	// both directions (a larger one is not advertised).
	defaultMaxFrame = 16 << 10
	// initialPeerWindow is RFC 9113's initial flow-control window.
	initialPeerWindow = 65535
	maxWindow         = 1<<31 - 1
	// maxStreamID is the last client stream id (odd, below 2^31).
	maxStreamID = 1<<31 - 1

	// maxPending bounds the bytes queued for the writer: DATA frames
	// wait beyond it (control frames and HEADERS do not).
	maxPending = 512 << 10
	// maxControlQueue bounds what a server that does not read can make
	// the reader queue in answers (PING and SETTINGS acknowledgements).
	maxControlQueue = 2 * maxPending
	// maxKeptBuffer is the largest write buffer kept for reuse.
	maxKeptBuffer  = 256 << 10
	readBufferSize = 32 << 10

	// noHeaderListLimit stands for a server that announced no
	// SETTINGS_MAX_HEADER_LIST_SIZE (RFC 9113 §6.5.2: unlimited).
	noHeaderListLimit = 1<<64 - 1
)

// brPool recycles connection read buffers.
var brPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufferSize) }}

// conn is one HTTP/2 connection: a reader goroutine that dispatches the
// server's frames and a writer goroutine that writes whatever frames the
// streams queued, many per system call.
type conn struct {
	t      *Transport
	hp     *hostPool
	nc     net.Conn
	scheme string // "https" over TLS, else "http"
	br     *bufio.Reader
	guard  headerGuard // between br and fr
	fr     *http2.Framer
	hdec   headerDecoder // response header blocks; the reader's

	done       chan struct{} // closed by close
	wake       chan struct{} // buffered(1): bytes queued for the writer
	readerDone chan struct{}
	writerDone chan struct{}
	framesRead atomic.Uint64 // for the keepalive check
	// writesBegun and writesEnded count the writer's system calls, for
	// the keepalive's check that the server still reads.
	writesBegun atomic.Uint64
	writesEnded atomic.Uint64

	mu sync.Mutex
	// closed: the connection is finished; err says why.
	closed bool
	err    error
	// noNew: no new streams (GOAWAY, idle close, stream ids spent).
	noNew bool
	// closeWhenIdle closes the connection when its last stream ends.
	closeWhenIdle bool
	goAway        bool
	streams       map[uint32]*stream
	nextID        uint32
	// reserved counts open streams plus slots reserved by getConn for
	// requests about to open one: what SETTINGS_MAX_CONCURRENT_STREAMS
	// caps.
	reserved  int
	used      bool // a stream was reserved before
	idleSince time.Time
	// born is when the connection was made; started counts the streams
	// reserved on it, both for the Transport's MaxConnAge and
	// MaxStreamsPerConn.
	born      time.Time
	started   int
	idleTimer *time.Timer
	// Keepalive (ReadIdleTimeout/PingTimeout).
	keepTimer  *time.Timer
	lastFrames uint64
	lastWrite  uint64 // writesBegun at the previous check
	pingSent   bool
	pingData   [8]byte
	lastPing   time.Time // when the previous PING was sent
	// settingsAcked: the server acknowledged our SETTINGS; settingsTimer
	// closes the connection when it has not within PingTimeout of the
	// preface (RFC 9113 §6.5.3).
	settingsAcked bool
	settingsTimer *time.Timer

	// What the server allows.
	maxStreams     uint32
	peerInitWindow int64
	peerMaxFrame   uint32
	// peerMaxHeaderList is the server's SETTINGS_MAX_HEADER_LIST_SIZE,
	// noHeaderListLimit until it announces one.
	peerMaxHeaderList uint64
	sendWindow        int64     // connection send window
	connWaiters       []*stream // streams waiting for sendWindow
	// Receive window of the connection: what the server may still send,
	// and what was received but not yet given back.
	recvAvail  int64
	recvUnsent int64

	// Write side: frames are appended to wbuf; the writer swaps it with
	// spare and writes it out. appended counts appends; taken is the
	// value of appended covered by the buffers the writer took: bytes it
	// may have written, even when the write then failed.
	wbuf     []byte
	spare    []byte
	appended uint64
	taken    uint64
	// answers counts the bytes of PING and SETTINGS acknowledgements in
	// wbuf: what maxControlQueue bounds.
	answers int
	// drained, made by a DATA appender waiting on maxPending, is closed
	// when the writer takes the buffer.
	drained chan struct{}
	// henc encodes header blocks into hbuf, under mu, so that the
	// dynamic table's order is the order of the bytes on the wire.
	henc *hpack.Encoder
	hbuf bytes.Buffer
}

// newConn runs the handshake on nc (preface, SETTINGS and a connection
// WINDOW_UPDATE out; the server's SETTINGS in) and starts the reader and
// writer. The handshake is bounded by ctx and by PingTimeout, and so is
// the acknowledgement of our SETTINGS, which the reader waits for.
//
// The bound is PingTimeout because the two frames are due at once, as a
// PING's answer is: a server sends its SETTINGS first thing (RFC 9113
// §3.4) and acknowledges ours "immediately" (§6.5.3), so a server that
// takes longer is, for this client, as good as one that does not answer
// a PING. x/net/http2's server waits 2 s for a client's first SETTINGS
// and its Transport sets no bound; the cluster's connect timeout (1 s by
// default) would cut off a server that is merely slow to schedule a new
// connection, which PingTimeout (15 s in the proxy) tolerates.
func newConn(ctx context.Context, t *Transport, hp *hostPool, nc net.Conn) (*conn, error) {
	c := &conn{
		t:                 t,
		hp:                hp,
		nc:                nc,
		scheme:            "http",
		done:              make(chan struct{}),
		wake:              make(chan struct{}, 1),
		readerDone:        make(chan struct{}),
		writerDone:        make(chan struct{}),
		streams:           make(map[uint32]*stream),
		nextID:            1,
		born:              t.now(),
		maxStreams:        100,
		peerInitWindow:    initialPeerWindow,
		peerMaxFrame:      defaultMaxFrame,
		peerMaxHeaderList: noHeaderListLimit,
		sendWindow:        initialPeerWindow,
		recvAvail:         connWindow,
	}
	if _, ok := nc.(interface{ ConnectionState() tls.ConnectionState }); ok {
		c.scheme = "https"
	}
	c.henc = hpack.NewEncoder(&c.hbuf)
	c.br = brPool.Get().(*bufio.Reader)
	c.br.Reset(nc)
	c.guard = headerGuard{r: c.br, nc: nc, maxConts: maxContinuations(t.maxHeaderListSize())}
	c.fr = http2.NewFramer(io.Discard, &c.guard)
	c.hdec.init(t.maxHeaderListSize())
	c.fr.SetMaxReadFrameSize(defaultMaxFrame)
	c.fr.SetReuseFrames()

	settingsDeadline := time.Now().Add(t.pingTimeout())
	nc.SetDeadline(settingsDeadline)
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(aLongTimeAgo) })
	err := c.handshake()
	if !stop() {
		err = context.Cause(ctx)
	} else if errors.Is(err, os.ErrDeadlineExceeded) {
		c.goAwayHandshake(http2.ErrCodeSettingsTimeout)
		err = fmt.Errorf("%w: no SETTINGS from the server within %v", errSettingsTimeout, t.pingTimeout())
	}
	if err != nil {
		c.releaseReader()
		return nil, err
	}
	nc.SetDeadline(time.Time{})
	// From here on the read deadline is the guard's, for header blocks
	// (see headerGuard).
	c.guard.timeout = t.pingTimeout()
	c.idleSince = t.now()
	if d := t.readIdleTimeout(); d > 0 {
		c.keepTimer = time.AfterFunc(d, c.keepalive)
	}
	c.settingsTimer = time.AfterFunc(time.Until(settingsDeadline), c.settingsCheck)
	go c.readLoop()
	go c.writeLoop()
	c.wakeWriterLocked() // the SETTINGS ack
	return c, nil
}

// errSettingsTimeout ends a connection whose server did not send its
// SETTINGS, or acknowledge ours, within PingTimeout (RFC 9113 §6.5.3).
var errSettingsTimeout = errors.New("h2client: SETTINGS timeout")

// settingsCheck runs PingTimeout after the preface: a server that has
// not acknowledged our SETTINGS by then is sent GOAWAY SETTINGS_TIMEOUT
// and the connection closes (RFC 9113 §6.5.3). Its streams fail as on
// any closed connection: those whose HEADERS never left are sent again
// elsewhere.
func (c *conn) settingsCheck() {
	c.mu.Lock()
	over := c.closed || c.settingsAcked
	c.mu.Unlock()
	if !over {
		c.failConn(http2.ErrCodeSettingsTimeout, fmt.Errorf("%w: our SETTINGS not acknowledged within %v", errSettingsTimeout, c.t.pingTimeout()))
	}
}

func (c *conn) handshake() error {
	b := append([]byte(nil), http2.ClientPreface...)
	b = appendSettings(b, []http2.Setting{
		{ID: http2.SettingEnablePush, Val: 0},
		{ID: http2.SettingInitialWindowSize, Val: streamWindow},
		{ID: http2.SettingMaxHeaderListSize, Val: c.t.maxHeaderListSize()},
	})
	b = appendWindowUpdate(b, 0, connWindow-initialPeerWindow)
	if _, err := c.nc.Write(b); err != nil {
		return err
	}
	f, err := c.fr.ReadFrame()
	if err == nil {
		sf, ok := f.(*http2.SettingsFrame)
		switch {
		case !ok:
			err = connErrorf(http2.ErrCodeProtocol, "server sent %v before its SETTINGS", f.Header().Type)
		case sf.IsAck():
			err = connErrorf(http2.ErrCodeProtocol, "server acknowledged our SETTINGS before sending its own")
		default:
			c.mu.Lock()
			err = c.onSettingsLocked(sf)
			c.mu.Unlock()
		}
	}
	if code, ok := connErrorCode(err); ok {
		c.goAwayHandshake(code)
		return fmt.Errorf("connection error %v in the server's connection preface: %w", code, err)
	}
	return err
}

// goAwayHandshake tells a server that broke the protocol in its
// connection preface, or did not send it in time, why the connection
// closes (RFC 9113 §5.4.1), within a second: nothing else has been
// written after our SETTINGS.
func (c *conn) goAwayHandshake(code http2.ErrCode) {
	c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	c.nc.Write(appendGoAway(nil, 0, code))
}

// HandshakeError is a connection to an upstream whose HTTP/2 handshake
// failed: the server closed it, sent something other than a valid
// SETTINGS frame first, or sent nothing within PingTimeout (it is then
// sent GOAWAY SETTINGS_TIMEOUT), or the dialling request's context ended
// first (Err is then its cause). No request was sent on it, so, like a
// refused TCP connection, it is a failure to connect: every request that
// waited for the connection fails with it, bar one whose dialling
// request's context ended, when they dial again. Test with errors.As.
type HandshakeError struct {
	Addr string
	Err  error
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("h2client: handshake with %s: %v", e.Addr, e.Err)
}

func (e *HandshakeError) Unwrap() error { return e.Err }

func (c *conn) releaseReader() {
	c.br.Reset(nil)
	brPool.Put(c.br)
	c.br = nil
}

// reserve takes a stream slot when the connection can open one more
// stream. expired reports a connection idle beyond IdleTimeout, or idle
// with its stream ids spent, which the caller closes; closing, one that
// will take no new stream (closed, after GOAWAY, past MaxConnAge or
// MaxStreamsPerConn), whose streams only end. Called with the
// Transport's mu held.
func (c *conn) reserve(now time.Time) (ok, reused, expired, closing bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.noNew {
		return false, false, false, true
	}
	if c.reserved == 0 && c.used {
		if d := c.t.idleTimeout(); d > 0 && now.Sub(c.idleSince) >= d {
			c.noNew = true
			return false, false, true, true
		}
	}
	if uint64(c.nextID)+2*uint64(c.reserved) > maxStreamID || c.agedLocked(now) {
		c.noNew, c.closeWhenIdle = true, true
		if c.hp != nil {
			// Spent or aged, found by this look: the requests waiting
			// at DialOverflow's cap look again too (see
			// countStreamLocked).
			c.hp.freed.notify()
		}
		// Idle already: no stream's end will close it.
		return false, false, c.reserved == 0, true
	}
	if uint32(c.reserved) >= c.maxStreams {
		return false, false, false, false
	}
	c.reserved++
	c.countStreamLocked()
	reused = c.used
	c.used = true
	return true, reused, false, false
}

// agedLocked reports whether the connection is past the Transport's
// MaxConnAge at now.
func (c *conn) agedLocked(now time.Time) bool {
	return c.t.MaxConnAge > 0 && now.Sub(c.born) >= c.t.MaxConnAge
}

// countStreamLocked counts a stream reserved on the connection; the last
// one MaxStreamsPerConn allows closes it to new ones, and it closes when
// its streams have ended.
func (c *conn) countStreamLocked() {
	c.started++
	if m := c.t.MaxStreamsPerConn; m > 0 && c.started >= m {
		c.noNew, c.closeWhenIdle = true, true
		if c.hp != nil {
			// As after GOAWAY: the requests waiting at DialOverflow's
			// cap look again, and dial the host's next connection if
			// it has no other. A stream's end wakes only the first in
			// line, which may be the one that took this last stream.
			c.hp.freed.notify()
		}
	}
}

// reserveFirst takes the first stream slot of a new connection for the
// request that dialled it. A connection that already failed or received
// GOAWAY (usable false; it is not listed, and removeConn found nothing
// to remove) is taken all the same: the request meets it unusable in
// roundTrip and is sent again on another connection, instead of failing
// as if the server allowed no streams. One whose server allows no
// streams (ok and usable false) is not listed either: the caller closes
// it, since without a stream it would never reach its idle timeout.
// Called with the Transport's mu held.
func (c *conn) reserveFirst() (ok, usable bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.goAway {
		c.reserved++
		return true, false
	}
	if c.maxStreams == 0 {
		c.noNew = true
		return false, false
	}
	c.reserved++
	c.countStreamLocked()
	c.used = true
	return true, true
}

// takeIfIdle marks a connection without streams as closing (no new
// streams) and reports whether it did.
func (c *conn) takeIfIdle() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.reserved > 0 {
		return false
	}
	c.noNew = true
	return true
}

// drain has the connection take no new stream and close when its last
// stream ends, and reports whether it has none (reserved slots count),
// for the caller to close it now.
func (c *conn) drain() (idle bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.noNew, c.closeWhenIdle = true, true
	return c.reserved == 0
}

// releaseLocked gives back a slot reserve took or a stream held.
func (c *conn) releaseLocked() {
	c.reserved--
	if c.hp != nil {
		c.hp.freed.notifyOne()
	}
	if c.reserved > 0 {
		return
	}
	c.idleSince = c.t.now()
	if d, ok := c.idleWaitLocked(c.idleSince); ok && !c.closed {
		d = max(d, 0)
		if c.idleTimer == nil {
			c.idleTimer = time.AfterFunc(d, c.idleCheck)
		} else {
			c.idleTimer.Reset(d)
		}
	}
}

// idleWaitLocked is how long from now an idle connection stays open: the
// rest of its IdleTimeout, or of its MaxConnAge when that ends first (an
// aged connection that no request finds aged would otherwise stay open
// until IdleTimeout); ok is false when neither bounds it.
func (c *conn) idleWaitLocked(now time.Time) (wait time.Duration, ok bool) {
	if d := c.t.idleTimeout(); d > 0 {
		wait, ok = d-now.Sub(c.idleSince), true
	}
	if a := c.t.MaxConnAge; a > 0 {
		if rest := a - now.Sub(c.born); !ok || rest < wait {
			wait, ok = rest, true
		}
	}
	return wait, ok
}

// unlock releases mu, then closes the connection if it was waiting for
// its last stream to end.
func (c *conn) unlock() {
	closeNow := c.closeWhenIdle && c.reserved == 0 && !c.closed
	c.mu.Unlock()
	if closeNow {
		c.close(errGoingAway)
	}
}

var errGoingAway = errors.New("h2client: connection closed after GOAWAY")

// idleCheck closes the connection once it has been idle IdleTimeout, or
// is past MaxConnAge, by the Transport's clock; else it re-arms for the
// rest.
func (c *conn) idleCheck() {
	c.mu.Lock()
	if c.closed || c.reserved > 0 {
		c.mu.Unlock()
		return
	}
	if rest, _ := c.idleWaitLocked(c.t.now()); rest > 0 {
		c.idleTimer.Reset(rest)
		c.mu.Unlock()
		return
	}
	c.noNew = true
	c.mu.Unlock()
	c.close(errIdleClosed)
}

// keepalive runs every ReadIdleTimeout: after a period without a frame
// read it sends a PING, unless it sent one within MinPingInterval, and
// closes the connection when the PING is not answered within
// PingTimeout.
//
// It also closes a connection whose writer is blocked in a write that
// had begun by the previous check: a server that stops reading, once
// the socket buffers are full, blocks the writer for ever, and may go on
// sending frames, so that no PING is ever due. Its requests would wait
// for their own deadlines, and new ones would still be placed on it.
// Flow control and maxPending keep one write to what the server's
// windows allowed, about 512 KiB at most: a server that takes more than
// a ReadIdleTimeout (30 s in the proxy) to read that much is taken to
// have stopped, as x/net/http2's WriteByteTimeout, when set, takes one
// that accepts no byte for as long.
func (c *conn) keepalive() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	w := c.writesBegun.Load()
	if w == c.lastWrite && w != c.writesEnded.Load() {
		c.mu.Unlock()
		c.close(errWriteStalled)
		// The stalled write need not be given the second close allows
		// for writing what was queued: nothing more will go out.
		c.nc.SetWriteDeadline(aLongTimeAgo)
		return
	}
	c.lastWrite = w
	if c.pingSent {
		c.mu.Unlock()
		c.close(errPingTimeout)
		return
	}
	n := c.framesRead.Load()
	now := time.Now()
	if n != c.lastFrames || !c.lastPing.IsZero() && now.Sub(c.lastPing) < c.t.minPingInterval() {
		// Frames came, or the previous PING is too recent: a gRPC
		// server counts PINGs closer than its minimum, and ends the
		// connection after a few (see MinPingInterval).
		c.lastFrames = n
		c.keepTimer.Reset(c.t.readIdleTimeout())
		c.mu.Unlock()
		return
	}
	c.pingSent = true
	c.lastPing = now
	c.pingData[0]++
	c.wbuf = appendFrameHeader(c.wbuf, 8, http2.FramePing, 0, 0)
	c.wbuf = append(c.wbuf, c.pingData[:]...)
	c.wakeWriterLocked()
	c.keepTimer.Reset(c.t.pingTimeout())
	c.mu.Unlock()
}

var errPingTimeout = errors.New("h2client: connection closed: no answer to PING")

// errWriteStalled closes a connection whose server stopped reading: a
// write to it has not returned between two keepalive checks.
var errWriteStalled = errors.New("h2client: connection closed: the server stopped reading")

// close ends the connection: every stream fails with err (retryable
// when the writer never took its HEADERS), the writer closes the socket,
// which ends the reader.
func (c *conn) close(err error) { c.shutdown(err, false, 0) }

// shutdown is close, sending GOAWAY with code first (within a second)
// when goAway is set.
// The frames the writer has not taken are dropped, not flushed: they
// include the HEADERS of the streams failed here as never written, which
// are sent again on another connection and must not reach this server
// too.
func (c *conn) shutdown(err error, goAway bool, code http2.ErrCode) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed, c.noNew, c.err = true, true, err
	for _, s := range c.streams {
		c.abortLocked(s, &connError{err: err}, s.seq > c.taken)
	}
	c.wbuf = c.wbuf[:0]
	if goAway {
		c.wbuf = appendGoAway(c.wbuf, 0, code)
	}
	if c.idleTimer != nil {
		c.idleTimer.Stop()
	}
	if c.keepTimer != nil {
		c.keepTimer.Stop()
	}
	if c.settingsTimer != nil {
		c.settingsTimer.Stop()
	}
	if c.drained != nil {
		close(c.drained)
		c.drained = nil
	}
	c.mu.Unlock()
	close(c.done)
	c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	c.t.removeConn(c)
}

// connError is the error of a stream whose connection failed.
type connError struct{ err error }

func (e *connError) Error() string { return e.err.Error() }
func (e *connError) Unwrap() error { return e.err }

// failConn sends GOAWAY with code and closes the connection: the
// server broke the protocol (RFC 9113 §5.4.1).
func (c *conn) failConn(code http2.ErrCode, err error) {
	c.shutdown(fmt.Errorf("h2client: connection error %v: %w", code, err), true, code)
}

// wakeWriterLocked tells the writer there are bytes to write.
func (c *conn) wakeWriterLocked() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}
