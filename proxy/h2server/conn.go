package h2server

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/outrigger-mesh/outrigger/proxy/internal/reqctx"
)

// serverConn is one HTTP/2 connection. Its reader goroutine (the one
// that called ServeConn) reads and acts on frames; each stream's handler
// runs on a goroutine of its own; writeLoop writes what they append.
type serverConn struct {
	srv     *Server
	nc      net.Conn
	handler http.Handler
	ctx     context.Context // the connection's; streams' contexts take values, deadline and end from it
	cancel  context.CancelFunc
	reqConn reqctx.Conn // what the streams' contexts share of ctx
	remote  string
	// tls is ConnOpts.TLS: every request's Request.TLS.
	tls *tls.ConnectionState
	br  *bufio.Reader
	fr  *http2.Framer
	hr  *headerReader

	streamWindow int32 // receive window announced per stream
	connWindow   int32 // receive window of the connection
	maxStreams   uint32
	maxHeaders   uint32        // SETTINGS_MAX_HEADER_LIST_SIZE announced and enforced
	idleTimeout  time.Duration // zero: none
	blockTimeout time.Duration // how long a header block may stay open

	wake       chan struct{} // wakes writeLoop; capacity 1
	writerDone chan struct{}
	handlers   sync.WaitGroup // running handlers
	// Handler goroutines (see workers.go): workers counts them; an idle
	// one waits on work for a stream until work is closed, after the
	// reader has ended; idleWorkers counts those waiting.
	workers     sync.WaitGroup
	work        chan *stream
	idleWorkers atomic.Int32
	// idleTimer fires workerTrim into a quiet spell (no streams), when
	// that is shorter than idleTimeout, to end the idle workers
	// (trimWorkersLocked), then at idleTimeout; trimPending (under mu)
	// says which is next.
	idleTimer   *time.Timer
	trimPending bool
	stopWatch   func() bool // stops closeNow on the context's end
	// blockTimer, made with the first header block that goes on past
	// its HEADERS frame, ends the connection if a block stays open
	// past blockTimeout (see headerBlockOpen).
	blockTimer *time.Timer

	mu sync.Mutex
	// Handlers waiting to send (waitSendLocked) are woken when they may
	// proceed: a window opened, a write finished, their stream was reset
	// or the connection died.
	sendWaiters int // handlers waiting to send
	sendWakes   int // times a waiting handler was woken (tests)
	// wbuf holds the frames not yet handed to the writer; spare is the
	// buffer the writer gave back.
	wbuf, spare []byte
	// ctrlPending counts the bytes the reader appended (acknowledgements,
	// resets) since the writer last took wbuf.
	ctrlPending     int
	writing         bool // the writer is in a Write call
	wakePending     bool // a wake is queued
	closeAfterFlush bool // the writer ends the connection after its next flush
	dead            bool // the connection is gone: appends are dropped
	enc             *hpack.Encoder
	// ended are streams whose contexts ended under mu with functions
	// registered for the end, which unlock runs.
	ended []*stream

	streams     map[uint32]*stream // streams whose handler runs
	maxClientID uint32             // highest stream id the client opened
	goAwaySent  bool
	goAwayLast  uint32 // the stream id the GOAWAY named: later ones may not name more (RFC 9113 §6.8)
	draining    bool   // no new streams; end once streams is empty
	// noticePending: the shutdown notice (GOAWAY naming maxStreamID, see
	// shutdown.go) is out and the final GOAWAY is not; noticeTimer sends
	// the final one if the notice's PING is not acknowledged first.
	noticePending bool
	noticeTimer   *time.Timer
	// opening: the reader is building a request for a stream id it has
	// taken (and that a GOAWAY sent meanwhile names) but not registered
	// yet; the connection is not without streams.
	opening bool
	// recentResets are the last reset streams whose handlers are gone.
	// Frames the client sent before it saw the server's reset are
	// ignored (RFC 9113 §5.4.2), not answered as if on a closed stream;
	// a stream the client reset is marked (resetByClient), for a frame
	// the client sends after its own RST_STREAM is a stream error of
	// type STREAM_CLOSED (RFC 9113 §5.1).
	recentResets [128]uint32
	recentNext   int

	peerMaxFrame uint32
	// peerMaxHeaderList is the client's SETTINGS_MAX_HEADER_LIST_SIZE
	// (0: none announced): a header block over it is not sent (see
	// headerListFitsLocked).
	peerMaxHeaderList uint32
	peerInitWindow    int32
	sendWindow        int64 // connection send window
	recvAvail         int32 // what the client may still send on the connection
	recvUnacked       int32 // received and consumed, not yet returned to it

	// emptyData counts the DATA frames in a row that carried no data
	// and did not end their stream (maxEmptyData).
	emptyData int

	// A header block is open (blockOpen) until blockDeadline; past it,
	// blockExpired, the reader's read fails and the connection ends.
	blockOpen     bool
	blockExpired  bool
	blockDeadline time.Time

	// Rapid-reset accounting (see doc.go): completed counts streams
	// answered in full; bad counts streams refused, reset by the client
	// before their response ended, or malformed.
	completed, bad int
}

// calmSlack is how many bad streams a connection may have beyond the
// number it completed before it gets GOAWAY ENHANCE_YOUR_CALM.
const calmSlack = 100

// maxEmptyData bounds the DATA frames in a row without data or
// END_STREAM (CVE-2019-9518): each costs the reader a frame and gives
// the handler nothing. Netty allows 10, Envoy 1; no client needs more
// than a few.
const maxEmptyData = 100

// prematureReset: a stream the client resets sooner than this after
// opening it, before its response ended, is bad (Envoy's default minimum
// stream lifetime for the same rule).
const prematureReset = time.Second

// clock is the time on the server's clock.
func (sc *serverConn) clock() time.Time {
	if sc.srv.now != nil {
		return sc.srv.now()
	}
	return time.Now()
}

// connError ends the connection with GOAWAY(code).
type connError struct {
	code   http2.ErrCode
	reason string
}

