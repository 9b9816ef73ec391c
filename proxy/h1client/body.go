package h1client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"golang.org/x/net/http/httpguts"
)

// errBodyClosed is what a Read after Close returns, as in net/http.
var errBodyClosed = errors.New("h1client: read on closed response body")

// responseBody is a response's body, read from its connection on the
// caller's goroutine. The response lives in the same allocation. At a
// clean EOF the connection goes back to the pool (when keep allows);
// Close before EOF closes it, unless the rest is already buffered.
type responseBody struct {
	resp http.Response
	c    *conn
	// ctx is the request's context, kept for the body's lifetime (one
	// request) to report its cause when it cancels a read.
	ctx  context.Context
	mode int
	// n is what is left: of the body (bodyFixed) or of the current chunk
	// (bodyChunked).
	n int64
	// overhead is the chunk framing read beyond an allowance per chunk
	// and per data byte (see chunkSize).
	overhead int64
	// inChunk: chunk data was read, so a CRLF is due when it ends.
	inChunk bool
	keep    bool // the connection may be reused after EOF
	// used counts the elements of vals that hold values.
	used uint8

	mu       sync.Mutex
	reading  bool  // a Read is in progress: Close leaves the release to it
	closed   bool  // Close was called
	released bool  // the connection was given up
	err      error // sticky: io.EOF or the failure

	// vals holds the values of the final head's fields (then of the
	// trailers') seen once, one element each (see parseFields): a
	// response whose fields fit costs no allocation for them. The
	// header's value slices point into it, so a value slice kept keeps
	// the response's allocation. Four make the struct 288 bytes, a size
	// class: a response with three or four fields (net/http's small
	// ones have three) takes as many bytes as with a separate array,
	// in one allocation fewer. Six, enough for nginx's five or six,
	// would make it 320, 32 bytes more for a three-field response.
	vals [4]string
}

func (b *responseBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	switch {
	case b.closed:
		b.mu.Unlock()
		return 0, errBodyClosed
	case b.err != nil:
		err := b.err
		b.mu.Unlock()
		return 0, err
	}
	b.reading = true
	b.mu.Unlock()

	n, err := b.read(p)

	b.mu.Lock()
	b.reading = false
	closed := b.closed
	if closed && err != nil && err != io.EOF {
		// Close ended this Read (by moving the deadline): say so,
		// rather than report a timeout that did not happen.
		err = errBodyClosed
	}
	release := (err != nil || closed) && !b.released
	if release {
		b.released = true
	}
	if err != nil && b.err == nil {
		b.err = err
	}
	b.mu.Unlock()
	if release {
		b.c.release(err == io.EOF && !closed && b.keep)
	}
	return n, err
}

// Close ends the body. Before EOF the connection is closed, unless the
// rest of a Content-Length body is already buffered (a few KiB at most),
// in which case it is skipped and the connection reused. Close may be
// called while a Read blocks in another goroutine: the Read then returns
// an error at once.
func (b *responseBody) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	if b.reading {
		b.mu.Unlock()
		b.c.cancel() // the blocked Read fails and releases the connection
		return nil
	}
	release := !b.released
	b.released = true
	b.mu.Unlock()
	if !release {
		return nil
	}
	keep := false
	if b.mode == bodyFixed && b.err == nil && b.n <= 4<<10 && b.n <= int64(b.c.br.Buffered()) {
		_, _ = b.c.br.Discard(int(b.n))
		keep = b.keep
	}
	b.c.release(keep)
	return nil
}

// read reads the next bytes, returning io.EOF (possibly with the last
// bytes) at the body's clean end.
func (b *responseBody) read(p []byte) (int, error) {
	br := b.c.br
	switch b.mode {
	case bodyFixed:
		if b.n == 0 {
			return 0, io.EOF
		}
		if int64(len(p)) > b.n {
			p = p[:b.n]
		}
		n, err := br.Read(p)
		b.n -= int64(n)
		switch {
		case b.n == 0:
			return n, io.EOF
		case err == io.EOF:
			return n, b.ioErr(fmt.Errorf("body ended %d bytes short of its Content-Length: %w", b.n, io.ErrUnexpectedEOF))
		case err != nil:
			return n, b.ioErr(err)
		}
		return n, nil
	case bodyChunked:
		return b.readChunked(p)
	}
	n, err := br.Read(p)
	if err != nil && err != io.EOF {
		err = b.ioErr(err)
	}
	return n, err
}

func (b *responseBody) ioErr(err error) error {
	if b.c.ended(b.ctx) {
		return fmt.Errorf("h1client: reading body: %w", b.c.cause(b.ctx))
	}
	return fmt.Errorf("h1client: reading body: %w", err)
}

// chunkEnd is the end of a chunked body without trailers, as it follows
// the last data chunk: its CRLF, the last chunk, the empty trailer section.
const chunkEnd = "\r\n0\r\n\r\n"

func (b *responseBody) readChunked(p []byte) (int, error) {
	br := b.c.br
	if b.n == 0 {
		if b.inChunk {
			if err := b.chunkCRLF(); err != nil {
				return 0, err
			}
			b.inChunk = false
		}
		size, err := b.chunkSize()
		if err != nil {
			return 0, err
		}
		if size == 0 {
			return 0, b.readTrailers()
		}
		b.n, b.inChunk = size, true
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := br.Read(p)
	b.n -= int64(n)
	if err == io.EOF {
		return n, b.ioErr(fmt.Errorf("chunked body cut short: %w", io.ErrUnexpectedEOF))
	}
	if err != nil {
		return n, b.ioErr(err)
	}
	if b.n == 0 && br.Buffered() >= len(chunkEnd) {
		// The end is already here: report EOF with the last bytes, so
		// that the connection goes back to the pool at once.
		if end, _ := br.Peek(len(chunkEnd)); string(end) == chunkEnd {
			_, _ = br.Discard(len(chunkEnd))
			b.inChunk = false
			return n, io.EOF
		}
	}
	return n, nil
}

// chunkCRLF reads the CRLF that ends a chunk's data.
func (b *responseBody) chunkCRLF() error {
	crlf, err := b.c.br.Peek(2)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return b.ioErr(err)
	}
	if crlf[0] != '\r' || crlf[1] != '\n' {
		return errors.New("h1client: malformed chunked encoding: chunk data not followed by CRLF")
	}
	_, _ = b.c.br.Discard(2)
	return nil
}

