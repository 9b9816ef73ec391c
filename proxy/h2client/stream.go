package h2client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"

	"github.com/outrigger-mesh/outrigger/proxy/internal/roundtrip"
)

// stream is one request/response exchange. Its fields are guarded by
// its connection's mu, except where noted.
type stream struct {
	c   *conn
	id  uint32
	seq uint64 // the conn's append count that covers its HEADERS
	// The watch of the round trip's context (see watch): ew and ewToken
	// for a context that has WatchEnd, else stopCtx, which unregisters
	// the context's AfterFunc. Set before the stream opens.
	ew      roundtrip.EndWatcher
	ewToken uint64
	stopCtx func() bool
	// deadline, when set, is the round trip's deadline timer (see
	// expire); the stream's end stops it.
	deadline *time.Timer

	// done: the stream left the connection (both sides ended, or reset).
	done bool
	// err, once set, fails RoundTrip and, after the data buffered,
	// Response.Body; retry says the server never processed the request.
	err   error
	retry bool

	// Send side.
	sentEnd     bool  // END_STREAM sent
	sendStopped bool  // the request body is no longer wanted
	sendWindow  int64 // what the server lets the stream send
	waitingConn bool  // in conn.connWaiters
	body        io.ReadCloser
	bodyOnce    sync.Once // closes body
	sending     bool      // a goroutine sends body
	expect      uint8     // expectNone, or where the wait for a 100 Continue is

	// Receive side.
	resp       *http.Response
	info       []info // 1xx responses not yet reported
	n1xx       int
	recvEnd    bool // END_STREAM received
	data       []byte
	roff       int   // data[roff:] is unread
	recvAvail  int64 // what the server may still send
	recvUnsent int64 // read (or padding) not yet given back
	clen       int64 // declared content-length, or -1
	recvd      int64
	trailer    http.Header
	bodyClosed bool
	noContent  bool // HEAD, 204 or 304: no DATA may carry content
	rbody      body // Response.Body, when there is one
	noBody     bool // a HEAD request: the response has no content

	recvWake chan struct{} // buffered(1): RoundTrip or Body.Read may proceed
	sendWake chan struct{} // buffered(1): the body sender may proceed; nil without one
}

// info is an informational (1xx) response.
type info struct {
	code   int
	header http.Header
}

func (s *stream) wakeReader() {
	select {
	case s.recvWake <- struct{}{}:
	default:
	}
}

func (s *stream) wakeSender() {
	select {
	case s.sendWake <- struct{}{}:
	default:
	}
}

// closeBody closes the request body once. When a goroutine may be
// blocked reading it, the close runs on a goroutine of its own: a body
// whose Close waits for its Read must not hold up the caller.
func (s *stream) closeBody(async bool) {
	if s.body == nil {
		return
	}
	s.bodyOnce.Do(func() {
		if async {
			go s.body.Close()
		} else {
			s.body.Close()
		}
	})
}

// unansweredLocked reports whether the server has sent the stream no
// response at all, 1xx included: only then is a refusal (REFUSED_STREAM,
// or a GOAWAY below its id) taken at its word and the request sent again.
//
// A 1xx has been passed on to the caller by the time the refusal is seen
// (roundTrip reports the 1xx it collected before the error), and the
// caller may have passed it on in turn: a proxy has written it to its
// client. Sent again, the request would draw its 1xx again, and the
// client would see a 103 Early Hints, or a 100 Continue, twice for one
// request; and a server that answered has begun to process the request,
// whatever its refusal says (RFC 9113 §8.7: REFUSED_STREAM means closed
// "prior to any processing"). So the stream fails as a reset would, with
// an error that does not wrap ErrUnprocessed, and the caller's own retry
// policy decides, as for any stream reset after the server saw it.
// Holding the 1xx back until the final response, to drop a repeat, would
// delay 103 Early Hints, whose use is to arrive early.
func (s *stream) unansweredLocked() bool { return s.resp == nil && s.n1xx == 0 }

// errRefusedAfterAnswer is the cause in the StreamError of a stream the
// server refused after it had sent a 1xx response (see
// unansweredLocked).
var errRefusedAfterAnswer = errors.New("refused after a 1xx response: not sent again")

// abortLocked fails the stream with err and takes it off the connection.
func (c *conn) abortLocked(s *stream, err error, retry bool) {
	if s.err == nil {
		s.err, s.retry = err, retry
	}
	s.wakeReader()
	s.wakeSender()
	if s.sending {
		s.closeBody(true)
	}
	c.removeLocked(s)
}