func (e connError) Error() string {
	return fmt.Sprintf("h2server: connection error %v: %s", e.code, e.reason)
}

var (
	errBadPreface = errors.New("h2server: bad client preface")
	errConnClosed = errors.New("h2server: connection closed")
	errStreamGone = errors.New("h2server: stream reset")
	// errHeaderListTooLarge fails a write whose header block (response
	// header or trailers) is over the client's header list limit.
	errHeaderListTooLarge = errors.New("h2server: header list larger than the client's SETTINGS_MAX_HEADER_LIST_SIZE")
	errBodyClosed         = errors.New("h2server: request body closed")
	errHandlerEnd         = errors.New("h2server: request body read after the handler returned")
	// errHandlerDone: SetReadDeadline or SetWriteDeadline after the
	// handler returned.
	errHandlerDone = errors.New("h2server: ResponseWriter used after the handler returned")
	errClientCL    = errors.New("h2server: request body does not match its content-length")
)

// newServerConn makes the connection's state; lim, when not nil,
// replaces the Server's header list limit and timeouts.
func newServerConn(s *Server, c net.Conn, parent context.Context, lim *ConnLimits) *serverConn {
	maxHeaders, idle, block := maxHeaderList(s.MaxHeaderBytes), s.IdleTimeout, s.ReadHeaderTimeout
	if lim != nil {
		maxHeaders, idle, block = maxHeaderList(lim.MaxHeaderBytes), lim.IdleTimeout, lim.ReadHeaderTimeout
	}
	sc := &serverConn{
		srv:            s,
		nc:             c,
		handler:        s.Handler,
		remote:         c.RemoteAddr().String(),
		streamWindow:   s.streamWindow(),
		connWindow:     s.connWindow(),
		maxStreams:     s.maxStreams(),
		maxHeaders:     maxHeaders,
		idleTimeout:    idle,
		blockTimeout:   readHeaderTimeout(block),
		wake:           make(chan struct{}, 1),
		work:           make(chan *stream),
		writerDone:     make(chan struct{}),
		streams:        map[uint32]*stream{},
		peerMaxFrame:   defaultMaxFrame,
		peerInitWindow: initialWindow,
		sendWindow:     initialWindow,
		recvAvail:      initialWindow,
	}
	sc.ctx, sc.cancel = context.WithCancel(context.WithValue(parent, http.LocalAddrContextKey, c.LocalAddr()))
	sc.reqConn.Init(sc.ctx)
	sc.enc = hpack.NewEncoder(encWriter{sc})
	if sc.idleTimeout > 0 {
		// Armed before an upgrade's stream 1 starts: its handler stops
		// and resets the timer, and must find it in place.
		sc.idleTimer = time.AfterFunc(sc.quietDelayLocked(), sc.onIdle)
	}
	return sc
}

// start queues the server's SETTINGS, which must be the first frame
// whatever else is said later, and starts an upgrade's stream 1.
func (sc *serverConn) start(opts *ConnOpts) error {
	sc.mu.Lock()
	sc.appendSettingsLocked(
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: sc.maxStreams},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: uint32(sc.streamWindow)},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: sc.maxHeaders},
	)
	if sc.connWindow > initialWindow {
		sc.appendWindowUpdateLocked(0, uint32(sc.connWindow-initialWindow))
		sc.recvAvail = sc.connWindow
	}
	sc.queueLocked()
	sc.mu.Unlock()
	return sc.upgrade(opts)
}

func (sc *serverConn) serve(opts *ConnOpts, err error) {
	var src io.Reader = sc.nc
	if len(opts.Prefix) > 0 {
		src = &prefixReader{prefix: opts.Prefix, r: sc.nc}
	}
	sc.br = readerPool.Get().(*bufio.Reader)
	sc.br.Reset(src)
	// The Framer only reads: frames are written by hand into wbuf.
	sc.fr = http2.NewFramer(nil, sc.br)
	// Header blocks are decoded by hr, not by the Framer (see
	// headers.go).
	sc.hr = newHeaderReader(sc.fr, sc.br, sc.maxHeaders)
	sc.hr.blockOpen = sc.headerBlockOpen
	sc.fr.SetMaxReadFrameSize(defaultMaxFrame)
	sc.fr.SetReuseFrames()
	sc.stopWatch = context.AfterFunc(sc.ctx, sc.closeNow)
	go sc.writeLoop()

	if err == nil {
		err = sc.readLoop()
	}
	sc.teardown(err)
	close(sc.work) // no stream is started after the reader's end
	sc.handlers.Wait()
	sc.workers.Wait()
	if sc.idleTimer != nil {
		sc.idleTimer.Stop()
	}
	sc.mu.Lock()
	if sc.blockTimer != nil {
		sc.blockTimer.Stop()
	}
	if sc.noticeTimer != nil {
		sc.noticeTimer.Stop()
	}
	sc.mu.Unlock()
	sc.br.Reset(nil)
	readerPool.Put(sc.br)
	sc.br = nil
	// A context (or request) a handler kept holds its stream, and the
	// stream the connection: the buffers need not stay with them.
	sc.mu.Lock()
	sc.wbuf, sc.spare = nil, nil
	sc.mu.Unlock()
	sc.fr, sc.hr = nil, nil
}

// upgrade applies an h2c upgrade's settings and starts its request as
// stream 1, half-closed (remote).
func (sc *serverConn) upgrade(opts *ConnOpts) error {
	if opts.Upgrade == nil {
		return nil
	}
	if len(opts.Settings)%6 != 0 {
		return connError{http2.ErrCodeProtocol, "bad HTTP2-Settings"}
	}
	// The header's payload is a SETTINGS frame's (RFC 7540 §3.2.1), held
	// to the entries onSettings allows one.
	if len(opts.Settings)/6 > maxSettingsPerFrame {
		return connError{http2.ErrCodeEnhanceYourCalm, "HTTP2-Settings with too many entries"}
	}
	var settings []http2.Setting
	for b := opts.Settings; len(b) > 0; b = b[6:] {
		settings = append(settings, http2.Setting{
			ID:  http2.SettingID(binary.BigEndian.Uint16(b)),
			Val: binary.BigEndian.Uint32(b[2:]),
		})
	}
	sc.mu.Lock()
	if err := sc.applySettingsLocked(settings); err != nil {
		sc.mu.Unlock()
		return err
	}
	r := opts.Upgrade
	st := sc.newStream(1)
	st.remoteClosed = true
	req := r.WithContext(&st.ctx)
	req.Proto, req.ProtoMajor, req.ProtoMinor = "HTTP/2.0", 2, 0
	if req.Body == nil {
		req.Body = http.NoBody
	}
	st.req = req
	st.isHead = req.Method == "HEAD"
	sc.maxClientID = 1
	sc.startStreamLocked(st)
	sc.mu.Unlock()
	sc.startHandler(st)
	return nil
}

