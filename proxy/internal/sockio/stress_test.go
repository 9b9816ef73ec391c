package sockio

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// slack is how long past its deadline (or past the Close that should end
// it) a call may take to return on a loaded machine under the race
// detector; a call that takes longer is taken to have missed its wake-up.
const slack = 2 * time.Second

// stressPair is one connection of the stress test: the client writes
// requests and reads their echo, the server echoes.
type stressPair struct {
	id      int
	rng     *rand.Rand
	client  net.Conn
	server  net.Conn
	echoBuf int // the size of the server's buffer
	// How the pair ends: "" runs every exchange to the end; "deadline"
	// gives some reads a deadline that may pass; "close" closes the
	// client at a random moment.
	mode string
}

// timedCall runs f and reports an error when it returned later than
// slack past limit (its deadline, or the Close that ends it).
func timedCall(limit time.Time, what string, f func() error) error {
	err := f()
	if late := time.Since(limit); late > slack {
		return fmt.Errorf("%s returned %v after its deadline: %v", what, late, err)
	}
	return err
}

// TestStressPingPong runs many connections at once, each exchanging
// requests of random sizes with an echoing peer while another goroutine
// reads the echo, some with deadlines that pass and some closed at a
// random moment. No call may outlive its deadline, and every exchange
// not cut short must arrive whole.
func TestStressPingPong(t *testing.T) {
	const pairs = 48
	const exchanges = 25
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	stopAt := time.Now().Add(1500 * time.Millisecond)

	ps := make([]*stressPair, pairs)
	for i := range ps {
		c, s := pair(t, Wrap)
		p := &stressPair{id: i, rng: rand.New(rand.NewPCG(seed, uint64(i))), client: c, server: s}
		switch i % 4 {
		case 1:
			p.mode = "deadline"
		case 2:
			p.mode = "close"
		}
		if p.rng.IntN(2) == 0 {
			// Smaller than the defaults, so that writes wait for
			// room more often, but above the loopback MSS: buffers
			// below it stall TCP itself (the receiver advertises no
			// window and waits for the sender's probe), net.TCPConn
			// as much as Conn.
			for _, c := range []net.Conn{c, s} {
				if err := tcp(t, c).SetReadBuffer(128 << 10); err != nil {
					t.Fatal(err)
				}
				if err := tcp(t, c).SetWriteBuffer(128 << 10); err != nil {
					t.Fatal(err)
				}
			}
		}
		p.echoBuf = 1 + p.rng.IntN(64<<10)
		ps[i] = p
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4*pairs)
	for _, p := range ps {
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := p.echo(); err != nil {
				errs <- fmt.Errorf("pair %d (%s) server: %w", p.id, p.mode, err)
			}
		}()
		go func() {
			defer wg.Done()
			if err := p.run(stopAt, exchanges); err != nil {
				errs <- fmt.Errorf("pair %d (%s) client: %w", p.id, p.mode, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// state describes c's sides and socket queues, for a call that waited
// too long: whether the socket had bytes to read or room to write.
func state(c net.Conn) string {
	sc, ok := c.(*Conn)
	if !ok {
		return ""
	}
	var inq, outq int32
	rc, err := sc.SyscallConn()
	if err == nil {
		rc.Control(func(fd uintptr) {
			syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCINQ, uintptr(unsafe.Pointer(&inq)))
			syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCOUTQ, uintptr(unsafe.Pointer(&outq)))
		})
	}
	return fmt.Sprintf("[read ready %v hup %v, write ready %v hup %v, %d bytes queued in, %d out]",
		sc.r.ready.Load(), sc.r.hup.Load(), sc.w.ready.Load(), sc.w.hup.Load(), inq, outq)
}

// echo writes back what it reads until the client's end, which may be a
// close (EOF) or a reset.
func (p *stressPair) echo() (err error) {
	defer p.server.Close()
	defer func() {
		if err != nil {
			err = fmt.Errorf("%s: %w", state(p.server), err)
		}
	}()
	buf := make([]byte, p.echoBuf)
	for {
		dl := time.Now().Add(5 * time.Second)
		p.server.SetDeadline(dl)
		var n int
		err := timedCall(dl, "server Read", func() (err error) {
			n, err = p.server.Read(buf)
			return err
		})
		if n > 0 {
			if werr := timedCall(dl, "server Write", func() error {
				_, err := p.server.Write(buf[:n])
				return err
			}); werr != nil {
				if p.mode != "" && peerGone(werr) {
					return nil
				}
				return werr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			if p.mode != "" && peerGone(err) {
				return nil
			}
			return err
		}
	}
}

// peerGone reports an error that the peer's close or reset explains.
func peerGone(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// run makes the client's exchanges: a writer goroutine sends the request
// while this one reads the echo.
func (p *stressPair) run(stopAt time.Time, exchanges int) (err error) {
	defer p.client.Close()
	defer func() {
		if err != nil {
			err = fmt.Errorf("%s: %w", state(p.client), err)
		}
	}()
	var closeAt time.Time
	closed := make(chan struct{})
	if p.mode == "close" {
		d := time.Duration(p.rng.IntN(int(100 * time.Millisecond)))
		closeAt = time.Now().Add(d)
		timer := time.AfterFunc(d, func() { close(closed); p.client.Close() })
		defer timer.Stop()
	}
	// closedErr accepts the errors a Close explains, once it happened,
	// and checks that the call returned soon after it.
	closedErr := func(err error) (bool, error) {
		select {
		case <-closed:
		default:
			return false, err
		}
		if !errors.Is(err, net.ErrClosed) {
			return false, err
		}
		if late := time.Since(closeAt); late > slack {
			return true, fmt.Errorf("returned %v after Close", late)
		}
		return true, nil
	}
	for x := 0; x < exchanges && time.Now().Before(stopAt); x++ {
		size := 1 + p.rng.IntN(512)
		if p.rng.IntN(4) == 0 {
			size = 1 + p.rng.IntN(256<<10)
		}
		req := make([]byte, size)
		randomFill(req, byte(p.id*31+x))
		long := time.Now().Add(5 * time.Second)
		p.client.SetWriteDeadline(long)
		rdl := long
		short := p.mode == "deadline" && p.rng.IntN(3) == 0
		if short {
			rdl = time.Now().Add(time.Duration(p.rng.IntN(int(2 * time.Millisecond))))
		}
		p.client.SetReadDeadline(rdl)

		werr := make(chan error, 1)
		go func() {
			werr <- timedCall(long, "client Write", func() error {
				_, err := p.client.Write(req)
				return err
			})
		}()
		got := make([]byte, size)
		rerr := timedCall(rdl, "client Read", func() error {
			_, err := io.ReadFull(p.client, got)
			return err
		})
		if rerr != nil && short && errors.Is(rerr, os.ErrDeadlineExceeded) {
			// The stream is cut short: end the pair, which ends the
			// writer (its peer goes) and the echo (EOF or reset).
			p.client.Close()
			if err := <-werr; err != nil && !errors.Is(err, net.ErrClosed) && !peerGone(err) {
				return fmt.Errorf("exchange %d: write after the read timed out: %w", x, err)
			}
			return nil
		}
		if ok, err := closedErr(rerr); ok || rerr != nil {
			if err != nil {
				return fmt.Errorf("exchange %d of %d bytes: read: %w", x, size, err)
			}
			if err := <-werr; err != nil {
				if ok, err := closedErr(err); !ok || err != nil {
					return fmt.Errorf("exchange %d: write: %w", x, err)
				}
			}
			return nil
		}
		if err := <-werr; err != nil {
			return fmt.Errorf("exchange %d of %d bytes: write: %w", x, size, err)
		}
		if !bytes.Equal(got, req) {
			return fmt.Errorf("exchange %d of %d bytes: the echo differs", x, size)
		}
	}
	return nil
}

// Connections wrapped and closed from several goroutines at once, so
// that the poller's last connection closes while others register and a
// new poller starts; every exchange completes.
func TestPollerChurn(t *testing.T) {
	const workers, rounds = 8, 40
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				errs <- err
				return
			}
			defer ln.Close()
			for r := range rounds {
				if err := churnRound(ln); err != nil {
					errs <- fmt.Errorf("worker %d round %d: %w", w, r, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func churnRound(ln net.Listener) error {
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return err
	}
	s, err := ln.Accept()
	if err != nil {
		c.Close()
		return err
	}
	wc, ws := Wrap(c), Wrap(s)
	defer wc.Close()
	defer ws.Close()
	dl := time.Now().Add(5 * time.Second)
	wc.SetDeadline(dl)
	ws.SetDeadline(dl)
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 1)
		if _, err := io.ReadFull(ws, buf); err != nil {
			done <- err
			return
		}
		_, err := ws.Write(buf)
		done <- err
	}()
	if _, err := wc.Write([]byte{7}); err != nil {
		return err
	}
	buf := make([]byte, 1)
	if _, err := io.ReadFull(wc, buf); err != nil {
		return err
	}
	if err := <-done; err != nil {
		return err
	}
	if buf[0] != 7 {
		return fmt.Errorf("echo %d, want 7", buf[0])
	}
	return nil
}