// resetLocked sends RST_STREAM with code unless the stream is done, and
// fails it with err; a nil err stops only the request side (the response
// stays readable).
func (c *conn) resetLocked(s *stream, code http2.ErrCode, err error, retry bool) {
	if !s.done && !c.closed {
		c.wbuf = appendRST(c.wbuf, s.id, code)
		c.wakeWriterLocked()
	}
	if err == nil {
		s.sendStopped = true
		s.wakeSender()
		if s.sending {
			s.closeBody(true)
		}
		c.removeLocked(s)
		return
	}
	c.abortLocked(s, err, retry)
}

// endRecvLocked records END_STREAM from the server. A request body still
// being sent is not wanted any more: it is cancelled, as x/net/http2
// does.
//
// A request whose body a final response declined (it came before the 100
// Continue) ends here too, with RST_STREAM NO_ERROR: the response is
// complete and the request has nothing more to say. It is not ended
// before: an empty DATA with END_STREAM would give the request fewer
// bytes than its content-length (malformed, RFC 9113 §8.1.1), and
// RST_STREAM at the response's head would cancel the response too. RFC
// 9113 §8.1 lets a server that answered before the whole request arrived
// end the stream with RST_STREAM NO_ERROR; the client ending its
// half-open stream the same way after a complete response is the
// symmetric, error-free close.
func (c *conn) endRecvLocked(s *stream) {
	s.recvEnd = true
	if !s.sentEnd {
		code := http2.ErrCodeCancel
		if s.expect == expectDeclined {
			code = http2.ErrCodeNo
		}
		c.resetLocked(s, code, nil, false)
		return
	}
	c.removeLocked(s)
}

// removeLocked takes a stream off the connection, freeing its slot.
func (c *conn) removeLocked(s *stream) {
	if s.done {
		return
	}
	s.done = true
	delete(c.streams, s.id)
	if s.waitingConn {
		// Its sender has stopped: a connection window that never grows
		// must not keep every stream that ever waited for it.
		s.waitingConn = false
		if i := slices.Index(c.connWaiters, s); i >= 0 {
			c.connWaiters = slices.Delete(c.connWaiters, i, i+1)
		}
	}
	s.unwatch()
	if s.deadline != nil {
		s.deadline.Stop()
	}
	c.releaseLocked()
}

// appendData buffers received DATA for the reader.
func (s *stream) appendData(p []byte) {
	if s.roff > 0 && len(s.data)+len(p) > cap(s.data) {
		n := copy(s.data, s.data[s.roff:])
		s.data = s.data[:n]
		s.roff = 0
	}
	s.data = append(s.data, p...)
}

// watch arranges for ctx's end to reset the stream (see cancel). It is
// called before the stream opens, without c.mu: the function may run at
// once, and cancel takes c.mu.
func (s *stream) watch(ctx context.Context) {
	c := s.c
	f := func() { c.cancel(s, ctx) }
	if ew, ok := ctx.(roundtrip.EndWatcher); ok {
		s.ew, s.ewToken = ew, ew.WatchEnd(f)
		return
	}
	if ctx.Done() != nil {
		s.stopCtx = context.AfterFunc(ctx, f)
	}
}

// unwatch ends the watch of the context, if any. Called with c.mu held.
func (s *stream) unwatch() {
	switch {
	case s.ew != nil:
		s.ew.StopWatch(s.ewToken)
		s.ew = nil
	case s.stopCtx != nil:
		s.stopCtx()
		s.stopCtx = nil
	}
}

// cancel resets the stream when its context ends; before the stream
// opened (it has no id yet) it fails the stream, which roundTrip then
// finds and does not open.
func (c *conn) cancel(s *stream, ctx context.Context) {
	c.mu.Lock()
	defer c.unlock()
	err := fmt.Errorf("h2client: %w", context.Cause(ctx))
	switch {
	case s.id == 0:
		if s.err == nil {
			s.err = err
		}
	case !s.done:
		c.resetLocked(s, http2.ErrCodeCancel, err, false)
	}
}

// expire resets the stream when the round trip's deadline passes, as
// cancel does when a context's deadline passes, with an error that wraps
// context.DeadlineExceeded.
func (s *stream) expire() {
	c := s.c
	c.mu.Lock()
	defer c.unlock()
	if !s.done {
		c.resetLocked(s, http2.ErrCodeCancel, errDeadline, false)
	}
}

// errStopped ends a request body the server no longer reads.
var errStopped = errors.New("h2client: request body no longer wanted")

// sendErrLocked is why the stream can send no more, or nil.
func (s *stream) sendErrLocked() error {
	if s.err != nil {
		return s.err
	}
	if s.sendStopped || s.done {
		return errStopped
	}
	return nil
}