func (sc *serverConn) newStream(id uint32) *stream {
	st := &stream{sc: sc, id: id, declCL: -1, opened: sc.clock()}
	st.ctx.Init(&sc.reqConn)
	if sc.ctx.Err() != nil {
		// closeNow, which ends the streams with the connection's
		// context, is on its way; a child of that context would start
		// ended.
		st.ctx.EndWithConn()
	}
	st.readCond.L = &sc.mu
	return st
}

// startStreamLocked registers st, whose handler the caller then starts
// with startHandler once it has released sc.mu.
func (sc *serverConn) startStreamLocked(st *stream) {
	st.sendWindow = int64(sc.peerInitWindow)
	st.recvAvail = sc.streamWindow
	sc.streams[st.id] = st
	if sc.idleTimer != nil && len(sc.streams) == 1 {
		sc.idleTimer.Stop()
	}
	sc.handlers.Add(1)
}

func (sc *serverConn) readLoop() error {
	// The client preface, up to the end of its SETTINGS frame, is the
	// connection's head: it gets the read-header timeout, as an HTTP/1.1
	// request head does, and the header block timer bounds it
	// (x/net/http2 gives the preface 10 s and its SETTINGS 2 s more).
	// Without it a client that sent the preface (or, after an h2c
	// upgrade, not even that) and then nothing, or its SETTINGS a byte
	// at a time, held the connection until the idle timeout.
	sc.headerBlockOpen(true)
	var preface [len(http2.ClientPreface)]byte
	if _, err := io.ReadFull(sc.br, preface[:]); err != nil {
		if sc.headerBlockExpired() {
			return errPrefaceTimeout
		}
		return err
	}
	if string(preface[:]) != http2.ClientPreface {
		return errBadPreface
	}
	first := true
	for {
		f, hb, err := sc.hr.readFrame()
		if err != nil {
			if sc.headerBlockExpired() {
				if first {
					return errPrefaceTimeout
				}
				return connError{http2.ErrCodeEnhanceYourCalm, "header block not ended within the read-header timeout"}
			}
			var se http2.StreamError
			var ce http2.ConnectionError
			switch {
			case errors.As(err, &se) && !first:
				if err := sc.onStreamError(se.StreamID, se.Code, sc.hr.typ, se.Cause); err != nil {
					return err
				}
				continue
			case errors.As(err, &ce):
				return connError{http2.ErrCode(ce), "frame: " + err.Error()}
			case errors.As(err, &se):
				return connError{http2.ErrCodeProtocol, "first frame not SETTINGS"}
			case errors.Is(err, http2.ErrFrameTooLarge):
				return connError{http2.ErrCodeFrameSize, "frame too large"}
			}
			return err
		}
		if first {
			// RFC 9113 §3.4: the preface ends with a SETTINGS frame.
			if s, ok := f.(*http2.SettingsFrame); !ok || s.IsAck() {
				return connError{http2.ErrCodeProtocol, "first frame not SETTINGS"}
			}
			first = false
			sc.headerBlockOpen(false)
		}
		if err := sc.processFrame(f, hb); err != nil {
			return err
		}
	}
}

// errPrefaceTimeout ends a connection whose client preface (its SETTINGS
// frame included) did not arrive within the read-header timeout.
var errPrefaceTimeout = connError{http2.ErrCodeEnhanceYourCalm, "client preface not received within the read-header timeout"}

// headerBlockOpen arms the header block timer when a block goes on past
// its HEADERS frame, and stops it when the block ends. Only such blocks,
// rare (a header block of more than one frame), and the client preface
// pay for the timer.
func (sc *serverConn) headerBlockOpen(open bool) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	sc.blockOpen = open
	switch {
	case !open:
		sc.blockTimer.Stop()
	case sc.blockTimer == nil:
		sc.blockDeadline = time.Now().Add(sc.blockTimeout)
		sc.blockTimer = time.AfterFunc(sc.blockTimeout, sc.blockTimeUp)
	default:
		sc.blockDeadline = time.Now().Add(sc.blockTimeout)
		sc.blockTimer.Reset(sc.blockTimeout)
	}
}

// blockTimeUp runs on blockTimer's goroutine. If the block is still
// open (a stale firing finds it ended, or open again with a later
// deadline), its time is up: the reader, waiting for the CONTINUATION,
// is woken by a read deadline in the past, and readLoop ends the
// connection (headerBlockExpired). A connection already closing is left
// to its own read deadline (finishWrites).
func (sc *serverConn) blockTimeUp() {
	sc.mu.Lock()
	up := sc.blockOpen && !time.Now().Before(sc.blockDeadline) && !sc.dead && !sc.closeAfterFlush
	if up {
		sc.blockExpired = true
	}
	sc.mu.Unlock()
	if up {
		_ = sc.nc.SetReadDeadline(time.Now())
	}
}

// headerBlockExpired says whether a read failed because a header block
// stayed open too long.
func (sc *serverConn) headerBlockExpired() bool {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.blockExpired
}

