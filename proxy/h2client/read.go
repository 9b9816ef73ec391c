package h2client

import (
	"errors"
	"fmt"
	"io"
	"net/http"

	"golang.org/x/net/http2"
)

// readLoop reads and dispatches the server's frames until the
// connection fails or closes.
func (c *conn) readLoop() {
	defer close(c.readerDone)
	defer c.releaseReader()
	for {
		f, err := c.fr.ReadFrame()
		var block *fieldList
		if hf, ok := f.(*http2.HeadersFrame); ok && err == nil {
			block, err = c.hdec.read(c.fr, hf)
		} else if se, ok := err.(http2.StreamError); ok && c.guard.lastType() == http2.FrameHeaders {
			// The Framer refused a HEADERS frame (padding longer than
			// its payload) as the stream's error, with its header block
			// not decoded: every later block would be decoded against an
			// HPACK table that block may have changed (RFC 9113 §4.3).
			err = connErrorf(http2.ErrCodeProtocol, "HEADERS for stream %d not decodable: %v", se.StreamID, se)
		} else if err == io.ErrUnexpectedEOF && c.guard.atFrameEnd() {
			// The Framer read the whole frame and found it too short
			// for the fields its flags announce (the pad length of a
			// PADDED frame, HEADERS' priority fields): the server's
			// connection error FRAME_SIZE_ERROR (RFC 9113 §4.2), not the
			// end of the socket.
			err = connErrorf(http2.ErrCodeFrameSize, "%v frame too short for its fields", c.guard.lastType())
		}
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				// A malformed header block (decoded all the same, so the
				// HPACK state is intact) or a bad WINDOW_UPDATE: the
				// stream's error, not the connection's.
				if code, err := c.streamError(se); err != nil {
					c.failConn(code, err)
					return
				}
				continue
			}
			if code, ok := connErrorCode(err); ok {
				c.failConn(code, err)
				return
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			c.close(fmt.Errorf("h2client: reading from server: %w", err))
			return
		}
		c.framesRead.Add(1)
		if code, err := c.dispatch(f, block); err != nil {
			c.failConn(code, err)
			return
		}
	}
}

// connErrorCode is the GOAWAY code of err, an error that ends the
// connection, and whether the server broke the protocol (the frame
// checks of x/net/http2's Framer, ours, the header block bounds of
// headerGuard); false is a failure of the socket (or PROTOCOL_ERROR, for
// a caller that knows the server at fault), which no GOAWAY explains.
func connErrorCode(err error) (http2.ErrCode, bool) {
	var ce http2.ConnectionError
	var pe *peerError
	switch {
	case errors.As(err, &ce):
		return http2.ErrCode(ce), true
	case errors.As(err, &pe):
		return pe.code, true
	case errors.Is(err, http2.ErrFrameTooLarge):
		return http2.ErrCodeFrameSize, true
	}
	return http2.ErrCodeProtocol, false
}

// peerError is a connection error of the server's found by this
// package rather than by the Framer: code goes in the GOAWAY.
type peerError struct {
	code http2.ErrCode
	err  error
}

func (e *peerError) Error() string { return e.err.Error() }
func (e *peerError) Unwrap() error { return e.err }

// connErrorf is a peerError with code and a message.
func connErrorf(code http2.ErrCode, format string, args ...any) error {
	return &peerError{code: code, err: fmt.Errorf(format, args...)}
}

