// Package sockio reads and writes TCP connections with raw system calls
// and a poller of its own.
//
// A read or write through net.TCPConn tells the Go scheduler that a system
// call begins and ends, and that bookkeeping wakes the runtime's monitor
// thread whenever the process was idle a moment before, a context switch
// each time. Its reads also always try the socket first: a proxy waiting
// for an answer it has just asked for makes a read that fails (EAGAIN)
// before every read that succeeds. On a proxy making four socket calls
// per request, both are a large share of its CPU time.
//
// Conn therefore takes the socket over: Wrap duplicates the TCPConn's
// descriptor and closes the TCPConn, which takes the socket out of Go's
// poller (left there, every event on it would be made and polled twice,
// for nobody). Conn makes its reads and writes as raw system calls
// (recvfrom and sendto; a non-blocking socket never blocks in them) on
// its descriptor, which it keeps open while a call is under way with a
// count of its own, cheaper than RawConn.Control's lock. It keeps its
// own readiness too:
// every connection is registered, edge-triggered, with an epoll instance
// that one goroutine watches through Go's own poller. A Read is tried
// only when the socket may hold data (the last read filled its buffer,
// or an event came since); a Write is tried at once and waits for an
// event only when the socket is full. Deadlines are kept by Conn, with a
// timer armed only while a call waits.
//
// Under the race detector the calls go through package syscall, so that
// the detector sees a write to a socket happen before the read of its
// bytes.
//
// Invariants a caller may rely on: Read and Write return what
// net.TCPConn's would (io.EOF at the end of the stream, a *net.OpError
// with Op "read" or "write" otherwise, wrapping os.ErrDeadlineExceeded,
// net.ErrClosed or the *os.SyscallError of the failed call); each Write
// is written whole or fails, and is not interleaved with another Write on
// the same connection; SetDeadline, SetReadDeadline and SetWriteDeadline
// apply to a call already waiting; Close ends waiting calls with
// net.ErrClosed; io.Copy to or from a Conn goes through its Read and
// Write, and net.Buffers and os.File reach the socket only through
// Write too (Conn lends neither the TCPConn's writev nor, through
// SyscallConn, its internal descriptor, for sendfile; SyscallConn's
// Read and Write wait through the poller, by Conn's deadlines). Every
// other exported method of *net.TCPConn is Conn's too, made on the
// socket as net.TCPConn makes it, with its defaults and errors. A
// deadline
// beyond the range of time.Duration never expires, as on net.TCPConn.
package sockio