// processFrame acts on a frame, or on a request header block (hb, with
// a nil f).
func (sc *serverConn) processFrame(f http2.Frame, hb *headerBlock) error {
	var err error
	switch f := f.(type) {
	case nil:
		err = sc.onHeaders(hb)
		sc.hr.dec.Release() // the request (or its trailers) has taken the fields
	case *http2.DataFrame:
		err = sc.onData(f)
	case *http2.RSTStreamFrame:
		err = sc.onRST(f)
	case *http2.WindowUpdateFrame:
		err = sc.onWindowUpdate(f)
	case *http2.SettingsFrame:
		err = sc.onSettings(f)
	case *http2.PingFrame:
		if f.IsAck() {
			if f.Data == noticePing {
				sc.sendFinalGoAway()
			}
		} else {
			sc.mu.Lock()
			sc.appendPingAckLocked(f.Data)
			sc.ctrlPending += 17
			sc.queueLocked()
			sc.mu.Unlock()
		}
	case *http2.GoAwayFrame:
		// The client is done with the connection: finish the streams in
		// flight, take no new ones.
		sc.startGoAway()
	case *http2.PushPromiseFrame:
		return connError{http2.ErrCodeProtocol, "PUSH_PROMISE from a client"}
	case *http2.PriorityFrame:
		// Priorities are advisory (RFC 9113 §5.3.2) and ignored, but for
		// the one rule on their form the Framer does not check.
		err = sc.onPriority(f)
	}
	if err != nil {
		return err
	}
	sc.mu.Lock()
	over := sc.ctrlPending > maxPendingControl
	calm := sc.bad > calmSlack && sc.bad > sc.completed // see countBadLocked
	sc.mu.Unlock()
	if over {
		return connError{http2.ErrCodeEnhanceYourCalm, "client does not read its acknowledgements"}
	}
	if calm {
		return connError{http2.ErrCodeEnhanceYourCalm, "too many streams broken by the client"}
	}
	return nil
}

// onStreamError resets stream id for a frame of type typ that was
// rejected (by the Framer, or as a malformed request). On an idle stream
// only HEADERS, which opens it, and PRIORITY may come (RFC 9113 §5.1):
// another frame there is a connection error. A HEADERS frame that opened
// the stream is a malformed request: it is reported to Server.Refused,
// with cause as its detail.
func (sc *serverConn) onStreamError(id uint32, code http2.ErrCode, typ http2.FrameType, cause error) error {
	if id%2 == 0 {
		return connError{http2.ErrCodeProtocol, "stream error on an even stream id"}
	}
	sc.mu.Lock()
	request := false
	if st := sc.streams[id]; st != nil {
		sc.resetLocked(st, code)
	} else {
		if sc.idleLocked(id) {
			switch typ {
			case http2.FrameHeaders:
				// A malformed request opened and closed the stream.
				sc.maxClientID = id
				request = true
			case http2.FramePriority:
			default:
				sc.unlock()
				return connError{http2.ErrCodeProtocol, typ.String() + " on an idle stream"}
			}
		}
		sc.noteResetLocked(id)
		sc.rstLocked(id, code)
	}
	err := sc.countBadLocked()
	sc.unlock()
	if request {
		detail := "malformed request"
		if cause != nil {
			detail = cause.Error()
		}
		sc.refused(nil, 0, detail)
	}
	return err
}

// idleLocked says whether stream id is idle (RFC 9113 §5.1): an odd one
// above the highest the client opened, or any even one, which only the
// server could open, and it opens none (it does not push).
func (sc *serverConn) idleLocked(id uint32) bool {
	return id%2 == 0 || id > sc.maxClientID
}

// onPriority answers a PRIORITY frame by which a stream depends on
// itself: a stream error PROTOCOL_ERROR (RFC 9113 §5.3.1), which does not
// open an idle stream.
func (sc *serverConn) onPriority(f *http2.PriorityFrame) error {
	if f.StreamDep != f.StreamID {
		return nil
	}
	sc.mu.Lock()
	defer sc.unlock()
	if st := sc.streams[f.StreamID]; st != nil {
		sc.resetLocked(st, http2.ErrCodeProtocol)
	} else {
		sc.rstLocked(f.StreamID, http2.ErrCodeProtocol)
	}
	return sc.countBadLocked()
}

// countBadLocked counts a bad stream and judges the connection.
func (sc *serverConn) countBadLocked() error {
	sc.bad++
	if sc.bad > calmSlack && sc.bad > sc.completed {
		return connError{http2.ErrCodeEnhanceYourCalm, "too many refused or reset streams"}
	}
	return nil
}

// resetByClient marks an id in recentResets: stream ids have 31 bits.
const resetByClient = 1 << 31

// inRecentResets says whether recentResets holds r: an id, for a stream
// the server reset, whose late frames (sent before the client saw the
// reset) are ignored; or an id marked resetByClient (see
// resetByClientLocked). A stream the client reset, or one forgotten, is
// not ignored.
func (sc *serverConn) inRecentResets(r uint32) bool {
	for _, x := range sc.recentResets {
		if x == r {
			return true
		}
	}
	return false
}

// resetByClientLocked says whether the client reset the gone stream id.
func (sc *serverConn) resetByClientLocked(id uint32) bool {
	return sc.inRecentResets(id | resetByClient)
}

// faultLocked resets st for a frame of the client's that broke it (a
// malformed request or trailers, a frame on a half-closed stream, a
// window overflow) and counts the stream bad: a client that opens
// streams only to break them at once makes the server start and end
// handlers as rapid resets do (CVE-2023-44487). processFrame judges
// the count once the frame is done. A stream counts once. (Frames on a
// stream already gone are answered RST_STREAM but not counted: they
// start nothing, and late DATA of a body the server stopped reading may
// come in numbers once the stream has left recentResets.)
func (sc *serverConn) faultLocked(st *stream, code http2.ErrCode) {
	if !st.reset {
		sc.bad++
	}
	sc.resetLocked(st, code)
}

// resetLocked sends RST_STREAM(code) for a stream whose handler runs and
// releases whatever waits on it.
func (sc *serverConn) resetLocked(st *stream, code http2.ErrCode) {
	if st.reset {
		return
	}
	sc.rstLocked(st.id, code)
	sc.abortStreamLocked(st, errStreamGone)
}