// dispatch handles one frame; block is a HEADERS frame's decoded header
// block. An error is the connection's: the caller sends GOAWAY with code
// and closes.
func (c *conn) dispatch(f http2.Frame, block *fieldList) (http2.ErrCode, error) {
	var hb headerBlock
	if block != nil {
		// Built before taking the lock the streams share.
		parseHeaderBlock(block, &hb)
	}
	c.mu.Lock()
	defer c.unlock()
	switch f := f.(type) {
	case *http2.HeadersFrame:
		s, code, err := c.streamForLocked(block.streamID)
		if s == nil {
			return code, err
		}
		c.onHeadersLocked(s, block.endStream, &hb)
	case *http2.DataFrame:
		return c.onDataLocked(f)
	case *http2.RSTStreamFrame:
		s, code, err := c.streamForLocked(f.StreamID)
		if s == nil {
			return code, err
		}
		if f.ErrCode == http2.ErrCodeNo && s.recvEnd {
			// The response is complete; the server asks for no more of
			// the request (RFC 9113 §8.1).
			c.resetLocked(s, 0, nil, false)
			return 0, nil
		}
		se := http2.StreamError{StreamID: s.id, Code: f.ErrCode}
		retry := false
		if f.ErrCode == http2.ErrCodeRefusedStream {
			if retry = s.unansweredLocked(); !retry {
				se.Cause = errRefusedAfterAnswer
			}
		}
		c.abortLocked(s, se, retry)
	case *http2.SettingsFrame:
		if f.IsAck() {
			// We send SETTINGS once, in the preface: later
			// acknowledgements acknowledge nothing and are ignored.
			if !c.settingsAcked {
				c.settingsAcked = true
				c.settingsTimer.Stop()
			}
			return 0, nil
		}
		if c.answers > maxControlQueue {
			return http2.ErrCodeEnhanceYourCalm, errors.New("SETTINGS faster than their acknowledgements can be written")
		}
		if err := c.onSettingsLocked(f); err != nil {
			code, _ := connErrorCode(err)
			return code, err
		}
		c.wakeWriterLocked()
	case *http2.WindowUpdateFrame:
		return c.onWindowUpdateLocked(f)
	case *http2.PingFrame:
		if !f.IsAck() && c.answers > maxControlQueue {
			return http2.ErrCodeEnhanceYourCalm, errors.New("PINGs faster than their answers can be written")
		}
		if f.IsAck() {
			if c.pingSent && f.Data == c.pingData {
				c.pingSent = false
				c.lastFrames = c.framesRead.Load()
				c.keepTimer.Reset(c.t.readIdleTimeout())
			}
			return 0, nil
		}
		c.wbuf = appendFrameHeader(c.wbuf, 8, http2.FramePing, http2.FlagPingAck, 0)
		c.wbuf = append(c.wbuf, f.Data[:]...)
		c.answers += frameHeaderLen + 8
		c.wakeWriterLocked()
	case *http2.GoAwayFrame:
		c.onGoAwayLocked(f)
	case *http2.PushPromiseFrame:
		// SETTINGS_ENABLE_PUSH is 0 (RFC 9113 §8.4).
		return http2.ErrCodeProtocol, errors.New("PUSH_PROMISE with push disabled")
	}
	// PRIORITY, and frames of unknown types, are ignored (RFC 9113 §4.1, §5.3.2).
	return 0, nil
}

// streamForLocked returns the open stream a frame is for. A frame for a
// stream that was closed (it may be in flight from before our
// RST_STREAM) is ignored; one for a stream never opened, or a
// server-initiated one, is a connection error (RFC 9113 §5.1).
func (c *conn) streamForLocked(id uint32) (*stream, http2.ErrCode, error) {
	if s := c.streams[id]; s != nil {
		return s, 0, nil
	}
	if id%2 == 1 && id < c.nextID {
		return nil, 0, nil
	}
	return nil, http2.ErrCodeProtocol, fmt.Errorf("frame for idle stream %d", id)
}

// streamError resets a stream over a malformed frame found by the
// framer. On a stream never opened the frame is a connection error, as
// any frame but PRIORITY is there (RFC 9113 §5.1); the caller sends
// GOAWAY.
func (c *conn) streamError(se http2.StreamError) (http2.ErrCode, error) {
	c.mu.Lock()
	defer c.unlock()
	s, code, err := c.streamForLocked(se.StreamID)
	if s != nil {
		c.resetLocked(s, se.Code, se, false)
	}
	if err != nil {
		return code, fmt.Errorf("%w: %v", err, se)
	}
	return 0, nil
}

