package h2server

import (
	"encoding/binary"
	"runtime"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Every frame the server sends is encoded into sc.wbuf under sc.mu, by
// whichever goroutine has something to say (a handler's response, the
// reader's acknowledgements). One writer goroutine per connection moves
// what has accumulated to the socket in a single write: frames of many
// streams share a syscall. Handlers never wait for the syscall, only for
// flow-control windows and for room: one that finds maxPending bytes
// queued waits for the writer to have written them (its Write to
// return), so that the response bytes held for a client that does not
// read stay under about twice that.

func appendFrameHeader(b []byte, length int, typ http2.FrameType, flags http2.Flags, id uint32) []byte {
	return append(b, byte(length>>16), byte(length>>8), byte(length),
		byte(typ), byte(flags),
		byte(id>>24)&0x7f, byte(id>>16), byte(id>>8), byte(id))
}

// queueLocked notes that sc.wbuf has grown and wakes the writer unless it
// is already awake. sc.mu is held.
func (sc *serverConn) queueLocked() {
	if !sc.writing && !sc.wakePending {
		sc.wakePending = true
		select {
		case sc.wake <- struct{}{}:
		default:
		}
	}
}

// writeLoop is the connection's writer.
func (sc *serverConn) writeLoop() {
	defer close(sc.writerDone)
	for range sc.wake {
		// Let the goroutines readied by the same network poll (handlers
		// finishing their responses) append before the buffer is taken:
		// this is what lets one write carry many streams' frames when
		// GOMAXPROCS is small.
		runtime.Gosched()
		sc.mu.Lock()
		sc.wakePending = false
		for len(sc.wbuf) > 0 && !sc.dead {
			buf := sc.wbuf
			sc.wbuf, sc.spare = sc.spare[:0], nil
			sc.ctrlPending = 0
			sc.writing = true
			if sc.closeAfterFlush && sc.idleTimeout > 0 {
				// A last write, from its start (see closeAfterFlushLocked):
				// a stream the GOAWAY named may still be answering.
				_ = sc.nc.SetWriteDeadline(time.Now().Add(sc.idleTimeout))
			}
			sc.mu.Unlock()
			_, err := sc.nc.Write(buf)
			sc.mu.Lock()
			sc.writing = false
			if cap(buf) <= keptWriteBuf {
				sc.spare = buf[:0]
			}
			sc.wakeSendersLocked()
			if err != nil {
				sc.dieLocked(err)
			}
		}
		if sc.closeAfterFlush || sc.dead {
			sc.unlock() // a failed write ended the streams
			sc.finishWrites()
			return
		}
		sc.mu.Unlock()
	}
}

// finishWrites ends the write side after the last flush: a TCP peer gets
// FIN after the GOAWAY and a short while to read it before the reader,
// which keeps draining, closes the socket (closing with unread input
// would reset the connection and could destroy the GOAWAY in flight).
func (sc *serverConn) finishWrites() {
	if cw, ok := sc.nc.(interface{ CloseWrite() error }); ok && !sc.isDead() {
		if cw.CloseWrite() == nil {
			_ = sc.nc.SetReadDeadline(time.Now().Add(lingerTimeout))
			return
		}
	}
	sc.nc.Close()
}

// lingerTimeout bounds the wait for the client to close after the
// server's GOAWAY and FIN.
const lingerTimeout = time.Second

func (sc *serverConn) isDead() bool {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.dead
}

// encWriter is the hpack encoder's output: the connection's write buffer.
type encWriter struct{ sc *serverConn }

func (w encWriter) Write(p []byte) (int, error) {
	w.sc.wbuf = append(w.sc.wbuf, p...)
	return len(p), nil
}

// appendHeadersLocked encodes a header block (status and fields, or
// trailer fields when status is 0) and frames it as HEADERS plus
// CONTINUATIONs of at most the peer's frame size. sc.mu is held: the
// encoder's dynamic table must change in the order its output is sent.
func (sc *serverConn) appendHeadersLocked(id uint32, status int, fields []hpack.HeaderField, end bool) {
	start := len(sc.wbuf)
	sc.wbuf = appendFrameHeader(sc.wbuf, 0, http2.FrameHeaders, 0, id)
	if status != 0 {
		_ = sc.enc.WriteField(hpack.HeaderField{Name: ":status", Value: statusString(status)})
	}
	for _, f := range fields {
		_ = sc.enc.WriteField(f)
	}
	n := len(sc.wbuf) - start - 9
	var flags http2.Flags
	if end {
		flags = http2.FlagHeadersEndStream
	}
	maxFrame := int(sc.peerMaxFrame)
	if n <= maxFrame {
		appendFrameHeader(sc.wbuf[start:start], n, http2.FrameHeaders, flags|http2.FlagHeadersEndHeaders, id)
		return
	}
	// Rare: a block larger than one frame. Re-frame it.
	block := append([]byte(nil), sc.wbuf[start+9:]...)
	sc.wbuf = sc.wbuf[:start]
	typ := http2.FrameHeaders
	for len(block) > 0 {
		k := min(len(block), maxFrame)
		f := flags
		if k == len(block) {
			f |= http2.FlagHeadersEndHeaders // same bit as CONTINUATION's END_HEADERS
		}
		sc.wbuf = appendFrameHeader(sc.wbuf, k, typ, f, id)
		sc.wbuf = append(sc.wbuf, block[:k]...)
		block = block[k:]
		typ, flags = http2.FrameContinuation, 0
	}
}

func (sc *serverConn) appendDataLocked(id uint32, p []byte, end bool) {
	var flags http2.Flags
	if end {
		flags = http2.FlagDataEndStream
	}
	sc.wbuf = appendFrameHeader(sc.wbuf, len(p), http2.FrameData, flags, id)
	sc.wbuf = append(sc.wbuf, p...)
}

func (sc *serverConn) appendRSTLocked(id uint32, code http2.ErrCode) {
	sc.wbuf = appendFrameHeader(sc.wbuf, 4, http2.FrameRSTStream, 0, id)
	sc.wbuf = binary.BigEndian.AppendUint32(sc.wbuf, uint32(code))
}

func (sc *serverConn) appendWindowUpdateLocked(id uint32, n uint32) {
	sc.wbuf = appendFrameHeader(sc.wbuf, 4, http2.FrameWindowUpdate, 0, id)
	sc.wbuf = binary.BigEndian.AppendUint32(sc.wbuf, n)
}

func (sc *serverConn) appendGoAwayLocked(last uint32, code http2.ErrCode) {
	sc.wbuf = appendFrameHeader(sc.wbuf, 8, http2.FrameGoAway, 0, 0)
	sc.wbuf = binary.BigEndian.AppendUint32(sc.wbuf, last)
	sc.wbuf = binary.BigEndian.AppendUint32(sc.wbuf, uint32(code))
}

func (sc *serverConn) appendSettingsLocked(settings ...http2.Setting) {
	sc.wbuf = appendFrameHeader(sc.wbuf, 6*len(settings), http2.FrameSettings, 0, 0)
	for _, s := range settings {
		sc.wbuf = binary.BigEndian.AppendUint16(sc.wbuf, uint16(s.ID))
		sc.wbuf = binary.BigEndian.AppendUint32(sc.wbuf, s.Val)
	}
}

func (sc *serverConn) appendSettingsAckLocked() {
	sc.wbuf = appendFrameHeader(sc.wbuf, 0, http2.FrameSettings, http2.FlagSettingsAck, 0)
}

func (sc *serverConn) appendPingLocked(data [8]byte) {
	sc.wbuf = appendFrameHeader(sc.wbuf, 8, http2.FramePing, 0, 0)
	sc.wbuf = append(sc.wbuf, data[:]...)
}

func (sc *serverConn) appendPingAckLocked(data [8]byte) {
	sc.wbuf = appendFrameHeader(sc.wbuf, 8, http2.FramePing, http2.FlagPingAck, 0)
	sc.wbuf = append(sc.wbuf, data[:]...)
}

// statusString avoids formatting the common status codes.
func statusString(code int) string {
	switch code {
	case 200:
		return "200"
	case 204:
		return "204"
	case 304:
		return "304"
	case 404:
		return "404"
	case 500:
		return "500"
	case 503:
		return "503"
	}
	if code >= 100 && code <= 999 {
		return string([]byte{byte('0' + code/100), byte('0' + code/10%10), byte('0' + code%10)})
	}
	return "500"
}