// abortStreamLocked marks st reset (by either side), ends its context
// and wakes its waiters.
func (sc *serverConn) abortStreamLocked(st *stream, err error) {
	st.reset = true
	st.remoteClosed = true
	if st.rerr == nil {
		st.rerr = err
	}
	sc.endContextLocked(st)
	st.readCond.Broadcast()
	sc.wakeSenderLocked(st)
}

// endContextLocked ends st's context under sc.mu, with its children
// (End cancels them: they take only their own locks), so that whoever
// the lock orders after the reset (a handler woken from a body read or a
// write) finds them ended, as with the cancelCtx it replaces. It ends with
// the connection's error and cause if the connection's context has
// ended (a cancelCtx child would have taken them), else with
// context.Canceled. The functions registered for its end (a transport's
// WatchEnd) are not run under the lock: unlock runs them.
func (sc *serverConn) endContextLocked(st *stream) {
	if st.ctx.End(sc.ctx.Err() != nil) {
		sc.ended = append(sc.ended, st)
	}
}

// endContext ends st's context, with no lock held.
func (sc *serverConn) endContext(st *stream) {
	if sc.ctx.Err() != nil {
		st.ctx.EndWithConn()
	} else {
		st.ctx.Cancel()
	}
}

// unlock releases sc.mu, then runs the functions registered for the end
// of the stream contexts that ended under it (endContextLocked). Every
// critical section that may reset a stream or end the connection ends
// with it.
func (sc *serverConn) unlock() {
	if len(sc.ended) == 0 {
		sc.mu.Unlock()
		return
	}
	ended := sc.ended
	sc.ended = nil
	sc.mu.Unlock()
	for _, st := range ended {
		st.ctx.Notify()
	}
}

func (sc *serverConn) onHeaders(f *headerBlock) error {
	id := f.streamID
	if id%2 == 0 {
		return connError{http2.ErrCodeProtocol, "even stream id from a client"}
	}
	sc.mu.Lock()
	if st := sc.streams[id]; st != nil {
		defer sc.unlock()
		switch {
		case st.peerReset:
			// RFC 9113 §5.1: a frame after the client's RST_STREAM.
			sc.rstLocked(id, http2.ErrCodeStreamClosed)
			return nil
		case st.reset:
			return nil
		case st.remoteClosed && st.localEnded:
			// Closed both ways (RFC 9113 §5.1), though its handler has
			// not returned yet: as for a stream already removed, so
			// that a client that saw the END_STREAM gets the same
			// answer however soon it sends.
			return connError{http2.ErrCodeProtocol, "HEADERS on a closed stream or a decreasing stream id"}
		case st.remoteClosed:
			// RFC 9113 §5.1 half-closed (remote).
			sc.faultLocked(st, http2.ErrCodeStreamClosed)
			return nil
		case f.hasPriority && f.priority.StreamDep == id:
			// RFC 9113 §5.3.1: a stream cannot depend on itself.
			sc.faultLocked(st, http2.ErrCodeProtocol)
			return nil
		}
		return sc.trailersLocked(st, f)
	}
	if id <= sc.maxClientID {
		ignore := sc.inRecentResets(id)
		byClient := !ignore && sc.resetByClientLocked(id)
		if byClient {
			sc.rstLocked(id, http2.ErrCodeStreamClosed)
		}
		sc.mu.Unlock()
		if ignore || byClient {
			return nil
		}
		// RFC 9113 §5.1.1: a new stream id must be higher than all before.
		return connError{http2.ErrCodeProtocol, "HEADERS on a closed stream or a decreasing stream id"}
	}
	sc.maxClientID = id
	if sc.draining || sc.dead {
		// After GOAWAY: refused, so the client knows to retry it.
		sc.noteResetLocked(id)
		sc.rstLocked(id, http2.ErrCodeRefusedStream)
		sc.mu.Unlock()
		return nil
	}
	if uint32(len(sc.streams)) >= sc.maxStreams {
		sc.noteResetLocked(id)
		sc.rstLocked(id, http2.ErrCodeRefusedStream)
		err := sc.countBadLocked()
		sc.mu.Unlock()
		return err
	}
	// From here a GOAWAY (Shutdown, the idle timer, the end of the
	// other streams) names id: the connection must stay until id is
	// answered.
	sc.opening = true
	sc.mu.Unlock()

	st := sc.newStream(id)
	status, err := sc.newRequest(st, f)
	sc.mu.Lock()
	sc.opening = false
	if err == nil && status == 0 && !sc.dead {
		sc.startStreamLocked(st)
		sc.unlock()
		sc.startHandler(st)
		return nil
	}
	// (st's context, which no handler saw, needs no end: nothing is
	// registered with it, and nothing holds it.)
	refused, detail := err != nil || status != 0, ""
	switch {
	case err != nil:
		sc.noteResetLocked(id)
		sc.rstLocked(id, http2.ErrCodeProtocol)
		detail = err.Error()
		err = sc.countBadLocked()
	case status != 0:
		// x/net/http2 answers an oversized header list with 431 too.
		n := len(sc.wbuf)
		sc.appendHeadersLocked(id, status, nil, true)
		if !f.endStream {
			sc.noteResetLocked(id)
			sc.appendRSTLocked(id, http2.ErrCodeNo)
		}
		sc.ctrlPending += len(sc.wbuf) - n
		sc.queueLocked()
		detail = "request header list too large"
		err = sc.countBadLocked()
	}
	if len(sc.streams) == 0 {
		sc.noStreamsLocked()
	}
	sc.unlock()
	if refused {
		sc.refused(f, status, detail)
	}
	return err
}