func (c *conn) onSettingsLocked(f *http2.SettingsFrame) error {
	err := f.ForeachSetting(func(st http2.Setting) error {
		if err := st.Valid(); err != nil {
			return err
		}
		switch st.ID {
		case http2.SettingMaxConcurrentStreams:
			if st.Val > c.maxStreams && c.hp != nil {
				defer c.hp.freed.notify() // after the change, under c.mu
			}
			c.maxStreams = st.Val
		case http2.SettingInitialWindowSize:
			// Applies to every stream's window, as a delta (§6.9.2).
			delta := int64(st.Val) - c.peerInitWindow
			c.peerInitWindow = int64(st.Val)
			for _, s := range c.streams {
				s.sendWindow += delta
				if s.sendWindow > maxWindow {
					return http2.ConnectionError(http2.ErrCodeFlowControl)
				}
				if delta > 0 {
					s.wakeSender()
				}
			}
		case http2.SettingEnablePush:
			// Only a client may enable push (RFC 9113 §6.5.2).
			if st.Val != 0 {
				return http2.ConnectionError(http2.ErrCodeProtocol)
			}
		case http2.SettingMaxFrameSize:
			c.peerMaxFrame = st.Val
		case http2.SettingMaxHeaderListSize:
			c.peerMaxHeaderList = uint64(st.Val)
		case http2.SettingHeaderTableSize:
			c.henc.SetMaxDynamicTableSizeLimit(st.Val)
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.wbuf = appendFrameHeader(c.wbuf, 0, http2.FrameSettings, http2.FlagSettingsAck, 0)
	c.answers += frameHeaderLen
	return nil
}

func (c *conn) onWindowUpdateLocked(f *http2.WindowUpdateFrame) (http2.ErrCode, error) {
	if f.StreamID == 0 {
		c.sendWindow += int64(f.Increment)
		if c.sendWindow > maxWindow {
			return http2.ErrCodeFlowControl, errors.New("connection window overflow")
		}
		for _, s := range c.connWaiters {
			s.waitingConn = false
			s.wakeSender()
		}
		clear(c.connWaiters)
		c.connWaiters = c.connWaiters[:0]
		return 0, nil
	}
	s, code, err := c.streamForLocked(f.StreamID)
	if s == nil {
		return code, err
	}
	s.sendWindow += int64(f.Increment)
	if s.sendWindow > maxWindow {
		c.resetLocked(s, http2.ErrCodeFlowControl, http2.StreamError{StreamID: s.id, Code: http2.ErrCodeFlowControl,
			Cause: errors.New("stream window overflow")}, false)
		return 0, nil
	}
	s.wakeSender()
	return 0, nil
}

func (c *conn) onGoAwayLocked(f *http2.GoAwayFrame) {
	c.noNew, c.closeWhenIdle = true, true
	c.goAway = true
	if c.hp != nil {
		// A host whose connections all take no new stream has its
		// next dialled as its first, whatever DialOverflow's cap:
		// the requests waiting at the cap look again (see getConn).
		c.hp.freed.notify()
	}
	if f.ErrCode == http2.ErrCodeEnhanceYourCalm && string(f.DebugData()) == "too_many_pings" {
		c.t.slowPings()
	}
	var ge *goAwayError // one for all the streams: the debug data may be 16 KiB
	for id, s := range c.streams {
		if id > f.LastStreamID {
			if ge == nil {
				ge = &goAwayError{code: f.ErrCode, lastID: f.LastStreamID, debug: string(f.DebugData())}
			}
			// Not processed by the server (RFC 9113 §6.8): safe to send
			// again elsewhere, unless it answered already (see
			// unansweredLocked).
			//
			// Its HEADERS may still be queued, not yet taken by the
			// writer: they go out all the same. The server ignores a
			// stream above its last stream id but still decodes its
			// header block (§6.8, §4.3), and our HPACK encoder has
			// already entered its fields in the dynamic table. Withdrawn,
			// they would leave the server's decoder behind the encoder,
			// and the header blocks still sent here (the trailers of
			// streams at or below the last stream id, which the server
			// goes on processing) would decode wrong: COMPRESSION_ERROR,
			// and those streams lost. The request is failed as refused
			// either way, and goes to another connection.
			c.abortLocked(s, ge, s.unansweredLocked())
		}
	}
}

// goAwayError fails a stream the server will not process.
type goAwayError struct {
	code   http2.ErrCode
	lastID uint32
	debug  string
}

func (e *goAwayError) Error() string {
	return fmt.Sprintf("h2client: server sent GOAWAY (%v, last stream %d, %q)", e.code, e.lastID, e.debug)
}

func (c *conn) onDataLocked(f *http2.DataFrame) (http2.ErrCode, error) {
	length := int64(f.Header().Length)
	if length > c.recvAvail {
		return http2.ErrCodeFlowControl, errors.New("DATA beyond the connection window")
	}
	// The connection window is given back as DATA arrives: stream
	// windows bound what is buffered.
	c.recvAvail -= length
	c.recvUnsent += length
	if c.recvUnsent >= connRefresh {
		c.wbuf = appendWindowUpdate(c.wbuf, 0, uint32(c.recvUnsent))
		c.recvAvail += c.recvUnsent
		c.recvUnsent = 0
		c.wakeWriterLocked()
	}
	s, code, err := c.streamForLocked(f.StreamID)
	if s == nil {
		return code, err
	}
	if s.resp == nil {
		c.resetLocked(s, http2.ErrCodeProtocol, protocolError(s.id, "DATA before the response's HEADERS"), false)
		return 0, nil
	}
	if s.recvEnd {
		c.resetLocked(s, http2.ErrCodeStreamClosed, protocolError(s.id, "DATA after END_STREAM"), false)
		return 0, nil
	}
	if length > s.recvAvail {
		c.resetLocked(s, http2.ErrCodeFlowControl, http2.StreamError{StreamID: s.id, Code: http2.ErrCodeFlowControl,
			Cause: errors.New("DATA beyond the stream window")}, false)
		return 0, nil
	}
	data := f.Data()
	if len(data) > 0 && s.noContent {
		// A response to HEAD, a 204 or a 304 has no content (RFC 9110
		// §6.4.1, §15.3.5): DATA that carries some is malformed, and
		// would hold the stream's window, which no reader gives back.
		c.resetLocked(s, http2.ErrCodeProtocol, protocolError(s.id, "DATA in a response that has no content"), false)
		return 0, nil
	}
	s.recvAvail -= length
	// Padding is never read: it is given back here, not by Body.Read,
	// since a stream whose window went on padding may get no data to
	// read.
	s.recvUnsent += length - int64(len(data))
	if s.recvUnsent >= streamRefresh && !f.StreamEnded() {
		c.giveBackLocked(s)
	}
	s.recvd += int64(len(data))
	if s.clen >= 0 && s.recvd > s.clen {
		c.resetLocked(s, http2.ErrCodeProtocol, protocolError(s.id, "more DATA than the declared content-length"), false)
		return 0, nil
	}
	if len(data) > 0 && !s.bodyClosed {
		s.appendData(data)
	}
	if f.StreamEnded() {
		c.endRecvLocked(s)
	}
	s.wakeReader()
	return 0, nil
}

// giveBackLocked returns to the server, in one WINDOW_UPDATE, the
// stream's window that was read or went on padding.
func (c *conn) giveBackLocked(s *stream) {
	c.wbuf = appendWindowUpdate(c.wbuf, s.id, uint32(s.recvUnsent))
	c.wakeWriterLocked()
	s.recvAvail += s.recvUnsent
	s.recvUnsent = 0
}

// protocolError is a stream error for a malformed response (RFC 9113 §8.1.1).
func protocolError(id uint32, what string) http2.StreamError {
	return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol, Cause: errors.New("malformed response: " + what)}
}

func (c *conn) onHeadersLocked(s *stream, ended bool, hb *headerBlock) {
	if s.recvEnd {
		c.resetLocked(s, http2.ErrCodeStreamClosed, protocolError(s.id, "HEADERS after END_STREAM"), false)
		return
	}
	if hb.malformed != "" {
		c.resetLocked(s, http2.ErrCodeProtocol, protocolError(s.id, hb.malformed), false)
		return
	}
	if s.resp != nil {
		// Trailers: they end the stream and carry no pseudo-fields (§8.1).
		if !ended || hb.pseudo > 0 {
			c.resetLocked(s, http2.ErrCodeProtocol, protocolError(s.id, "trailers without END_STREAM or with pseudo-fields"), false)
			return
		}
		s.trailer = hb.header
		c.endRecvLocked(s)
		s.wakeReader()
		return
	}
	if hb.resp == nil || hb.resp.StatusCode == 0 {
		c.resetLocked(s, http2.ErrCodeProtocol, protocolError(s.id, "no valid :status"), false)
		return
	}
	if code := hb.resp.StatusCode; code < 200 {
		if code == 101 || ended {
			c.resetLocked(s, http2.ErrCodeProtocol, protocolError(s.id, "101 or 1xx with END_STREAM"), false)
			return
		}
		if s.n1xx++; s.n1xx > max1xx {
			c.resetLocked(s, http2.ErrCodeProtocol, protocolError(s.id, "too many 1xx responses"), false)
			return
		}
		s.info = append(s.info, info{code: code, header: hb.resp.Header})
		if code == http.StatusContinue && s.expect == expectWaiting {
			s.expect = expectSend
		}
		s.wakeReader()
		return
	}
	if s.expect == expectWaiting {
		// A final response before the 100 Continue: the body is not
		// sent (endRecvLocked ends the request side).
		s.expect = expectDeclined
	}
	s.resp = attachBody(s, hb, ended)
	if ended {
		c.endRecvLocked(s)
	}
	s.wakeReader()
}