// chunkSize reads a chunk-size line (RFC 9112 §7.1): hex digits, optional
// whitespace and extensions (ignored), CRLF.
func (b *responseBody) chunkSize() (int64, error) {
	line, err := b.c.br.ReadSlice('\n')
	switch {
	case err == bufio.ErrBufferFull:
		return 0, errors.New("h1client: malformed chunked encoding: chunk size line too long")
	case err == io.EOF:
		return 0, b.ioErr(fmt.Errorf("chunked body cut short: %w", io.ErrUnexpectedEOF))
	case err != nil:
		return 0, b.ioErr(err)
	}
	size, err := parseChunkSize(line)
	if err != nil {
		return 0, err
	}
	// Chunk extensions are ignored, so a server could make the reader
	// parse megabytes of framing per byte of data. As net/http does,
	// allow 16 bytes of framing per chunk plus twice its data, and
	// refuse a body whose framing runs 16 KiB beyond that.
	b.overhead = max(b.overhead+int64(len(line))+2-16-2*min(size, 1<<40), 0)
	if b.overhead > maxChunkOverhead {
		return 0, errors.New("h1client: malformed chunked encoding: too much framing for the data")
	}
	return size, nil
}

// maxChunkOverhead bounds the chunk framing read beyond its allowance.
const maxChunkOverhead = 16 << 10

// parseChunkSize parses a chunk-size line including its CRLF.
func parseChunkSize(line []byte) (int64, error) {
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return 0, errors.New("h1client: malformed chunked encoding: chunk size line not ended by CRLF")
	}
	line = line[:len(line)-2]
	var n int64
	i := 0
	for ; i < len(line); i++ {
		d := line[i]
		var v byte
		switch {
		case '0' <= d && d <= '9':
			v = d - '0'
		case 'a' <= d && d <= 'f':
			v = d - 'a' + 10
		case 'A' <= d && d <= 'F':
			v = d - 'A' + 10
		default:
			goto rest
		}
		if i >= 15 {
			return 0, errors.New("h1client: malformed chunked encoding: chunk size too large")
		}
		n = n<<4 | int64(v)
	}
rest:
	if i == 0 {
		return 0, fmt.Errorf("h1client: malformed chunked encoding: invalid chunk size %q", clip(string(line)))
	}
	ext := line[i:]
	for len(ext) > 0 && (ext[0] == ' ' || ext[0] == '\t') {
		ext = ext[1:]
	}
	if len(ext) > 0 && ext[0] != ';' {
		return 0, fmt.Errorf("h1client: malformed chunked encoding: invalid chunk size %q", clip(string(line)))
	}
	for _, c := range ext {
		if c < ' ' && c != '\t' || c == 0x7f {
			return 0, errors.New("h1client: malformed chunked encoding: control byte in chunk extension")
		}
	}
	return n, nil
}

// readTrailers reads the trailer section after the last chunk into
// resp.Trailer (announced keys get their values, others are added) and
// returns io.EOF.
func (b *responseBody) readTrailers() error {
	block, err := readBlock(b.c.br, b.c.hp.t.maxHeaderBytes())
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if err == errHeaderTooLarge {
			return errors.New("h1client: response trailers exceed MaxResponseHeaderBytes")
		}
		return b.ioErr(fmt.Errorf("reading trailers: %w", err))
	}
	if n := countLines(block); n > 0 {
		tr := make(http.Header, n)
		used, err := parseFields(block, tr, n, b.vals[b.used:])
		if err != nil {
			return fmt.Errorf("%w (in trailers)", err)
		}
		b.used += uint8(used)
		// RFC 9110 §6.5.1: framing, routing, authentication and
		// content fields are not trailers, and a recipient may not
		// merge them into the header section; they are dropped so that
		// nothing downstream does.
		for k := range tr {
			if !httpguts.ValidTrailerHeader(k) {
				delete(tr, k)
			}
		}
		if b.resp.Trailer == nil {
			b.resp.Trailer = tr
		} else {
			for k, vv := range tr {
				b.resp.Trailer[k] = vv
			}
		}
	}
	b.inChunk = false
	return io.EOF
}

// upgradeBody is a 101 response's body: the connection itself, bytes the
// reader had buffered first. Close closes the connection.
type upgradeBody struct{ c *conn }

func (u *upgradeBody) Read(p []byte) (int, error)  { return u.c.br.Read(p) }
func (u *upgradeBody) Write(p []byte) (int, error) { return u.c.nc.Write(p) }
func (u *upgradeBody) Close() error {
	u.c.discard()
	return nil
}

// CloseWrite ends the sending direction of the switched connection alone
// (TCP half-close), so that a tunnel can pass a client's end of stream on
// to the upstream and still read its answer. A connection that cannot be
// half closed reports errors.ErrUnsupported.
func (u *upgradeBody) CloseWrite() error {
	if cw, ok := u.c.nc.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

var _ io.ReadWriteCloser = (*upgradeBody)(nil)