// trailersLocked takes a HEADERS frame after the request's DATA: its
// trailers, which must end the stream.
func (sc *serverConn) trailersLocked(st *stream, f *headerBlock) error {
	if !f.endStream || len(f.PseudoFields()) > 0 {
		sc.faultLocked(st, http2.ErrCodeProtocol)
		st.rerr = errors.New("h2server: malformed request trailers")
		return nil
	}
	if f.Truncated {
		sc.faultLocked(st, http2.ErrCodeProtocol)
		st.rerr = errors.New("h2server: request trailers too large")
		return nil
	}
	for _, hf := range f.RegularFields() {
		k := canonicalHeader(hf.Name)
		if st.declTrailer && !httpguts.ValidTrailerHeader(k) {
			// Fields that must not be trailers (Host, Content-Length,
			// Transfer-Encoding, ...) would reach Request.Trailer and be
			// sent upstream: malformed, as x/net/http2 has them.
			sc.faultLocked(st, http2.ErrCodeProtocol)
			st.rerr = errors.New("h2server: request trailer " + k + " not allowed")
			return nil
		}
		if st.trailer == nil {
			st.trailer = http.Header{}
		}
		st.trailer[k] = append(st.trailer[k], hf.Value)
	}
	sc.remoteEndLocked(st)
	return nil
}

// remoteEndLocked handles END_STREAM from the client.
func (sc *serverConn) remoteEndLocked(st *stream) {
	st.remoteClosed = true
	if st.declCL >= 0 && st.got != st.declCL {
		sc.faultLocked(st, http2.ErrCodeProtocol)
		st.rerr = errClientCL
		return
	}
	if st.rerr == nil {
		st.rerr = io.EOF
	}
	st.readCond.Broadcast()
}

func (sc *serverConn) onData(f *http2.DataFrame) error {
	id := f.StreamID
	data := f.Data()
	size := int32(f.Length) // padding counts against the windows too
	sc.mu.Lock()
	defer sc.unlock()
	if len(data) == 0 && !f.StreamEnded() {
		if sc.emptyData++; sc.emptyData > maxEmptyData {
			return connError{http2.ErrCodeEnhanceYourCalm, "DATA frames without data"}
		}
	} else {
		sc.emptyData = 0
	}
	if size > sc.recvAvail {
		return connError{http2.ErrCodeFlowControl, "DATA beyond the connection window"}
	}
	sc.recvAvail -= size
	st := sc.streams[id]
	if st == nil || st.remoteClosed {
		sc.creditConnLocked(size)
		switch {
		case st == nil && sc.idleLocked(id):
			return connError{http2.ErrCodeProtocol, "DATA on an idle stream"}
		case st != nil && st.reset && !st.peerReset, st == nil && sc.inRecentResets(id):
			return nil
		case st != nil && !st.reset:
			// RFC 9113 §5.1 half-closed (remote).
			sc.faultLocked(st, http2.ErrCodeStreamClosed)
		default:
			// Closed, or reset by the client (RFC 9113 §5.1, §6.1).
			sc.rstLocked(id, http2.ErrCodeStreamClosed)
		}
		return nil
	}
	if size > st.recvAvail {
		sc.creditConnLocked(size)
		sc.faultLocked(st, http2.ErrCodeFlowControl)
		return nil
	}
	st.recvAvail -= size
	if pad := size - int32(len(data)); pad > 0 {
		// No read will return the padding: it counts as consumed now,
		// or frames of padding alone could close the stream's window
		// with nothing for the handler to read.
		sc.consumedLocked(st, int(pad))
	}
	st.got += int64(len(data))
	if st.declCL >= 0 && st.got > st.declCL {
		sc.creditConnLocked(int32(len(data)))
		sc.faultLocked(st, http2.ErrCodeProtocol)
		st.rerr = errClientCL
		return nil
	}
	if st.bodyClosed {
		sc.creditConnLocked(int32(len(data)))
	} else if len(data) > 0 {
		if st.rbuf == nil {
			st.rbuf = make([]byte, 0, max(len(data), 512))
		} else if st.roff > 0 && len(st.rbuf)+len(data) > cap(st.rbuf) {
			// Drop what was read before growing: a reader that never
			// quite catches up would otherwise keep the whole body.
			n := copy(st.rbuf, st.rbuf[st.roff:])
			st.rbuf, st.roff = st.rbuf[:n], 0
		}
		st.rbuf = append(st.rbuf, data...)
		st.readCond.Signal()
	}
	if f.StreamEnded() {
		sc.remoteEndLocked(st)
	}
	return nil
}

// creditConnLocked returns n bytes of the connection's receive window to
// the client, in batches.
func (sc *serverConn) creditConnLocked(n int32) {
	sc.recvUnacked += n
	if sc.recvUnacked >= sc.connWindow/2 && !sc.dead {
		sc.appendWindowUpdateLocked(0, uint32(sc.recvUnacked))
		sc.recvAvail += sc.recvUnacked
		sc.recvUnacked = 0
		sc.queueLocked()
	}
}

// consumedLocked returns n bytes the handler read to both windows.
func (sc *serverConn) consumedLocked(st *stream, n int) {
	st.recvUnacked += int32(n)
	if !st.remoteClosed && st.recvUnacked >= sc.streamWindow/2 && !sc.dead {
		sc.appendWindowUpdateLocked(st.id, uint32(st.recvUnacked))
		st.recvAvail += st.recvUnacked
		st.recvUnacked = 0
		sc.queueLocked()
	}
	sc.creditConnLocked(int32(n))
}

func (sc *serverConn) onRST(f *http2.RSTStreamFrame) error {
	sc.mu.Lock()
	defer sc.unlock()
	st := sc.streams[f.StreamID]
	if st == nil {
		if sc.idleLocked(f.StreamID) {
			return connError{http2.ErrCodeProtocol, "RST_STREAM on an idle stream"}
		}
		return nil
	}
	st.peerReset = true
	if st.reset {
		return nil
	}
	sc.abortStreamLocked(st, fmt.Errorf("h2server: stream reset by the client: %v", f.ErrCode))
	// Only a premature reset is bad: a client giving up on a slow answer
	// (a deadline, a user leaving) is not an attack, and counting it
	// would cut off every client of an upstream in trouble.
	if !st.localEnded && sc.clock().Sub(st.opened) < prematureReset {
		return sc.countBadLocked()
	}
	return nil
}

