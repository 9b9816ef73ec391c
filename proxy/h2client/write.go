package h2client

import (
	"fmt"
	"runtime"
	"time"

	"golang.org/x/net/http2"
)

// writeLoop writes out the frames the streams and the reader queued. It
// takes the whole queue at once, so the frames of many streams leave in
// one system call, and it hands the appenders a second buffer, so that
// they never wait for the system call.
func (c *conn) writeLoop() {
	defer close(c.writerDone)
	defer c.closeSocket()
	for {
		select {
		case <-c.wake:
		case <-c.done:
			// Best effort for what close queued (GOAWAY, RST_STREAM):
			// close set a write deadline.
			c.mu.Lock()
			buf := c.wbuf
			c.wbuf = nil
			c.mu.Unlock()
			if len(buf) > 0 {
				c.nc.Write(buf)
			}
			return
		}
		// Let the goroutines that are ready to run (with GOMAXPROCS=1,
		// the streams that the frame just read woke) queue their frames
		// first: one write then carries them all.
		runtime.Gosched()
		c.mu.Lock()
		buf := c.wbuf
		prevTaken := c.taken
		c.taken = c.appended
		c.answers = 0
		if c.drained != nil {
			close(c.drained)
			c.drained = nil
		}
		if len(buf) == 0 {
			// Woken for bytes an earlier write already carried: the
			// buffers stay where they are.
			c.mu.Unlock()
			continue
		}
		c.wbuf = c.spare
		c.spare = nil
		c.mu.Unlock()
		c.writesBegun.Add(1)
		n, err := c.nc.Write(buf)
		c.writesEnded.Add(1)
		c.mu.Lock()
		if err != nil && n == 0 {
			// Nothing of buf left: its requests were never sent.
			c.taken = prevTaken
		}
		if cap(buf) <= maxKeptBuffer {
			c.spare = buf[:0]
		}
		c.mu.Unlock()
		if err != nil {
			c.close(fmt.Errorf("h2client: write: %w", err))
			return
		}
	}
}

// closeSocket closes the connection's socket, the writer's last act, and
// counts the close for its host (see Transport.socketClosed).
func (c *conn) closeSocket() {
	c.nc.Close()
	c.t.socketClosed(c.hp)
}

// waitDrainedLocked returns a channel closed when the writer next takes
// the queue (or the connection closes).
func (c *conn) waitDrainedLocked() <-chan struct{} {
	if c.drained == nil {
		c.drained = make(chan struct{})
	}
	return c.drained
}

// frameHeaderLen is the length of a frame header (RFC 9113 §4.1).
const frameHeaderLen = 9

func appendFrameHeader(b []byte, length int, typ http2.FrameType, flags http2.Flags, id uint32) []byte {
	return append(b, byte(length>>16), byte(length>>8), byte(length), byte(typ), byte(flags),
		byte(id>>24)&0x7f, byte(id>>16), byte(id>>8), byte(id))
}

func appendSettings(b []byte, ss []http2.Setting) []byte {
	b = appendFrameHeader(b, 6*len(ss), http2.FrameSettings, 0, 0)
	for _, s := range ss {
		b = append(b, byte(s.ID>>8), byte(s.ID), byte(s.Val>>24), byte(s.Val>>16), byte(s.Val>>8), byte(s.Val))
	}
	return b
}

func appendWindowUpdate(b []byte, id, incr uint32) []byte {
	b = appendFrameHeader(b, 4, http2.FrameWindowUpdate, 0, id)
	return append(b, byte(incr>>24), byte(incr>>16), byte(incr>>8), byte(incr))
}

func appendGoAway(b []byte, lastID uint32, code http2.ErrCode) []byte {
	b = appendFrameHeader(b, 8, http2.FrameGoAway, 0, 0)
	return append(b, byte(lastID>>24)&0x7f, byte(lastID>>16), byte(lastID>>8), byte(lastID),
		byte(code>>24), byte(code>>16), byte(code>>8), byte(code))
}

func appendRST(b []byte, id uint32, code http2.ErrCode) []byte {
	b = appendFrameHeader(b, 4, http2.FrameRSTStream, 0, id)
	return append(b, byte(code>>24), byte(code>>16), byte(code>>8), byte(code))
}

// appendHeaderBlockLocked queues a header block as HEADERS and as many
// CONTINUATION frames as the server's SETTINGS_MAX_FRAME_SIZE needs.
func (c *conn) appendHeaderBlockLocked(id uint32, block []byte, endStream bool) {
	maxFrame := int(c.peerMaxFrame)
	typ := http2.FrameHeaders
	for {
		n := min(len(block), maxFrame)
		var flags http2.Flags
		if typ == http2.FrameHeaders && endStream {
			flags |= http2.FlagHeadersEndStream
		}
		if n == len(block) {
			flags |= http2.FlagHeadersEndHeaders
		}
		c.wbuf = appendFrameHeader(c.wbuf, n, typ, flags, id)
		c.wbuf = append(c.wbuf, block[:n]...)
		block = block[n:]
		if len(block) == 0 {
			return
		}
		typ = http2.FrameContinuation
	}
}

func (c *conn) appendDataLocked(id uint32, p []byte, endStream bool) {
	var flags http2.Flags
	if endStream {
		flags = http2.FlagDataEndStream
	}
	c.wbuf = appendFrameHeader(c.wbuf, len(p), http2.FrameData, flags, id)
	c.wbuf = append(c.wbuf, p...)
}

// aLongTimeAgo is a deadline in the past, which ends blocked I/O at once.
var aLongTimeAgo = time.Unix(1, 0)