// writeData queues p as DATA frames within the flow-control windows and
// SETTINGS_MAX_FRAME_SIZE, waiting for window and for the writer's queue
// to drain below maxPending; endStream sets END_STREAM on the last one.
func (s *stream) writeData(p []byte, endStream bool) error {
	c := s.c
	for {
		c.mu.Lock()
		if err := s.sendErrLocked(); err != nil {
			c.mu.Unlock()
			return err
		}
		if len(c.wbuf) >= maxPending {
			ch := c.waitDrainedLocked()
			c.mu.Unlock()
			select {
			case <-ch:
			case <-s.sendWake:
			}
			continue
		}
		n := min(int64(len(p)), int64(c.peerMaxFrame), s.sendWindow, c.sendWindow)
		if len(p) > 0 && n <= 0 {
			if c.sendWindow <= 0 && !s.waitingConn {
				s.waitingConn = true
				c.connWaiters = append(c.connWaiters, s)
			}
			c.mu.Unlock()
			// It stays listed until the connection's window grows: a
			// stream WINDOW_UPDATE that wakes it does not list it again.
			<-s.sendWake
			continue
		}
		n = max(n, 0)
		last := endStream && int(n) == len(p)
		c.appendDataLocked(s.id, p[:n], last)
		c.appended++
		s.sendWindow -= n
		c.sendWindow -= n
		c.wakeWriterLocked()
		if last {
			s.sentEnd = true
			if s.recvEnd {
				c.removeLocked(s)
			}
		}
		c.unlock()
		p = p[n:]
		if len(p) == 0 {
			return nil
		}
	}
}

// writeTrailers queues the request's trailers as HEADERS with END_STREAM.
func (s *stream) writeTrailers(trailer http.Header) error {
	c := s.c
	var fields []field
	for k, vv := range trailer {
		// Keys set after prepare checked the announced ones.
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("h2client: invalid trailer name %q", k)
		}
		lk := lowerKey(k)
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return fmt.Errorf("h2client: invalid value for trailer %q", k)
			}
			fields = append(fields, field{lk, v})
		}
	}
	c.mu.Lock()
	if err := s.sendErrLocked(); err != nil {
		c.mu.Unlock()
		return err
	}
	if limit := c.peerMaxHeaderList; limit != noHeaderListLimit {
		if size := c.listSize(fields); size > limit {
			c.mu.Unlock()
			return headerListTooLarge("trailers", size, limit)
		}
	}
	c.hbuf.Reset()
	for _, f := range fields {
		c.writeFieldLocked(f.name, f.value)
	}
	c.appendHeaderBlockLocked(s.id, c.hbuf.Bytes(), true)
	c.appended++
	c.wakeWriterLocked()
	s.sentEnd = true
	if s.recvEnd {
		c.removeLocked(s)
	}
	c.unlock()
	return nil
}

// fail resets the stream over an error of the request side.
func (s *stream) fail(err error) {
	c := s.c
	c.mu.Lock()
	defer c.unlock()
	if !s.done {
		c.resetLocked(s, http2.ErrCodeCancel, err, false)
	} else if s.err == nil && !s.sendStopped {
		s.err = err
		s.wakeReader()
	}
}

// sendBody sends the request body (and trailers) on its own goroutine,
// while the response is read: full duplex, as gRPC streaming needs.
func (s *stream) sendBody(clen int64, trailer http.Header, done chan<- struct{}) {
	defer close(done)
	defer s.closeBody(false)
	bp := bodyBufPool.Get().(*[]byte)
	defer bodyBufPool.Put(bp)
	buf := *bp
	var sent int64
	for {
		n, rerr := s.body.Read(buf)
		if n > 0 {
			sent += int64(n)
			if clen >= 0 && sent > clen {
				s.fail(fmt.Errorf("h2client: request body longer than its ContentLength %d", clen))
				return
			}
			if err := s.writeData(buf[:n], false); err != nil {
				return
			}
		}
		if rerr == io.EOF {
			if clen > 0 && sent < clen {
				s.fail(fmt.Errorf("h2client: request body of %d bytes, shorter than its ContentLength %d", sent, clen))
				return
			}
			if len(trailer) > 0 {
				if err := s.writeTrailers(trailer); err != nil && err != errStopped {
					s.fail(err)
				}
				return
			}
			s.writeData(nil, true)
			return
		}
		if rerr != nil {
			s.fail(fmt.Errorf("h2client: reading request body: %w", rerr))
			return
		}
	}
}

var bodyBufPool = sync.Pool{New: func() any { b := make([]byte, defaultMaxFrame); return &b }}