func (sc *serverConn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	inc := int64(f.Increment)
	sc.mu.Lock()
	defer sc.unlock()
	if f.StreamID == 0 {
		was := sc.sendWindow
		sc.sendWindow += inc
		if sc.sendWindow > maxWindow {
			return connError{http2.ErrCodeFlowControl, "connection window overflow"}
		}
		if was <= 0 {
			// While the window was open, no handler waited for it.
			sc.wakeSendersLocked()
		}
	} else {
		st := sc.streams[f.StreamID]
		if st == nil {
			if sc.idleLocked(f.StreamID) {
				return connError{http2.ErrCodeProtocol, "WINDOW_UPDATE on an idle stream"}
			}
			return nil
		}
		if st.reset {
			return nil
		}
		st.sendWindow += inc
		if st.sendWindow > maxWindow {
			sc.faultLocked(st, http2.ErrCodeFlowControl)
			return nil
		}
		sc.wakeSenderLocked(st)
	}
	return nil
}

func (sc *serverConn) onSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	// A frame holds up to 2730 entries: one with many more than there
	// are settings to say is abuse (x/net's server refuses more than
	// 100, nghttp2 more than 32).
	if f.NumSettings() > maxSettingsPerFrame {
		return connError{http2.ErrCodeEnhanceYourCalm, "SETTINGS with too many entries"}
	}
	var settings []http2.Setting
	var arr [8]http2.Setting
	settings = arr[:0]
	_ = f.ForeachSetting(func(s http2.Setting) error {
		settings = append(settings, s)
		return nil
	})
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if err := sc.applySettingsLocked(settings); err != nil {
		return err
	}
	sc.appendSettingsAckLocked()
	sc.ctrlPending += 9
	sc.queueLocked()
	return nil
}

// maxSettingsPerFrame bounds the entries of a client's SETTINGS frame.
const maxSettingsPerFrame = 100

func (sc *serverConn) applySettingsLocked(settings []http2.Setting) error {
	initial, peak := int64(sc.peerInitWindow), int64(-1)
	for _, s := range settings {
		if err := s.Valid(); err != nil {
			var ce http2.ConnectionError
			if errors.As(err, &ce) {
				return connError{http2.ErrCode(ce), "bad setting"}
			}
			return connError{http2.ErrCodeProtocol, "bad setting"}
		}
		switch s.ID {
		case http2.SettingHeaderTableSize:
			sc.enc.SetMaxDynamicTableSizeLimit(s.Val)
		case http2.SettingInitialWindowSize:
			sc.peerInitWindow = int32(s.Val)
			peak = max(peak, int64(s.Val))
		case http2.SettingMaxFrameSize:
			sc.peerMaxFrame = s.Val
		case http2.SettingMaxHeaderListSize:
			sc.peerMaxHeaderList = s.Val
		}
	}
	if peak >= 0 {
		// RFC 9113 §6.9.2: each change applies to every open stream's
		// window, which may go negative, and one that takes a window
		// past the maximum is an error. One walk for the frame, not one
		// per entry (a frame may repeat the setting): the windows move
		// by the last value's difference and were largest at the peak.
		up, delta := peak-initial, int64(sc.peerInitWindow)-initial
		for _, st := range sc.streams {
			if st.sendWindow+up > maxWindow {
				return connError{http2.ErrCodeFlowControl, "stream window overflow"}
			}
			st.sendWindow += delta
		}
		if delta > 0 {
			sc.wakeSendersLocked()
		}
	}
	return nil
}

// startGoAway begins (or, after the shutdown notice, completes) a
// graceful close: GOAWAY(NO_ERROR) naming the last stream the client
// opened, no new streams, and the end of the connection once the
// streams in flight are done. The idle timeout and a client's GOAWAY
// close this way in one step; Shutdown sends the notice first (see
// startShutdown).
func (sc *serverConn) startGoAway() {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	sc.startGoAwayLocked()
}

func (sc *serverConn) startGoAwayLocked() {
	if sc.dead {
		return
	}
	if !sc.goAwaySent || sc.noticePending {
		sc.endNoticeLocked()
		sc.goAwaySent = true
		sc.goAwayLast = sc.maxClientID
		sc.appendGoAwayLocked(sc.maxClientID, http2.ErrCodeNo)
		sc.queueLocked()
	}
	sc.draining = true
	if len(sc.streams) == 0 && !sc.opening {
		sc.closeAfterFlushLocked()
	}
}

// noStreamsLocked runs when the last stream is gone: a draining
// connection ends once its writes are out, another starts its idle time.
func (sc *serverConn) noStreamsLocked() {
	if sc.opening {
		return
	}
	if sc.draining {
		sc.closeAfterFlushLocked()
	} else if sc.idleTimer != nil {
		sc.idleTimer.Reset(sc.quietDelayLocked())
	}
}

// quietDelayLocked is when the idle timer should fire after the last
// stream ended: at workerTrim, to end the idle workers, when that comes
// before the idle timeout (trimPending is then set), else at the idle
// timeout.
func (sc *serverConn) quietDelayLocked() time.Duration {
	trim := sc.srv.trimDelay()
	sc.trimPending = trim < sc.idleTimeout
	if sc.trimPending {
		return trim
	}
	return sc.idleTimeout
}

// closeAfterFlushLocked has the writer end the connection once what is
// pending is written. With an idle timeout, each write from then on gets
// as long as the timeout to go out (see writeLoop), the one under way
// too: a client that does not take them (it stopped reading, and says
// nothing, so the reader waits too) would otherwise hold the connection,
// its goroutines and the bytes pending for it, for as long as it keeps
// it open. The deadline is set under sc.mu, where the end is decided; it
// does not block.
func (sc *serverConn) closeAfterFlushLocked() {
	if !sc.closeAfterFlush && sc.writing && sc.idleTimeout > 0 {
		_ = sc.nc.SetWriteDeadline(time.Now().Add(sc.idleTimeout))
	}
	sc.closeAfterFlush = true
	if !sc.writing {
		sc.wakePending = true
		select {
		case sc.wake <- struct{}{}:
		default:
		}
	}
}

