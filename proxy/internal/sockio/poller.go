package sockio

import (
	"os"
	"sync"
	"syscall"
	"time"
)

// poller is an epoll instance of its own, nested in Go's network poller:
// one goroutine waits (through Go's poller) until the instance has
// events, takes them all with one non-blocking epoll_wait, and wakes the
// Read or Write waiting on each connection. Connections are registered
// edge-triggered, so an event means "something changed since", and a
// side is tried only when it may be ready.
//
// The poller lives while it has connections: the last one's removal
// closes it, and the next Wrap starts a new one.
type poller struct {
	epfd int
	f    *os.File
	rc   syscall.RawConn
	fn   func(uintptr) bool

	mu     sync.Mutex
	conns  []*Conn // by slot; nil: free
	free   []int32
	live   int
	events [128]syscall.EpollEvent // the poller goroutine's alone
}

var (
	pollerMu sync.Mutex
	current  *poller
	genSeq   uint32 // under pollerMu
)

// register adds c to the current poller, starting one if needed.
func register(c *Conn) error {
	p, err := reserve(c)
	if err != nil {
		return err
	}
	ev := syscall.EpollEvent{
		Events: syscall.EPOLLIN | syscall.EPOLLOUT | syscall.EPOLLRDHUP | epollET,
		Fd:     c.slot,
		Pad:    int32(c.gen),
	}
	if errno := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, int(c.fd), &ev); errno != nil {
		err = os.NewSyscallError("epoll_ctl", errno)
		// Without pollerMu held: drop takes it.
		p.drop(c)
		c.pl = nil
		return err
	}
	return nil
}

// reserve gives c a slot and a generation in the current poller,
// starting one if needed. The slot counts as live, so the poller stays
// open while c is added to its epoll instance.
func reserve(c *Conn) (*poller, error) {
	pollerMu.Lock()
	defer pollerMu.Unlock()
	if current == nil {
		p, err := newPoller()
		if err != nil {
			return nil, err
		}
		current = p
	}
	p := current
	genSeq++
	c.gen = genSeq
	p.mu.Lock()
	var slot int32
	if n := len(p.free); n > 0 {
		slot = p.free[n-1]
		p.free = p.free[:n-1]
	} else {
		slot = int32(len(p.conns))
		p.conns = append(p.conns, nil)
	}
	p.conns[slot] = c
	p.live++
	p.mu.Unlock()
	c.pl, c.slot = p, slot
	return p, nil
}

// epollET is EPOLLET as the uint32 EpollEvent.Events wants.
const epollET = 1 << 31

func newPoller() (*poller, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	if err := syscall.SetNonblock(epfd, true); err != nil {
		syscall.Close(epfd)
		return nil, os.NewSyscallError("setnonblock", err)
	}
	// Non-blocking, so Go's poller watches it.
	f := os.NewFile(uintptr(epfd), "sockio-epoll")
	// A file Go's poller does not watch refuses deadlines; the poller
	// could then never wait for its events.
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		f.Close()
		return nil, err
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	p := &poller{epfd: epfd, f: f, rc: rc}
	p.fn = p.poll
	go p.run()
	return p, nil
}

// run waits for events until the poller is closed. p.poll never reports
// done, so RawConn.Read loops: poll, wait for Go's poller to see the
// instance readable, poll again. Go's readiness of the instance is not
// reset between the polls, so no event is lost in between.
func (p *poller) run() {
	_ = p.rc.Read(p.fn)
}

// poll takes every event the instance holds. A batch that fills
// p.events may have left more behind, of which Go's poller will not
// tell again (nothing new happened), so poll takes batches until one
// comes back short.
func (p *poller) poll(uintptr) bool {
	for {
		n, errno := epollWait(p.epfd, p.events[:])
		if errno == syscall.EINTR {
			continue
		}
		if errno != 0 || n <= 0 {
			return false
		}
		p.dispatch(p.events[:n])
		if n < len(p.events) {
			return false
		}
	}
}

// dispatch marks the sides the events name ready and wakes their waiters.
func (p *poller) dispatch(events []syscall.EpollEvent) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range events {
		ev := &events[i]
		slot := int(ev.Fd)
		if slot >= len(p.conns) {
			continue
		}
		c := p.conns[slot]
		if c == nil || int32(c.gen) != ev.Pad {
			continue // removed meanwhile; the slot may be another's now
		}
		e := ev.Events
		if e&(syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
			c.r.hup.Store(true)
		}
		if e&(syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
			c.w.hup.Store(true)
		}
		if e&(syscall.EPOLLIN|syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
			c.r.ready.Store(true)
			c.r.notify()
		}
		if e&(syscall.EPOLLOUT|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
			c.w.ready.Store(true)
			c.w.notify()
		}
	}
}

// remove unregisters c; the last connection's removal closes the poller.
// Close calls it before it closes c's descriptor.
func (p *poller) remove(c *Conn) {
	_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, int(c.fd), nil)
	p.drop(c)
}

func (p *poller) drop(c *Conn) {
	pollerMu.Lock()
	defer pollerMu.Unlock()
	p.mu.Lock()
	if p.conns[c.slot] == c {
		p.conns[c.slot] = nil
		p.free = append(p.free, c.slot)
		p.live--
	}
	last := p.live == 0
	p.mu.Unlock()
	if last {
		if current == p {
			current = nil
		}
		p.f.Close() // ends run
	}
}
