// Package sockio reads and writes TCP connections with raw system calls.
//
// A read or write through net.TCPConn tells the Go scheduler that a system
// call begins and ends. On a proxy that makes four socket calls per
// request, that bookkeeping is a large share of its CPU time, and it wakes
// the runtime's monitor thread whenever the process was idle a moment
// before, which costs a context switch each time. A socket in non-blocking
// mode never blocks in read or write, so that bookkeeping is not needed:
// Conn makes those two calls directly and, when the socket is not ready,
// waits on Go's network poller through the connection's syscall.RawConn,
// so deadlines and Close behave exactly as on net.TCPConn.
//
// Invariants a caller may rely on: Read and Write return what
// net.TCPConn's would (io.EOF at the end of the stream, a *net.OpError
// with Op "read" or "write" otherwise, wrapping os.ErrDeadlineExceeded,
// net.ErrClosed or the *os.SyscallError of the failed call); each Write
// is written whole or fails, and is not interleaved with another Write on
// the same connection; every other method is the embedded *net.TCPConn's.
package sockio