// onIdle runs when the connection has had no stream for workerTrim (see
// quietDelayLocked), then again when it has had none for its idle
// timeout.
func (sc *serverConn) onIdle() {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if len(sc.streams) != 0 || sc.opening {
		return
	}
	if sc.trimPending {
		// A quiet spell of workerTrim: the waiting workers end, and
		// the timer is armed for the rest of the idle timeout.
		sc.trimPending = false
		sc.trimWorkersLocked()
		sc.idleTimer.Reset(sc.idleTimeout - sc.srv.trimDelay())
		return
	}
	sc.startGoAwayLocked()
}

// closeNow ends the connection at once (Close, or the connection's
// context cancelled).
func (sc *serverConn) closeNow() {
	sc.mu.Lock()
	sc.dieLocked(errConnClosed)
	sc.unlock()
	sc.nc.Close()
}

// dieLocked marks the connection gone: appends are dropped from now on,
// every stream's context is ended and every waiter released.
func (sc *serverConn) dieLocked(err error) {
	if sc.dead {
		return
	}
	sc.dead = true
	for _, st := range sc.streams {
		sc.abortStreamLocked(st, err) // wakes its handler
	}
	sc.wakePending = true
	select {
	case sc.wake <- struct{}{}:
	default:
	}
}

// teardown ends the connection after the read loop has returned err.
func (sc *serverConn) teardown(err error) {
	var ce connError
	if errors.As(err, &ce) {
		sc.mu.Lock()
		sent := !sc.dead && !sc.closeAfterFlush
		if sent {
			last := sc.maxClientID
			if sc.goAwaySent && sc.goAwayLast < last {
				// The streams opened since were refused. (After the
				// shutdown notice alone, which named maxStreamID, every
				// stream the client opened was taken.)
				last = sc.goAwayLast
			}
			sc.endNoticeLocked()
			sc.goAwayLast = last
			sc.appendGoAwayLocked(last, ce.code)
			sc.goAwaySent = true
			sc.closeAfterFlushLocked()
		}
		sc.mu.Unlock()
		if ce.code == http2.ErrCodeEnhanceYourCalm {
			// Other connection errors are the client's bug, told to it
			// by the GOAWAY; this one may be an attack.
			sc.srv.logf("h2server: "+sc.remote, ce)
		}
		if sent {
			// Flush the GOAWAY, then read until the client closes so
			// that it gets to read it (see finishWrites).
			_ = sc.nc.SetWriteDeadline(time.Now().Add(lingerTimeout))
			<-sc.writerDone
			_, _ = io.Copy(io.Discard, sc.br)
		}
	}
	if err == io.EOF {
		// The client closed the connection at a frame boundary: a
		// request body it had not ended is cut short, and must not
		// read as complete (io.EOF) to its handler.
		err = errConnClosed
	}
	sc.mu.Lock()
	sc.dieLocked(err)
	sc.unlock()
	sc.nc.Close()
	sc.stopWatch() // before the cancel, which would run it
	sc.cancel()
	<-sc.writerDone
}

// runHandler runs the handler of one stream and ends the stream.
func (sc *serverConn) runHandler(st *stream) {
	defer sc.handlers.Done()
	rw := &st.rw
	*rw = responseWriter{st: st, sc: sc, declCL: -1}
	panicked := true
	defer func() {
		if panicked {
			// nil: the handler called runtime.Goexit (a nil panic is a
			// *runtime.PanicNilError); no panic to report.
			p := recover()
			if p != nil && p != http.ErrAbortHandler {
				buf := make([]byte, 16<<10)
				buf = buf[:runtime.Stack(buf, false)]
				sc.srv.logf(fmt.Sprintf("h2server: panic serving %s: %v\n%s", sc.remote, p, buf), nil)
			}
			rw.release()
			sc.endStream(st, true)
		}
	}()
	sc.handler.ServeHTTP(rw, st.req)
	rw.finish()
	panicked = false
	rw.release()
	sc.endStream(st, false)
}

// endStream removes a stream whose handler has returned.
func (sc *serverConn) endStream(st *stream, failed bool) {
	sc.mu.Lock()
	st.bodyClosed = true
	st.ended = true
	st.stopDeadlinesLocked()
	unread := len(st.rbuf) - st.roff
	if st.rerr == nil || unread > 0 {
		// A reader left behind (an upstream request) must not take
		// what remains for the whole body.
		st.rerr = errHandlerEnd
	}
	if unread > 0 {
		sc.creditConnLocked(int32(unread))
	}
	st.rbuf, st.roff = nil, 0
	st.readCond.Broadcast()
	if !st.reset && !sc.dead {
		switch {
		case failed && st.localEnded && st.remoteClosed:
			// Closed both ways already: nothing to reset.
		case failed || !st.localEnded:
			sc.appendRSTLocked(st.id, http2.ErrCodeInternal)
			sc.noteResetLocked(st.id)
		case !st.remoteClosed:
			// RFC 9113 §8.1: the response is complete; the client may
			// stop sending the rest of its request.
			sc.appendRSTLocked(st.id, http2.ErrCodeNo)
			sc.noteResetLocked(st.id)
		}
		sc.queueLocked()
	} else if st.peerReset {
		sc.noteResetLocked(st.id | resetByClient)
	} else if st.reset {
		sc.noteResetLocked(st.id)
	}
	st.reset = true
	delete(sc.streams, st.id)
	if len(sc.streams) == 0 {
		sc.noStreamsLocked()
	}
	sc.unlock()
	sc.endContext(st)
}

// rstLocked queues RST_STREAM(code), counted with the control frames
// (maxPendingControl) a client that does not read could pile up.
func (sc *serverConn) rstLocked(id uint32, code http2.ErrCode) {
	sc.appendRSTLocked(id, code)
	sc.ctrlPending += 13
	sc.queueLocked()
}

func (sc *serverConn) noteResetLocked(id uint32) {
	sc.recentResets[sc.recentNext] = id
	sc.recentNext = (sc.recentNext + 1) % len(sc.recentResets)
}

// prefixReader reads prefix before r.
type prefixReader struct {
	prefix []byte
	r      io.Reader
}

func (p *prefixReader) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		return n, nil
	}
	return p.r.Read(b)
}
